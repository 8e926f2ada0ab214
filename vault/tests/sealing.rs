//! The key ring and its sealers: round trip for each, and the clear refusals of a
//! wrong passphrase, a wrong key file, too few shares, a share of another ring.
#![cfg(test)]

use std::collections::BTreeMap;

use rand::rngs::OsRng;
use writ_vault::seal::{key_file_sealer, parse_key_file, passphrase_sealer};
use writ_vault::shares::shares_sealer;
use writ_vault::{
    Argon2Cost, KekVersion, KeyRing, LedgerKey, SealedRing, ShareCollector, UnsealProgress,
    VaultError,
};

/// Small Argon2 costs keep the tests fast; the format stores whatever was used.
const CHEAP: Argon2Cost = Argon2Cost {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn ring_with_history() -> KeyRing {
    let mut ring = KeyRing::generate(&mut OsRng, 1_000);
    ring.rotate(&mut OsRng, 2_000).unwrap();
    ring.rotate(&mut OsRng, 3_000).unwrap();
    ring.set_ledger_key(
        LedgerKey::new(zeroize::Zeroizing::new(
            "PRIVATE+KEY+example+0123abcd+AQID".to_owned(),
        ))
        .unwrap(),
    );
    ring
}

fn same_ring(a: &KeyRing, b: &KeyRing) {
    assert_eq!(a.id(), b.id());
    assert_eq!(a.versions(), b.versions());
    assert_eq!(a.min_decrypt(), b.min_decrypt());
    for info in a.versions() {
        assert_eq!(a.kek(info.version).unwrap(), b.kek(info.version).unwrap());
    }
    assert_eq!(a.ledger_key(), b.ledger_key());
}

#[test]
fn ring_encoding_round_trips_and_rejects_damage() {
    let ring = ring_with_history();
    let encoded = ring.encode();
    same_ring(&ring, &KeyRing::decode(&encoded).unwrap());
    for cut in 0..encoded.len() {
        assert!(
            KeyRing::decode(&encoded[..cut]).is_err(),
            "truncated at {cut}"
        );
    }
    let mut longer = encoded.to_vec();
    longer.push(0);
    assert!(matches!(
        KeyRing::decode(&longer),
        Err(VaultError::RingMalformed("trailing bytes"))
    ));
    let debug = format!("{ring:?}");
    assert!(debug.contains("ledger_key: Some(\"..\")"), "{debug}");
}

#[test]
fn passphrase_round_trip_and_wrong_passphrase() {
    let ring = ring_with_history();
    let (sealer, root) = passphrase_sealer(b"correct horse", CHEAP, &mut OsRng).unwrap();
    let sealed = SealedRing::seal(&ring, &root, sealer, &mut OsRng).unwrap();
    let stored = SealedRing::decode(&sealed.encode()).unwrap();
    let (opened, reopened_root) = stored.open_with_passphrase(b"correct horse").unwrap();
    same_ring(&ring, &opened);
    assert_eq!(reopened_root, root);
    let error = stored.open_with_passphrase(b"correct horsf").unwrap_err();
    assert!(matches!(error, VaultError::WrongPassphrase), "{error}");
    assert_eq!(
        error.to_string(),
        "wrong passphrase (or the sealed key ring was altered)"
    );
}

#[test]
fn passphrase_parameters_are_bound() {
    let ring = ring_with_history();
    let (sealer, root) = passphrase_sealer(b"pw", CHEAP, &mut OsRng).unwrap();
    let bytes = SealedRing::seal(&ring, &root, sealer, &mut OsRng)
        .unwrap()
        .encode();
    // Lowering the stored iteration count (bytes 26..30) must not help an attacker:
    // the ring no longer opens, even with the right passphrase.
    let mut cheaper = bytes.clone();
    cheaper[29] = 2;
    let error = SealedRing::decode(&cheaper)
        .unwrap()
        .open_with_passphrase(b"pw")
        .unwrap_err();
    assert!(matches!(error, VaultError::WrongPassphrase));
}

#[test]
fn key_file_round_trip_and_wrong_key() {
    let ring = ring_with_history();
    let (sealer, root, text) = key_file_sealer(&mut OsRng);
    assert!(text.starts_with("writ-vault-key-v1:") && text.ends_with('\n'));
    let sealed = SealedRing::decode(
        &SealedRing::seal(&ring, &root, sealer, &mut OsRng)
            .unwrap()
            .encode(),
    )
    .unwrap();
    same_ring(
        &ring,
        &sealed
            .open_with_key_file(&parse_key_file(&text).unwrap())
            .unwrap(),
    );

    let (_, _, other_text) = key_file_sealer(&mut OsRng);
    let error = sealed
        .open_with_key_file(&parse_key_file(&other_text).unwrap())
        .unwrap_err();
    assert!(matches!(error, VaultError::WrongKeyFile), "{error}");
    for bad in [
        "",
        "writ-vault-key-v1:",
        "writ-vault-key-v1:!!!",
        "other:AAAA",
        "writ-vault-key-v1:AAAA\n",
    ] {
        assert!(
            matches!(parse_key_file(bad), Err(VaultError::KeyFileMalformed(_))),
            "{bad:?}"
        );
    }
    // Asking a key-file ring for a passphrase names the sealer.
    let error = sealed.open_with_passphrase(b"x").unwrap_err();
    assert_eq!(
        error.to_string(),
        "the key ring is sealed with a key file, not a passphrase"
    );
}

#[test]
fn sealed_file_damage_is_refused() {
    let ring = ring_with_history();
    let (sealer, root, _) = key_file_sealer(&mut OsRng);
    let bytes = SealedRing::seal(&ring, &root, sealer, &mut OsRng)
        .unwrap()
        .encode();
    for at in 0..bytes.len() {
        let mut bad = bytes.clone();
        bad[at] ^= 0x01;
        let opened = SealedRing::decode(&bad).and_then(|sealed| sealed.open_with_key_file(&root));
        assert!(opened.is_err(), "byte {at} flipped still opened");
    }
    for cut in 0..bytes.len() {
        let opened =
            SealedRing::decode(&bytes[..cut]).and_then(|sealed| sealed.open_with_key_file(&root));
        assert!(opened.is_err(), "truncated at {cut} still opened");
    }
}

fn sealed_by_shares(threshold: u8, count: u8) -> (KeyRing, SealedRing, Vec<String>) {
    let ring = ring_with_history();
    let (sealer, root, texts) = shares_sealer(ring.id(), threshold, count, &mut OsRng).unwrap();
    let sealed = SealedRing::seal(&ring, &root, sealer, &mut OsRng).unwrap();
    let sealed = SealedRing::decode(&sealed.encode()).unwrap();
    (ring, sealed, texts.iter().map(|t| t.to_string()).collect())
}

#[test]
fn any_threshold_of_shares_opens_one_at_a_time() {
    let (ring, sealed, shares) = sealed_by_shares(3, 5);
    assert_eq!(shares.len(), 5);
    for picks in [[0, 1, 2], [4, 2, 0], [1, 3, 4]] {
        let mut collector = ShareCollector::new(&sealed).unwrap();
        let first = collector.add(&shares[picks[0]], &sealed).unwrap();
        assert!(matches!(
            first,
            UnsealProgress::Pending { have: 1, need: 3 }
        ));
        let second = collector
            .add(&format!("  {}\n", shares[picks[1]]), &sealed)
            .unwrap();
        assert!(matches!(
            second,
            UnsealProgress::Pending { have: 2, need: 3 }
        ));
        match collector.add(&shares[picks[2]], &sealed).unwrap() {
            UnsealProgress::Unsealed { ring: opened, .. } => same_ring(&ring, &opened),
            other => panic!("expected the ring to open, got {other:?}"),
        }
    }
}

#[test]
fn shares_refusals_are_clear() {
    let (_, sealed, shares) = sealed_by_shares(3, 5);
    let (_, other_sealed, other_shares) = sealed_by_shares(3, 5);
    let mut collector = ShareCollector::new(&sealed).unwrap();

    collector.add(&shares[0], &sealed).unwrap();
    let duplicate = collector.add(&shares[0], &sealed).unwrap_err();
    assert!(
        matches!(duplicate, VaultError::ShareDuplicate(_)),
        "{duplicate}"
    );

    let foreign = collector.add(&other_shares[1], &sealed).unwrap_err();
    assert!(
        matches!(foreign, VaultError::ShareWrongRing { .. }),
        "{foreign}"
    );
    assert!(foreign.to_string().contains(&sealed.ring_id().to_string()));

    // A typo in a share is caught by its check, not turned into a wrong key.
    let mut typo = shares[1].clone().into_bytes();
    let at = typo.len() - 12;
    typo[at] = if typo[at] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    assert!(matches!(
        collector.add(&typo, &sealed),
        Err(VaultError::ShareMalformed(_))
    ));
    for bad in [
        "",
        "writ-share-v1",
        "writ-share-v1:zz:yy:00",
        "nonsense:with:colons:here",
    ] {
        assert!(
            matches!(
                collector.add(bad, &sealed),
                Err(VaultError::ShareMalformed(_))
            ),
            "{bad:?}"
        );
    }
    // Too few shares: still pending, nothing opens.
    let (have, need) = collector.progress();
    assert_eq!((have, need), (1, 3));
    let _ = other_sealed;
}

#[test]
fn a_forged_share_that_passes_its_check_makes_the_set_fail_and_restart() {
    let (_, sealed, shares) = sealed_by_shares(2, 3);
    // Re-split another root for the same ring id: well-formed shares of the right
    // ring that do not open it (what a confused operator mixing rings would hold
    // if ring ids collided, or an attacker who knows the ring id).
    let (_, _, forged) = shares_sealer(sealed.ring_id(), 2, 3, &mut OsRng).unwrap();
    let mut collector = ShareCollector::new(&sealed).unwrap();
    collector.add(&shares[0], &sealed).unwrap();
    // Shares are numbered 1, 2, 3: the forged second one has a number not yet given.
    let error = collector.add(&forged[1], &sealed).unwrap_err();
    assert!(matches!(error, VaultError::SharesDoNotOpen), "{error}");
    assert_eq!(collector.progress(), (0, 2), "a failed set starts again");
    collector.add(&shares[1], &sealed).unwrap();
    assert!(matches!(
        collector.add(&shares[2], &sealed).unwrap(),
        UnsealProgress::Unsealed { .. }
    ));
}

#[test]
fn share_parameters_are_checked() {
    let ring = KeyRing::generate(&mut OsRng, 0);
    for (t, n) in [(1, 3), (0, 0), (4, 3)] {
        assert!(matches!(
            shares_sealer(ring.id(), t, n, &mut OsRng),
            Err(VaultError::ShareParameters { .. })
        ));
    }
    assert!(shares_sealer(ring.id(), 2, 2, &mut OsRng).is_ok());
    assert!(shares_sealer(ring.id(), 255, 255, &mut OsRng).is_ok());
}

#[test]
fn rotation_and_retirement_rules() {
    let mut ring = KeyRing::generate(&mut OsRng, 0);
    let v1 = KekVersion::FIRST;
    let v2 = ring.rotate(&mut OsRng, 1).unwrap();
    let v3 = ring.rotate(&mut OsRng, 2).unwrap();
    assert_eq!(ring.primary_version(), v3);

    let mut usage = BTreeMap::new();
    usage.insert(v1, 0);
    usage.insert(v2, 5);
    usage.insert(v3, 9);
    let error = ring.retire_below(v3, &usage).unwrap_err();
    assert_eq!(
        error.to_string(),
        "cannot retire below version 3: version 2 still wraps 5 data keys"
    );
    assert!(ring.kek(v2).is_ok(), "a refused retirement changes nothing");

    assert_eq!(ring.retire_below(v2, &usage).unwrap(), vec![v1]);
    assert!(matches!(ring.kek(v1), Err(VaultError::KekRetired(_))));
    assert!(matches!(
        ring.retire_below(v2, &usage),
        Err(VaultError::RetireBackwards(_))
    ));
    let beyond = KekVersion::new(4).unwrap();
    assert!(matches!(
        ring.retire_below(beyond, &BTreeMap::new()),
        Err(VaultError::RetirePrimary(_))
    ));

    // A retired version stays retired through an encode/decode.
    let decoded = KeyRing::decode(&ring.encode()).unwrap();
    assert!(matches!(decoded.kek(v1), Err(VaultError::KekRetired(_))));
    assert_eq!(decoded.min_decrypt(), v2);
}
