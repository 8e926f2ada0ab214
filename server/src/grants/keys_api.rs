//! `/v1/signing-key`: a User registers the Ed25519 public key it signs its
//! break-glass requests and approvals with. The registration is a ledger entry,
//! so an auditor checks every signature against the key registered before it.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::common::{parse, registered_key, signing_key_slot, user};
use super::lifecycle::{record_step, Ender};
use super::statement;
use crate::error::ApiError;
use crate::routes::JsonBody;
use crate::state::Shared;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RegisterBody {
    public_key: String,
}

pub async fn register(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (me, workspace) = user(&state, &principal, "a signing key")?;
    let body: RegisterBody = parse(body)?;
    let key = statement::parse_public_key(&body.public_key)
        .map_err(|error| ApiError::unprocessable("invalid_public_key", error.to_string()))?;
    let key_id = statement::key_id(&key);
    let mut fields = Map::new();
    fields.insert("key_id".into(), json!(key_id));
    fields.insert("public_key".into(), json!(body.public_key.trim()));
    let slot = signing_key_slot(&workspace, &me.uid_text());
    let by = Ender {
        actor: me.uid_text(),
        workspace,
        credential: principal.credential().cloned(),
    };
    let _steps = state.grants.steps.lock().await;
    let entry = record_step(&state, "signing_key.registered", &by, fields).await?;
    let stored = json!({"key_id": key_id, "public_key": body.public_key.trim(), "entry": entry});
    let bytes = serde_json::to_vec(&stored)
        .map_err(|error| ApiError::internal("encoding a signing key", &error))?;
    state
        .grants
        .signing_keys
        .insert(slot.as_bytes(), bytes)
        .and_then(|_| state.grants.signing_keys.flush())
        .map_err(|error| ApiError::internal("storing a signing key", &error))?;
    Ok(Json(json!({"key_id": key_id, "entry": entry})))
}

pub async fn show(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (me, workspace) = user(&state, &principal, "a signing key")?;
    match registered_key(&state, &workspace, &me.uid_text())? {
        Some((key_id, key)) => {
            use base64::Engine as _;
            Ok(Json(json!({
                "key_id": key_id,
                "public_key": base64::engine::general_purpose::STANDARD.encode(key.as_bytes()),
            })))
        }
        None => Err(ApiError::not_found("you have no registered signing key")),
    }
}
