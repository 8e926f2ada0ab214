//! The live log against a plain model: roots, proofs and recovery at many sizes.
#![cfg(test)]

use std::sync::Arc;

use writ_ledger::log::{Log, Retention, SystemClock};
use writ_ledger::proof::{verify_consistency, verify_inclusion};
use writ_ledger::store::{LedgerStore, SledStore};
use writ_ledger::{leaf_hash, node_hash, EntryDraft, Hash, LeafIndex, LogSigner, TreeSize};

fn model_root(leaves: &[Hash]) -> Hash {
    match leaves.len() {
        0 => Hash::empty_tree(),
        1 => leaves[0],
        n => {
            let k = 1usize << (usize::BITS - 1 - (n - 1).leading_zeros());
            node_hash(&model_root(&leaves[..k]), &model_root(&leaves[k..]))
        }
    }
}

fn draft(n: usize) -> EntryDraft {
    EntryDraft {
        kind: "test.entry".into(),
        actor: "writ".into(),
        workspace: "-".into(),
        fields: serde_json::json!({ "n": n }).as_object().cloned().unwrap(),
    }
}

fn signer() -> LogSigner {
    LogSigner::from_seed("test.example/log", &[3u8; 32]).unwrap()
}

fn open(dir: &std::path::Path) -> Log<SledStore> {
    let store = Arc::new(SledStore::open(dir).unwrap());
    if store.is_empty().unwrap() {
        Log::create(store, signer(), Arc::new(SystemClock), Retention::default()).unwrap()
    } else {
        Log::open(store, signer(), Arc::new(SystemClock), Retention::default()).unwrap()
    }
}

#[test]
fn roots_and_proofs_match_the_model_across_tile_boundaries() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    let mut leaves = Vec::new();
    let batch_sizes = [1usize, 2, 5, 100, 148, 1, 255, 256, 257, 3000, 70000];
    for batch in batch_sizes {
        let drafts: Vec<_> = (0..batch)
            .map(|i| draft(leaves.len() + i).prepare().unwrap())
            .collect();
        let receipts = log.append_batch(&drafts).unwrap();
        assert_eq!(receipts.len(), batch);
        for receipt in &receipts {
            let entry = log.store().entry(receipt.index).unwrap().unwrap();
            leaves.push(leaf_hash(&entry));
        }
        let size = TreeSize(leaves.len() as u64);
        let root = model_root(&leaves);
        assert_eq!(log.root_at(size).unwrap(), root, "root at {size}");
        for receipt in receipts.iter().step_by(97) {
            verify_inclusion(
                receipt.index,
                size,
                &leaves[receipt.index.0 as usize],
                &receipt.proof,
                &root,
            )
            .unwrap();
        }
    }
    let size = leaves.len() as u64;
    for old in [
        1u64,
        2,
        3,
        255,
        256,
        257,
        511,
        512,
        4000,
        65536,
        size - 1,
        size,
    ] {
        let root_old = model_root(&leaves[..old as usize]);
        assert_eq!(log.root_at(TreeSize(old)).unwrap(), root_old);
        let proof = log
            .consistency_proof(TreeSize(old), TreeSize(size))
            .unwrap();
        verify_consistency(
            TreeSize(old),
            TreeSize(size),
            &root_old,
            &model_root(&leaves),
            &proof,
        )
        .unwrap();
        let index = LeafIndex(old - 1);
        let proof = log.inclusion_proof(index, TreeSize(old)).unwrap();
        verify_inclusion(
            index,
            TreeSize(old),
            &leaves[index.0 as usize],
            &proof,
            &root_old,
        )
        .unwrap();
    }
    drop(log);
    // Reopening rebuilds the edge and continues exactly where it stopped.
    let mut log = open(dir.path());
    assert_eq!(log.size(), TreeSize(size));
    log.append_batch(&[draft(0).prepare().unwrap()]).unwrap();
    let entry = log.store().entry(LeafIndex(size)).unwrap().unwrap();
    leaves.push(leaf_hash(&entry));
    assert_eq!(
        log.root_at(TreeSize(size + 1)).unwrap(),
        model_root(&leaves)
    );
}

#[test]
fn a_different_key_cannot_open_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = open(dir.path());
    log.append_batch(&[draft(0).prepare().unwrap()]).unwrap();
    drop(log);
    let store = Arc::new(SledStore::open(dir.path()).unwrap());
    let other = LogSigner::from_seed("test.example/log", &[4u8; 32]).unwrap();
    let err = Log::open(store, other, Arc::new(SystemClock), Retention::default()).unwrap_err();
    assert!(err.to_string().contains("signing key"), "{err}");
}
