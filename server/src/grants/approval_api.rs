//! `/v1/approvals`: approval gates. A caller whose recorded decision carried the
//! `approval` obligation opens a gate naming it; a reviewer allowed by policy
//! approves or denies (never the requester, never the submitter of the work);
//! an approved gate lets exactly that action on that resource by that principal
//! through once, within the window (see `facts::take_gate`).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use writ_ledger::store::LedgerStore;
use writ_ledger::LeafIndex;

use super::common::{check_signature, decide_standing, member, optional_text, parse, user};
use super::facts::APPROVAL;
use super::lifecycle::{record_step, settle, Ender};
use super::records::{new_id, Gate, GateState, Party, Sign};
use crate::error::ApiError;
use crate::identity::Principal;
use crate::routes::JsonBody;
use crate::state::{AppState, Shared};

/// The most pending approval requests one principal may have.
pub const MAX_PENDING: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    decision_id: String,
    #[serde(default)]
    reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepBody {
    #[serde(default)]
    comment: Option<String>,
    #[serde(default)]
    signature: Option<Value>,
}

fn conflict(code: &'static str, message: String) -> ApiError {
    ApiError::new(StatusCode::CONFLICT, code, message)
}

/// The recorded decision `id`, if it is the caller's own.
async fn own_decision(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<Value, ApiError> {
    let missing = || {
        ApiError::not_found(format!(
            "no decision `{}` of yours",
            id.chars().take(32).collect::<String>()
        ))
    };
    let index: u64 = id.parse().map_err(|_| missing())?;
    let store = Arc::clone(&state.ledger_store);
    let bytes = tokio::task::spawn_blocking(move || store.entry(LeafIndex(index)))
        .await
        .map_err(|error| ApiError::internal("reading the decision", &error))?
        .map_err(|error| ApiError::internal("reading the decision", &error))?
        .ok_or_else(missing)?;
    let entry: Value = serde_json::from_slice(&bytes)
        .map_err(|error| ApiError::internal("decoding the decision", &error))?;
    let workspace = principal.workspace().map(|w| w.as_str().to_owned());
    let theirs = entry.get("kind").and_then(Value::as_str) == Some("decision")
        && entry.get("actor").and_then(Value::as_str)
            == Some(principal.entity().to_string().as_str())
        && entry.get("workspace").and_then(Value::as_str) == workspace.as_deref();
    if !theirs {
        // The same answer as for a missing one: others' decision ids are not confirmed.
        return Err(missing());
    }
    Ok(entry)
}

/// Who submitted the work a resource is (its `submitter_user` or `submitter_agent`).
fn submitter(state: &AppState, resource: &str) -> Option<Party> {
    let snapshot = state.engine.snapshot();
    let entity = snapshot.entity_json(resource)?;
    for (attr, kind) in [("submitter_user", "User"), ("submitter_agent", "Agent")] {
        let reference = entity.pointer(&format!("/attrs/{attr}"));
        let id = reference
            .and_then(|r| r.pointer("/__entity/id").or_else(|| r.get("id")))
            .and_then(Value::as_str);
        if let Some(id) = id {
            return Some(Party {
                kind: kind.to_owned(),
                id: id.to_owned(),
            });
        }
    }
    None
}

pub async fn open(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let principal = state.principal(&headers)?;
    let (requester, workspace) = member(&state, &principal)?;
    let body: OpenBody = parse(body)?;
    let reason = optional_text("reason", body.reason.as_deref())?;
    let entry = own_decision(&state, &principal, &body.decision_id).await?;
    let gated = entry.get("decision").and_then(Value::as_str) == Some("allow")
        && entry
            .get("obligations")
            .and_then(Value::as_array)
            .is_some_and(|o| o.iter().any(|o| o.as_str() == Some(APPROVAL)));
    if !gated {
        return Err(conflict(
            "no_approval_obligation",
            format!(
                "decision `{}` is not an allow that carries the approval obligation",
                body.decision_id
            ),
        ));
    }
    let (Some(action), Some(resource)) = (
        entry.get("action").and_then(Value::as_str),
        entry.get("resource").and_then(Value::as_str),
    ) else {
        return Err(ApiError::internal(
            "reading the decision",
            &"no action or resource",
        ));
    };
    settle(&state).await?;
    let _steps = state.grants.steps.lock().await;
    let open_already = state.grants.book().gates.values().any(|g| {
        g.decision_id == body.decision_id
            && matches!(g.state, GateState::Pending | GateState::Approved)
    });
    let pending = state
        .grants
        .book()
        .live_gates()
        .filter(|g| g.requester == requester && g.state == GateState::Pending)
        .count();
    if pending >= MAX_PENDING {
        return Err(conflict(
            "too_many_pending",
            format!("you have {pending} pending approval requests: wait for a reviewer"),
        ));
    }
    if open_already {
        return Err(conflict(
            "already_requested",
            format!(
                "decision `{}` already has an open approval request",
                body.decision_id
            ),
        ));
    }
    let now = state.grants.now();
    let pending_ms =
        u64::try_from(state.grants.config.approval_pending.as_millis()).unwrap_or(u64::MAX);
    let mut gate = Gate {
        id: new_id("ap"),
        workspace: workspace.clone(),
        requester,
        decision_id: body.decision_id.clone(),
        action: action.to_owned(),
        resource: resource.to_owned(),
        reason,
        submitter: submitter(&state, resource),
        consent_grantor: entry.get("consent").and_then(Value::as_str).and_then(|id| {
            state
                .grants
                .book()
                .consents
                .get(id)
                .map(|c| c.grantor.clone())
        }),
        state: GateState::Pending,
        requested_unix_ms: now,
        pending_expires_unix_ms: now.plus(pending_ms),
        decided: None,
        window_ends_unix_ms: None,
        used_by_decision: None,
        entries: Default::default(),
    };
    let mut fields = Map::new();
    fields.insert("id".into(), json!(gate.id));
    fields.insert("decision_id".into(), json!(gate.decision_id));
    fields.insert("action".into(), json!(gate.action));
    fields.insert("resource".into(), json!(gate.resource));
    fields.insert(
        "pending_expires_unix_ms".into(),
        json!(gate.pending_expires_unix_ms),
    );
    if let Some(reason) = &gate.reason {
        fields.insert("reason".into(), json!(reason));
    }
    if let Some(grantor) = &gate.consent_grantor {
        fields.insert("consent_grantor".into(), json!(grantor.uid_text()));
    }
    if let Some(submitter) = &gate.submitter {
        fields.insert("submitter".into(), json!(submitter.uid_text()));
    }
    let by = Ender {
        actor: gate.requester.uid_text(),
        workspace,
        credential: principal.credential().cloned(),
    };
    let entry = record_step(&state, "approval.requested", &by, fields).await?;
    gate.entries.insert("requested".into(), entry);
    state.grants.put_gate(gate.clone())?;
    Ok((StatusCode::CREATED, Json(json!(gate))))
}

fn find(state: &AppState, principal: &Principal, id: &str) -> Result<Gate, ApiError> {
    let workspace = principal.workspace().map(|w| w.as_str().to_owned());
    state
        .grants
        .book()
        .gates
        .get(id)
        .filter(|g| workspace.as_deref() == Some(g.workspace.as_str()))
        .cloned()
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no approval request `{}`",
                id.chars().take(64).collect::<String>()
            ))
        })
}

/// Approves (`approve`) or denies a pending gate.
async fn decide_gate(
    state: Shared,
    headers: HeaderMap,
    id: String,
    body: JsonBody,
    approve: bool,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (reviewer, workspace) = user(&state, &principal, "reviewing an approval request")?;
    let body: StepBody = parse(body)?;
    let comment = optional_text("comment", body.comment.as_deref())?;
    settle(&state).await?;
    let gate = find(&state, &principal, &id)?;
    let action = if approve {
        "approval.approve"
    } else {
        "approval.deny"
    };
    decide_standing(&state, &principal, action, &gate.entity()).await?;
    let who = reviewer.uid_text();
    if gate.requester.uid_text() == who
        || gate.submitter.as_ref().is_some_and(|s| s.uid_text() == who)
        || gate
            .consent_grantor
            .as_ref()
            .is_some_and(|g| g.uid_text() == who)
    {
        return Err(ApiError::forbidden(
            "neither who asked, nor who submitted the work, nor who consented to it may approve or deny it",
        )
        .with_code("self_approval"));
    }
    if approve {
        // A member who asked or submitted just made may not vouch for the request.
        for asker in std::iter::once(&gate.requester).chain(gate.submitter.as_ref()) {
            crate::membership::check_cooldown(&state, &principal, &asker.uid_text())?;
            crate::membership::check_not_agent_maker(&state, &principal, &asker.uid_text())?;
        }
    }
    let _steps = state.grants.steps.lock().await;
    let mut gate = find(&state, &principal, &id)?;
    let now = state.grants.now();
    if gate.state != GateState::Pending || gate.pending_expires_unix_ms <= now {
        return Err(conflict(
            "wrong_state",
            format!(
                "`{id}` is {}, not pending",
                json!(gate.state).as_str().unwrap_or("in another state")
            ),
        ));
    }
    let mut fields = Map::new();
    fields.insert("id".into(), json!(gate.id));
    if let Some(comment) = &comment {
        fields.insert("comment".into(), json!(comment));
    }
    let window_ends = now
        .plus(u64::try_from(state.grants.config.approval_window.as_millis()).unwrap_or(u64::MAX));
    if approve {
        fields.insert("window_ends_unix_ms".into(), json!(window_ends));
    }
    let kind = if approve {
        "approval.approved"
    } else {
        "approval.denied"
    };
    let signature = check_signature(&state, &principal, kind, &fields, body.signature, false)?;
    let signed = signature.is_some();
    if let Some(signature) = signature {
        fields.insert("signature".into(), signature);
    }
    let by = Ender {
        actor: who.clone(),
        workspace,
        credential: principal.credential().cloned(),
    };
    let entry = record_step(&state, kind, &by, fields).await?;
    gate.decided = Some(Sign {
        by: who,
        comment,
        signed,
        at_unix_ms: now,
        entry: entry.clone(),
    });
    if approve {
        gate.state = GateState::Approved;
        gate.window_ends_unix_ms = Some(window_ends);
        gate.entries.insert("approved".into(), entry);
    } else {
        gate.state = GateState::Denied;
        gate.entries.insert("denied".into(), entry);
    }
    state.grants.put_gate(gate.clone())?;
    Ok(Json(json!(gate)))
}

pub async fn approve(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    decide_gate(state, headers, id, body, true).await
}

pub async fn deny(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    decide_gate(state, headers, id, body, false).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(default)]
    state: Option<GateState>,
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
    let gates: Vec<&Gate> = book
        .gates
        .values()
        .filter(|g| g.workspace == workspace)
        .filter(|g| query.state.is_none_or(|s| g.state == s))
        .collect();
    Ok(Json(json!({"approvals": gates})))
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
