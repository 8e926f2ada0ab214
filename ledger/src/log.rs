//! The single-writer core of the ledger: append a batch, sign one checkpoint,
//! commit it atomically, and answer with receipts. Opening runs the recovery check.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::checkpoint::{Checkpoint, LogSigner};
use crate::entry::{check_entry, PreparedEntry};
use crate::error::LedgerError;
use crate::hash::{leaf_hash, Hash};
use crate::receipt::Receipt;
use crate::store::{CommitBatch, LedgerStore, StoredCheckpoint, STORE_FORMAT};
use crate::tiles::{
    build_fat_tile, tile_root, PendingTiles, RangeHashes, TileId, TreeEdge, TILE_HEIGHT, TILE_WIDTH,
};
use crate::types::{LeafIndex, TreeSize};

/// Where the ledger gets the time from (tests inject a fixed or stepping clock).
pub trait Clock: Send + Sync {
    fn now(&self) -> SystemTime;
}

/// The system's wall clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

/// How long signed checkpoints are kept (the latest is always kept).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Every checkpoint younger than this is kept (default one hour).
    pub keep_all_for: Duration,
    /// Older than that, the last checkpoint of every such interval is kept
    /// (default one minute).
    pub keep_one_per: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            keep_all_for: Duration::from_secs(3600),
            keep_one_per: Duration::from_secs(60),
        }
    }
}

/// The last millisecond an RFC 3339 time can name (9999-12-31T23:59:59.999Z).
const MAX_UNIX_MILLIS: u64 = 253_402_300_799_999;

/// How often the writer looks for checkpoints to prune.
const PRUNE_EVERY: Duration = Duration::from_secs(1);

/// The ledger's writer state over a store. One per data dir, owned by one thread.
pub struct Log<S: LedgerStore> {
    store: Arc<S>,
    signer: LogSigner,
    edge: TreeEdge,
    clock: Arc<dyn Clock>,
    last_millis: u64,
    retention: Retention,
    prune_cursor: TreeSize,
    last_prune_millis: u64,
    /// Set when a commit failed: the in-memory tree is ahead of the store, so
    /// nothing more may be appended until the data dir is opened again.
    poisoned: bool,
}

impl<S: LedgerStore> std::fmt::Debug for Log<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log")
            .field("origin", &self.signer.origin())
            .field("size", &self.edge.size())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|since| u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl<S: LedgerStore> Log<S> {
    /// Starts a new log in an empty store: stamps it with the format and the
    /// signer's verifier key, then opens it. A store holding anything is refused,
    /// so a key can never start a second history over a damaged one.
    pub fn create(
        store: Arc<S>,
        signer: LogSigner,
        clock: Arc<dyn Clock>,
        retention: Retention,
    ) -> Result<Self, LedgerError> {
        if !store.is_empty()? {
            return Err(LedgerError::corrupt(
                "the store is not empty; a new log starts only in an empty store",
            ));
        }
        store.set_meta(&[
            ("format", STORE_FORMAT.as_bytes()),
            ("verifier_key", signer.verifier_key().as_bytes()),
        ])?;
        Self::open(store, signer, clock, retention)
    }

    /// Opens the log in `store`, checking it against its last signed checkpoint.
    ///
    /// The store must have been created by [`Log::create`] with the same key; its
    /// stored hashes and last checkpoint must agree with the stored entries, or it
    /// is refused with a message naming what is wrong. Nothing is written or
    /// repaired before the checks pass. Entries past the committed size are refused
    /// too: a batch is one atomic write, so a crash cannot leave part of one, and
    /// such entries can only come from damage.
    pub fn open(
        store: Arc<S>,
        signer: LogSigner,
        clock: Arc<dyn Clock>,
        retention: Retention,
    ) -> Result<Self, LedgerError> {
        let key = signer.verifier_key();
        match (store.meta("format")?, store.meta("verifier_key")?) {
            (Some(format), Some(stored_key)) => {
                if format != STORE_FORMAT.as_bytes() {
                    return Err(LedgerError::corrupt(format!(
                        "store format is `{}`, expected `{STORE_FORMAT}`",
                        String::from_utf8_lossy(&format)
                    )));
                }
                if stored_key != key.as_bytes() {
                    return Err(LedgerError::corrupt(format!(
                        "the signing key is `{key}` but the log was written by `{}`",
                        String::from_utf8_lossy(&stored_key)
                    )));
                }
            }
            _ => {
                return Err(LedgerError::corrupt(
                    "metadata (format or verifier key) is missing: this is not a ledger store, or it was damaged",
                ))
            }
        }
        if store.meta("size")?.is_none() && store.entries_from(LeafIndex(0)).next().is_some() {
            return Err(LedgerError::corrupt(
                "the committed size is missing but entries are stored",
            ));
        }
        let size = store.size()?;
        if let Some(stray) = store.entries_from(LeafIndex(size.0)).next() {
            let (index, _) = stray?;
            return Err(LedgerError::corrupt(format!(
                "entry {index} is stored past the committed size {size}"
            )));
        }
        let edge = rebuild_edge(store.as_ref(), size)?;
        check_last_full_tiles(store.as_ref(), size)?;
        let latest = store.latest_checkpoint()?;
        let last_millis = check_latest_checkpoint(store.as_ref(), &edge, &signer, latest.as_ref())?;
        Ok(Self {
            store,
            signer,
            edge,
            clock,
            last_millis,
            retention,
            prune_cursor: TreeSize(0),
            last_prune_millis: 0,
            poisoned: false,
        })
    }

    /// The committed size.
    pub fn size(&self) -> TreeSize {
        self.edge.size()
    }

    /// The store (for reads such as export).
    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    /// The verifier key string of this log.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The root at any committed size.
    pub fn root_at(&self, size: TreeSize) -> Result<Hash, LedgerError> {
        self.edge.root_at(size, self.store.as_ref())
    }

    /// The inclusion proof of `index` in the tree of `size`.
    pub fn inclusion_proof(
        &self,
        index: LeafIndex,
        size: TreeSize,
    ) -> Result<Vec<Hash>, LedgerError> {
        self.edge.inclusion_proof(index, size, self.store.as_ref())
    }

    /// The consistency proof from `old` to `new`.
    pub fn consistency_proof(
        &self,
        old: TreeSize,
        new: TreeSize,
    ) -> Result<Vec<Hash>, LedgerError> {
        self.edge.consistency_proof(old, new, self.store.as_ref())
    }

    /// The bottom rows of the edge tiles (the partial hash tiles of the current size).
    pub fn edge(&self) -> &TreeEdge {
        &self.edge
    }

    /// Appends `entries` as one batch: one atomic, flushed write and one signed
    /// checkpoint. Returns one receipt per entry, in order, only once durable.
    pub fn append_batch(&mut self, entries: &[PreparedEntry]) -> Result<Vec<Receipt>, LedgerError> {
        if self.poisoned {
            return Err(LedgerError::WriterStopped);
        }
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let now = unix_millis(self.clock.now()).max(self.last_millis);
        if now > MAX_UNIX_MILLIS {
            return Err(LedgerError::CommitFailed {
                reason: "the clock is past the year 9999".into(),
            });
        }
        let time = UNIX_EPOCH + Duration::from_millis(now);
        let start = self.edge.size();
        // From here the edge is ahead of the store until the commit succeeds.
        self.poisoned = true;
        let mut batch = CommitBatch {
            entries: Vec::with_capacity(entries.len()),
            ..CommitBatch::default()
        };
        for (offset, entry) in (0u64..).zip(entries) {
            let index = LeafIndex(start.0 + offset);
            let bytes = entry.encode(index, time);
            self.edge.push(leaf_hash(&bytes), &mut batch.tiles);
            batch.entries.push((index, bytes));
        }
        let size = self.edge.size();
        let pending = PendingTiles {
            pending: &batch.tiles,
            store: self.store.as_ref(),
        };
        let root = self.edge.root_at(size, &pending)?;
        let note = self.signer.sign(&Checkpoint {
            origin: self.signer.origin().to_owned(),
            size,
            root,
        })?;
        batch.checkpoint = Some(StoredCheckpoint {
            size,
            unix_millis: now,
            note: note.clone(),
        });
        batch.new_size = size;
        self.store
            .commit(batch)
            .map_err(|error| LedgerError::CommitFailed {
                reason: error.to_string(),
            })?;
        self.poisoned = false;
        self.last_millis = now;
        let mut memo = RangeHashes::default();
        let receipts = (start.0..size.0)
            .map(|index| {
                let index = LeafIndex(index);
                Ok(Receipt {
                    index,
                    proof: self.edge.inclusion_proof_memo(
                        index,
                        size,
                        self.store.as_ref(),
                        &mut memo,
                    )?,
                    checkpoint: note.clone(),
                    extra: None,
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        if now.saturating_sub(self.last_prune_millis) >= PRUNE_EVERY.as_millis() as u64 {
            self.last_prune_millis = now;
            if let Err(error) = self.prune_checkpoints(now) {
                tracing::warn!(%error, "checkpoint pruning failed; will retry");
            }
        }
        Ok(receipts)
    }

    /// Drops checkpoints older than the keep-all window, keeping the last one of
    /// each `keep_one_per` interval, and always the latest.
    fn prune_checkpoints(&mut self, now: u64) -> Result<(), LedgerError> {
        let cutoff = now.saturating_sub(self.retention.keep_all_for.as_millis() as u64);
        let interval = (self.retention.keep_one_per.as_millis() as u64).max(1);
        let latest = self.edge.size();
        let mut remove = Vec::new();
        let mut previous: Option<(TreeSize, u64)> = None;
        for checkpoint in self.store.checkpoints_from(self.prune_cursor) {
            let checkpoint = checkpoint?;
            if checkpoint.unix_millis >= cutoff || checkpoint.size >= latest {
                break;
            }
            let bucket = checkpoint.unix_millis / interval;
            if let Some((size, previous_bucket)) = previous {
                if previous_bucket == bucket {
                    remove.push(size);
                }
            }
            previous = Some((checkpoint.size, bucket));
        }
        if let Some((size, _)) = previous {
            // The last one scanned may still share its interval with a later one.
            self.prune_cursor = size;
        }
        if !remove.is_empty() {
            self.store.remove_checkpoints(&remove)?;
        }
        Ok(())
    }
}

/// Rebuilds the edge from the tail entries (re-hashed) and the stored tiles.
fn rebuild_edge<S: LedgerStore>(store: &S, size: TreeSize) -> Result<TreeEdge, LedgerError> {
    let tail_start = size.0 - size.0 % TILE_WIDTH as u64;
    let mut tail = Vec::with_capacity(TILE_WIDTH);
    for index in tail_start..size.0 {
        let entry = stored_entry(store, LeafIndex(index))?;
        tail.push(leaf_hash(&entry));
    }
    if size.0 > 0 {
        stored_entry(store, LeafIndex(size.0 - 1))?;
    }
    TreeEdge::rebuild(size, &tail, store)
}

fn stored_entry<S: LedgerStore>(store: &S, index: LeafIndex) -> Result<Vec<u8>, LedgerError> {
    let entry = store
        .entry(index)?
        .ok_or_else(|| LedgerError::corrupt(format!("entry {index} is missing")))?;
    check_entry(&entry, index)
        .map_err(|error| LedgerError::corrupt(format!("entry {index}: {error}")))?;
    Ok(entry)
}

/// Re-derives the last full tile of every level from the level below (entries for
/// level 0) and compares it with the stored tile.
fn check_last_full_tiles<S: LedgerStore>(store: &S, size: TreeSize) -> Result<(), LedgerError> {
    for level in 0u8..8 {
        let nodes = size.0 >> (u32::from(level) * TILE_HEIGHT);
        let full = nodes / TILE_WIDTH as u64;
        if full == 0 {
            break;
        }
        let index = full - 1;
        let first = index * TILE_WIDTH as u64;
        let bottom = (first..first + TILE_WIDTH as u64)
            .map(|node| {
                if level == 0 {
                    stored_entry(store, LeafIndex(node)).map(|entry| leaf_hash(&entry))
                } else {
                    tile_root(store, level - 1, node)
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let expected = build_fat_tile(&bottom)
            .ok_or_else(|| LedgerError::corrupt("could not rebuild a tile"))?;
        let id = TileId { level, index };
        for row in 0..TILE_HEIGHT {
            for position in 0..(TILE_WIDTH >> row) {
                let stored = store.tile_hash(id, row, position)?;
                let rebuilt = crate::tiles::fat_tile_hash(&expected, row, position);
                if stored.is_none() || stored != rebuilt {
                    return Err(LedgerError::corrupt(format!(
                        "stored tile {level}/{index} does not match the entries under it"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// The latest checkpoint must be for the committed size, signed by our key, and
/// carry the root the stored entries and tiles give. Returns its time.
fn check_latest_checkpoint<S: LedgerStore>(
    store: &S,
    edge: &TreeEdge,
    signer: &LogSigner,
    latest: Option<&StoredCheckpoint>,
) -> Result<u64, LedgerError> {
    let size = edge.size();
    let Some(latest) = latest else {
        return if size.0 == 0 {
            Ok(0)
        } else {
            Err(LedgerError::corrupt(format!(
                "no checkpoint for the {size} stored entries"
            )))
        };
    };
    if latest.unix_millis > MAX_UNIX_MILLIS {
        return Err(LedgerError::corrupt(format!(
            "checkpoint {} is stamped after the year 9999",
            latest.size
        )));
    }
    if latest.size != size {
        return Err(LedgerError::corrupt(format!(
            "the last checkpoint is for size {} but the log holds {size} entries",
            latest.size
        )));
    }
    let verifier = signer.verifier();
    let checkpoint = verifier
        .verify_checkpoint(latest.note.as_bytes())
        .map_err(|error| LedgerError::corrupt(format!("checkpoint {size}: {error}")))?;
    let root = edge.root_at(size, store)?;
    if checkpoint.size != size || checkpoint.root != root {
        return Err(LedgerError::corrupt(format!(
            "checkpoint {size} has root {} but the stored entries give {}",
            checkpoint.root.to_base64(),
            root.to_base64()
        )));
    }
    Ok(latest.unix_millis)
}
