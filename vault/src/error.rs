//! The vault's one error type.
//!
//! Messages name what is wrong and never carry key bytes or secret values; user
//! input appears only where it is a name (a secret name, a workspace), never a value.

use thiserror::Error;

use crate::ids::KekVersion;

/// Everything the vault core can refuse.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum VaultError {
    // ---- Names and bindings ------------------------------------------------
    #[error(
        "bad secret name `{0}`: use 1 to 128 characters of [A-Za-z0-9._-] and `/` between parts"
    )]
    BadSecretName(String),
    #[error("bad workspace `{0}`: 1 to 64 bytes of printable ASCII")]
    BadWorkspace(String),
    #[error("bad purpose `{0}`: 1 to 64 characters of [a-z0-9._-]")]
    BadPurpose(String),
    #[error("secret versions start at 1")]
    BadSecretVersion,
    #[error("a secret value may hold at most {max} bytes, this one has {len}")]
    ValueTooLarge { len: usize, max: usize },

    // ---- Envelopes ---------------------------------------------------------
    #[error("not a writ vault envelope (bad magic)")]
    EnvelopeMagic,
    #[error("envelope format version {0} is not supported")]
    EnvelopeVersion(u8),
    #[error("envelope algorithm {0} is not supported")]
    EnvelopeAlgorithm(u8),
    #[error("envelope is truncated ({0} bytes)")]
    EnvelopeTruncated(usize),
    #[error("the key that wrapped this secret (version {0}) is not in the key ring")]
    KekUnknown(KekVersion),
    #[error("the key that wrapped this secret (version {0}) is retired")]
    KekRetired(KekVersion),
    #[error(
        "the wrapped data key does not open: the envelope was altered or belongs to another secret"
    )]
    UnwrapFailed,
    #[error("the key commitment does not match: the envelope header was altered")]
    CommitmentMismatch,
    #[error("the ciphertext does not open: the envelope was altered or belongs to another secret")]
    DecryptFailed,

    // ---- The key ring ------------------------------------------------------
    #[error("malformed key ring: {0}")]
    RingMalformed(&'static str),
    #[error("key ring version {0} is not supported")]
    RingVersion(u8),
    #[error("cannot retire below version {min}: version {version} still wraps {count} data keys")]
    KekInUse {
        min: KekVersion,
        version: KekVersion,
        count: u64,
    },
    #[error("cannot retire the primary key (version {0}); rotate first")]
    RetirePrimary(KekVersion),
    #[error("the minimum decryption version is already {0}")]
    RetireBackwards(KekVersion),
    #[error("the key ring has no more key versions")]
    RingFull,

    // ---- Sealing -----------------------------------------------------------
    #[error("the vault is sealed")]
    Sealed,
    #[error("not a sealed writ key ring (bad magic)")]
    SealedMagic,
    #[error("sealed key ring format version {0} is not supported")]
    SealedVersion(u8),
    #[error("malformed sealed key ring: {0}")]
    SealedMalformed(&'static str),
    #[error("the key ring is sealed with {actual}, not {expected}")]
    WrongSealer {
        expected: &'static str,
        actual: &'static str,
    },
    #[error("wrong passphrase (or the sealed key ring was altered)")]
    WrongPassphrase,
    #[error("wrong key file: it is not the key this ring was sealed with")]
    WrongKeyFile,
    #[error("malformed key file: {0}")]
    KeyFileMalformed(&'static str),
    #[error("the key opens nothing: the sealed key ring was altered")]
    SealedTampered,
    #[error("argon2 parameters refused: {0}")]
    Argon2(String),

    // ---- Shamir shares -----------------------------------------------------
    #[error("malformed share: {0}")]
    ShareMalformed(&'static str),
    #[error("this share belongs to key ring {share_ring}, not to {ring}")]
    ShareWrongRing { share_ring: String, ring: String },
    #[error("share {0} was already given")]
    ShareDuplicate(u8),
    #[error("a threshold of {threshold} out of {shares} shares is not possible (2 <= threshold <= shares <= 255)")]
    ShareParameters { threshold: u8, shares: u8 },
    #[error("the shares do not open this key ring: one of them is wrong; start again")]
    SharesDoNotOpen,

    // ---- Storage -----------------------------------------------------------
    #[error("secret `{name}` has no version {version}")]
    NoSuchVersion { name: String, version: u32 },
    #[error("secret `{0}` does not exist")]
    NoSuchSecret(String),
    #[error("secret `{name}` version {version} was destroyed")]
    Destroyed { name: String, version: u32 },
    #[error("secret `{0}` has reached the last version number")]
    VersionsExhausted(String),
    #[error("malformed stored record: {0}")]
    RecordMalformed(&'static str),
    #[error("vault storage failed: {0}")]
    Storage(#[from] sled::Error),
    #[error("vault storage transaction failed: {0}")]
    Transaction(String),
}
