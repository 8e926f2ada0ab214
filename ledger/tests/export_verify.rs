//! Export, offline verification and proofs from an export, in process.
#![cfg(test)]

use std::sync::Arc;

use writ_ledger::export::export;
use writ_ledger::log::{Log, Retention, SystemClock};
use writ_ledger::prove::ExportReader;
use writ_ledger::receipt::verify_receipt;
use writ_ledger::store::SledStore;
use writ_ledger::verify::verify_export;
use writ_ledger::{Checkpoint, EntryDraft, Hash, LeafIndex, LogSigner, LogVerifier, TreeSize};

const SEED: [u8; 32] = [11u8; 32];

fn signer() -> LogSigner {
    LogSigner::from_seed("export.example/log", &SEED).unwrap()
}

fn exported(entries: u64) -> (tempfile::TempDir, std::path::PathBuf) {
    exported_with(entries, "n")
}

/// A log of `entries` whose entries carry the field `field`, exported.
fn exported_with(entries: u64, field: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
    let mut log =
        Log::create(store, signer(), Arc::new(SystemClock), Retention::default()).unwrap();
    let drafts: Vec<_> = (0..entries)
        .map(|n| {
            EntryDraft {
                kind: "test.entry".into(),
                actor: "writ".into(),
                workspace: "-".into(),
                fields: serde_json::json!({ field: n })
                    .as_object()
                    .cloned()
                    .unwrap(),
            }
            .prepare()
            .unwrap()
        })
        .collect();
    for chunk in drafts.chunks(37) {
        log.append_batch(chunk).unwrap();
    }
    let out = dir.path().join("export");
    export(&log, &out).unwrap();
    (dir, out)
}

fn key() -> LogVerifier {
    LogVerifier::from_verifier_key(&signer().verifier_key()).unwrap()
}

#[test]
fn an_export_verifies_and_proves() {
    let (_dir, out) = exported(600);
    let report = verify_export(&out, &key(), &mut |_, _| {}).unwrap();
    assert_eq!(report.size, TreeSize(600));
    let reader = ExportReader::open(&out, key()).unwrap();
    for index in [0u64, 255, 256, 511, 599] {
        let receipt = reader.prove(LeafIndex(index), None).unwrap();
        let entry = reader.entry(LeafIndex(index)).unwrap();
        verify_receipt(&receipt, &entry, &key()).unwrap();
        // Against an older signed checkpoint too.
        let receipt = reader
            .prove(LeafIndex(index.min(36)), Some(TreeSize(37)))
            .unwrap();
        let entry = reader.entry(LeafIndex(index.min(36))).unwrap();
        verify_receipt(&receipt, &entry, &key()).unwrap();
    }
    let (old, new, proof) = reader.consistency(TreeSize(74), None).unwrap();
    assert_eq!((old.size, new.size), (TreeSize(74), TreeSize(600)));
    assert!(!proof.is_empty());
    assert!(reader.prove(LeafIndex(600), None).is_err());
}

#[test]
fn a_signed_empty_checkpoint_with_a_wrong_root_fails() {
    let (_dir, out) = exported(10);
    let forged = signer()
        .sign(&Checkpoint {
            origin: "export.example/log".into(),
            size: TreeSize(0),
            root: Hash([1u8; 32]),
        })
        .unwrap();
    std::fs::write(out.join("checkpoints/0"), forged).unwrap();
    let err = verify_export(&out, &key(), &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("checkpoints/0"), "{err}");
}

#[test]
fn a_checkpoint_file_named_for_another_size_fails() {
    let (_dir, out) = exported(100);
    std::fs::copy(out.join("checkpoints/37"), out.join("checkpoints/38")).unwrap();
    let err = verify_export(&out, &key(), &mut |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("checkpoints/38"), "{err}");
}

#[test]
fn a_kept_checkpoint_is_extended_by_the_export_but_not_by_a_fork() {
    let (_dir, out) = exported(600);
    let kept = std::fs::read(out.join("checkpoints/74")).unwrap();
    let reader = ExportReader::open(&out, key()).unwrap();
    let (old, new, _) = reader.consistency_from_note(&kept, None).unwrap();
    assert_eq!((old.size, new.size), (TreeSize(74), TreeSize(600)));
    // The same key signed another history (a rewritten log): it does not extend.
    let (_fork_dir, fork) = exported_with(600, "m");
    let forked = std::fs::read(fork.join("checkpoints/74")).unwrap();
    let err = reader
        .consistency_from_note(&forked, None)
        .unwrap_err()
        .to_string();
    assert!(err.contains("does not extend it"), "{err}");
}
