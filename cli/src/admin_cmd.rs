//! Commands that talk to a running server: `writ apikey`, `writ entity`, `writ authorize`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::client::{print_json, Connection};

#[derive(Debug, Subcommand)]
pub(crate) enum ApiKeyCommand {
    /// Create an API key for a principal; the key is printed once. A User's key is made
    /// by that User or an operator; an Agent's by its workspace's owners and admins.
    Create {
        /// The principal, e.g. `User::"alice"`, `Agent::"runner-1"` or `Auditor::"ada"`.
        #[arg(long)]
        principal: String,
        /// Its workspace (omit for an Operator or an Auditor).
        #[arg(long)]
        workspace: Option<String>,
        #[arg(long)]
        label: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// List API keys (never the keys themselves).
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Revoke an API key by its id.
    Revoke {
        id: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum EntityCommand {
    /// Add or replace entities from a file holding one entity or an array of them
    /// (Cedar's JSON entity format).
    Put {
        file: PathBuf,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show one entity.
    Get {
        uid: String,
        #[command(flatten)]
        connection: Connection,
    },
    /// List entities, optionally of one type.
    List {
        #[arg(long = "type")]
        entity_type: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Delete one entity.
    Delete {
        uid: String,
        #[command(flatten)]
        connection: Connection,
    },
}

pub(crate) fn apikey(command: ApiKeyCommand) -> anyhow::Result<ExitCode> {
    match command {
        ApiKeyCommand::Create {
            principal,
            workspace,
            label,
            connection,
        } => {
            let answer = connection.call(
                "POST",
                "/v1/apikeys",
                Some(&json!({"principal": principal, "workspace": workspace, "label": label})),
            )?;
            let key = answer
                .get("key")
                .and_then(Value::as_str)
                .context("the answer has no key")?;
            let id = answer.get("id").and_then(Value::as_str).unwrap_or("?");
            eprintln!("api key `{id}` (shown once):");
            println!("{key}");
        }
        ApiKeyCommand::List { connection } => {
            print_json(&connection.call("GET", "/v1/apikeys", None)?)?
        }
        ApiKeyCommand::Revoke { id, connection } => {
            connection.call("DELETE", &format!("/v1/apikeys/{}", encode(&id)), None)?;
            eprintln!("revoked `{id}`");
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn entity(command: EntityCommand) -> anyhow::Result<ExitCode> {
    match command {
        EntityCommand::Put { file, connection } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            let value: Value = serde_json::from_str(&text)
                .with_context(|| format!("`{}` is not JSON", file.display()))?;
            let entities = match value {
                Value::Array(items) => items,
                other => vec![other],
            };
            for entity in &entities {
                let answer = connection.call("PUT", "/v1/entities", Some(entity))?;
                eprintln!(
                    "stored {}",
                    answer.get("uid").and_then(Value::as_str).unwrap_or("?")
                );
            }
        }
        EntityCommand::Get { uid, connection } => {
            print_json(&connection.call(
                "GET",
                &format!("/v1/entities/{}", encode(&uid)),
                None,
            )?)?;
        }
        EntityCommand::List {
            entity_type,
            connection,
        } => {
            let path = match entity_type {
                Some(t) => format!("/v1/entities?type={}", encode(&t)),
                None => "/v1/entities".to_owned(),
            };
            print_json(&connection.call("GET", &path, None)?)?;
        }
        EntityCommand::Delete { uid, connection } => {
            connection.call("DELETE", &format!("/v1/entities/{}", encode(&uid)), None)?;
            eprintln!("deleted {uid}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Asks the server for one decision; exit status 0 on allow, 3 on deny.
pub(crate) fn authorize(request: &str, connection: &Connection) -> anyhow::Result<ExitCode> {
    let body: Value = serde_json::from_str(request).context("the request is not JSON")?;
    let answer = connection.call("POST", "/v1/authorize", Some(&body))?;
    print_json(&answer)?;
    Ok(
        if answer.get("decision").and_then(Value::as_str) == Some("allow") {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(3)
        },
    )
}

/// Percent-encodes a path segment (entity UIDs hold quotes and colons).
fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
