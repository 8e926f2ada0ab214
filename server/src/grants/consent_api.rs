//! `/v1/consents`: a resource owner lets a grantee (User or Agent of its
//! workspace) do named actions on named resources for a while. A consent never
//! carries a role, an admin action or a grant; the grantor must be allowed each
//! granted action itself, and policy decides (`consent.grant`) who owns each
//! resource. While live, the kernel gives a covering consent to the PDP as
//! `context.consent` (see `facts`).

use super::common::{
    decide_recorded, decide_standing, duration, member, optional_text, parse, user,
};
use super::lifecycle::{record_step, settle, Ender};
use super::records::{new_id, Consent, ConsentState, Party};
use crate::error::ApiError;
use crate::identity::Principal;
use crate::routes::JsonBody;
use crate::state::{AppState, Shared};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The most actions, resources, and action-resource pairs one consent names.
pub const MAX_SCOPE: usize = 16;
pub const MAX_PAIRS: usize = 32;

/// Resource types a consent may name: the stored, workspace-owned ones.
const CONSENTABLE: [&str; 3] = ["WorkItem", "Integration", "Environment"];

/// Action prefixes a consent never carries: admin actions, grants, approvals.
const NEVER: [&str; 5] = [
    "admin.",
    "break-glass.",
    "approval.",
    "consent.",
    "workitem.approve",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    grantee: String,
    actions: Vec<String>,
    resources: Vec<String>,
    duration: String,
    #[serde(default)]
    reason: Option<String>,
}

fn refused(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::unprocessable(code, message)
}

fn shown(text: &str) -> String {
    text.chars().take(64).collect()
}

/// The stored entity's workspace, if it has one.
fn workspace_of(entity: &Value) -> Option<&str> {
    entity
        .pointer("/attrs/workspace/__entity/id")
        .or_else(|| entity.pointer("/attrs/workspace/id"))
        .and_then(Value::as_str)
}

fn check_grantee(
    state: &AppState,
    text: &str,
    workspace: &str,
    grantor: &Party,
) -> Result<Party, ApiError> {
    let party = Party::parse(text).ok_or_else(|| {
        refused(
            "invalid_grantee",
            format!(
                "`{}` is not an entity uid like `Agent::\"bot\"`",
                shown(text)
            ),
        )
    })?;
    if party.kind == "Role" {
        return Err(refused(
            "consent_carries_role",
            "a consent is given to a User or an Agent, never to a role",
        ));
    }
    if party.kind != "User" && party.kind != "Agent" {
        return Err(refused(
            "invalid_grantee",
            "a consent is given to a User or an Agent",
        ));
    }
    if &party == grantor {
        return Err(refused(
            "invalid_grantee",
            "a consent is given to someone else",
        ));
    }
    let snapshot = state.engine.snapshot();
    let stored = snapshot.entity_json(&party.uid_text());
    if stored.and_then(workspace_of) != Some(workspace) {
        return Err(refused(
            "unknown_grantee",
            format!("no `{}` in your workspace", shown(text)),
        ));
    }
    Ok(party)
}

fn check_actions(state: &AppState, actions: &[String]) -> Result<(), ApiError> {
    if actions.is_empty() || actions.len() > MAX_SCOPE {
        return Err(refused(
            "invalid_scope",
            format!("`actions` names 1 to {MAX_SCOPE} actions"),
        ));
    }
    let snapshot = state.engine.snapshot();
    for action in actions {
        if NEVER.iter().any(|p| action.starts_with(p)) {
            return Err(refused(
                "consent_carries_admin",
                format!(
                    "a consent never carries an admin action or a grant: `{}`",
                    shown(action)
                ),
            ));
        }
        let known = writ_pdp::entity_uid("Action", action)
            .is_ok_and(|uid| snapshot.policies().schema().actions().any(|a| *a == uid));
        if !known {
            return Err(refused(
                "unknown_action",
                format!("no action `{}` in the schema", shown(action)),
            ));
        }
    }
    Ok(())
}

fn check_resources(
    state: &AppState,
    resources: &[String],
    workspace: &str,
) -> Result<Vec<Party>, ApiError> {
    if resources.is_empty() || resources.len() > MAX_SCOPE {
        return Err(refused(
            "invalid_scope",
            format!("`resources` names 1 to {MAX_SCOPE} resources"),
        ));
    }
    let snapshot = state.engine.snapshot();
    let mut out = Vec::new();
    for text in resources {
        let party = Party::parse(text).ok_or_else(|| {
            refused(
                "invalid_scope",
                format!(
                    "`{}` is not an entity uid like `Integration::\"gh\"`",
                    shown(text)
                ),
            )
        })?;
        if party.kind == "Role" {
            return Err(refused(
                "consent_carries_role",
                "a consent can never carry a role",
            ));
        }
        if !CONSENTABLE.contains(&party.kind.as_str()) {
            return Err(refused(
                "resource_not_consentable",
                format!(
                    "a consent names resources of type {}; not `{}`",
                    CONSENTABLE.join(", "),
                    shown(text)
                ),
            ));
        }
        if snapshot
            .entity_json(&party.uid_text())
            .and_then(workspace_of)
            != Some(workspace)
        {
            return Err(refused(
                "unknown_resource",
                format!("no `{}` in your workspace", shown(text)),
            ));
        }
        out.push(party);
    }
    Ok(out)
}

/// Decides whether the grantor may itself do `action` on `resource` (standing
/// roles), and records the decision; a deny is a 403.
async fn grantor_may(
    state: &AppState,
    principal: &Principal,
    action: &str,
    resource: &Party,
) -> Result<(), ApiError> {
    let purpose = "consent.grant: the grantor's own permission";
    let decision = decide_recorded(
        state,
        principal,
        action,
        resource,
        Vec::new(),
        Some(purpose),
    )
    .await?;
    if decision.allow {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "you may not `{}` on `{}` yourself, so you cannot grant it",
            shown(action),
            shown(&resource.uid_text())
        )))
    }
}

/// `consent.grant` on one stored resource (policy says who owns it); a deny is a 403.
async fn owner_may_grant(
    state: &AppState,
    principal: &Principal,
    resource: &Party,
) -> Result<(), ApiError> {
    let decision = decide_recorded(
        state,
        principal,
        "consent.grant",
        resource,
        Vec::new(),
        None,
    )
    .await?;
    if decision.allow {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!(
            "`consent.grant` on `{}` is denied by policy: only its owner grants consents on it",
            shown(&resource.uid_text())
        )))
    }
}

pub async fn grant(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let principal = state.principal(&headers)?;
    let (grantor, workspace) = user(&state, &principal, "granting a consent")?;
    for field in ["role", "roles"] {
        if body.0.get(field).is_some() {
            return Err(refused(
                "consent_carries_role",
                "a consent can never carry a role",
            ));
        }
    }
    let body: GrantBody = parse(body)?;
    let reason = optional_text("reason", body.reason.as_deref())?;
    let grantee = check_grantee(&state, &body.grantee, &workspace, &grantor)?;
    check_actions(&state, &body.actions)?;
    let resources = check_resources(&state, &body.resources, &workspace)?;
    if body.actions.len().saturating_mul(resources.len()) > MAX_PAIRS {
        return Err(refused(
            "invalid_scope",
            format!("a consent covers at most {MAX_PAIRS} action-resource pairs"),
        ));
    }
    let duration_ms = duration(&body.duration, state.grants.config.consent_max_duration)?;
    for resource in &resources {
        owner_may_grant(&state, &principal, resource).await?;
        for action in &body.actions {
            grantor_may(&state, &principal, action, resource).await?;
        }
    }
    let now = state.grants.now();
    let mut consent = Consent {
        id: new_id("cs"),
        workspace: workspace.clone(),
        grantor,
        grantee,
        actions: body.actions,
        resources: resources.iter().map(Party::uid_text).collect(),
        state: ConsentState::Active,
        reason,
        granted_unix_ms: now,
        expires_unix_ms: now.plus(duration_ms),
        ended_unix_ms: None,
        entries: Default::default(),
    };
    let mut fields = Map::new();
    fields.insert("id".into(), json!(consent.id));
    fields.insert("grantee".into(), json!(consent.grantee.uid_text()));
    fields.insert("actions".into(), json!(consent.actions));
    fields.insert("resources".into(), json!(consent.resources));
    fields.insert("expires_unix_ms".into(), json!(consent.expires_unix_ms));
    if let Some(reason) = &consent.reason {
        fields.insert("reason".into(), json!(reason));
    }
    let by = Ender {
        actor: consent.grantor.uid_text(),
        workspace,
        credential: principal.credential().cloned(),
    };
    let _steps = state.grants.steps.lock().await;
    let entry = record_step(&state, "consent.granted", &by, fields).await?;
    consent.entries.insert("granted".into(), entry);
    state.grants.put_consent(consent.clone())?;
    Ok((StatusCode::CREATED, Json(json!(consent))))
}

fn find(state: &AppState, principal: &Principal, id: &str) -> Result<Consent, ApiError> {
    let workspace = principal.workspace().map(|w| w.as_str().to_owned());
    state
        .grants
        .book()
        .consents
        .get(id)
        .filter(|c| workspace.as_deref() == Some(c.workspace.as_str()))
        .cloned()
        .ok_or_else(|| ApiError::not_found(format!("no consent `{}`", shown(id))))
}

pub async fn revoke(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (revoker, workspace) = user(&state, &principal, "revoking a consent")?;
    settle(&state).await?;
    let consent = find(&state, &principal, &id)?;
    decide_standing(&state, &principal, "consent.revoke", &consent.entity()).await?;
    let _steps = state.grants.steps.lock().await;
    let mut consent = find(&state, &principal, &id)?;
    if consent.state != ConsentState::Active {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "wrong_state",
            format!(
                "`{id}` is {}",
                json!(consent.state).as_str().unwrap_or("not active")
            ),
        ));
    }
    let by = Ender {
        actor: revoker.uid_text(),
        workspace,
        credential: principal.credential().cloned(),
    };
    // Waits for decisions relying on it to be recorded; the next is made without it.
    let _ending = state.grants.transitions.write().await;
    let mut fields = Map::new();
    fields.insert("id".into(), json!(consent.id));
    consent.state = ConsentState::Revoked;
    consent.ended_unix_ms = Some(state.grants.now());
    state.grants.persist_consent(&consent)?;
    let entry = record_step(&state, "consent.revoked", &by, fields).await?;
    consent.entries.insert("revoked".into(), entry);
    state.grants.put_consent(consent.clone())?;
    Ok(Json(json!(consent)))
}

/// The workspace's consents: a User sees all of them, an Agent those it holds.
pub async fn list(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (me, workspace) = member(&state, &principal)?;
    settle(&state).await?;
    let book = state.grants.book();
    let consents: Vec<&Consent> = book
        .consents
        .values()
        .filter(|c| c.workspace == workspace)
        .filter(|c| me.kind == "User" || c.grantee == me)
        .collect();
    Ok(Json(json!({"consents": consents})))
}
