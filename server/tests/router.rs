//! The router without a port (`oneshot`): identity, body checks and error codes of the
//! authorize endpoint, on a fresh data dir with the shipped policies.
#![cfg(test)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;

mod common;

use common::{fixture, Fixture};

async fn call(
    fixture: &Fixture,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, Value) {
    let mut request = Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = request
        .body(body.map_or_else(Body::empty, Body::from))
        .unwrap();
    let response = fixture
        .opened
        .router
        .clone()
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, value)
}

async fn setup_agent(fixture: &Fixture) -> String {
    let op = Some(fixture.operator.as_str());
    for entity in [
        json!({"uid": {"type": "Workspace", "id": "acme"}, "attrs": {"egress_allow": ["api.github.com"]}, "parents": []}),
        json!({"uid": {"type": "Agent", "id": "bot"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}, "stopped": false}, "parents": [{"type": "Role", "id": "agent"}]}),
        json!({"uid": {"type": "WorkItem", "id": "w1"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}}, "parents": []}),
    ] {
        let (status, body) = call(
            fixture,
            "PUT",
            "/v1/entities",
            op,
            Some(entity.to_string().into_bytes()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = call(
        fixture,
        "POST",
        "/v1/apikeys",
        op,
        Some(
            json!({"principal": "Agent::\"bot\"", "workspace": "acme"})
                .to_string()
                .into_bytes(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["key"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn authorize_answers_with_a_recorded_decision() {
    let fixture = fixture().await;
    let key = setup_agent(&fixture).await;
    let body = json!({"action": "read", "resource": {"type": "WorkItem", "id": "w1"}}).to_string();
    let (status, answer) = call(
        &fixture,
        "POST",
        "/v1/authorize",
        Some(&key),
        Some(body.into_bytes()),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["decision"], "allow");
    assert_eq!(answer["reasons"], json!(["workitem-read"]));
    let entry: Value = serde_json::from_str(answer["entry"].as_str().unwrap()).unwrap();
    assert_eq!(entry["kind"], "decision");
    assert_eq!(entry["actor"], "Agent::\"bot\"");
    assert_eq!(entry["workspace"], "acme");
    assert_eq!(
        entry["index"].to_string(),
        answer["decision_id"].as_str().unwrap()
    );
    assert!(answer["receipt"]
        .as_str()
        .unwrap()
        .starts_with("c2sp.org/tlog-proof@v1"));
    fixture.opened.close().await.unwrap();
}

#[tokio::test]
async fn client_mistakes_get_precise_4xx() {
    let fixture = fixture().await;
    let key = setup_agent(&fixture).await;
    let k = Some(key.as_str());
    let read = |extra: Value| {
        let mut body = json!({"action": "read", "resource": {"type": "WorkItem", "id": "w1"}});
        for (name, value) in extra.as_object().unwrap() {
            body[name] = value.clone();
        }
        body.to_string().into_bytes()
    };
    let cases: Vec<(Option<&str>, Vec<u8>, StatusCode, &str)> = vec![
        (
            None,
            read(json!({})),
            StatusCode::UNAUTHORIZED,
            "missing_token",
        ),
        (
            Some("writ_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            read(json!({})),
            StatusCode::UNAUTHORIZED,
            "unknown_key",
        ),
        (
            k,
            read(json!({"principal": "User::\"root\""})),
            StatusCode::BAD_REQUEST,
            "identity_in_body",
        ),
        (
            k,
            read(json!({"workspace": "globex"})),
            StatusCode::BAD_REQUEST,
            "identity_in_body",
        ),
        (
            k,
            b"{\"action\":".to_vec(),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        (
            k,
            read(json!({"surprise": 1})),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_body",
        ),
        (
            k,
            json!({"action": "launch", "resource": {"type": "WorkItem", "id": "w1"}})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_action",
        ),
        (
            k,
            json!({"action": "read", "resource": {"type": "Rocket", "id": "w1"}})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_entity_type",
        ),
        (
            k,
            json!({"action": "read", "resource": {"type": "Host", "id": "x"}})
                .to_string()
                .into_bytes(),
            StatusCode::BAD_REQUEST,
            "kernel_built_resource",
        ),
        (
            k,
            json!({"action": "egress", "url": "ftp://x.org/"})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_url",
        ),
        (
            k,
            json!({"action": "file.read", "path": "../../etc/passwd"})
                .to_string()
                .into_bytes(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_path",
        ),
        (
            k,
            vec![b' '; 2 * 1024 * 1024],
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
    ];
    for (token, body, status, code) in cases {
        let (got, answer) = call(&fixture, "POST", "/v1/authorize", token, Some(body)).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{answer}"
        );
    }
    fixture.opened.close().await.unwrap();
}

#[tokio::test]
async fn an_agent_cannot_use_admin_endpoints() {
    let fixture = fixture().await;
    let key = setup_agent(&fixture).await;
    let entity =
        json!({"uid": {"type": "Role", "id": "superuser"}, "attrs": {}, "parents": []}).to_string();
    let (status, answer) = call(
        &fixture,
        "PUT",
        "/v1/entities",
        Some(&key),
        Some(entity.into_bytes()),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, answer) = call(
        &fixture,
        "POST",
        "/v1/admin/policies/reload",
        Some(&key),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, _) = call(&fixture, "GET", "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&fixture, "GET", "/no/such/thing", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    fixture.opened.close().await.unwrap();
}
