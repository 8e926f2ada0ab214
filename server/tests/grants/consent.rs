//! Consents: a grantee does exactly what a live consent covers, until it is
//! revoked or expires; a consent never carries a role or an admin action.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::fixture::{relying, Kernel, MINUTE};

fn grant_body(grantee: &str, actions: &[&str], resources: &[&str], duration: &str) -> Value {
    json!({"grantee": grantee, "actions": actions, "resources": resources, "duration": duration, "reason": "triage bot"})
}

#[tokio::test]
async fn a_grantee_does_exactly_what_a_live_consent_covers() {
    let kernel = Kernel::start().await;
    assert_eq!(
        kernel
            .authorize("helper", "integration.read", ("Integration", "gh"))
            .await["decision"],
        "deny"
    );
    let (status, consent) = kernel
        .call(
            "alice",
            "POST",
            "/v1/consents",
            Some(grant_body(
                "Agent::\"helper\"",
                &["integration.read"],
                &["Integration::\"gh\""],
                "2h",
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{consent}");
    let id = consent["id"].as_str().unwrap().to_owned();

    let allowed = kernel
        .authorize("helper", "integration.read", ("Integration", "gh"))
        .await;
    assert_eq!(
        (allowed["decision"].as_str(), allowed["consent"].as_str()),
        (Some("allow"), Some(id.as_str()))
    );
    // Not another resource, not another action, not another principal.
    assert_eq!(
        kernel
            .authorize("helper", "integration.read", ("Integration", "jira"))
            .await["decision"],
        "deny"
    );
    assert_eq!(
        kernel.authorize("helper", "read", ("WorkItem", "w1")).await["decision"],
        "deny"
    );
    assert!(kernel
        .authorize("bot", "integration.read", ("Integration", "gh"))
        .await["consent"]
        .is_null());
    // The caller cannot claim a consent through its context.
    let (status, body) = kernel
        .call("helper", "POST", "/v1/authorize", Some(json!({"action": "integration.read", "resource": {"type": "Integration", "id": "jira"}, "context": {"consent": {"__entity": {"type": "Consent", "id": id}}}})))
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::BAD_REQUEST, Some("kernel_fact_in_context"))
    );

    // Only the grantor or an owner revokes.
    let (status, _) = kernel
        .call("carol", "DELETE", &format!("/v1/consents/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = kernel
        .call("alice", "DELETE", &format!("/v1/consents/{id}"), None)
        .await;
    assert_eq!(
        (status, body["state"].as_str()),
        (StatusCode::OK, Some("revoked")),
        "{body}"
    );
    assert_eq!(
        kernel
            .authorize("helper", "integration.read", ("Integration", "gh"))
            .await["decision"],
        "deny"
    );
    let granted = kernel.index_of("consent.granted", &id);
    let revoked = kernel.index_of("consent.revoked", &id);
    let relied = relying(&kernel.ledger(), "consent", &id);
    assert_eq!(relied.len(), 1);
    assert!(relied.iter().all(|&i| granted < i && i < revoked));
}

#[tokio::test]
async fn a_consent_expires_on_its_own() {
    let kernel = Kernel::start().await;
    let (status, consent) = kernel
        .call(
            "alice",
            "POST",
            "/v1/consents",
            Some(grant_body(
                "Agent::\"helper\"",
                &["integration.read"],
                &["Integration::\"gh\""],
                "10m",
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{consent}");
    let id = consent["id"].as_str().unwrap().to_owned();
    assert_eq!(
        kernel
            .authorize("helper", "integration.read", ("Integration", "gh"))
            .await["decision"],
        "allow"
    );
    kernel.clock.advance(11 * MINUTE);
    let answer = kernel
        .authorize("helper", "integration.read", ("Integration", "gh"))
        .await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert!(
        kernel.index_of("consent.expired", &id)
            < answer["decision_id"].as_str().unwrap().parse().unwrap()
    );
}

#[tokio::test]
async fn a_consent_never_carries_a_role_or_an_admin_action() {
    let kernel = Kernel::start().await;
    let cases = [
        (
            grant_body(
                "Role::\"admin\"",
                &["integration.read"],
                &["Integration::\"gh\""],
                "1h",
            ),
            "consent_carries_role",
        ),
        (
            grant_body(
                "Agent::\"helper\"",
                &["integration.read"],
                &["Role::\"admin\""],
                "1h",
            ),
            "consent_carries_role",
        ),
        (
            json!({"grantee": "Agent::\"helper\"", "actions": ["integration.read"], "resources": ["Integration::\"gh\""], "duration": "1h", "role": "admin"}),
            "consent_carries_role",
        ),
        (
            grant_body(
                "Agent::\"helper\"",
                &["admin.entities.write"],
                &["Integration::\"gh\""],
                "1h",
            ),
            "consent_carries_admin",
        ),
        (
            grant_body(
                "Agent::\"helper\"",
                &["break-glass.approve"],
                &["Integration::\"gh\""],
                "1h",
            ),
            "consent_carries_admin",
        ),
        (
            grant_body(
                "Agent::\"helper\"",
                &["integration.read"],
                &["Integration::\"gh\""],
                "90d",
            ),
            "duration_too_long",
        ),
        (
            grant_body(
                "Agent::\"nobody\"",
                &["integration.read"],
                &["Integration::\"gh\""],
                "1h",
            ),
            "unknown_grantee",
        ),
        (
            grant_body(
                "Agent::\"helper\"",
                &["integration.read"],
                &["Integration::\"nope\""],
                "1h",
            ),
            "unknown_resource",
        ),
        (
            grant_body(
                "Agent::\"helper\"",
                &["export"],
                &["Workspace::\"acme\""],
                "1h",
            ),
            "resource_not_consentable",
        ),
    ];
    for (body, code) in cases {
        let (status, answer) = kernel
            .call("alice", "POST", "/v1/consents", Some(body.clone()))
            .await;
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some(code)),
            "{body}: {answer}"
        );
    }
    // Only an owner (as policy says) grants: a viewer may not, and no one grants what it may not do.
    let (status, _) = kernel
        .call(
            "carol",
            "POST",
            "/v1/consents",
            Some(grant_body(
                "Agent::\"helper\"",
                &["integration.read"],
                &["Integration::\"gh\""],
                "1h",
            )),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, list) = kernel.call("alice", "GET", "/v1/consents", None).await;
    assert_eq!(list["consents"], json!([]));
    assert!(!kernel
        .ledger()
        .iter()
        .any(|e| e["kind"] == "consent.granted"));
}

#[tokio::test]
async fn a_consent_ends_with_its_grantors_right_to_give_it() {
    let kernel = Kernel::start().await;
    let (status, consent) = kernel
        .call(
            "alice",
            "POST",
            "/v1/consents",
            Some(grant_body(
                "Agent::\"helper\"",
                &["integration.read"],
                &["Integration::\"gh\""],
                "2h",
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{consent}");
    assert_eq!(
        kernel
            .authorize("helper", "integration.read", ("Integration", "gh"))
            .await["decision"],
        "allow"
    );
    // alice is no longer an owner (olive is, as a workspace keeps one): what she
    // granted no longer counts.
    let operator = kernel.operator.clone();
    let olive = json!({"uid": {"type": "User", "id": "olive"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}}, "parents": [{"type": "Role", "id": "owner"}]});
    let (status, body) = kernel
        .call_as(&operator, "PUT", "/v1/entities", Some(olive))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let demoted = json!({"uid": {"type": "User", "id": "alice"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}}, "parents": [{"type": "Role", "id": "viewer"}]});
    let (status, body) = kernel
        .call_as(&operator, "PUT", "/v1/entities", Some(demoted))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        kernel
            .authorize("helper", "integration.read", ("Integration", "gh"))
            .await["decision"],
        "deny"
    );
}

#[tokio::test]
async fn the_grantor_of_a_consent_never_approves_what_it_let_happen() {
    let kernel = Kernel::start().await;
    let (status, consent) = kernel
        .call(
            "alice",
            "POST",
            "/v1/consents",
            Some(grant_body(
                "Agent::\"helper\"",
                &["deploy"],
                &["Environment::\"prod\""],
                "1h",
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{consent}");
    let held = kernel
        .authorize("helper", "deploy", ("Environment", "prod"))
        .await;
    assert_eq!(
        (held["decision"].as_str(), &held["obligations"]),
        (Some("allow"), &json!(["approval"]))
    );
    let (status, gate) = kernel
        .call(
            "helper",
            "POST",
            "/v1/approvals",
            Some(json!({"decision_id": held["decision_id"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{gate}");
    assert_eq!(gate["consent_grantor"], "User::\"alice\"");
    let id = gate["id"].as_str().unwrap().to_owned();
    let (status, body) = kernel
        .call(
            "alice",
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, body) = kernel
        .call(
            "erin",
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
