//! The engine on the shipped policies: decisions and obligations, entity writes
//! validated against the schema, request entities vetted, atomic reload, fail-closed.
#![cfg(test)]

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use writ_pdp::{
    entity_uid, DecisionRequest, Engine, LoadedPolicies, MemoryEntityStore, PdpError, SourceFile,
};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn shipped() -> LoadedPolicies {
    LoadedPolicies::load(&repo().join("policies"), &repo().join("schemas")).unwrap()
}

fn seeded_engine() -> Engine {
    let required: BTreeSet<String> = [r#"KillSwitch::"global""#.to_owned()].into();
    let engine = Engine::open(shipped(), Box::<MemoryEntityStore>::default(), required).unwrap();
    let seed: Vec<Value> = serde_json::from_str(
        &fs::read_to_string(repo().join("policies/seed.entities.json")).unwrap(),
    )
    .unwrap();
    for entity in seed {
        engine.upsert_entity(&entity).unwrap();
    }
    for entity in [
        json!({"uid": {"type": "Workspace", "id": "acme"}, "attrs": {"egress_allow": []}, "parents": []}),
        json!({"uid": {"type": "Workspace", "id": "globex"}, "attrs": {"egress_allow": []}, "parents": []}),
        json!({"uid": {"type": "User", "id": "vera"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}}, "parents": [{"type": "Role", "id": "viewer"}]}),
        json!({"uid": {"type": "Agent", "id": "bot"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}, "stopped": false}, "parents": [{"type": "Role", "id": "agent"}]}),
        json!({"uid": {"type": "WorkItem", "id": "w1"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}}, "parents": []}),
        json!({"uid": {"type": "WorkItem", "id": "g1"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "globex"}}}, "parents": []}),
        json!({"uid": {"type": "Secret", "id": "db"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}}, "parents": []}),
    ] {
        engine.upsert_entity(&entity).unwrap();
    }
    engine
}

fn request(principal: (&str, &str), action: &str, resource: (&str, &str)) -> DecisionRequest {
    DecisionRequest {
        principal: entity_uid(principal.0, principal.1).unwrap(),
        action: entity_uid("Action", action).unwrap(),
        resource: entity_uid(resource.0, resource.1).unwrap(),
        context: json!({}),
        entities: Vec::new(),
    }
}

#[test]
fn allow_deny_and_obligations() {
    let engine = seeded_engine();
    let snapshot = engine.snapshot();
    let read = snapshot
        .decide(&request(("User", "vera"), "read", ("WorkItem", "w1")))
        .unwrap();
    assert!(read.allow);
    assert_eq!(read.reasons, ["workitem-read"]);
    assert!(read.obligations.is_empty());
    assert_eq!(read.policy_set, snapshot.policies().digest());

    let update = snapshot
        .decide(&request(
            ("User", "vera"),
            "workitem.update",
            ("WorkItem", "w1"),
        ))
        .unwrap();
    assert!(!update.allow);
    assert!(
        update.reasons.is_empty(),
        "a default deny has no determining policy"
    );

    let cross = snapshot
        .decide(&request(("Agent", "bot"), "read", ("WorkItem", "g1")))
        .unwrap();
    assert!(!cross.allow);
    assert_eq!(cross.reasons, ["tenancy-resource"]);

    let reveal = snapshot
        .decide(&request(
            ("Agent", "bot"),
            "secret.reveal",
            ("Secret", "db"),
        ))
        .unwrap();
    assert!(reveal.allow);
    assert_eq!(reveal.obligations, ["approval"]);
}

#[test]
fn unknown_names_are_precise_errors() {
    let engine = seeded_engine();
    let snapshot = engine.snapshot();
    let error = snapshot
        .decide(&request(("User", "vera"), "launch", ("WorkItem", "w1")))
        .unwrap_err();
    assert!(matches!(error, PdpError::UnknownAction { .. }), "{error}");
    let error = snapshot
        .decide(&request(("User", "vera"), "read", ("Spaceship", "x")))
        .unwrap_err();
    assert!(
        matches!(error, PdpError::UnknownEntityType { .. }),
        "{error}"
    );
    let error = snapshot
        .decide(&request(("User", "vera"), "read", ("Secret", "db")))
        .unwrap_err();
    assert!(
        matches!(error, PdpError::InvalidRequest { .. }),
        "read does not apply to secrets: {error}"
    );
    let mut bad_context = request(("User", "vera"), "read", ("WorkItem", "w1"));
    bad_context.context = json!({"no_such_field": 1});
    let error = snapshot.decide(&bad_context).unwrap_err();
    assert!(matches!(error, PdpError::InvalidContext { .. }), "{error}");
}

#[test]
fn entity_writes_are_validated_and_required_entities_stay() {
    let engine = seeded_engine();
    let wrong_type = json!({"uid": {"type": "Agent", "id": "x"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}, "stopped": "no"}, "parents": []});
    assert!(matches!(
        engine.upsert_entity(&wrong_type),
        Err(PdpError::InvalidEntity { .. })
    ));
    let unknown_type = json!({"uid": {"type": "Spaceship", "id": "x"}, "attrs": {}, "parents": []});
    assert!(engine.upsert_entity(&unknown_type).is_err());
    let action = json!({"uid": {"type": "Action", "id": "read"}, "attrs": {}, "parents": []});
    assert!(engine.upsert_entity(&action).is_err());
    assert!(matches!(
        engine.delete_entity(r#"KillSwitch::"global""#),
        Err(PdpError::EntityRequired { .. })
    ));
    assert!(matches!(
        engine.delete_entity(r#"User::"nobody""#),
        Err(PdpError::EntityNotFound { .. })
    ));

    // A delete takes effect for the next decision.
    engine.delete_entity(r#"User::"vera""#).unwrap();
    let read = engine
        .snapshot()
        .decide(&request(("User", "vera"), "read", ("WorkItem", "w1")))
        .unwrap();
    assert!(!read.allow, "a deleted principal has no role");
}

#[test]
fn request_entities_cannot_impersonate_or_shadow() {
    let engine = seeded_engine();
    let snapshot = engine.snapshot();
    let reserved: BTreeSet<String> = ["User", "Agent", "Role", "Workspace", "KillSwitch"]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    // A caller's copy of a stored entity (globex's `g1`, claimed for acme) is not
    // refused, which would tell the caller that `g1` exists somewhere: the stored
    // entity replaces it, so the decision is on what the store says.
    let shadow = json!({"uid": {"type": "WorkItem", "id": "g1"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}}, "parents": []});
    let replaced = snapshot
        .request_entities(std::slice::from_ref(&shadow), &reserved)
        .unwrap();
    assert_eq!(replaced.len(), 1);
    assert_eq!(
        replaced[0].attr("workspace").unwrap().unwrap(),
        writ_pdp::cedar_policy::EvalResult::EntityUid(r#"Workspace::"globex""#.parse().unwrap())
    );
    let mut shadowed = request(("User", "vera"), "read", ("WorkItem", "g1"));
    shadowed.entities = replaced;
    assert!(!snapshot.decide(&shadowed).unwrap().allow);
    // The kernel's own entities are still refused when the store holds their UID.
    assert!(matches!(
        snapshot.kernel_entities(&[shadow]),
        Err(PdpError::EntityNotAllowed { .. })
    ));
    let switch = json!({"uid": {"type": "KillSwitch", "id": "other"}, "attrs": {"engaged": false}, "parents": []});
    assert!(matches!(
        snapshot.request_entities(&[switch], &reserved),
        Err(PdpError::EntityNotAllowed { .. })
    ));
    let fresh = json!({"uid": {"type": "WorkItem", "id": "new"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}}, "parents": []});
    let twice = snapshot.request_entities(&[fresh.clone(), fresh.clone()], &reserved);
    assert!(matches!(twice, Err(PdpError::EntityNotAllowed { .. })));
    let mut with_fresh = request(("User", "vera"), "read", ("WorkItem", "new"));
    with_fresh.entities = snapshot.request_entities(&[fresh], &reserved).unwrap();
    assert!(snapshot.decide(&with_fresh).unwrap().allow);
}

#[test]
fn a_broken_reload_changes_nothing_and_a_good_one_swaps_whole() {
    let engine = seeded_engine();
    let before = engine.snapshot();
    let mut policies: Vec<SourceFile> =
        writ_pdp::policies::read_sources(&repo().join("policies"), "cedar").unwrap();
    let schemas = writ_pdp::policies::read_sources(&repo().join("schemas"), "cedarschema").unwrap();
    policies.push(SourceFile {
        name: "zz.cedar".into(),
        text: "@id(\"bad\")\npermit(principal, action, resource) when { resource.nope };\n".into(),
    });
    let error = LoadedPolicies::from_sources(&policies, &schemas).unwrap_err();
    assert!(matches!(error, PdpError::InvalidPolicySet { .. }));
    assert_eq!(
        engine.snapshot().policies().digest(),
        before.policies().digest()
    );

    policies.pop();
    policies.retain(|file| file.name != "roles.cedar");
    let without_roles = LoadedPolicies::from_sources(&policies, &schemas).unwrap();
    let after = engine.reload(without_roles).unwrap();
    assert_ne!(after.policies().digest(), before.policies().digest());
    // A decision holding the old snapshot still sees the old set whole.
    assert!(
        before
            .decide(&request(("User", "vera"), "read", ("WorkItem", "w1")))
            .unwrap()
            .allow
    );
    assert!(
        !engine
            .snapshot()
            .decide(&request(("User", "vera"), "read", ("WorkItem", "w1")))
            .unwrap()
            .allow
    );
}

#[test]
fn a_reload_whose_schema_rejects_stored_entities_is_refused() {
    let engine = seeded_engine();
    let policies = writ_pdp::policies::read_sources(&repo().join("policies"), "cedar").unwrap();
    let mut schemas =
        writ_pdp::policies::read_sources(&repo().join("schemas"), "cedarschema").unwrap();
    let schema = &mut schemas[0];
    schema.text = schema
        .text
        .replace("stopped: Bool", "stopped: Bool,\n  owner: String");
    assert_ne!(
        schemas[0].text,
        writ_pdp::policies::read_sources(&repo().join("schemas"), "cedarschema").unwrap()[0].text
    );
    let loaded = LoadedPolicies::from_sources(&policies, &schemas).unwrap();
    let before = engine.snapshot().policies().digest();
    let error = engine.reload(loaded).unwrap_err();
    assert!(
        matches!(error, PdpError::EntitiesRejectedBySchema { .. }),
        "{error}"
    );
    assert_eq!(engine.snapshot().policies().digest(), before);
}

#[test]
fn a_forbid_that_errors_denies() {
    let policies = vec![SourceFile {
        name: "p.cedar".into(),
        text: "@id(\"allow-all\")\npermit(principal, action, resource);\n@id(\"guard\")\nforbid(principal is User, action, resource is WorkItem) when { resource.workspace == principal.workspace };\n"
            .into(),
    }];
    let schemas = writ_pdp::policies::read_sources(&repo().join("schemas"), "cedarschema").unwrap();
    let loaded = LoadedPolicies::from_sources(&policies, &schemas).unwrap();
    let engine =
        Engine::open(loaded, Box::<MemoryEntityStore>::default(), BTreeSet::new()).unwrap();
    // The work item is in no store: evaluating `resource.workspace` errors.
    let decision = engine
        .snapshot()
        .decide(&request(("User", "ghost"), "read", ("WorkItem", "missing")))
        .unwrap();
    assert!(!decision.allow);
    assert!(decision.failed_closed);
    assert_eq!(decision.errors.len(), 1);
    assert_eq!(decision.errors[0].policy_id, "guard");
}
