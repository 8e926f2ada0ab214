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
        let tile = self.existing(TileKind::Hashes(level), index, partial, size)?;
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
        let tile = self.existing(TileKind::Entries, index, partial, size)?;
        Ok(entry_bundle_at(self.store, size, index, tile.width())?)
    }

    fn existing(
        &self,
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
/// entries or the tiles below when partial. The caller checks the tile exists.
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
/// each entry as a big-endian uint16 length, then its bytes. The caller checks
/// the bundle exists.
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
