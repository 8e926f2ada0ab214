//! What every handler shares: the PDP engine, the ledger writer, identity, metrics.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::http::HeaderMap;
use writ_ledger::store::LedgerStore;
use writ_ledger::store::SledStore;
use writ_ledger::writer::LedgerWriter;
use writ_ledger::{EntryDraft, LedgerError, Receipt};
use writ_pdp::cedar_policy::EntityUid;
use writ_pdp::Engine;

use crate::error::ApiError;
use crate::identity::{parse_bearer, Authenticator, Principal};
use crate::metrics::Metrics;

/// Entity types a caller may never supply with a request: who acts, in which role
/// and workspace, and the kernel's own switches are the kernel's to say.
pub const RESERVED_TYPES: [&str; 15] = [
    "User",
    "Agent",
    "Operator",
    "Auditor",
    "Role",
    "Workspace",
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

/// Entities that always exist; deleting them is refused.
pub const REQUIRED_ENTITIES: [&str; 2] = [r#"KillSwitch::"global""#, r#"Kernel::"writ""#];

/// Shared state of the running server.
#[derive(Debug)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub ledger: LedgerWriter,
    pub ledger_store: Arc<SledStore>,
    pub auth: Authenticator,
    pub metrics: Metrics,
    pub policy_dir: PathBuf,
    pub schema_dir: PathBuf,
    pub reserved_types: BTreeSet<String>,
    /// Set once an append failed: the log is poisoned and /readyz says so.
    pub ledger_failed: AtomicBool,
    pub vault: Arc<crate::vault::Vault>,
    pub grants: Arc<crate::grants::Grants>,
}

/// What a handler gets from `State`.
pub type Shared = Arc<AppState>;

impl AppState {
    /// Verifies the bearer token of a request.
    pub fn principal(&self, headers: &HeaderMap) -> Result<Principal, ApiError> {
        let principal = bearer_principal(&self.auth, headers)?;
        if let Err(error) = &principal {
            self.metrics.auth_failure(error.code());
            tracing::info!(code = error.code(), "authentication refused");
        }
        Ok(principal?)
    }

    /// Appends an entry and waits until it is durable and signed; marks the ledger
    /// failed (for /readyz) when it is not.
    pub async fn record(&self, draft: &EntryDraft) -> Result<Receipt, ApiError> {
        match self.ledger.append(draft).await {
            Ok(receipt) => Ok(receipt),
            // Refused before it reached the log: the request was too big to record,
            // and the log itself is fine.
            Err(LedgerError::EntryTooLarge { .. }) => Err(ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "entry_too_large",
                "the request is too large to be recorded in the ledger (64 KiB per entry)",
            )),
            Err(error) => {
                self.ledger_failed.store(true, Ordering::SeqCst);
                self.metrics.ledger_failure();
                Err(ApiError::ledger(&error))
            }
        }
    }

    /// The exact bytes of a recorded entry (for the caller to verify its receipt).
    pub fn entry_text(&self, receipt: &Receipt) -> Option<String> {
        match self.ledger_store.entry(receipt.index) {
            Ok(Some(bytes)) => String::from_utf8(bytes).ok(),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "reading back a recorded entry failed");
                None
            }
        }
    }
}

/// The principal of a request's bearer token: `Err` for a missing, repeated or
/// malformed header (as an `ApiError`), `Ok(Err)` for a token that does not verify.
///
/// Two `Authorization` headers are refused (400 `duplicate_authorization`) rather
/// than letting the first win: a proxy and the server could each pick another one.
pub fn bearer_principal(
    auth: &Authenticator,
    headers: &HeaderMap,
) -> Result<Result<Principal, crate::identity::IdentityError>, ApiError> {
    let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
    let header = values
        .next()
        .ok_or_else(|| ApiError::from(crate::identity::IdentityError::MissingToken))?;
    if values.next().is_some() {
        return Err(ApiError::bad_request(
            "duplicate_authorization",
            "the request has more than one `Authorization` header",
        ));
    }
    let value = header
        .to_str()
        .map_err(|_| ApiError::from(crate::identity::IdentityError::BadAuthorizationHeader))?;
    Ok(auth.authenticate(parse_bearer(value)?))
}

/// The Cedar UID of a verified principal.
pub fn principal_uid(principal: &Principal) -> Result<EntityUid, ApiError> {
    let entity = principal.entity();
    Ok(writ_pdp::entity_uid(entity.kind().as_str(), entity.id())?)
}

/// The `actor` and `workspace` of a ledger entry for a principal.
pub fn actor_and_workspace(principal: &Principal) -> (String, String) {
    (
        principal.entity().to_string(),
        principal
            .workspace()
            .map_or_else(|| "-".to_owned(), |w| w.as_str().to_owned()),
    )
}
