//! Break-glass: the rules, the effect on the next decision, expiry without a
//! call, emergency mode, and signed approvals.

use axum::http::StatusCode;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use writ_server::config::GrantsSection;
use writ_server::grants::ledger_check::LedgerSignatureChecker;
use writ_server::grants::statement::{self, SignedStatement};

use crate::fixture::{relying, Kernel, MINUTE};

async fn request(kernel: &Kernel, who: &str, role: &str, duration: &str) -> (StatusCode, Value) {
    kernel
        .call(
            who,
            "POST",
            "/v1/break-glass",
            Some(json!({"role": role, "reason": "INC-42: the deploy pipeline is stuck", "duration": duration})),
        )
        .await
}

async fn step(
    kernel: &Kernel,
    who: &str,
    id: &str,
    what: &str,
    body: Value,
) -> (StatusCode, Value) {
    kernel
        .call(
            who,
            "POST",
            &format!("/v1/break-glass/{id}/{what}"),
            Some(body),
        )
        .await
}

fn deploy_staging(answer: &Value) -> &str {
    answer["decision"].as_str().unwrap()
}

#[tokio::test]
async fn an_approved_elevation_counts_until_revoked_and_the_ledger_brackets_it() {
    let kernel = Kernel::start().await;
    assert_eq!(
        deploy_staging(
            &kernel
                .authorize("carol", "deploy", ("Environment", "staging"))
                .await
        ),
        "deny"
    );

    let (status, elevation) = request(&kernel, "carol", "admin", "30m").await;
    assert_eq!(status, StatusCode::CREATED, "{elevation}");
    assert_eq!(elevation["state"], "pending");
    let id = elevation["id"].as_str().unwrap().to_owned();
    // Pending is not active.
    assert_eq!(
        deploy_staging(
            &kernel
                .authorize("carol", "deploy", ("Environment", "staging"))
                .await
        ),
        "deny"
    );

    // The requester never approves its own request.
    let (status, body) = step(&kernel, "carol", &id, "approve", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Policy decides who approves: a viewer may not, nor an admin of another workspace.
    let (status, body) = step(&kernel, "dave", &id, "approve", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = step(&kernel, "gina", &id, "approve", json!({})).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, body) = step(
        &kernel,
        "bob",
        &id,
        "approve",
        json!({"comment": "ok, INC-42"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "active");
    let (status, body) = step(&kernel, "alice", &id, "approve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");

    let answer = kernel
        .authorize("carol", "deploy", ("Environment", "staging"))
        .await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    assert_eq!(answer["elevation"], id.as_str());
    // The elevation is the role's, nothing more: production still needs approval.
    let prod = kernel
        .authorize("carol", "deploy", ("Environment", "prod"))
        .await;
    assert_eq!(prod["obligations"], json!(["approval"]));

    let (status, body) = step(&kernel, "carol", &id, "revoke", json!({"reason": "done"})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "revoked");
    // The very next decision is made without it.
    let after = kernel
        .authorize("carol", "deploy", ("Environment", "staging"))
        .await;
    assert_eq!(after["decision"], "deny", "{after}");
    assert!(after["elevation"].is_null());

    let activated = kernel.index_of("break_glass.activated", &id);
    let revoked = kernel.index_of("break_glass.revoked", &id);
    let requested = kernel.index_of("break_glass.requested", &id);
    assert!(requested < activated && activated < revoked);
    let relied = relying(&kernel.ledger(), "elevation", &id);
    assert_eq!(relied.len(), 2, "{relied:?}");
    assert!(
        relied.iter().all(|&i| activated < i && i < revoked),
        "{relied:?} not in ({activated}, {revoked})"
    );
}

#[tokio::test]
async fn the_rules_refuse_bad_requests() {
    let kernel = Kernel::start().await;
    let (status, body) = request(&kernel, "carol", "admin", "5h").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "duration_too_long");
    let (status, body) = kernel
        .call(
            "carol",
            "POST",
            "/v1/break-glass",
            Some(json!({"role": "admin", "reason": "  ", "duration": "30m"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("reason_required"))
    );
    let (status, body) = kernel
        .call(
            "carol",
            "POST",
            "/v1/break-glass",
            Some(json!({"role": "admin", "duration": "30m"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = request(&kernel, "carol", "superuser", "30m").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("unknown_role"))
    );
    let (status, body) = request(&kernel, "carol", "admin", "soon").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_duration"))
    );
    // Agents do not break glass.
    let (status, _) = request(&kernel, "bot", "admin", "30m").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Emergency mode is off by default.
    let (status, body) = kernel
        .call(
            "dave",
            "POST",
            "/v1/break-glass",
            Some(json!({"role": "admin", "reason": "pager", "duration": "30m", "emergency": true})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("emergency_disabled"))
    );
    // Nothing was requested by any of these.
    let (_, list) = kernel.call("alice", "GET", "/v1/break-glass", None).await;
    assert_eq!(list["elevations"], json!([]));
}

#[tokio::test]
async fn elevations_and_pending_requests_expire_without_any_call() {
    let kernel = Kernel::start().await;
    let (_, elevation) = request(&kernel, "carol", "admin", "30m").await;
    let id = elevation["id"].as_str().unwrap().to_owned();
    let (status, _) = step(&kernel, "bob", &id, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, stale) = request(&kernel, "carol", "planner", "30m").await;
    let stale = stale["id"].as_str().unwrap().to_owned();
    assert_eq!(
        kernel
            .authorize("carol", "deploy", ("Environment", "staging"))
            .await["decision"],
        "allow"
    );

    kernel.clock.advance(31 * MINUTE);
    // No call at all: the sweeper records the expiry on its own.
    let mut waited = 0;
    while !kernel
        .ledger()
        .iter()
        .any(|e| e["kind"] == "break_glass.expired" && e["id"] == id.as_str())
    {
        assert!(waited < 50, "the expiry was never recorded");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        waited += 1;
    }
    let answer = kernel
        .authorize("carol", "deploy", ("Environment", "staging"))
        .await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    let expired = kernel.index_of("break_glass.expired", &id);
    assert!(relying(&kernel.ledger(), "elevation", &id)
        .iter()
        .all(|&i| i < expired));

    // The pending request ran out too (after its hour), and can no longer be approved.
    kernel.clock.advance(30 * MINUTE);
    let (status, body) = step(&kernel, "bob", &stale, "approve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (_, shown) = kernel
        .call("carol", "GET", &format!("/v1/break-glass/{stale}"), None)
        .await;
    assert_eq!(shown["state"], "expired");
    let (_, expired_list) = kernel
        .call("carol", "GET", "/v1/break-glass?state=expired", None)
        .await;
    assert_eq!(expired_list["elevations"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn emergency_activation_is_flagged_until_someone_else_reviews_it() {
    let kernel = Kernel::start_with(GrantsSection {
        break_glass_emergency: Some(true),
        ..GrantsSection::default()
    })
    .await;
    let emergency =
        json!({"role": "admin", "reason": "pager: db down", "duration": "15m", "emergency": true});
    // Only an on-call User may.
    let (status, _) = kernel
        .call("carol", "POST", "/v1/break-glass", Some(emergency.clone()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, elevation) = kernel
        .call("dave", "POST", "/v1/break-glass", Some(emergency))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{elevation}");
    assert_eq!(
        (
            elevation["state"].as_str(),
            elevation["emergency"].as_bool()
        ),
        (Some("active"), Some(true))
    );
    let id = elevation["id"].as_str().unwrap().to_owned();
    assert_eq!(
        kernel
            .authorize("dave", "deploy", ("Environment", "staging"))
            .await["elevation"],
        id.as_str()
    );

    let (_, unreviewed) = kernel
        .call("alice", "GET", "/v1/break-glass?unreviewed=true", None)
        .await;
    assert_eq!(unreviewed["elevations"].as_array().unwrap().len(), 1);
    let (status, _) = step(
        &kernel,
        "dave",
        &id,
        "review",
        json!({"comment": "fine by me"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = step(
        &kernel,
        "alice",
        &id,
        "review",
        json!({"comment": "checked the runbook"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, unreviewed) = kernel
        .call("alice", "GET", "/v1/break-glass?unreviewed=true", None)
        .await;
    assert_eq!(unreviewed["elevations"], json!([]));
    assert!(
        kernel.index_of("break_glass.reviewed", &id)
            > kernel.index_of("break_glass.activated", &id)
    );
}

fn signed(key: &SigningKey, kind: &str, actor: &str, subject: &str, comment: &str) -> Value {
    let statement = statement::decision_statement(kind, actor, "acme", subject, comment);
    serde_json::to_value(SignedStatement::sign(key, statement)).unwrap()
}

#[tokio::test]
async fn owner_elevations_need_signed_approvals() {
    let kernel = Kernel::start().await;
    let bob_key = SigningKey::from_bytes(&[7u8; 32]);
    let mallory_key = SigningKey::from_bytes(&[9u8; 32]);
    let public = statement::public_key_base64(&bob_key.verifying_key());
    let (status, body) = kernel
        .call(
            "bob",
            "PUT",
            "/v1/signing-key",
            Some(json!({"public_key": public})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, me) = kernel.call("bob", "GET", "/v1/whoami", None).await;
    assert_eq!(
        (status, me["principal"].as_str(), me["workspace"].as_str()),
        (StatusCode::OK, Some("User::\"bob\""), Some("acme"))
    );
    let (status, elevation) = request(&kernel, "carol", "owner", "30m").await;
    assert_eq!(status, StatusCode::CREATED, "{elevation}");
    assert_eq!(elevation["signed_approvals"], true);
    let id = elevation["id"].as_str().unwrap().to_owned();

    let (status, body) = step(&kernel, "bob", &id, "approve", json!({})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("signature_required"))
    );
    let forged = signed(
        &mallory_key,
        "break_glass.approve",
        "User::\"bob\"",
        &id,
        "",
    );
    let (status, body) = step(&kernel, "bob", &id, "approve", json!({"signature": forged})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("bad_signature")),
        "{body}"
    );
    // A good signature over another request does not transfer.
    let elsewhere = signed(
        &bob_key,
        "break_glass.approve",
        "User::\"bob\"",
        "bg_00000000000000000000000000000000",
        "",
    );
    let (status, _) = step(
        &kernel,
        "bob",
        &id,
        "approve",
        json!({"signature": elsewhere}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        kernel
            .authorize("carol", "billing.update", ("Workspace", "acme"))
            .await["decision"],
        "deny"
    );

    let good = signed(
        &bob_key,
        "break_glass.approve",
        "User::\"bob\"",
        &id,
        "INC-7",
    );
    let (status, body) = step(
        &kernel,
        "bob",
        &id,
        "approve",
        json!({"comment": "INC-7", "signature": good}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "active");
    let approved = kernel
        .ledger()
        .into_iter()
        .find(|e| e["kind"] == "break_glass.approved" && e["id"] == id.as_str())
        .unwrap();
    assert_eq!(
        approved["signature"]["key_id"],
        statement::key_id(&bob_key.verifying_key())
    );
    // The whole ledger passes the offline signature check.
    let mut checker = LedgerSignatureChecker::new();
    for (index, entry) in kernel.ledger().iter().enumerate() {
        checker
            .check(index as u64, entry.to_string().as_bytes())
            .unwrap();
    }
}

#[tokio::test]
async fn two_approvals_when_configured_each_by_a_different_approver() {
    let kernel = Kernel::start_with(GrantsSection {
        break_glass_approvals: Some(2),
        break_glass_max_duration: Some("1h".into()),
        ..GrantsSection::default()
    })
    .await;
    let (status, body) = request(&kernel, "carol", "admin", "2h").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("duration_too_long"))
    );
    let (_, elevation) = request(&kernel, "carol", "admin", "45m").await;
    assert_eq!(elevation["approvals_required"], 2);
    let id = elevation["id"].as_str().unwrap().to_owned();
    let (_, first) = step(&kernel, "bob", &id, "approve", json!({})).await;
    assert_eq!(first["state"], "pending");
    let (status, _) = step(&kernel, "bob", &id, "approve", json!({})).await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "the same approver counts once"
    );
    assert_eq!(
        kernel
            .authorize("carol", "deploy", ("Environment", "staging"))
            .await["decision"],
        "deny"
    );
    let (_, second) = step(&kernel, "alice", &id, "approve", json!({})).await;
    assert_eq!(second["state"], "active");
    assert_eq!(
        kernel
            .authorize("carol", "deploy", ("Environment", "staging"))
            .await["decision"],
        "allow"
    );
}

#[tokio::test]
async fn a_denied_request_never_activates() {
    let kernel = Kernel::start().await;
    let (_, elevation) = request(&kernel, "carol", "admin", "30m").await;
    let id = elevation["id"].as_str().unwrap().to_owned();
    let (status, _) = step(&kernel, "carol", &id, "deny", json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = step(
        &kernel,
        "alice",
        &id,
        "deny",
        json!({"comment": "use the runbook"}),
    )
    .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("denied"))
    );
    let (status, _) = step(&kernel, "bob", &id, "approve", json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(
        kernel
            .authorize("carol", "deploy", ("Environment", "staging"))
            .await["decision"],
        "deny"
    );
    let denied = kernel
        .ledger()
        .into_iter()
        .find(|e| e["kind"] == "break_glass.denied")
        .unwrap();
    assert_eq!(
        (denied["id"].as_str(), denied["comment"].as_str()),
        (Some(id.as_str()), Some("use the runbook"))
    );
}

#[tokio::test]
async fn an_elevation_leaves_nothing_behind_it() {
    let kernel = Kernel::start().await;
    let (_, elevation) = request(&kernel, "carol", "admin", "30m").await;
    let id = elevation["id"].as_str().unwrap().to_owned();
    let (status, _) = step(&kernel, "bob", &id, "approve", json!({})).await;
    assert_eq!(status, StatusCode::OK);

    // Elevated to admin, carol may not make herself owner for good...
    let promoted = json!({"uid": {"type": "User", "id": "carol"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}}, "parents": [{"type": "Role", "id": "owner"}]});
    let (status, body) = kernel
        .call("carol", "PUT", "/v1/entities", Some(promoted))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("self_modification"))
    );
    // ...nor mint a key that would outlive the elevation.
    let (status, body) = kernel
        .call(
            "carol",
            "POST",
            "/v1/apikeys",
            Some(json!({"principal": "Agent::\"helper\"", "workspace": "acme"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("not_under_elevation")),
        "{body}"
    );
    // A standing admin still may (the rule is about the elevation).
    let (status, body) = kernel
        .call(
            "bob",
            "POST",
            "/v1/apikeys",
            Some(json!({"principal": "Agent::\"helper\"", "workspace": "acme"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // Nor can anyone hand the PDP a grant of its own making.
    let forged = json!({"uid": {"type": "Elevation", "id": "bg_forged"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}, "requester": {"__entity": {"type": "User", "id": "carol"}}, "role": {"__entity": {"type": "Role", "id": "owner"}}}, "parents": []});
    let (status, _) = kernel
        .call("erin", "POST", "/v1/authorize", Some(json!({"action": "break-glass.approve", "resource": {"type": "Elevation", "id": "bg_forged"}, "entities": [forged.clone()]})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let operator = kernel.operator.clone();
    let (status, _) = kernel
        .call_as(&operator, "PUT", "/v1/entities", Some(forged))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
}
