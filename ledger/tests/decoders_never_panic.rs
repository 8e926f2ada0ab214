//! Every decoder of untrusted bytes, fed random and mutated input: it may refuse,
//! it may never panic. (A proptest stand-in for fuzz targets, cheap enough for CI.)
#![cfg(test)]

use proptest::prelude::*;
use writ_ledger::checkpoint::{verify_note, Checkpoint, KeyRing};
use writ_ledger::entry::check_entry;
use writ_ledger::proof::{verify_consistency_bytes, verify_inclusion_bytes};
use writ_ledger::receipt::verify_receipt;
use writ_ledger::tilepath::split_bundle;
use writ_ledger::{Hash, LeafIndex, LogSigner, LogVerifier, Receipt, TreeSize};

fn signer() -> LogSigner {
    LogSigner::from_seed("fuzz.example/log", &[9u8; 32]).unwrap()
}

fn valid_receipt_and_entry() -> (Vec<u8>, Vec<u8>) {
    let entry = br#"{"v":1,"index":0,"time":"2026-01-01T00:00:00.000Z","kind":"k","actor":"a","workspace":"w"}"#.to_vec();
    let checkpoint = Checkpoint {
        origin: "fuzz.example/log".into(),
        size: TreeSize(1),
        root: writ_ledger::leaf_hash(&entry),
    };
    let receipt = Receipt {
        index: LeafIndex(0),
        proof: Vec::new(),
        checkpoint: signer().sign(&checkpoint).unwrap(),
        extra: None,
    };
    (receipt.to_text().into_bytes(), entry)
}

/// Flips, inserts or deletes bytes at positions chosen by the strategy.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(position, value, op) in edits {
        if bytes.is_empty() {
            bytes.push(value);
            continue;
        }
        let at = position % bytes.len();
        match op % 3 {
            0 => bytes[at] ^= value.max(1),
            1 => bytes.insert(at, value),
            _ => {
                bytes.remove(at);
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn receipts_and_notes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Receipt::parse(&bytes);
        let key = LogVerifier::from_verifier_key(&signer().verifier_key()).unwrap();
        let _ = key.verify_checkpoint(&bytes);
        let _ = verify_note(&bytes, &KeyRing(vec![key]));
        let _ = Checkpoint::parse_body(&bytes);
        let _ = check_entry(&bytes, LeafIndex(0));
        let _ = split_bundle(&bytes, 0, 3);
        let _ = LogVerifier::from_verifier_key(&String::from_utf8_lossy(&bytes));
        let _ = LogSigner::from_signer_key_string(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn mutated_receipts_never_verify_wrongly(edits in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..4)) {
        let (receipt, entry) = valid_receipt_and_entry();
        let key = LogVerifier::from_verifier_key(&signer().verifier_key()).unwrap();
        let mutated = mutate(receipt.clone(), &edits);
        if let Ok(parsed) = Receipt::parse(&mutated) {
            // Only a mutation that keeps the meaning (e.g. none at all) may verify.
            if verify_receipt(&parsed, &entry, &key).is_ok() {
                let original = Receipt::parse(&receipt).unwrap();
                prop_assert_eq!(parsed.index, original.index);
                prop_assert_eq!(parsed.proof, original.proof);
                let body = |text: &str| text.split("\n\n").next().unwrap_or_default().to_owned();
                prop_assert_eq!(body(&parsed.checkpoint), body(&original.checkpoint));
            }
        }
        let mutated_entry = mutate(entry.clone(), &edits);
        let parsed = Receipt::parse(&receipt).unwrap();
        // Edits can cancel out (insert a byte, then remove it); only a changed entry must fail.
        prop_assert_eq!(
            verify_receipt(&parsed, &mutated_entry, &key).is_ok(),
            mutated_entry == entry
        );
    }

    #[test]
    fn proof_verifiers_never_panic(
        index in any::<u64>(),
        size in any::<u64>(),
        leaf in proptest::collection::vec(any::<u8>(), 0..40),
        root in proptest::collection::vec(any::<u8>(), 0..40),
        proof in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 30..34), 0..70),
    ) {
        let _ = verify_inclusion_bytes(index, size, &leaf, &proof, &root);
        let _ = verify_consistency_bytes(index, size, &leaf, &root, &proof);
        let _ = verify_inclusion_bytes(index % 64, 64, &[0u8; 32], &proof, &Hash::empty_tree().0);
    }
}
