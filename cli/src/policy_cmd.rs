//! `writ policy validate | test | reload`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use writ_pdp::conformance::run_paths;
use writ_pdp::LoadedPolicies;

use crate::client::{print_json, Connection};

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Strictly validate a policy directory against a schema directory.
    Validate {
        /// The policy directory (`*.cedar`).
        #[arg(default_value = "policies")]
        dir: PathBuf,
        /// The schema directory (`*.cedarschema`).
        #[arg(long, default_value = "schemas")]
        schema: PathBuf,
    },
    /// Run test files in the JSON format of Cedar's integration tests (files or
    /// directories searched recursively).
    Test {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print one JSON summary object.
        #[arg(long)]
        json: bool,
    },
    /// Ask the running server to reload its policy directory.
    Reload {
        #[command(flatten)]
        connection: Connection,
    },
}

pub(crate) fn run(command: PolicyCommand) -> anyhow::Result<ExitCode> {
    match command {
        PolicyCommand::Validate { dir, schema } => validate(&dir, &schema),
        PolicyCommand::Test { paths, json } => test(&paths, json),
        PolicyCommand::Reload { connection } => {
            let answer = connection.call("POST", "/v1/admin/policies/reload", None)?;
            print_json(&answer)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(dir: &std::path::Path, schema: &std::path::Path) -> anyhow::Result<ExitCode> {
    match LoadedPolicies::load(dir, schema) {
        Ok(loaded) => {
            for warning in loaded.warnings() {
                eprintln!("warning: {warning}");
            }
            println!(
                "valid: {} policies in {} files, policy set {}",
                loaded.policy_count(),
                loaded.policy_files().len(),
                loaded.digest()
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            eprintln!("writ: {error}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn test(paths: &[PathBuf], as_json: bool) -> anyhow::Result<ExitCode> {
    let summary = run_paths(paths);
    for disagreement in &summary.disagreements {
        eprintln!("disagree: {disagreement}");
    }
    for (file, reason) in &summary.failures {
        eprintln!("cannot run `{}`: {reason}", file.display());
    }
    if as_json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        for difference in &summary.validation_differences {
            println!("validation difference: {difference}");
        }
        println!(
            "{} tests, {} requests: {} agree, {} disagree, {} validation differences",
            summary.tests,
            summary.requests,
            summary.agree,
            summary.disagree,
            summary.validation_differences.len()
        );
    }
    Ok(if summary.disagree == 0 && summary.failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
