//! The envelope: round trips, and every way a ciphertext must refuse to open.
#![cfg(test)]

use proptest::prelude::*;
use rand::rngs::OsRng;
use writ_vault::envelope::{self, HEADER_LEN};
use writ_vault::{
    Binding, KekVersion, KeyRing, Purpose, SecretName, SecretVersion, VaultError, Workspace,
};

fn ids(workspace: &str, name: &str) -> (Workspace, SecretName) {
    (
        Workspace::new(workspace).unwrap(),
        SecretName::new(name).unwrap(),
    )
}

fn binding<'a>(
    ws: &'a Workspace,
    name: &'a SecretName,
    version: u32,
    purpose: &'a Purpose,
) -> Binding<'a> {
    Binding {
        workspace: ws,
        name,
        version: SecretVersion::new(version).unwrap(),
        purpose,
    }
}

#[test]
fn round_trip_and_fresh_randomness() {
    let ring = KeyRing::generate(&mut OsRng, 0);
    let (ws, name) = ids("acme", "prod/db");
    let purpose = Purpose::secret_value();
    let b = binding(&ws, &name, 1, &purpose);
    let one = envelope::seal(&ring, b, b"s3cret value", &mut OsRng).unwrap();
    let two = envelope::seal(&ring, b, b"s3cret value", &mut OsRng).unwrap();
    assert_ne!(one, two, "each seal uses a fresh data key and nonces");
    assert_eq!(
        envelope::open(&ring, b, &one).unwrap().expose(),
        b"s3cret value"
    );
    assert_eq!(
        envelope::open(&ring, b, &two).unwrap().expose(),
        b"s3cret value"
    );
    assert_eq!(one.len(), HEADER_LEN + 12 + 16);
    assert!(
        !one.windows(6).any(|w| w == b"s3cret"),
        "no plaintext in the envelope"
    );
    assert_eq!(envelope::kek_version(&one).unwrap(), KekVersion::FIRST);
}

#[test]
fn empty_and_largest_values_round_trip_and_larger_is_refused() {
    let ring = KeyRing::generate(&mut OsRng, 0);
    let (ws, name) = ids("acme", "x");
    let purpose = Purpose::secret_value();
    let b = binding(&ws, &name, 1, &purpose);
    for len in [0, 1, writ_vault::MAX_VALUE_LEN] {
        let value = vec![0x5a; len];
        let sealed = envelope::seal(&ring, b, &value, &mut OsRng).unwrap();
        assert_eq!(
            envelope::open(&ring, b, &sealed).unwrap().expose(),
            value.as_slice()
        );
    }
    let too_big = vec![0; writ_vault::MAX_VALUE_LEN + 1];
    assert!(matches!(
        envelope::seal(&ring, b, &too_big, &mut OsRng),
        Err(VaultError::ValueTooLarge { .. })
    ));
}

#[test]
fn a_moved_ciphertext_does_not_open() {
    let ring = KeyRing::generate(&mut OsRng, 0);
    let purpose = Purpose::secret_value();
    let other_purpose = Purpose::new("ledger.key").unwrap();
    let (ws, name) = ids("acme", "db");
    let (other_ws, other_name) = ids("globex", "db2");
    let sealed = envelope::seal(&ring, binding(&ws, &name, 3, &purpose), b"v", &mut OsRng).unwrap();
    for wrong in [
        binding(&other_ws, &name, 3, &purpose),
        binding(&ws, &other_name, 3, &purpose),
        binding(&ws, &name, 2, &purpose),
        binding(&ws, &name, 4, &purpose),
        binding(&ws, &name, 3, &other_purpose),
    ] {
        let error = envelope::open(&ring, wrong, &sealed).unwrap_err();
        assert!(
            matches!(error, VaultError::UnwrapFailed),
            "{wrong:?}: {error}"
        );
    }
}

#[test]
fn a_field_boundary_shift_is_a_different_binding() {
    // "ab" + "c" and "a" + "bc" must not encode alike.
    let ring = KeyRing::generate(&mut OsRng, 0);
    let purpose = Purpose::secret_value();
    let (ws1, n1) = ids("ab", "c");
    let (ws2, n2) = ids("a", "bc");
    let sealed = envelope::seal(&ring, binding(&ws1, &n1, 1, &purpose), b"v", &mut OsRng).unwrap();
    assert!(envelope::open(&ring, binding(&ws2, &n2, 1, &purpose), &sealed).is_err());
}

#[test]
fn another_ring_does_not_open() {
    let ring = KeyRing::generate(&mut OsRng, 0);
    let other = KeyRing::generate(&mut OsRng, 0);
    let (ws, name) = ids("acme", "db");
    let purpose = Purpose::secret_value();
    let b = binding(&ws, &name, 1, &purpose);
    let sealed = envelope::seal(&ring, b, b"v", &mut OsRng).unwrap();
    assert!(matches!(
        envelope::open(&other, b, &sealed),
        Err(VaultError::UnwrapFailed)
    ));
}

#[test]
fn every_flipped_byte_fails() {
    let ring = KeyRing::generate(&mut OsRng, 0);
    let (ws, name) = ids("acme", "db");
    let purpose = Purpose::secret_value();
    let b = binding(&ws, &name, 1, &purpose);
    let sealed = envelope::seal(&ring, b, b"a value of some length", &mut OsRng).unwrap();
    for at in 0..sealed.len() {
        for bit in [0x01u8, 0x80] {
            let mut bad = sealed.clone();
            bad[at] ^= bit;
            assert!(
                envelope::open(&ring, b, &bad).is_err(),
                "byte {at} bit {bit:#x} flipped still opened"
            );
        }
    }
}

#[test]
fn header_errors_are_named() {
    let ring = KeyRing::generate(&mut OsRng, 0);
    let (ws, name) = ids("acme", "db");
    let purpose = Purpose::secret_value();
    let b = binding(&ws, &name, 1, &purpose);
    let sealed = envelope::seal(&ring, b, b"value", &mut OsRng).unwrap();
    let open = |bytes: &[u8]| envelope::open(&ring, b, bytes).unwrap_err();

    assert!(matches!(
        open(&sealed[..HEADER_LEN + 15]),
        VaultError::EnvelopeTruncated(_)
    ));
    assert!(matches!(open(&[]), VaultError::EnvelopeTruncated(0)));
    let mut bad = sealed.clone();
    bad[0] = b'x';
    assert!(matches!(open(&bad), VaultError::EnvelopeMagic));
    let mut bad = sealed.clone();
    bad[4] = 2;
    assert!(matches!(open(&bad), VaultError::EnvelopeVersion(2)));
    let mut bad = sealed.clone();
    bad[5] = 9;
    assert!(matches!(open(&bad), VaultError::EnvelopeAlgorithm(9)));
    let mut bad = sealed.clone();
    bad[6..10].copy_from_slice(&7u32.to_be_bytes());
    assert!(matches!(open(&bad), VaultError::KekUnknown(v) if v.get() == 7));
    // The commitment is checked before the data is decrypted.
    let mut bad = sealed.clone();
    bad[82] ^= 1;
    assert!(matches!(open(&bad), VaultError::CommitmentMismatch));
    let mut bad = sealed.clone();
    bad[114] ^= 1; // data nonce: covered by the commitment
    assert!(matches!(open(&bad), VaultError::CommitmentMismatch));
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(open(&bad), VaultError::DecryptFailed));
    let mut longer = sealed.clone();
    longer.push(0);
    assert!(matches!(open(&longer), VaultError::DecryptFailed));
}

#[test]
fn rewrap_moves_the_dek_and_keeps_the_ciphertext() {
    let mut ring = KeyRing::generate(&mut OsRng, 0);
    let (ws, name) = ids("acme", "db");
    let purpose = Purpose::secret_value();
    let b = binding(&ws, &name, 1, &purpose);
    let sealed = envelope::seal(&ring, b, b"value", &mut OsRng).unwrap();
    assert!(envelope::rewrap(&ring, b, &sealed, &mut OsRng)
        .unwrap()
        .is_none());

    let v2 = ring.rotate(&mut OsRng, 1).unwrap();
    let rewrapped = envelope::rewrap(&ring, b, &sealed, &mut OsRng)
        .unwrap()
        .unwrap();
    assert_eq!(envelope::kek_version(&rewrapped).unwrap(), v2);
    assert_eq!(
        rewrapped[114..],
        sealed[114..],
        "data nonce and ciphertext unchanged"
    );
    assert_ne!(rewrapped[6..114], sealed[6..114]);
    assert_eq!(
        envelope::open(&ring, b, &rewrapped).unwrap().expose(),
        b"value"
    );

    // A rewrapped header with the old commitment is refused.
    let mut spliced = rewrapped.clone();
    spliced[82..114].copy_from_slice(&sealed[82..114]);
    assert!(matches!(
        envelope::open(&ring, b, &spliced),
        Err(VaultError::CommitmentMismatch)
    ));
    // Rewrapping for another binding fails: the DEK does not unwrap.
    let (other_ws, _) = ids("globex", "db");
    let wrong = binding(&other_ws, &name, 1, &purpose);
    assert!(envelope::rewrap(&ring, wrong, &sealed, &mut OsRng).is_err());
}

#[test]
fn retired_keys_no_longer_decrypt() {
    let mut ring = KeyRing::generate(&mut OsRng, 0);
    let (ws, name) = ids("acme", "db");
    let purpose = Purpose::secret_value();
    let b = binding(&ws, &name, 1, &purpose);
    let old = envelope::seal(&ring, b, b"value", &mut OsRng).unwrap();
    let v2 = ring.rotate(&mut OsRng, 1).unwrap();
    ring.retire_below(v2, &Default::default()).unwrap();
    assert!(
        matches!(envelope::open(&ring, b, &old), Err(VaultError::KekRetired(v)) if v == KekVersion::FIRST)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn values_round_trip(value in proptest::collection::vec(any::<u8>(), 0..2048), version in 1u32..u32::MAX) {
        let ring = KeyRing::generate(&mut OsRng, 0);
        let (ws, name) = ids("acme", "db");
        let purpose = Purpose::secret_value();
        let b = binding(&ws, &name, version, &purpose);
        let sealed = envelope::seal(&ring, b, &value, &mut OsRng).unwrap();
        let opened = envelope::open(&ring, b, &sealed).unwrap();
        prop_assert_eq!(opened.expose(), value.as_slice());
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let ring = KeyRing::generate(&mut OsRng, 0);
        let (ws, name) = ids("acme", "db");
        let purpose = Purpose::secret_value();
        let b = binding(&ws, &name, 1, &purpose);
        prop_assert!(envelope::open(&ring, b, &bytes).is_err());
        let _ = envelope::kek_version(&bytes);
    }
}
