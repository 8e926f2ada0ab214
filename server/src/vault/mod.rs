//! The vault at run time: the key ring (unsealed in memory, or not at all), the
//! sealed ring on disk, the secret store and the leases. The HTTP handlers are in
//! `api.rs` (operators: seal, unseal, rotate, rewrap, retire, sealer, leases) and
//! `secrets.rs` (secrets: put, list, delete, reveal).
//!
//! Ring changes follow one pattern: under `change_lock`, build the new ring and its
//! sealed form aside, record the ledger entry, then write the file and swap the ring
//! in memory. A failed record changes nothing; readers never see a half change.

pub mod api;
pub mod files;
pub mod leases;
pub mod secrets;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use arc_swap::ArcSwapOption;
use rand::rngs::OsRng;
use serde::Serialize;
use writ_vault::{
    Key, KeyRing, SealedRing, Sealer, ShareCollector, SledSecretStore, UnsealProgress, VaultError,
};

use self::leases::LeaseStore;

/// Where an unseal by shares stands, as the API reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShareStep {
    Pending { have: u8, need: u8 },
    Unsealed,
}

/// What a finished (or running) rewrap did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RewrapStatus {
    pub running: bool,
    pub target_kek: Option<u32>,
    pub scanned: u64,
    pub rewrapped: u64,
    pub raced: u64,
    /// Secret versions that did not open (name and version only).
    pub failed: Vec<String>,
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
        })
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

    pub fn sealer_name(&self) -> &'static str {
        self.inner().sealed.sealer().name()
    }

    /// What `GET /v1/vault/status` says: never a key.
    pub fn status(&self) -> serde_json::Value {
        let inner = self.inner();
        let sealer = match inner.sealed.sealer() {
            Sealer::Passphrase { .. } => "passphrase",
            Sealer::KeyFile { .. } => "key_file",
            Sealer::Shares { .. } => "shares",
        };
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

    /// Takes one share; on the last one the ring opens (in memory only: the
    /// caller records `vault.unsealed`).
    pub fn add_share(&self, share: &str, giver: &str) -> Result<ShareStep, VaultError> {
        if !self.is_sealed() {
            return Ok(ShareStep::Unsealed);
        }
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
                inner.shares = None;
                inner.root = Some(root);
                self.ring.store(Some(Arc::new(*ring)));
                Ok(ShareStep::Unsealed)
            }
            Err(error @ VaultError::SharesDoNotOpen) => {
                share_givers.clear();
                Err(error)
            }
            Err(error) => Err(error),
        }
    }

    /// Who gave the shares of the last unseal (taken once).
    pub fn take_share_givers(&self) -> Vec<String> {
        std::mem::take(&mut self.inner().share_givers)
    }

    /// Opens the ring with a passphrase (Argon2id: call from a blocking thread).
    pub fn unseal_with_passphrase(&self, passphrase: &[u8], giver: &str) -> Result<(), VaultError> {
        let sealed = self.inner().sealed.clone();
        let (ring, root) = sealed.open_with_passphrase(passphrase)?;
        self.install(ring, root, giver);
        Ok(())
    }

    /// Opens the ring with the server's key file again (after a seal).
    pub fn unseal_with_key_file(&self, giver: &str) -> anyhow::Result<()> {
        let sealed = self.inner().sealed.clone();
        let source = files::UnsealSource::KeyFile(self.key_file.clone());
        let (ring, root) = files::unseal_with(&sealed, &source)?;
        self.install(ring, root, giver);
        Ok(())
    }

    /// Puts an opened ring in place; `giver` opened it.
    fn install(&self, ring: KeyRing, root: Key, giver: &str) {
        let mut inner = self.inner();
        inner.root = Some(root);
        inner.shares = None;
        inner.share_givers = vec![giver.to_owned()];
        self.ring.store(Some(Arc::new(ring)));
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
            let key_file = files::key_file_path(&self.data_dir);
            if key_file.exists() {
                std::fs::remove_file(&key_file).map_err(|error| {
                    anyhow::anyhow!("cannot remove `{}`: {error}", key_file.display())
                })?;
            }
        }
        Ok(())
    }
}
