//! The operator's vault endpoints under `/v1/vault/`: status, unseal, seal, rotate,
//! rewrap, retire, sealer, and the leases. Every change is an `admin.vault.manage`
//! decision and a ledger entry recorded before the change takes effect.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::rngs::OsRng;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use writ_vault::seal::passphrase_sealer;
use writ_vault::shares::shares_sealer;
use writ_vault::{
    rewrap_batch, Argon2Cost, KekVersion, Purpose, SecretId, SecretStore as _, VaultError,
};
use zeroize::Zeroizing;

use crate::admin::{authorize_admin, record_change};
use crate::error::ApiError;
use crate::identity::{Principal, PrincipalKind};
use crate::request::refuse_identity_fields;
use crate::routes::JsonBody;
use crate::state::{AppState, Shared};
use crate::vault::unseal_guard::Refusal;
use crate::vault::{OpenedRing, ShareStep, Vault};

/// Secret versions rewrapped per batch (one ring snapshot, one store scan).
const REWRAP_BATCH: usize = 1000;
/// The shortest passphrase a vault is sealed with.
const MIN_PASSPHRASE_LEN: usize = 12;

const MANAGE: &str = "admin.vault.manage";
/// Failed secret versions named in a `vault.rewrap.finished` entry (the rest are counted).
const MAX_FAILED_NAMES: usize = 100;

/// Records a prepared ring change, then puts it into effect (file, then memory).
/// Called under `change_lock`.
async fn record_and_commit(
    state: &AppState,
    principal: &Principal,
    kind: &str,
    fields: Map<String, Value>,
    prepared: super::PreparedChange,
) -> Result<String, ApiError> {
    let entry = record_change(state, principal, kind, fields).await?;
    state
        .vault
        .commit(prepared)
        .map_err(|error| ApiError::internal("writing the key ring", &error))?;
    Ok(entry)
}

pub async fn status(State(state): State<Shared>) -> Json<Value> {
    Json(state.vault.status())
}

/// The body of `POST /v1/vault/unseal`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnsealBody {
    #[serde(default)]
    share: Option<Zeroizing<String>>,
    #[serde(default)]
    passphrase: Option<Zeroizing<String>>,
    /// Unseal with the server's own key file (a key-file vault after a seal).
    #[serde(default)]
    key_file: bool,
}

/// What one unseal call did.
#[derive(Debug)]
pub enum UnsealOutcome {
    Pending {
        have: u8,
        need: u8,
    },
    /// The ring opened; the caller records `vault.unsealed` (when it can) and
    /// installs it.
    Opened(Box<OpenedRing>),
    AlreadyUnsealed,
}

impl UnsealOutcome {
    pub fn to_json(&self) -> Value {
        match self {
            Self::Pending { have, need } => {
                json!({"sealed": true, "progress": format!("{have}/{need}"), "have": have, "need": need})
            }
            Self::Opened(_) => json!({"sealed": false, "progress": "unsealed"}),
            Self::AlreadyUnsealed => json!({"sealed": false, "progress": "already unsealed"}),
        }
    }
}

/// Unseal requires an operator: shares and passphrases are the authority, the key
/// keeps strangers from resetting an unseal in progress with bogus shares.
pub fn require_operator(principal: &Principal) -> Result<(), ApiError> {
    if principal.kind() != PrincipalKind::Operator {
        return Err(ApiError::forbidden("only an operator may unseal the vault"));
    }
    Ok(())
}

/// Why an unseal call was refused: the answer, when to try again (for
/// `Retry-After`), and the failed attempt the caller records, if it was one.
#[derive(Debug)]
pub struct UnsealRefused {
    pub error: ApiError,
    pub retry_after: Option<Duration>,
    pub failed: Option<FailedUnseal>,
}

/// The ways to unseal the vault through the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsealWay {
    Passphrase,
    KeyFile,
    Shares,
}

impl UnsealWay {
    /// The name in the log and in `vault.unseal_failed` entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Passphrase => "passphrase",
            Self::KeyFile => "key_file",
            Self::Shares => "shares",
        }
    }
}

/// An unseal attempt that was made and did not open the vault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailedUnseal {
    pub by: UnsealWay,
    /// Passphrase failures in a row (0 for the other ways).
    pub in_a_row: u32,
}

impl FailedUnseal {
    /// Logs the failure (never the secret). Called where the attempt is settled,
    /// before any `.await` that a client going away could cancel.
    fn log(&self, giver: &str) {
        tracing::warn!(
            by = self.by.as_str(),
            giver,
            in_a_row = self.in_a_row,
            "vault unseal attempt failed"
        );
    }
}

impl From<ApiError> for UnsealRefused {
    fn from(error: ApiError) -> Self {
        Self {
            error,
            retry_after: None,
            failed: None,
        }
    }
}

impl From<VaultError> for UnsealRefused {
    fn from(error: VaultError) -> Self {
        ApiError::from(error).into()
    }
}

impl IntoResponse for UnsealRefused {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up: an early retry would be refused again.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

impl UnsealRefused {
    /// A failed attempt (already logged), for the caller to record.
    fn failed(error: ApiError, failed: FailedUnseal) -> Self {
        Self {
            error,
            retry_after: None,
            failed: Some(failed),
        }
    }
}

/// The refusal of a passphrase attempt that may not start now.
fn refused(refusal: Refusal) -> UnsealRefused {
    match refusal {
        Refusal::Busy => UnsealRefused::from(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "unseal_busy",
            "another passphrase unseal is running; try again when it has finished",
        )),
        Refusal::Backoff { retry_after } => UnsealRefused {
            error: ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "unseal_backoff",
                "too many failed unseal attempts in a row; wait as `Retry-After` says",
            ),
            retry_after: Some(retry_after),
            failed: None,
        },
    }
}

/// Runs one passphrase attempt (Argon2, on a blocking thread) under the vault's
/// unseal guard: one at a time, and not before the wait that failures ask for.
async fn open_with_passphrase(
    vault: &Arc<Vault>,
    passphrase: Zeroizing<String>,
    giver: String,
) -> Result<OpenedRing, UnsealRefused> {
    let attempt = vault
        .unseal_guard
        .try_begin(Instant::now())
        .map_err(refused)?;
    let vault = Arc::clone(vault);
    // The attempt is settled and a failure logged on the blocking thread, before
    // the guard is released, even when the caller has gone away meanwhile.
    let (opened, failed) = tokio::task::spawn_blocking(move || {
        match vault.open_with_passphrase(passphrase.as_bytes(), &giver) {
            Ok(mut opened) => {
                opened.failed_attempts = attempt.succeeded();
                (Ok(opened), None)
            }
            Err(error @ VaultError::WrongPassphrase) => {
                let failed = FailedUnseal {
                    by: UnsealWay::Passphrase,
                    in_a_row: attempt.failed(Instant::now()).in_a_row,
                };
                failed.log(&giver);
                (Err(error), Some(failed))
            }
            Err(error) => (Err(error), None),
        }
    })
    .await
    .map_err(|error| ApiError::internal("unsealing", &error))?;
    match (opened, failed) {
        (Ok(opened), _) => Ok(opened),
        (Err(error), Some(failed)) => Err(UnsealRefused::failed(error.into(), failed)),
        (Err(error), None) => Err(error.into()),
    }
}

/// One unseal step, shared by the running server and the sealed-start server.
/// Nothing is installed: an opened ring comes back to the caller, and so does a
/// failed attempt, for the caller to record where it can.
pub async fn unseal_step(
    vault: &Arc<Vault>,
    principal: &Principal,
    body: JsonBody,
) -> Result<UnsealOutcome, UnsealRefused> {
    require_operator(principal)?;
    refuse_identity_fields(&body.0)?;
    let body: UnsealBody = serde_json::from_value(body.0).map_err(|_| {
        ApiError::unprocessable(
            "invalid_body",
            "the body is `{\"share\": S}`, `{\"passphrase\": P}` or `{\"key_file\": true}`",
        )
    })?;
    if !vault.is_sealed() {
        return Ok(UnsealOutcome::AlreadyUnsealed);
    }
    let giver = principal.entity().to_string();
    let opened = match (body.share, body.passphrase, body.key_file) {
        (Some(share), None, false) => match vault.add_share(&share, &giver) {
            Ok(ShareStep::Pending { have, need }) => {
                return Ok(UnsealOutcome::Pending { have, need })
            }
            Ok(ShareStep::Opened(opened)) => *opened,
            Err(error @ VaultError::SharesDoNotOpen) => {
                let failed = FailedUnseal {
                    by: UnsealWay::Shares,
                    in_a_row: 0,
                };
                failed.log(&giver);
                return Err(UnsealRefused::failed(error.into(), failed));
            }
            Err(error) => return Err(error.into()),
        },
        (None, Some(passphrase), false) => open_with_passphrase(vault, passphrase, giver).await?,
        (None, None, true) => {
            let vault = Arc::clone(vault);
            let failed = FailedUnseal {
                by: UnsealWay::KeyFile,
                in_a_row: 0,
            };
            // Logged on the blocking thread, like a passphrase failure.
            tokio::task::spawn_blocking(move || {
                vault.open_with_key_file(&giver).inspect_err(|error| {
                    tracing::warn!(error = %format!("{error:#}"), "unseal with the key file failed");
                    failed.log(&giver);
                })
            })
            .await
            .map_err(|error| ApiError::internal("unsealing", &error))?
            .map_err(|_| {
                UnsealRefused::failed(
                    ApiError::unprocessable(
                        "unseal_failed",
                        "the server's key file does not unseal the vault",
                    ),
                    failed,
                )
            })?
        }
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "give exactly one of `share`, `passphrase` and `key_file`",
            )
            .into())
        }
    };
    Ok(UnsealOutcome::Opened(Box::new(opened)))
}

/// The fields of a `vault.unsealed` entry (with the passphrase failures before it,
/// when there were some).
pub fn unsealed_fields(vault: &Vault, opened: &OpenedRing) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("sealer".into(), json!(vault.sealer_kind()));
    fields.insert("by".into(), json!(opened.givers));
    if opened.failed_attempts > 0 {
        fields.insert("failed_attempts".into(), json!(opened.failed_attempts));
    }
    fields
}

/// The fields of a `vault.unseal_failed` entry.
pub fn unseal_failed_fields(vault: &Vault, failed: &FailedUnseal) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("sealer".into(), json!(vault.sealer_kind()));
    fields.insert("by".into(), json!(failed.by.as_str()));
    if failed.by == UnsealWay::Passphrase {
        fields.insert("in_a_row".into(), json!(failed.in_a_row));
    }
    fields
}

/// Unseal on a running server: the entry is recorded before the ring is in place;
/// a failed attempt is recorded as `vault.unseal_failed` before it is answered.
///
/// The work runs in a task of its own, which the handler only waits for: hyper
/// drops the handler's future when the client goes away, and an attempt that was
/// made (a second of Argon2) must still be recorded, and a ring that opened still
/// be put in place. Dropping a `JoinHandle` does not cancel its task.
pub async fn unseal(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Json<Value>, UnsealRefused> {
    let principal = state.principal(&headers)?;
    tokio::spawn(unseal_and_record(state, principal, body))
        .await
        .map_err(|error| ApiError::internal("unsealing", &error))?
}

/// The unseal of a running server, to its end: the step, then its entry.
async fn unseal_and_record(
    state: Shared,
    principal: Principal,
    body: JsonBody,
) -> Result<Json<Value>, UnsealRefused> {
    let outcome = match unseal_step(&state.vault, &principal, body).await {
        Ok(outcome) => outcome,
        Err(refusal) => {
            if let Some(failed) = &refusal.failed {
                let fields = unseal_failed_fields(&state.vault, failed);
                record_change(&state, &principal, "vault.unseal_failed", fields).await?;
            }
            return Err(refusal);
        }
    };
    let answer = outcome.to_json();
    if let UnsealOutcome::Opened(opened) = outcome {
        // Under the change lock, so that a seal cannot be recorded between this
        // entry and the install.
        let _change = state.vault.change_lock.lock().await;
        let fields = unsealed_fields(&state.vault, &opened);
        record_change(&state, &principal, "vault.unsealed", fields).await?;
        state.vault.install(*opened);
    }
    Ok(Json(answer))
}

pub async fn seal(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    authorize_admin(&state, &principal, MANAGE, None).await?;
    let _change = state.vault.change_lock.lock().await;
    record_change(&state, &principal, "vault.sealed", Map::new()).await?;
    state.vault.seal();
    tracing::warn!("the vault is sealed: every vault key was dropped from memory");
    Ok(Json(json!({"sealed": true})))
}

pub async fn rotate(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    authorize_admin(&state, &principal, MANAGE, None).await?;
    let _change = state.vault.change_lock.lock().await;
    let prepared = state
        .vault
        .prepare(|ring| ring.rotate(&mut OsRng, crate::unix_now_ms()).map(|_| ()))?;
    let version = prepared.ring().primary_version();
    let mut fields = Map::new();
    fields.insert("kek_version".into(), json!(version.get()));
    fields.insert(
        "ring_id".into(),
        json!(prepared.sealed().ring_id().to_string()),
    );
    let entry =
        record_and_commit(&state, &principal, "vault.kek.rotated", fields, prepared).await?;
    Ok(Json(
        json!({"primary_kek_version": version.get(), "entry_id": entry}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetireBody {
    min_version: u32,
}

pub async fn retire(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    refuse_identity_fields(&body.0)?;
    let body: RetireBody = serde_json::from_value(body.0).map_err(|_| {
        ApiError::unprocessable("invalid_body", "the body is `{\"min_version\": N}`")
    })?;
    let min = KekVersion::new(body.min_version)
        .ok_or_else(|| ApiError::unprocessable("invalid_body", "`min_version` is at least 1"))?;
    authorize_admin(&state, &principal, MANAGE, None).await?;
    let _change = state.vault.change_lock.lock().await;
    let vault = Arc::clone(&state.vault);
    let usage = tokio::task::spawn_blocking(move || vault.secrets.wrapped_by_version())
        .await
        .map_err(|error| ApiError::internal("counting wrapped keys", &error))??;
    let mut retired = Vec::new();
    let prepared = state.vault.prepare(|ring| {
        retired = ring.retire_below(min, &usage)?;
        Ok(())
    })?;
    let mut fields = Map::new();
    fields.insert("min_decrypt_version".into(), json!(min.get()));
    fields.insert(
        "retired".into(),
        json!(retired.iter().map(|v| v.get()).collect::<Vec<_>>()),
    );
    let entry =
        record_and_commit(&state, &principal, "vault.kek.retired", fields, prepared).await?;
    Ok(Json(json!({
        "min_decrypt_version": min.get(),
        "retired": retired.iter().map(|v| v.get()).collect::<Vec<_>>(),
        "entry_id": entry,
    })))
}

pub async fn rewrap(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let principal = state.principal(&headers)?;
    authorize_admin(&state, &principal, MANAGE, None).await?;
    let Some(ring) = state.vault.ring() else {
        return Err(ApiError::from(VaultError::Sealed));
    };
    let target = ring.primary_version();
    {
        let mut status = state
            .vault
            .rewrap
            .lock()
            .map_err(|_| ApiError::internal("the rewrap status", &"poisoned"))?;
        if status.running {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "rewrap_running",
                "a rewrap is already running",
            ));
        }
        *status = super::RewrapStatus {
            running: true,
            target_kek: Some(target.get()),
            started_unix_ms: Some(crate::unix_now_ms()),
            ..Default::default()
        };
    }

    let mut fields = Map::new();
    fields.insert("target_kek_version".into(), json!(target.get()));
    if let Err(error) = record_change(&state, &principal, "vault.rewrap.started", fields).await {
        if let Ok(mut status) = state.vault.rewrap.lock() {
            status.running = false;
        }
        return Err(error);
    }
    tokio::spawn(run_rewrap(Arc::clone(&state), principal));
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"rewrap": "started", "target_kek_version": target.get()})),
    ))
}

/// Rewraps every live version, a batch at a time, each batch under the ring of
/// that moment; reads and writes go on meanwhile. Records the result at the end.
async fn run_rewrap(state: Shared, principal: Principal) {
    let mut after: Option<SecretId> = None;
    let mut failed_names: Vec<String> = Vec::new();
    let mut stopped_early = false;
    loop {
        let vault = Arc::clone(&state.vault);
        let cursor = after.clone();
        let batch = tokio::task::spawn_blocking(move || {
            let ring = vault.ring().ok_or(VaultError::Sealed)?;
            rewrap_batch(
                &vault.secrets,
                &ring,
                &Purpose::secret_value(),
                cursor.as_ref(),
                REWRAP_BATCH,
                &mut OsRng,
            )
        })
        .await;
        let batch = match batch {
            Ok(Ok(batch)) => batch,
            Ok(Err(error)) => {
                tracing::warn!(%error, "rewrap stopped");
                stopped_early = true;
                break;
            }
            Err(error) => {
                tracing::error!(%error, "rewrap task failed");
                stopped_early = true;
                break;
            }
        };
        for (id, error) in &batch.failed {
            tracing::error!(secret = %id.name, version = id.version.get(), %error, "rewrap: a secret does not open");
            failed_names.push(format!("{}/{}#{}", id.workspace, id.name, id.version));
        }
        if let Ok(mut status) = state.vault.rewrap.lock() {
            status.scanned += batch.scanned as u64;
            status.rewrapped += batch.rewrapped as u64;
            status.raced += batch.raced as u64;
            status.failed += batch.failed.len() as u64;
        }
        match batch.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    if let Err(error) = state.vault.secrets.flush() {
        tracing::error!(%error, "rewrap: flushing the secret store failed");
        stopped_early = true;
    }
    let summary = match state.vault.rewrap.lock() {
        Ok(mut status) => {
            status.running = false;
            status.stopped_early = stopped_early;
            status.finished_unix_ms = Some(crate::unix_now_ms());
            status.clone()
        }
        Err(_) => return,
    };
    let mut fields = Map::new();
    fields.insert("target_kek_version".into(), json!(summary.target_kek));
    fields.insert("scanned".into(), json!(summary.scanned));
    fields.insert("rewrapped".into(), json!(summary.rewrapped));
    fields.insert("raced".into(), json!(summary.raced));
    // Names of the first failures only: an entry is at most 64 KiB.
    fields.insert("failed_count".into(), json!(failed_names.len()));
    failed_names.truncate(MAX_FAILED_NAMES);
    fields.insert("failed".into(), json!(failed_names));
    fields.insert("stopped_early".into(), json!(stopped_early));
    if let Err(error) = record_change(&state, &principal, "vault.rewrap.finished", fields).await {
        tracing::error!(code = error.code, "cannot record the end of a rewrap");
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealerBody {
    #[serde(default)]
    shares: Option<u8>,
    #[serde(default)]
    threshold: Option<u8>,
    #[serde(default)]
    passphrase: Option<Zeroizing<String>>,
}

/// Seals the ring anew under Shamir shares or a passphrase; the shares are in this
/// answer and nowhere else. The key file of the embedded default is removed.
pub async fn set_sealer(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: JsonBody,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    refuse_identity_fields(&body.0)?;
    let body: SealerBody = serde_json::from_value(body.0).map_err(|_| {
        ApiError::unprocessable(
            "invalid_body",
            "the body is `{\"shares\": N, \"threshold\": T}` or `{\"passphrase\": P}`",
        )
    })?;
    authorize_admin(&state, &principal, MANAGE, None).await?;
    let Some(ring) = state.vault.ring() else {
        return Err(ApiError::from(VaultError::Sealed));
    };
    let (sealer, root, shares) = match (body.shares, body.threshold, body.passphrase) {
        (Some(shares), Some(threshold), None) => {
            let (sealer, root, texts) = shares_sealer(ring.id(), threshold, shares, &mut OsRng)?;
            (sealer, root, Some(texts))
        }
        (None, None, Some(passphrase)) => {
            if passphrase.chars().count() < MIN_PASSPHRASE_LEN {
                return Err(ApiError::unprocessable(
                    "weak_passphrase",
                    format!("a passphrase has at least {MIN_PASSPHRASE_LEN} characters"),
                ));
            }
            let (sealer, root) = tokio::task::spawn_blocking(move || {
                passphrase_sealer(passphrase.as_bytes(), Argon2Cost::RECOMMENDED, &mut OsRng)
            })
            .await
            .map_err(|error| ApiError::internal("deriving the key", &error))??;
            (sealer, root, None)
        }
        _ => {
            return Err(ApiError::unprocessable(
                "invalid_body",
                "give `shares` and `threshold`, or `passphrase`",
            ))
        }
    };
    let _change = state.vault.change_lock.lock().await;
    let name = sealer.kind();
    let prepared = state.vault.prepare_sealer(sealer, root)?;
    let mut fields = Map::new();
    fields.insert("sealer".into(), json!(name));
    fields.insert("shares".into(), json!(body.shares));
    fields.insert("threshold".into(), json!(body.threshold));
    let entry =
        record_and_commit(&state, &principal, "vault.sealer.changed", fields, prepared).await?;
    let mut answer = json!({"sealer": name, "entry_id": entry});
    if let (Some(texts), Some(object)) = (shares, answer.as_object_mut()) {
        object.insert(
            "shares".into(),
            json!(texts.iter().map(|t| t.as_str()).collect::<Vec<_>>()),
        );
    }
    Ok(Json(answer))
}

pub async fn list_leases(
    State(state): State<Shared>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    authorize_admin(&state, &principal, MANAGE, None).await?;
    let leases = state
        .vault
        .leases
        .live(crate::unix_now_ms(), None)
        .map_err(|error| ApiError::internal("reading the leases", &error))?;
    Ok(Json(json!({"leases": leases})))
}

/// A holder checks its lease before it uses the value: 200 while it is live,
/// 410 `lease_ended` once it expired or was revoked (by an operator, or because
/// the elevation it was revealed under ended). Leases of others are not found.
pub async fn check_lease(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let missing = || {
        ApiError::not_found(format!(
            "no lease `{}` of yours",
            id.chars().take(64).collect::<String>()
        ))
    };
    let lease = state
        .vault
        .leases
        .get(&id)
        .map_err(|error| ApiError::internal("reading the lease", &error))?
        .filter(|lease| lease.holder == principal.entity().to_string())
        .ok_or_else(missing)?;
    let now = crate::unix_now_ms();
    if !lease.is_live(now) {
        let how = if lease.revoked_unix_ms.is_some() {
            "was revoked"
        } else {
            "has expired"
        };
        return Err(ApiError::new(
            axum::http::StatusCode::GONE,
            "lease_ended",
            format!("lease `{}` {how}: stop using its value", lease.id),
        ));
    }
    Ok(Json(json!({"lease": lease, "live": true})))
}

pub async fn revoke_lease(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    authorize_admin(&state, &principal, MANAGE, None).await?;
    let now = crate::unix_now_ms();
    let lease = state
        .vault
        .leases
        .get(&id)
        .map_err(|error| ApiError::internal("reading the lease", &error))?
        .filter(|lease| lease.is_live(now))
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "no live lease `{}`",
                id.chars().take(64).collect::<String>()
            ))
        })?;
    let mut fields = Map::new();
    fields.insert("lease".into(), json!(lease.id));
    fields.insert("secret".into(), json!(lease.secret));
    fields.insert("version".into(), json!(lease.version));
    fields.insert("lease_workspace".into(), json!(lease.workspace));
    let entry = record_change(&state, &principal, "lease.revoked", fields).await?;
    state
        .vault
        .leases
        .revoke(&lease.id, now)
        .map_err(|error| ApiError::internal("revoking the lease", &error))?;
    Ok(Json(
        json!({"lease": lease.id, "revoked": true, "entry_id": entry}),
    ))
}
