//! RFC 6962 / RFC 9162 hashing: the 32-byte `Hash`, leaf and interior node hashes.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::LedgerError;

/// Length of every hash in the tree (SHA-256).
pub const HASH_LEN: usize = 32;

/// A SHA-256 hash of a leaf, an interior node or a whole tree.
///
/// Equality is constant-time (roots are compared with attacker-chosen proofs).
#[derive(Clone, Copy, Eq)]
pub struct Hash(pub [u8; HASH_LEN]);

impl PartialEq for Hash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for Hash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Hash({})", self.to_base64())
    }
}

impl Hash {
    /// `MTH({})`: the hash of the empty tree, SHA-256 of the empty string.
    pub fn empty_tree() -> Self {
        Self(Sha256::digest([]).into())
    }

    /// Parses exactly 32 bytes; any other length is refused.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, LedgerError> {
        let array: [u8; HASH_LEN] = bytes
            .try_into()
            .map_err(|_| LedgerError::MalformedHash { len: bytes.len() })?;
        Ok(Self(array))
    }

    /// Parses standard (padded) base64 of exactly 32 bytes.
    pub fn from_base64(text: &str) -> Result<Self, LedgerError> {
        let bytes = BASE64
            .decode(text)
            .map_err(|_| LedgerError::MalformedBase64 { what: "hash" })?;
        Self::from_slice(&bytes)
    }

    /// Standard padded base64, as used in checkpoints and receipts.
    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0)
    }

    pub(crate) fn to_tlog(self) -> tlog_tiles::Hash {
        tlog_tiles::Hash(self.0)
    }

    pub(crate) fn from_tlog(hash: tlog_tiles::Hash) -> Self {
        Self(hash.0)
    }
}

/// Leaf hash: `SHA-256(0x00 || entry bytes)`.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x00]);
    hasher.update(entry);
    Hash(hasher.finalize().into())
}

/// Interior node hash: `SHA-256(0x01 || left || right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([0x01]);
    hasher.update(left.0);
    hasher.update(right.0);
    Hash(hasher.finalize().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_tree_hash_is_sha256_of_nothing() {
        assert_eq!(
            Hash::empty_tree().to_base64(),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
    }

    #[test]
    fn wrong_lengths_are_refused() {
        assert!(Hash::from_slice(&[0u8; 31]).is_err());
        assert!(Hash::from_slice(&[0u8; 33]).is_err());
        assert!(Hash::from_base64("V3JvbmdMZWFm").is_err());
        assert!(Hash::from_base64("not base64!").is_err());
    }
}
