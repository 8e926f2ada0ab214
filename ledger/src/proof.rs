//! Pure verifiers for RFC 9162 inclusion (2.1.3) and consistency (2.1.4) proofs.
//!
//! Inputs are raw byte strings as they arrive from an attacker (a receipt, an API
//! answer, a test vector): every hash is length-checked here, sizes and indexes are
//! range-checked, and the proof length is bounded before any hashing. The proof
//! arithmetic itself is `tlog_tiles::check_record` / `check_tree` (a port of Go's
//! `sumdb/tlog`), which passed the transparency-dev vectors.

use crate::error::LedgerError;
use crate::hash::Hash;
use crate::types::{LeafIndex, TreeSize};

/// No proof in a tree of at most 2^64 leaves has more hashes than this.
pub const MAX_PROOF_HASHES: usize = 64;

/// Parses proof elements, refusing any that is not exactly 32 bytes and any proof
/// longer than a tree of 2^64 leaves could need.
pub fn parse_proof<B: AsRef<[u8]>>(elements: &[B]) -> Result<Vec<Hash>, LedgerError> {
    if elements.len() > MAX_PROOF_HASHES {
        return Err(LedgerError::MalformedProof {
            reason: "more than 64 hashes",
        });
    }
    elements
        .iter()
        .map(|element| {
            Hash::from_slice(element.as_ref()).map_err(|_| LedgerError::MalformedProof {
                reason: "a proof hash is not 32 bytes",
            })
        })
        .collect()
}

/// The exact number of hashes an inclusion proof for `index` in a tree of `size` has.
pub fn inclusion_proof_len(index: LeafIndex, size: TreeSize) -> usize {
    // RFC 9162 2.1.3.2: the path length is the bit length of (index XOR (size - 1))
    // plus the number of set bits of index above that (the "border" part).
    let last = size.0.saturating_sub(1);
    let inner = 64 - (index.0 ^ last).leading_zeros();
    let border = index.0.checked_shr(inner).unwrap_or(0).count_ones();
    (inner + border) as usize
}

/// Verifies that `leaf` is the leaf hash at `index` in the tree of `size` with `root`.
pub fn verify_inclusion(
    index: LeafIndex,
    size: TreeSize,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), LedgerError> {
    if !size.contains(index) {
        return Err(LedgerError::IndexOutOfRange { index, size });
    }
    if proof.len() != inclusion_proof_len(index, size) {
        return Err(LedgerError::MalformedProof {
            reason: "wrong number of hashes for this index and size",
        });
    }
    let tlog_proof: Vec<tlog_tiles::Hash> = proof.iter().map(|hash| hash.to_tlog()).collect();
    tlog_tiles::check_record(&tlog_proof, size.0, root.to_tlog(), index.0, leaf.to_tlog())
        .map_err(|_| LedgerError::RootMismatch)
}

/// [`verify_inclusion`] over raw bytes, as a proof arrives from outside.
pub fn verify_inclusion_bytes<B: AsRef<[u8]>>(
    index: u64,
    size: u64,
    leaf: &[u8],
    proof: &[B],
    root: &[u8],
) -> Result<(), LedgerError> {
    let leaf = Hash::from_slice(leaf)?;
    let root = Hash::from_slice(root)?;
    let proof = parse_proof(proof)?;
    verify_inclusion(LeafIndex(index), TreeSize(size), &leaf, &proof, &root)
}

/// Verifies that the tree of `new_size` with `new_root` extends the tree of
/// `old_size` with `old_root`.
///
/// As in the transparency-dev reference, an old size of 0 is always refused (the
/// empty tree needs no proof, and accepting one hides a caller's mistake), and equal
/// sizes need an empty proof and equal roots.
pub fn verify_consistency(
    old_size: TreeSize,
    new_size: TreeSize,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), LedgerError> {
    if old_size.0 == 0 {
        return Err(LedgerError::EmptyOldTree);
    }
    if old_size > new_size {
        return Err(LedgerError::SizeOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(LedgerError::MalformedProof {
                reason: "equal sizes need an empty proof",
            });
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(LedgerError::RootMismatch)
        };
    }
    let tlog_proof: Vec<tlog_tiles::Hash> = proof.iter().map(|hash| hash.to_tlog()).collect();
    tlog_tiles::check_tree(
        &tlog_proof,
        new_size.0,
        new_root.to_tlog(),
        old_size.0,
        old_root.to_tlog(),
    )
    .map_err(|_| LedgerError::RootMismatch)
}

/// [`verify_consistency`] over raw bytes.
pub fn verify_consistency_bytes<B: AsRef<[u8]>>(
    old_size: u64,
    new_size: u64,
    old_root: &[u8],
    new_root: &[u8],
    proof: &[B],
) -> Result<(), LedgerError> {
    let old_root = Hash::from_slice(old_root)?;
    let new_root = Hash::from_slice(new_root)?;
    let proof = parse_proof(proof)?;
    verify_consistency(
        TreeSize(old_size),
        TreeSize(new_size),
        &old_root,
        &new_root,
        &proof,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_lengths_match_rfc_examples() {
        // RFC 9162 2.1.3 example tree of 7 leaves.
        assert_eq!(inclusion_proof_len(LeafIndex(0), TreeSize(7)), 3);
        assert_eq!(inclusion_proof_len(LeafIndex(3), TreeSize(7)), 3);
        assert_eq!(inclusion_proof_len(LeafIndex(4), TreeSize(7)), 3);
        assert_eq!(inclusion_proof_len(LeafIndex(6), TreeSize(7)), 2);
        assert_eq!(inclusion_proof_len(LeafIndex(0), TreeSize(1)), 0);
        assert_eq!(inclusion_proof_len(LeafIndex(4), TreeSize(5)), 1);
        // Sizes above 2^63 shift by 64 bits: no overflow, and the right length.
        assert_eq!(inclusion_proof_len(LeafIndex(0), TreeSize(u64::MAX)), 64);
        assert_eq!(
            inclusion_proof_len(LeafIndex(u64::MAX - 1), TreeSize(u64::MAX)),
            63
        );
    }

    #[test]
    fn index_beyond_size_is_named() {
        let hash = Hash::empty_tree();
        let err = verify_inclusion(LeafIndex(5), TreeSize(5), &hash, &[], &hash).unwrap_err();
        assert!(matches!(err, LedgerError::IndexOutOfRange { .. }), "{err}");
    }
}
