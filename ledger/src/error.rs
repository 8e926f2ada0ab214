//! The ledger's one error type: every variant names what failed, never a secret.

use crate::types::{LeafIndex, TreeSize};

/// Everything that can go wrong in the ledger, from a malformed proof to a bad data dir.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("malformed hash: {len} bytes instead of 32")]
    MalformedHash { len: usize },
    #[error("malformed base64 in {what}")]
    MalformedBase64 { what: &'static str },
    #[error("malformed proof: {reason}")]
    MalformedProof { reason: &'static str },
    #[error("index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange { index: LeafIndex, size: TreeSize },
    #[error("a consistency proof from the empty tree is refused")]
    EmptyOldTree,
    #[error("old size {old} is larger than new size {new}")]
    SizeOrder { old: TreeSize, new: TreeSize },
    #[error("the proof does not lead to the expected root")]
    RootMismatch,
    #[error("entry is {len} bytes; the limit is {max}")]
    EntryTooLarge { len: usize, max: usize },
    #[error("malformed entry: {reason}")]
    MalformedEntry { reason: String },
    #[error("field `{name}` is reserved and set by the ledger")]
    ReservedField { name: String },
    #[error("malformed signed note: {reason}")]
    MalformedNote { reason: String },
    #[error("malformed checkpoint: {reason}")]
    MalformedCheckpoint { reason: String },
    #[error("checkpoint origin `{found}` is not the expected `{expected}`")]
    OriginMismatch { expected: String, found: String },
    #[error("no signature by key `{key}` on the note")]
    UnsignedNote { key: String },
    #[error("bad signature by key `{key}`")]
    BadSignature { key: String },
    #[error("malformed verifier key: {reason}")]
    MalformedVerifierKey { reason: &'static str },
    #[error("malformed signing key: {reason}")]
    MalformedSigningKey { reason: &'static str },
    #[error("malformed receipt at line {line}: {reason}")]
    MalformedReceipt { line: usize, reason: &'static str },
    #[error("receipt leaf hash does not match the entry")]
    ReceiptEntryMismatch,
    #[error("storage error: {0}")]
    Storage(sled::Error),
    #[error("{path}: {error}")]
    Io { path: String, error: std::io::Error },
    #[error("key file `{path}`: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("the log is empty; there is nothing to export")]
    EmptyLog,
    #[error("no ledger in `{path}` (create one first)")]
    NoLedger { path: String },
    #[error("data dir `{path}` is in use by another process (stop the server first)")]
    DataDirBusy { path: String },
    #[error(
        "key file `{path}` has mode {mode:o}; it must be readable by its owner only (chmod 600)"
    )]
    KeyFilePermissions { path: String, mode: u32 },
    #[error("{at}: {reason}")]
    VerifyFailed { at: String, reason: String },
    #[error("data dir is corrupt: {what}")]
    Corrupt { what: String },
    #[error("the ledger writer has stopped; nothing more can be recorded")]
    WriterStopped,
    /// The entry is not acknowledged and must not be acted on. It may still have
    /// been recorded (the write reached the store but its sync failed, or a receipt
    /// could not be built after the sync), so a caller that retries can record the
    /// same request twice; the outcome entry tells them apart.
    #[error("the ledger could not record the batch: {reason}")]
    CommitFailed { reason: String },
}

impl LedgerError {
    pub(crate) fn corrupt(what: impl Into<String>) -> Self {
        Self::Corrupt { what: what.into() }
    }

    pub(crate) fn io(path: &std::path::Path, error: std::io::Error) -> Self {
        Self::Io {
            path: path.display().to_string(),
            error,
        }
    }
}

// Not `#[from]`: that would also make the sled error the `source`, and callers
// printing the chain would show its message twice.
impl From<sled::Error> for LedgerError {
    fn from(error: sled::Error) -> Self {
        Self::Storage(error)
    }
}
