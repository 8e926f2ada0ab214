//! `POST /v1/authorize`, `/v1/authorize/batch` and `/v1/decisions/{id}/outcome`:
//! decide, record, and only then answer.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use writ_ledger::store::LedgerStore;
use writ_ledger::{EntryDraft, LeafIndex};
use writ_pdp::{Decision, DecisionRequest, Snapshot};

use crate::error::ApiError;
use crate::grants::{self, facts::Facts, facts::APPROVAL};
use crate::identity::{Principal, PrincipalKind};
use crate::request::{context_of, refuse_identity_fields, target, AuthorizeBody};
use crate::state::{actor_and_workspace, principal_uid, AppState, Shared};

/// The most requests one batch call may carry.
pub const MAX_BATCH: usize = 64;

/// A decided but not yet recorded request, with the grants it relied on (held
/// until it is recorded).
#[derive(Debug)]
pub struct Decided {
    pub decision: Decision,
    pub draft: EntryDraft,
    pub facts: Facts,
}

/// Decides one request for a verified principal against one snapshot, with the
/// grants it may rely on, and drafts its ledger entry. Nothing is recorded yet
/// (due grant expiries excepted).
pub async fn decide(
    state: &AppState,
    snapshot: &Snapshot,
    principal: &Principal,
    body: &AuthorizeBody,
) -> Result<Decided, ApiError> {
    refuse_auditor(principal)?;
    check_principal_entity(snapshot, principal)?;
    if body.action.len() > 256 {
        return Err(ApiError::unprocessable(
            "unknown_action",
            "an action name is at most 256 bytes",
        ));
    }
    let target = target(body, principal)?;
    let mut entities = snapshot.request_entities(&body.entities, &state.reserved_types)?;
    if let Some(kernel_entity) = &target.kernel_entity {
        entities.extend(
            snapshot.request_entities(std::slice::from_ref(kernel_entity), &Default::default())?,
        );
    }
    let context = context_of(body)?;
    let mut request = DecisionRequest {
        principal: principal_uid(principal)?,
        action: writ_pdp::entity_uid("Action", &body.action)?,
        resource: writ_pdp::entity_uid(&target.resource_type, &target.resource_id)?,
        context,
        entities,
    };
    let facts = grants::facts::facts(state, principal, &body.action, &request.resource).await?;
    facts.apply(snapshot, &mut request)?;
    if crate::membership::APPROVING_ACTIONS.contains(&body.action.as_str()) {
        crate::membership::apply_made_by(state, principal, &mut request.context)?;
    }
    let decision = snapshot.decide_with_parents(&request, &facts.parents()?)?;
    let draft = decision_entry(principal, &request, &decision);
    Ok(Decided {
        decision,
        draft,
        facts,
    })
}

/// An Auditor reads the ledger and does nothing else: it asks for no decision and
/// reports no outcome, so nothing it does is written to the ledger it reads.
fn refuse_auditor(principal: &Principal) -> Result<(), ApiError> {
    if principal.kind() == PrincipalKind::Auditor {
        return Err(
            ApiError::forbidden("an auditor reads the ledger and asks for no decision")
                .with_code("auditor_read_only"),
        );
    }
    Ok(())
}

/// A principal acts only as the entity its token names, in the workspace its token
/// names: a stored entity of another workspace is refused.
pub(crate) fn check_principal_entity(
    snapshot: &Snapshot,
    principal: &Principal,
) -> Result<(), ApiError> {
    let Some(workspace) = principal.workspace() else {
        return Ok(());
    };
    let uid = principal.entity().to_string();
    let stored = snapshot.entity_json(&uid).ok_or_else(|| {
        ApiError::forbidden(format!("the principal `{uid}` is not in the entity store"))
    })?;
    if crate::admin::entity_workspace(stored) != Some(workspace.as_str()) {
        return Err(ApiError::forbidden(format!(
            "the token's workspace `{}` is not the workspace of `{uid}`",
            workspace.as_str()
        )));
    }
    Ok(())
}

/// The ledger entry of a decision: what was asked and answered, under which policy
/// set. The context is recorded by digest only (it may carry data the caller does
/// not want copied), error messages not at all (they may quote such data).
pub(crate) fn decision_entry(
    principal: &Principal,
    request: &DecisionRequest,
    decision: &Decision,
) -> EntryDraft {
    let (actor, workspace) = actor_and_workspace(principal);
    let mut fields = Map::new();
    fields.insert("action".into(), json!(request.action.id().unescaped()));
    fields.insert("resource".into(), json!(request.resource.to_string()));
    fields.insert(
        "decision".into(),
        json!(if decision.allow { "allow" } else { "deny" }),
    );
    fields.insert("reasons".into(), json!(decision.reasons));
    fields.insert(
        "errors".into(),
        json!(decision
            .errors
            .iter()
            .map(|e| e.policy_id.as_str())
            .collect::<Vec<_>>()),
    );
    fields.insert("obligations".into(), json!(decision.obligations));
    fields.insert("policy_set".into(), json!(decision.policy_set.to_string()));
    let context_bytes = serde_json::to_vec(&request.context).unwrap_or_default();
    fields.insert(
        "context_sha256".into(),
        json!(hex::encode(Sha256::digest(context_bytes))),
    );
    if !request.entities.is_empty() {
        let uids: Vec<String> = request
            .entities
            .iter()
            .map(|e| e.uid().to_string())
            .collect();
        fields.insert("request_entities".into(), json!(uids));
    }
    if decision.failed_closed {
        fields.insert("failed_closed".into(), json!(true));
    }
    name_credential(&mut fields, principal);
    EntryDraft {
        kind: "decision".into(),
        actor,
        workspace,
        fields,
    }
}

/// Names the credential a principal acted with in an entry's fields (`credential`),
/// so that an auditor tells two keys of one principal apart.
pub(crate) fn name_credential(fields: &mut Map<String, Value>, principal: &Principal) {
    if let Some(credential) = principal.credential() {
        fields.insert("credential".into(), credential.to_json());
    }
}

/// Records a decided request and builds its answer; an unrecorded decision is an error.
async fn record_and_answer(
    state: &AppState,
    decided: Decided,
    started: Instant,
) -> Result<Value, ApiError> {
    let Decided {
        decision,
        mut draft,
        mut facts,
    } = decided;
    let mut obligations = decision.obligations.clone();
    if decision.allow && obligations.iter().any(|o| o == APPROVAL) {
        if let Some(gate) = grants::facts::take_gate(state, &mut facts)? {
            tracing::debug!(gate = %gate, "an approved gate satisfies the approval obligation");
            obligations.retain(|o| o != APPROVAL);
        }
    }
    facts.annotate(&mut draft);
    let receipt = state.record(&draft).await?;
    drop(facts);
    if let Some(gate) = draft.fields.get("approval").and_then(Value::as_str) {
        grants::facts::note_gate_use(state, gate, &receipt.index.0.to_string());
    }
    let decision = &decision;
    state.metrics.decision(
        decision.allow,
        started.elapsed().as_secs_f64(),
        receipt.index.0.saturating_add(1),
    );
    Ok(json!({
        "decision_id": receipt.index.0.to_string(),
        "decision": if decision.allow { "allow" } else { "deny" },
        "reasons": decision.reasons,
        "errors": decision.errors.iter().map(|e| json!({"policy_id": e.policy_id, "message": e.message})).collect::<Vec<_>>(),
        "obligations": obligations,
        "approval": draft.fields.get("approval"),
        "elevation": draft.fields.get("elevation"),
        "consent": draft.fields.get("consent"),
        "policy_set": decision.policy_set.to_string(),
        "receipt": receipt.to_text(),
        "entry": state.entry_text(&receipt),
    }))
}

/// Parses a JSON body by hand so that malformed JSON, identity fields and unknown
/// fields each get a precise 400 or 422.
fn parse_body<T: serde::de::DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    refuse_identity_fields(&value)?;
    serde_json::from_value(value)
        .map_err(|error| ApiError::unprocessable("invalid_body", error.to_string()))
}

pub async fn authorize(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: crate::routes::JsonBody,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let principal = state.principal(&headers)?;
    let body: AuthorizeBody = parse_body(body.0)?;
    let snapshot = state.engine.snapshot();
    let decided = decide(&state, &snapshot, &principal, &body).await?;
    Ok(Json(record_and_answer(&state, decided, started).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchBody {
    requests: Vec<Value>,
}

/// Decides every request against one snapshot and records them together; each item
/// is an answer or an error of its own.
pub async fn authorize_batch(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: crate::routes::JsonBody,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let principal = state.principal(&headers)?;
    refuse_identity_fields(&body.0)?;
    let batch: BatchBody = parse_body(body.0)?;
    if batch.requests.is_empty() || batch.requests.len() > MAX_BATCH {
        return Err(ApiError::unprocessable(
            "invalid_batch",
            format!("a batch holds 1 to {MAX_BATCH} requests"),
        ));
    }
    let snapshot = state.engine.snapshot();
    let mut tasks = tokio::task::JoinSet::new();
    let mut results: Vec<Value> = vec![Value::Null; batch.requests.len()];
    for (position, item) in batch.requests.into_iter().enumerate() {
        let decided = match parse_body::<AuthorizeBody>(item) {
            Ok(body) => decide(&state, &snapshot, &principal, &body).await,
            Err(error) => Err(error),
        };
        match decided {
            Ok(decided) => {
                let state = Arc::clone(&state);
                tasks.spawn(async move {
                    (position, record_and_answer(&state, decided, started).await)
                });
            }
            Err(error) => {
                if let Some(slot) = results.get_mut(position) {
                    *slot = json!({"error": {"code": error.code, "message": error.message}});
                }
            }
        }
    }
    while let Some(joined) = tasks.join_next().await {
        let (position, answer) =
            joined.map_err(|error| ApiError::internal("a batch item", &error))?;
        // Any unrecorded item fails the whole batch: no allow goes out unrecorded.
        let answer = answer?;
        if let Some(slot) = results.get_mut(position) {
            *slot = answer;
        }
    }
    Ok(Json(json!({"results": results})))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeBody {
    /// `succeeded`, `failed` or `abandoned`.
    status: String,
    #[serde(default)]
    detail: Option<String>,
}

/// Records what became of an allowed action. Only the principal that asked may report.
pub async fn outcome(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: crate::routes::JsonBody,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    refuse_auditor(&principal)?;
    let body: OutcomeBody = parse_body(body.0)?;
    if !matches!(body.status.as_str(), "succeeded" | "failed" | "abandoned") {
        return Err(ApiError::unprocessable(
            "invalid_status",
            "`status` is one of succeeded, failed, abandoned",
        ));
    }
    if body.detail.as_ref().is_some_and(|d| d.len() > 1024) {
        return Err(ApiError::unprocessable(
            "detail_too_long",
            "`detail` is at most 1024 bytes",
        ));
    }
    let index: u64 = id
        .parse()
        .map_err(|_| ApiError::not_found(format!("no decision `{}`", truncate(&id))))?;
    let (actor, workspace) = actor_and_workspace(&principal);
    let store = Arc::clone(&state.ledger_store);
    let entry = tokio::task::spawn_blocking(move || store.entry(LeafIndex(index)))
        .await
        .map_err(|error| ApiError::internal("reading the decision", &error))?
        .map_err(|error| ApiError::internal("reading the decision", &error))?
        .ok_or_else(|| ApiError::not_found(format!("no decision `{index}`")))?;
    let entry: Value = serde_json::from_slice(&entry)
        .map_err(|error| ApiError::internal("decoding the decision", &error))?;
    let is_theirs = entry.get("kind").and_then(Value::as_str) == Some("decision")
        && entry.get("actor").and_then(Value::as_str) == Some(actor.as_str())
        && entry.get("workspace").and_then(Value::as_str) == Some(workspace.as_str());
    if !is_theirs {
        // The same answer as for a missing decision: ids of others' decisions are not confirmed.
        return Err(ApiError::not_found(format!("no decision `{index}`")));
    }
    if entry.get("decision").and_then(Value::as_str) != Some("allow") {
        return Err(ApiError::new(
            axum::http::StatusCode::CONFLICT,
            "decision_denied",
            format!("decision `{index}` was a deny: there is no action to report on"),
        ));
    }
    let mut fields = Map::new();
    fields.insert("decision_id".into(), json!(index.to_string()));
    fields.insert("status".into(), json!(body.status));
    if let Some(detail) = body.detail {
        fields.insert("detail".into(), json!(detail));
    }
    name_credential(&mut fields, &principal);
    let receipt = state
        .record(&EntryDraft {
            kind: "outcome".into(),
            actor,
            workspace,
            fields,
        })
        .await?;
    Ok(Json(json!({
        "outcome_id": receipt.index.0.to_string(),
        "receipt": receipt.to_text(),
        "entry": state.entry_text(&receipt),
    })))
}

fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}
