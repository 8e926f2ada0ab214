//! A ledger data dir: the sled database and the signing key file (mode 0600).
//!
//! Layout: `DIR/ledger.key` (the Go `note` private key string, owner-only) and
//! `DIR/ledger.db/` (sled). A server's data dir keeps the key sealed in its vault
//! instead: it creates and opens the log with a signer it brings
//! ([`DataDir::create_with_signer`], [`DataDir::open_log_with_signer`]) and publishes
//! the verifier key in `ledger.pub`.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::LogSigner;
use crate::error::LedgerError;
use crate::log::{Clock, Log, Retention, SystemClock};
use crate::store::SledStore;

/// How long `store` waits for a lock that is being released.
const LOCK_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// File name of the signing key inside a data dir.
pub const KEY_FILE: &str = "ledger.key";
/// Directory name of the sled database inside a data dir.
pub const DB_DIR: &str = "ledger.db";
/// File name of the verifier key string (public) of a log whose signing key is kept
/// elsewhere (a server's vault).
pub const PUBLIC_KEY_FILE: &str = "ledger.pub";

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

    /// Whether anything of a ledger (its key or its database) is here.
    pub fn exists(&self) -> bool {
        self.key_path().exists() || self.db_path().exists()
    }

    /// Creates the directory (mode 0700), a new signing key for `origin` and the
    /// database stamped with that key. Refuses a dir that already holds either.
    ///
    /// The database is created first and the key file written last (under a
    /// temporary name, then renamed), so a crash leaves a database without a key,
    /// which `open_log` refuses by name, never a key that could start a second log.
    /// Returns the new log's verifier key string.
    pub fn init(&self, origin: &str) -> Result<String, LedgerError> {
        let signer = LogSigner::generate(origin)?;
        let text = signer.to_signer_key_string();
        let verifier_key = self.create_store(signer)?;
        let path = self.key_path();
        let staging = self.root.join(format!(".{KEY_FILE}.new"));
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)
            .map_err(|error| LedgerError::io(&staging, error))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&staging, &path))
            .map_err(|error| LedgerError::io(&path, error))?;
        Ok(verifier_key)
    }

    /// Creates the directory (mode 0700) and the database stamped with `signer`'s
    /// key; refuses a dir that already holds a ledger. Returns the verifier key.
    fn create_store(&self, signer: LogSigner) -> Result<String, LedgerError> {
        if self.exists() {
            return Err(LedgerError::io(
                &self.root,
                std::io::Error::new(std::io::ErrorKind::AlreadyExists, "already holds a ledger"),
            ));
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.root)
            .map_err(|error| LedgerError::io(&self.root, error))?;
        let verifier_key = signer.verifier_key();
        let store = Arc::new(self.store()?);
        drop(Log::create(
            store,
            signer,
            Arc::new(SystemClock),
            Retention::default(),
        )?);
        Ok(verifier_key)
    }

    /// Creates the directory (mode 0700) and a database stamped with `signer`'s key,
    /// writing no key file: the caller keeps the signing key (sealed in a vault) and
    /// gets the verifier key string, also written to `ledger.pub`. Refuses a dir that
    /// already holds a ledger.
    pub fn create_with_signer(&self, signer: LogSigner) -> Result<String, LedgerError> {
        let verifier_key = self.create_store(signer)?;
        let path = self.root.join(PUBLIC_KEY_FILE);
        fs::write(&path, format!("{verifier_key}\n"))
            .map_err(|error| LedgerError::io(&path, error))?;
        Ok(verifier_key)
    }

    /// The verifier key string: from the signing key file when there is one, else
    /// from `ledger.pub`.
    pub fn verifier_key(&self) -> Result<String, LedgerError> {
        if self.key_path().exists() {
            return Ok(self.signer()?.verifier_key());
        }
        let path = self.root.join(PUBLIC_KEY_FILE);
        let text =
            crate::files::read_bounded(&path, 4096).map_err(|error| LedgerError::KeyFile {
                path: path.display().to_string(),
                reason: error.to_string(),
            })?;
        let text = String::from_utf8(text).map_err(|_| LedgerError::KeyFile {
            path: path.display().to_string(),
            reason: "is not UTF-8".into(),
        })?;
        Ok(text.trim_end().to_owned())
    }

    /// Opens the log with a signer the caller brings (no key file is read).
    pub fn open_log_with_signer(
        &self,
        signer: LogSigner,
        retention: Retention,
        clock: Arc<dyn Clock>,
    ) -> Result<Log<SledStore>, LedgerError> {
        if !self.db_path().is_dir() {
            return Err(LedgerError::NoLedger {
                path: self.root.display().to_string(),
            });
        }
        let store = Arc::new(self.store()?);
        Log::open(store, signer, clock, retention)
    }

    /// Reads the signing key, refusing a key file others can read.
    pub fn signer(&self) -> Result<LogSigner, LedgerError> {
        let path = self.key_path();
        let key_file = |reason: String| LedgerError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let metadata = fs::metadata(&path).map_err(|error| match error.kind() {
            std::io::ErrorKind::NotFound => {
                key_file("is missing; the log cannot be signed or opened without it".into())
            }
            _ => key_file(error.to_string()),
        })?;
        let mode = metadata.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(LedgerError::KeyFilePermissions {
                path: path.display().to_string(),
                mode,
            });
        }
        let text = zeroize::Zeroizing::new(
            fs::read_to_string(&path).map_err(|error| key_file(error.to_string()))?,
        );
        LogSigner::from_signer_key_string(text.trim_end())
            .map_err(|error| key_file(error.to_string()))
    }

    /// Opens the sled store, naming the data dir when another process holds it.
    ///
    /// sled releases its file lock from a background thread after the last handle
    /// is dropped, so a store closed a moment ago in this same process (by `init`,
    /// for example) can still look busy: the lock is retried for a short while
    /// before the dir is reported as in use.
    pub fn store(&self) -> Result<SledStore, LedgerError> {
        let path = self.db_path();
        let deadline = std::time::Instant::now() + LOCK_RETRY_FOR;
        loop {
            match SledStore::open(&path) {
                Err(LedgerError::Storage(sled::Error::Io(io)))
                    if io.kind() == std::io::ErrorKind::WouldBlock
                        || io.to_string().contains("lock") =>
                {
                    if std::time::Instant::now() >= deadline {
                        return Err(LedgerError::DataDirBusy {
                            path: self.root.display().to_string(),
                        });
                    }
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other,
            }
        }
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
        if !self.db_path().is_dir() {
            return Err(LedgerError::corrupt(format!(
                "`{}` is missing; refusing to start a new log under the existing key (that would fork the log)",
                self.db_path().display()
            )));
        }
        let store = Arc::new(self.store()?);
        Log::open(store, signer, clock, retention)
    }
}
