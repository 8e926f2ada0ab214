//! `PUT /v1/secrets/{name}`, `GET /v1/secrets`, `DELETE /v1/secrets/{name}/versions/{v}`
//! and `POST /v1/secrets/{name}/reveal`.
//!
//! The workspace is always the caller's verified one. While the vault is sealed
//! every one of them answers 503 `vault_sealed`, before any decision. Each call is a Cedar decision
//! on a kernel-built `Secret` entity (`Secret::"WORKSPACE/NAME"`), recorded before
//! anything changes; a reveal's entry (version, lease) is durable before the
//! value is sent. No value ever reaches a log line, an error or the ledger.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use writ_ledger::EntryDraft;
use writ_pdp::{Decision, DecisionRequest};
use writ_vault::{
    envelope, Binding, Purpose, SecretId, SecretName, SecretStore as _, SecretValue, SecretVersion,
    VaultError, Workspace, MAX_VALUE_LEN,
};
use zeroize::Zeroizing;

use crate::admin::record_change;
use crate::authorize::decision_entry;
use crate::error::ApiError;
use crate::grants::facts::{facts, take_gate, Facts, APPROVAL};
use crate::identity::Principal;
use crate::request::refuse_identity_fields;
use crate::routes::JsonBody;
use crate::state::{principal_uid, AppState, Shared};
use crate::vault::leases::{new_lease_id, Lease, DEFAULT_LEASE_MS};

/// The caller's workspace, as the vault binds it; operators hold no secrets.
fn caller_workspace(principal: &Principal) -> Result<Workspace, ApiError> {
    let workspace = principal.workspace().ok_or_else(|| {
        ApiError::forbidden("secrets belong to a workspace; an operator has none")
    })?;
    Workspace::new(workspace.as_str()).map_err(ApiError::from)
}

fn secret_name(name: &str) -> Result<SecretName, ApiError> {
    SecretName::new(name).map_err(ApiError::from)
}

fn require_unsealed(state: &AppState) -> Result<(), ApiError> {
    if state.vault.is_sealed() {
        return Err(ApiError::from(VaultError::Sealed));
    }
    Ok(())
}

/// Decides `action` on a secret (or, without a name, on the workspace) with the
/// grants it may rely on, and drafts the decision's ledger entry; nothing is
/// recorded yet. Hold the facts until the entry is recorded.
async fn decide(
    state: &AppState,
    principal: &Principal,
    action: &str,
    workspace: &Workspace,
    name: Option<&SecretName>,
) -> Result<(Decision, EntryDraft, Facts), ApiError> {
    let snapshot = state.engine.snapshot();
    let (resource, entities) = match name {
        Some(name) => {
            let id = format!("{workspace}/{name}");
            let entity = json!({
                "uid": {"type": "Secret", "id": id},
                "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": workspace.as_str()}}},
                "parents": [],
            });
            let entities =
                snapshot.request_entities(std::slice::from_ref(&entity), &Default::default())?;
            (writ_pdp::entity_uid("Secret", &id)?, entities)
        }
        None => (
            writ_pdp::entity_uid("Workspace", workspace.as_str())?,
            Vec::new(),
        ),
    };
    let mut request = DecisionRequest {
        principal: principal_uid(principal)?,
        action: writ_pdp::entity_uid("Action", action)?,
        resource,
        context: json!({}),
        entities,
    };
    let facts = facts(state, principal, action, &request.resource).await?;
    facts.apply(&snapshot, &mut request)?;
    let decision = snapshot.decide_with_parents(&request, &facts.parents()?)?;
    let mut draft = decision_entry(principal, &request, &decision);
    if let Some(name) = name {
        draft.fields.insert("secret".into(), json!(name.as_str()));
    }
    facts.annotate(&mut draft);
    Ok((decision, draft, facts))
}

async fn record(state: &AppState, draft: &EntryDraft) -> Result<String, ApiError> {
    Ok(state.record(draft).await?.index.0.to_string())
}

fn denied(action: &str) -> ApiError {
    ApiError::forbidden(format!("`{action}` is denied by policy"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PutBody {
    #[serde(default)]
    value: Option<Zeroizing<String>>,
    #[serde(default)]
    value_base64: Option<Zeroizing<String>>,
}

/// The value of a put body: exactly one of `value` (UTF-8) and `value_base64`.
fn put_value(body: JsonBody) -> Result<SecretValue, ApiError> {
    refuse_identity_fields(&body.0)?;
    let body: PutBody = serde_json::from_value(body.0).map_err(|_| {
        ApiError::unprocessable(
            "invalid_body",
            "the body is `{\"value\": STRING}` or `{\"value_base64\": STRING}`",
        )
    })?;
    let value = match (body.value, body.value_base64) {
        (Some(text), None) => SecretValue::new(text.as_bytes().to_vec()),
        (None, Some(encoded)) => {
            SecretValue::new(STANDARD.decode(encoded.as_bytes()).map_err(|_| {
                ApiError::unprocessable("invalid_base64", "`value_base64` is not standard base64")
            })?)
        }
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "give exactly one of `value` and `value_base64`",
            ))
        }
    };
    if value.len() > MAX_VALUE_LEN {
        return Err(ApiError::from(VaultError::ValueTooLarge {
            len: value.len(),
            max: MAX_VALUE_LEN,
        }));
    }
    Ok(value)
}

pub async fn put_secret(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: JsonBody,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let principal = state.principal(&headers)?;
    let workspace = caller_workspace(&principal)?;
    let name = secret_name(&name)?;
    let value = put_value(body)?;
    require_unsealed(&state)?;
    // The facts are held to the end: no grant this put relies on ends before its
    // entry is recorded.
    let (decision, mut draft, _facts) =
        decide(&state, &principal, "secret.put", &workspace, Some(&name)).await?;
    if !decision.allow {
        record(&state, &draft).await?;
        return Err(denied("secret.put"));
    }
    // Allowed: the version is reserved and sealed first, so that the one entry of
    // this put (the decision, naming the version and its KEK) is durable before
    // the version exists. A reserved number that is never stored leaves a gap.
    let vault = Arc::clone(&state.vault);
    let (ws, secret) = (workspace.clone(), name.clone());
    let prepared = tokio::task::spawn_blocking(move || {
        let ring = vault.ring().ok_or(VaultError::Sealed)?;
        let version = vault.secrets.reserve_version(&ws, &secret)?;
        // Durable before the entry that names it: a crash must not hand the same
        // number out again.
        vault.secrets.flush()?;
        let purpose = Purpose::secret_value();
        let binding = Binding {
            workspace: &ws,
            name: &secret,
            version,
            purpose: &purpose,
        };
        let envelope = envelope::seal(&ring, binding, value.expose(), &mut rand::rngs::OsRng)?;
        let id = SecretId {
            workspace: ws,
            name: secret,
            version,
        };
        Ok::<_, VaultError>((id, envelope, ring.primary_version()))
    })
    .await
    .map_err(|error| ApiError::internal("sealing the secret", &error))
    .and_then(|sealed| sealed.map_err(ApiError::from));
    let (id, envelope, kek) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => {
            // The allow is recorded even though nothing was written.
            draft.fields.insert("written".into(), json!(false));
            draft.fields.insert("held_by".into(), json!(error.code));
            record(&state, &draft).await?;
            return Err(error);
        }
    };
    let version = id.version;
    draft.fields.insert("version".into(), json!(version.get()));
    draft.fields.insert("kek_version".into(), json!(kek.get()));
    let decision_id = record(&state, &draft).await?;
    let vault = Arc::clone(&state.vault);
    tokio::task::spawn_blocking(move || {
        vault
            .secrets
            .insert_version(&id, crate::unix_now_ms(), &envelope)?;
        vault.secrets.flush()
    })
    .await
    .map_err(|error| ApiError::internal("storing the secret", &error))??;
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "name": name.as_str(),
            "version": version.get(),
            "reference": format!("writ://{workspace}/{name}#{version}"),
            "decision_id": decision_id,
        })),
    ))
}

pub async fn list_secrets(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let workspace = caller_workspace(&principal)?;
    require_unsealed(&state)?;
    let (decision, draft, facts) =
        decide(&state, &principal, "secret.list", &workspace, None).await?;
    record(&state, &draft).await?;
    drop(facts);
    if !decision.allow {
        return Err(denied("secret.list"));
    }
    let listing = state.vault.secrets.list(&workspace)?;
    let secrets: Vec<Value> = listing
        .into_iter()
        .map(|(name, versions)| {
            json!({
                "name": name.as_str(),
                "versions": versions.iter().map(|v| json!({
                    "version": v.version.get(),
                    "created_unix_ms": v.created_unix_ms,
                    "kek_version": v.kek.map(|k| k.get()),
                    "destroyed_unix_ms": v.destroyed_unix_ms,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(
        json!({"workspace": workspace.as_str(), "secrets": secrets}),
    ))
}

pub async fn delete_version(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((name, version)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let workspace = caller_workspace(&principal)?;
    let name = secret_name(&name)?;
    let version = parse_version(&version)?;
    require_unsealed(&state)?;
    // The facts are held to the end: no grant this delete relies on ends before
    // the version is destroyed.
    let (decision, mut draft, _facts) =
        decide(&state, &principal, "secret.delete", &workspace, Some(&name)).await?;
    draft.fields.insert("version".into(), json!(version.get()));
    let decision_id = record(&state, &draft).await?;
    if !decision.allow {
        return Err(denied("secret.delete"));
    }
    let id = SecretId {
        workspace: workspace.clone(),
        name: name.clone(),
        version,
    };
    // Only a live version is destroyed; the entry is durable before it is.
    match state.vault.secrets.get(&id)? {
        Some(writ_vault::StoredVersion::Live { .. }) => {}
        Some(writ_vault::StoredVersion::Destroyed { .. }) => {
            return Err(ApiError::from(VaultError::Destroyed {
                name: name.to_string(),
                version: version.get(),
            }))
        }
        None => {
            return Err(ApiError::from(VaultError::NoSuchVersion {
                name: name.to_string(),
                version: version.get(),
            }))
        }
    }
    let mut fields = Map::new();
    fields.insert("secret".into(), json!(name.as_str()));
    fields.insert("version".into(), json!(version.get()));
    fields.insert("decision_id".into(), json!(decision_id));
    record_change(&state, &principal, "secret.destroyed", fields).await?;
    state.vault.secrets.destroy(&id, crate::unix_now_ms())?;
    state.vault.secrets.flush()?;
    Ok(Json(
        json!({"name": name.as_str(), "version": version.get(), "destroyed": true}),
    ))
}

/// A version in a path: decimal digits, no sign, no leading zero.
fn parse_version(text: &str) -> Result<SecretVersion, ApiError> {
    let canonical = !text.is_empty()
        && text.len() <= 10
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    canonical
        .then(|| text.parse::<u32>().ok())
        .flatten()
        .and_then(|v| SecretVersion::new(v).ok())
        .ok_or_else(|| ApiError::unprocessable("bad_version", "a version is a whole number from 1"))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevealBody {
    #[serde(default)]
    version: Option<u32>,
}

pub async fn reveal(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let workspace = caller_workspace(&principal)?;
    let name = secret_name(&name)?;
    refuse_identity_fields(&body.0)?;
    let body: RevealBody = serde_json::from_value(body.0).map_err(|_| {
        ApiError::unprocessable("invalid_body", "the body is `{}` or `{\"version\": N}`")
    })?;
    let wanted = body
        .version
        .map(SecretVersion::new)
        .transpose()
        .map_err(ApiError::from)?;
    require_unsealed(&state)?;
    let (decision, mut draft, mut facts) =
        decide(&state, &principal, "secret.reveal", &workspace, Some(&name)).await?;
    if !decision.allow {
        record(&state, &draft).await?;
        return Err(denied("secret.reveal"));
    }
    let mut obligations = decision.obligations.clone();
    if obligations.iter().any(|o| o == APPROVAL) && take_gate(&state, &mut facts)?.is_some() {
        // An approved gate for exactly this reveal: used once, named in the entry.
        obligations.retain(|o| o != APPROVAL);
        facts.annotate(&mut draft);
    }
    if obligations.iter().any(|o| o == APPROVAL) {
        // Until a recorded approval covers it, an approval-gated reveal releases nothing.
        draft.fields.insert("released".into(), json!(false));
        draft
            .fields
            .insert("held_by".into(), json!("approval_required"));
        let decision_id = record(&state, &draft).await?;
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "approval_required",
            format!(
                "revealing `{name}` needs a recorded approval first: open one with \
                 POST /v1/approvals {{\"decision_id\": \"{decision_id}\"}} (writ approval request {decision_id})"
            ),
        )
        .with_decision(decision_id));
    }

    // Open the value before recording, so the entry says only what was released.
    let opened = open(&state, &workspace, &name, wanted);
    let (version, value) = match opened {
        Ok(found) => found,
        Err(error) => {
            draft.fields.insert("released".into(), json!(false));
            draft.fields.insert("held_by".into(), json!(error.code));
            record(&state, &draft).await?;
            return Err(error);
        }
    };
    let now = crate::unix_now_ms();
    let lease = Lease {
        id: new_lease_id(),
        workspace: workspace.as_str().to_owned(),
        secret: name.as_str().to_owned(),
        version: version.get(),
        holder: principal.entity().to_string(),
        issued_unix_ms: now,
        expires_unix_ms: now.saturating_add(DEFAULT_LEASE_MS),
        revoked_unix_ms: None,
        elevation: facts.elevation.as_ref().map(|(id, _)| id.clone()),
    };
    draft.fields.insert("released".into(), json!(true));
    draft.fields.insert("version".into(), json!(version.get()));
    draft.fields.insert("lease".into(), json!(lease.id));
    draft
        .fields
        .insert("lease_expires_unix_ms".into(), json!(lease.expires_unix_ms));
    // The lease exists before the entry that names it; if the entry cannot be
    // recorded, the lease goes and nothing is released. The lease store is not
    // flushed here (a flush per reveal doubled its p99): the ledger entry, which
    // is durable, is the record of the release and its lease; after a crash a
    // lease of the last moments can be missing from `writ vault leases`.
    state
        .vault
        .leases
        .insert(&lease)
        .map_err(|error| ApiError::internal("recording the lease", &error))?;
    let receipt = match state.record(&draft).await {
        Ok(receipt) => receipt,
        Err(error) => {
            if let Err(remove) = state.vault.leases.remove(&lease.id) {
                tracing::error!(error = %remove, "cannot remove the lease of an unrecorded reveal");
            }
            return Err(error);
        }
    };
    if let Some(gate) = &facts.gate_used {
        crate::grants::facts::note_gate_use(&state, gate, &receipt.index.0.to_string());
    }
    drop(facts);
    let mut answer = json!({
        "decision_id": receipt.index.0.to_string(),
        "name": name.as_str(),
        "version": version.get(),
        "reference": lease.reference(),
        "lease": {"id": lease.id, "expires_unix_ms": lease.expires_unix_ms},
        "obligations": obligations,
        "value_base64": STANDARD.encode(value.expose()),
        "receipt": receipt.to_text(),
    });
    if let (Ok(text), Some(object)) = (std::str::from_utf8(value.expose()), answer.as_object_mut())
    {
        object.insert("value".into(), json!(text));
    }
    Ok(Json(answer))
}

/// The wanted version (or the newest live one) opened with the current ring.
fn open(
    state: &AppState,
    workspace: &Workspace,
    name: &SecretName,
    wanted: Option<SecretVersion>,
) -> Result<(SecretVersion, SecretValue), ApiError> {
    let version = match wanted {
        Some(version) => version,
        None => match state.vault.secrets.latest_live(workspace, name)? {
            Some((version, _)) => version,
            None => return Err(ApiError::from(VaultError::NoSuchSecret(name.to_string()))),
        },
    };
    let id = SecretId {
        workspace: workspace.clone(),
        name: name.clone(),
        version,
    };
    let ring = || state.vault.ring();
    let value =
        writ_vault::open_version(&state.vault.secrets, &ring, &id, &Purpose::secret_value())?;
    Ok((version, value))
}
