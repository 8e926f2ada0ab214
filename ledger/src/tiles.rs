//! The live tree: "fat" tiles of stored node hashes and the in-memory right edge.
//!
//! The tree is cut into tiles of height 8, as in C2SP tlog-tiles. A *fat tile*
//! `(level L, index N)` holds every node of its 8-level subtree: row `k` (0..8) has
//! the `256 >> k` nodes of tree level `8L + k` under it, 510 hashes in all. Only
//! full tiles are stored; the one incomplete tile of each level lives in memory
//! (at most 64 of them, so memory does not grow with the log) and is rebuilt from
//! the stored entries and tiles when a data dir is opened.
//!
//! Any node of the current tree is one lookup: in a stored tile or in the edge.
//! Appending a leaf hashes at most one node per level (O(log n)); proofs and past
//! roots read O(log n) nodes through `tlog_tiles`' `HashReader` interface.

use crate::error::LedgerError;
use crate::hash::{node_hash, Hash, HASH_LEN};
use crate::types::TreeSize;

/// Height of a tile, as in tlog-tiles.
pub const TILE_HEIGHT: u32 = 8;
/// Hashes in the bottom row of a full tile.
pub const TILE_WIDTH: usize = 1 << TILE_HEIGHT;
/// Hashes in a full fat tile: 256 + 128 + ... + 2.
pub const FAT_TILE_HASHES: usize = 2 * TILE_WIDTH - 2;
/// Bytes of a stored fat tile.
pub const FAT_TILE_BYTES: usize = FAT_TILE_HASHES * HASH_LEN;

/// Where a tile sits: its tile level and its index within that level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TileId {
    pub level: u8,
    pub index: u64,
}

/// Offset, in hashes, of row `row` in a fat tile.
fn row_offset(row: u32) -> usize {
    // Rows 0..row hold 256 + 128 + ... = 2 * 256 - (512 >> row) hashes.
    2 * TILE_WIDTH - ((2 * TILE_WIDTH) >> row)
}

/// Reads hash `position` of row `row` from a stored fat tile.
pub fn fat_tile_hash(tile: &[u8], row: u32, position: usize) -> Option<Hash> {
    let start = (row_offset(row) + position) * HASH_LEN;
    let bytes = tile.get(start..start + HASH_LEN)?;
    Hash::from_slice(bytes).ok()
}

/// Reads tile storage: hashes of the stored full fat tiles.
pub trait TileSource {
    /// Hash `position` of row `row` of the full fat tile `id`; `None` if the tile is
    /// not stored.
    fn tile_hash(&self, id: TileId, row: u32, position: usize)
        -> Result<Option<Hash>, LedgerError>;
}

/// Reads one hash out of stored fat-tile bytes, naming the tile if it is short.
pub fn hash_in_tile(
    tile: &[u8],
    id: TileId,
    row: u32,
    position: usize,
) -> Result<Hash, LedgerError> {
    if tile.len() != FAT_TILE_BYTES {
        return Err(LedgerError::corrupt(format!(
            "tile {}/{} has {} bytes instead of {FAT_TILE_BYTES}",
            id.level,
            id.index,
            tile.len()
        )));
    }
    fat_tile_hash(tile, row, position).ok_or_else(|| {
        LedgerError::corrupt(format!(
            "tile {}/{} has no hash at row {row}, position {position}",
            id.level, id.index
        ))
    })
}

/// The incomplete tile of one level: its rows, each a prefix of the full row.
#[derive(Clone, Debug, Default)]
struct EdgeTile {
    index: u64,
    rows: [Vec<Hash>; TILE_HEIGHT as usize],
}

impl EdgeTile {
    /// Adds a node to the bottom row and every parent it completes; returns the
    /// tile's top node (one level above the tile) when the tile became full.
    fn push_bottom(&mut self, hash: Hash) -> Option<Hash> {
        let mut carry = hash;
        for row in &mut self.rows {
            row.push(carry);
            if row.len() % 2 == 1 {
                return None;
            }
            let (left, right) = (row.get(row.len() - 2)?, row.last()?);
            carry = node_hash(left, right);
        }
        Some(carry)
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FAT_TILE_BYTES);
        for row in &self.rows {
            for hash in row {
                out.extend_from_slice(&hash.0);
            }
        }
        out
    }
}

/// The right edge of the tree: size and the incomplete tile of every level.
#[derive(Clone, Debug, Default)]
pub struct TreeEdge {
    size: TreeSize,
    levels: Vec<EdgeTile>,
}

impl TreeEdge {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of leaves.
    pub fn size(&self) -> TreeSize {
        self.size
    }

    /// Appends one leaf hash; returns the tiles that became full, to be stored.
    pub fn push(&mut self, leaf: Hash, completed: &mut Vec<(TileId, Vec<u8>)>) {
        self.size.0 += 1;
        let mut node = leaf;
        for level in 0u8.. {
            if self.levels.len() <= usize::from(level) {
                self.levels.push(EdgeTile::default());
            }
            let Some(tile) = self.levels.get_mut(usize::from(level)) else {
                return;
            };
            let Some(top) = tile.push_bottom(node) else {
                return;
            };
            completed.push((
                TileId {
                    level,
                    index: tile.index,
                },
                tile.encode(),
            ));
            *tile = EdgeTile {
                index: tile.index + 1,
                ..EdgeTile::default()
            };
            node = top;
        }
    }

    /// The node at tree `level`, `index`, if it is complete and in the edge.
    fn edge_node(&self, level: u32, index: u64) -> Option<Hash> {
        let tile_level = (level / TILE_HEIGHT) as usize;
        let row = level % TILE_HEIGHT;
        let tile = self.levels.get(tile_level)?;
        let per_tile = (TILE_WIDTH >> row) as u64;
        if index / per_tile != tile.index {
            return None;
        }
        tile.rows
            .get(row as usize)?
            .get((index % per_tile) as usize)
            .copied()
    }

    /// The hash of the complete node at (`level`, `index`).
    pub fn node(
        &self,
        level: u32,
        index: u64,
        source: &dyn TileSource,
    ) -> Result<Hash, LedgerError> {
        let complete = level < 64
            && index
                .checked_add(1)
                .and_then(|end| end.checked_mul(1u64 << level))
                .is_some_and(|end| end <= self.size.0);
        if !complete {
            return Err(LedgerError::corrupt(format!(
                "node ({level}, {index}) is not in a tree of size {}",
                self.size
            )));
        }
        if let Some(hash) = self.edge_node(level, index) {
            return Ok(hash);
        }
        let row = level % TILE_HEIGHT;
        let id = TileId {
            level: (level / TILE_HEIGHT) as u8,
            index: index >> (TILE_HEIGHT - row),
        };
        let position = (index % (TILE_WIDTH >> row) as u64) as usize;
        source.tile_hash(id, row, position)?.ok_or_else(|| {
            LedgerError::corrupt(format!("tile {}/{} is missing", id.level, id.index))
        })
    }

    /// Rebuilds the edge of a tree of `size` from stored tiles and the last leaves.
    ///
    /// `tail_leaves` must be the leaf hashes from `size - size % 256` to `size`.
    pub fn rebuild(
        size: TreeSize,
        tail_leaves: &[Hash],
        source: &dyn TileSource,
    ) -> Result<Self, LedgerError> {
        // Seed every level's partial bottom row from the tops of stored tiles below.
        let mut level = 0u32;
        let mut levels = Vec::new();
        loop {
            let nodes_at_level = size.0 >> (level * TILE_HEIGHT);
            if nodes_at_level == 0 && level > 0 {
                break;
            }
            let index = nodes_at_level / TILE_WIDTH as u64;
            let mut tile = EdgeTile {
                index,
                ..EdgeTile::default()
            };
            let first = index * TILE_WIDTH as u64;
            let bottom: Vec<Hash> = if level == 0 {
                if tail_leaves.len() as u64 != nodes_at_level - first {
                    return Err(LedgerError::corrupt("tail leaves do not match the size"));
                }
                tail_leaves.to_vec()
            } else {
                (first..nodes_at_level)
                    .map(|child| tile_root(source, (level - 1) as u8, child))
                    .collect::<Result<_, _>>()?
            };
            for hash in bottom {
                if tile.push_bottom(hash).is_some() {
                    return Err(LedgerError::corrupt("a partial tile came out full"));
                }
            }
            levels.push(tile);
            level += 1;
            if level >= 8 {
                break;
            }
        }
        Ok(Self { size, levels })
    }

    /// The root hash of the tree at `size` (any size up to the current one).
    pub fn root_at(&self, size: TreeSize, source: &dyn TileSource) -> Result<Hash, LedgerError> {
        if size > self.size {
            return Err(LedgerError::SizeOrder {
                old: size,
                new: self.size,
            });
        }
        let reader = Reader { edge: self, source };
        tlog_tiles::tree_hash(size.0, &reader)
            .map(Hash::from_tlog)
            .map_err(|error| LedgerError::corrupt(error.to_string()))
    }

    /// The inclusion proof of leaf `index` in the tree of `size`.
    pub fn inclusion_proof(
        &self,
        index: crate::types::LeafIndex,
        size: TreeSize,
        source: &dyn TileSource,
    ) -> Result<Vec<Hash>, LedgerError> {
        self.inclusion_proof_memo(index, size, source, &mut RangeHashes::default())
    }

    /// [`Self::inclusion_proof`] sharing `memo` with other proofs in the same tree
    /// size: the proofs of one batch share most of their hashes, notably the
    /// incomplete right-hand subtrees, which are hashed once instead of per proof.
    pub fn inclusion_proof_memo(
        &self,
        index: crate::types::LeafIndex,
        size: TreeSize,
        source: &dyn TileSource,
        memo: &mut RangeHashes,
    ) -> Result<Vec<Hash>, LedgerError> {
        if !size.contains(index) || size > self.size {
            return Err(LedgerError::IndexOutOfRange { index, size });
        }
        // RFC 9162 2.1.3.1 PATH(m, D[lo:hi]), walked from the root down; the
        // sibling hashes are collected root-first and reversed at the end.
        let mut proof = Vec::with_capacity(64);
        let (mut lo, mut hi) = (0u64, size.0);
        while hi - lo > 1 {
            let split = lo + largest_power_of_two_below(hi - lo);
            if index.0 < split {
                proof.push(self.range_hash(split, hi, source, memo)?);
                hi = split;
            } else {
                proof.push(self.range_hash(lo, split, source, memo)?);
                lo = split;
            }
        }
        proof.reverse();
        Ok(proof)
    }

    /// MTH(D[start:end]) for a range the RFC 9162 recursion produces: `start` is a
    /// multiple of the largest power of two below `end - start` (or of the length
    /// itself when it is a power of two).
    fn range_hash(
        &self,
        start: u64,
        end: u64,
        source: &dyn TileSource,
        memo: &mut RangeHashes,
    ) -> Result<Hash, LedgerError> {
        let length = end - start;
        if length.is_power_of_two() {
            let level = length.trailing_zeros();
            return self.node(level, start >> level, source);
        }
        if let Some(hash) = memo.0.get(&(start, end)) {
            return Ok(*hash);
        }
        let split = start + largest_power_of_two_below(length);
        let left = self.range_hash(start, split, source, memo)?;
        let right = self.range_hash(split, end, source, memo)?;
        let hash = node_hash(&left, &right);
        memo.0.insert((start, end), hash);
        Ok(hash)
    }

    /// The consistency proof from the tree of `old` to the tree of `new`.
    pub fn consistency_proof(
        &self,
        old: TreeSize,
        new: TreeSize,
        source: &dyn TileSource,
    ) -> Result<Vec<Hash>, LedgerError> {
        if old.0 == 0 {
            return Err(LedgerError::EmptyOldTree);
        }
        if old > new || new > self.size {
            return Err(LedgerError::SizeOrder { old, new });
        }
        let reader = Reader { edge: self, source };
        tlog_tiles::prove_tree(new.0, old.0, &reader)
            .map(|proof| proof.into_iter().map(Hash::from_tlog).collect())
            .map_err(|error| LedgerError::corrupt(error.to_string()))
    }
}

/// Hashes of incomplete ranges already computed for one tree size.
#[derive(Debug, Default)]
pub struct RangeHashes(std::collections::HashMap<(u64, u64), Hash>);

/// The largest power of two strictly below `n` (for `n >= 2`).
fn largest_power_of_two_below(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The top node of the stored full tile (`level`, `index`).
pub fn tile_root(source: &dyn TileSource, level: u8, index: u64) -> Result<Hash, LedgerError> {
    let id = TileId { level, index };
    let top = TILE_HEIGHT - 1;
    match (source.tile_hash(id, top, 0)?, source.tile_hash(id, top, 1)?) {
        (Some(left), Some(right)) => Ok(node_hash(&left, &right)),
        _ => Err(LedgerError::corrupt(format!(
            "tile {level}/{index} is missing"
        ))),
    }
}

/// Adapts the edge and the tile store to `tlog_tiles`' stored-hash-index reader.
struct Reader<'a> {
    edge: &'a TreeEdge,
    source: &'a dyn TileSource,
}

impl tlog_tiles::HashReader for Reader<'_> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&stored| {
                let (level, index) = tlog_tiles::split_stored_hash_index(stored);
                self.edge
                    .node(u32::from(level), index, self.source)
                    .map(Hash::to_tlog)
                    .map_err(|error| tlog_tiles::Error::InvalidInput(error.to_string()))
            })
            .collect()
    }
}

/// Builds the fat tile over 256 bottom-row hashes; `None` for any other count.
pub fn build_fat_tile(bottom: &[Hash]) -> Option<Vec<u8>> {
    if bottom.len() != TILE_WIDTH {
        return None;
    }
    let mut tile = EdgeTile::default();
    let mut top = None;
    for hash in bottom {
        top = tile.push_bottom(*hash);
    }
    top.map(|_| tile.encode())
}

/// The bottom row of a stored fat tile: the tlog-tiles hash tile of its level.
pub fn bottom_row(tile: &[u8]) -> Option<&[u8]> {
    tile.get(..TILE_WIDTH * HASH_LEN)
}

/// A tile source with no stored tiles (for trees that are built and read only at
/// their right edge, such as the offline verifier's).
#[derive(Debug)]
pub struct NoTiles;

impl TileSource for NoTiles {
    fn tile_hash(&self, _: TileId, _: u32, _: usize) -> Result<Option<Hash>, LedgerError> {
        Ok(None)
    }
}

/// Tiles completed by a batch that is not committed yet, over the store.
pub struct PendingTiles<'a> {
    pub pending: &'a [(TileId, Vec<u8>)],
    pub store: &'a dyn TileSource,
}

impl std::fmt::Debug for PendingTiles<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingTiles")
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl TileSource for PendingTiles<'_> {
    fn tile_hash(
        &self,
        id: TileId,
        row: u32,
        position: usize,
    ) -> Result<Option<Hash>, LedgerError> {
        match self.pending.iter().find(|(pending, _)| *pending == id) {
            Some((_, tile)) => hash_in_tile(tile, id, row, position).map(Some),
            None => self.store.tile_hash(id, row, position),
        }
    }
}
