//! A ledger data dir: the sled database and the signing key file (mode 0600).
//!
//! Layout: `DIR/ledger.key` (the Go `note` private key string, owner-only) and
//! `DIR/ledger.db/` (sled). The key moves into the vault with the vault issue.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::LogSigner;
use crate::error::LedgerError;
use crate::log::{Clock, Log, Retention, SystemClock};
use crate::store::SledStore;

/// File name of the signing key inside a data dir.
pub const KEY_FILE: &str = "ledger.key";
/// Directory name of the sled database inside a data dir.
pub const DB_DIR: &str = "ledger.db";

/// The default origin (and key name) of a new log: unique per data dir.
pub fn default_origin() -> String {
    let suffix: u32 = rand::random();
    format!("writ.local/ledger-{suffix:08x}")
}

/// Paths of one data dir.
#[derive(Clone, Debug)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub fn key_path(&self) -> PathBuf {
        self.root.join(KEY_FILE)
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join(DB_DIR)
    }

    /// Whether a ledger was initialised here.
    pub fn exists(&self) -> bool {
        self.key_path().exists()
    }

    /// Creates the directory (mode 0700) and a new signing key for `origin`.
    /// Refuses to overwrite an existing key.
    pub fn init(&self, origin: &str) -> Result<LogSigner, LedgerError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|error| LedgerError::io(&self.root, error))?;
        let signer = LogSigner::generate(origin)?;
        let path = self.key_path();
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|error| LedgerError::io(&path, error))?;
        let text = signer.to_signer_key_string();
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(|error| LedgerError::io(&path, error))?;
        Ok(signer)
    }

    /// Reads the signing key, refusing a key file others can read.
    pub fn signer(&self) -> Result<LogSigner, LedgerError> {
        let path = self.key_path();
        let metadata = fs::metadata(&path).map_err(|error| LedgerError::io(&path, error))?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(LedgerError::KeyFilePermissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let text = zeroize::Zeroizing::new(
            fs::read_to_string(&path).map_err(|error| LedgerError::io(&path, error))?,
        );
        LogSigner::from_signer_key_string(text.trim_end())
    }

    /// Opens the sled store, naming the data dir when another process holds it.
    pub fn store(&self) -> Result<SledStore, LedgerError> {
        let path = self.db_path();
        SledStore::open(&path).map_err(|error| match error {
            LedgerError::Storage(sled::Error::Io(io))
                if io.kind() == std::io::ErrorKind::WouldBlock
                    || io.to_string().contains("lock") =>
            {
                LedgerError::DataDirBusy {
                    path: self.root.display().to_string(),
                }
            }
            other => other,
        })
    }

    /// Opens the log (with the recovery check) using the system clock.
    pub fn open_log(&self, retention: Retention) -> Result<Log<SledStore>, LedgerError> {
        self.open_log_with_clock(retention, Arc::new(SystemClock))
    }

    /// Opens the log with an injected clock.
    pub fn open_log_with_clock(
        &self,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Result<Log<SledStore>, LedgerError> {
        if !self.exists() {
            return Err(LedgerError::NoLedger {
                path: self.root.display().to_string(),
            });
        }
        let signer = self.signer()?;
        let store = Arc::new(self.store()?);
        Log::open(store, signer, clock, retention)
    }
}
