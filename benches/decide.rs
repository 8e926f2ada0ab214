//! PDP micro-benchmarks: one `Snapshot::decide` on the shipped policy set, in process.
//!
//! Run with `cargo bench -p writ-pdp --bench decide` (about a minute). The engine
//! holds the shipped seed entities and about 90 more over four workspaces (users
//! in every role, agents, work items), loaded through `Engine::upsert_entity` into
//! a `MemoryEntityStore`. What each benchmark shows:
//!
//! - `decide/read_allow`: an agent reads a work item of its own workspace (allow,
//!   `workitem-read`): the common authorize call.
//! - `decide/cross_workspace_deny`: the same agent reads another workspace's work
//!   item (deny, `tenancy-resource`).
//! - `decide/file_read`: an agent reads `src/main.rs`, with the `File` entity built
//!   as the kernel builds it and passed with the request (allow, `file-agent-read`).
//!   `decide` then extends the snapshot's entities with it for this one request.
//! - `decide/file_read_vetted`: the same, including `Snapshot::request_entities`,
//!   which parses and vets the kernel-built entity (what the server does per call).
//! - `decide/elevated`: a viewer with an active break-glass elevation to admin
//!   creates a work item (allow, `workitem-write`): `decide_with_parents` copies
//!   the snapshot's entities and re-inserts the principal with the extra role,
//!   so its cost grows with the entity store; compare with `read_allow`.
//! - `decide/consent`: an agent without a role reads a work item under a consent
//!   (allow, `consent-scope`): the kernel-built `Consent` entity is vetted and
//!   given as `context.consent`, as the server does.
//! - `decide_batch/10`: `Snapshot::decide_batch` of ten mixed requests; the
//!   throughput is per decision.
//!
//! This is the PDP's share of an authorize call only: no HTTP, no token check and
//! no ledger append.
#![expect(clippy::expect_used, reason = "benchmark setup")]

use std::collections::BTreeSet;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput};
use serde_json::{json, Value};
use writ_pdp::{entity_uid, DecisionRequest, Engine, LoadedPolicies, MemoryEntityStore, Snapshot};

const WORKSPACES: usize = 4;
const USER_ROLES: [&str; 5] = ["owner", "admin", "planner", "reviewer", "viewer"];
const USERS_PER_WORKSPACE: usize = 8;
const AGENTS_PER_WORKSPACE: usize = 4;
const WORK_ITEMS_PER_WORKSPACE: usize = 10;

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let engine = engine();
    let snapshot = engine.snapshot();
    decide(&mut criterion, &snapshot);
    decide_batch(&mut criterion, &snapshot);
    criterion.final_summary();
}

fn workspace(n: usize) -> String {
    format!("ws{n}")
}

fn in_workspace(n: usize) -> Value {
    json!({"__entity": {"type": "Workspace", "id": workspace(n)}})
}

/// The shipped policies and schema, and an engine holding the seed entities plus
/// users, agents and work items in a few workspaces.
fn engine() -> Engine {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let policies = LoadedPolicies::load(&repo.join("policies"), &repo.join("schemas"))
        .expect("the shipped policy set loads");
    let required: BTreeSet<String> = [r#"KillSwitch::"global""#.to_owned()].into();
    let engine = Engine::open(policies, Box::<MemoryEntityStore>::default(), required)
        .expect("an empty engine opens");
    let seed: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(repo.join("policies/seed.entities.json"))
            .expect("the seed entities are readable"),
    )
    .expect("the seed entities are JSON");
    let mut entities = seed;
    for w in 0..WORKSPACES {
        entities.push(json!({
            "uid": {"type": "Workspace", "id": workspace(w)},
            "attrs": {"egress_allow": ["api.openai.com", "*.github.com"]},
            "parents": [],
        }));
        for (u, role) in USER_ROLES
            .iter()
            .cycle()
            .take(USERS_PER_WORKSPACE)
            .enumerate()
        {
            entities.push(json!({
                "uid": {"type": "User", "id": format!("{}-user{u}", workspace(w))},
                "attrs": {"workspace": in_workspace(w)},
                "parents": [{"type": "Role", "id": role}],
            }));
        }
        for a in 0..AGENTS_PER_WORKSPACE {
            entities.push(json!({
                "uid": {"type": "Agent", "id": format!("{}-agent{a}", workspace(w))},
                "attrs": {"workspace": in_workspace(w), "stopped": false},
                "parents": [{"type": "Role", "id": "agent"}],
            }));
        }
        entities.push(json!({
            "uid": {"type": "Agent", "id": format!("{}-roleless", workspace(w))},
            "attrs": {"workspace": in_workspace(w), "stopped": false},
            "parents": [],
        }));
        for i in 0..WORK_ITEMS_PER_WORKSPACE {
            entities.push(json!({
                "uid": {"type": "WorkItem", "id": format!("{}-w{i}", workspace(w))},
                "attrs": {
                    "workspace": in_workspace(w),
                    "submitter_user": {"__entity": {"type": "User", "id": format!("{}-user0", workspace(w))}},
                },
                "parents": [],
            }));
        }
    }
    for entity in &entities {
        engine
            .upsert_entity(entity)
            .expect("every benchmark entity conforms to the schema");
    }
    engine
}

fn request(principal: (&str, &str), action: &str, resource: (&str, &str)) -> DecisionRequest {
    DecisionRequest {
        principal: entity_uid(principal.0, principal.1).expect("a valid principal"),
        action: entity_uid("Action", action).expect("a valid action"),
        resource: entity_uid(resource.0, resource.1).expect("a valid resource"),
        context: json!({}),
        entities: Vec::new(),
    }
}

/// The `File` entity as `writ_server::request::file_target` builds it.
fn kernel_file(workspace_id: &str, path: &str) -> Value {
    json!({
        "uid": {"type": "File", "id": format!("{workspace_id}/{path}")},
        "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": workspace_id}}, "path": path},
        "parents": [],
    })
}

fn file_request(
    snapshot: &Snapshot,
    agent: &str,
    workspace_id: &str,
    path: &str,
) -> DecisionRequest {
    let file = kernel_file(workspace_id, path);
    let entities = snapshot
        .request_entities(std::slice::from_ref(&file), &BTreeSet::new())
        .expect("the kernel-built file entity is accepted");
    DecisionRequest {
        entities,
        ..request(
            ("Agent", agent),
            "file.read",
            ("File", &format!("{workspace_id}/{path}")),
        )
    }
}

/// Decides once and checks the outcome, so that a benchmark never measures an
/// error path by mistake.
fn check(snapshot: &Snapshot, request: &DecisionRequest, allow: bool, reason: &str) {
    let decision = snapshot
        .decide(request)
        .expect("the request is well formed");
    assert_eq!(decision.allow, allow, "{request:?}: {decision:?}");
    assert_eq!(decision.reasons, [reason], "{request:?}: {decision:?}");
    assert!(decision.errors.is_empty(), "{decision:?}");
}

fn decide(criterion: &mut Criterion, snapshot: &Snapshot) {
    let read_allow = request(("Agent", "ws0-agent0"), "read", ("WorkItem", "ws0-w3"));
    check(snapshot, &read_allow, true, "workitem-read");
    let cross_deny = request(("Agent", "ws0-agent0"), "read", ("WorkItem", "ws1-w3"));
    check(snapshot, &cross_deny, false, "tenancy-resource");
    let file_read = file_request(snapshot, "ws0-agent0", "ws0", "src/main.rs");
    check(snapshot, &file_read, true, "file-agent-read");
    let file_value = kernel_file("ws0", "src/main.rs");
    let no_reserved = BTreeSet::new();
    let elevated = request(
        ("User", "ws0-user4"),
        "workitem.create",
        ("WorkItem", "ws0-w3"),
    );
    let admin = [entity_uid("Role", "admin").expect("a valid role")];
    assert!(
        !snapshot
            .decide(&elevated)
            .expect("a well-formed request")
            .allow,
        "a viewer without the elevation may not create work items"
    );
    let decision = snapshot
        .decide_with_parents(&elevated, &admin)
        .expect("the elevated request is well formed");
    assert_eq!(decision.reasons, ["workitem-write"], "{decision:?}");
    let consent_value = json!({
        "uid": {"type": "Consent", "id": "cs_bench"},
        "attrs": {"workspace": in_workspace(0), "grantor": {"__entity": {"type": "User", "id": "ws0-user0"}}},
        "parents": [],
    });
    let consented = |snapshot: &Snapshot| {
        let entities = snapshot
            .request_entities(std::slice::from_ref(&consent_value), &no_reserved)
            .expect("the kernel-built consent is accepted");
        DecisionRequest {
            entities,
            context: json!({"consent": {"__entity": {"type": "Consent", "id": "cs_bench"}}}),
            ..request(("Agent", "ws0-roleless"), "read", ("WorkItem", "ws0-w3"))
        }
    };
    let consent_request = consented(snapshot);
    let decision = snapshot
        .decide(&consent_request)
        .expect("the consented request is well formed");
    assert_eq!(decision.reasons, ["consent-scope"], "{decision:?}");

    let mut group = criterion.benchmark_group("decide");
    group.throughput(Throughput::Elements(1));
    group.bench_function("read_allow", |b| {
        b.iter(|| snapshot.decide(black_box(&read_allow)))
    });
    group.bench_function("cross_workspace_deny", |b| {
        b.iter(|| snapshot.decide(black_box(&cross_deny)))
    });
    group.bench_function("file_read", |b| {
        b.iter(|| snapshot.decide(black_box(&file_read)))
    });
    group.bench_function("elevated", |b| {
        b.iter(|| snapshot.decide_with_parents(black_box(&elevated), &admin))
    });
    group.bench_function("consent", |b| {
        b.iter(|| snapshot.decide(&consented(black_box(snapshot))))
    });
    group.bench_function("file_read_vetted", |b| {
        b.iter(|| {
            let entities = snapshot
                .request_entities(std::slice::from_ref(black_box(&file_value)), &no_reserved)
                .expect("the kernel-built file entity is accepted");
            let request = DecisionRequest {
                entities,
                ..request(
                    ("Agent", "ws0-agent0"),
                    "file.read",
                    ("File", "ws0/src/main.rs"),
                )
            };
            snapshot.decide(&request)
        })
    });
    group.finish();
}

fn decide_batch(criterion: &mut Criterion, snapshot: &Snapshot) {
    let mut requests = Vec::new();
    for w in 0..WORKSPACES {
        let agent = format!("{}-agent{}", workspace(w), w % AGENTS_PER_WORKSPACE);
        let user = format!("{}-user{}", workspace(w), w + 1);
        requests.push(request(
            ("Agent", &agent),
            "read",
            ("WorkItem", &format!("{}-w{w}", workspace(w))),
        ));
        requests.push(request(
            ("User", &user),
            "workitem.update",
            ("WorkItem", &format!("{}-w{w}", workspace(w))),
        ));
    }
    requests.push(request(
        ("Agent", "ws0-agent1"),
        "read",
        ("WorkItem", "ws2-w0"),
    ));
    requests.push(file_request(snapshot, "ws1-agent1", "ws1", "docs/guide.md"));
    assert_eq!(requests.len(), 10);
    for decision in snapshot.decide_batch(&requests) {
        decision.expect("every request of the batch is well formed");
    }

    let mut group = criterion.benchmark_group("decide_batch");
    group.throughput(Throughput::Elements(requests.len() as u64));
    group.bench_function("10", |b| {
        b.iter(|| snapshot.decide_batch(black_box(&requests)))
    });
    group.finish();
}
