//! Reads of a live store at its latest signed checkpoint: the checkpoint note, the
//! C2SP tlog-tiles hash tiles and entry bundles, and RFC 9162 inclusion and
//! consistency proofs, each proof with the signed note it verifies against.
//!
//! The server's commit thread owns the [`Log`](crate::log::Log); readers share its
//! store and never write. Every read starts from the latest stored checkpoint (size
//! `S`) and touches only what `S` fixes: the entries below `S` and the full tiles
//! stored by the batches up to `S`, from which the partial tiles of `S` are
//! recomputed. Those are written once and never change, so later commits cannot
//! disturb a read. sled applies a commit's batch under its write lock and each
//! single read under the read lock, so once a checkpoint is visible, the entries and
//! tiles of its batch are too; a missing one is reported as damage, not as absent.
//!
//! The bytes are the ones `writ ledger export` writes: export builds its files with
//! [`hash_tile_at`] and [`entry_bundle_at`] too.
//!
//! Work per request is bounded by a tile, never by the log: a full hash tile is 256
//! hashes of one stored fat tile; a partial one is at most 255 re-hashed entries
//! (level 0) or 255 stored tile roots; a proof reads O(log n) nodes, where a node
//! inside a partial tile costs at most that tile's bottom row once per proof.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::num::NonZeroU8;

use crate::checkpoint::{Checkpoint, LogVerifier};
use crate::error::LedgerError;
use crate::hash::{leaf_hash, node_hash, Hash};
use crate::proof::{verify_consistency, verify_inclusion};
use crate::receipt::Receipt;
use crate::store::{LedgerStore, StoredCheckpoint};
use crate::tilepath::{tile_path, TileKind, TileRef};
use crate::tiles::{tile_root, TileId, TILE_HEIGHT, TILE_WIDTH};
use crate::types::{LeafIndex, TreeSize};

/// Why a read was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("the log has no signed checkpoint yet")]
    NoCheckpoint,
    #[error("`{path}` is not a tile of the tree at the latest checkpoint (size {size})")]
    NoSuchTile { path: String, size: TreeSize },
    #[error("index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange { index: LeafIndex, size: TreeSize },
    #[error("size {size} is beyond the latest checkpoint (size {latest})")]
    BeyondLatest { size: TreeSize, latest: TreeSize },
    #[error("a consistency proof from the empty tree is refused")]
    EmptyOldTree,
    #[error("old size {old} is larger than new size {new}")]
    SizeOrder { old: TreeSize, new: TreeSize },
    /// A proof built from the store did not verify against the signed checkpoint:
    /// a bug or damage, and the proof is not handed out.
    #[error(
        "the {proof} proof built from the store does not verify against checkpoint {size}: {error}"
    )]
    SelfCheckFailed {
        proof: &'static str,
        size: TreeSize,
        error: LedgerError,
    },
    /// The store could not be read, or holds something it should not.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// An inclusion proof and the signed checkpoint it verifies against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InclusionProof {
    pub index: LeafIndex,
    /// The size of the tree the proof is in: the checkpoint's size.
    pub size: TreeSize,
    pub leaf_hash: Hash,
    /// The RFC 9162 path, the leaf's sibling first.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note of `size`, verbatim.
    pub checkpoint: String,
}

impl InclusionProof {
    /// The same proof as a `tlog-proof@v1` receipt.
    pub fn receipt(&self) -> Receipt {
        Receipt {
            index: self.index,
            proof: self.proof.clone(),
            checkpoint: self.checkpoint.clone(),
            extra: None,
        }
    }
}

/// A consistency proof and the signed checkpoint of its new size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub old: TreeSize,
    /// The new size: the checkpoint's size.
    pub new: TreeSize,
    /// The RFC 9162 proof (empty when the sizes are equal).
    pub proof: Vec<Hash>,
    /// The signed checkpoint note of `new`, verbatim.
    pub checkpoint: String,
}

/// Reads over a store, each call at the latest signed checkpoint it finds.
#[derive(Debug)]
pub struct TileReader<'a, S> {
    store: &'a S,
}

impl<'a, S: LedgerStore> TileReader<'a, S> {
    /// A reader of `store` (nothing is read yet).
    pub fn new(store: &'a S) -> Self {
        Self { store }
    }

    fn latest(&self) -> Result<StoredCheckpoint, ReadError> {
        self.store
            .latest_checkpoint()?
            .ok_or(ReadError::NoCheckpoint)
    }

    /// The latest signed checkpoint note, verbatim, and its tree size.
    pub fn latest_checkpoint_note(&self) -> Result<(String, TreeSize), ReadError> {
        let latest = self.latest()?;
        Ok((latest.note, latest.size))
    }

    /// Hash tile (`level`, `index`) at the latest checkpoint: full (`partial` is
    /// `None`) only when the tile is complete; partial only with the exact width it
    /// has at that size.
    pub fn hash_tile(
        &self,
        level: u8,
        index: u64,
        partial: Option<NonZeroU8>,
    ) -> Result<Vec<u8>, ReadError> {
        let size = self.latest()?.size;
        let tile = existing(TileKind::Hashes(level), index, partial, size)?;
        Ok(hash_tile_at(self.store, size, level, index, tile.width())?)
    }

    /// Entry bundle `index` at the latest checkpoint, on the same terms as
    /// [`Self::hash_tile`].
    pub fn entry_bundle(
        &self,
        index: u64,
        partial: Option<NonZeroU8>,
    ) -> Result<Vec<u8>, ReadError> {
        let size = self.latest()?.size;
        let tile = existing(TileKind::Entries, index, partial, size)?;
        Ok(entry_bundle_at(self.store, size, index, tile.width())?)
    }

    /// The inclusion proof of `index` in the tree of `size` (the latest when
    /// `None`), verified against the signed checkpoint before it is returned.
    ///
    /// When `size` is not the latest and the store no longer retains a checkpoint
    /// of that size, the proof is in the tree of the latest checkpoint instead: the
    /// answer's `size` says which.
    pub fn inclusion_proof(
        &self,
        index: LeafIndex,
        size: Option<TreeSize>,
    ) -> Result<InclusionProof, ReadError> {
        let latest = self.latest()?;
        let requested = size.unwrap_or(latest.size);
        if requested > latest.size {
            return Err(ReadError::BeyondLatest {
                size: requested,
                latest: latest.size,
            });
        }
        if !requested.contains(index) {
            return Err(ReadError::IndexOutOfRange {
                index,
                size: requested,
            });
        }
        let stored = self.checkpoint_for(requested, latest)?;
        let checkpoint = self.verified(&stored)?;
        let view = TreeView::new(self.store, checkpoint.size);
        let proof: Vec<Hash> = tlog_tiles::prove_record(checkpoint.size.0, index.0, &view)
            .map_err(|error| view.take_error(error))?
            .into_iter()
            .map(Hash::from_tlog)
            .collect();
        let entry = self
            .store
            .entry(index)?
            .ok_or_else(|| LedgerError::corrupt(format!("entry {index} is missing")))?;
        let leaf = leaf_hash(&entry);
        verify_inclusion(index, checkpoint.size, &leaf, &proof, &checkpoint.root).map_err(
            |error| ReadError::SelfCheckFailed {
                proof: "inclusion",
                size: checkpoint.size,
                error,
            },
        )?;
        Ok(InclusionProof {
            index,
            size: checkpoint.size,
            leaf_hash: leaf,
            proof,
            checkpoint: stored.note,
        })
    }

    /// The consistency proof from the tree of `old` to the tree of `new` (the
    /// latest when `None`), verified before it is returned: against the signed root
    /// of `new` and the root of `old` recomputed from the store.
    ///
    /// When `new` is not the latest and the store no longer retains a checkpoint of
    /// that size, the proof is to the latest checkpoint instead: the answer's `new`
    /// says which. `old` needs no retained checkpoint (the caller brings its own).
    pub fn consistency_proof(
        &self,
        old: TreeSize,
        new: Option<TreeSize>,
    ) -> Result<ConsistencyProof, ReadError> {
        let latest = self.latest()?;
        if old.0 == 0 {
            return Err(ReadError::EmptyOldTree);
        }
        let requested = new.unwrap_or(latest.size);
        for size in [old, requested] {
            if size > latest.size {
                return Err(ReadError::BeyondLatest {
                    size,
                    latest: latest.size,
                });
            }
        }
        if old > requested {
            return Err(ReadError::SizeOrder {
                old,
                new: requested,
            });
        }
        let stored = self.checkpoint_for(requested, latest)?;
        let checkpoint = self.verified(&stored)?;
        let view = TreeView::new(self.store, checkpoint.size);
        let proof: Vec<Hash> = if old == checkpoint.size {
            Vec::new()
        } else {
            tlog_tiles::prove_tree(checkpoint.size.0, old.0, &view)
                .map_err(|error| view.take_error(error))?
                .into_iter()
                .map(Hash::from_tlog)
                .collect()
        };
        let old_root = tlog_tiles::tree_hash(old.0, &view)
            .map(Hash::from_tlog)
            .map_err(|error| view.take_error(error))?;
        verify_consistency(old, checkpoint.size, &old_root, &checkpoint.root, &proof).map_err(
            |error| ReadError::SelfCheckFailed {
                proof: "consistency",
                size: checkpoint.size,
                error,
            },
        )?;
        Ok(ConsistencyProof {
            old,
            new: checkpoint.size,
            proof,
            checkpoint: stored.note,
        })
    }

    /// The retained checkpoint of `size`, or the latest when none is retained.
    fn checkpoint_for(
        &self,
        size: TreeSize,
        latest: StoredCheckpoint,
    ) -> Result<StoredCheckpoint, ReadError> {
        if size == latest.size {
            return Ok(latest);
        }
        match self.store.checkpoints_from(size).next().transpose()? {
            Some(retained) if retained.size == size => Ok(retained),
            _ => Ok(latest),
        }
    }

    /// The checkpoint's body, after its signature is checked with the log's key.
    fn verified(&self, stored: &StoredCheckpoint) -> Result<Checkpoint, ReadError> {
        let key = self
            .store
            .meta("verifier_key")?
            .ok_or_else(|| LedgerError::corrupt("the verifier key is missing from metadata"))?;
        let key = std::str::from_utf8(&key)
            .map_err(|_| LedgerError::corrupt("the stored verifier key is not UTF-8"))
            .and_then(|key| {
                LogVerifier::from_verifier_key(key).map_err(|error| {
                    LedgerError::corrupt(format!("the stored verifier key: {error}"))
                })
            })?;
        let checkpoint = key
            .verify_checkpoint(stored.note.as_bytes())
            .map_err(|error| {
                LedgerError::corrupt(format!("checkpoint {}: {error}", stored.size))
            })?;
        if checkpoint.size != stored.size {
            return Err(LedgerError::corrupt(format!(
                "checkpoint {} is stored under size {}",
                checkpoint.size, stored.size
            ))
            .into());
        }
        Ok(checkpoint)
    }
}

/// The tile named, if the tree of `size` has it with exactly that width.
fn existing(
    kind: TileKind,
    index: u64,
    partial: Option<NonZeroU8>,
    size: TreeSize,
) -> Result<TileRef, ReadError> {
    let tile = TileRef {
        kind,
        index,
        partial,
    };
    if width_at(size, kind, index) == Some(tile.width()) {
        Ok(tile)
    } else {
        Err(ReadError::NoSuchTile {
            path: tile.path(),
            size,
        })
    }
}

/// The number of nodes at the bottom row of tiles of `kind` in the tree of `size`.
fn nodes_at(size: TreeSize, kind: TileKind) -> u64 {
    match kind {
        TileKind::Entries => size.0,
        TileKind::Hashes(level) => size
            .0
            .checked_shr(u32::from(level) * TILE_HEIGHT)
            .unwrap_or(0),
    }
}

/// The width tile `index` of `kind` has in the tree of `size` (256 when full), or
/// `None` when the tree has no such tile.
pub fn width_at(size: TreeSize, kind: TileKind, index: u64) -> Option<usize> {
    let first = index.checked_mul(TILE_WIDTH as u64)?;
    match nodes_at(size, kind).checked_sub(first)? {
        0 => None,
        // INVARIANT: the minimum is at most 256, so the cast is exact.
        remaining => Some(remaining.min(TILE_WIDTH as u64) as usize),
    }
}

/// Every tile of the tree of `size`, as `writ ledger export` writes them: the entry
/// bundles, then the hash tiles level by level; full tiles and the partial tiles of
/// `size`.
pub fn tiles_of(size: TreeSize) -> impl Iterator<Item = TileRef> {
    let levels = (0u8..8).map(TileKind::Hashes);
    std::iter::once(TileKind::Entries)
        .chain(levels)
        .flat_map(move |kind| {
            let count = nodes_at(size, kind).div_ceil(TILE_WIDTH as u64);
            (0..count).filter_map(move |index| {
                let width = width_at(size, kind, index)?;
                Some(TileRef {
                    kind,
                    index,
                    partial: u8::try_from(width).ok().and_then(NonZeroU8::new),
                })
            })
        })
}

/// The bytes of hash tile (`level`, `index`) of `width` hashes in the tree of
/// `size`: the bottom row of the stored fat tile when full, recomputed from the
/// entries or the tiles below when partial. A tile the tree of `size` does not
/// have is refused as damage: callers ask only for tiles of [`tiles_of`].
pub fn hash_tile_at<S: LedgerStore>(
    store: &S,
    size: TreeSize,
    level: u8,
    index: u64,
    width: usize,
) -> Result<Vec<u8>, LedgerError> {
    if width_at(size, TileKind::Hashes(level), index) != Some(width) {
        return Err(LedgerError::corrupt(format!(
            "{} is not a tile of the tree of size {size}",
            tile_path(TileKind::Hashes(level), index, width)
        )));
    }
    let hashes = bottom_row(store, level, index, width)?;
    let mut tile = Vec::with_capacity(width * crate::hash::HASH_LEN);
    for hash in hashes {
        tile.extend_from_slice(&hash.0);
    }
    Ok(tile)
}

/// The bottom-row hashes of hash tile (`level`, `index`) with `width` of them.
fn bottom_row<S: LedgerStore>(
    store: &S,
    level: u8,
    index: u64,
    width: usize,
) -> Result<Vec<Hash>, LedgerError> {
    let id = TileId { level, index };
    if width == TILE_WIDTH {
        // INVARIANT: a tile that is full at a committed size was stored by the
        // batch that completed it, at or before that size's checkpoint.
        return (0..TILE_WIDTH)
            .map(|position| {
                store
                    .tile_hash(id, 0, position)?
                    .ok_or_else(|| LedgerError::corrupt(format!("tile {level}/{index} is missing")))
            })
            .collect();
    }
    let first = index * TILE_WIDTH as u64;
    match level.checked_sub(1) {
        None => entries(store, first, width)?
            .iter()
            .map(|entry| Ok(leaf_hash(entry)))
            .collect(),
        Some(below) => (first..first + width as u64)
            .map(|child| tile_root(store, below, child))
            .collect(),
    }
}

/// The `count` stored entries from `first` on, in order, or an error naming the
/// first one missing.
fn entries<S: LedgerStore>(
    store: &S,
    first: u64,
    count: usize,
) -> Result<Vec<Vec<u8>>, LedgerError> {
    let mut entries = Vec::with_capacity(count);
    let mut expected = first;
    for item in store.entries_from(LeafIndex(first)).take(count) {
        let (index, entry) = item?;
        if index.0 != expected {
            break;
        }
        entries.push(entry);
        expected += 1;
    }
    if entries.len() != count {
        return Err(LedgerError::corrupt(format!("entry {expected} is missing")));
    }
    Ok(entries)
}

/// The bytes of entry bundle `index` of `width` entries in the tree of `size`:
/// each entry as a big-endian uint16 length, then its bytes. A bundle the tree of
/// `size` does not have is refused as damage, as in [`hash_tile_at`].
pub fn entry_bundle_at<S: LedgerStore>(
    store: &S,
    size: TreeSize,
    index: u64,
    width: usize,
) -> Result<Vec<u8>, LedgerError> {
    if width_at(size, TileKind::Entries, index) != Some(width) {
        return Err(LedgerError::corrupt(format!(
            "{} is not a bundle of the tree of size {size}",
            tile_path(TileKind::Entries, index, width)
        )));
    }
    let first = index * TILE_WIDTH as u64;
    let mut bundle = Vec::with_capacity(width * 256);
    for (number, entry) in (first..).zip(entries(store, first, width)?) {
        let length = u16::try_from(entry.len())
            .map_err(|_| LedgerError::corrupt(format!("entry {number} is larger than 64 KiB")))?;
        bundle.extend_from_slice(&length.to_be_bytes());
        bundle.extend_from_slice(&entry);
    }
    Ok(bundle)
}

/// The tree of one committed size, read from the store for `tlog_tiles`' proof
/// code. Full tiles are one stored lookup per node; a node inside the partial tile
/// of a level is hashed from that tile's bottom row, computed once per view.
struct TreeView<'a, S> {
    store: &'a S,
    size: TreeSize,
    partial_rows: RefCell<BTreeMap<u8, Vec<Hash>>>,
    /// The first store error behind a `tlog_tiles` failure, so it keeps its kind.
    error: RefCell<Option<LedgerError>>,
}

impl<'a, S: LedgerStore> TreeView<'a, S> {
    fn new(store: &'a S, size: TreeSize) -> Self {
        Self {
            store,
            size,
            partial_rows: RefCell::new(BTreeMap::new()),
            error: RefCell::new(None),
        }
    }

    /// The error behind a failed `tlog_tiles` call: ours if a read failed,
    /// otherwise theirs as damage.
    fn take_error(&self, error: tlog_tiles::Error) -> LedgerError {
        self.error
            .borrow_mut()
            .take()
            .unwrap_or_else(|| LedgerError::corrupt(format!("proof: {error}")))
    }

    /// The hash of the complete node at tree `level`, `index`.
    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        let complete = level < 64
            && index
                .checked_add(1)
                .and_then(|end| end.checked_mul(1u64 << level))
                .is_some_and(|end| end <= self.size.0);
        if !complete {
            return Err(LedgerError::corrupt(format!(
                "node ({level}, {index}) is not in the tree of size {}",
                self.size
            )));
        }
        // INVARIANT: level < 64, so the tile level is below 8 and fits a u8.
        let tile_level = (level / TILE_HEIGHT) as u8;
        let row = level % TILE_HEIGHT;
        let tile_index = index >> (TILE_HEIGHT - row);
        let kind = TileKind::Hashes(tile_level);
        if width_at(self.size, kind, tile_index) == Some(TILE_WIDTH) {
            let id = TileId {
                level: tile_level,
                index: tile_index,
            };
            let position = (index % (TILE_WIDTH >> row) as u64) as usize;
            return self.store.tile_hash(id, row, position)?.ok_or_else(|| {
                LedgerError::corrupt(format!("tile {tile_level}/{tile_index} is missing"))
            });
        }
        // The node is in the partial tile of its level: hash its 2^row hashes of
        // that tile's bottom row.
        let start = ((index << row) % TILE_WIDTH as u64) as usize;
        let mut rows = self.partial_rows.borrow_mut();
        let bottom = match rows.entry(tile_level) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let width = width_at(self.size, kind, tile_index).ok_or_else(|| {
                    LedgerError::corrupt(format!("tile {tile_level}/{tile_index} is missing"))
                })?;
                entry.insert(bottom_row(self.store, tile_level, tile_index, width)?)
            }
        };
        let run = bottom.get(start..start + (1 << row)).ok_or_else(|| {
            LedgerError::corrupt(format!("node ({level}, {index}) is beyond its tile"))
        })?;
        Ok(subtree_root(run))
    }
}

/// MTH of a power-of-two run of hashes.
fn subtree_root(hashes: &[Hash]) -> Hash {
    let mut row = hashes.to_vec();
    while row.len() > 1 {
        row = row
            .chunks(2)
            .map(|pair| match pair {
                [left, right] => node_hash(left, right),
                [single] => *single,
                _ => Hash::empty_tree(),
            })
            .collect();
    }
    row.first().copied().unwrap_or_else(Hash::empty_tree)
}

impl<S: LedgerStore> tlog_tiles::HashReader for TreeView<'_, S> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&stored| {
                let (level, index) = tlog_tiles::split_stored_hash_index(stored);
                self.node(u32::from(level), index)
                    .map(Hash::to_tlog)
                    .map_err(|error| {
                        let message = error.to_string();
                        self.error.borrow_mut().get_or_insert(error);
                        tlog_tiles::Error::InvalidInput(message)
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::checkpoint::LogSigner;
    use crate::entry::{EntryDraft, PreparedEntry};
    use crate::log::{Log, Retention, SystemClock};
    use crate::proof::verify_inclusion;
    use crate::receipt::verify_receipt;
    use crate::store::{Checkpoints, CommitBatch, Entries, SledStore};
    use crate::tiles::TileSource;

    fn signer() -> LogSigner {
        LogSigner::from_seed("reader.example/log", &[5u8; 32]).unwrap()
    }

    fn key() -> LogVerifier {
        signer().verifier()
    }

    fn new_log() -> (tempfile::TempDir, Log<SledStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        let log =
            Log::create(store, signer(), Arc::new(SystemClock), Retention::default()).unwrap();
        (dir, log)
    }

    fn drafts(count: u64) -> Vec<PreparedEntry> {
        (0..count)
            .map(|n| {
                EntryDraft {
                    kind: "test.entry".into(),
                    actor: "writ".into(),
                    workspace: "-".into(),
                    fields: serde_json::json!({ "n": n, "pad": "x".repeat((n % 50) as usize) })
                        .as_object()
                        .cloned()
                        .unwrap(),
                }
                .prepare()
                .unwrap()
            })
            .collect()
    }

    /// Grows `log` to `size` in batches of at most `batch`.
    fn grow(log: &mut Log<SledStore>, size: u64, batch: u64) {
        while log.size().0 < size {
            let count = (size - log.size().0).min(batch);
            log.append_batch(&drafts(count)).unwrap();
        }
    }

    /// The tile as the export wrote it before it used this module: hash tiles from
    /// the writer's in-memory edge, bundles from the stored entries.
    fn oracle(log: &Log<SledStore>, tile: TileRef) -> Vec<u8> {
        let store = log.store().as_ref();
        let first = tile.index * TILE_WIDTH as u64;
        let mut bytes = Vec::new();
        for node in first..first + tile.width() as u64 {
            match tile.kind {
                TileKind::Entries => {
                    let entry = store.entry(LeafIndex(node)).unwrap().unwrap();
                    bytes.extend_from_slice(&u16::try_from(entry.len()).unwrap().to_be_bytes());
                    bytes.extend_from_slice(&entry);
                }
                TileKind::Hashes(level) => {
                    let hash = log
                        .edge()
                        .node(u32::from(level) * TILE_HEIGHT, node, store)
                        .unwrap();
                    bytes.extend_from_slice(&hash.0);
                }
            }
        }
        bytes
    }

    fn read(reader: &TileReader<'_, SledStore>, tile: TileRef) -> Result<Vec<u8>, ReadError> {
        match tile.kind {
            TileKind::Entries => reader.entry_bundle(tile.index, tile.partial),
            TileKind::Hashes(level) => reader.hash_tile(level, tile.index, tile.partial),
        }
    }

    fn assert_no_such_tile(result: Result<Vec<u8>, ReadError>) {
        assert!(
            matches!(result, Err(ReadError::NoSuchTile { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn tiles_are_the_tree_at_the_latest_checkpoint() {
        let (_dir, mut log) = new_log();
        for size in [
            1u64,
            2,
            255,
            256,
            257,
            511,
            512,
            600,
            65_536,
            65_536 + 256 + 3,
        ] {
            grow(&mut log, size, 1000);
            let reader = TileReader::new(log.store().as_ref());
            let (note, latest) = reader.latest_checkpoint_note().unwrap();
            assert_eq!(latest, TreeSize(size));
            assert_eq!(
                key().verify_checkpoint(note.as_bytes()).unwrap().size,
                latest
            );
            let tiles: Vec<TileRef> = tiles_of(latest).collect();
            for tile in &tiles {
                assert_eq!(
                    read(&reader, *tile).unwrap(),
                    oracle(&log, *tile),
                    "{}",
                    tile.path()
                );
            }
            for tile in tiles {
                // A full tile is never served partially, a partial tile never
                // full nor with another width, and nothing is past the last tile.
                let others = [
                    None,
                    NonZeroU8::new(1),
                    NonZeroU8::new(255),
                    tile.partial.and_then(|width| width.checked_add(1)),
                    tile.partial
                        .and_then(|width| NonZeroU8::new(width.get().wrapping_sub(1))),
                ];
                for partial in others {
                    if partial != tile.partial {
                        assert_no_such_tile(read(&reader, TileRef { partial, ..tile }));
                    }
                }
                let index = tile.index + 1;
                if width_at(latest, tile.kind, index).is_none() {
                    for partial in [None, NonZeroU8::new(1)] {
                        assert_no_such_tile(read(
                            &reader,
                            TileRef {
                                index,
                                partial,
                                ..tile
                            },
                        ));
                    }
                }
            }
            for level in [8u8, 9, 255] {
                assert_no_such_tile(reader.hash_tile(level, 0, None));
                assert_no_such_tile(reader.hash_tile(level, 0, NonZeroU8::new(1)));
            }
            assert_no_such_tile(reader.hash_tile(0, u64::MAX, None));
            assert_no_such_tile(reader.entry_bundle(u64::MAX, NonZeroU8::new(3)));
        }
    }

    #[test]
    fn tiles_of_lists_what_the_tree_has() {
        let paths = |size| {
            tiles_of(TreeSize(size))
                .map(|tile| tile.path())
                .collect::<Vec<_>>()
        };
        assert!(paths(0).is_empty());
        assert_eq!(paths(1), ["tile/entries/000.p/1", "tile/0/000.p/1"]);
        assert_eq!(
            paths(513),
            [
                "tile/entries/000",
                "tile/entries/001",
                "tile/entries/002.p/1",
                "tile/0/000",
                "tile/0/001",
                "tile/0/002.p/1",
                "tile/1/000.p/2",
            ]
        );
        assert_eq!(
            paths(256 * 256).last().map(String::as_str),
            Some("tile/2/000.p/1")
        );
        assert_eq!(tiles_of(TreeSize(256 * 256)).count(), 256 + 256 + 1 + 1);
    }

    #[test]
    fn proofs_verify_and_match_the_writer() {
        let (_dir, mut log) = new_log();
        grow(&mut log, 700, 37);
        let reader = TileReader::new(log.store().as_ref());
        for index in [0u64, 1, 36, 255, 256, 511, 600, 699] {
            for size in [
                None,
                Some(TreeSize(index + 1)),
                Some(TreeSize(37 * 10)),
                Some(TreeSize(700)),
            ] {
                if size.is_some_and(|size| !size.contains(LeafIndex(index))) {
                    continue;
                }
                let proof = reader.inclusion_proof(LeafIndex(index), size).unwrap();
                let checkpoint = key()
                    .verify_checkpoint(proof.checkpoint.as_bytes())
                    .unwrap();
                assert_eq!(checkpoint.size, proof.size);
                // Retained checkpoints are at the batch boundaries (every 37) and
                // 700; any other size is answered at the latest checkpoint.
                let expected = match size {
                    Some(size) if size.0 % 37 == 0 || size.0 == 700 => size,
                    _ => TreeSize(700),
                };
                assert_eq!(proof.size, expected, "index {index}, size {size:?}");
                assert_eq!(
                    proof.proof,
                    log.inclusion_proof(LeafIndex(index), expected).unwrap()
                );
                verify_inclusion(
                    LeafIndex(index),
                    proof.size,
                    &proof.leaf_hash,
                    &proof.proof,
                    &checkpoint.root,
                )
                .unwrap();
                let entry = log.store().entry(LeafIndex(index)).unwrap().unwrap();
                verify_receipt(&proof.receipt(), &entry, &key()).unwrap();
            }
        }
        for old in [1u64, 36, 37, 40, 256, 370, 699, 700] {
            for new in [
                None,
                Some(TreeSize(370)),
                Some(TreeSize(371)),
                Some(TreeSize(700)),
            ] {
                if new.is_some_and(|new| new.0 < old) {
                    continue;
                }
                let proof = reader.consistency_proof(TreeSize(old), new).unwrap();
                let checkpoint = key()
                    .verify_checkpoint(proof.checkpoint.as_bytes())
                    .unwrap();
                assert_eq!(checkpoint.size, proof.new);
                let expected = match new {
                    Some(TreeSize(371)) | None => TreeSize(700),
                    Some(new) => new,
                };
                assert_eq!(proof.new, expected);
                assert_eq!(
                    proof.proof,
                    log.consistency_proof(TreeSize(old), expected).unwrap()
                );
                let old_root = log.root_at(TreeSize(old)).unwrap();
                verify_consistency(
                    TreeSize(old),
                    proof.new,
                    &old_root,
                    &checkpoint.root,
                    &proof.proof,
                )
                .unwrap();
            }
        }
    }

    #[test]
    fn a_checkpoint_no_longer_retained_is_answered_at_the_latest() {
        let (_dir, mut log) = new_log();
        grow(&mut log, 100, 10);
        let reader = TileReader::new(log.store().as_ref());
        assert_eq!(
            reader
                .inclusion_proof(LeafIndex(3), Some(TreeSize(50)))
                .unwrap()
                .size,
            TreeSize(50)
        );
        log.store().remove_checkpoints(&[TreeSize(50)]).unwrap();
        let proof = reader
            .inclusion_proof(LeafIndex(3), Some(TreeSize(50)))
            .unwrap();
        assert_eq!(proof.size, TreeSize(100));
        assert_eq!(
            key()
                .verify_checkpoint(proof.checkpoint.as_bytes())
                .unwrap()
                .size,
            TreeSize(100)
        );
        assert_eq!(
            reader
                .consistency_proof(TreeSize(20), Some(TreeSize(50)))
                .unwrap()
                .new,
            TreeSize(100)
        );
    }

    #[test]
    fn requests_outside_the_tree_are_named() {
        let (_dir, mut log) = new_log();
        {
            let reader = TileReader::new(log.store().as_ref());
            assert!(matches!(
                reader.latest_checkpoint_note(),
                Err(ReadError::NoCheckpoint)
            ));
            assert!(matches!(
                reader.hash_tile(0, 0, NonZeroU8::new(1)),
                Err(ReadError::NoCheckpoint)
            ));
            assert!(matches!(
                reader.entry_bundle(0, None),
                Err(ReadError::NoCheckpoint)
            ));
            assert!(matches!(
                reader.inclusion_proof(LeafIndex(0), None),
                Err(ReadError::NoCheckpoint)
            ));
            assert!(matches!(
                reader.consistency_proof(TreeSize(1), None),
                Err(ReadError::NoCheckpoint)
            ));
        }
        grow(&mut log, 10, 10);
        let reader = TileReader::new(log.store().as_ref());
        let cases: Vec<(Result<(), ReadError>, &str)> = vec![
            (reader.inclusion_proof(LeafIndex(10), None).map(drop), "index 10 is out of range for a tree of size 10"),
            (reader.inclusion_proof(LeafIndex(5), Some(TreeSize(5))).map(drop), "index 5 is out of range for a tree of size 5"),
            (reader.inclusion_proof(LeafIndex(0), Some(TreeSize(11))).map(drop), "size 11 is beyond the latest checkpoint (size 10)"),
            (reader.consistency_proof(TreeSize(0), None).map(drop), "a consistency proof from the empty tree is refused"),
            (reader.consistency_proof(TreeSize(11), None).map(drop), "size 11 is beyond the latest checkpoint (size 10)"),
            (reader.consistency_proof(TreeSize(1), Some(TreeSize(11))).map(drop), "size 11 is beyond the latest checkpoint (size 10)"),
            (reader.consistency_proof(TreeSize(5), Some(TreeSize(4))).map(drop), "old size 5 is larger than new size 4"),
            (reader.hash_tile(0, 0, None).map(drop), "`tile/0/000` is not a tile of the tree at the latest checkpoint (size 10)"),
            (reader.entry_bundle(0, NonZeroU8::new(9)).map(drop), "`tile/entries/000.p/9` is not a tile of the tree at the latest checkpoint (size 10)"),
        ];
        for (result, message) in cases {
            assert_eq!(result.unwrap_err().to_string(), message);
        }
        let equal = reader.consistency_proof(TreeSize(10), None).unwrap();
        assert!(equal.proof.is_empty());
    }

    /// A store that answers one stored tile with a flipped hash (a bug or damage).
    struct Lying<'a> {
        inner: &'a SledStore,
        flip: TileId,
    }

    impl TileSource for Lying<'_> {
        fn tile_hash(
            &self,
            id: TileId,
            row: u32,
            position: usize,
        ) -> Result<Option<Hash>, LedgerError> {
            let hash = self.inner.tile_hash(id, row, position)?;
            Ok(hash.map(|mut hash| {
                if id == self.flip {
                    hash.0[0] ^= 1;
                }
                hash
            }))
        }
    }

    impl LedgerStore for Lying<'_> {
        fn size(&self) -> Result<TreeSize, LedgerError> {
            self.inner.size()
        }
        fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, LedgerError> {
            self.inner.meta(name)
        }
        fn set_meta(&self, values: &[(&str, &[u8])]) -> Result<(), LedgerError> {
            self.inner.set_meta(values)
        }
        fn entry(&self, index: LeafIndex) -> Result<Option<Vec<u8>>, LedgerError> {
            self.inner.entry(index)
        }
        fn entries_from(&self, from: LeafIndex) -> Entries<'_> {
            self.inner.entries_from(from)
        }
        fn checkpoints_from(&self, from: TreeSize) -> Checkpoints<'_> {
            self.inner.checkpoints_from(from)
        }
        fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LedgerError> {
            self.inner.latest_checkpoint()
        }
        fn commit(&self, batch: CommitBatch) -> Result<(), LedgerError> {
            self.inner.commit(batch)
        }
        fn remove_checkpoints(&self, sizes: &[TreeSize]) -> Result<(), LedgerError> {
            self.inner.remove_checkpoints(sizes)
        }
        fn is_empty(&self) -> Result<bool, LedgerError> {
            self.inner.is_empty()
        }
    }

    #[test]
    fn a_proof_from_a_lying_store_is_not_handed_out() {
        let (_dir, mut log) = new_log();
        grow(&mut log, 600, 100);
        let lying = Lying {
            inner: log.store().as_ref(),
            flip: TileId { level: 0, index: 0 },
        };
        let reader = TileReader::new(&lying);
        let error = reader.inclusion_proof(LeafIndex(300), None).unwrap_err();
        assert!(
            matches!(
                error,
                ReadError::SelfCheckFailed {
                    proof: "inclusion",
                    ..
                }
            ),
            "{error}"
        );
        let error = reader.consistency_proof(TreeSize(300), None).unwrap_err();
        assert!(
            matches!(
                error,
                ReadError::SelfCheckFailed {
                    proof: "consistency",
                    ..
                }
            ),
            "{error}"
        );
        // At size 100, tile 0/000 is partial and recomputed from the entries: a
        // proof there does not touch the bad stored tile.
        let proof = reader
            .inclusion_proof(LeafIndex(10), Some(TreeSize(100)))
            .unwrap();
        assert_eq!(proof.size, TreeSize(100));
    }

    #[test]
    fn reads_during_appends_always_verify() {
        let (_dir, mut log) = new_log();
        grow(&mut log, 1, 1);
        let store = Arc::clone(log.store());
        let writer = std::thread::spawn(move || {
            for batch in 0..60u64 {
                log.append_batch(&drafts(1 + batch % 23)).unwrap();
            }
            log
        });
        let reader = TileReader::new(store.as_ref());
        let mut seen = 0;
        while !writer.is_finished() || seen < 5 {
            seen += 1;
            let (note, size) = reader.latest_checkpoint_note().unwrap();
            let checkpoint = key().verify_checkpoint(note.as_bytes()).unwrap();
            assert_eq!(checkpoint.size, size);
            let proof = reader.inclusion_proof(LeafIndex(size.0 / 2), None).unwrap();
            let signed = key()
                .verify_checkpoint(proof.checkpoint.as_bytes())
                .unwrap();
            verify_inclusion(
                proof.index,
                proof.size,
                &proof.leaf_hash,
                &proof.proof,
                &signed.root,
            )
            .unwrap();
            let proof = reader.consistency_proof(TreeSize(1), None).unwrap();
            assert!(proof.new >= size);
            // A partial tile of an older size is refused, never served wrong.
            for tile in tiles_of(size) {
                match read(&reader, tile) {
                    Ok(bytes) if tile.kind == TileKind::Entries => assert!(!bytes.is_empty()),
                    Ok(bytes) => assert_eq!(bytes.len(), tile.width() * 32, "{}", tile.path()),
                    Err(ReadError::NoSuchTile { .. }) => assert!(tile.partial.is_some()),
                    Err(other) => panic!("{}: {other}", tile.path()),
                }
            }
        }
        let log = writer.join().unwrap();
        let reader = TileReader::new(log.store().as_ref());
        for tile in tiles_of(log.size()) {
            assert_eq!(read(&reader, tile).unwrap(), oracle(&log, tile));
        }
    }
}
