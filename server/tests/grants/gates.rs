//! Approval gates: an approved request lets exactly one decision through within
//! its window; self-approval is refused; vault reveals use the same gate, and
//! leases revealed under an elevation end with it.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::fixture::{Kernel, MINUTE};

async fn open_gate(kernel: &Kernel, who: &str, decision_id: &str) -> (StatusCode, Value) {
    kernel
        .call(
            who,
            "POST",
            "/v1/approvals",
            Some(json!({"decision_id": decision_id, "reason": "release 1.2"})),
        )
        .await
}

async fn review(kernel: &Kernel, who: &str, id: &str, what: &str) -> (StatusCode, Value) {
    kernel
        .call(
            who,
            "POST",
            &format!("/v1/approvals/{id}/{what}"),
            Some(json!({"comment": "looked at it"})),
        )
        .await
}

#[tokio::test]
async fn an_approved_gate_lets_exactly_one_decision_through() {
    let kernel = Kernel::start().await;
    let held = kernel
        .authorize("bob", "deploy", ("Environment", "prod"))
        .await;
    assert_eq!(held["obligations"], json!(["approval"]));
    let decision_id = held["decision_id"].as_str().unwrap().to_owned();

    // Only the principal that was decided may open the gate, once, on a gated allow.
    let (status, _) = open_gate(&kernel, "alice", &decision_id).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let staging = kernel
        .authorize("bob", "deploy", ("Environment", "staging"))
        .await;
    let (status, body) = open_gate(&kernel, "bob", staging["decision_id"].as_str().unwrap()).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("no_approval_obligation"))
    );
    let (status, gate) = open_gate(&kernel, "bob", &decision_id).await;
    assert_eq!(status, StatusCode::CREATED, "{gate}");
    let id = gate["id"].as_str().unwrap().to_owned();
    let (status, _) = open_gate(&kernel, "bob", &decision_id).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // Self-approval and reviewers that policy does not allow are refused.
    let (status, _) = review(&kernel, "bob", &id, "approve").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = review(&kernel, "carol", &id, "approve").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Not approved yet: still held.
    assert_eq!(
        kernel
            .authorize("bob", "deploy", ("Environment", "prod"))
            .await["obligations"],
        json!(["approval"])
    );

    let (status, body) = review(&kernel, "erin", &id, "approve").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "approved");
    // Exactly that action on that resource by that principal: not another one.
    assert_eq!(
        kernel
            .authorize("alice", "deploy", ("Environment", "prod"))
            .await["obligations"],
        json!(["approval"])
    );
    let used = kernel
        .authorize("bob", "deploy", ("Environment", "prod"))
        .await;
    assert_eq!(
        (used["decision"].as_str(), &used["obligations"]),
        (Some("allow"), &json!([]))
    );
    assert_eq!(used["approval"], id.as_str());
    // Once.
    let again = kernel
        .authorize("bob", "deploy", ("Environment", "prod"))
        .await;
    assert_eq!(again["obligations"], json!(["approval"]));
    assert!(again["approval"].is_null());
    let (_, shown) = kernel
        .call("bob", "GET", &format!("/v1/approvals/{id}"), None)
        .await;
    assert_eq!(
        (shown["state"].as_str(), shown["used_by_decision"].as_str()),
        (Some("used"), used["decision_id"].as_str())
    );
    let requested = kernel.index_of("approval.requested", &id);
    let approved = kernel.index_of("approval.approved", &id);
    assert!(
        requested < approved && approved < used["decision_id"].as_str().unwrap().parse().unwrap()
    );
}

#[tokio::test]
async fn an_approval_is_void_after_its_window_and_a_denied_one_never_counts() {
    let kernel = Kernel::start().await;
    let held = kernel
        .authorize("bob", "deploy", ("Environment", "prod"))
        .await;
    let (_, gate) = open_gate(&kernel, "bob", held["decision_id"].as_str().unwrap()).await;
    let id = gate["id"].as_str().unwrap().to_owned();
    let (status, _) = review(&kernel, "alice", &id, "approve").await;
    assert_eq!(status, StatusCode::OK);
    kernel.clock.advance(16 * MINUTE);
    let late = kernel
        .authorize("bob", "deploy", ("Environment", "prod"))
        .await;
    assert_eq!(late["obligations"], json!(["approval"]), "{late}");
    let expired = kernel.index_of("approval.expired", &id);
    assert!(expired < late["decision_id"].as_str().unwrap().parse().unwrap());

    let (_, gate) = open_gate(&kernel, "bob", late["decision_id"].as_str().unwrap()).await;
    let denied = gate["id"].as_str().unwrap().to_owned();
    let (status, body) = review(&kernel, "erin", &denied, "deny").await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("denied"))
    );
    let (status, _) = review(&kernel, "alice", &denied, "approve").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        kernel
            .authorize("bob", "deploy", ("Environment", "prod"))
            .await["obligations"],
        json!(["approval"])
    );
}

async fn put_secret(kernel: &Kernel) {
    let (status, body) = kernel
        .call(
            "alice",
            "PUT",
            "/v1/secrets/db-password",
            Some(json!({"value": "not-a-real-password"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
}

async fn reveal(kernel: &Kernel, who: &str) -> (StatusCode, Value) {
    kernel
        .call(
            who,
            "POST",
            "/v1/secrets/db-password/reveal",
            Some(json!({})),
        )
        .await
}

#[tokio::test]
async fn a_reveal_waits_for_its_gate_and_goes_through_once() {
    let kernel = Kernel::start().await;
    put_secret(&kernel).await;
    let (status, held) = reveal(&kernel, "bot").await;
    assert_eq!(
        (status, held["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("approval_required"))
    );
    let decision_id = held["error"]["decision_id"].as_str().unwrap().to_owned();
    let (status, gate) = open_gate(&kernel, "bot", &decision_id).await;
    assert_eq!(status, StatusCode::CREATED, "{gate}");
    let id = gate["id"].as_str().unwrap().to_owned();
    let (status, _) = review(&kernel, "bob", &id, "approve").await;
    assert_eq!(status, StatusCode::OK);
    let (status, released) = reveal(&kernel, "bot").await;
    assert_eq!(status, StatusCode::OK, "{released}");
    assert_eq!(released["value"], "not-a-real-password");
    let (status, _) = reveal(&kernel, "bot").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let entry = kernel
        .ledger()
        .into_iter()
        .find(|e| e["kind"] == "decision" && e["approval"] == id.as_str())
        .unwrap();
    assert_eq!(entry["released"], true);
}

#[tokio::test]
async fn leases_revealed_under_an_elevation_end_with_it() {
    let kernel = Kernel::start().await;
    put_secret(&kernel).await;
    let (status, _) = reveal(&kernel, "carol").await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a viewer may not reveal at all"
    );
    let (_, elevation) = kernel
        .call(
            "carol",
            "POST",
            "/v1/break-glass",
            Some(json!({"role": "admin", "reason": "rotate db creds", "duration": "1h"})),
        )
        .await;
    let elevation = elevation["id"].as_str().unwrap().to_owned();
    let (status, _) = kernel
        .call(
            "bob",
            "POST",
            &format!("/v1/break-glass/{elevation}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, held) = reveal(&kernel, "carol").await;
    let (_, gate) = open_gate(
        &kernel,
        "carol",
        held["error"]["decision_id"].as_str().unwrap(),
    )
    .await;
    let (status, _) = review(&kernel, "alice", gate["id"].as_str().unwrap(), "approve").await;
    assert_eq!(status, StatusCode::OK);
    let (status, released) = reveal(&kernel, "carol").await;
    assert_eq!(status, StatusCode::OK, "{released}");
    let lease = released["lease"]["id"].as_str().unwrap().to_owned();
    let (status, checked) = kernel
        .call("carol", "GET", &format!("/v1/vault/leases/{lease}"), None)
        .await;
    assert_eq!(
        (status, checked["live"].as_bool()),
        (StatusCode::OK, Some(true)),
        "{checked}"
    );
    let (status, _) = kernel
        .call("bob", "GET", &format!("/v1/vault/leases/{lease}"), None)
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another principal's lease is not confirmed"
    );
    let operator = kernel.operator.clone();
    let (_, leases) = kernel
        .call_as(&operator, "GET", "/v1/vault/leases", None)
        .await;
    assert!(leases.to_string().contains(&lease));

    let (status, _) = kernel
        .call(
            "alice",
            "POST",
            &format!("/v1/break-glass/{elevation}/revoke"),
            Some(json!({"reason": "done"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, leases) = kernel
        .call_as(&operator, "GET", "/v1/vault/leases", None)
        .await;
    assert!(!leases.to_string().contains(&lease), "{leases}");
    // The holder's next check is refused.
    let (status, ended) = kernel
        .call("carol", "GET", &format!("/v1/vault/leases/{lease}"), None)
        .await;
    assert_eq!(
        (status, ended["error"]["code"].as_str()),
        (StatusCode::GONE, Some("lease_ended")),
        "{ended}"
    );
    let revoked = kernel
        .ledger()
        .into_iter()
        .find(|e| e["kind"] == "break_glass.revoked" && e["id"] == elevation.as_str())
        .unwrap();
    assert_eq!(revoked["leases_revoked"], json!([lease]));
}
