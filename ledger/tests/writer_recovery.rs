//! Group commit under concurrency, fail-closed commits, recovery checks of a
#![cfg(test)]
//! damaged data dir, and checkpoint retention with an injected clock.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use writ_ledger::log::{Clock, Log, Retention, SystemClock};
use writ_ledger::receipt::verify_receipt;
use writ_ledger::store::{Checkpoints, CommitBatch, Entries, LedgerStore, SledStore};
use writ_ledger::tiles::{TileId, TileSource};
use writ_ledger::writer::{spawn, BatchConfig};
use writ_ledger::{EntryDraft, Hash, LeafIndex, LedgerError, LogSigner, LogVerifier, TreeSize};

fn draft(n: u64) -> EntryDraft {
    EntryDraft {
        kind: "test.entry".into(),
        actor: "writ".into(),
        workspace: "-".into(),
        fields: serde_json::json!({ "n": n }).as_object().cloned().unwrap(),
    }
}

fn signer() -> LogSigner {
    LogSigner::from_seed("test.example/log", &[5u8; 32]).unwrap()
}

/// Opens the log in `store`, creating it when the store is empty.
fn open_log<S: LedgerStore>(store: Arc<S>) -> Result<Log<S>, LedgerError> {
    if store.is_empty()? {
        Log::create(store, signer(), Arc::new(SystemClock), Retention::default())
    } else {
        Log::open(store, signer(), Arc::new(SystemClock), Retention::default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_get_durable_verifiable_receipts() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let log = open_log(store).unwrap();
    let (writer, committer) = spawn(log, BatchConfig::default()).unwrap();
    let mut tasks = Vec::new();
    for worker in 0..32u64 {
        let writer = writer.clone();
        tasks.push(tokio::spawn(async move {
            let mut receipts = Vec::new();
            for n in 0..50 {
                receipts.push(writer.append(&draft(worker * 1000 + n)).await.unwrap());
            }
            receipts
        }));
    }
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.extend(task.await.unwrap());
    }
    drop(writer);
    let log = committer.join().unwrap();
    assert_eq!(log.size(), TreeSize(1600));
    let mut indexes: Vec<u64> = receipts.iter().map(|receipt| receipt.index.0).collect();
    indexes.sort_unstable();
    assert_eq!(
        indexes,
        (0..1600).collect::<Vec<_>>(),
        "every index exactly once"
    );
    let key = LogVerifier::from_verifier_key(&log.verifier_key()).unwrap();
    let store = log.store().clone();
    for receipt in receipts.iter().step_by(37) {
        let entry = store.entry(receipt.index).unwrap().unwrap();
        verify_receipt(receipt, &entry, &key).unwrap();
        // A receipt does not verify another entry.
        let other = store
            .entry(LeafIndex((receipt.index.0 + 1) % 1600))
            .unwrap()
            .unwrap();
        assert!(verify_receipt(receipt, &other, &key).is_err());
    }
}

/// A store whose commits can be made to fail, as a full disk would.
struct FlakyStore {
    inner: SledStore,
    fail: AtomicBool,
}

impl TileSource for FlakyStore {
    fn tile_hash(
        &self,
        id: TileId,
        row: u32,
        position: usize,
    ) -> Result<Option<Hash>, LedgerError> {
        self.inner.tile_hash(id, row, position)
    }
}

impl LedgerStore for FlakyStore {
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
    fn latest_checkpoint(
        &self,
    ) -> Result<Option<writ_ledger::store::StoredCheckpoint>, LedgerError> {
        self.inner.latest_checkpoint()
    }
    fn commit(&self, batch: CommitBatch) -> Result<(), LedgerError> {
        if self.fail.load(Ordering::SeqCst) {
            return Err(LedgerError::Io {
                path: "ledger.db".into(),
                error: std::io::Error::other("no space left on device"),
            });
        }
        self.inner.commit(batch)
    }
    fn remove_checkpoints(&self, sizes: &[TreeSize]) -> Result<(), LedgerError> {
        self.inner.remove_checkpoints(sizes)
    }
    fn is_empty(&self) -> Result<bool, LedgerError> {
        self.inner.is_empty()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_answers_errors_and_refuses_everything_after() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(FlakyStore {
        inner: SledStore::open(dir.path()).unwrap(),
        fail: AtomicBool::new(false),
    });
    let log = open_log(store.clone()).unwrap();
    let (writer, committer) = spawn(log, BatchConfig::default()).unwrap();
    writer.append(&draft(0)).await.unwrap();
    store.fail.store(true, Ordering::SeqCst);
    let err = writer.append(&draft(1)).await.unwrap_err();
    assert!(matches!(err, LedgerError::CommitFailed { .. }), "{err}");
    // The disk recovers, but the log stays closed: its tree ran ahead of the store.
    store.fail.store(false, Ordering::SeqCst);
    assert!(writer.append(&draft(2)).await.is_err());
    drop(writer);
    drop(committer.join().unwrap());
    // Reopening recovers at the last durable size and appends again.
    let mut log = open_log(store).unwrap();
    assert_eq!(log.size(), TreeSize(1));
    log.append_batch(&[draft(3).prepare().unwrap()]).unwrap();
    assert_eq!(log.size(), TreeSize(2));
}

fn filled(dir: &std::path::Path, entries: u64) -> Arc<SledStore> {
    let store = Arc::new(SledStore::open(dir).unwrap());
    let mut log = open_log(store.clone()).unwrap();
    let drafts: Vec<_> = (0..entries).map(|n| draft(n).prepare().unwrap()).collect();
    for chunk in drafts.chunks(100) {
        log.append_batch(chunk).unwrap();
    }
    store
}

fn rewrite_entry(store: &SledStore, index: u64, bytes: Vec<u8>) {
    let size = store.size().unwrap();
    store
        .commit(CommitBatch {
            entries: vec![(LeafIndex(index), bytes)],
            new_size: size,
            ..CommitBatch::default()
        })
        .unwrap();
}

#[test]
fn a_changed_tail_entry_is_refused_naming_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 700);
    let entry = store.entry(LeafIndex(650)).unwrap().unwrap();
    let forged = String::from_utf8(entry)
        .unwrap()
        .replace("\"n\":650", "\"n\":651");
    rewrite_entry(&store, 650, forged.into_bytes());
    let err = open_log(store).unwrap_err().to_string();
    assert!(err.contains("checkpoint 700 has root"), "{err}");
}

#[test]
fn a_changed_entry_under_the_last_full_tile_is_refused_naming_the_tile() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 700);
    let entry = store.entry(LeafIndex(300)).unwrap().unwrap();
    let forged = String::from_utf8(entry)
        .unwrap()
        .replace("\"n\":300", "\"n\":301");
    rewrite_entry(&store, 300, forged.into_bytes());
    let err = open_log(store).unwrap_err().to_string();
    assert!(err.contains("stored tile 0/1 does not match"), "{err}");
}

#[test]
fn an_entry_with_a_wrong_index_or_a_missing_checkpoint_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 10);
    let other = store.entry(LeafIndex(8)).unwrap().unwrap();
    rewrite_entry(&store, 9, other);
    let err = open_log(store.clone()).unwrap_err().to_string();
    assert!(err.contains("entry 9"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 10);
    store.remove_checkpoints(&[TreeSize(10)]).unwrap();
    let err = open_log(store).unwrap_err().to_string();
    assert!(
        err.contains("no checkpoint for the 10 stored entries"),
        "{err}"
    );
}

#[test]
fn entries_past_the_committed_size_are_refused_and_kept() {
    // A batch is one atomic write, so a crash cannot leave part of one: entries past
    // the committed size are damage, and the data dir is refused without a write.
    let dir = tempfile::tempdir().unwrap();
    let store = filled(dir.path(), 10);
    let stray = store.entry(LeafIndex(9)).unwrap().unwrap();
    rewrite_entry(&store, 11, stray);
    let err = open_log(store.clone()).unwrap_err().to_string();
    assert!(
        err.contains("entry 11 is stored past the committed size 10"),
        "{err}"
    );
    assert!(
        store.entry(LeafIndex(11)).unwrap().is_some(),
        "nothing is repaired"
    );
}

#[test]
fn a_store_without_metadata_is_not_a_new_log() {
    // The fork guard: a store that lost its metadata is refused, never re-stamped.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let err = Log::open(
        store.clone(),
        signer(),
        Arc::new(SystemClock),
        Retention::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("metadata"), "{err}");
    let store = filled(tempfile::tempdir().unwrap().path(), 3);
    let err = Log::create(store, signer(), Arc::new(SystemClock), Retention::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("not empty"), "{err}");
}

/// A clock the test moves forward.
struct SteppingClock(AtomicU64);

impl Clock for SteppingClock {
    fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.load(Ordering::SeqCst))
    }
}

#[test]
fn old_checkpoints_are_thinned_to_one_per_minute() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let start = 1_800_000_000_000u64;
    let clock = Arc::new(SteppingClock(AtomicU64::new(start)));
    let mut log =
        Log::create(store.clone(), signer(), clock.clone(), Retention::default()).unwrap();
    // Two hours, a batch every 10 seconds.
    let batches = 2 * 360;
    for n in 0..batches {
        clock.0.store(start + n * 10_000, Ordering::SeqCst);
        log.append_batch(&[draft(n).prepare().unwrap()]).unwrap();
    }
    let now = start + (batches - 1) * 10_000;
    let kept: Vec<_> = store
        .checkpoints_from(TreeSize(0))
        .map(Result::unwrap)
        .collect();
    let recent = kept
        .iter()
        .filter(|c| c.unix_millis >= now - 3_600_000)
        .count();
    let older: Vec<_> = kept
        .iter()
        .filter(|c| c.unix_millis < now - 3_600_000)
        .collect();
    assert_eq!(
        recent, 361,
        "every checkpoint of the last hour (both ends included) is kept"
    );
    let mut minutes: Vec<u64> = older.iter().map(|c| c.unix_millis / 60_000).collect();
    let count = minutes.len();
    minutes.dedup();
    assert_eq!(minutes.len(), count, "at most one per minute before that");
    assert!(count >= 59, "at least one per minute of operation: {count}");
    assert_eq!(kept.last().unwrap().size, TreeSize(batches));
}
