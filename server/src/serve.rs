//! `writ serve`: open the data dir, record that the kernel started and which policy
//! set it loaded, then answer HTTP until SIGTERM or Ctrl-C; SIGHUP reloads policies.

use std::collections::BTreeSet;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use anyhow::Context;
use serde_json::{json, Map};
use writ_ledger::datadir::DataDir;
use writ_ledger::log::Retention;
use writ_ledger::store::SledStore;
use writ_ledger::writer::{self, BatchConfig, Committer};
use writ_ledger::EntryDraft;

use crate::config::ServeConfig;
use crate::identity::{ApiKeyStore, Authenticator, JwksVerifier};
use crate::kernel::{self, BOOTSTRAP_KEY_FILE};
use crate::ledger_api::ledger_routes;
use crate::metrics::Metrics;
use crate::state::{AppState, RESERVED_TYPES};

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

/// Opens a data dir (initialising it first when it holds nothing), loads the policy
/// set, and records `kernel.started` and `policy.loaded`.
pub async fn open(config: &ServeConfig) -> anyhow::Result<Opened> {
    if !kernel::is_initialised(&config.data_dir) {
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
    }

    let ledger_dir = DataDir::new(&config.data_dir);
    let log = {
        let dir = ledger_dir.clone();
        tokio::task::spawn_blocking(move || dir.open_log(Retention::default())).await??
    };
    let verifier_key = log.verifier_key();
    let ledger_store = Arc::clone(log.store());
    let batch = BatchConfig {
        linger: config.ledger_linger,
        ..BatchConfig::default()
    };
    let (ledger, committer) = writer::spawn(log, batch)?;

    let state_db = kernel::open_state_db(&config.data_dir)?;
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
    let state = Arc::new(AppState {
        engine: Arc::new(engine),
        ledger,
        ledger_store: Arc::clone(&ledger_store),
        auth: Authenticator::new(api_keys, jwt),
        metrics: Metrics::new(),
        policy_dir: config.policy_dir.clone(),
        schema_dir: config.schema_dir.clone(),
        reserved_types: RESERVED_TYPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect::<BTreeSet<_>>(),
        ledger_failed: AtomicBool::new(false),
    });
    record_start(&state, &verifier_key).await?;
    tracing::info!(verifier_key = %verifier_key, "ledger open");
    let router =
        crate::routes::router(Arc::clone(&state), ledger_routes(Arc::clone(&ledger_store)));
    Ok(Opened {
        state,
        router,
        committer,
        state_db,
    })
}

/// Runs the server until it is told to stop. `on_listening` gets the bound address
/// (useful with port 0).
pub async fn run(
    config: ServeConfig,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> anyhow::Result<()> {
    let opened = open(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let bound = listener.local_addr()?;
    tracing::info!(listen = %bound, "writ is serving");
    on_listening(bound);

    let reloader = tokio::spawn(reload_on_sighup(Arc::clone(&opened.state)));
    axum::serve(listener, opened.router.clone())
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    reloader.abort();
    // Wait for the aborted task to drop its handle on the state.
    let _ = reloader.await;
    // Every handler has finished: the last handles to the writer go, then the log closes.
    opened.close().await?;
    tracing::info!("writ stopped");
    Ok(())
}

/// `kernel.started` and `policy.loaded`: which kernel and which policy set answer.
async fn record_start(state: &AppState, verifier_key: &str) -> anyhow::Result<()> {
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
    for (kind, fields) in [("kernel.started", started), ("policy.loaded", loaded)] {
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
