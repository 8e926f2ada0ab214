//! Admin endpoints: entities, API keys and policy reload. Each is itself a Cedar
//! decision (an `admin.*` action) recorded in the ledger, and each change is a ledger
//! entry written before the change takes effect.

use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use writ_ledger::EntryDraft;
use writ_pdp::{DecisionRequest, LoadedPolicies};

use crate::error::ApiError;
use crate::identity::{IdentityError, Principal, PrincipalEntity, PrincipalKind, WorkspaceId};
use crate::membership;
use crate::state::{actor_and_workspace, principal_uid, AppState, Shared};

/// Entity types only operators may write: who is an operator, what the roles are, the
/// kernel's switches. Host and File are built per request and never stored. Secret:
/// the vault builds `Secret::"WORKSPACE/NAME"` itself, and a stored entity of that
/// uid (which a workspace admin could otherwise plant, naming its own workspace)
/// would shadow it and block every call on that secret. Elevation, ApprovalRequest
/// and Consent are built by the kernel from its grants and never stored.
const OPERATOR_ONLY_TYPES: [&str; 12] = [
    "Operator",
    "Auditor",
    "Role",
    "KillSwitch",
    "Kernel",
    "Host",
    "File",
    "Secret",
    "Elevation",
    "ApprovalRequest",
    "Consent",
    "RoleChange",
];

/// The largest entity accepted by `PUT /v1/entities` (it is recorded in the ledger whole).
const MAX_ENTITY_BYTES: usize = 16 * 1024;

/// An allowed admin decision. It holds the grants the allow relied on: keep it
/// until the change is made, so that no elevation ends between the decision and
/// its effect.
#[derive(Debug)]
pub struct Admitted {
    /// The break-glass elevation the allow relied on, if any.
    pub elevation: Option<String>,
    _facts: crate::grants::facts::Facts,
}

/// Decides an admin action on the principal's scope and records the decision;
/// a deny is a 403.
pub async fn authorize_admin(
    state: &AppState,
    principal: &Principal,
    action: &str,
    workspace: Option<&str>,
) -> Result<Admitted, ApiError> {
    let resource = match workspace {
        Some(workspace) => writ_pdp::entity_uid("Workspace", workspace)?,
        None => writ_pdp::entity_uid("Kernel", "writ")?,
    };
    let snapshot = state.engine.snapshot();
    let request = DecisionRequest {
        principal: principal_uid(principal)?,
        action: writ_pdp::entity_uid("Action", action)?,
        resource: resource.clone(),
        context: json!({}),
        entities: Vec::new(),
    };
    let facts = crate::grants::facts::facts(state, principal, action, &resource).await?;
    let decision = snapshot.decide_with_parents(&request, &facts.parents()?)?;
    let mut draft = crate::authorize::decision_entry(principal, &request, &decision);
    facts.annotate(&mut draft);
    state.record(&draft).await?;
    if decision.allow {
        Ok(Admitted {
            elevation: facts.elevation.as_ref().map(|(id, _)| id.clone()),
            _facts: facts,
        })
    } else {
        Err(ApiError::forbidden(format!(
            "`{action}` is denied by policy"
        )))
    }
}

/// Records a change made by `principal` before it takes effect; returns the
/// entry's index.
pub(crate) async fn record_change(
    state: &AppState,
    principal: &Principal,
    kind: &str,
    fields: Map<String, Value>,
) -> Result<String, ApiError> {
    let (actor, workspace) = actor_and_workspace(principal);
    let mut fields = fields;
    crate::authorize::name_credential(&mut fields, principal);
    let receipt = state
        .record(&EntryDraft {
            kind: kind.into(),
            actor,
            workspace,
            fields,
        })
        .await?;
    Ok(receipt.index.0.to_string())
}

/// A principal never writes or deletes its own entity (its roles, its workspace,
/// its kill switch): another admin does. Otherwise an admin, or anyone holding
/// admin through break-glass for a while, could make itself owner for good.
fn refuse_self(principal: &Principal, uid: &str) -> Result<(), ApiError> {
    if principal.entity().to_string() == uid {
        return Err(ApiError::forbidden(
            "a principal never changes its own entity (roles, workspace, switches); another admin does",
        )
        .with_code("self_modification"));
    }
    Ok(())
}

/// The workspace an entity belongs to (`attrs.workspace`), if it names one.
pub(crate) fn entity_workspace(entity: &Value) -> Option<&str> {
    entity
        .pointer("/attrs/workspace/__entity/id")
        .or_else(|| entity.pointer("/attrs/workspace/id"))
        .and_then(Value::as_str)
}

fn entity_type(uid: &str) -> &str {
    uid.split_once("::\"").map_or(uid, |(t, _)| t)
}

/// Whether a workspace-scoped principal may see or change this entity: only entities
/// of its own workspace, and its Workspace entity itself.
fn in_scope(workspace: &WorkspaceId, uid: &str, entity: &Value) -> bool {
    if OPERATOR_ONLY_TYPES.contains(&entity_type(uid)) {
        return false;
    }
    if entity_type(uid) == "Workspace" {
        return uid == format!("Workspace::\"{}\"", workspace.as_str());
    }
    entity_workspace(entity) == Some(workspace.as_str())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    #[serde(rename = "type")]
    entity_type: Option<String>,
}

pub async fn list_entities(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let scope = principal.workspace().cloned();
    authorize_admin(
        &state,
        &principal,
        "admin.entities.read",
        scope.as_ref().map(WorkspaceId::as_str),
    )
    .await?;
    let snapshot = state.engine.snapshot();
    let entities: Vec<&Value> = snapshot
        .list_entities(query.entity_type.as_deref())
        .filter(|(uid, entity)| scope.as_ref().is_none_or(|ws| in_scope(ws, uid, entity)))
        .map(|(_, entity)| entity)
        .collect();
    Ok(Json(json!({"entities": entities})))
}

pub async fn get_entity(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let scope = principal.workspace().cloned();
    authorize_admin(
        &state,
        &principal,
        "admin.entities.read",
        scope.as_ref().map(WorkspaceId::as_str),
    )
    .await?;
    let uid = canonical_uid(&uid)?;
    let snapshot = state.engine.snapshot();
    let entity = snapshot
        .entity_json(&uid)
        .filter(|entity| scope.as_ref().is_none_or(|ws| in_scope(ws, &uid, entity)))
        .ok_or_else(|| ApiError::not_found(format!("no entity `{uid}`")))?;
    Ok(Json(entity.clone()))
}

fn canonical_uid(text: &str) -> Result<String, ApiError> {
    writ_pdp::cedar_policy::EntityUid::from_str(text)
        .map(|uid| uid.to_string())
        .map_err(|_| {
            ApiError::unprocessable(
                "invalid_entity_uid",
                "the entity uid must look like `Type::\"id\"`",
            )
        })
}

pub async fn put_entity(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: crate::routes::JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let principal = state.principal(&headers)?;
    let entity = body.0;
    let bytes = serde_json::to_vec(&entity)
        .map_err(|error| ApiError::internal("encoding the entity", &error))?;
    if bytes.len() > MAX_ENTITY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "entity_too_large",
            "an entity is at most 16 KiB",
        ));
    }
    let uid = state.engine.check_entity(&entity)?;
    membership::check_member_uid(&uid)?;
    refuse_self(&principal, &uid)?;
    if matches!(
        entity_type(&uid),
        "Host" | "File" | "Elevation" | "ApprovalRequest" | "Consent" | "RoleChange"
    ) {
        return Err(ApiError::unprocessable(
            "entity_not_storable",
            "Host, File, Elevation, ApprovalRequest, Consent and RoleChange entities are built by the kernel for each request and are never stored",
        ));
    }
    let scope = principal.workspace().cloned();
    // Held until the change is stored: the roles read here are the roles changed.
    let _membership = membership::lock(&state).await;
    let existing = state.engine.snapshot().entity_json(&uid).cloned();
    if let Some(workspace) = &scope {
        let existing_ok = existing
            .as_ref()
            .is_none_or(|existing| in_scope(workspace, &uid, existing));
        if !in_scope(workspace, &uid, &entity) || !existing_ok {
            return Err(ApiError::forbidden(format!(
                "`{uid}` is outside the workspace `{}`",
                workspace.as_str()
            )));
        }
    }
    // Held until the change is made: no elevation it relied on ends before.
    let _admitted = authorize_admin(
        &state,
        &principal,
        "admin.entities.write",
        scope.as_ref().map(WorkspaceId::as_str),
    )
    .await?;
    let role_changes = if membership::is_member(&uid) {
        membership::changes(existing.as_ref(), Some(&entity))
    } else {
        Vec::new()
    };
    membership::authorize(&state, &principal, &uid, &role_changes).await?;
    let gives = role_changes
        .iter()
        .any(|c| c.direction == membership::Direction::Assign);
    if membership::is_member(&uid) && (existing.is_none() || gives) {
        membership::note_onboarded(&state, &uid, &principal).await?;
    }
    membership::record(&state, &principal, &uid, &role_changes).await?;
    let mut fields = Map::new();
    fields.insert("uid".into(), json!(uid));
    fields.insert("entity".into(), entity.clone());
    fields.insert(
        "entity_sha256".into(),
        json!(hex::encode(Sha256::digest(&bytes))),
    );
    record_change(&state, &principal, "entity.upserted", fields).await?;
    let engine = Arc::clone(&state.engine);
    let uid = tokio::task::spawn_blocking(move || engine.upsert_entity(&entity))
        .await
        .map_err(|error| ApiError::internal("storing the entity", &error))??;
    Ok((StatusCode::OK, Json(json!({"uid": uid}))))
}

pub async fn delete_entity(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> Result<StatusCode, ApiError> {
    let principal = state.principal(&headers)?;
    let uid = canonical_uid(&uid)?;
    refuse_self(&principal, &uid)?;
    let scope = principal.workspace().cloned();
    let _membership = membership::lock(&state).await;
    let snapshot = state.engine.snapshot();
    let existing = snapshot
        .entity_json(&uid)
        .ok_or_else(|| ApiError::not_found(format!("no entity `{uid}`")))?;
    if let Some(workspace) = &scope {
        if !in_scope(workspace, &uid, existing) {
            return Err(ApiError::not_found(format!("no entity `{uid}`")));
        }
    }
    if crate::state::REQUIRED_ENTITIES.contains(&uid.as_str()) {
        return Err(ApiError::unprocessable(
            "entity_required",
            format!("`{uid}` is required by the kernel and cannot be deleted"),
        ));
    }
    // Held until the change is made: no elevation it relied on ends before.
    let _admitted = authorize_admin(
        &state,
        &principal,
        "admin.entities.write",
        scope.as_ref().map(WorkspaceId::as_str),
    )
    .await?;
    let role_changes = if membership::is_member(&uid) {
        membership::changes(Some(existing), None)
    } else {
        Vec::new()
    };
    membership::authorize(&state, &principal, &uid, &role_changes).await?;
    membership::record(&state, &principal, &uid, &role_changes).await?;
    let mut fields = Map::new();
    fields.insert("uid".into(), json!(uid));
    record_change(&state, &principal, "entity.deleted", fields).await?;
    let engine = Arc::clone(&state.engine);
    tokio::task::spawn_blocking(move || engine.delete_entity(&uid))
        .await
        .map_err(|error| ApiError::internal("deleting the entity", &error))??;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateKeyBody {
    /// The principal the key acts as, e.g. `User::"alice"`.
    principal: String,
    /// Its workspace (none for operators).
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    label: Option<String>,
}

/// Which admin action mints a key of `subject` for `caller`, or why none does:
/// a User's keys only for itself (self-service) or by an Operator, so that no
/// owner or admin can act through a puppet; an Agent's keys by its workspace's
/// owners and admins; an Operator's or Auditor's keys by an Operator.
fn key_minting_action(caller: &Principal, subject: &Principal) -> Result<&'static str, ApiError> {
    if let Some(own) = caller.workspace() {
        if subject.workspace() != Some(own) {
            return Err(ApiError::forbidden(format!(
                "keys can be made only for principals of the workspace `{}`",
                own.as_str()
            )));
        }
    }
    match subject.kind() {
        PrincipalKind::User if caller.entity() == subject.entity() => Ok("admin.apikeys.self"),
        PrincipalKind::User if caller.kind() != PrincipalKind::Operator => Err(ApiError::forbidden(
            "a User's API keys are made by that User or by an operator, never by another member",
        )
        .with_code("user_keys_self_service")),
        PrincipalKind::User | PrincipalKind::Agent => Ok("admin.apikeys.manage"),
        PrincipalKind::Operator | PrincipalKind::Auditor => {
            if subject.workspace().is_some() {
                return Err(ApiError::unprocessable(
                    "invalid_principal",
                    "operators and auditors have no workspace",
                ));
            }
            Ok("admin.apikeys.manage")
        }
    }
}

pub async fn create_api_key(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: crate::routes::JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let caller = state.principal(&headers)?;
    let body: CreateKeyBody = serde_json::from_value(body.0)
        .map_err(|error| ApiError::unprocessable("invalid_body", error.to_string()))?;
    let entity = PrincipalEntity::from_str(&body.principal)
        .map_err(|error| ApiError::unprocessable("invalid_principal", error.to_string()))?;
    let workspace = body
        .workspace
        .as_deref()
        .map(WorkspaceId::new)
        .transpose()
        .map_err(|error| ApiError::unprocessable("invalid_workspace", error.to_string()))?;
    let subject = Principal::new(entity, workspace)
        .map_err(|error| ApiError::unprocessable("invalid_principal", error.to_string()))?;
    let action = key_minting_action(&caller, &subject)?;
    if let Some(workspace) = subject.workspace() {
        // One answer whether the entity is missing or in another workspace: ids are
        // global, and a tenant must not learn which ids other tenants use.
        let uid = subject.entity().to_string();
        let snapshot = state.engine.snapshot();
        let member = snapshot
            .entity_json(&uid)
            .is_some_and(|stored| entity_workspace(stored) == Some(workspace.as_str()));
        if !member {
            return Err(ApiError::unprocessable(
                "unknown_principal",
                format!(
                    "`{uid}` is not a member of the workspace `{}`; add it first",
                    workspace.as_str()
                ),
            ));
        }
    }
    let admitted = authorize_admin(
        &state,
        &caller,
        action,
        subject.workspace().map(WorkspaceId::as_str),
    )
    .await?;
    if let Some(elevation) = &admitted.elevation {
        // A key would outlive the elevation that allowed it.
        return Err(ApiError::forbidden(format!(
            "API keys are not created under a break-glass elevation ({elevation}): \
             the key would outlive it; ask an admin who holds the role"
        ))
        .with_code("not_under_elevation"));
    }
    if subject.kind() == PrincipalKind::Agent {
        // Whoever mints an Agent's key can act as it: never its approver.
        membership::note_onboarded(&state, &subject.entity().to_string(), &caller).await?;
    }
    let now = crate::unix_now_ms();
    let (record, secret) = state
        .auth
        .api_keys()
        .create(&subject, body.label.as_deref(), now)
        .map_err(|error| match error {
            IdentityError::BadLabel => ApiError::unprocessable("bad_label", error.to_string()),
            other => ApiError::from(other),
        })?;
    let mut fields = Map::new();
    fields.insert("key_id".into(), json!(record.id.as_str()));
    fields.insert("principal".into(), json!(subject.entity().to_string()));
    fields.insert(
        "key_workspace".into(),
        json!(subject.workspace().map(WorkspaceId::as_str)),
    );
    if let Err(error) = record_change(&state, &caller, "apikey.created", fields).await {
        // The key was never shown: take it back so no unrecorded key can be used.
        if let Err(revoke_error) = state.auth.api_keys().revoke(record.id.as_str()) {
            tracing::error!(%revoke_error, "revoking an unrecorded api key failed");
        }
        return Err(error);
    }
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": record.id.as_str(), "key": secret.expose(), "principal": subject.entity().to_string(), "workspace": subject.workspace().map(WorkspaceId::as_str)}),
        ),
    ))
}

pub async fn list_api_keys(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let caller = state.principal(&headers)?;
    let scope = caller.workspace().cloned();
    authorize_admin(
        &state,
        &caller,
        "admin.apikeys.manage",
        scope.as_ref().map(WorkspaceId::as_str),
    )
    .await?;
    let keys: Vec<Value> = state
        .auth
        .api_keys()
        .list()?
        .into_iter()
        .filter(|record| scope.is_none() || record.principal.workspace() == scope.as_ref())
        .map(|record| {
            json!({"id": record.id.as_str(), "principal": record.principal.entity().to_string(),
                   "workspace": record.principal.workspace().map(WorkspaceId::as_str),
                   "label": record.label, "created_unix_ms": record.created_unix_ms, "revoked": record.revoked})
        })
        .collect();
    Ok(Json(json!({"keys": keys})))
}

/// Another User's key is revoked only by an owner of its workspace (standing role)
/// or an operator: an admin who could revoke the owners' keys, which only they or an
/// operator can mint again, could lock every owner out.
fn refuse_revoking_a_users_key(
    state: &AppState,
    caller: &Principal,
    subject: &Principal,
) -> Result<(), ApiError> {
    if subject.kind() != PrincipalKind::User
        || caller.kind() == PrincipalKind::Operator
        || caller.entity() == subject.entity()
    {
        return Ok(());
    }
    let snapshot = state.engine.snapshot();
    let owner = snapshot
        .entity_json(&caller.entity().to_string())
        .is_some_and(|stored| membership::roles(stored).contains("owner"));
    if owner {
        return Ok(());
    }
    Err(ApiError::forbidden(
        "another User's API key is revoked by an owner of its workspace or an operator",
    )
    .with_code("user_keys_owner_revokes"))
}

pub async fn revoke_api_key(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let caller = state.principal(&headers)?;
    let record = state
        .auth
        .api_keys()
        .get(&id)
        .map_err(|_| ApiError::not_found("no such api key"))?;
    let scope = caller.workspace().cloned();
    if scope.is_some() && record.principal.workspace() != scope.as_ref() {
        return Err(ApiError::not_found("no such api key"));
    }
    refuse_revoking_a_users_key(&state, &caller, &record.principal)?;
    // Anyone may revoke its own keys; other keys are managed by admins.
    let action =
        if caller.kind() == PrincipalKind::User && record.principal.entity() == caller.entity() {
            "admin.apikeys.self"
        } else {
            "admin.apikeys.manage"
        };
    let _admitted = authorize_admin(
        &state,
        &caller,
        action,
        record.principal.workspace().map(WorkspaceId::as_str),
    )
    .await?;
    let mut fields = Map::new();
    fields.insert("key_id".into(), json!(record.id.as_str()));
    fields.insert(
        "principal".into(),
        json!(record.principal.entity().to_string()),
    );
    record_change(&state, &caller, "apikey.revoked", fields).await?;
    state
        .auth
        .api_keys()
        .revoke(&id)
        .map_err(|error| ApiError::internal("revoking the api key", &error))?;
    Ok(StatusCode::NO_CONTENT)
}

/// Loads the policy directory, records `policy.loaded`, then swaps the set in. A set
/// that does not load changes nothing and is answered with the validator's messages.
pub async fn reload_policies(
    state: &AppState,
    actor: Option<&Principal>,
) -> Result<Value, ApiError> {
    let (policy_dir, schema_dir) = (state.policy_dir.clone(), state.schema_dir.clone());
    let loaded =
        tokio::task::spawn_blocking(move || LoadedPolicies::load(&policy_dir, &schema_dir))
            .await
            .map_err(|error| ApiError::internal("loading policies", &error))?;
    let loaded = match loaded {
        Ok(loaded) => loaded,
        Err(error) => {
            state.metrics.policy_reload(false);
            tracing::warn!(%error, "policy reload refused; the running set stays");
            return Err(ApiError::from(error));
        }
    };
    let digest = loaded.digest();
    let mut fields = Map::new();
    fields.insert("policy_set".into(), json!(digest.to_string()));
    fields.insert("policies".into(), json!(loaded.policy_count()));
    fields.insert("policy_files".into(), json!(loaded.policy_files()));
    fields.insert("schema_files".into(), json!(loaded.schema_files()));
    let (actor, workspace) =
        actor.map_or_else(|| ("writ".to_owned(), "-".to_owned()), actor_and_workspace);
    let warnings: Vec<String> = loaded.warnings().iter().map(ToString::to_string).collect();
    state
        .record(&EntryDraft {
            kind: "policy.loaded".into(),
            actor,
            workspace,
            fields,
        })
        .await?;
    let engine = Arc::clone(&state.engine);
    tokio::task::spawn_blocking(move || engine.reload(loaded))
        .await
        .map_err(|error| ApiError::internal("swapping the policy set", &error))?
        .inspect_err(|_| state.metrics.policy_reload(false))?;
    state.metrics.policy_reload(true);
    tracing::info!(policy_set = %digest, "policy set loaded");
    Ok(json!({"policy_set": digest.to_string(), "warnings": warnings}))
}

pub async fn reload(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    authorize_admin(&state, &principal, "admin.policies.reload", None).await?;
    Ok(Json(reload_policies(&state, Some(&principal)).await?))
}
