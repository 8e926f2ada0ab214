//! The `writ` command: the server, its admin client, policy tooling, and the
//! ledger's auditor commands.

mod admin_cmd;
mod bench;
mod client;
mod grants_cmd;
mod ledger_cmd;
mod policy_cmd;
mod serve_cmd;
mod vault_cmd;
mod verify_url;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// writ: a security kernel (policy decisions, a signed ledger, a vault).
#[derive(Debug, Parser)]
#[command(name = "writ", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a data dir: the vault (holding the ledger key), default policies,
    /// bootstrap operator key.
    Init(serve_cmd::InitArgs),
    /// Run the server (initialising the data dir first if it does not exist).
    Serve(serve_cmd::ServeArgs),
    /// Policies: validate, test, reload.
    #[command(subcommand)]
    Policy(policy_cmd::PolicyCommand),
    /// API keys on a running server.
    #[command(subcommand)]
    Apikey(admin_cmd::ApiKeyCommand),
    /// Entities (users, agents, roles, workspaces, resources) on a running server.
    #[command(subcommand)]
    Entity(admin_cmd::EntityCommand),
    /// Ask a running server for one decision (JSON body of POST /v1/authorize);
    /// exit status 0 on allow, 3 on deny.
    Authorize {
        request: String,
        #[command(flatten)]
        connection: client::Connection,
    },
    /// The signed, append-only ledger: bench, export, verify, prove.
    #[command(subcommand)]
    Ledger(ledger_cmd::LedgerCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(ledger_cmd::KeysCommand),
    /// The vault on a running server: seal, unseal, rotate, rewrap, retire, leases.
    #[command(subcommand)]
    Vault(vault_cmd::VaultCommand),
    /// A workspace's secrets on a running server: put, list, reveal, delete.
    #[command(subcommand)]
    Secret(vault_cmd::SecretCommand),
    /// Break-glass elevations on a running server: request, approve, revoke, review.
    #[command(subcommand)]
    BreakGlass(grants_cmd::BreakGlassCommand),
    /// Approval gates on a running server: request, approve or deny a held decision.
    #[command(subcommand)]
    Approval(grants_cmd::ApprovalCommand),
    /// Consents on a running server: let a principal act on your resources for a while.
    #[command(subcommand)]
    Consent(grants_cmd::ConsentCommand),
    /// Your own Ed25519 key for signed requests and approvals: generate, register, show.
    #[command(subcommand)]
    SigningKey(grants_cmd::SigningKeyCommand),
}

/// mimalloc instead of glibc's malloc: the server allocates per request on every
/// tokio worker, and glibc's arenas cost about 15% of its CPU under load (perf,
/// `docs/PERFORMANCE.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init(args) => serve_cmd::init(args),
        Command::Serve(args) => serve_cmd::serve(args),
        Command::Policy(command) => policy_cmd::run(command),
        Command::Apikey(command) => admin_cmd::apikey(command),
        Command::Entity(command) => admin_cmd::entity(command),
        Command::Authorize {
            request,
            connection,
        } => admin_cmd::authorize(&request, &connection),
        Command::Ledger(command) => ledger_cmd::run(command),
        Command::Keys(command) => ledger_cmd::run_keys(command),
        Command::Vault(command) => vault_cmd::vault(command),
        Command::Secret(command) => vault_cmd::secret(command),
        Command::BreakGlass(command) => grants_cmd::break_glass(command),
        Command::Approval(command) => grants_cmd::approval(command),
        Command::Consent(command) => grants_cmd::consent(command),
        Command::SigningKey(command) => grants_cmd::signing_key(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("writ: {error:#}");
            ExitCode::FAILURE
        }
    }
}
