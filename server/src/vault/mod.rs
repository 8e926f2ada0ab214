//! The vault at run time: the key ring (unsealed in memory, or not at all), the
//! sealed ring on disk, the secret store and the leases. The HTTP handlers are in
//! `api.rs` (operators: seal, unseal, rotate, rewrap, retire, sealer, leases) and
//! `secrets.rs` (secrets: put, list, delete, reveal); `unseal_guard.rs` keeps
//! passphrase guessing slow.
//!
//! Ring changes follow one pattern: under `change_lock`, build the new ring and its
//! sealed form aside, record the ledger entry, then write the file and swap the ring
//! in memory. A failed record changes nothing; readers never see a half change.

pub mod api;
pub mod files;
pub mod leases;
pub mod secrets;
pub mod unseal_guard;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwapOption;
use rand::rngs::OsRng;
use serde::Serialize;
use writ_vault::{
    Key, KeyRing, SealedRing, Sealer, ShareCollector, SledSecretStore, UnsealProgress, VaultError,
};

use self::leases::LeaseStore;

/// A ring opened by an unseal, not yet in place: the caller records
/// `vault.unsealed` first (when its ledger is open), then installs it.
#[derive(Debug)]
pub struct OpenedRing {
    ring: KeyRing,
    root: Key,
    /// Who opened it (the principals that gave shares, or the passphrase or key file).
    pub givers: Vec<String>,
    /// Passphrase attempts that failed in a row before this one.
    pub failed_attempts: u32,
}

/// Where an unseal by shares stands.
#[derive(Debug)]
pub enum ShareStep {
    Pending { have: u8, need: u8 },
    Opened(Box<OpenedRing>),
}

/// What a finished (or running) rewrap did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RewrapStatus {
    pub running: bool,
    pub target_kek: Option<u32>,
    pub scanned: u64,
    pub rewrapped: u64,
    pub raced: u64,
    /// How many secret versions did not open (their names go to the log and to
    /// the operator's `vault.rewrap.finished` entry, never to the public status).
    pub failed: u64,
    /// Whether the last rewrap stopped before the end (a seal, a storage error).
    pub stopped_early: bool,
    pub started_unix_ms: Option<u64>,
    pub finished_unix_ms: Option<u64>,
}

#[derive(Debug)]
struct Inner {
    sealed: SealedRing,
    // INVARIANT: `Some` exactly while `Vault::ring` is `Some`.
    root: Option<Key>,
    shares: Option<ShareCollector>,
    /// Who gave the shares collected so far (principals, for the ledger entry).
    share_givers: Vec<String>,
}

/// The running vault.
#[derive(Debug)]
pub struct Vault {
    data_dir: PathBuf,
    /// The key file an operator may ask the server to unseal with again after a
    /// seal (the configured one, else the data dir's `vault.key`).
    key_file: PathBuf,
    ring: ArcSwapOption<KeyRing>,
    inner: Mutex<Inner>,
    /// Held across prepare, record and commit of every ring change.
    pub change_lock: tokio::sync::Mutex<()>,
    pub secrets: SledSecretStore,
    pub leases: LeaseStore,
    pub rewrap: Mutex<RewrapStatus>,
    /// One passphrase attempt at a time, and a wait after repeated failures.
    pub unseal_guard: unseal_guard::UnsealGuard,
}

/// A ring change built aside, not yet in effect.
#[derive(Debug)]
pub struct PreparedChange {
    ring: KeyRing,
    root: Key,
    sealed: SealedRing,
    /// Remove the key file once the new ring is written (its sealer is gone).
    drop_key_file: bool,
}

impl PreparedChange {
    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    pub fn sealed(&self) -> &SealedRing {
        &self.sealed
    }
}

impl Vault {
    /// The vault of a data dir: `unsealed` is the ring opened at start, if any.
    pub fn new(
        data_dir: &Path,
        key_file: Option<&Path>,
        sealed: SealedRing,
        unsealed: Option<(KeyRing, Key)>,
        state_db: &sled::Db,
    ) -> anyhow::Result<Self> {
        let (ring, root) = match unsealed {
            Some((ring, root)) => (Some(Arc::new(ring)), Some(root)),
            None => (None, None),
        };
        Ok(Self {
            data_dir: data_dir.to_path_buf(),
            key_file: key_file.map_or_else(|| files::key_file_path(data_dir), Path::to_path_buf),
            ring: ArcSwapOption::new(ring),
            inner: Mutex::new(Inner {
                sealed,
                root,
                shares: None,
                share_givers: Vec::new(),
            }),
            change_lock: tokio::sync::Mutex::new(()),
            secrets: SledSecretStore::new(state_db.open_tree("secrets")?),
            leases: LeaseStore::new(state_db.open_tree("leases")?),
            rewrap: Mutex::new(RewrapStatus::default()),
            unseal_guard: unseal_guard::UnsealGuard::default(),
        })
    }

    /// The vault, with `base` as the first wait after repeated failed passphrase
    /// unseals (`vault.unseal_backoff_base`).
    pub fn with_unseal_backoff_base(mut self, base: std::time::Duration) -> Self {
        self.unseal_guard = unseal_guard::UnsealGuard::new(base);
        self
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-changed: every
        // mutation is a single assignment. Recover the guard rather than fail.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current ring, `None` while sealed.
    pub fn ring(&self) -> Option<Arc<KeyRing>> {
        self.ring.load_full()
    }

    pub fn is_sealed(&self) -> bool {
        self.ring.load().is_none()
    }

    /// `passphrase`, `key_file` or `shares`.
    pub fn sealer_kind(&self) -> &'static str {
        self.inner().sealed.sealer().kind()
    }

    /// What `GET /v1/vault/status` says: never a key.
    pub fn status(&self) -> serde_json::Value {
        let inner = self.inner();
        let sealer = inner.sealed.sealer().kind();
        let progress = inner.shares.as_ref().map(|c| {
            let (have, need) = c.progress();
            serde_json::json!({"have": have, "need": need})
        });
        let threshold = match inner.sealed.sealer() {
            Sealer::Shares { threshold, shares } => {
                Some(serde_json::json!({"threshold": threshold, "shares": shares}))
            }
            _ => None,
        };
        let ring = self.ring();
        let rewrap = self.rewrap.lock().map(|r| r.clone()).unwrap_or_default();
        serde_json::json!({
            "sealed": ring.is_none(),
            "sealer": sealer,
            "shares": threshold,
            "unseal_progress": progress,
            "ring_id": inner.sealed.ring_id().to_string(),
            "kek_versions": ring.as_ref().map(|r| r.versions().iter().map(|v| serde_json::json!({
                "version": v.version.get(),
                "created_unix_ms": v.created_unix_ms,
                "primary": v.primary,
            })).collect::<Vec<_>>()),
            "min_decrypt_version": ring.as_ref().map(|r| r.min_decrypt().get()),
            "rewrap": rewrap,
        })
    }

    /// Takes one share; on the last one the ring opens (not yet in place).
    pub fn add_share(&self, share: &str, giver: &str) -> Result<ShareStep, VaultError> {
        let mut inner = self.inner();
        let Inner {
            sealed,
            shares,
            share_givers,
            ..
        } = &mut *inner;
        if shares.is_none() {
            *shares = Some(ShareCollector::new(sealed)?);
            share_givers.clear();
        }
        let Some(collector) = shares.as_mut() else {
            return Err(VaultError::Sealed);
        };
        match collector.add(share, sealed) {
            Ok(UnsealProgress::Pending { have, need }) => {
                share_givers.push(giver.to_owned());
                Ok(ShareStep::Pending { have, need })
            }
            Ok(UnsealProgress::Unsealed { ring, root }) => {
                share_givers.push(giver.to_owned());
                let givers = std::mem::take(share_givers);
                *shares = None;
                Ok(ShareStep::Opened(Box::new(OpenedRing {
                    ring: *ring,
                    root,
                    givers,
                    failed_attempts: 0,
                })))
            }
            Err(error @ VaultError::SharesDoNotOpen) => {
                share_givers.clear();
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    /// Opens the ring with a passphrase (Argon2id: call from a blocking thread).
    pub fn open_with_passphrase(
        &self,
        passphrase: &[u8],
        giver: &str,
    ) -> Result<OpenedRing, VaultError> {
        let sealed = self.inner().sealed.clone();
        let (ring, root) = sealed.open_with_passphrase(passphrase)?;
        Ok(OpenedRing {
            ring,
            root,
            givers: vec![giver.to_owned()],
            failed_attempts: 0,
        })
    }

    /// Opens the ring with the server's key file (after a seal).
    pub fn open_with_key_file(&self, giver: &str) -> anyhow::Result<OpenedRing> {
        let sealed = self.inner().sealed.clone();
        let source = files::UnsealSource::KeyFile(self.key_file.clone());
        let (ring, root) = files::unseal_with(&sealed, &source)?;
        Ok(OpenedRing {
            ring,
            root,
            givers: vec![giver.to_owned()],
            failed_attempts: 0,
        })
    }

    /// Puts an opened ring in place: from here the vault is unsealed.
    pub fn install(&self, opened: OpenedRing) {
        let mut inner = self.inner();
        inner.root = Some(opened.root);
        inner.shares = None;
        inner.share_givers.clear();
        self.ring.store(Some(Arc::new(opened.ring)));
    }

    /// Drops every vault key from memory at once: the ring, its root key, and any
    /// shares given toward an unseal.
    pub fn seal(&self) {
        let mut inner = self.inner();
        self.ring.store(None);
        inner.root = None;
        inner.shares = None;
        inner.share_givers.clear();
    }

    /// Builds a changed ring aside: `change` edits a copy of the current ring.
    pub fn prepare(
        &self,
        change: impl FnOnce(&mut KeyRing) -> Result<(), VaultError>,
    ) -> Result<PreparedChange, VaultError> {
        let inner = self.inner();
        let (Some(current), Some(root)) = (self.ring(), inner.root.clone()) else {
            return Err(VaultError::Sealed);
        };
        let mut ring = (*current).clone();
        change(&mut ring)?;
        let sealed = inner.sealed.reseal(&ring, &root, &mut OsRng)?;
        Ok(PreparedChange {
            ring,
            root,
            sealed,
            drop_key_file: false,
        })
    }

    /// The current ring sealed anew under another sealer (new root key).
    pub fn prepare_sealer(&self, sealer: Sealer, root: Key) -> Result<PreparedChange, VaultError> {
        let Some(current) = self.ring() else {
            return Err(VaultError::Sealed);
        };
        let ring = (*current).clone();
        let sealed = SealedRing::seal(&ring, &root, sealer, &mut OsRng)?;
        Ok(PreparedChange {
            ring,
            root,
            sealed,
            drop_key_file: true,
        })
    }

    /// Puts a prepared change into effect: the file first, then memory.
    pub fn commit(&self, change: PreparedChange) -> anyhow::Result<()> {
        files::write_sealed(&self.data_dir, &change.sealed)?;
        let mut inner = self.inner();
        inner.sealed = change.sealed;
        inner.root = Some(change.root);
        self.ring.store(Some(Arc::new(change.ring)));
        drop(inner);
        if change.drop_key_file {
            // The new ring is in force; the old key file opens nothing any more.
            // Failing to remove it must not hide the new sealer's shares from
            // the caller, so it is said in the log only.
            let key_file = files::key_file_path(&self.data_dir);
            if key_file.exists() {
                if let Err(error) = std::fs::remove_file(&key_file) {
                    tracing::warn!(path = %key_file.display(), %error, "cannot remove the old key file; remove it by hand");
                }
            }
        }
        Ok(())
    }
}
