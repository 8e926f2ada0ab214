//! `/v1/break-glass`: request, approve, deny, revoke, review and list elevations.
//!
//! Each step is decided by Cedar on the kernel-built `Elevation` with the caller's
//! standing roles, and recorded before it takes effect. The requester never
//! approves, denies or reviews its own request (policy forbids it and the kernel
//! checks it again).

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::common::{
    check_signature, decide_standing, duration, member, optional_text, parse, required_text, user,
};
use super::lifecycle::{end_elevation, record_step, settle, Ender};
use super::records::{new_id, Elevation, ElevationState, Sign};
use crate::error::ApiError;
use crate::identity::Principal;
use crate::routes::JsonBody;
use crate::state::{AppState, Shared};

/// The most pending requests one User may have (each is scanned by every decision
/// while live).
pub const MAX_PENDING: usize = 4;

/// The obligation that makes every approval of a request need a signature.
pub const SIGNED_APPROVALS: &str = "signed-approvals";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    role: String,
    reason: String,
    duration: String,
    #[serde(default)]
    emergency: bool,
    #[serde(default)]
    signature: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepBody {
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    signature: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    reason: String,
}

fn conflict(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// A role name as the schema's entities have it: refused unless it is stored.
fn known_role(state: &AppState, role: &str) -> Result<(), ApiError> {
    let shown: String = role.chars().take(64).collect();
    let uid = writ_pdp::entity_uid("Role", role)
        .map_err(|_| ApiError::unprocessable("unknown_role", format!("no role `{shown}`")))?;
    if role.len() > 64 || !state.engine.snapshot().contains(&uid) {
        return Err(ApiError::unprocessable(
            "unknown_role",
            format!("no role `{shown}` in the entity store"),
        ));
    }
    Ok(())
}

/// The elevation `id` of the caller's workspace (404 for any other).
fn find(state: &AppState, principal: &Principal, id: &str) -> Result<Elevation, ApiError> {
    let workspace = principal.workspace().map(|w| w.as_str().to_owned());
    let book = state.grants.book();
    book.elevations
        .get(id)
        .filter(|e| workspace.is_none() || workspace.as_deref() == Some(e.workspace.as_str()))
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no break-glass request `{}`",
                id.chars().take(64).collect::<String>()
            ))
        })
}

pub async fn request(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let principal = state.principal(&headers)?;
    let (requester, workspace) = user(&state, &principal, "break-glass")?;
    let body: RequestBody = parse(body)?;
    let reason = required_text("reason", &body.reason)?;
    known_role(&state, &body.role)?;
    let config = &state.grants.config;
    let duration_ms = duration(&body.duration, config.break_glass_max_duration)?;
    if body.emergency && !config.break_glass_emergency {
        return Err(ApiError::forbidden(
            "emergency break-glass is off on this kernel (`grants.break_glass_emergency`)",
        )
        .with_code("emergency_disabled"));
    }
    let now = state.grants.now();
    let pending_ms = u64::try_from(config.break_glass_pending.as_millis()).unwrap_or(u64::MAX);
    let mut elevation = Elevation {
        id: new_id("bg"),
        workspace: workspace.clone(),
        requester,
        role: body.role.clone(),
        reason,
        state: ElevationState::Pending,
        emergency: body.emergency,
        reviewed: !body.emergency,
        approvals: Vec::new(),
        denials: Vec::new(),
        reviews: Vec::new(),
        approvals_required: config.break_glass_approvals,
        signed_approvals: false,
        duration_ms,
        requested_unix_ms: now,
        pending_expires_unix_ms: now.plus(pending_ms),
        activated_unix_ms: None,
        expires_unix_ms: None,
        ended_unix_ms: None,
        end_reason: None,
        entries: Default::default(),
    };
    let obligations = decide_standing(
        &state,
        &principal,
        "break-glass.request",
        &elevation.entity(),
    )
    .await?;
    elevation.signed_approvals = obligations.iter().any(|o| o == SIGNED_APPROVALS);
    if body.emergency && elevation.signed_approvals {
        return Err(ApiError::forbidden(
            "this role needs signed approvals: it is never activated in an emergency",
        )
        .with_code("signed_approvals_required"));
    }
    if body.emergency {
        decide_standing(
            &state,
            &principal,
            "break-glass.emergency",
            &elevation.entity(),
        )
        .await?;
    }
    let mut fields = Map::new();
    fields.insert("id".into(), json!(elevation.id));
    fields.insert("role".into(), json!(elevation.role));
    fields.insert("reason".into(), json!(elevation.reason));
    fields.insert("duration_ms".into(), json!(duration_ms));
    fields.insert(
        "pending_expires_unix_ms".into(),
        json!(elevation.pending_expires_unix_ms),
    );
    fields.insert(
        "approvals_required".into(),
        json!(elevation.approvals_required),
    );
    fields.insert("signed_approvals".into(), json!(elevation.signed_approvals));
    fields.insert("emergency".into(), json!(body.emergency));
    let by = Ender {
        actor: elevation.requester.uid_text(),
        workspace,
        credential: principal.credential().cloned(),
    };
    // Under the steps lock: no key registration can slip between check and record.
    let _steps = state.grants.steps.lock().await;
    let pending = state
        .grants
        .book()
        .live_elevations()
        .filter(|e| e.requester == elevation.requester && e.state == ElevationState::Pending)
        .count();
    if pending >= MAX_PENDING {
        return Err(conflict(
            "too_many_pending",
            format!("you have {pending} pending break-glass requests: revoke one or wait"),
        ));
    }
    if let Some(signature) = check_signature(
        &state,
        &principal,
        "break_glass.requested",
        &fields,
        body.signature,
        false,
    )? {
        fields.insert("signature".into(), signature);
    }
    let entry = record_step(&state, "break_glass.requested", &by, fields).await?;
    elevation.entries.insert("requested".into(), entry);
    if body.emergency {
        // Emergency: active at once, with no approval; flagged until reviewed.
        activate(&state, &mut elevation, &by).await?;
    } else {
        state.grants.put_elevation(elevation.clone())?;
    }
    Ok((StatusCode::CREATED, Json(json!(elevation))))
}

/// Records the activation, then makes the elevation active.
async fn activate(state: &AppState, elevation: &mut Elevation, by: &Ender) -> Result<(), ApiError> {
    let now = state.grants.now();
    let expires = now.plus(elevation.duration_ms);
    let mut fields = Map::new();
    fields.insert("id".into(), json!(elevation.id));
    fields.insert("requester".into(), json!(elevation.requester.uid_text()));
    fields.insert("role".into(), json!(elevation.role));
    fields.insert("expires_unix_ms".into(), json!(expires));
    fields.insert("emergency".into(), json!(elevation.emergency));
    let entry = record_step(state, "break_glass.activated", by, fields).await?;
    elevation.state = ElevationState::Active;
    elevation.activated_unix_ms = Some(now);
    elevation.expires_unix_ms = Some(expires);
    elevation.entries.insert("activated".into(), entry);
    state.grants.put_elevation(elevation.clone())
}

/// The start every step on an existing elevation shares: due expiries recorded,
/// the step decided by policy on the elevation (and recorded), a step by the
/// requester itself refused where `self_step` names it, then the steps lock taken
/// and the elevation read again under it.
async fn begin<'a>(
    state: &'a AppState,
    principal: &Principal,
    id: &str,
    action: &str,
    self_step: Option<&str>,
) -> Result<(Elevation, tokio::sync::MutexGuard<'a, ()>), ApiError> {
    settle(state).await?;
    let elevation = find(state, principal, id)?;
    decide_standing(state, principal, action, &elevation.entity()).await?;
    if let Some(step) = self_step {
        not_self(&elevation, principal, step)?;
    }
    let steps = state.grants.steps.lock().await;
    Ok((find(state, principal, id)?, steps))
}

/// Refuses a step by the requester itself (after policy, which says the same).
fn not_self(elevation: &Elevation, principal: &Principal, step: &str) -> Result<(), ApiError> {
    if elevation.requester.uid_text() == principal.entity().to_string() {
        return Err(
            ApiError::forbidden(format!("a requester cannot {step} its own request"))
                .with_code("self_approval"),
        );
    }
    Ok(())
}

fn require_state(elevation: &Elevation, wanted: &[ElevationState]) -> Result<(), ApiError> {
    if wanted.contains(&elevation.state) {
        return Ok(());
    }
    Err(conflict(
        "wrong_state",
        format!(
            "`{}` is {}",
            elevation.id,
            json!(elevation.state)
                .as_str()
                .unwrap_or("in another state")
        ),
    ))
}

pub async fn approve(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (approver, workspace) = user(&state, &principal, "approving break-glass")?;
    let body: StepBody = parse(body)?;
    let comment = optional_text("comment", body.comment.as_deref())?;
    let (mut elevation, _steps) = begin(
        &state,
        &principal,
        &id,
        "break-glass.approve",
        Some("approve"),
    )
    .await?;
    // A member its requester just made may not vouch for the request.
    crate::membership::check_cooldown(&state, &principal, &elevation.requester.uid_text())?;
    require_state(&elevation, &[ElevationState::Pending])?;
    if elevation.pending_expires_unix_ms <= state.grants.now() {
        return Err(conflict("wrong_state", format!("`{id}` has expired")));
    }
    let who = approver.uid_text();
    if elevation.approvals.iter().any(|a| a.by == who) {
        return Err(conflict(
            "already_approved",
            format!("you already approved `{id}`"),
        ));
    }
    let count = elevation.approvals.len() + 1;
    let mut fields = Map::new();
    fields.insert("id".into(), json!(elevation.id));
    if let Some(comment) = &comment {
        fields.insert("comment".into(), json!(comment));
    }
    fields.insert("approvals".into(), json!(count));
    let signature = check_signature(
        &state,
        &principal,
        "break_glass.approved",
        &fields,
        body.signature,
        elevation.signed_approvals,
    )?;
    let signed = signature.is_some();
    if let Some(signature) = signature {
        fields.insert("signature".into(), signature);
    }
    let by = Ender {
        actor: who.clone(),
        workspace,
        credential: principal.credential().cloned(),
    };
    let entry = record_step(&state, "break_glass.approved", &by, fields).await?;
    elevation.approvals.push(Sign {
        by: who,
        comment,
        signed,
        at_unix_ms: state.grants.now(),
        entry,
    });
    if count >= usize::try_from(elevation.approvals_required).unwrap_or(usize::MAX) {
        activate(&state, &mut elevation, &by).await?;
    } else {
        state.grants.put_elevation(elevation.clone())?;
    }
    Ok(Json(json!(elevation)))
}

pub async fn deny(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (denier, workspace) = user(&state, &principal, "denying break-glass")?;
    let body: StepBody = parse(body)?;
    let comment = optional_text("comment", body.comment.as_deref())?;
    let (elevation, _steps) =
        begin(&state, &principal, &id, "break-glass.deny", Some("deny")).await?;
    require_state(&elevation, &[ElevationState::Pending])?;
    let mut fields = Map::new();
    fields.insert("id".into(), json!(elevation.id));
    if let Some(comment) = &comment {
        fields.insert("comment".into(), json!(comment));
    }
    let signature = check_signature(
        &state,
        &principal,
        "break_glass.denied",
        &fields,
        body.signature,
        false,
    )?;
    let by = Ender {
        actor: denier.uid_text(),
        workspace,
        credential: principal.credential().cloned(),
    };
    let _ending = state.grants.transitions.write().await;
    let elevation = end_elevation(
        &state,
        elevation,
        ElevationState::Denied,
        &by,
        comment,
        signature,
    )
    .await?;
    Ok(Json(json!(elevation)))
}

pub async fn revoke(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (revoker, workspace) = user(&state, &principal, "revoking break-glass")?;
    let body: RevokeBody = parse(body)?;
    let reason = required_text("reason", &body.reason)?;
    let (elevation, _steps) = begin(&state, &principal, &id, "break-glass.revoke", None).await?;
    require_state(
        &elevation,
        &[ElevationState::Pending, ElevationState::Active],
    )?;
    let by = Ender {
        actor: revoker.uid_text(),
        workspace,
        credential: principal.credential().cloned(),
    };
    // Waits for decisions relying on it to be recorded; the next one is made without it.
    let _ending = state.grants.transitions.write().await;
    let elevation = end_elevation(
        &state,
        elevation,
        ElevationState::Revoked,
        &by,
        Some(reason),
        None,
    )
    .await?;
    Ok(Json(json!(elevation)))
}

pub async fn review(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (reviewer, workspace) = user(&state, &principal, "reviewing break-glass")?;
    let body: StepBody = parse(body)?;
    if body.signature.is_some() {
        return Err(ApiError::unprocessable(
            "invalid_body",
            "a review is not a signed step",
        ));
    }
    let comment = optional_text("comment", body.comment.as_deref())?;
    let (mut elevation, _steps) = begin(
        &state,
        &principal,
        &id,
        "break-glass.review",
        Some("review"),
    )
    .await?;
    // A member its requester just made may not vouch for the request.
    crate::membership::check_cooldown(&state, &principal, &elevation.requester.uid_text())?;
    if !elevation.emergency || elevation.activated_unix_ms.is_none() {
        return Err(conflict(
            "not_emergency",
            format!("`{id}` was not an emergency activation: its approvals are its review"),
        ));
    }
    let who = reviewer.uid_text();
    let mut fields = Map::new();
    fields.insert("id".into(), json!(elevation.id));
    if let Some(comment) = &comment {
        fields.insert("comment".into(), json!(comment));
    }
    let by = Ender {
        actor: who.clone(),
        workspace,
        credential: principal.credential().cloned(),
    };
    let entry = record_step(&state, "break_glass.reviewed", &by, fields).await?;
    elevation.reviewed = true;
    elevation.reviews.push(Sign {
        by: who,
        comment,
        signed: false,
        at_unix_ms: state.grants.now(),
        entry,
    });
    state.grants.put_elevation(elevation.clone())?;
    Ok(Json(json!(elevation)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    state: Option<ElevationState>,
    #[serde(default)]
    unreviewed: Option<bool>,
}

pub async fn list(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (_, workspace) = member(&state, &principal)?;
    settle(&state).await?;
    let book = state.grants.book();
    let elevations: Vec<&Elevation> = book
        .elevations
        .values()
        .filter(|e| e.workspace == workspace)
        .filter(|e| query.state.is_none_or(|s| e.state == s))
        .filter(|e| {
            !query.unreviewed.unwrap_or(false)
                || (e.emergency && !e.reviewed && e.activated_unix_ms.is_some())
        })
        .collect();
    Ok(Json(json!({"elevations": elevations})))
}

pub async fn show(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    member(&state, &principal)?;
    settle(&state).await?;
    Ok(Json(json!(find(&state, &principal, &id)?)))
}
