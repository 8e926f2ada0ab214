//! The token gate without a port (`oneshot`): a route that needs a token answers
//! 401 without polling the body, two `Authorization` headers are a 400, the open
//! routes need no token; an unseal whose client went away during Argon2 is still
//! recorded; and the `[http]` and `[vault]` sections of the config.
#![cfg(test)]

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::{json, Value};
use tower::ServiceExt as _;
use writ_ledger::store::LedgerStore as _;
use writ_ledger::LeafIndex;
use writ_server::config::{FileConfig, HttpSection, VaultSection};
use writ_server::vault::unseal_guard::Refusal;

mod common;

use common::{fixture, Fixture};

/// A body that never sends anything and remembers whether it was polled.
struct Untouched(Arc<AtomicBool>);

impl http_body::Body for Untouched {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        self.0.store(true, Ordering::SeqCst);
        Poll::Pending
    }
}

async fn send(fixture: &Fixture, request: Request<Body>) -> (StatusCode, Value) {
    // A handler that reads the body first would wait for it forever.
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        fixture.opened.router.clone().oneshot(request),
    )
    .await
    .expect("an answer without waiting for the body")
    .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn the_token_is_checked_before_the_body_is_read() {
    let fixture = fixture().await;
    for (path, method) in [
        ("/v1/authorize", "POST"),
        ("/v1/entities", "PUT"),
        ("/v1/vault/unseal", "POST"),
        ("/v1/secrets/db", "PUT"),
    ] {
        for token in [
            None,
            Some("writ_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ] {
            let polled = Arc::new(AtomicBool::new(false));
            let mut request = Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json")
                .header("content-length", "1048576");
            if let Some(token) = token {
                request = request.header("authorization", format!("Bearer {token}"));
            }
            let request = request
                .body(Body::new(Untouched(Arc::clone(&polled))))
                .unwrap();
            let (status, answer) = send(&fixture, request).await;
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path}: {answer}"
            );
            assert!(
                !polled.load(Ordering::SeqCst),
                "{method} {path}: the body was read before the token was refused"
            );
        }
    }
    fixture.opened.close().await.unwrap();
}

#[tokio::test]
async fn two_authorization_headers_are_a_400() {
    let fixture = fixture().await;
    let token = format!("Bearer {}", fixture.operator);
    let polled = Arc::new(AtomicBool::new(false));
    let request = Request::builder()
        .method("POST")
        .uri("/v1/authorize")
        .header("content-type", "application/json")
        .header("authorization", &token)
        .header("authorization", &token)
        .body(Body::new(Untouched(Arc::clone(&polled))))
        .unwrap();
    let (status, answer) = send(&fixture, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "duplicate_authorization");
    assert!(!polled.load(Ordering::SeqCst));

    // One header is fine, and a malformed body is then found.
    let request = Request::builder()
        .method("POST")
        .uri("/v1/authorize")
        .header("content-type", "application/json")
        .header("authorization", &token)
        .body(Body::from("{\"action\":"))
        .unwrap();
    let (status, answer) = send(&fixture, request).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    assert_eq!(answer["error"]["code"], "malformed_json");
    fixture.opened.close().await.unwrap();
}

#[tokio::test]
async fn the_open_routes_need_no_token() {
    let fixture = fixture().await;
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.json",
        "/v1/vault/status",
        "/ledger/checkpoint",
    ] {
        let request = Request::builder().uri(path).body(Body::empty()).unwrap();
        let (status, answer) = send(&fixture, request).await;
        assert_eq!(status, StatusCode::OK, "{path}: {answer}");
    }
    let request = Request::builder()
        .uri("/v1/whoami")
        .body(Body::empty())
        .unwrap();
    let (status, answer) = send(&fixture, request).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{answer}");
    assert_eq!(answer["error"]["code"], "missing_token");
    fixture.opened.close().await.unwrap();
}

/// A JSON request with the operator's token.
fn operator_post(fixture: &Fixture, path: &str, body: &Value) -> Request<Body> {
    Request::builder()
        .method("POST")
        .uri(path)
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {}", fixture.operator))
        .body(Body::from(body.to_string()))
        .unwrap()
}

/// The stored entries of `kind`, as text.
fn entries_of(fixture: &Fixture, kind: &str) -> Vec<String> {
    fixture
        .opened
        .state
        .ledger_store
        .entries_from(LeafIndex(0))
        .map(|item| String::from_utf8(item.unwrap().1).unwrap())
        .filter(|entry| entry.contains(kind))
        .collect()
}

#[tokio::test]
async fn an_unseal_whose_client_went_away_is_still_recorded() {
    let fixture = fixture().await;
    let right = json!({"passphrase": "correct horse battery staple"});
    let (status, answer) = send(
        &fixture,
        operator_post(&fixture, "/v1/vault/sealer", &right),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let (status, answer) = send(
        &fixture,
        operator_post(&fixture, "/v1/vault/seal", &json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    // The client goes away while Argon2 runs: hyper drops the handler's future.
    let wrong = operator_post(
        &fixture,
        "/v1/vault/unseal",
        &json!({"passphrase": "wrong guess"}),
    );
    let dropped = tokio::time::timeout(
        Duration::from_millis(20),
        fixture.opened.router.clone().oneshot(wrong),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the attempt ended within 20 ms: nothing was dropped"
    );
    let vault = &fixture.opened.state.vault;
    assert_eq!(
        vault
            .unseal_guard
            .try_begin(std::time::Instant::now())
            .unwrap_err(),
        Refusal::Busy,
        "the request was dropped while its attempt ran"
    );

    // The attempt ends, and is recorded, all the same.
    let started = std::time::Instant::now();
    while entries_of(&fixture, "vault.unseal_failed").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no `vault.unseal_failed` entry for an attempt whose client went away"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recorded = entries_of(&fixture, "vault.unseal_failed");
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert!(recorded[0].contains("passphrase") && !recorded[0].contains("wrong guess"));
    assert_eq!(vault.unseal_guard.failures(), 1);
    fixture.opened.close().await.unwrap();
}

#[test]
fn the_vault_section_sets_the_unseal_backoff() {
    let default = VaultSection::default().unseal_backoff_base().unwrap();
    assert_eq!(default, Duration::from_secs(1));
    let file: FileConfig = toml::from_str("[vault]\nunseal_backoff_base = \"3s\"\n").unwrap();
    assert_eq!(
        file.vault.unwrap().unseal_backoff_base().unwrap(),
        Duration::from_secs(3)
    );
    for bad in ["\"10ms\"", "\"2m\"", "\"soon\""] {
        let file: FileConfig =
            toml::from_str(&format!("[vault]\nunseal_backoff_base = {bad}\n")).unwrap();
        assert!(file.vault.unwrap().unseal_backoff_base().is_err(), "{bad}");
    }
    assert!(toml::from_str::<FileConfig>("[vault]\nbackoff = \"1s\"\n").is_err());
}

#[test]
fn the_http_section_has_defaults_and_refuses_nonsense() {
    let limits = HttpSection::default().resolve().unwrap();
    assert_eq!(limits.header_read_timeout.as_secs(), 5);
    assert_eq!(limits.idle_timeout.as_secs(), 60);
    assert_eq!(limits.body_read_timeout.as_secs(), 30);
    assert_eq!(limits.shutdown_drain.as_secs(), 10);
    assert!((1..=10_000).contains(&limits.max_connections));

    let file: FileConfig = toml::from_str(
        "[http]\nheader_read_timeout = \"2s\"\nidle_timeout = \"1m\"\nmax_connections = 64\nshutdown_drain = \"3s\"\n",
    )
    .unwrap();
    let limits = file.http.unwrap().resolve().unwrap();
    assert_eq!(limits.shutdown_drain.as_secs(), 3);
    assert_eq!(limits.header_read_timeout.as_secs(), 2);
    assert_eq!(limits.idle_timeout.as_secs(), 60);
    assert_eq!(limits.max_connections, 64);

    for bad in [
        "header_read_timeout = \"0s\"",
        "idle_timeout = \"soon\"",
        "body_read_timeout = \"2h\"",
        "max_connections = 0",
        "shutdown_drain = \"0s\"",
    ] {
        let file: FileConfig = toml::from_str(&format!("[http]\n{bad}\n")).unwrap();
        assert!(file.http.unwrap().resolve().is_err(), "{bad}");
    }
    assert!(toml::from_str::<FileConfig>("[http]\nheader_timeout = \"5s\"\n").is_err());
}
