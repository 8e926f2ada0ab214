//! The HTTP error type: a stable code and a plain message for the client, the detail
//! for the log. Every handler returns `Result<_, ApiError>`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::identity::IdentityError;
use writ_ledger::LedgerError;
use writ_pdp::PdpError;

/// An error answer: status, stable code, message safe to show the caller.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// The recorded decision the error is about, when there is one (for example
    /// the held reveal an approval request must name).
    pub decision_id: Option<String>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            decision_id: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    /// The same error with another stable code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// The same error, naming the recorded decision it is about.
    pub fn with_decision(mut self, decision_id: String) -> Self {
        self.decision_id = Some(decision_id);
        self
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The ledger could not record: the caller gets 503 and never an allow.
    pub fn ledger(error: &LedgerError) -> Self {
        tracing::error!(%error, "ledger append failed; answering 503");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_unavailable",
            "the decision could not be recorded in the ledger, so it is not answered",
        )
    }

    /// An internal failure: the detail goes to the log only.
    pub fn internal(context: &str, error: &dyn std::fmt::Display) -> Self {
        tracing::error!(%error, "{context}");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("{context} failed"),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"error": {"code": self.code, "message": self.message}});
        if let (Some(id), Some(error)) = (
            self.decision_id,
            body.get_mut("error").and_then(|e| e.as_object_mut()),
        ) {
            error.insert("decision_id".into(), json!(id));
        }
        (self.status, Json(body)).into_response()
    }
}

impl From<IdentityError> for ApiError {
    fn from(error: IdentityError) -> Self {
        if error.is_internal() {
            return Self::internal("authentication", &error);
        }
        Self::new(StatusCode::UNAUTHORIZED, error.code(), error.to_string())
    }
}

impl From<PdpError> for ApiError {
    fn from(error: PdpError) -> Self {
        let code = match &error {
            PdpError::UnknownAction { .. } => "unknown_action",
            PdpError::UnknownEntityType { .. } => "unknown_entity_type",
            PdpError::InvalidUid { .. } => "invalid_entity_uid",
            PdpError::InvalidRequest { .. } => "invalid_request",
            PdpError::InvalidContext { .. } => "invalid_context",
            PdpError::InvalidEntity { .. } => "invalid_entity",
            PdpError::EntityNotAllowed { .. } => "entity_not_allowed",
            PdpError::EntityRequired { .. } => "entity_required",
            PdpError::EntityNotFound { .. } => return Self::not_found(error.to_string()),
            PdpError::InvalidPolicySet { .. } | PdpError::EntitiesRejectedBySchema { .. } => {
                "invalid_policy_set"
            }
            PdpError::NothingToLoad { .. } | PdpError::Io { .. } => "policy_files_unreadable",
            PdpError::Storage(_) | PdpError::CorruptStore { .. } => {
                return Self::internal("the entity store", &error);
            }
        };
        Self::unprocessable(code, error.to_string())
    }
}

impl From<writ_vault::VaultError> for ApiError {
    fn from(error: writ_vault::VaultError) -> Self {
        use writ_vault::VaultError as E;
        let (status, code) = match &error {
            E::Sealed => (StatusCode::SERVICE_UNAVAILABLE, "vault_sealed"),
            E::BadSecretName(_) | E::BadWorkspace(_) | E::BadPurpose(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "bad_secret_name")
            }
            E::BadSecretVersion => (StatusCode::UNPROCESSABLE_ENTITY, "bad_version"),
            E::ValueTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "value_too_large"),
            E::NoSuchSecret(_) | E::NoSuchVersion { .. } => (StatusCode::NOT_FOUND, "not_found"),
            E::Destroyed { .. } => (StatusCode::GONE, "secret_destroyed"),
            E::VersionsExhausted(_) => (StatusCode::CONFLICT, "versions_exhausted"),
            E::KekInUse { .. } => (StatusCode::CONFLICT, "kek_in_use"),
            E::RetirePrimary(_) | E::RetireBackwards(_) => (StatusCode::CONFLICT, "bad_retirement"),
            E::RingFull => (StatusCode::CONFLICT, "ring_full"),
            E::ShareMalformed(_)
            | E::ShareWrongRing { .. }
            | E::ShareDuplicate(_)
            | E::ShareParameters { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "bad_share"),
            E::SharesDoNotOpen | E::WrongPassphrase | E::WrongKeyFile | E::WrongSealer { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unseal_failed")
            }
            E::Argon2(_) => (StatusCode::UNPROCESSABLE_ENTITY, "bad_argon2_parameters"),
            // A stored envelope that does not open is damage on the server's side;
            // the detail goes to the log, never to the caller.
            E::KekUnknown(_)
            | E::KekRetired(_)
            | E::UnwrapFailed
            | E::CommitmentMismatch
            | E::DecryptFailed
            | E::EnvelopeMagic
            | E::EnvelopeVersion(_)
            | E::EnvelopeAlgorithm(_)
            | E::EnvelopeTruncated(_) => {
                tracing::error!(%error, "a stored secret does not open");
                return Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "secret_unreadable",
                    "the stored secret could not be opened; the server log says why",
                );
            }
            _ => return Self::internal("the vault", &error),
        };
        Self::new(status, code, error.to_string())
    }
}
