//! The `writ` command: the ledger's auditor and operator commands.

mod bench;
mod ledger_cmd;

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
    /// The signed, append-only ledger: bench, export, verify, prove.
    #[command(subcommand)]
    Ledger(ledger_cmd::LedgerCommand),
    /// Signing keys.
    #[command(subcommand)]
    Keys(ledger_cmd::KeysCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ledger(command) => ledger_cmd::run(command),
        Command::Keys(command) => ledger_cmd::run_keys(command),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("writ: {error:#}");
            ExitCode::FAILURE
        }
    }
}
