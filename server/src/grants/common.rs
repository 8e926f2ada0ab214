//! What the grant endpoints share: who may use them, body and duration parsing,
//! decisions on standing roles over kernel-built resources, and signed statements.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};
use writ_ledger::EntryDraft;
use writ_pdp::{Decision, DecisionRequest};

use super::records::Party;
use super::statement::{self, SignedStatement};
use crate::authorize::decision_entry;
use crate::error::ApiError;
use crate::identity::{Principal, PrincipalKind};
use crate::request::refuse_identity_fields;
use crate::routes::JsonBody;
use crate::state::{principal_uid, AppState};

/// The longest reason or comment accepted (it is recorded in the ledger).
pub const MAX_TEXT: usize = 1024;

/// Parses a body strictly: identity fields are refused, unknown fields are a 422.
pub fn parse<T: DeserializeOwned>(body: JsonBody) -> Result<T, ApiError> {
    refuse_identity_fields(&body.0)?;
    serde_json::from_value(body.0)
        .map_err(|error| ApiError::unprocessable("invalid_body", error.to_string()))
}

/// A member of a workspace: its party and workspace. Operators have none, and a
/// token's workspace must be the one its principal's stored entity names.
pub fn member(state: &AppState, principal: &Principal) -> Result<(Party, String), ApiError> {
    let workspace = principal
        .workspace()
        .ok_or_else(|| ApiError::forbidden("grants belong to a workspace; an operator has none"))?;
    crate::authorize::check_principal_entity(&state.engine.snapshot(), principal)?;
    Ok((Party::of(principal), workspace.as_str().to_owned()))
}

/// A User of a workspace (break-glass and consents are for people).
pub fn user(
    state: &AppState,
    principal: &Principal,
    what: &str,
) -> Result<(Party, String), ApiError> {
    if principal.kind() != PrincipalKind::User {
        return Err(ApiError::forbidden(format!("{what} is for Users only")));
    }
    member(state, principal)
}

/// Where a principal's signing key is stored: its workspace and uid.
pub fn signing_key_slot(workspace: &str, principal: &str) -> String {
    format!("{workspace}\u{1f}{principal}")
}

/// A required free text (reason): not blank, at most `MAX_TEXT` bytes. Kept as
/// sent (a signed statement vouches for the exact text).
pub fn required_text(field: &str, text: &str) -> Result<String, ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::unprocessable(
            "reason_required",
            format!("`{field}` is required and may not be blank"),
        ));
    }
    optional_text(field, Some(text)).map(Option::unwrap_or_default)
}

/// An optional free text (comment), at most `MAX_TEXT` bytes, without control
/// characters other than newlines.
pub fn optional_text(field: &str, text: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    if text.len() > MAX_TEXT {
        return Err(ApiError::unprocessable(
            "text_too_long",
            format!("`{field}` is at most {MAX_TEXT} bytes"),
        ));
    }
    if text.chars().any(|c| c.is_control() && c != '\n') {
        return Err(ApiError::unprocessable(
            "invalid_text",
            format!("`{field}` may not hold control characters"),
        ));
    }
    Ok(Some(text.to_owned()))
}

/// A humantime duration (`30m`, `4h`), longer than zero and at most `max`.
pub fn duration(text: &str, max: Duration) -> Result<u64, ApiError> {
    let parsed = humantime::parse_duration(text.trim()).map_err(|_| {
        ApiError::unprocessable(
            "invalid_duration",
            format!(
                "`duration` is not a duration like `30m` or `4h`: `{}`",
                text.chars().take(64).collect::<String>()
            ),
        )
    })?;
    if parsed.is_zero() {
        return Err(ApiError::unprocessable(
            "invalid_duration",
            "`duration` must be longer than zero",
        ));
    }
    if parsed > max {
        return Err(ApiError::unprocessable(
            "duration_too_long",
            format!(
                "`duration` is at most {} here",
                humantime::format_duration(max)
            ),
        ));
    }
    Ok(u64::try_from(parsed.as_millis()).unwrap_or(u64::MAX))
}

/// Decides `action` on `resource` with the principal's standing roles only (no
/// grant applies to these decisions) and records the decision, noting `purpose`
/// when given. Returns the decision, allow or deny.
pub async fn decide_recorded(
    state: &AppState,
    principal: &Principal,
    action: &str,
    resource: &Party,
    entities: Vec<writ_pdp::cedar_policy::Entity>,
    purpose: Option<&str>,
) -> Result<Decision, ApiError> {
    let mut request = DecisionRequest {
        principal: principal_uid(principal)?,
        action: writ_pdp::entity_uid("Action", action)?,
        resource: writ_pdp::entity_uid(&resource.kind, &resource.id)?,
        context: json!({}),
        entities,
    };
    if crate::membership::APPROVING_ACTIONS.contains(&action) {
        crate::membership::apply_made_by(state, principal, &mut request.context)?;
    }
    let decision = state.engine.snapshot().decide(&request)?;
    let mut draft: EntryDraft = decision_entry(principal, &request, &decision);
    if let Some(purpose) = purpose {
        draft.fields.insert("purpose".into(), json!(purpose));
    }
    state.record(&draft).await?;
    Ok(decision)
}

/// Decides `action` on a kernel-built resource entity (`decide_recorded`); a deny
/// is a 403. Returns the obligations of the allow.
pub async fn decide_standing(
    state: &AppState,
    principal: &Principal,
    action: &str,
    entity: &Value,
) -> Result<Vec<String>, ApiError> {
    let entities = state
        .engine
        .snapshot()
        .request_entities(std::slice::from_ref(entity), &Default::default())?;
    let resource = entities
        .first()
        .and_then(|e| Party::parse(&e.uid().to_string()))
        .ok_or_else(|| ApiError::internal("a kernel-built entity", &"has no uid"))?;
    let decision = decide_recorded(state, principal, action, &resource, entities, None).await?;
    if decision.allow {
        Ok(decision.obligations)
    } else {
        Err(ApiError::forbidden(format!(
            "`{action}` is denied by policy{}",
            if decision.reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", decision.reasons.join(", "))
            }
        )))
    }
}

/// The public key a principal registered, if any: (key id, key).
pub fn registered_key(
    state: &AppState,
    workspace: &str,
    principal: &str,
) -> Result<Option<(String, ed25519_dalek::VerifyingKey)>, ApiError> {
    let Some(bytes) = state
        .grants
        .signing_keys
        .get(signing_key_slot(workspace, principal).as_bytes())
        .map_err(|error| ApiError::internal("reading a signing key", &error))?
    else {
        return Ok(None);
    };
    let stored: Value = serde_json::from_slice(&bytes)
        .map_err(|error| ApiError::internal("decoding a signing key", &error))?;
    let key = stored
        .get("public_key")
        .and_then(Value::as_str)
        .and_then(|text| STANDARD.decode(text).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
        .ok_or_else(|| ApiError::internal("decoding a signing key", &"malformed"))?;
    Ok(Some((statement::key_id(&key), key)))
}

/// Checks a signed statement sent with a step against the entry it will be
/// recorded in (`kind`, the principal, `fields`) and the principal's registered
/// key; returns the object to record as the entry's `signature`.
pub fn check_signature(
    state: &AppState,
    principal: &Principal,
    kind: &str,
    fields: &Map<String, Value>,
    signature: Option<Value>,
    required: bool,
) -> Result<Option<Value>, ApiError> {
    let Some(signature) = signature else {
        if required {
            return Err(ApiError::forbidden(
                "this step must be signed with your registered key (`--sign-key FILE`)",
            )
            .with_code("signature_required"));
        }
        return Ok(None);
    };
    let signed: SignedStatement = serde_json::from_value(signature.clone()).map_err(|error| {
        ApiError::unprocessable(
            "invalid_signature",
            format!("`signature` is not a signed statement: {error}"),
        )
    })?;
    let actor = principal.entity().to_string();
    let workspace = principal.workspace().map_or("-", |w| w.as_str()).to_owned();
    let Some((_, key)) = registered_key(state, &workspace, &actor)? else {
        return Err(ApiError::forbidden(
            "you have no registered signing key (PUT /v1/signing-key)",
        )
        .with_code("no_signing_key"));
    };
    let workspace = principal.workspace().map_or("-", |w| w.as_str()).to_owned();
    statement::check_matches_fields(kind, &actor, &workspace, fields, &signed.statement)
        .map_err(|error| ApiError::unprocessable("invalid_signature", error.to_string()))?;
    signed.verify(&key).map_err(|error| {
        ApiError::forbidden(format!("the signature does not verify: {error}"))
            .with_code("bad_signature")
    })?;
    Ok(Some(signature))
}
