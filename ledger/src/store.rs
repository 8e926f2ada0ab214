//! Storage: a small trait for what the ledger keeps, and its sled implementation.
//!
//! Everything lives in one sled tree under one-byte key prefixes, so that one
//! `apply_batch` writes a whole group commit atomically:
//! `e` + index (u64 BE) -> entry bytes; `t` + level (u8) + index (u64 BE) -> full
//! fat tile; `c` + size (u64 BE) -> time in ms (u64 BE) + signed checkpoint note;
//! `m` + name -> metadata (`size`, `verifier_key`, `format`).

use std::path::Path;
use std::sync::Mutex;

use crate::error::LedgerError;
use crate::hash::Hash;
use crate::tiles::{hash_in_tile, TileId, TileSource};
use crate::types::{LeafIndex, TreeSize};

/// The storage format written into metadata; a data dir of another format is refused.
pub const STORE_FORMAT: &str = "writ-ledger-sled-1";

/// One group commit: written atomically and made durable before anyone is answered.
#[derive(Debug, Default)]
pub struct CommitBatch {
    pub entries: Vec<(LeafIndex, Vec<u8>)>,
    pub tiles: Vec<(TileId, Vec<u8>)>,
    pub checkpoint: Option<StoredCheckpoint>,
    pub new_size: TreeSize,
}

/// A signed checkpoint as stored, with the time it was signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: TreeSize,
    pub unix_millis: u64,
    pub note: String,
}

/// Stored entries in index order.
pub type Entries<'a> = Box<dyn Iterator<Item = Result<(LeafIndex, Vec<u8>), LedgerError>> + 'a>;
/// Stored checkpoints in size order.
pub type Checkpoints<'a> = Box<dyn Iterator<Item = Result<StoredCheckpoint, LedgerError>> + 'a>;

/// What the ledger needs from storage. Implementations must make `commit` atomic
/// (all of the batch or none of it survives a crash) and durable before returning.
pub trait LedgerStore: TileSource + Send + Sync {
    /// The committed tree size (0 for a new store).
    fn size(&self) -> Result<TreeSize, LedgerError>;
    /// A metadata value.
    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, LedgerError>;
    /// Sets metadata values durably.
    fn set_meta(&self, values: &[(&str, &[u8])]) -> Result<(), LedgerError>;
    /// The entry at `index`.
    fn entry(&self, index: LeafIndex) -> Result<Option<Vec<u8>>, LedgerError>;
    /// Entries at or after `from`, in order.
    fn entries_from(&self, from: LeafIndex) -> Entries<'_>;
    /// Checkpoints at or after `from`, in size order.
    fn checkpoints_from(&self, from: TreeSize) -> Checkpoints<'_>;
    /// The checkpoint of the largest size.
    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LedgerError>;
    /// Writes and flushes one batch atomically.
    fn commit(&self, batch: CommitBatch) -> Result<(), LedgerError>;
    /// Removes checkpoints (retention); need not be durable at once.
    fn remove_checkpoints(&self, sizes: &[TreeSize]) -> Result<(), LedgerError>;
    /// Whether the store holds nothing at all (not even metadata).
    fn is_empty(&self) -> Result<bool, LedgerError>;
}

const ENTRY: u8 = b'e';
const TILE: u8 = b't';
const CHECKPOINT: u8 = b'c';
const META: u8 = b'm';

fn entry_key(index: LeafIndex) -> [u8; 9] {
    let mut key = [ENTRY; 9];
    key[1..].copy_from_slice(&index.0.to_be_bytes());
    key
}

fn tile_key(id: TileId) -> [u8; 10] {
    let mut key = [TILE; 10];
    key[1] = id.level;
    key[2..].copy_from_slice(&id.index.to_be_bytes());
    key
}

fn checkpoint_key(size: TreeSize) -> [u8; 9] {
    let mut key = [CHECKPOINT; 9];
    key[1..].copy_from_slice(&size.0.to_be_bytes());
    key
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut key = vec![META];
    key.extend_from_slice(name.as_bytes());
    key
}

fn read_u64(bytes: &[u8], what: &str) -> Result<u64, LedgerError> {
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| LedgerError::corrupt(format!("{what} is not 8 bytes")))?;
    Ok(u64::from_be_bytes(array))
}

fn decode_checkpoint(key: &[u8], value: &[u8]) -> Result<StoredCheckpoint, LedgerError> {
    let size = read_u64(key.get(1..).unwrap_or_default(), "checkpoint key")?;
    let (time, note) = value
        .split_at_checked(8)
        .ok_or_else(|| LedgerError::corrupt(format!("checkpoint {size} is truncated")))?;
    let note = String::from_utf8(note.to_vec())
        .map_err(|_| LedgerError::corrupt(format!("checkpoint {size} is not UTF-8")))?;
    Ok(StoredCheckpoint {
        size: TreeSize(size),
        unix_millis: read_u64(time, "checkpoint time")?,
        note,
    })
}

/// Keeps the most recently used full tile of each level, so proofs for a batch do
/// not re-read the same tiles (bounded: one tile per level).
#[derive(Debug, Default)]
struct TileCache {
    slots: Vec<Option<(u64, sled::IVec)>>,
}

/// The sled store of one data dir.
#[derive(Debug)]
pub struct SledStore {
    db: sled::Db,
    /// sled's log file, opened again so that a commit can `fdatasync` it: sled
    /// 0.34's `flush` only calls `sync_file_range`, which neither flushes the
    /// disk's write cache nor the file's metadata.
    log_file: std::fs::File,
    cache: Mutex<TileCache>,
}

/// sled writes a page larger than a quarter segment to a separate blob file that
/// it never fsyncs; 8 MiB segments keep every page of this store (a few hundred
/// KiB at most) inside the log file that `commit` syncs.
const SEGMENT_BYTES: usize = 8 << 20;

/// sled's page cache for the ledger. Appends never read back and proofs touch a
/// few tiles, so a small cache costs little; it is most of the server's resident
/// memory (sled counts serialized sizes, so its heap use is larger still).
pub const CACHE_BYTES: u64 = 64 * 1024 * 1024;

impl SledStore {
    /// Opens (or creates) the sled database at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .mode(sled::Mode::HighThroughput)
            .segment_size(SEGMENT_BYTES)
            .open()?;
        let log_path = path.join("db");
        let log_file =
            std::fs::File::open(&log_path).map_err(|error| LedgerError::io(&log_path, error))?;
        Ok(Self {
            db,
            log_file,
            cache: Mutex::new(TileCache::default()),
        })
    }

    /// Makes everything applied so far durable: sled's flush, then `fdatasync` of
    /// its log file.
    fn sync(&self) -> Result<(), LedgerError> {
        self.db.flush()?;
        self.log_file.sync_data().map_err(|error| LedgerError::Io {
            path: "ledger.db/db".into(),
            error,
        })
    }

    /// Bytes sled reports on disk (for the benchmarks).
    pub fn size_on_disk(&self) -> Result<u64, LedgerError> {
        Ok(self.db.size_on_disk()?)
    }

    fn scan<'a, T: 'a>(
        &'a self,
        start: Vec<u8>,
        prefix: u8,
        decode: impl Fn(&[u8], &[u8]) -> Result<T, LedgerError> + 'a,
    ) -> Box<dyn Iterator<Item = Result<T, LedgerError>> + 'a> {
        let end = [prefix.saturating_add(1)];
        Box::new(self.db.range(start..end.to_vec()).map(move |item| {
            let (key, value) = item?;
            decode(&key, &value)
        }))
    }
}

impl TileSource for SledStore {
    fn tile_hash(
        &self,
        id: TileId,
        row: u32,
        position: usize,
    ) -> Result<Option<Hash>, LedgerError> {
        let level = usize::from(id.level);
        let mut cache = self
            .cache
            .lock()
            .map_err(|_| LedgerError::corrupt("tile cache lock poisoned"))?;
        if let Some(Some((index, tile))) = cache.slots.get(level) {
            if *index == id.index {
                return hash_in_tile(tile, id, row, position).map(Some);
            }
        }
        let Some(tile) = self.db.get(tile_key(id))? else {
            return Ok(None);
        };
        let hash = hash_in_tile(&tile, id, row, position)?;
        if cache.slots.len() <= level {
            cache.slots.resize(level + 1, None);
        }
        if let Some(slot) = cache.slots.get_mut(level) {
            *slot = Some((id.index, tile));
        }
        Ok(Some(hash))
    }
}

impl LedgerStore for SledStore {
    fn size(&self) -> Result<TreeSize, LedgerError> {
        match self.db.get(meta_key("size"))? {
            None => Ok(TreeSize(0)),
            Some(bytes) => Ok(TreeSize(read_u64(&bytes, "stored size")?)),
        }
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.db.get(meta_key(name))?.map(|value| value.to_vec()))
    }

    fn set_meta(&self, values: &[(&str, &[u8])]) -> Result<(), LedgerError> {
        let mut batch = sled::Batch::default();
        for (name, value) in values {
            batch.insert(meta_key(name), *value);
        }
        self.db.apply_batch(batch)?;
        self.sync()
    }

    fn entry(&self, index: LeafIndex) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.db.get(entry_key(index))?.map(|value| value.to_vec()))
    }

    fn entries_from(&self, from: LeafIndex) -> Entries<'_> {
        self.scan(entry_key(from).to_vec(), ENTRY, |key, value| {
            let index = read_u64(key.get(1..).unwrap_or_default(), "entry key")?;
            Ok((LeafIndex(index), value.to_vec()))
        })
    }

    fn checkpoints_from(&self, from: TreeSize) -> Checkpoints<'_> {
        self.scan(checkpoint_key(from).to_vec(), CHECKPOINT, decode_checkpoint)
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let mut range = self
            .db
            .range(checkpoint_key(TreeSize(0)).to_vec()..vec![CHECKPOINT + 1]);
        match range.next_back() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item?;
                decode_checkpoint(&key, &value).map(Some)
            }
        }
    }

    fn commit(&self, batch: CommitBatch) -> Result<(), LedgerError> {
        let mut write = sled::Batch::default();
        for (index, bytes) in batch.entries {
            write.insert(&entry_key(index), bytes);
        }
        for (id, tile) in batch.tiles {
            write.insert(&tile_key(id), tile);
        }
        if let Some(checkpoint) = batch.checkpoint {
            let mut value = Vec::with_capacity(8 + checkpoint.note.len());
            value.extend_from_slice(&checkpoint.unix_millis.to_be_bytes());
            value.extend_from_slice(checkpoint.note.as_bytes());
            write.insert(&checkpoint_key(checkpoint.size), value);
        }
        write.insert(meta_key("size"), &batch.new_size.0.to_be_bytes());
        self.db.apply_batch(write)?;
        self.sync()
    }

    fn remove_checkpoints(&self, sizes: &[TreeSize]) -> Result<(), LedgerError> {
        let mut write = sled::Batch::default();
        for size in sizes {
            write.remove(&checkpoint_key(*size));
        }
        self.db.apply_batch(write)?;
        Ok(())
    }

    fn is_empty(&self) -> Result<bool, LedgerError> {
        Ok(self.db.is_empty())
    }
}
