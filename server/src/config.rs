//! Server configuration: a TOML file, overridden by environment variables and flags
//! (the CLI resolves those), over built-in defaults (sled in `./writ-data`, the
//! shipped policies copied into the data dir, loopback on port 7700).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::edge::EdgeLimits;
use crate::grants::GrantsConfig;
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

/// The `[grants]` section: break-glass, approval gates and consents. Durations
/// are humantime strings (`30m`, `4h`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantsSection {
    pub break_glass_approvals: Option<u32>,
    pub break_glass_max_duration: Option<String>,
    pub break_glass_pending: Option<String>,
    pub break_glass_emergency: Option<bool>,
    pub approval_window: Option<String>,
    pub approval_pending: Option<String>,
    pub consent_max_duration: Option<String>,
    pub new_member_cooldown: Option<String>,
}

impl GrantsSection {
    /// The rules, over the defaults; refuses zero approvals and zero durations.
    pub fn resolve(&self) -> Result<GrantsConfig, ConfigError> {
        let defaults = GrantsConfig::default();
        let duration = |name: &str, text: &Option<String>, default: Duration| {
            config_duration("grants", name, text.as_deref(), default, Duration::MAX)
        };
        let approvals = self
            .break_glass_approvals
            .unwrap_or(defaults.break_glass_approvals);
        if approvals == 0 || approvals > 16 {
            return Err(ConfigError::Invalid {
                reason: "`grants.break_glass_approvals` is 1 to 16".to_owned(),
            });
        }
        Ok(GrantsConfig {
            break_glass_approvals: approvals,
            break_glass_max_duration: duration(
                "break_glass_max_duration",
                &self.break_glass_max_duration,
                defaults.break_glass_max_duration,
            )?,
            break_glass_pending: duration(
                "break_glass_pending",
                &self.break_glass_pending,
                defaults.break_glass_pending,
            )?,
            break_glass_emergency: self
                .break_glass_emergency
                .unwrap_or(defaults.break_glass_emergency),
            approval_window: duration(
                "approval_window",
                &self.approval_window,
                defaults.approval_window,
            )?,
            approval_pending: duration(
                "approval_pending",
                &self.approval_pending,
                defaults.approval_pending,
            )?,
            consent_max_duration: duration(
                "consent_max_duration",
                &self.consent_max_duration,
                defaults.consent_max_duration,
            )?,
            new_member_cooldown: duration(
                "new_member_cooldown",
                &self.new_member_cooldown,
                defaults.new_member_cooldown,
            )?,
        })
    }
}

/// The `[http]` section: the limits of the HTTP edge. Durations are humantime
/// strings (`5s`, `1m`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    /// How long a client has to send a whole request head (default `5s`).
    pub header_read_timeout: Option<String>,
    /// How long a keep-alive connection may wait for its next request (default `60s`).
    pub idle_timeout: Option<String>,
    /// How long a client has to send a whole request body (default `30s`).
    pub body_read_timeout: Option<String>,
    /// Connections served at once (default: three quarters of the open-files limit,
    /// at most 10000).
    pub max_connections: Option<usize>,
    /// How long a stop waits for the connections in flight before it cuts them
    /// (default `10s`).
    pub shutdown_drain: Option<String>,
}

impl HttpSection {
    /// The limits, over the defaults; refuses zero durations and zero connections.
    pub fn resolve(&self) -> Result<EdgeLimits, ConfigError> {
        let defaults = EdgeLimits::default();
        let duration = |name: &str, text: &Option<String>, default: Duration| {
            config_duration("http", name, text.as_deref(), default, MAX_HTTP_TIMEOUT)
        };
        let max_connections = self.max_connections.unwrap_or(defaults.max_connections);
        if max_connections == 0 || max_connections > MAX_CONNECTIONS {
            return Err(ConfigError::Invalid {
                reason: format!("`http.max_connections` is 1 to {MAX_CONNECTIONS}"),
            });
        }
        Ok(EdgeLimits {
            header_read_timeout: duration(
                "header_read_timeout",
                &self.header_read_timeout,
                defaults.header_read_timeout,
            )?,
            idle_timeout: duration("idle_timeout", &self.idle_timeout, defaults.idle_timeout)?,
            body_read_timeout: duration(
                "body_read_timeout",
                &self.body_read_timeout,
                defaults.body_read_timeout,
            )?,
            max_connections,
            shutdown_drain: duration(
                "shutdown_drain",
                &self.shutdown_drain,
                defaults.shutdown_drain,
            )?,
        })
    }
}

/// The `[vault]` section: the brakes on unseal attempts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    /// The first wait after repeated failed passphrase attempts, doubled after each
    /// further failure up to 60 s (default `1s`, at least `100ms`).
    pub unseal_backoff_base: Option<String>,
}

impl VaultSection {
    /// The unseal backoff base, over the default.
    pub fn unseal_backoff_base(&self) -> Result<Duration, ConfigError> {
        let Some(text) = &self.unseal_backoff_base else {
            return Ok(crate::vault::unseal_guard::DEFAULT_BACKOFF_BASE);
        };
        match humantime::parse_duration(text) {
            Ok(parsed)
                if parsed >= MIN_UNSEAL_BACKOFF_BASE
                    && parsed <= crate::vault::unseal_guard::MAX_BACKOFF =>
            {
                Ok(parsed)
            }
            Ok(_) => Err(ConfigError::Invalid {
                reason: "`vault.unseal_backoff_base` is 100ms to 60s".to_owned(),
            }),
            Err(error) => Err(ConfigError::Invalid {
                reason: format!("`vault.unseal_backoff_base` is not a duration like `1s`: {error}"),
            }),
        }
    }
}

/// The shortest `vault.unseal_backoff_base`.
const MIN_UNSEAL_BACKOFF_BASE: Duration = Duration::from_millis(100);

/// A humantime duration of the config file (`30m`, `5s`): `default` when absent,
/// refused when zero or longer than `max`.
fn config_duration(
    section: &str,
    name: &str,
    text: Option<&str>,
    default: Duration,
    max: Duration,
) -> Result<Duration, ConfigError> {
    let Some(text) = text else {
        return Ok(default);
    };
    match humantime::parse_duration(text) {
        Ok(parsed) if !parsed.is_zero() && parsed <= max => Ok(parsed),
        Ok(_) if max == Duration::MAX => Err(ConfigError::Invalid {
            reason: format!("`{section}.{name}` must be longer than zero"),
        }),
        Ok(_) => Err(ConfigError::Invalid {
            reason: format!(
                "`{section}.{name}` is longer than zero and at most {}",
                humantime::format_duration(max)
            ),
        }),
        Err(error) => Err(ConfigError::Invalid {
            reason: format!("`{section}.{name}` is not a duration like `30s`: {error}"),
        }),
    }
}

/// The longest timeout of the `[http]` section.
const MAX_HTTP_TIMEOUT: Duration = Duration::from_secs(3600);
/// The largest `http.max_connections`.
const MAX_CONNECTIONS: usize = 1_000_000;

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
    pub grants: Option<GrantsSection>,
    pub http: Option<HttpSection>,
    pub vault: Option<VaultSection>,
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
    pub grants: GrantsConfig,
    pub http: EdgeLimits,
    /// The first wait after three failed passphrase unseals in a row.
    pub unseal_backoff_base: Duration,
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
            grants: file.grants.unwrap_or_default().resolve()?,
            http: file.http.unwrap_or_default().resolve()?,
            unseal_backoff_base: file.vault.unwrap_or_default().unseal_backoff_base()?,
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
