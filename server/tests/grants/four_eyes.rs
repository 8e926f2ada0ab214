//! Four eyes per person, not per token: role changes are decisions of their own,
//! a User's API keys are its own (or an operator's to make), and a member someone
//! just made cannot approve what that someone asked for.

use axum::http::StatusCode;
use serde_json::{json, Value};

use crate::fixture::{user, Kernel, MINUTE};

const DAY: u64 = 24 * 60 * MINUTE;

async fn put(kernel: &Kernel, who: &str, entity: Value) -> (StatusCode, Value) {
    kernel.call(who, "PUT", "/v1/entities", Some(entity)).await
}

async fn mint(kernel: &Kernel, who: &str, principal: &str) -> (StatusCode, Value) {
    kernel
        .call(
            who,
            "POST",
            "/v1/apikeys",
            Some(json!({"principal": principal, "workspace": "acme"})),
        )
        .await
}

fn code(body: &Value) -> Option<&str> {
    body["error"]["code"].as_str()
}

/// A refusal by the policies that keep a new member from vouching for its maker
/// (a recorded deny; the kernel's own `new_member_cooldown` is the backstop).
fn refused_as_new_member(status: StatusCode, body: &Value) {
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("new-member-cannot-approve-maker"),
        "{body}"
    );
}

async fn break_glass(kernel: &Kernel, who: &str) -> String {
    let (status, body) = kernel
        .call(
            who,
            "POST",
            "/v1/break-glass",
            Some(
                json!({"role": "admin", "reason": "INC-7: the queue is stuck", "duration": "30m"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn approve_break_glass(kernel: &Kernel, who: &str, id: &str) -> (StatusCode, Value) {
    kernel
        .call(
            who,
            "POST",
            &format!("/v1/break-glass/{id}/approve"),
            Some(json!({"comment": "ok"})),
        )
        .await
}

/// The entries of `kind` about `subject`.
fn role_entries(kernel: &Kernel, kind: &str, subject: &str) -> Vec<Value> {
    kernel
        .ledger()
        .into_iter()
        .filter(|e| e["kind"] == kind && e["subject"] == subject)
        .collect()
}

#[tokio::test]
async fn an_admin_cannot_make_a_puppet_owner_nor_act_through_one() {
    let mut kernel = Kernel::start().await;

    // Step 1: a new User with the owner role, made by an admin: refused, recorded.
    let (status, body) = put(&kernel, "bob", user("bob2", "acme", &["owner"])).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = kernel
        .call("alice", "GET", "/v1/entities/User::\"bob2\"", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    let denied: Vec<Value> = kernel
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "admin.roles.assign" && e["actor"] == "User::\"bob\"")
        .collect();
    assert_eq!(denied.len(), 1, "{denied:?}");
    assert_eq!(denied[0]["decision"], "deny");
    assert!(role_entries(&kernel, "role.assigned", "User::\"bob2\"").is_empty());

    // Nor may the admin promote an existing member, or demote the owner.
    let (status, _) = put(&kernel, "bob", user("carol", "acme", &["owner"])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = put(&kernel, "bob", user("erin", "acme", &["admin"])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = put(&kernel, "bob", user("alice", "acme", &["viewer"])).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // An admin still onboards a reviewer...
    let (status, body) = put(&kernel, "bob", user("bob2", "acme", &["reviewer"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let given = role_entries(&kernel, "role.assigned", "User::\"bob2\"");
    assert_eq!(given.len(), 1);
    assert_eq!(
        (&given[0]["role"], &given[0]["actor"]),
        (&json!("reviewer"), &json!("User::\"bob\""))
    );

    // Step 2: ...but never mints a User's key: not the puppet's, not anyone's.
    for subject in ["User::\"bob2\"", "User::\"carol\"", "User::\"alice\""] {
        let (status, body) = mint(&kernel, "bob", subject).await;
        assert_eq!(
            (status, code(&body)),
            (StatusCode::FORBIDDEN, Some("user_keys_self_service")),
            "{subject}: {body}"
        );
    }
    // Agents' keys are the admins' to make.
    let (status, body) = mint(&kernel, "bob", "Agent::\"bot\"").await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Step 3: even with a key from elsewhere (an operator, an IdP), the puppet does
    // not approve its maker's held action until the cooldown is over.
    kernel.mint("User::\"bob2\"", "acme").await;
    let held = kernel
        .authorize("bob", "deploy", ("Environment", "prod"))
        .await;
    assert_eq!(held["obligations"], json!(["approval"]));
    let (status, gate) = kernel
        .call(
            "bob",
            "POST",
            "/v1/approvals",
            Some(json!({"decision_id": held["decision_id"], "reason": "release"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{gate}");
    let gate_id = gate["id"].as_str().unwrap();
    let (status, body) = kernel
        .call(
            "bob2",
            "POST",
            &format!("/v1/approvals/{gate_id}/approve"),
            Some(json!({})),
        )
        .await;
    refused_as_new_member(status, &body);
    // Someone bob did not make approves as before.
    let (status, body) = kernel
        .call(
            "erin",
            "POST",
            &format!("/v1/approvals/{gate_id}/approve"),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Nor does the puppet approve bob's work: policy sees `context.made_by`.
    let work = json!({"uid": {"type": "WorkItem", "id": "w-bob"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}, "submitter_user": {"type": "User", "id": "bob"}}, "parents": []});
    let (status, body) = put(&kernel, "alice", work).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = kernel
        .authorize("bob2", "workitem.approve", ("WorkItem", "w-bob"))
        .await;
    assert_eq!(answer["decision"], "deny", "{answer}");
    assert_eq!(
        answer["reasons"],
        json!(["sod-new-member-cannot-approve-maker"])
    );
    let answer = kernel
        .authorize("erin", "workitem.approve", ("WorkItem", "w-bob"))
        .await;
    assert_eq!(answer["decision"], "allow", "{answer}");
    // The fact is the kernel's: a caller cannot say who made it.
    let (status, body) = kernel
        .call(
            "bob2",
            "POST",
            "/v1/authorize",
            Some(json!({"action": "workitem.approve", "resource": {"type": "WorkItem", "id": "w-bob"}, "context": {"made_by": []}})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::BAD_REQUEST, Some("kernel_fact_in_context"))
    );
    kernel.clock.advance(DAY + MINUTE);
    let answer = kernel
        .authorize("bob2", "workitem.approve", ("WorkItem", "w-bob"))
        .await;
    assert_eq!(answer["decision"], "allow", "after the cooldown: {answer}");
}

#[tokio::test]
async fn an_owner_onboards_a_second_owner_who_approves_after_the_cooldown() {
    let mut kernel = Kernel::start().await;
    let (status, body) = put(&kernel, "alice", user("olive", "acme", &["owner"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let given = role_entries(&kernel, "role.assigned", "User::\"olive\"");
    assert_eq!(given.len(), 1, "the ledger shows the role change");
    assert_eq!(given[0]["role"], "owner");
    assert_eq!(given[0]["actor"], "User::\"alice\"");
    assert_eq!(given[0]["role_workspace"], "acme");
    let decided: Vec<Value> = kernel
        .ledger()
        .into_iter()
        .filter(|e| e["action"] == "admin.roles.assign" && e["actor"] == "User::\"alice\"")
        .collect();
    assert_eq!(decided.len(), 1);
    assert_eq!(decided[0]["reasons"], json!(["roles-owner"]));
    assert!(decided[0]["index"].as_u64() < given[0]["index"].as_u64());

    kernel.mint("User::\"olive\"", "acme").await;
    let first = break_glass(&kernel, "alice").await;
    let (status, body) = approve_break_glass(&kernel, "olive", &first).await;
    refused_as_new_member(status, &body);
    // Others' requests are not affected: olive approves carol's at once.
    let carols = break_glass(&kernel, "carol").await;
    let (status, body) = approve_break_glass(&kernel, "olive", &carols).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Grant steps name the credential that took them, as decisions do.
    let approved: Vec<Value> = kernel
        .ledger()
        .into_iter()
        .filter(|e| e["kind"] == "break_glass.approved" && e["id"] == carols.as_str())
        .collect();
    assert_eq!(approved.len(), 1);
    assert_eq!(approved[0]["credential"]["type"], "api_key", "{approved:?}");

    kernel.clock.advance(DAY + MINUTE);
    let second = break_glass(&kernel, "alice").await;
    let (status, body) = approve_break_glass(&kernel, "olive", &second).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn the_last_owner_stays_and_nobody_changes_their_own_roles() {
    let kernel = Kernel::start().await;
    let operator = kernel.operator.clone();
    // alice is acme's only owner: not even an operator takes it away.
    let (status, body) = kernel
        .call_as(
            &operator,
            "PUT",
            "/v1/entities",
            Some(user("alice", "acme", &["viewer"])),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("last_owner")),
        "{body}"
    );
    let (status, body) = kernel
        .call_as(&operator, "DELETE", "/v1/entities/User::\"alice\"", None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("last_owner")),
        "{body}"
    );
    // Nobody edits their own roles, owner or not.
    let (status, body) = put(&kernel, "alice", user("alice", "acme", &["owner", "admin"])).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("self_modification"))
    );
    // With a second owner, the first can be demoted by the second.
    let (status, _) = put(&kernel, "alice", user("olive", "acme", &["owner"])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = kernel
        .call_as(
            &operator,
            "PUT",
            "/v1/entities",
            Some(user("alice", "acme", &["admin"])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let removed = role_entries(&kernel, "role.removed", "User::\"alice\"");
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0]["role"], "owner");
}

#[tokio::test]
async fn keys_are_self_service_and_entries_name_the_key_that_acted() {
    let kernel = Kernel::start().await;
    // A viewer mints its own key (no admin role needed) and it works.
    let (status, mine) = mint(&kernel, "carol", "User::\"carol\"").await;
    assert_eq!(status, StatusCode::CREATED, "{mine}");
    let second_key = mine["key"].as_str().unwrap().to_owned();
    let second_id = mine["id"].as_str().unwrap().to_owned();

    let read = json!({"action": "read", "resource": {"type": "WorkItem", "id": "w1"}});
    let (status, _) = kernel
        .call("carol", "POST", "/v1/authorize", Some(read.clone()))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = kernel
        .call_as(&second_key, "POST", "/v1/authorize", Some(read))
        .await;
    assert_eq!(status, StatusCode::OK);
    let credentials: Vec<Value> = kernel
        .ledger()
        .into_iter()
        .filter(|e| e["kind"] == "decision" && e["action"] == "read")
        .map(|e| e["credential"].clone())
        .collect();
    assert_eq!(credentials.len(), 2, "{credentials:?}");
    assert_eq!(credentials[0]["type"], "api_key");
    assert!(credentials[0]["id"].as_str().unwrap().starts_with("ak_"));
    assert_eq!(credentials[1], json!({"type": "api_key", "id": second_id}));
    assert_ne!(
        credentials[0], credentials[1],
        "two keys of one principal differ"
    );

    // The change entries name it too, and the owner revokes carol's second key
    // while carol may revoke only her own.
    let (status, _) = kernel
        .call("erin", "DELETE", &format!("/v1/apikeys/{second_id}"), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = kernel
        .call("carol", "DELETE", &format!("/v1/apikeys/{second_id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let revoked: Vec<Value> = kernel
        .ledger()
        .into_iter()
        .filter(|e| e["kind"] == "apikey.revoked")
        .collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["credential"]["type"], "api_key");
}

#[tokio::test]
async fn unknown_and_foreign_principals_get_one_answer() {
    let kernel = Kernel::start().await;
    let operator = kernel.operator.clone();
    let gbot = json!({"uid": {"type": "Agent", "id": "gbot"}, "attrs": {"workspace": {"type": "Workspace", "id": "globex"}, "stopped": false}, "parents": []});
    let (status, _) = kernel
        .call_as(&operator, "PUT", "/v1/entities", Some(gbot))
        .await;
    assert_eq!(status, StatusCode::OK);
    // gbot is globex's: to acme's admin it does not exist, exactly like a stranger.
    let (status_foreign, foreign) = mint(&kernel, "bob", "Agent::\"gbot\"").await;
    let (status_unknown, unknown) = mint(&kernel, "bob", "Agent::\"nobody\"").await;
    assert_eq!(status_foreign, status_unknown);
    assert_eq!(code(&foreign), code(&unknown));
    assert_eq!(code(&unknown), Some("unknown_principal"));
}

/// A held `integration.write` by `token` and the gate it opens on it: the path that
/// approves the gate.
async fn held_gate(kernel: &Kernel, token: &str) -> String {
    let (status, held) = kernel
        .call_as(
            token,
            "POST",
            "/v1/authorize",
            Some(json!({"action": "integration.write", "resource": {"type": "Integration", "id": "gh"}})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{held}");
    assert_eq!(held["obligations"], json!(["approval"]), "{held}");
    let (status, gate) = kernel
        .call_as(
            token,
            "POST",
            "/v1/approvals",
            Some(json!({"decision_id": held["decision_id"], "reason": "sync"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{gate}");
    format!("/v1/approvals/{}/approve", gate["id"].as_str().unwrap())
}

#[tokio::test]
async fn whoever_minted_an_agents_key_never_approves_what_it_asks() {
    let kernel = Kernel::start().await;
    // bob, an admin, mints a key for the agent bot and has it ask for a held action.
    let (status, minted) = mint(&kernel, "bob", "Agent::\"bot\"").await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let puppet = minted["key"].as_str().unwrap().to_owned();
    let path = held_gate(&kernel, &puppet).await;
    let (status, body) = kernel.call("bob", "POST", &path, Some(json!({}))).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("agent_maker")),
        "{body}"
    );
    // Long after, still not: the minter may hold the key for good.
    kernel.clock.advance(2 * DAY);
    let path = held_gate(&kernel, &puppet).await;
    let (status, body) = kernel.call("bob", "POST", &path, Some(json!({}))).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("agent_maker")),
        "{body}"
    );
    // Someone who did not make it approves.
    let (status, body) = kernel.call("erin", "POST", &path, Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn a_chain_of_new_members_is_no_way_around_the_cooldown() {
    let mut kernel = Kernel::start().await;
    // alice makes olive an owner; olive at once makes pat an admin.
    let (status, _) = put(&kernel, "alice", user("olive", "acme", &["owner"])).await;
    assert_eq!(status, StatusCode::OK);
    kernel.mint("User::\"olive\"", "acme").await;
    let (status, body) = put(&kernel, "olive", user("pat", "acme", &["admin"])).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    kernel.mint("User::\"pat\"", "acme").await;
    let request = break_glass(&kernel, "alice").await;
    let (status, body) = approve_break_glass(&kernel, "pat", &request).await;
    refused_as_new_member(status, &body);
}

#[tokio::test]
async fn admins_do_not_revoke_owners_keys_and_ghost_members_are_refused() {
    let kernel = Kernel::start().await;
    let keys = kernel.call("alice", "GET", "/v1/apikeys", None).await.1;
    let alices = keys["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["principal"] == "User::\"alice\"")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = kernel
        .call("bob", "DELETE", &format!("/v1/apikeys/{alices}"), None)
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("user_keys_owner_revokes")),
        "{body}"
    );
    // A member no token could name would hold roles no decision covered.
    let ghost = user("mallory\u{200b}", "acme", &["owner"]);
    let (status, body) = put(&kernel, "bob", ghost).await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("invalid_entity_uid")),
        "{body}"
    );
    // An auditor asks for no decision and reports no outcome.
    let operator = kernel.operator.clone();
    let (status, minted) = kernel
        .call_as(
            &operator,
            "POST",
            "/v1/apikeys",
            Some(json!({"principal": "Auditor::\"ada\""})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{minted}");
    let before = kernel.ledger().len();
    let (status, body) = kernel
        .call_as(
            minted["key"].as_str().unwrap(),
            "POST",
            "/v1/authorize",
            Some(json!({"action": "read", "resource": {"type": "WorkItem", "id": "w1"}})),
        )
        .await;
    assert_eq!(
        (status, code(&body)),
        (StatusCode::FORBIDDEN, Some("auditor_read_only"))
    );
    assert_eq!(kernel.ledger().len(), before, "nothing recorded");
}
