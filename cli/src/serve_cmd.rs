//! `writ init` and `writ serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use writ_server::config::{FileConfig, LogFormat, Overrides, ServeConfig, DEFAULT_DATA_DIR};

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// The data dir to create.
    #[arg(long, env = "WRIT_DATA", default_value = DEFAULT_DATA_DIR)]
    data: PathBuf,
    /// Write the bootstrap operator key to this new file (mode 0600) instead of
    /// printing it.
    #[arg(long)]
    admin_key_out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormatArg {
    Pretty,
    Json,
}

#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The data dir (created with the default policies when it does not exist).
    #[arg(long, env = "WRIT_DATA")]
    data: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:7700; port 0 picks a free port).
    #[arg(long, env = "WRIT_LISTEN")]
    listen: Option<SocketAddr>,
    /// A TOML configuration file.
    #[arg(long, env = "WRIT_CONFIG")]
    config: Option<PathBuf>,
    /// The policy directory (default DATA/policies).
    #[arg(long, env = "WRIT_POLICY_DIR")]
    policy_dir: Option<PathBuf>,
    /// The schema directory (default DATA/schemas).
    #[arg(long, env = "WRIT_SCHEMA_DIR")]
    schema_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "WRIT_LOG_FORMAT", value_enum)]
    log_format: Option<LogFormatArg>,
    /// A key file that unseals the vault at start (default: DATA/vault.key when it
    /// exists; else the passphrase in WRIT_VAULT_PASSPHRASE; else the server starts
    /// sealed and waits for `writ vault unseal`).
    #[arg(long, env = "WRIT_VAULT_KEY_FILE")]
    vault_key_file: Option<PathBuf>,
}

pub(crate) fn init(args: InitArgs) -> anyhow::Result<ExitCode> {
    let made = writ_server::kernel::init(&args.data)?;
    eprintln!("initialised `{}`", args.data.display());
    eprintln!("ledger verifier key: {}", made.verifier_key);
    eprintln!(
        "the vault (which holds the ledger's signing key) is sealed by the key file `{}`: \
         fine for a sidecar on one machine; in production seal it with shares or a passphrase \
         (`writ vault init --shares 5 --threshold 3` on the running server)",
        made.vault_key_file.display()
    );
    match args.admin_key_out {
        Some(path) => {
            writ_server::kernel::write_secret_file(&path, made.admin_key.expose())?;
            eprintln!(
                "bootstrap operator key `{}` written to `{}` (mode 0600)",
                made.admin_key_id,
                path.display()
            );
        }
        None => {
            eprintln!(
                "bootstrap operator key `{}` (shown once; store it now, e.g. as WRIT_TOKEN):",
                made.admin_key_id
            );
            println!("{}", made.admin_key.expose());
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let file = match &args.config {
        Some(path) => FileConfig::read(path)?,
        None => FileConfig::default(),
    };
    let overrides = Overrides {
        data_dir: args.data,
        listen: args.listen,
        policy_dir: args.policy_dir,
        schema_dir: args.schema_dir,
        log_format: args.log_format.map(|f| match f {
            LogFormatArg::Pretty => LogFormat::Pretty,
            LogFormatArg::Json => LogFormat::Json,
        }),
        vault_key_file: args.vault_key_file,
    };
    let config = ServeConfig::resolve(file, overrides)?;
    init_tracing(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(writ_server::serve::run(config, |address| {
        // Scripts and tests read the bound address (port 0 picks one) from here.
        println!("listening on {address}");
    }))?;
    Ok(ExitCode::SUCCESS)
}

fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WRIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Pretty => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
