//! Shared helpers for the known-answer and model tests: where the public vectors
//! live, JSON/base64/hex decoding, and a plain RFC 9162 reference model.
#![allow(
    dead_code,
    reason = "each test file uses a different subset of these helpers"
)]

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;
use writ_ledger::{leaf_hash, node_hash, Hash};

/// The public vectors, copied unchanged into `ledger/tests/vectors/` (their sources
/// are named in its README.md) so that the tests need nothing outside the repository.
const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors");

/// The vectors directory; fails loudly (never skips) when it is missing.
pub(crate) fn vectors_dir() -> PathBuf {
    let dir = Path::new(VECTORS);
    assert!(
        dir.join("README.md").is_file(),
        "known-answer vectors not found at {} (the copy of the public vectors \
         in ledger/tests/vectors); these tests must not pass without them",
        dir.display()
    );
    dir.to_path_buf()
}

pub(crate) fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
        .unwrap();
    serde_json::from_str(&text)
        .map_err(|error| format!("{} is not JSON: {error}", path.display()))
        .unwrap()
}

/// Every `*.json` file below `dir`, sorted, so failures name a stable file.
pub(crate) fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let entries = std::fs::read_dir(&current)
            .map_err(|error| format!("cannot list {}: {error}", current.display()))
            .unwrap();
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "json") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// Standard padded base64 from a JSON string; JSON `null` is the empty string.
pub(crate) fn b64(value: &Value) -> Vec<u8> {
    match value {
        Value::Null => Vec::new(),
        other => BASE64
            .decode(other.as_str().expect("base64 field is a string"))
            .expect("vector base64 decodes"),
    }
}

/// A list of base64 strings; JSON `null` is the empty list (Go's nil slice).
pub(crate) fn b64_list(value: &Value) -> Vec<Vec<u8>> {
    match value {
        Value::Null => Vec::new(),
        other => other.as_array().expect("list").iter().map(b64).collect(),
    }
}

pub(crate) fn hex(text: &str) -> Vec<u8> {
    assert!(text.len() % 2 == 0, "odd-length hex {text:?}");
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).expect("hex digit"))
        .collect()
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub(crate) fn u64_field(value: &Value, name: &str) -> u64 {
    value[name]
        .as_u64()
        .ok_or_else(|| format!("field {name} is not a u64"))
        .unwrap()
}

// ---- A plain RFC 9162 section 2.1 reference model (no shortcuts, no tiles). ----

/// The largest power of two strictly smaller than `n` (n >= 2).
pub(crate) fn split(n: usize) -> usize {
    assert!(n >= 2);
    1 << (usize::BITS - 1 - (n - 1).leading_zeros())
}

/// MTH(D[n]), RFC 9162 2.1.1, over leaf hashes.
pub(crate) fn mth(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::empty_tree(),
        1 => leaves[0],
        n => {
            let k = split(n);
            node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
        }
    }
}

pub(crate) fn leaf_hashes<D: AsRef<[u8]>>(data: &[D]) -> Vec<Hash> {
    data.iter().map(|entry| leaf_hash(entry.as_ref())).collect()
}

/// PATH(m, D[n]), RFC 9162 2.1.3.1.
pub(crate) fn inclusion_path(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    let n = leaves.len();
    assert!(m < n);
    if n == 1 {
        return Vec::new();
    }
    let k = split(n);
    if m < k {
        let mut path = inclusion_path(m, &leaves[..k]);
        path.push(mth(&leaves[k..]));
        path
    } else {
        let mut path = inclusion_path(m - k, &leaves[k..]);
        path.push(mth(&leaves[..k]));
        path
    }
}

/// PROOF(m, D[n]) = SUBPROOF(m, D[n], true), RFC 9162 2.1.4.1.
pub(crate) fn consistency_proof(m: usize, leaves: &[Hash]) -> Vec<Hash> {
    subproof(m, leaves, true)
}

fn subproof(m: usize, leaves: &[Hash], complete: bool) -> Vec<Hash> {
    let n = leaves.len();
    assert!(m <= n);
    if m == n {
        return if complete {
            Vec::new()
        } else {
            vec![mth(leaves)]
        };
    }
    let k = split(n);
    if m <= k {
        let mut proof = subproof(m, &leaves[..k], complete);
        proof.push(mth(&leaves[k..]));
        proof
    } else {
        let mut proof = subproof(m - k, &leaves[k..], false);
        proof.push(mth(&leaves[..k]));
        proof
    }
}
