//! Where sealed secrets live: the `SecretStore` trait and its sled implementation.
//! The store holds envelopes only; it never sees a key or a plaintext.
//!
//! sled layout, in one tree (so one transaction covers a version and its counter):
//! - `l` workspace `\0` name → the last version number ever given (u32 BE); a
//!   number is never given twice, even after its version is destroyed;
//! - `v` workspace `\0` name `\0` version (u32 BE) → a record:
//!   `1 | created_unix_ms u64 | envelope` (live) or
//!   `2 | created_unix_ms u64 | destroyed_unix_ms u64` (crypto-shredded: the
//!   envelope, and with it the wrapped data key, is gone).

use std::collections::BTreeMap;

use sled::transaction::{ConflictableTransactionError, TransactionError};

use crate::envelope;
use crate::error::VaultError;
use crate::ids::{KekVersion, SecretName, SecretVersion, Workspace};

/// One secret version's address.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretId {
    pub workspace: Workspace,
    pub name: SecretName,
    pub version: SecretVersion,
}

/// A stored version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredVersion {
    Live {
        created_unix_ms: u64,
        envelope: Vec<u8>,
    },
    Destroyed {
        created_unix_ms: u64,
        destroyed_unix_ms: u64,
    },
}

/// What a listing says of one version: never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionInfo {
    pub version: SecretVersion,
    pub created_unix_ms: u64,
    /// `None` once destroyed.
    pub kek: Option<KekVersion>,
    pub destroyed_unix_ms: Option<u64>,
}

/// A sealer of one new version: given the version number the store assigns, it
/// returns the envelope (which binds that number).
pub type SealVersion<'a> = &'a dyn Fn(SecretVersion) -> Result<Vec<u8>, VaultError>;

/// Storage of envelopes, keyed by workspace, name and version.
pub trait SecretStore: Send + Sync {
    /// Assigns the next version of `name` and stores what `seal` makes for it, in
    /// one atomic step.
    fn put_new_version(
        &self,
        workspace: &Workspace,
        name: &SecretName,
        created_unix_ms: u64,
        seal: SealVersion<'_>,
    ) -> Result<SecretVersion, VaultError>;

    /// Takes the next version number of `name` for a write that follows
    /// (`insert_version`); a number is never given twice, so a reservation that is
    /// never used leaves a gap and nothing else.
    fn reserve_version(
        &self,
        workspace: &Workspace,
        name: &SecretName,
    ) -> Result<SecretVersion, VaultError>;

    /// Stores the envelope of a reserved version; refused if the version exists.
    fn insert_version(
        &self,
        id: &SecretId,
        created_unix_ms: u64,
        envelope: &[u8],
    ) -> Result<(), VaultError>;

    fn get(&self, id: &SecretId) -> Result<Option<StoredVersion>, VaultError>;

    /// The newest version that is not destroyed.
    fn latest_live(
        &self,
        workspace: &Workspace,
        name: &SecretName,
    ) -> Result<Option<(SecretVersion, Vec<u8>)>, VaultError>;

    /// Every secret of a workspace with its versions, by name.
    fn list(
        &self,
        workspace: &Workspace,
    ) -> Result<BTreeMap<SecretName, Vec<VersionInfo>>, VaultError>;

    /// Crypto-shreds one version: its envelope is replaced by a tombstone.
    fn destroy(&self, id: &SecretId, destroyed_unix_ms: u64) -> Result<(), VaultError>;

    /// Live versions in key order after `after`, at most `limit`.
    fn scan_live(
        &self,
        after: Option<&SecretId>,
        limit: usize,
    ) -> Result<Vec<(SecretId, Vec<u8>)>, VaultError>;

    /// Replaces a live envelope if it still equals `old` (a concurrent destroy or
    /// rewrap wins); `false` when it did not.
    fn replace_envelope(&self, id: &SecretId, old: &[u8], new: &[u8]) -> Result<bool, VaultError>;

    /// Makes every write so far durable.
    fn flush(&self) -> Result<(), VaultError>;

    /// How many live data keys each KEK version wraps.
    fn wrapped_by_version(&self) -> Result<BTreeMap<KekVersion, u64>, VaultError> {
        let mut counts = BTreeMap::new();
        let mut after: Option<SecretId> = None;
        loop {
            let page = self.scan_live(after.as_ref(), 4096)?;
            let Some((last, _)) = page.last() else { break };
            after = Some(last.clone());
            for (_, envelope) in &page {
                *counts.entry(envelope::kek_version(envelope)?).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

const LIVE: u8 = 1;
const DESTROYED: u8 = 2;

fn counter_key(workspace: &Workspace, name: &SecretName) -> Vec<u8> {
    let mut key = Vec::with_capacity(2 + workspace.as_str().len() + name.as_str().len());
    key.push(b'l');
    key.extend_from_slice(workspace.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(name.as_str().as_bytes());
    key
}

fn name_prefix(workspace: &Workspace, name: &SecretName) -> Vec<u8> {
    let mut key = Vec::with_capacity(3 + workspace.as_str().len() + name.as_str().len() + 4);
    key.push(b'v');
    key.extend_from_slice(workspace.as_str().as_bytes());
    key.push(0);
    key.extend_from_slice(name.as_str().as_bytes());
    key.push(0);
    key
}

fn version_key(workspace: &Workspace, name: &SecretName, version: SecretVersion) -> Vec<u8> {
    let mut key = name_prefix(workspace, name);
    key.extend_from_slice(&version.get().to_be_bytes());
    key
}

fn parse_version_key(key: &[u8]) -> Result<SecretId, VaultError> {
    let bad = || VaultError::RecordMalformed("bad key");
    let rest = key.strip_prefix(b"v").ok_or_else(bad)?;
    let split = rest.len().checked_sub(4).ok_or_else(bad)?;
    let (path, version) = rest.split_at(split);
    let version = SecretVersion::new(u32::from_be_bytes(version.try_into().map_err(|_| bad())?))?;
    let path = path.strip_suffix(&[0]).ok_or_else(bad)?;
    let text = std::str::from_utf8(path).map_err(|_| bad())?;
    let (workspace, name) = text.split_once('\0').ok_or_else(bad)?;
    Ok(SecretId {
        workspace: Workspace::new(workspace)?,
        name: SecretName::new(name)?,
        version,
    })
}

/// The version after the stored counter (none stored: 1).
fn next_version(counter: Option<&[u8]>, name: &SecretName) -> Result<SecretVersion, VaultError> {
    let last = match counter {
        Some(bytes) => {
            let bytes: [u8; 4] = bytes
                .try_into()
                .map_err(|_| VaultError::RecordMalformed("bad version counter"))?;
            u32::from_be_bytes(bytes)
        }
        None => 0,
    };
    last.checked_add(1)
        .and_then(|next| SecretVersion::new(next).ok())
        .ok_or_else(|| VaultError::VersionsExhausted(name.to_string()))
}

fn encode_live(created_unix_ms: u64, envelope: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(9 + envelope.len());
    value.push(LIVE);
    value.extend_from_slice(&created_unix_ms.to_be_bytes());
    value.extend_from_slice(envelope);
    value
}

fn decode(value: &[u8]) -> Result<StoredVersion, VaultError> {
    let u64_at = |at: usize| -> Result<u64, VaultError> {
        let bytes = value
            .get(at..at + 8)
            .ok_or(VaultError::RecordMalformed("truncated"))?;
        Ok(u64::from_be_bytes(
            bytes
                .try_into()
                .map_err(|_| VaultError::RecordMalformed("truncated"))?,
        ))
    };
    match value.first() {
        Some(&LIVE) => Ok(StoredVersion::Live {
            created_unix_ms: u64_at(1)?,
            envelope: value.get(9..).unwrap_or_default().to_vec(),
        }),
        Some(&DESTROYED) if value.len() == 17 => Ok(StoredVersion::Destroyed {
            created_unix_ms: u64_at(1)?,
            destroyed_unix_ms: u64_at(9)?,
        }),
        _ => Err(VaultError::RecordMalformed("unknown record")),
    }
}

fn transaction_error(error: TransactionError<VaultError>) -> VaultError {
    match error {
        TransactionError::Abort(error) => error,
        TransactionError::Storage(error) => VaultError::Storage(error),
    }
}

/// The sled implementation: one tree of the server's state database.
#[derive(Debug, Clone)]
pub struct SledSecretStore {
    tree: sled::Tree,
}

impl SledSecretStore {
    pub fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }
}

impl SecretStore for SledSecretStore {
    fn put_new_version(
        &self,
        workspace: &Workspace,
        name: &SecretName,
        created_unix_ms: u64,
        seal: SealVersion<'_>,
    ) -> Result<SecretVersion, VaultError> {
        let counter = counter_key(workspace, name);
        self.tree
            .transaction(|tx| {
                let next = next_version(tx.get(&counter)?.as_deref(), name)
                    .map_err(ConflictableTransactionError::Abort)?;
                let envelope = seal(next).map_err(ConflictableTransactionError::Abort)?;
                tx.insert(counter.as_slice(), &next.get().to_be_bytes())?;
                tx.insert(
                    version_key(workspace, name, next),
                    encode_live(created_unix_ms, &envelope),
                )?;
                Ok(next)
            })
            .map_err(transaction_error)
    }

    fn reserve_version(
        &self,
        workspace: &Workspace,
        name: &SecretName,
    ) -> Result<SecretVersion, VaultError> {
        let counter = counter_key(workspace, name);
        self.tree
            .transaction(|tx| {
                let next = next_version(tx.get(&counter)?.as_deref(), name)
                    .map_err(ConflictableTransactionError::Abort)?;
                tx.insert(counter.as_slice(), &next.get().to_be_bytes())?;
                Ok(next)
            })
            .map_err(transaction_error)
    }

    fn insert_version(
        &self,
        id: &SecretId,
        created_unix_ms: u64,
        envelope: &[u8],
    ) -> Result<(), VaultError> {
        let key = version_key(&id.workspace, &id.name, id.version);
        let inserted = self.tree.compare_and_swap(
            key,
            None::<&[u8]>,
            Some(encode_live(created_unix_ms, envelope)),
        )?;
        inserted.map_err(|_| VaultError::RecordMalformed("the version is already stored"))
    }

    fn get(&self, id: &SecretId) -> Result<Option<StoredVersion>, VaultError> {
        self.tree
            .get(version_key(&id.workspace, &id.name, id.version))?
            .map(|value| decode(&value))
            .transpose()
    }

    fn latest_live(
        &self,
        workspace: &Workspace,
        name: &SecretName,
    ) -> Result<Option<(SecretVersion, Vec<u8>)>, VaultError> {
        for item in self.tree.scan_prefix(name_prefix(workspace, name)).rev() {
            let (key, value) = item?;
            if let StoredVersion::Live { envelope, .. } = decode(&value)? {
                return Ok(Some((parse_version_key(&key)?.version, envelope)));
            }
        }
        Ok(None)
    }

    fn list(
        &self,
        workspace: &Workspace,
    ) -> Result<BTreeMap<SecretName, Vec<VersionInfo>>, VaultError> {
        let mut prefix = vec![b'v'];
        prefix.extend_from_slice(workspace.as_str().as_bytes());
        prefix.push(0);
        let mut out: BTreeMap<SecretName, Vec<VersionInfo>> = BTreeMap::new();
        for item in self.tree.scan_prefix(prefix) {
            let (key, value) = item?;
            let id = parse_version_key(&key)?;
            let info = match decode(&value)? {
                StoredVersion::Live {
                    created_unix_ms,
                    envelope,
                } => VersionInfo {
                    version: id.version,
                    created_unix_ms,
                    kek: Some(envelope::kek_version(&envelope)?),
                    destroyed_unix_ms: None,
                },
                StoredVersion::Destroyed {
                    created_unix_ms,
                    destroyed_unix_ms,
                } => VersionInfo {
                    version: id.version,
                    created_unix_ms,
                    kek: None,
                    destroyed_unix_ms: Some(destroyed_unix_ms),
                },
            };
            out.entry(id.name).or_default().push(info);
        }
        Ok(out)
    }

    fn destroy(&self, id: &SecretId, destroyed_unix_ms: u64) -> Result<(), VaultError> {
        let key = version_key(&id.workspace, &id.name, id.version);
        self.tree
            .transaction(|tx| {
                let Some(value) = tx.get(&key)? else {
                    return Err(ConflictableTransactionError::Abort(
                        VaultError::NoSuchVersion {
                            name: id.name.to_string(),
                            version: id.version.get(),
                        },
                    ));
                };
                match decode(&value).map_err(ConflictableTransactionError::Abort)? {
                    StoredVersion::Live {
                        created_unix_ms, ..
                    } => {
                        let mut tombstone = Vec::with_capacity(17);
                        tombstone.push(DESTROYED);
                        tombstone.extend_from_slice(&created_unix_ms.to_be_bytes());
                        tombstone.extend_from_slice(&destroyed_unix_ms.to_be_bytes());
                        tx.insert(key.as_slice(), tombstone)?;
                        Ok(())
                    }
                    StoredVersion::Destroyed { .. } => {
                        Err(ConflictableTransactionError::Abort(VaultError::Destroyed {
                            name: id.name.to_string(),
                            version: id.version.get(),
                        }))
                    }
                }
            })
            .map_err(transaction_error)
    }

    fn scan_live(
        &self,
        after: Option<&SecretId>,
        limit: usize,
    ) -> Result<Vec<(SecretId, Vec<u8>)>, VaultError> {
        let start = match after {
            Some(id) => {
                let mut key = version_key(&id.workspace, &id.name, id.version);
                key.push(0);
                key
            }
            None => vec![b'v'],
        };
        let mut out = Vec::new();
        for item in self.tree.range(start..) {
            let (key, value) = item?;
            if key.first() != Some(&b'v') {
                break;
            }
            if let StoredVersion::Live { envelope, .. } = decode(&value)? {
                out.push((parse_version_key(&key)?, envelope));
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    fn replace_envelope(&self, id: &SecretId, old: &[u8], new: &[u8]) -> Result<bool, VaultError> {
        let key = version_key(&id.workspace, &id.name, id.version);
        let Some(current) = self.tree.get(&key)? else {
            return Ok(false);
        };
        let StoredVersion::Live {
            created_unix_ms,
            envelope,
        } = decode(&current)?
        else {
            return Ok(false);
        };
        if envelope != old {
            return Ok(false);
        }
        let swapped = self.tree.compare_and_swap(
            key,
            Some(current),
            Some(encode_live(created_unix_ms, new)),
        )?;
        Ok(swapped.is_ok())
    }

    fn flush(&self) -> Result<(), VaultError> {
        self.tree.flush()?;
        Ok(())
    }
}
