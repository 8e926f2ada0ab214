//! A kernel with a manual clock and a cast: acme's owner alice, admin bob, viewer
//! carol, on-call viewer dave, reviewer erin, agent bot, an unroled agent helper;
//! a staging and a production environment, two integrations; globex's admin gina.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use writ_ledger::store::LedgerStore;
use writ_ledger::LeafIndex;
use writ_server::config::{FileConfig, GrantsSection, Overrides, ServeConfig};
use writ_server::grants::clock::{ManualClock, UnixMs};
use writ_server::serve::{open_with_clock, Opened};

pub(crate) struct Kernel {
    _tmp: tempfile::TempDir,
    pub(crate) opened: Opened,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) operator: String,
    keys: std::collections::BTreeMap<String, String>,
}

pub(crate) const MINUTE: u64 = 60_000;

pub(crate) fn user(id: &str, workspace: &str, roles: &[&str]) -> Value {
    let parents: Vec<Value> = roles
        .iter()
        .map(|r| json!({"type": "Role", "id": r}))
        .collect();
    json!({"uid": {"type": "User", "id": id}, "attrs": {"workspace": {"type": "Workspace", "id": workspace}}, "parents": parents})
}

fn agent(id: &str, roles: &[&str]) -> Value {
    let parents: Vec<Value> = roles
        .iter()
        .map(|r| json!({"type": "Role", "id": r}))
        .collect();
    json!({"uid": {"type": "Agent", "id": id}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}, "stopped": false}, "parents": parents})
}

impl Kernel {
    pub(crate) async fn start() -> Self {
        Self::start_with(GrantsSection::default()).await
    }

    pub(crate) async fn start_with(grants: GrantsSection) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let made = tokio::task::spawn_blocking({
            let data = data.clone();
            move || writ_server::kernel::init(&data)
        })
        .await
        .unwrap()
        .unwrap();
        let config = ServeConfig::resolve(
            FileConfig {
                grants: Some(grants),
                ..FileConfig::default()
            },
            Overrides {
                data_dir: Some(data),
                ..Overrides::default()
            },
        )
        .unwrap();
        let clock = Arc::new(ManualClock::new(UnixMs(writ_server::unix_now_ms())));
        let opened = open_with_clock(&config, clock.clone()).await.unwrap();
        let mut kernel = Self {
            _tmp: tmp,
            opened,
            clock,
            operator: made.admin_key.expose().to_owned(),
            keys: Default::default(),
        };
        kernel.cast().await;
        kernel
    }

    async fn cast(&mut self) {
        let entities = [
            json!({"uid": {"type": "Workspace", "id": "acme"}, "attrs": {"egress_allow": []}, "parents": []}),
            json!({"uid": {"type": "Workspace", "id": "globex"}, "attrs": {"egress_allow": []}, "parents": []}),
            user("alice", "acme", &["owner"]),
            user("bob", "acme", &["admin"]),
            user("carol", "acme", &["viewer"]),
            user("dave", "acme", &["viewer", "oncall"]),
            user("erin", "acme", &["reviewer"]),
            user("gina", "globex", &["admin"]),
            agent("bot", &["agent"]),
            agent("helper", &[]),
            json!({"uid": {"type": "Environment", "id": "staging"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}, "production": false}, "parents": []}),
            json!({"uid": {"type": "Environment", "id": "prod"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}, "production": true}, "parents": []}),
            json!({"uid": {"type": "Integration", "id": "gh"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}}, "parents": []}),
            json!({"uid": {"type": "Integration", "id": "jira"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}}, "parents": []}),
        ];
        let operator = self.operator.clone();
        for entity in entities {
            let (status, body) = self
                .call_as(&operator, "PUT", "/v1/entities", Some(entity))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        for (principal, workspace) in [
            ("User::\"alice\"", "acme"),
            ("User::\"bob\"", "acme"),
            ("User::\"carol\"", "acme"),
            ("User::\"dave\"", "acme"),
            ("User::\"erin\"", "acme"),
            ("User::\"gina\"", "globex"),
            ("Agent::\"bot\"", "acme"),
            ("Agent::\"helper\"", "acme"),
        ] {
            self.mint(principal, workspace).await;
        }
    }

    /// An operator mints an API key for `principal` (`User::"x"`) and files it
    /// under its id (`x`) for `call`.
    pub(crate) async fn mint(&mut self, principal: &str, workspace: &str) {
        let operator = self.operator.clone();
        let (status, body) = self
            .call_as(
                &operator,
                "POST",
                "/v1/apikeys",
                Some(json!({"principal": principal, "workspace": workspace})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let name = principal.split('"').nth(1).unwrap().to_owned();
        self.keys
            .insert(name, body["key"].as_str().unwrap().to_owned());
    }

    pub(crate) async fn call_as(
        &self,
        token: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {token}"))
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .unwrap();
        let response = self.opened.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// A call by one of the cast (`alice`, `bot`, ...).
    pub(crate) async fn call(
        &self,
        who: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let token = self.keys.get(who).unwrap().clone();
        self.call_as(&token, method, path, body).await
    }

    /// An authorize call; returns the answer (status 200 asserted).
    pub(crate) async fn authorize(&self, who: &str, action: &str, resource: (&str, &str)) -> Value {
        let (status, body) = self
            .call(
                who,
                "POST",
                "/v1/authorize",
                Some(json!({"action": action, "resource": {"type": resource.0, "id": resource.1}})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Every ledger entry, parsed, in index order.
    pub(crate) fn ledger(&self) -> Vec<Value> {
        let store = &self.opened.state.ledger_store;
        let mut out = Vec::new();
        let mut index = 0;
        while let Some(bytes) = store.entry(LeafIndex(index)).unwrap() {
            out.push(serde_json::from_slice(&bytes).unwrap());
            index += 1;
        }
        out
    }

    /// The index of the only entry of `kind` whose `id` is `id`.
    pub(crate) fn index_of(&self, kind: &str, id: &str) -> u64 {
        let ledger = self.ledger();
        let found: Vec<u64> = ledger
            .iter()
            .filter(|e| e["kind"] == kind && e["id"] == id)
            .map(|e| e["index"].as_u64().unwrap())
            .collect();
        assert_eq!(found.len(), 1, "{kind} {id}: {found:?}");
        found[0]
    }
}

/// The decision entries that name a grant field (`elevation`, `consent`) equal to `id`.
pub(crate) fn relying(ledger: &[Value], field: &str, id: &str) -> Vec<u64> {
    ledger
        .iter()
        .filter(|e| e["kind"] == "decision" && e[field] == id)
        .map(|e| e["index"].as_u64().unwrap())
        .collect()
}
