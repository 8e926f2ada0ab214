//! Public Merkle known-answer vectors: transparency-dev inclusion/consistency, the
//! RFC 6962 reference tree, and real Certificate Transparency (Argon 2020) proofs.
//!
//! Not covered: `testdata/subtreeinclusion/` and `testdata/subtreeconsistency/`
//! (the draft-ietf-plants-merkle-tree-certs "subtree" generalisation); the ledger
//! does not implement MTC subtree proofs. The MTC subtree *hash* digest is checked.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use common::*;
use sha2::{Digest, Sha256};
use writ_ledger::proof::{verify_consistency_bytes, verify_inclusion_bytes};
use writ_ledger::{leaf_hash, node_hash, Hash, LedgerError};

/// Consistency vectors the reference accepts but we refuse on purpose: our verifier
/// takes only 32-byte roots, even for size1 == size2 where the reference compares
/// arbitrary "don't care" byte strings. Must match exactly what occurs.
const REFUSED_NON_32_BYTE_ROOTS: &[&str] =
    &["additional/sizes-are-equal-one-and-proof-is-empty.json"];

fn testdata(kind: &str) -> std::path::PathBuf {
    vectors_dir()
        .join("transparency-dev-merkle/testdata")
        .join(kind)
}

fn relative(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).unwrap().display().to_string()
}

#[test]
fn transparency_dev_inclusion_vectors_match_want_err() {
    let base = testdata("inclusion");
    let files = json_files(&base);
    assert_eq!(files.len(), 98, "expected all 98 inclusion vectors");
    let (mut accepted, mut rejected) = (0, 0);
    for file in &files {
        let name = relative(file, &base);
        let v = read_json(file);
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            verify_inclusion_bytes(
                u64_field(&v, "leafIdx"),
                u64_field(&v, "treeSize"),
                &b64(&v["leafHash"]),
                &b64_list(&v["proof"]),
                &b64(&v["root"]),
            )
        }));
        assert!(outcome.is_ok(), "{name}: the verifier panicked");
        let got_err = outcome.unwrap().is_err();
        assert_eq!(
            got_err,
            v["wantErr"].as_bool().unwrap(),
            "{name}: {}",
            v["desc"]
        );
        if got_err {
            rejected += 1;
        } else {
            accepted += 1;
        }
    }
    // 5 happy paths (inclusion/0..4) + single-entry/matching-root-and-leaf.
    assert_eq!((accepted, rejected), (6, 92));
}

#[test]
fn transparency_dev_consistency_vectors_match_want_err_except_named_root_lengths() {
    let base = testdata("consistency");
    let files = json_files(&base);
    assert_eq!(files.len(), 98, "expected all 98 consistency vectors");
    let (mut accepted, mut rejected) = (0, 0);
    let mut refused_roots = Vec::new();
    for file in &files {
        let name = relative(file, &base);
        let v = read_json(file);
        let (root1, root2) = (b64(&v["root1"]), b64(&v["root2"]));
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            verify_consistency_bytes(
                u64_field(&v, "size1"),
                u64_field(&v, "size2"),
                &root1,
                &root2,
                &b64_list(&v["proof"]),
            )
        }));
        assert!(outcome.is_ok(), "{name}: the verifier panicked");
        let result = outcome.unwrap();
        let want_err = v["wantErr"].as_bool().unwrap();
        if !want_err && (root1.len() != 32 || root2.len() != 32) {
            assert!(
                matches!(result, Err(LedgerError::MalformedHash { .. })),
                "{name}: a non-32-byte root must be refused as a malformed hash, got {result:?}"
            );
            refused_roots.push(name);
            continue;
        }
        assert_eq!(
            result.is_err(),
            want_err,
            "{name}: {} ({result:?})",
            v["desc"]
        );
        if want_err {
            rejected += 1;
        } else {
            accepted += 1;
        }
    }
    println!("accepted by the reference, refused by us (root not 32 bytes): {refused_roots:?}");
    assert_eq!(refused_roots, REFUSED_NON_32_BYTE_ROOTS);
    // Happy paths (1,1) (1,8) (6,8) (2,5) (6,7) plus additional/ edge cases.
    assert_eq!((accepted, rejected, refused_roots.len()), (5, 92, 1));
}

fn reference_tree() -> (serde_json::Value, Vec<Hash>) {
    let tree = read_json(&vectors_dir().join("rfc6962-reference-tree.json"));
    let inputs: Vec<Vec<u8>> = tree["leaf_inputs_hex"]
        .as_array()
        .unwrap()
        .iter()
        .map(|input| hex(input.as_str().unwrap()))
        .collect();
    assert_eq!(inputs.len(), 8);
    (tree, leaf_hashes(&inputs))
}

fn hex_hash(value: &serde_json::Value) -> Hash {
    Hash::from_slice(&hex(value.as_str().unwrap())).unwrap()
}

#[test]
fn reference_tree_roots_and_node_hashes_match() {
    let (tree, leaves) = reference_tree();
    let roots = tree["root_hashes_by_size_hex"].as_array().unwrap();
    assert_eq!(roots.len(), 9);
    for (n, root) in roots.iter().enumerate() {
        assert_eq!(mth(&leaves[..n]), hex_hash(root), "root of size {n}");
    }
    let levels = tree["node_hashes_by_level_hex"].as_array().unwrap();
    assert_eq!(levels.len(), 4);
    for (level, nodes) in levels.iter().enumerate() {
        let width = 1 << level;
        let nodes = nodes.as_array().unwrap();
        assert_eq!(nodes.len(), 8 / width);
        for (i, node) in nodes.iter().enumerate() {
            let want = hex_hash(node);
            assert_eq!(
                mth(&leaves[i * width..(i + 1) * width]),
                want,
                "level {level} #{i}"
            );
            if level == 1 {
                assert_eq!(node_hash(&leaves[2 * i], &leaves[2 * i + 1]), want);
            }
        }
    }
}

#[test]
fn reference_tree_model_proofs_all_verify() {
    let (_, leaves) = reference_tree();
    let bytes = |hashes: Vec<Hash>| -> Vec<[u8; 32]> { hashes.iter().map(|h| h.0).collect() };
    for n in 1..=8 {
        let root = mth(&leaves[..n]);
        for m in 0..n {
            let path = bytes(inclusion_path(m, &leaves[..n]));
            let result = verify_inclusion_bytes(m as u64, n as u64, &leaves[m].0, &path, &root.0);
            assert!(result.is_ok(), "inclusion {m} in {n}: {result:?}");
        }
        for m in 1..=n {
            let proof = bytes(consistency_proof(m, &leaves[..n]));
            let old = mth(&leaves[..m]);
            let result = verify_consistency_bytes(m as u64, n as u64, &old.0, &root.0, &proof);
            assert!(result.is_ok(), "consistency {m} -> {n}: {result:?}");
        }
    }
}

#[test]
fn mtc_subtree_hash_rolling_digest_matches() {
    let (tree, _) = reference_tree();
    let want = tree["mtc_subtree_accumulated_vectors"]["subtree_hash_rolling_sha256"]
        .as_str()
        .unwrap();
    let data: Vec<[u8; 1]> = (0..130u8).map(|i| [i]).collect();
    let leaves = leaf_hashes(&data);
    let mut digest = Sha256::new();
    for end in 0..=130usize {
        for start in 0..=end {
            let valid =
                start == 0 || start == end || start % (end - start).next_power_of_two() == 0;
            if valid {
                let hash = mth(&leaves[start..end]);
                digest.update(format!("[{start}, {end}) {}\n", to_hex(&hash.0)));
            }
        }
    }
    assert_eq!(to_hex(&digest.finalize()), want);
}

struct Argon {
    leaf: Hash,
    path: Vec<Vec<u8>>,
    size: u64,
    root: Vec<u8>,
    old_size: u64,
    old_root: Vec<u8>,
    consistency: Vec<Vec<u8>>,
}

fn argon() -> Argon {
    let dir = vectors_dir().join("ct-argon2020-real");
    let sth = read_json(&dir.join("get-sth.json"));
    let entries = read_json(&dir.join("get-entries-start-10000-end-10000.json"));
    let proof = read_json(&dir.join("get-proof-by-hash-leaf10000-size961984011.json"));
    let old = read_json(&dir.join("old_root.json"));
    let consistency =
        read_json(&dir.join("get-sth-consistency-first-3654490-second-961984011.json"));
    assert_eq!(u64_field(&proof, "leaf_index"), 10000);
    Argon {
        leaf: leaf_hash(&b64(&entries["entries"][0]["leaf_input"])),
        path: b64_list(&proof["audit_path"]),
        size: u64_field(&sth, "tree_size"),
        root: b64(&sth["sha256_root_hash"]),
        old_size: u64_field(&old, "tree_size"),
        old_root: b64(&old["sha256_root_hash"]),
        consistency: b64_list(&consistency["consistency"]),
    }
}

#[test]
fn ct_argon2020_real_proofs_verify() {
    let a = argon();
    assert_eq!(
        a.leaf.to_base64(),
        "nCs3mfIydh9x4CKyQ+u2xtmpxmFggA5MLymHwNQSlLg="
    );
    assert_eq!((a.size, a.old_size), (961_984_011, 3_654_490));
    assert_eq!((a.path.len(), a.consistency.len()), (30, 30));
    verify_inclusion_bytes(10000, a.size, &a.leaf.0, &a.path, &a.root).unwrap();
    verify_consistency_bytes(a.old_size, a.size, &a.old_root, &a.root, &a.consistency).unwrap();
    // Neighbouring positions and sizes do not verify.
    assert!(verify_inclusion_bytes(10001, a.size, &a.leaf.0, &a.path, &a.root).is_err());
    assert!(verify_inclusion_bytes(10000, a.old_size, &a.leaf.0, &a.path, &a.root).is_err());
    assert!(
        verify_consistency_bytes(a.old_size + 1, a.size, &a.old_root, &a.root, &a.consistency)
            .is_err()
    );
}

#[test]
fn ct_argon2020_every_single_bit_flip_in_either_proof_fails() {
    let a = argon();
    for element in 0..30 {
        for bit in 0..256 {
            let mut path = a.path.clone();
            path[element][bit / 8] ^= 1 << (bit % 8);
            let inclusion = verify_inclusion_bytes(10000, a.size, &a.leaf.0, &path, &a.root);
            assert!(inclusion.is_err(), "inclusion element {element} bit {bit}");
            let mut proof = a.consistency.clone();
            proof[element][bit / 8] ^= 1 << (bit % 8);
            let consistency =
                verify_consistency_bytes(a.old_size, a.size, &a.old_root, &a.root, &proof);
            assert!(
                consistency.is_err(),
                "consistency element {element} bit {bit}"
            );
        }
    }
}
