//! Property tests: our RFC 9162 proof verifiers against a plain recursive model
//! (PATH / PROOF of RFC 9162 2.1.3.1 and 2.1.4.1), with rs_merkle as a root oracle.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;

use common::*;
use proptest::prelude::*;
use proptest::sample::Index;
use writ_ledger::proof::{inclusion_proof_len, verify_consistency_bytes, verify_inclusion_bytes};
use writ_ledger::{node_hash, Hash, LeafIndex, TreeSize};

/// rs_merkle with RFC 6962 node hashing. Leaves are handed over already hashed
/// (`from_leaves` does not hash them) and `concat_and_hash` is overridden to prefix
/// 0x01. rs_merkle pairs nodes bottom-up and promotes an unpaired last node unchanged
/// (`concat_and_hash(left, None) == left`, see its `partial_tree.rs::build_tree`).
/// By induction every level then holds the complete 2^j-leaf subtrees followed by
/// the MTH of the leftover tail, which is exactly RFC 6962's left-balanced split at
/// the largest power of two below n. So its roots agree for every size, not only
/// for powers of two, and the tests below compare them at every sampled size.
#[derive(Clone, Debug)]
struct Sha256Rfc6962;

impl rs_merkle::Hasher for Sha256Rfc6962 {
    type Hash = [u8; 32];

    fn hash(data: &[u8]) -> [u8; 32] {
        use sha2::Digest as _;
        sha2::Sha256::digest(data).into()
    }

    fn concat_and_hash(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
        right.map_or(*left, |right| node_hash(&Hash(*left), &Hash(*right)).0)
    }
}

fn rs_merkle_root(leaves: &[Hash]) -> Hash {
    let raw: Vec<[u8; 32]> = leaves.iter().map(|leaf| leaf.0).collect();
    Hash(
        rs_merkle::MerkleTree::<Sha256Rfc6962>::from_leaves(&raw)
            .root()
            .unwrap(),
    )
}

/// Distinct leaves from random data: the index keeps any two leaves apart.
fn leaves(n: usize, seed: &[u8]) -> Vec<Hash> {
    let data: Vec<Vec<u8>> = (0..n)
        .map(|i| [&(i as u64).to_be_bytes(), seed].concat())
        .collect();
    leaf_hashes(&data)
}

fn raw(hashes: &[Hash]) -> Vec<[u8; 32]> {
    hashes.iter().map(|hash| hash.0).collect()
}

/// The shape of PATH(m, D[n]): for each hash, bottom-up, whether it is a right sibling.
/// A proof made for one (m, n) is accepted at another exactly when the shapes agree,
/// since the verifier then performs the very same hash computation; e.g. m = 0 has
/// the same shape in trees of 5 and 6 leaves. That is inherent to RFC 9162 (the
/// signed checkpoint binds the size), so "wrong index or size fails" is checked as
/// "fails unless the shape is identical".
fn inclusion_shape(m: u64, n: u64) -> Option<Vec<bool>> {
    if m >= n {
        return None;
    }
    if n == 1 {
        return Some(Vec::new());
    }
    let k = split(n as usize) as u64;
    let mut shape = if m < k {
        inclusion_shape(m, k)
    } else {
        inclusion_shape(m - k, n - k)
    }?;
    shape.push(m < k);
    Some(shape)
}

/// The shape of SUBPROOF(m, D[n], true): the recursion's branch tokens.
fn consistency_shape(m: u64, n: u64) -> Option<Vec<char>> {
    (m >= 1 && m <= n).then(|| subproof_shape(m, n, true))
}

fn subproof_shape(m: u64, n: u64, complete: bool) -> Vec<char> {
    if m == n {
        return vec![if complete { 'E' } else { 'N' }];
    }
    let k = split(n as usize) as u64;
    let mut shape = if m <= k {
        subproof_shape(m, k, complete)
    } else {
        subproof_shape(m - k, n - k, false)
    };
    shape.push(if m <= k { 'L' } else { 'R' });
    shape
}

fn flip(proof: &[[u8; 32]], element: usize, bit: usize) -> Vec<[u8; 32]> {
    let mut flipped = proof.to_vec();
    flipped[element][bit / 8] ^= 1 << (bit % 8);
    flipped
}

/// Every mutation of a valid inclusion proof (m in a tree of `leaves`) must fail.
fn check_inclusion(leaves: &[Hash], m: usize, pick: usize, bit: usize, extra: [u8; 32]) {
    let (n, root) = (leaves.len(), mth(leaves));
    let proof = raw(&inclusion_path(m, leaves));
    let leaf = leaves[m].0;
    assert_eq!(
        proof.len(),
        inclusion_proof_len(LeafIndex(m as u64), TreeSize(n as u64))
    );
    let verify = |index: u64, size: u64, leaf: &[u8; 32], proof: &[[u8; 32]], root: &[u8; 32]| {
        verify_inclusion_bytes(index, size, leaf, proof, root).is_ok()
    };
    assert!(
        verify(m as u64, n as u64, &leaf, &proof, &root.0),
        "{m} in {n}"
    );
    assert!(!verify(
        m as u64,
        n as u64,
        &flip(&[leaf], 0, bit)[0],
        &proof,
        &root.0
    ));
    assert!(!verify(
        m as u64,
        n as u64,
        &leaf,
        &proof,
        &flip(&[root.0], 0, bit)[0]
    ));
    let mut longer = proof.clone();
    longer.insert(pick % (proof.len() + 1), extra);
    assert!(
        !verify(m as u64, n as u64, &leaf, &longer, &root.0),
        "appended"
    );
    if !proof.is_empty() {
        let at = pick % proof.len();
        assert!(!verify(
            m as u64,
            n as u64,
            &leaf,
            &flip(&proof, at, bit),
            &root.0
        ));
        let mut shorter = proof.clone();
        shorter.remove(at);
        assert!(
            !verify(m as u64, n as u64, &leaf, &shorter, &root.0),
            "removed"
        );
    }
}

/// Every mutation of a valid consistency proof from `m` to all of `leaves` must fail.
fn check_consistency(leaves: &[Hash], m: usize, pick: usize, bit: usize, extra: [u8; 32]) {
    let (n, old, new) = (leaves.len() as u64, mth(&leaves[..m]), mth(leaves));
    let proof = raw(&consistency_proof(m, leaves));
    let verify = |old: &[u8; 32], new: &[u8; 32], proof: &[[u8; 32]]| {
        verify_consistency_bytes(m as u64, n, old, new, proof).is_ok()
    };
    assert!(verify(&old.0, &new.0, &proof), "{m} -> {n}");
    assert!(
        !verify(&flip(&[old.0], 0, bit)[0], &new.0, &proof),
        "old root flipped"
    );
    assert!(
        !verify(&old.0, &flip(&[new.0], 0, bit)[0], &proof),
        "new root flipped"
    );
    let mut longer = proof.clone();
    longer.insert(pick % (proof.len() + 1), extra);
    assert!(!verify(&old.0, &new.0, &longer), "appended");
    if !proof.is_empty() {
        let at = pick % proof.len();
        assert!(
            !verify(&old.0, &new.0, &flip(&proof, at, bit)),
            "bit flipped"
        );
        let mut shorter = proof.clone();
        shorter.remove(at);
        assert!(!verify(&old.0, &new.0, &shorter), "removed");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn model_proofs_verify_and_every_mutation_fails(
        n in 1usize..=300,
        seed in any::<[u8; 16]>(),
        (m, old, pick) in (any::<Index>(), any::<Index>(), any::<usize>()),
        bit in 0usize..256,
        extra in any::<[u8; 32]>(),
        (other_index, other_size, other_old) in (0u64..=602, 0u64..=602, 0u64..=602),
    ) {
        let leaves = leaves(n, &seed);
        let root = mth(&leaves);
        prop_assert_eq!(root, rs_merkle_root(&leaves), "rs_merkle root at {}", n);
        let (m, old) = (m.index(n), old.index(n) + 1);
        check_inclusion(&leaves, m, pick, bit, extra);
        check_consistency(&leaves, old, pick, bit, extra);

        // Wrong index or size: accepted only where the shape is identical (see above).
        let proof = raw(&inclusion_path(m, &leaves));
        let (m64, n64) = (m as u64, n as u64);
        let shape = inclusion_shape(m64, n64);
        for (index, size) in [(other_index, n64), (m64, other_size), (other_index, other_size)] {
            let ok = verify_inclusion_bytes(index, size, &leaves[m].0, &proof, &root.0).is_ok();
            prop_assert_eq!(ok, inclusion_shape(index, size) == shape, "({}, {})", index, size);
        }
        let proof = raw(&consistency_proof(old, &leaves));
        let old_root = mth(&leaves[..old]);
        let shape = consistency_shape(old as u64, n64);
        for (from, to) in [(other_old, n64), (old as u64, other_size), (other_old, other_size)] {
            let ok = verify_consistency_bytes(from, to, &old_root.0, &root.0, &proof).is_ok();
            prop_assert_eq!(ok, consistency_shape(from, to) == shape, "{} -> {}", from, to);
        }
    }
}

#[test]
fn small_trees_exhaustively_accept_exactly_the_same_shape() {
    let all = leaves(24, b"exhaustive");
    let (mut inclusion_elsewhere, mut consistency_elsewhere) = (0, 0);
    for n in 1..=16usize {
        let leaves = &all[..n];
        let root = mth(leaves);
        assert_eq!(root, rs_merkle_root(leaves), "rs_merkle root at {n}");
        for m in 0..n {
            check_inclusion(leaves, m, m * 7 + n, (m * 31 + n) % 256, [n as u8; 32]);
            let proof = raw(&inclusion_path(m, leaves));
            for size in 0..=24u64 {
                for index in 0..=size {
                    let ok = verify_inclusion_bytes(index, size, &leaves[m].0, &proof, &root.0);
                    let same = inclusion_shape(index, size) == inclusion_shape(m as u64, n as u64);
                    assert_eq!(ok.is_ok(), same, "P({m}, {n}) at ({index}, {size})");
                    inclusion_elsewhere += usize::from(same && size != n as u64);
                }
            }
        }
        for old in 1..=n {
            check_consistency(
                leaves,
                old,
                old * 5 + n,
                (old * 17 + n) % 256,
                [n as u8; 32],
            );
            let proof = raw(&consistency_proof(old, leaves));
            let old_root = mth(&leaves[..old]).0;
            for to in 0..=24u64 {
                for from in 0..=to + 1 {
                    let ok = verify_consistency_bytes(from, to, &old_root, &root.0, &proof);
                    let same =
                        consistency_shape(from, to) == consistency_shape(old as u64, n as u64);
                    assert_eq!(ok.is_ok(), same, "PROOF({old}, {n}) at {from} -> {to}");
                    consistency_elsewhere +=
                        usize::from(same && (from, to) != (old as u64, n as u64));
                }
            }
        }
    }
    println!("accepted at another size: {inclusion_elsewhere} inclusion, {consistency_elsewhere} consistency");
    // Same-shape acceptances do occur (e.g. leaf 0 of 5 verifies as leaf 0 of 6, and
    // PROOF(4, 5) = [leaf 4] verifies as 4 -> 6 against the root of 5 leaves).
    assert!(inclusion_elsewhere > 0 && consistency_elsewhere > 0);
    let five = &all[..5];
    let path = raw(&inclusion_path(0, five));
    assert!(verify_inclusion_bytes(0, 6, &five[0].0, &path, &mth(five).0).is_ok());
}

#[test]
fn bigger_trees_verify_at_boundary_positions() {
    for n in [1000usize, 1023, 1024, 1025, 4097] {
        let leaves = leaves(n, b"bigger");
        assert_eq!(
            mth(&leaves),
            rs_merkle_root(&leaves),
            "rs_merkle root at {n}"
        );
        let k = split(n);
        for m in [0, 1, n / 3, k - 1, k.min(n - 1), n - 2, n - 1] {
            check_inclusion(&leaves, m, m, m % 256, [7; 32]);
        }
        for old in [1, 2, n / 3, k - 1, k, k + 1, n - 1, n] {
            check_consistency(&leaves, old, old, old % 256, [9; 32]);
        }
    }
}
