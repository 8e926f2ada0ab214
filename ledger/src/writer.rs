//! Group commit: many concurrent (tokio) writers, one committing thread.
//!
//! Writers hand prepared entries to the committer over a channel and wait for
//! their receipt. The committer takes everything queued (up to `max_batch`),
//! waits up to `linger` for more if the batch is not full, then appends the batch
//! with one atomic, flushed write and one signed checkpoint. A writer is answered
//! only after that, so every receipt is durable and covered by its checkpoint.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::entry::{EntryDraft, PreparedEntry};
use crate::error::LedgerError;
use crate::log::Log;
use crate::receipt::Receipt;
use crate::store::LedgerStore;

/// How batches are cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// The most entries in one batch.
    pub max_batch: usize,
    /// How long a non-full batch waits for more entries before it is committed.
    pub linger: Duration,
    /// The most entries waiting for the committer; further writers wait.
    pub max_queued: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 4096,
            linger: Duration::from_micros(200),
            max_queued: 65_536,
        }
    }
}

struct Request {
    entry: PreparedEntry,
    reply: oneshot::Sender<Result<Receipt, LedgerError>>,
    /// Held until the committer answers, even if the writer stopped waiting, so
    /// the queue bound holds for abandoned requests too.
    _permit: OwnedSemaphorePermit,
}

/// A cloneable handle through which any task appends to the ledger.
#[derive(Clone, Debug)]
pub struct LedgerWriter {
    sender: Sender<Request>,
    queue: Arc<Semaphore>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").finish_non_exhaustive()
    }
}

/// The committing thread; joining it gives the log back (for a clean shutdown).
#[derive(Debug)]
pub struct Committer<S: LedgerStore + 'static> {
    thread: JoinHandle<Log<S>>,
}

impl<S: LedgerStore + 'static> Committer<S> {
    /// Waits until every handle is dropped and the last batch is committed.
    pub fn join(self) -> Result<Log<S>, LedgerError> {
        self.thread.join().map_err(|_| LedgerError::WriterStopped)
    }
}

/// Starts the committing thread over `log`.
pub fn spawn<S: LedgerStore + 'static>(
    log: Log<S>,
    config: BatchConfig,
) -> Result<(LedgerWriter, Committer<S>), LedgerError> {
    let (sender, receiver) = crossbeam_channel::unbounded();
    let queue = Arc::new(Semaphore::new(config.max_queued.max(1)));
    let in_flight = InFlight {
        queue: queue.clone(),
        capacity: config.max_queued.max(1),
    };
    let thread = std::thread::Builder::new()
        .name("writ-ledger-commit".into())
        .spawn(move || run(log, &receiver, config, &in_flight))
        .map_err(|error| LedgerError::CommitFailed {
            reason: format!("could not start the commit thread: {error}"),
        })?;
    let writer = LedgerWriter { sender, queue };
    Ok((writer, Committer { thread }))
}

impl LedgerWriter {
    /// Records `draft` and returns its receipt once it is durable and covered by a
    /// signed checkpoint. An error means the entry is not acknowledged.
    pub async fn append(&self, draft: &EntryDraft) -> Result<Receipt, LedgerError> {
        let entry = draft.prepare()?;
        self.append_prepared(entry).await
    }

    /// [`Self::append`] for an entry prepared beforehand.
    pub async fn append_prepared(&self, entry: PreparedEntry) -> Result<Receipt, LedgerError> {
        let permit = self
            .queue
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| LedgerError::WriterStopped)?;
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Request {
                entry,
                reply,
                _permit: permit,
            })
            .map_err(|_| LedgerError::WriterStopped)?;
        answer.await.map_err(|_| LedgerError::WriterStopped)?
    }
}

/// Counts the entries handed to the ledger and not yet answered.
struct InFlight {
    queue: Arc<Semaphore>,
    capacity: usize,
}

impl InFlight {
    fn count(&self) -> usize {
        self.capacity.saturating_sub(self.queue.available_permits())
    }
}

fn run<S: LedgerStore>(
    mut log: Log<S>,
    receiver: &Receiver<Request>,
    config: BatchConfig,
    in_flight: &InFlight,
) -> Log<S> {
    let max_batch = config.max_batch.max(1);
    let mut requests: Vec<Request> = Vec::with_capacity(max_batch);
    while let Ok(first) = receiver.recv() {
        requests.push(first);
        requests.extend(receiver.try_iter().take(max_batch - 1));
        if requests.len() < max_batch && !config.linger.is_zero() {
            let deadline = Instant::now() + config.linger;
            // Waiting is pointless once every entry in flight is in this batch.
            while requests.len() < max_batch && requests.len() < in_flight.count() {
                match receiver.recv_deadline(deadline) {
                    Ok(request) => {
                        requests.push(request);
                        let room = max_batch - requests.len();
                        requests.extend(receiver.try_iter().take(room));
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        }
        // The permits go with the replies: released once each writer is answered.
        let (entries, replies): (Vec<PreparedEntry>, Vec<_>) = requests
            .drain(..)
            .map(|request| (request.entry, (request.reply, request._permit)))
            .unzip();
        match log.append_batch(&entries) {
            Ok(receipts) => {
                for ((reply, _permit), receipt) in replies.into_iter().zip(receipts) {
                    // A writer that gave up waiting still has its entry recorded.
                    let _ = reply.send(Ok(receipt));
                }
            }
            Err(error) => {
                tracing::error!(%error, entries = entries.len(), "ledger batch failed; refusing all writes");
                let reason = error.to_string();
                for (reply, _permit) in replies {
                    let _ = reply.send(Err(LedgerError::CommitFailed {
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }
    log
}
