//! Ledger micro-benchmarks: append cost against log size, proofs, the sled ceiling.
//!
//! Run with `cargo bench -p writ-ledger` (about two and a half minutes; the
//! 10^6-entry log is built once and reused). What each group shows:
//!
//! - `append_cost/{1e3,1e6}`: one durable `append_batch` of 64 entries of 200 bytes
//!   to a sled-backed log holding 10^3 resp. 10^6 entries. Sled's insert and
//!   flush dominate; the point is that the cost does not grow with the log.
//! - `append_cost_mem/{1e3,1e6}`: the same batch over an in-memory store, i.e.
//!   everything `Log` does (encode, hash, sign, receipts) without the storage.
//! - `tree_edge_push/{1e3,1e6}`: 256 `TreeEdge::push` calls (one full level-0 tile)
//!   on a tree of 10^3 resp. 10^6 leaves.
//! - `proof/{inclusion,consistency}@1e6`: proofs read through the sled store at a
//!   random index / old size of the 10^6-entry log.
//! - `raw_sled/batch64_flush{,@1e6}`: a plain sled `apply_batch` of 64 200-byte
//!   values, a `flush` and an `fdatasync` of its log file (what a ledger commit does),
//!   on an empty database resp. one holding 10^6 values: the
//!   ceiling a ledger batch of 64 could reach with this store on this machine.
#![expect(clippy::expect_used, reason = "benchmark setup")]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use writ_ledger::hash::Hash;
use writ_ledger::log::{Log, Retention, SystemClock};
use writ_ledger::store::{
    Checkpoints, CommitBatch, Entries, LedgerStore, SledStore, StoredCheckpoint,
};
use writ_ledger::tiles::{hash_in_tile, TileId, TileSource, TreeEdge};
use writ_ledger::{
    leaf_hash, EntryDraft, LeafIndex, LedgerError, LogSigner, PreparedEntry, TreeSize,
};

/// Size of every entry as stored (header included), as in the targets.
const ENTRY_BYTES: usize = 200;
/// Entries per measured batch: what 64 concurrent writers put in flight.
const BATCH: usize = 64;
/// Entries per batch while filling a log: the same 64 as the measured batches,
/// because sled keeps the shape of how it was written. Bulk-loading 10^6 entries
/// in batches of 4096 is faster, but leaves a store on which a 64-entry batch
/// plus flush costs about 1.5 ms instead of 0.7 to 1 ms (raw sled alike), a state
/// a ledger written by group commit never reaches.
const FILL_BATCH: usize = BATCH;
const SMALL: u64 = 1_000;
const LARGE: u64 = 1_000_000;

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    // The 10^6-entry sled log, built on first use and shared by the append and
    // proof benchmarks (building it takes about 25 s).
    let mut large: Option<Fixture<SledStore>> = None;
    append_cost(&mut criterion, &mut large);
    proofs(&mut criterion, &mut large);
    drop(large);
    append_cost_in_memory(&mut criterion);
    tree_edge_push(&mut criterion);
    raw_sled(&mut criterion);
    criterion.final_summary();
}

/// `count` prepared entries whose final encoding is about `ENTRY_BYTES` long.
fn prepared_entries(count: usize) -> Vec<PreparedEntry> {
    let draft = |pad: usize| EntryDraft {
        kind: "bench".into(),
        actor: "Agent::\"bench-0\"".into(),
        workspace: "bench".into(),
        fields: serde_json::json!({ "n": 0, "pad": "x".repeat(pad) })
            .as_object()
            .cloned()
            .unwrap_or_default(),
    };
    let probe = draft(0).prepare().expect("prepare");
    let now = std::time::SystemTime::now();
    let overhead = probe.encode(LeafIndex(LARGE), now).len();
    let entry = draft(ENTRY_BYTES.saturating_sub(overhead))
        .prepare()
        .expect("prepare");
    vec![entry; count]
}

fn signer() -> LogSigner {
    LogSigner::from_seed("bench.writ.local/ledger", &[7; 32]).expect("signer")
}

/// A log over some store, filled to a given size, with the batch to append.
struct Fixture<S: LedgerStore> {
    log: Log<S>,
    /// The size it was filled to.
    filled: u64,
    batch: Vec<PreparedEntry>,
    // Dropped last: the sled database lives in it.
    _dir: Option<tempfile::TempDir>,
}

impl<S: LedgerStore> Fixture<S> {
    fn fill(store: S, size: u64, dir: Option<tempfile::TempDir>) -> Self {
        let started = Instant::now();
        let mut log = Log::create(
            Arc::new(store),
            signer(),
            Arc::new(SystemClock),
            Retention::default(),
        )
        .expect("open log");
        let fill = prepared_entries(FILL_BATCH);
        while log.size().0 < size {
            let room = usize::try_from(size - log.size().0).unwrap_or(FILL_BATCH);
            let chunk = fill.get(..room.min(FILL_BATCH)).unwrap_or_default();
            log.append_batch(chunk).expect("fill");
        }
        if size >= LARGE {
            eprintln!(
                "filled a log to {size} entries in {:.1?}",
                started.elapsed()
            );
        }
        Self {
            log,
            filled: size,
            batch: prepared_entries(BATCH),
            _dir: dir,
        }
    }
}

impl Fixture<SledStore> {
    fn sled(size: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = SledStore::open(&dir.path().join("ledger.db")).expect("sled");
        Self::fill(store, size, Some(dir))
    }
}

impl Fixture<MemStore> {
    fn memory(size: u64) -> Self {
        Self::fill(MemStore::default(), size, None)
    }
}

/// Times `iters` appends of the fixture's batch. The small log is rebuilt (not
/// timed) whenever it has grown by 1024 entries, so it stays between 10^3 and
/// 2 * 10^3; the large one is built once and grows by a few percent during a run.
fn time_appends<S: LedgerStore>(
    fixture: &mut Fixture<S>,
    iters: u64,
    rebuild: impl Fn(u64) -> Fixture<S>,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        if fixture.filled < LARGE && fixture.log.size().0 >= fixture.filled + 1024 {
            *fixture = rebuild(fixture.filled);
        }
        let started = Instant::now();
        black_box(fixture.log.append_batch(&fixture.batch).expect("append"));
        total += started.elapsed();
    }
    total
}

fn append_cost(criterion: &mut Criterion, large: &mut Option<Fixture<SledStore>>) {
    let mut group = criterion.benchmark_group("append_cost");
    group
        .sample_size(15)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(BATCH as u64));
    // Criterion calls these closures once per sample: fixtures are built on first
    // use and kept outside them.
    let mut small = None;
    group.bench_function("1e3", |bencher| {
        let small = small.get_or_insert_with(|| Fixture::sled(SMALL));
        bencher.iter_custom(|iters| time_appends(small, iters, Fixture::sled));
    });
    group.bench_function("1e6", |bencher| {
        let large = large.get_or_insert_with(|| Fixture::sled(LARGE));
        bencher.iter_custom(|iters| time_appends(large, iters, Fixture::sled));
    });
    group.finish();
}

fn append_cost_in_memory(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("append_cost_mem");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(BATCH as u64));
    for (name, size) in [("1e3", SMALL), ("1e6", LARGE)] {
        let mut fixture = None;
        group.bench_function(name, |bencher| {
            let fixture = fixture.get_or_insert_with(|| Fixture::memory(size));
            bencher.iter_custom(|iters| time_appends(fixture, iters, Fixture::memory));
        });
    }
    group.finish();
}

/// A cheap deterministic PRNG (splitmix64) to vary proof positions.
struct SplitMix(u64);

impl SplitMix {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % bound.max(1)
    }
}

fn proofs(criterion: &mut Criterion, large: &mut Option<Fixture<SledStore>>) {
    let mut group = criterion.benchmark_group("proof");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3));
    let mut random = SplitMix(1);
    group.bench_function("inclusion@1e6", |bencher| {
        let log = &large.get_or_insert_with(|| Fixture::sled(LARGE)).log;
        let size = log.size();
        bencher.iter(|| {
            let index = LeafIndex(random.below(size.0));
            log.inclusion_proof(index, size).expect("inclusion proof")
        });
    });
    group.bench_function("consistency@1e6", |bencher| {
        let log = &large.get_or_insert_with(|| Fixture::sled(LARGE)).log;
        let size = log.size();
        bencher.iter(|| {
            let old = TreeSize(1 + random.below(size.0 - 1));
            log.consistency_proof(old, size).expect("consistency proof")
        });
    });
    group.finish();
}

fn tree_edge_push(criterion: &mut Criterion) {
    // 256 pushes from 10^3 and from 10^6 leaves each complete exactly one level-0
    // tile and no higher one, so both sizes do the same work per iteration. Each
    // iteration starts from a fresh copy of the tree (copied outside the timing).
    const PUSHES: usize = 256;
    let leaves: Vec<Hash> = (0u64..PUSHES as u64)
        .map(|n| leaf_hash(&n.to_be_bytes()))
        .collect();
    let mut group = criterion.benchmark_group("tree_edge_push");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Elements(PUSHES as u64));
    for (name, size) in [("1e3", SMALL), ("1e6", LARGE)] {
        let mut edge = None;
        group.bench_function(name, |bencher| {
            let edge = edge.get_or_insert_with(|| {
                let mut edge = TreeEdge::new();
                let mut completed = Vec::new();
                for n in 0..size {
                    edge.push(leaf_hash(&n.to_be_bytes()), &mut completed);
                    completed.clear();
                }
                edge
            });
            bencher.iter_batched_ref(
                || (edge.clone(), Vec::with_capacity(4)),
                |(edge, completed)| {
                    for leaf in &leaves {
                        edge.push(*leaf, completed);
                    }
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

fn raw_sled(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("raw_sled");
    group
        .sample_size(15)
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(BATCH as u64));
    for (name, prefill) in [("batch64_flush", 0), ("batch64_flush@1e6", LARGE)] {
        let mut db = None;
        group.bench_function(name, |bencher| {
            let db = db.get_or_insert_with(|| RawSled::filled(prefill));
            bencher.iter(|| db.insert(BATCH, true));
        });
    }
    group.finish();
}

/// A plain sled database configured like `SledStore::open`, holding 200-byte
/// values under keys shaped like the ledger's entry keys.
struct RawSled {
    db: sled::Db,
    /// sled's log file: the ledger `fdatasync`s it after every flush, and so does this.
    log_file: std::fs::File,
    next: u64,
    value: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl RawSled {
    fn filled(count: u64) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = sled::Config::new()
            .path(dir.path().join("raw.db"))
            .cache_capacity(256 * 1024 * 1024)
            .mode(sled::Mode::HighThroughput)
            .segment_size(8 << 20)
            .open()
            .expect("sled");
        let log_file = std::fs::File::open(dir.path().join("raw.db").join("db")).expect("log file");
        let mut raw = Self {
            db,
            log_file,
            next: 0,
            value: vec![b'x'; ENTRY_BYTES],
            _dir: dir,
        };
        while raw.next < count {
            raw.insert(
                FILL_BATCH.min(usize::try_from(count - raw.next).unwrap_or(FILL_BATCH)),
                false,
            );
        }
        raw.db.flush().expect("flush");
        raw
    }

    /// One `apply_batch` of `count` values, then a flush and `fdatasync` if asked.
    fn insert(&mut self, count: usize, flush: bool) {
        let mut batch = sled::Batch::default();
        for _ in 0..count {
            let mut key = vec![b'e'];
            key.extend_from_slice(&self.next.to_be_bytes());
            batch.insert(key, self.value.as_slice());
            self.next += 1;
        }
        self.db.apply_batch(batch).expect("apply_batch");
        if flush {
            self.db.flush().expect("flush");
            self.log_file.sync_data().expect("fdatasync");
        }
    }
}

/// Everything in memory: what the log costs without storage.
#[derive(Debug, Default)]
struct MemStore {
    inner: Mutex<MemInner>,
}

#[derive(Debug, Default)]
struct MemInner {
    size: TreeSize,
    meta: BTreeMap<String, Vec<u8>>,
    entries: BTreeMap<u64, Vec<u8>>,
    tiles: BTreeMap<TileId, Vec<u8>>,
    checkpoints: BTreeMap<u64, StoredCheckpoint>,
}

impl MemStore {
    fn lock(&self) -> MutexGuard<'_, MemInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl TileSource for MemStore {
    fn tile_hash(
        &self,
        id: TileId,
        row: u32,
        position: usize,
    ) -> Result<Option<Hash>, LedgerError> {
        match self.lock().tiles.get(&id) {
            Some(tile) => hash_in_tile(tile, id, row, position).map(Some),
            None => Ok(None),
        }
    }
}

impl LedgerStore for MemStore {
    fn size(&self) -> Result<TreeSize, LedgerError> {
        Ok(self.lock().size)
    }

    fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.lock().meta.get(name).cloned())
    }

    fn set_meta(&self, values: &[(&str, &[u8])]) -> Result<(), LedgerError> {
        let mut inner = self.lock();
        for (name, value) in values {
            inner.meta.insert((*name).to_owned(), value.to_vec());
        }
        Ok(())
    }

    fn entry(&self, index: LeafIndex) -> Result<Option<Vec<u8>>, LedgerError> {
        Ok(self.lock().entries.get(&index.0).cloned())
    }

    fn entries_from(&self, from: LeafIndex) -> Entries<'_> {
        let entries: Vec<_> = self
            .lock()
            .entries
            .range(from.0..)
            .map(|(index, bytes)| Ok((LeafIndex(*index), bytes.clone())))
            .collect();
        Box::new(entries.into_iter())
    }

    fn checkpoints_from(&self, from: TreeSize) -> Checkpoints<'_> {
        let checkpoints: Vec<_> = self
            .lock()
            .checkpoints
            .range(from.0..)
            .map(|(_, checkpoint)| Ok(checkpoint.clone()))
            .collect();
        Box::new(checkpoints.into_iter())
    }

    fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LedgerError> {
        Ok(self.lock().checkpoints.values().next_back().cloned())
    }

    fn commit(&self, batch: CommitBatch) -> Result<(), LedgerError> {
        let mut inner = self.lock();
        inner.entries.extend(
            batch
                .entries
                .into_iter()
                .map(|(index, bytes)| (index.0, bytes)),
        );
        inner.tiles.extend(batch.tiles);
        if let Some(checkpoint) = batch.checkpoint {
            inner.checkpoints.insert(checkpoint.size.0, checkpoint);
        }
        inner.size = batch.new_size;
        Ok(())
    }

    fn remove_checkpoints(&self, sizes: &[TreeSize]) -> Result<(), LedgerError> {
        let mut inner = self.lock();
        for size in sizes {
            inner.checkpoints.remove(&size.0);
        }
        Ok(())
    }

    fn is_empty(&self) -> Result<bool, LedgerError> {
        let inner = self.lock();
        Ok(inner.meta.is_empty()
            && inner.entries.is_empty()
            && inner.tiles.is_empty()
            && inner.checkpoints.is_empty())
    }
}
