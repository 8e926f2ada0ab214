//! `writ vault` (the operator's key ring, seal and leases) and `writ secret` (a
//! workspace's secrets), both through a running server. Secret values and shares
//! are read from a file or standard input, never from an argument (shell history
//! and `ps` would see it); a revealed value goes alone to standard output.

use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use clap::Subcommand;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::client::{print_json, Connection};

/// The largest secret value (the vault's limit).
const MAX_VALUE_BYTES: u64 = 64 * 1024;

#[derive(Debug, Subcommand)]
pub(crate) enum VaultCommand {
    /// Whether the vault is sealed, its sealer, key versions and rewrap progress.
    Status {
        #[command(flatten)]
        connection: Connection,
    },
    /// Seal the key ring anew under Shamir shares (printed once, one per line) or
    /// a passphrase read from standard input; the key file of the default goes.
    Init {
        #[arg(long, requires = "threshold", conflicts_with = "passphrase_stdin")]
        shares: Option<u8>,
        #[arg(long, requires = "shares")]
        threshold: Option<u8>,
        /// Read a passphrase (first line of standard input) instead of making shares.
        #[arg(long)]
        passphrase_stdin: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Give one share (first line of standard input, or FILE), or the passphrase
    /// with `--passphrase`; prints the progress (`2/3`).
    Unseal {
        /// A file holding the share.
        #[arg(long)]
        share_file: Option<PathBuf>,
        /// Standard input holds the passphrase, not a share.
        #[arg(long, conflicts_with = "key_file")]
        passphrase: bool,
        /// Unseal with the server's own key file (a key-file vault after `seal`).
        #[arg(long, conflicts_with = "share_file")]
        key_file: bool,
        #[command(flatten)]
        connection: Connection,
    },
    /// Drop every vault key from memory at once.
    Seal {
        #[command(flatten)]
        connection: Connection,
    },
    /// Add a key-encryption key version and make it primary.
    Rotate {
        #[command(flatten)]
        connection: Connection,
    },
    /// Re-wrap every data key under the primary KEK, in the background.
    Rewrap {
        #[command(flatten)]
        connection: Connection,
    },
    /// Retire every KEK version below MIN (refused while any still wraps a key).
    Retire {
        #[arg(long)]
        min_version: u32,
        #[command(flatten)]
        connection: Connection,
    },
    /// List live leases.
    Leases {
        #[command(flatten)]
        connection: Connection,
    },
    /// End one lease (recorded).
    Revoke {
        lease: String,
        #[command(flatten)]
        connection: Connection,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Store a new version of NAME from FILE (or standard input).
    Put {
        name: String,
        #[arg(long)]
        value_file: Option<PathBuf>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Names and versions of the workspace's secrets (never values).
    List {
        #[command(flatten)]
        connection: Connection,
    },
    /// Print one version's value (the newest by default) alone on standard output.
    Reveal {
        name: String,
        #[arg(long)]
        version: Option<u32>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Destroy one version (crypto-shredding: its data key is deleted).
    Delete {
        name: String,
        #[arg(long)]
        version: u32,
        #[command(flatten)]
        connection: Connection,
    },
}

/// Reads at most `limit` bytes from a file or standard input; more is an error.
fn read_input(
    file: Option<&PathBuf>,
    limit: u64,
    what: &str,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let mut bytes = Zeroizing::new(Vec::new());
    let read = match file {
        Some(path) => std::fs::File::open(path)
            .with_context(|| format!("cannot open `{}`", path.display()))?
            .take(limit + 1)
            .read_to_end(&mut bytes),
        None => std::io::stdin()
            .lock()
            .take(limit + 1)
            .read_to_end(&mut bytes),
    };
    read.with_context(|| format!("cannot read the {what}"))?;
    if bytes.len() as u64 > limit {
        bail!("the {what} is larger than {limit} bytes");
    }
    Ok(bytes)
}

/// The first line of the input, trimmed.
fn read_line(file: Option<&PathBuf>, what: &str) -> anyhow::Result<Zeroizing<String>> {
    let bytes = read_input(file, 4096, what)?;
    let text = std::str::from_utf8(&bytes).with_context(|| format!("the {what} is not text"))?;
    let line = text.lines().next().unwrap_or("").trim();
    if line.is_empty() {
        bail!("no {what} given (standard input was empty)");
    }
    Ok(Zeroizing::new(line.to_owned()))
}

/// One path segment: a name's `/` is sent as `%2F` (the server decodes it).
fn path_segment(name: &str) -> String {
    url::form_urlencoded::byte_serialize(name.as_bytes()).collect()
}

pub(crate) fn vault(command: VaultCommand) -> anyhow::Result<ExitCode> {
    match command {
        VaultCommand::Status { connection } => {
            print_json(&connection.call("GET", "/v1/vault/status", None)?)?
        }
        VaultCommand::Init {
            shares,
            threshold,
            passphrase_stdin,
            connection,
        } => {
            let body = match (shares, threshold, passphrase_stdin) {
                (Some(shares), Some(threshold), false) => {
                    json!({"shares": shares, "threshold": threshold})
                }
                (None, None, true) => {
                    json!({"passphrase": read_line(None, "passphrase")?.as_str()})
                }
                _ => bail!("give --shares N --threshold T, or --passphrase-stdin"),
            };
            let answer = connection.call("POST", "/v1/vault/sealer", Some(&body))?;
            if let Some(shares) = answer.get("shares").and_then(Value::as_array) {
                eprintln!(
                    "the vault is sealed by {} shares, any {} of which unseal it; they are shown now and never again: \
                     give one to each holder",
                    shares.len(),
                    threshold.unwrap_or_default()
                );
                let mut out = std::io::stdout().lock();
                for share in shares.iter().filter_map(Value::as_str) {
                    writeln!(out, "{share}")?;
                }
            } else {
                eprintln!("the vault is sealed by a passphrase");
            }
        }
        VaultCommand::Unseal {
            share_file,
            passphrase,
            key_file,
            connection,
        } => {
            let body = if key_file {
                json!({"key_file": true})
            } else if passphrase {
                json!({"passphrase": read_line(None, "passphrase")?.as_str()})
            } else {
                json!({"share": read_line(share_file.as_ref(), "share")?.as_str()})
            };
            let answer = connection.call("POST", "/v1/vault/unseal", Some(&body))?;
            println!(
                "{}",
                answer
                    .get("progress")
                    .and_then(Value::as_str)
                    .unwrap_or("?")
            );
        }
        VaultCommand::Seal { connection } => {
            print_json(&connection.call("POST", "/v1/vault/seal", None)?)?
        }
        VaultCommand::Rotate { connection } => {
            print_json(&connection.call("POST", "/v1/vault/rotate", None)?)?
        }
        VaultCommand::Rewrap { connection } => {
            print_json(&connection.call("POST", "/v1/vault/rewrap", None)?)?
        }
        VaultCommand::Retire {
            min_version,
            connection,
        } => print_json(&connection.call(
            "POST",
            "/v1/vault/retire",
            Some(&json!({"min_version": min_version})),
        )?)?,
        VaultCommand::Leases { connection } => {
            print_json(&connection.call("GET", "/v1/vault/leases", None)?)?
        }
        VaultCommand::Revoke { lease, connection } => {
            let path = format!("/v1/vault/leases/{}/revoke", path_segment(&lease));
            print_json(&connection.call("POST", &path, None)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn secret(command: SecretCommand) -> anyhow::Result<ExitCode> {
    match command {
        SecretCommand::Put {
            name,
            value_file,
            connection,
        } => {
            let value = read_input(value_file.as_ref(), MAX_VALUE_BYTES, "secret value")?;
            let body = json!({"value_base64": STANDARD.encode(value.as_slice())});
            let answer = connection.call(
                "PUT",
                &format!("/v1/secrets/{}", path_segment(&name)),
                Some(&body),
            )?;
            print_json(&answer)?;
        }
        SecretCommand::List { connection } => {
            print_json(&connection.call("GET", "/v1/secrets", None)?)?
        }
        SecretCommand::Reveal {
            name,
            version,
            connection,
        } => {
            let body = match version {
                Some(version) => json!({"version": version}),
                None => json!({}),
            };
            let answer = connection.call(
                "POST",
                &format!("/v1/secrets/{}/reveal", path_segment(&name)),
                Some(&body),
            )?;
            let encoded = answer
                .get("value_base64")
                .and_then(Value::as_str)
                .context("the answer carries no value")?;
            let value = Zeroizing::new(
                STANDARD
                    .decode(encoded)
                    .context("the value is not base64")?,
            );
            let lease = answer
                .pointer("/lease/id")
                .and_then(Value::as_str)
                .unwrap_or("-");
            eprintln!(
                "lease {lease}, version {}",
                answer.get("version").unwrap_or(&Value::Null)
            );
            let mut out = std::io::stdout().lock();
            out.write_all(&value)?;
            out.flush()?;
        }
        SecretCommand::Delete {
            name,
            version,
            connection,
        } => {
            let path = format!("/v1/secrets/{}/versions/{version}", path_segment(&name));
            print_json(&connection.call("DELETE", &path, None)?)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
