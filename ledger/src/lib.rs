//! writ-ledger: the append-only, signed, Merkle-anchored ledger.
//!
//! Pure parts (no I/O): [`entry`], [`hash`], [`proof`], [`checkpoint`], [`receipt`],
//! [`tiles`]. Storage and the concurrent writer sit at the edge: [`store`] (sled),
//! [`log`] (the single-writer core with recovery), [`writer`] (group commit on
//! tokio), [`export`] and [`verify`] (the offline auditor).

pub mod checkpoint;
pub mod datadir;
pub mod entry;
pub mod error;
pub mod export;
pub mod files;
pub mod hash;
pub mod log;
pub mod proof;
pub mod prove;
pub mod receipt;
pub mod store;
pub mod tile_reader;
pub mod tilepath;
pub mod tiles;
pub mod types;
pub mod verify;
pub mod writer;

pub use checkpoint::{Checkpoint, KeyRing, LogSigner, LogVerifier};
pub use entry::{EntryDraft, PreparedEntry, MAX_ENTRY_BYTES};
pub use error::LedgerError;
pub use hash::{leaf_hash, node_hash, Hash};
pub use receipt::{verify_receipt, Receipt};
pub use types::{LeafIndex, TreeSize};
