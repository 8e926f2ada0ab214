//! Who reads the ledger's entries, through the router without a port (`oneshot`) on
//! a fresh data dir with the shipped policies: entry bundles only for Operator and
//! Auditor tokens (the checkpoint, hash tiles and proofs stay public), a workspace
//! owner's own entries with proofs that verify, and the caps on a request's
//! entities.
#![cfg(test)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use writ_ledger::proof::verify_inclusion_bytes;
use writ_ledger::store::LedgerStore as _;
use writ_ledger::tile_reader::tiles_of;
use writ_ledger::tilepath::TileKind;
use writ_ledger::{LeafIndex, LogVerifier, TreeSize};
use writ_server::serve::Opened;

mod common;

struct Fixture {
    _tmp: tempfile::TempDir,
    opened: Opened,
    router: axum::Router,
    operator: String,
    /// API keys by principal id: alice (acme owner), carol (acme admin), bot (acme
    /// agent), bob (globex owner), ada (auditor).
    keys: std::collections::BTreeMap<&'static str, String>,
}

struct Answer {
    status: StatusCode,
    cache_control: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    fn message(&self) -> String {
        self.json()["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

fn user(id: &str, workspace: &str, role: &str) -> Value {
    json!({"uid": {"type": "User", "id": id}, "attrs": {"workspace": {"type": "Workspace", "id": workspace}}, "parents": [{"type": "Role", "id": role}]})
}

async fn fixture() -> Fixture {
    let base = common::fixture().await;
    let opened = base.opened;
    // The whole route table, with the kernel's ledger routes (token checks and
    // decisions) mounted, as `serve` mounts them.
    let router = writ_server::routes::router(
        Arc::clone(&opened.state),
        writ_server::ledger_api::kernel_ledger_routes(Arc::clone(&opened.state)),
    );
    let mut fixture = Fixture {
        _tmp: base._tmp,
        opened,
        router,
        operator: base.operator,
        keys: Default::default(),
    };
    let operator = fixture.operator.clone();
    for entity in [
        json!({"uid": {"type": "Workspace", "id": "acme"}, "attrs": {"egress_allow": []}, "parents": []}),
        json!({"uid": {"type": "Workspace", "id": "globex"}, "attrs": {"egress_allow": []}, "parents": []}),
        user("alice", "acme", "owner"),
        user("carol", "acme", "admin"),
        user("bob", "globex", "owner"),
        json!({"uid": {"type": "Agent", "id": "bot"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}, "stopped": false}, "parents": [{"type": "Role", "id": "agent"}]}),
        json!({"uid": {"type": "WorkItem", "id": "w1"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}}, "parents": []}),
        json!({"uid": {"type": "WorkItem", "id": "g1"}, "attrs": {"workspace": {"type": "Workspace", "id": "globex"}}, "parents": []}),
    ] {
        let answer = fixture
            .send(&operator, "PUT", "/v1/entities", Some(entity))
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    }
    for (id, principal, workspace) in [
        ("alice", "User::\"alice\"", Some("acme")),
        ("carol", "User::\"carol\"", Some("acme")),
        ("bob", "User::\"bob\"", Some("globex")),
        ("bot", "Agent::\"bot\"", Some("acme")),
        ("ada", "Auditor::\"ada\"", None),
    ] {
        let mut body = json!({"principal": principal});
        if let Some(workspace) = workspace {
            body["workspace"] = json!(workspace);
        }
        let answer = fixture
            .send(&operator, "POST", "/v1/apikeys", Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.json());
        fixture
            .keys
            .insert(id, answer.json()["key"].as_str().unwrap().to_owned());
    }
    fixture
}

impl Fixture {
    /// Closes the kernel; the router goes first, as it holds the state (and so the
    /// ledger writer) the close waits for.
    async fn close(self) {
        let Self { opened, router, .. } = self;
        drop(router);
        opened.close().await.unwrap();
    }

    async fn request(&self, request: Request<Body>) -> Answer {
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let cache_control = response
            .headers()
            .get("cache-control")
            .map(|value| value.to_str().unwrap().to_owned());
        let body = response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Answer {
            status,
            cache_control,
            body,
        }
    }

    async fn send(&self, token: &str, method: &str, uri: &str, body: Option<Value>) -> Answer {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
            .unwrap();
        self.request(request).await
    }

    /// `GET uri` as `who` (a key of the cast, the operator, or no token at all).
    async fn get(&self, who: Option<&str>, uri: &str) -> Answer {
        let mut request = Request::get(uri);
        if let Some(who) = who {
            let token = match who {
                "operator" => self.operator.as_str(),
                other => self.keys.get(other).map_or(other, String::as_str),
            };
            request = request.header("authorization", format!("Bearer {token}"));
        }
        self.request(request.body(Body::empty()).unwrap()).await
    }

    fn size(&self) -> u64 {
        self.opened.state.ledger_store.size().unwrap().0
    }

    fn key(&self) -> LogVerifier {
        let key = self
            .opened
            .state
            .ledger_store
            .meta("verifier_key")
            .unwrap()
            .unwrap();
        LogVerifier::from_verifier_key(std::str::from_utf8(&key).unwrap()).unwrap()
    }

    /// Every stored entry, as text, in index order.
    fn entries(&self) -> Vec<String> {
        self.opened
            .state
            .ledger_store
            .entries_from(LeafIndex(0))
            .map(|item| String::from_utf8(item.unwrap().1).unwrap())
            .collect()
    }

    /// Some acme and globex decisions, so both workspaces have entries.
    async fn decisions(&self) {
        for (who, item) in [("bot", "w1"), ("bot", "g1"), ("bob", "g1"), ("alice", "w1")] {
            let body = json!({"action": "read", "resource": {"type": "WorkItem", "id": item}});
            let answer = self
                .send(&self.keys[who], "POST", "/v1/authorize", Some(body))
                .await;
            assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
        }
    }
}

/// An entry bundle as the store holds it: each entry prefixed by its big-endian
/// length (C2SP tlog-tiles), built here from the stored entries independently.
fn bundle_of(entries: &[String], index: u64, width: usize) -> Vec<u8> {
    let first = usize::try_from(index).unwrap() * 256;
    let mut bundle = Vec::new();
    for entry in &entries[first..first + width] {
        bundle.extend_from_slice(&u16::try_from(entry.len()).unwrap().to_be_bytes());
        bundle.extend_from_slice(entry.as_bytes());
    }
    bundle
}

#[tokio::test]
async fn entry_bundles_are_for_operator_and_auditor_tokens_only() {
    let fixture = fixture().await;
    fixture.decisions().await;
    let size = fixture.size();
    let entries = fixture.entries();
    let bundles: Vec<_> = tiles_of(TreeSize(size))
        .filter(|tile| tile.kind == TileKind::Entries)
        .collect();
    assert!(!bundles.is_empty());

    for tile in &bundles {
        let uri = format!("/ledger/{}", tile.path());
        // No token, a malformed one, a token that does not verify: 401.
        let answer = fixture.get(None, &uri).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert_eq!(answer.code(), "missing_token", "{uri}");
        assert!(!answer.body.starts_with(&[0]), "no entry bytes");
        for bad in ["writ_notakey", "not-a-writ-key"] {
            let answer = fixture.get(Some(bad), &uri).await;
            assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{uri} {bad}");
        }
        // A user (even an owner) or an agent: 403, with a stable code.
        for who in ["alice", "carol", "bob", "bot"] {
            let answer = fixture.get(Some(who), &uri).await;
            assert_eq!(answer.status, StatusCode::FORBIDDEN, "{uri} as {who}");
            assert_eq!(answer.code(), "ledger_entries_forbidden", "{uri} as {who}");
            assert!(
                answer.message().contains("Operator and Auditor"),
                "{}",
                answer.message()
            );
        }
        // An operator or an auditor: the exact bytes.
        let expected = bundle_of(&entries, tile.index, tile.width());
        for who in ["operator", "ada"] {
            let answer = fixture.get(Some(who), &uri).await;
            assert_eq!(answer.status, StatusCode::OK, "{uri} as {who}");
            assert_eq!(answer.body, expected, "{uri} as {who}");
            // Served to one token: no shared cache may keep it.
            let cache = answer.cache_control.unwrap();
            assert!(
                cache == "no-store" || cache.starts_with("private"),
                "{cache}"
            );
        }
    }
    // An entry bundle that does not exist is refused just the same without a token.
    let answer = fixture.get(None, "/ledger/tile/entries/999").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    let answer = fixture.get(Some("bot"), "/ledger/tile/entries/999").await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);

    // Reading bundles records nothing: an auditor's verification does not grow the
    // log it reads.
    assert_eq!(fixture.size(), size);

    // The checkpoint, the hash tiles and the proofs stay public.
    let answer = fixture.get(None, "/ledger/checkpoint").await;
    assert_eq!(answer.status, StatusCode::OK);
    let checkpoint = fixture.key().verify_checkpoint(&answer.body).unwrap();
    assert_eq!(checkpoint.size, TreeSize(size));
    for tile in tiles_of(TreeSize(size)).filter(|tile| tile.kind != TileKind::Entries) {
        let answer = fixture.get(None, &format!("/ledger/{}", tile.path())).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", tile.path());
        assert_eq!(answer.body.len(), tile.width() * 32, "{}", tile.path());
    }
    for uri in [
        "/v1/ledger/proof/inclusion?index=0".to_owned(),
        format!("/v1/ledger/proof/consistency?old=1&new={size}"),
    ] {
        let answer = fixture.get(None, &uri).await;
        assert_eq!(answer.status, StatusCode::OK, "{uri}: {}", answer.json());
        assert!(answer.json().get("entry").is_none(), "{uri}");
    }
    fixture.close().await;
}

/// The entries of `answer` (of `GET /v1/ledger/entries`), each checked: its proof
/// verifies against the answer's signed checkpoint, which covers the range.
fn verified_entries(fixture: &Fixture, answer: &Answer, to: u64) -> Vec<(u64, Value)> {
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    assert_eq!(answer.cache_control.as_deref(), Some("no-store"));
    let body = answer.json();
    let checkpoint = fixture
        .key()
        .verify_checkpoint(body["checkpoint"].as_str().unwrap().as_bytes())
        .unwrap();
    assert_eq!(body["size"].as_u64(), Some(checkpoint.size.0));
    assert_eq!(body["to"].as_u64(), Some(to));
    assert!(checkpoint.size.0 >= to, "the checkpoint covers `to`");
    let stored = fixture.entries();
    let mut found = Vec::new();
    for item in body["entries"].as_array().unwrap() {
        let index = item["index"].as_u64().unwrap();
        let text = item["entry"].as_str().unwrap();
        assert_eq!(text, stored[usize::try_from(index).unwrap()], "exact bytes");
        let leaf = BASE64.decode(item["leaf_hash"].as_str().unwrap()).unwrap();
        assert_eq!(leaf, writ_ledger::leaf_hash(text.as_bytes()).0);
        let proof: Vec<Vec<u8>> = item["inclusion_proof"]
            .as_array()
            .unwrap()
            .iter()
            .map(|hash| BASE64.decode(hash.as_str().unwrap()).unwrap())
            .collect();
        verify_inclusion_bytes(index, checkpoint.size.0, &leaf, &proof, &checkpoint.root.0)
            .unwrap();
        found.push((index, serde_json::from_str(text).unwrap()));
    }
    found
}

/// The indexes below `to` whose entry's `workspace` is `workspace`, from the store.
fn indexes_of(fixture: &Fixture, workspace: &str, to: u64) -> Vec<u64> {
    fixture
        .entries()
        .iter()
        .enumerate()
        .filter(|(_, text)| serde_json::from_str::<Value>(text).unwrap()["workspace"] == workspace)
        .map(|(index, _)| index as u64)
        .filter(|index| *index < to)
        .collect()
}

#[tokio::test]
async fn a_workspace_owner_reads_its_own_entries_with_proofs() {
    let fixture = fixture().await;
    fixture.decisions().await;
    let to = fixture.size();

    // alice owns acme: exactly acme's entries, each proven.
    let answer = fixture
        .get(Some("alice"), &format!("/v1/ledger/entries?from=0&to={to}"))
        .await;
    let acme = verified_entries(&fixture, &answer, to);
    assert_eq!(answer.json()["workspace"], "acme");
    assert_eq!(answer.json()["from"], 0);
    let indexes: Vec<u64> = acme.iter().map(|(index, _)| *index).collect();
    assert_eq!(indexes, indexes_of(&fixture, "acme", to));
    assert!(indexes.len() >= 3, "{indexes:?}");
    assert!(acme.iter().all(|(_, entry)| entry["workspace"] == "acme"));
    // The call itself is one recorded decision, allowed.
    assert_eq!(fixture.size(), to + 1);
    let recorded: Value = serde_json::from_str(&fixture.entries()[to as usize]).unwrap();
    assert_eq!(recorded["kind"], "decision");
    assert_eq!(recorded["action"], "admin.ledger.read");
    assert_eq!(recorded["actor"], "User::\"alice\"");
    assert_eq!(recorded["resource"], "Workspace::\"acme\"");
    assert_eq!(recorded["decision"], "allow");

    // bob owns globex: globex's entries only, never acme's.
    let answer = fixture
        .get(Some("bob"), &format!("/v1/ledger/entries?from=0&to={to}"))
        .await;
    let globex = verified_entries(&fixture, &answer, to);
    assert_eq!(answer.json()["workspace"], "globex");
    let indexes: Vec<u64> = globex.iter().map(|(index, _)| *index).collect();
    assert_eq!(indexes, indexes_of(&fixture, "globex", to));
    assert!(!indexes.is_empty());
    assert!(globex
        .iter()
        .all(|(_, entry)| entry["workspace"] == "globex"));
    assert!(
        !answer.body.windows(4).any(|w| w == b"acme"),
        "nothing of acme"
    );

    // A sub-range: only what lies in it.
    let (first, _) = acme[1];
    let answer = fixture
        .get(
            Some("alice"),
            &format!("/v1/ledger/entries?from={first}&to={}", first + 1),
        )
        .await;
    let one = verified_entries(&fixture, &answer, first + 1);
    assert_eq!(
        one.iter().map(|(index, _)| *index).collect::<Vec<_>>(),
        [first]
    );

    // acme's admin (not an owner) and acme's agent: 403, recorded as denies.
    for (who, actor) in [("carol", "User::\"carol\""), ("bot", "Agent::\"bot\"")] {
        let before = fixture.size();
        let answer = fixture
            .get(Some(who), &format!("/v1/ledger/entries?from=0&to={to}"))
            .await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{who}");
        assert_eq!(answer.code(), "forbidden", "{who}");
        assert!(answer.json().get("entries").is_none());
        assert_eq!(fixture.size(), before + 1, "{who}: the deny is recorded");
        let recorded: Value = serde_json::from_str(&fixture.entries()[before as usize]).unwrap();
        assert_eq!(recorded["actor"], actor);
        assert_eq!(recorded["action"], "admin.ledger.read");
        assert_eq!(recorded["decision"], "deny");
    }

    // An auditor or an operator has no workspace: every entry of the range.
    for who in ["ada", "operator"] {
        let answer = fixture
            .get(Some(who), &format!("/v1/ledger/entries?from=0&to={to}"))
            .await;
        let all = verified_entries(&fixture, &answer, to);
        assert_eq!(answer.json()["workspace"], Value::Null);
        assert_eq!(
            all.iter().map(|(index, _)| *index).collect::<Vec<_>>(),
            (0..to).collect::<Vec<_>>()
        );
    }
    fixture.close().await;
}

#[tokio::test]
async fn entry_ranges_are_checked_before_anything_is_decided() {
    let fixture = fixture().await;
    let size = fixture.size();
    let beyond = size + 5;
    for (query, status, code, says) in [
        ("", 400, "malformed_query", "`from`"),
        ("from=0", 400, "malformed_query", "`to`"),
        ("to=5", 400, "malformed_query", "`from`"),
        ("from=x&to=5", 400, "malformed_query", "`from`"),
        ("from=-1&to=5", 400, "malformed_query", "`from`"),
        ("from=0&to=5&to=6", 400, "malformed_query", "more than once"),
        (
            "from=0&to=5&workspace=globex",
            400,
            "malformed_query",
            "`workspace`",
        ),
        ("from=5&to=5", 422, "invalid_range", "greater than"),
        ("from=6&to=5", 422, "invalid_range", "greater than"),
        ("from=0&to=1001", 422, "range_too_large", "at most 1000"),
        (
            "from=18446744073709550614&to=18446744073709551615",
            422,
            "range_too_large",
            "at most 1000",
        ),
    ] {
        let answer = fixture
            .get(Some("alice"), &format!("/v1/ledger/entries?{query}"))
            .await;
        assert_eq!(answer.status.as_u16(), status, "{query}: {}", answer.json());
        assert_eq!(answer.code(), code, "{query}");
        assert!(
            answer.message().contains(says),
            "{query}: {}",
            answer.message()
        );
    }
    // Nothing of that was decided, so nothing was recorded.
    assert_eq!(fixture.size(), size);
    // Without a token: 401, before the query is even looked at.
    let answer = fixture.get(None, "/v1/ledger/entries?from=0&to=1").await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    // A range past the latest checkpoint: decided (and recorded), then 404.
    let answer = fixture
        .get(
            Some("alice"),
            &format!("/v1/ledger/entries?from=0&to={beyond}"),
        )
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.json());
    assert_eq!(answer.code(), "size_out_of_range");
    assert!(answer.message().contains(&format!("`to` {beyond}")));
    fixture.close().await;
}

fn work_item(id: usize) -> Value {
    json!({"uid": {"type": "WorkItem", "id": format!("item-{id}")}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}}, "parents": []})
}

#[tokio::test]
async fn request_entities_are_capped_before_cedar_sees_them() {
    let fixture = fixture().await;
    let bot = fixture.keys["bot"].clone();
    let read = |entities: Vec<Value>| json!({"action": "read", "resource": {"type": "WorkItem", "id": "item-0"}, "entities": entities});
    let size = fixture.size();

    // 8,000 entities (about 1 MiB): refused at once, by count.
    let many: Vec<Value> = (0..8000).map(work_item).collect();
    let started = Instant::now();
    let answer = fixture
        .send(&bot, "POST", "/v1/authorize", Some(read(many.clone())))
        .await;
    let took = started.elapsed();
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.json()
    );
    assert_eq!(answer.code(), "too_many_entities");
    assert_eq!(
        answer.message(),
        "a request carries at most 100 entities, not 8000"
    );
    assert!(took < Duration::from_millis(750), "took {took:?}");
    // One more than the cap is refused the same way; the cap itself is decided.
    let answer = fixture
        .send(
            &bot,
            "POST",
            "/v1/authorize",
            Some(read(many[..101].to_vec())),
        )
        .await;
    assert_eq!(answer.code(), "too_many_entities");
    assert_eq!(fixture.size(), size, "refusals are not recorded");
    let answer = fixture
        .send(
            &bot,
            "POST",
            "/v1/authorize",
            Some(read(many[..100].to_vec())),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    assert_eq!(answer.json()["decision"], "allow");

    // Few entities, but more than 64 KiB of them: refused by size.
    let padded: Vec<Value> = (0..10)
        .map(|n| {
            json!({"uid": {"type": "WorkItem", "id": format!("{n}-{}", "x".repeat(7000))}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}}, "parents": []})
        })
        .collect();
    let answer = fixture
        .send(&bot, "POST", "/v1/authorize", Some(read(padded)))
        .await;
    assert_eq!(
        answer.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        answer.json()
    );
    assert_eq!(answer.code(), "entities_too_large");
    assert!(
        answer.message().contains("65535 bytes"),
        "{}",
        answer.message()
    );

    // In a batch, each request is capped on its own.
    let batch = json!({"requests": [read(many[..1].to_vec()), read(many[..2000].to_vec())]});
    let started = Instant::now();
    let answer = fixture
        .send(&bot, "POST", "/v1/authorize/batch", Some(batch))
        .await;
    assert!(started.elapsed() < Duration::from_millis(750));
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.json());
    let text = answer.json().to_string();
    assert!(text.contains("too_many_entities"), "{text}");
    fixture.close().await;
}

#[tokio::test]
async fn a_request_entity_never_says_whether_another_workspace_stores_its_uid() {
    let fixture = fixture().await;
    let bot = fixture.keys["bot"].clone();
    // bot (acme) claims globex's stored `g1` is acme's, and then `nowhere`, which
    // nothing stores: neither is refused, and neither answer names the UID.
    let claim = |id: &str| {
        json!({"action": "read", "resource": {"type": "WorkItem", "id": id},
               "entities": [{"uid": {"type": "WorkItem", "id": id}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}}, "parents": []}]})
    };
    let stored = fixture
        .send(&bot, "POST", "/v1/authorize", Some(claim("g1")))
        .await;
    assert_eq!(stored.status, StatusCode::OK, "{}", stored.json());
    // The stored entity is the one decided on: the claim changes nothing.
    assert_eq!(stored.json()["decision"], "deny");
    assert_eq!(stored.json()["reasons"], json!(["tenancy-resource"]));
    let unknown = fixture
        .send(&bot, "POST", "/v1/authorize", Some(claim("nowhere")))
        .await;
    assert_eq!(unknown.status, StatusCode::OK, "{}", unknown.json());
    // Both decisions are recorded with the UIDs the caller sent, alike.
    for (answer, id) in [(&stored, "g1"), (&unknown, "nowhere")] {
        let entry: Value = serde_json::from_str(answer.json()["entry"].as_str().unwrap()).unwrap();
        assert_eq!(
            entry["request_entities"],
            json!([format!("WorkItem::\"{id}\"")])
        );
    }
    fixture.close().await;
}
