//! `writ serve`: open the data dir and unseal its vault, record that the kernel
//! started and which policy set it loaded, then answer HTTP until SIGTERM or Ctrl-C;
//! SIGHUP reloads policies. Without an unseal source it starts sealed (see `run`).

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use serde_json::{json, Map, Value};
use writ_ledger::datadir::DataDir;
use writ_ledger::log::{Retention, SystemClock};
use writ_ledger::store::SledStore;
use writ_ledger::writer::{self, BatchConfig, Committer};
use writ_ledger::EntryDraft;

use crate::config::ServeConfig;
use crate::error::ApiError;
use crate::grants::clock::{Clock, SystemClock as GrantsClock};
use crate::identity::{ApiKeyStore, Authenticator, JwksVerifier};
use crate::kernel::{self, BOOTSTRAP_KEY_FILE};
use crate::ledger_api::kernel_ledger_routes;
use crate::metrics::Metrics;
use crate::state::{AppState, RESERVED_TYPES};
use crate::vault::{files, Vault};

/// An opened kernel: the shared state, the whole router, and what must be closed.
#[derive(Debug)]
pub struct Opened {
    pub state: Arc<AppState>,
    pub router: axum::Router,
    committer: Committer<SledStore>,
    state_db: sled::Db,
}

impl Opened {
    /// Closes the ledger (after every handle to its writer is gone) and the state db.
    pub async fn close(self) -> anyhow::Result<()> {
        let Self {
            state,
            router,
            committer,
            state_db,
        } = self;
        drop(router);
        drop(state);
        tokio::task::spawn_blocking(move || committer.join()).await??;
        state_db.flush()?;
        Ok(())
    }
}

/// Initialises the data dir when it holds nothing (the embedded default).
fn ensure_initialised(config: &ServeConfig) -> anyhow::Result<()> {
    if kernel::is_initialised(&config.data_dir) {
        return Ok(());
    }
    let made = kernel::init(&config.data_dir)?;
    let key_path = kernel::write_secret_file(
        &config.data_dir.join(BOOTSTRAP_KEY_FILE),
        made.admin_key.expose(),
    )?;
    tracing::warn!(
        data_dir = %config.data_dir.display(),
        admin_key_file = %key_path.display(),
        verifier_key = %made.verifier_key,
        "initialised a new data dir; the bootstrap operator key is in the file named here (mode 0600): move it somewhere safe"
    );
    tracing::warn!(
        vault_key_file = %made.vault_key_file.display(),
        "the vault is sealed by a key file kept beside it: fine for a sidecar on a laptop, not for production; \
         switch to shares or a passphrase with `writ vault init --shares 5 --threshold 3`"
    );
    Ok(())
}

/// The vault opened with its unseal source at start, and the fields of its
/// `vault.unsealed` entry.
fn unseal_at_start(
    config: &ServeConfig,
    sealed: writ_vault::SealedRing,
    source: &files::UnsealSource,
    state_db: &sled::Db,
) -> anyhow::Result<(Arc<Vault>, Map<String, Value>)> {
    let unsealed = files::unseal_with(&sealed, source)?;
    let vault = Arc::new(
        Vault::new(
            &config.data_dir,
            config.vault_key_file.as_deref(),
            sealed,
            Some(unsealed),
            state_db,
        )?
        .with_unseal_backoff_base(config.unseal_backoff_base),
    );
    let fields = unsealed_at_start(&vault, source);
    Ok((vault, fields))
}

/// The `vault.unsealed` entry of a start with an unseal source.
fn unsealed_at_start(vault: &Vault, source: &files::UnsealSource) -> Map<String, Value> {
    let mut fields = Map::new();
    fields.insert("sealer".into(), json!(vault.sealer_kind()));
    let by = match source {
        files::UnsealSource::KeyFile(_) => "key_file",
        files::UnsealSource::Passphrase(_) => "passphrase_env",
    };
    fields.insert("by".into(), json!([format!("writ:{by}")]));
    fields
}

/// Opens a data dir (initialising it first when it holds nothing) with its unseal
/// source, loads the policy set, and records `kernel.started`, `vault.unsealed` and
/// `policy.loaded`. A vault with no unseal source is refused here (`run` instead
/// starts sealed and waits for an unseal through the API).
pub async fn open(config: &ServeConfig) -> anyhow::Result<Opened> {
    open_with_clock(config, Arc::new(GrantsClock)).await
}

/// `open`, with the clock grants are judged by (tests move a manual one).
pub async fn open_with_clock(
    config: &ServeConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Opened> {
    ensure_initialised(config)?;
    let state_db = kernel::open_state_db(&config.data_dir)?;
    let sealed = files::read_sealed(&config.data_dir)?;
    let Some(source) = files::unseal_source(
        &config.data_dir,
        config.vault_key_file.as_deref(),
        sealed.sealer(),
    ) else {
        anyhow::bail!(
            "the vault is sealed by {} and no unseal source is configured",
            sealed.sealer().name()
        );
    };
    let (vault, fields) = unseal_at_start(config, sealed, &source, &state_db)?;
    open_unsealed(config, state_db, vault, fields, clock).await
}

/// Opens everything but the vault, which is unsealed: the ledger (its signer is in
/// the ring), the policy set and identity.
async fn open_unsealed(
    config: &ServeConfig,
    state_db: sled::Db,
    vault: Arc<Vault>,
    unsealed: Map<String, Value>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Opened> {
    let ring = vault.ring().context("the vault is sealed")?;
    let signer = files::ledger_signer(&ring)?;
    drop(ring);
    let ledger_dir = DataDir::new(&config.data_dir);
    let log = tokio::task::spawn_blocking(move || {
        ledger_dir.open_log_with_signer(signer, Retention::default(), Arc::new(SystemClock))
    })
    .await??;
    let verifier_key = log.verifier_key();
    let ledger_store = Arc::clone(log.store());
    let batch = BatchConfig {
        linger: config.ledger_linger,
        ..BatchConfig::default()
    };
    let (ledger, committer) = writer::spawn(log, batch)?;

    let engine = kernel::open_engine(&state_db, &config.policy_dir, &config.schema_dir)
        .with_context(|| {
            format!(
                "cannot load the policy set from `{}`",
                config.policy_dir.display()
            )
        })?;
    let missing = engine.missing_required();
    if !missing.is_empty() {
        anyhow::bail!(
            "the entity store lacks the kernel's required entities: {}",
            missing.join(", ")
        );
    }
    let auth = authenticator(config, &state_db)?;
    let state = Arc::new(AppState {
        engine: Arc::new(engine),
        ledger,
        ledger_store: Arc::clone(&ledger_store),
        auth,
        metrics: Metrics::new(),
        policy_dir: config.policy_dir.clone(),
        schema_dir: config.schema_dir.clone(),
        reserved_types: RESERVED_TYPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>(),
        ledger_failed: AtomicBool::new(false),
        vault,
        grants: Arc::new(crate::grants::Grants::open(
            &state_db,
            config.grants.clone(),
            clock,
        )?),
    });
    let recovered = crate::grants::lifecycle::recover(&state)
        .await
        .map_err(|error| {
            anyhow::anyhow!(
                "recording grant ends a crash kept from the ledger: {}",
                error.message
            )
        })?;
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "recorded the ends of grants a crash kept from the ledger"
        );
    }
    crate::grants::lifecycle::spawn_sweeper(&state);
    record_start(&state, &verifier_key, unsealed).await?;
    tracing::info!(verifier_key = %verifier_key, "ledger open");
    let router =
        crate::routes::router(Arc::clone(&state), kernel_ledger_routes(Arc::clone(&state)));
    Ok(Opened {
        state,
        router,
        committer,
        state_db,
    })
}

fn authenticator(config: &ServeConfig, state_db: &sled::Db) -> anyhow::Result<Authenticator> {
    let jwt = match &config.jwt {
        Some(section) => Some(JwksVerifier::from_file(
            &section.jwks_file,
            section.claims.clone(),
        )?),
        None => None,
    };
    let api_keys = ApiKeyStore::new(
        state_db
            .open_tree("apikeys")
            .context("cannot open the api key store")?,
    );
    Ok(Authenticator::new(api_keys, jwt))
}

/// Runs the server until it is told to stop. `on_listening` gets the bound address
/// (useful with port 0).
///
/// With no unseal source the server starts sealed: it listens at once, answers
/// `/healthz`, `/readyz` (503), `/v1/vault/status` and `/v1/vault/unseal`, and 503
/// `vault_sealed` to everything else; once the vault opens, the ledger (whose key is
/// in the vault) and everything else open and the full API takes over.
pub async fn run(
    config: ServeConfig,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    ensure_initialised(&config)?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    let state_db = kernel::open_state_db(&config.data_dir)?;
    let sealed = files::read_sealed(&config.data_dir)?;
    let source = files::unseal_source(
        &config.data_dir,
        config.vault_key_file.as_deref(),
        sealed.sealer(),
    );

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    let mut server_stop = stop_rx.clone();
    let serve_stopped = async move {
        let _ = server_stop.wait_for(|stop| *stop).await;
    };

    let opened = match source {
        Some(source) => {
            let (vault, fields) = unseal_at_start(&config, sealed, &source, &state_db)?;
            let opened =
                open_unsealed(&config, state_db, vault, fields, Arc::new(GrantsClock)).await?;
            let current = Arc::new(ArcSwap::from_pointee(opened.router.clone()));
            tracing::info!(listen = %bound, "writ is serving");
            on_listening(bound);
            let server = tokio::spawn(crate::edge::accept::serve(
                listener,
                Arc::clone(&current),
                config.http,
                serve_stopped,
            ));
            Some((opened, server))
        }
        None => {
            let vault = Arc::new(
                Vault::new(
                    &config.data_dir,
                    config.vault_key_file.as_deref(),
                    sealed,
                    None,
                    &state_db,
                )?
                .with_unseal_backoff_base(config.unseal_backoff_base),
            );
            let unsealed = Arc::new(tokio::sync::Notify::new());
            let (opened_tx, opened_rx) = tokio::sync::watch::channel(Opening::Waiting);
            let sealed_state = Arc::new(SealedState {
                vault: Arc::clone(&vault),
                auth: authenticator(&config, &state_db)?,
                unsealed: Arc::clone(&unsealed),
                unsealed_entry: std::sync::Mutex::new(None),
                opened: opened_rx,
            });
            let current = Arc::new(ArcSwap::from_pointee(sealed_router(Arc::clone(
                &sealed_state,
            ))));
            tracing::warn!(listen = %bound, sealer = vault.sealer_kind(), "writ is serving SEALED: unseal the vault (`writ vault unseal`) to start deciding");
            on_listening(bound);
            let server = tokio::spawn(crate::edge::accept::serve(
                listener,
                Arc::clone(&current),
                config.http,
                serve_stopped,
            ));
            tokio::select! {
                () = unsealed.notified() => {}
                _ = stop_rx.wait_for(|stop| *stop) => {
                    server.await??;
                    state_db.flush()?;
                    tracing::info!("writ stopped (it was never unsealed)");
                    return Ok(());
                }
            }
            let fields = sealed_state
                .unsealed_entry
                .lock()
                .ok()
                .and_then(|mut slot| slot.take())
                .unwrap_or_default();
            let opened = match open_unsealed(
                &config,
                state_db,
                vault,
                fields,
                Arc::new(GrantsClock),
            )
            .await
            {
                Ok(opened) => opened,
                Err(error) => {
                    let _ = opened_tx.send(Opening::Failed);
                    return Err(error);
                }
            };
            current.store(Arc::new(opened.router.clone()));
            let _ = opened_tx.send(Opening::Open);
            tracing::info!("the vault is unsealed: writ is deciding");
            Some((opened, server))
        }
    };
    let Some((opened, server)) = opened else {
        return Ok(());
    };
    let reloader = tokio::spawn(reload_on_sighup(Arc::clone(&opened.state)));
    server.await??;
    reloader.abort();
    // Wait for the aborted task to drop its handle on the state.
    let _ = reloader.await;
    // Every handler has finished: the last handles to the writer go, then the log closes.
    opened.close().await?;
    tracing::info!("writ stopped");
    Ok(())
}

/// Where the kernel stands after the unseal of a sealed start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    Waiting,
    Open,
    Failed,
}

/// What the sealed-start server holds.
#[derive(Debug)]
struct SealedState {
    vault: Arc<Vault>,
    auth: Authenticator,
    unsealed: Arc<tokio::sync::Notify>,
    /// The `vault.unsealed` entry, for `run` to record once the ledger is open.
    unsealed_entry: std::sync::Mutex<Option<Map<String, Value>>>,
    opened: tokio::sync::watch::Receiver<Opening>,
}

impl SealedState {
    /// Verifies the bearer token of a request, and logs a refusal as the full
    /// server does (there are no metrics before the vault opens).
    fn principal(
        &self,
        headers: &axum::http::HeaderMap,
    ) -> Result<crate::identity::Principal, ApiError> {
        let principal = crate::state::bearer_principal(&self.auth, headers)?;
        if let Err(error) = &principal {
            tracing::info!(code = error.code(), "authentication refused");
        }
        Ok(principal?)
    }
}

impl crate::edge::gate::TokenCheck for SealedState {
    fn check_token(&self, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
        // A refused request never reaches its handler: it is logged once.
        self.principal(headers).map(|_| ())
    }
}

fn sealed_router(state: Arc<SealedState>) -> axum::Router {
    use axum::routing::{get, post};
    axum::Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(json!({"status": "ok"})) }),
        )
        .route("/readyz", get(sealed_ready))
        .route("/v1/vault/status", get(sealed_status))
        .route(
            "/v1/vault/unseal",
            post(sealed_unseal).route_layer(axum::middleware::from_fn_with_state(
                Arc::clone(&state),
                crate::edge::gate::require_token::<SealedState>,
            )),
        )
        .fallback(|| async { ApiError::from(writ_vault::VaultError::Sealed) })
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::routes::MAX_BODY_BYTES,
        ))
        .with_state(state)
}

async fn sealed_ready() -> impl axum::response::IntoResponse {
    (
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({"status": "vault_sealed"})),
    )
}

async fn sealed_status(
    axum::extract::State(state): axum::extract::State<Arc<SealedState>>,
) -> axum::Json<Value> {
    axum::Json(state.vault.status())
}

async fn sealed_unseal(
    axum::extract::State(state): axum::extract::State<Arc<SealedState>>,
    headers: axum::http::HeaderMap,
    body: crate::routes::JsonBody,
) -> Result<axum::Json<Value>, super::vault::api::UnsealRefused> {
    let principal = state.principal(&headers)?;
    // In a task of its own, as on a running server: a client that goes away
    // during the Argon2 run cannot keep an opened ring from being put in place.
    let (answer, opened) = tokio::spawn(sealed_unseal_step(Arc::clone(&state), principal, body))
        .await
        .map_err(|error| ApiError::internal("unsealing", &error))??;
    if opened {
        // Answer once the ledger and the full API are open, so that the caller's
        // next request is decided rather than refused as sealed.
        let mut opened = state.opened.clone();
        let waited = tokio::time::timeout(
            std::time::Duration::from_secs(60),
            opened.wait_for(|opening| *opening != Opening::Waiting),
        )
        .await;
        if !matches!(waited, Ok(Ok(ref opening)) if **opening == Opening::Open) {
            return Err(ApiError::internal(
                "opening the kernel after the unseal",
                &"the server log says why",
            )
            .into());
        }
    }
    Ok(axum::Json(answer))
}

/// One unseal step of the sealed-start server, and whether the ring opened (then
/// it is in place and `run` was told).
async fn sealed_unseal_step(
    state: Arc<SealedState>,
    principal: crate::identity::Principal,
    body: crate::routes::JsonBody,
) -> Result<(Value, bool), super::vault::api::UnsealRefused> {
    // A failed attempt is logged by `unseal_step`; there is no ledger to record it in
    // before the vault opens, and the `vault.unsealed` entry counts the passphrase
    // failures in a row before it (`failed_attempts`).
    let outcome = super::vault::api::unseal_step(&state.vault, &principal, body).await?;
    let answer = outcome.to_json();
    let super::vault::api::UnsealOutcome::Opened(opened) = outcome else {
        return Ok((answer, false));
    };
    // The ledger's key is in this ring: its `vault.unsealed` entry can only be
    // written once the ring is in place and the ledger open (`run` does).
    let fields = super::vault::api::unsealed_fields(&state.vault, &opened);
    if let Ok(mut slot) = state.unsealed_entry.lock() {
        *slot = Some(fields);
    }
    state.vault.install(*opened);
    state.unsealed.notify_one();
    Ok((answer, true))
}

/// `kernel.started` and `policy.loaded`: which kernel and which policy set answer.
async fn record_start(
    state: &AppState,
    verifier_key: &str,
    unsealed: Map<String, Value>,
) -> anyhow::Result<()> {
    let snapshot = state.engine.snapshot();
    let policies = snapshot.policies();
    let mut started = Map::new();
    started.insert("version".into(), json!(env!("CARGO_PKG_VERSION")));
    started.insert("verifier_key".into(), json!(verifier_key));
    let mut loaded = Map::new();
    loaded.insert("policy_set".into(), json!(policies.digest().to_string()));
    loaded.insert("policies".into(), json!(policies.policy_count()));
    loaded.insert("policy_files".into(), json!(policies.policy_files()));
    loaded.insert("schema_files".into(), json!(policies.schema_files()));
    for (kind, fields) in [
        ("kernel.started", started),
        ("vault.unsealed", unsealed),
        ("policy.loaded", loaded),
    ] {
        state
            .record(&EntryDraft {
                kind: kind.into(),
                actor: "writ".into(),
                workspace: "-".into(),
                fields,
            })
            .await
            .map_err(|error| anyhow::anyhow!("cannot record `{kind}`: {}", error.message))?;
    }
    for warning in policies.warnings() {
        tracing::warn!(%warning, "policy validator warning");
    }
    Ok(())
}

async fn reload_on_sighup(state: Arc<AppState>) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    else {
        tracing::error!("cannot listen for SIGHUP; reload through the API instead");
        return;
    };
    while hangups.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading policies");
        if let Err(error) = crate::admin::reload_policies(&state, None).await {
            tracing::warn!(code = error.code, message = %error.message, "reload refused; the running set stays");
        }
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("stopping: finishing requests in flight");
}
