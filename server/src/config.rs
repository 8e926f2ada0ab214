//! Server configuration: a TOML file, overridden by environment variables and flags
//! (the CLI resolves those), over built-in defaults (sled in `./writ-data`, the
//! shipped policies copied into the data dir, loopback on port 7700).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::identity::JwtConfig;

/// The default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";
/// The default data dir, relative to the working directory.
pub const DEFAULT_DATA_DIR: &str = "./writ-data";

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

/// JWT settings: the JWKS file and how claims map to principals.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSection {
    pub jwks_file: PathBuf,
    #[serde(flatten)]
    pub claims: JwtConfig,
}

/// The TOML file: every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub policy_dir: Option<PathBuf>,
    pub schema_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    /// Group-commit linger of the ledger, in microseconds.
    pub ledger_linger_us: Option<u64>,
    pub jwt: Option<JwtSection>,
    /// A key file that unseals the vault at start (default: the data dir's
    /// `vault.key` when it exists).
    pub vault_key_file: Option<PathBuf>,
}

impl FileConfig {
    /// Reads and parses a TOML file, refusing unknown keys.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.display().to_string(),
            reason: error.to_string(),
        })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse {
            path: path.display().to_string(),
            reason: error.message().to_owned(),
        })
    }
}

/// Everything `serve` needs, resolved.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub policy_dir: PathBuf,
    pub schema_dir: PathBuf,
    pub log_format: LogFormat,
    pub ledger_linger: Duration,
    pub jwt: Option<JwtSection>,
    pub vault_key_file: Option<PathBuf>,
}

/// What flags and environment variables say (each overrides the file).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub data_dir: Option<PathBuf>,
    pub listen: Option<SocketAddr>,
    pub policy_dir: Option<PathBuf>,
    pub schema_dir: Option<PathBuf>,
    pub log_format: Option<LogFormat>,
    pub vault_key_file: Option<PathBuf>,
}

impl ServeConfig {
    /// Flags and environment over the file over the defaults.
    pub fn resolve(file: FileConfig, overrides: Overrides) -> Result<Self, ConfigError> {
        let data_dir = overrides
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let listen = match overrides.listen.or(file.listen) {
            Some(listen) => listen,
            None => DEFAULT_LISTEN.parse().map_err(|_| ConfigError::Invalid {
                reason: "the default listen address".to_owned(),
            })?,
        };
        let linger_us = file.ledger_linger_us.unwrap_or(200);
        if linger_us > 10_000 {
            return Err(ConfigError::Invalid {
                reason: "`ledger_linger_us` is at most 10000".to_owned(),
            });
        }
        Ok(Self {
            policy_dir: overrides
                .policy_dir
                .or(file.policy_dir)
                .unwrap_or_else(|| data_dir.join("policies")),
            schema_dir: overrides
                .schema_dir
                .or(file.schema_dir)
                .unwrap_or_else(|| data_dir.join("schemas")),
            data_dir,
            listen,
            log_format: overrides.log_format.or(file.log_format).unwrap_or_default(),
            ledger_linger: Duration::from_micros(linger_us),
            jwt: file.jwt,
            vault_key_file: overrides.vault_key_file.or(file.vault_key_file),
        })
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file `{path}`: {reason}")]
    Read { path: String, reason: String },
    #[error("the config file `{path}` is invalid: {reason}")]
    Parse { path: String, reason: String },
    #[error("invalid configuration: {reason}")]
    Invalid { reason: String },
}
