//! writ-vault: envelope-encrypted secrets.
//!
//! Each secret version is sealed under its own data key (DEK), wrapped by a
//! key-encryption key (KEK) of a versioned [`KeyRing`]; the ring is sealed at rest
//! by a passphrase, a key file or Shamir shares ([`SealedRing`]). This crate does no
//! network I/O and never logs: randomness, time and storage come in as arguments.
//! The byte formats are specified in `docs/VAULT-FORMAT.md`.

pub mod envelope;
mod error;
mod ids;
pub mod keyring;
mod keys;
pub mod read;
pub mod rewrap;
pub mod seal;
pub mod shares;
pub mod store;

pub use envelope::{Binding, MAX_VALUE_LEN};
pub use error::VaultError;
pub use ids::{KekVersion, Purpose, SecretName, SecretVersion, Workspace, MAX_SECRET_NAME_LEN};
pub use keyring::{KekInfo, KeyRing, LedgerKey, RingId};
pub use keys::{Key, SecretValue, KEY_LEN};
pub use read::open_version;
pub use rewrap::{rewrap_batch, RewrapBatch};
pub use seal::{Argon2Cost, SealedRing, Sealer};
pub use shares::{ShareCollector, UnsealProgress};
pub use store::{SecretId, SecretStore, SledSecretStore, StoredVersion, VersionInfo};
