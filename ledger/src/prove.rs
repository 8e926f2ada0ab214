//! Proofs from an export directory: receipts for an entry and consistency proofs
//! between two signed checkpoints, read from the tlog-tiles hash tiles.
//!
//! The tiles of an export are not trusted: every proof is verified against the
//! signed checkpoint before it is returned.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::checkpoint::{Checkpoint, LogVerifier};
use crate::error::LedgerError;
use crate::files::read_bounded;
use crate::hash::{leaf_hash, node_hash, Hash, HASH_LEN};
use crate::proof::{verify_consistency, verify_inclusion};
use crate::receipt::Receipt;
use crate::tilepath::{split_bundle, tile_path, TileKind};
use crate::tiles::{TILE_HEIGHT, TILE_WIDTH};
use crate::types::{LeafIndex, TreeSize};
use crate::verify::MAX_EXPORT_FILE;

/// An export directory opened for proofs.
#[derive(Debug)]
pub struct ExportReader {
    dir: PathBuf,
    key: LogVerifier,
    latest: Checkpoint,
    tiles: RefCell<HashMap<(u8, u64), Vec<u8>>>,
}

fn failure(at: impl Into<String>, reason: impl Into<String>) -> LedgerError {
    LedgerError::VerifyFailed {
        at: at.into(),
        reason: reason.into(),
    }
}

impl ExportReader {
    /// Opens `dir`, verifying its latest checkpoint with `key`.
    pub fn open(dir: &Path, key: LogVerifier) -> Result<Self, LedgerError> {
        let note = read_bounded(&dir.join("checkpoint"), MAX_EXPORT_FILE)
            .map_err(|error| failure("checkpoint", error.to_string()))?;
        let latest = key
            .verify_checkpoint(&note)
            .map_err(|error| failure("checkpoint", error.to_string()))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            latest,
            tiles: RefCell::new(HashMap::new()),
        })
    }

    /// The latest signed checkpoint.
    pub fn latest(&self) -> &Checkpoint {
        &self.latest
    }

    /// The signed note of the checkpoint of `size` (the latest when `None`), verified.
    pub fn checkpoint(&self, size: Option<TreeSize>) -> Result<(String, Checkpoint), LedgerError> {
        if size.is_some_and(|size| size > self.latest.size) {
            return Err(failure(
                "checkpoint",
                format!("the latest checkpoint is for size {}", self.latest.size),
            ));
        }
        let relative = match size {
            Some(size) if size != self.latest.size => format!("checkpoints/{size}"),
            _ => "checkpoint".to_owned(),
        };
        let note = read_bounded(&self.dir.join(&relative), MAX_EXPORT_FILE)
            .and_then(|bytes| {
                String::from_utf8(bytes)
                    .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))
            })
            .map_err(|_| failure(&relative, "no signed checkpoint of this size in the export"))?;
        let checkpoint = self
            .key
            .verify_checkpoint(note.as_bytes())
            .map_err(|error| failure(&relative, error.to_string()))?;
        if size.is_some_and(|size| size != checkpoint.size) {
            return Err(failure(&relative, "its body names another size"));
        }
        Ok((note, checkpoint))
    }

    /// The entry at `index`, from its bundle.
    pub fn entry(&self, index: LeafIndex) -> Result<Vec<u8>, LedgerError> {
        let size = self.latest.size;
        if !size.contains(index) {
            return Err(LedgerError::IndexOutOfRange { index, size });
        }
        let number = index.0 / TILE_WIDTH as u64;
        let width = (size.0 - number * TILE_WIDTH as u64).min(TILE_WIDTH as u64) as usize;
        let path = tile_path(TileKind::Entries, number, width);
        let bundle = read_bounded(&self.dir.join(&path), MAX_EXPORT_FILE)
            .map_err(|error| failure(&path, error.to_string()))?;
        let entries = split_bundle(&bundle, number * TILE_WIDTH as u64, width)
            .map_err(|reason| failure(&path, reason))?;
        entries
            .get((index.0 % TILE_WIDTH as u64) as usize)
            .map(|entry| entry.to_vec())
            .ok_or_else(|| failure(&path, "truncated"))
    }

    /// A receipt for entry `index` against the signed checkpoint of `size`.
    pub fn prove(&self, index: LeafIndex, size: Option<TreeSize>) -> Result<Receipt, LedgerError> {
        let (note, checkpoint) = self.checkpoint(size)?;
        if !checkpoint.size.contains(index) {
            return Err(LedgerError::IndexOutOfRange {
                index,
                size: checkpoint.size,
            });
        }
        let proof = tlog_tiles::prove_record(checkpoint.size.0, index.0, self)
            .map_err(|error| failure("tile", error.to_string()))?;
        let proof: Vec<Hash> = proof.into_iter().map(Hash::from_tlog).collect();
        let entry = self.entry(index)?;
        verify_inclusion(
            index,
            checkpoint.size,
            &leaf_hash(&entry),
            &proof,
            &checkpoint.root,
        )
        .map_err(|error| failure(format!("entry {index}"), error.to_string()))?;
        Ok(Receipt {
            index,
            proof,
            checkpoint: note,
            extra: None,
        })
    }

    /// The consistency proof between the signed checkpoints of `old` and `new`.
    pub fn consistency(
        &self,
        old: TreeSize,
        new: Option<TreeSize>,
    ) -> Result<(Checkpoint, Checkpoint, Vec<Hash>), LedgerError> {
        let (_, old_checkpoint) = self.checkpoint(Some(old))?;
        self.consistency_from(old_checkpoint, new)
    }

    /// The consistency proof from a signed checkpoint the auditor kept (a note,
    /// verified with the trusted key; it need not be in the export) to the export's
    /// checkpoint of `new` (the latest when `None`). Fails if the export's tree
    /// does not extend it: a log that was rewritten since.
    pub fn consistency_from_note(
        &self,
        note: &[u8],
        new: Option<TreeSize>,
    ) -> Result<(Checkpoint, Checkpoint, Vec<Hash>), LedgerError> {
        let old_checkpoint = self
            .key
            .verify_checkpoint(note)
            .map_err(|error| failure("old checkpoint", error.to_string()))?;
        self.consistency_from(old_checkpoint, new)
    }

    fn consistency_from(
        &self,
        old_checkpoint: Checkpoint,
        new: Option<TreeSize>,
    ) -> Result<(Checkpoint, Checkpoint, Vec<Hash>), LedgerError> {
        let old = old_checkpoint.size;
        let (_, new_checkpoint) = self.checkpoint(new)?;
        if old.0 == 0 {
            return Err(LedgerError::EmptyOldTree);
        }
        if old > new_checkpoint.size {
            return Err(LedgerError::SizeOrder {
                old,
                new: new_checkpoint.size,
            });
        }
        let proof = if old == new_checkpoint.size {
            Vec::new()
        } else {
            tlog_tiles::prove_tree(new_checkpoint.size.0, old.0, self)
                .map_err(|error| failure("tile", error.to_string()))?
                .into_iter()
                .map(Hash::from_tlog)
                .collect()
        };
        verify_consistency(
            old,
            new_checkpoint.size,
            &old_checkpoint.root,
            &new_checkpoint.root,
            &proof,
        )
        .map_err(|error| {
            failure(
                format!("checkpoint {old}"),
                format!(
                    "the export at size {} does not extend it: {error}",
                    new_checkpoint.size
                ),
            )
        })?;
        Ok((old_checkpoint, new_checkpoint, proof))
    }

    /// The bottom-row hashes of hash tile (`level`, `index`): full, or the latest partial.
    fn tile(&self, level: u8, index: u64) -> Result<Vec<u8>, LedgerError> {
        if let Some(tile) = self.tiles.borrow().get(&(level, index)) {
            return Ok(tile.clone());
        }
        let nodes = self.latest.size.0 >> (u32::from(level) * TILE_HEIGHT);
        let width = (nodes - index * TILE_WIDTH as u64).min(TILE_WIDTH as u64) as usize;
        let path = tile_path(TileKind::Hashes(level), index, width);
        let tile = read_bounded(&self.dir.join(&path), MAX_EXPORT_FILE)
            .map_err(|error| failure(&path, error.to_string()))?;
        if tile.len() != width * HASH_LEN {
            return Err(failure(&path, "wrong length"));
        }
        self.tiles.borrow_mut().insert((level, index), tile.clone());
        Ok(tile)
    }

    /// Node (`level`, `index`): the hash of 2^k consecutive hashes of its tile row.
    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        let tile_level = level / TILE_HEIGHT;
        let k = level % TILE_HEIGHT;
        let first = index << k;
        let tile = self.tile(tile_level as u8, first / TILE_WIDTH as u64)?;
        let start = (first % TILE_WIDTH as u64) as usize;
        let hashes = (start..start + (1 << k))
            .map(|position| {
                tile.get(position * HASH_LEN..(position + 1) * HASH_LEN)
                    .ok_or_else(|| failure("tile", "node beyond the tile"))
                    .and_then(Hash::from_slice)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(subtree_root(&hashes))
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

impl tlog_tiles::HashReader for ExportReader {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<tlog_tiles::Hash>, tlog_tiles::Error> {
        indexes
            .iter()
            .map(|&stored| {
                let (level, index) = tlog_tiles::split_stored_hash_index(stored);
                self.node(u32::from(level), index)
                    .map(Hash::to_tlog)
                    .map_err(|error| tlog_tiles::Error::InvalidInput(error.to_string()))
            })
            .collect()
    }
}
