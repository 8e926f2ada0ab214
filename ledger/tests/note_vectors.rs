//! Public signed-note known-answer vectors (Go `sumdb/note`, C2SP, transparency-dev
//! formats): key strings, deterministic signing, note verification, rejections.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::*;
use serde_json::Value;
use writ_ledger::checkpoint::verify_note;
use writ_ledger::{leaf_hash, Checkpoint, KeyRing, LedgerError, LogSigner, LogVerifier};

/// Vector vkeys our stricter `LogVerifier` refuses (e.g. weak keys). None today;
/// any entry here must be explained.
const UNPARSEABLE_VKEYS: &[&str] = &[];

fn vectors() -> Value {
    read_json(&vectors_dir().join("signed-note-vectors.json"))
}

fn strs(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect()
}

fn verifier(vkey: &str) -> Option<LogVerifier> {
    let parsed = LogVerifier::from_verifier_key(vkey);
    if UNPARSEABLE_VKEYS.contains(&vkey) {
        assert!(
            parsed.is_err(),
            "{vkey} is listed as unparseable but parses"
        );
        return None;
    }
    Some(
        parsed
            .map_err(|e| format!("vector vkey {vkey} refused: {e}"))
            .unwrap(),
    )
}

/// `(name, key id)` of each signature line (`— name base64(keyid||sig)`).
fn signature_lines(note: &str) -> Vec<(String, u32)> {
    let (_, sigs) = note.rsplit_once("\n\n").unwrap();
    sigs.lines()
        .map(|line| {
            let (name, b64) = line
                .strip_prefix("\u{2014} ")
                .unwrap()
                .split_once(' ')
                .unwrap();
            let raw = BASE64.decode(b64).unwrap();
            (
                name.to_owned(),
                u32::from_be_bytes(raw[..4].try_into().unwrap()),
            )
        })
        .collect()
}

fn key_of(vkey: &str) -> (String, u32) {
    let mut parts = vkey.splitn(3, '+');
    let name = parts.next().unwrap().to_owned();
    (
        name,
        u32::from_str_radix(parts.next().unwrap(), 16).unwrap(),
    )
}

#[test]
fn signer_keys_derive_their_verifier_keys_and_round_trip() {
    let vectors = vectors();
    let keys = vectors["signer_keys"].as_array().unwrap();
    assert_eq!(keys.len(), 5);
    for key in keys {
        let (skey, vkey) = (key["skey"].as_str().unwrap(), key["vkey"].as_str().unwrap());
        let signer = LogSigner::from_signer_key_string(skey).unwrap();
        assert_eq!(signer.verifier_key(), vkey);
        assert_eq!(signer.to_signer_key_string().as_str(), skey);
        assert_eq!(
            LogVerifier::from_verifier_key(vkey)
                .unwrap()
                .to_verifier_key(),
            vkey
        );
    }
}

#[test]
fn peter_neumann_signs_the_text_deterministically() {
    let vectors = vectors();
    let key = &vectors["signer_keys"][0];
    let case = &key["deterministic_sign"];
    let signer = LogSigner::from_signer_key_string(key["skey"].as_str().unwrap()).unwrap();
    let note = signer
        .sign_note_text(case["text"].as_str().unwrap())
        .unwrap();
    assert_eq!(note, case["expected_note"].as_str().unwrap());
    // Text that is not a valid note text is refused rather than signed.
    for bad in ["no final newline", "", "tab\there\n"] {
        assert!(signer.sign_note_text(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn notes_verify_as_their_per_signature_expectations_say() {
    let vectors = vectors();
    let notes = vectors["notes"].as_array().unwrap();
    assert_eq!(notes.len(), 6);
    let (mut accepted, mut rejected) = (0, 0);
    for case in notes {
        let id = case["id"].as_str().unwrap();
        let note = case["note"].as_str().unwrap();
        let vkeys = strs(&case["vkeys"]);
        let expect: Vec<Option<bool>> = case["expect"]
            .as_array()
            .unwrap()
            .iter()
            .map(Value::as_bool)
            .collect();
        let lines = signature_lines(note);
        assert_eq!(
            lines.len(),
            expect.len(),
            "{id}: one expectation per signature line"
        );
        let ring = KeyRing(vkeys.iter().filter_map(|vkey| verifier(vkey)).collect());

        // Whole note: any failing trusted signature rejects it; otherwise at least one
        // trusted signature must verify; unknown keys are ignored.
        let want_ok = !expect.contains(&Some(false)) && expect.contains(&Some(true));
        let result = verify_note(note.as_bytes(), &ring);
        assert_eq!(result.is_ok(), want_ok, "{id}: {result:?}");
        if let Ok(text) = &result {
            let (body, _) = note.rsplit_once("\n\n").unwrap();
            assert_eq!(
                text.as_slice(),
                format!("{body}\n").as_bytes(),
                "{id}: text"
            );
            accepted += 1;
        } else {
            assert!(
                matches!(result, Err(LedgerError::BadSignature { .. })),
                "{id}"
            );
            rejected += 1;
        }

        // Each line alone, against only its own key.
        for (line, want) in lines.iter().zip(&expect) {
            let own: Vec<LogVerifier> = vkeys
                .iter()
                .filter(|vkey| key_of(vkey) == *line)
                .filter_map(|vkey| verifier(vkey))
                .collect();
            match want {
                None => assert!(own.is_empty(), "{id}: {line:?} is meant to be unknown"),
                Some(ok) => {
                    assert_eq!(own.len(), 1, "{id}: no vkey for {line:?}");
                    let single = verify_note(note.as_bytes(), &KeyRing(own));
                    assert_eq!(single.is_ok(), *ok, "{id}: {line:?}: {single:?}");
                }
            }
        }
        if let Some(checkpoint) = case.get("checkpoint") {
            let parsed = Checkpoint::parse_body(&result.unwrap()).unwrap();
            assert_eq!(parsed.origin, checkpoint["origin"].as_str().unwrap());
            assert_eq!(parsed.size.0, u64_field(checkpoint, "size"));
            assert_eq!(
                parsed.root.to_base64(),
                checkpoint["root_b64"].as_str().unwrap()
            );
        }
    }
    assert_eq!((accepted, rejected), (5, 1));
}

/// Go answers "malformed note" for every one of these; so must we, without panicking.
fn rejected_as_malformed(note: &[u8], ring: &KeyRing) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| verify_note(note, ring)));
    matches!(outcome, Ok(Err(LedgerError::MalformedNote { .. })))
}

#[test]
fn malformed_notes_are_all_rejected() {
    let vectors = vectors();
    let cases = &vectors["malformed_notes_must_reject"];
    let ring = KeyRing(
        strs(&cases["vkeys"])
            .iter()
            .filter_map(|v| verifier(v))
            .collect(),
    );
    let good = vectors["signer_keys"][0]["deterministic_sign"]["expected_note"]
        .as_str()
        .unwrap();
    assert!(
        verify_note(good.as_bytes(), &ring).is_ok(),
        "the unmangled note verifies"
    );
    let notes = strs(&cases["notes"]);
    assert_eq!(notes.len(), 8);
    for note in notes {
        let bytes = if note.starts_with("(0xFF byte prefix") {
            // Go's badMsgs: "\xff" + text + "\n" + peterSig, i.e. invalid UTF-8.
            [b"\xff".as_slice(), good.as_bytes()].concat()
        } else {
            note.as_bytes().to_vec()
        };
        let shown = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
        assert!(
            rejected_as_malformed(&bytes, &ring),
            "accepted: {shown:?}..."
        );
    }
}

#[test]
fn up_to_100_signature_lines_are_accepted_and_101_refused() {
    let vectors = vectors();
    let key = &vectors["signer_keys"][0];
    let ring = KeyRing(vec![verifier(key["vkey"].as_str().unwrap()).unwrap()]);
    let good = key["deterministic_sign"]["expected_note"].as_str().unwrap();
    let (text, line) = good.split_once("\n\n").unwrap();
    // The spec requires accepting at least 16 signatures; Go caps notes at 100.
    for (count, ok) in [(16, true), (100, true), (101, false)] {
        let note = format!("{text}\n\n{}", line.repeat(count));
        assert_eq!(
            verify_note(note.as_bytes(), &ring).is_ok(),
            ok,
            "{count} lines"
        );
    }
}

#[test]
fn bad_vkeys_and_every_mangling_of_a_good_vkey_are_rejected() {
    let vectors = vectors();
    for vkey in strs(&vectors["bad_vkeys_must_reject"]["vkeys"]) {
        assert!(LogVerifier::from_verifier_key(vkey).is_err(), "{vkey}");
    }
    // As in Go's TestNewVerifier: every proper substring, every byte incremented.
    let good = vectors["signer_keys"][0]["vkey"]
        .as_str()
        .unwrap()
        .as_bytes();
    let mut tried = 0;
    for start in 0..=good.len() {
        for end in start + 1..=good.len() {
            if (start, end) != (0, good.len()) {
                let part = String::from_utf8(good[start..end].to_vec()).unwrap();
                assert!(LogVerifier::from_verifier_key(&part).is_err(), "{part}");
                tried += 1;
            }
        }
    }
    for at in 0..good.len() {
        let mut bumped = good.to_vec();
        bumped[at] += 1;
        let text = String::from_utf8(bumped).unwrap();
        assert!(LogVerifier::from_verifier_key(&text).is_err(), "{text}");
        tried += 1;
    }
    assert_eq!(tried, good.len() * (good.len() + 1) / 2 - 1 + good.len());
}

#[test]
fn checkpoint_body_golden_parses_and_round_trips() {
    let vectors = vectors();
    let body = vectors["checkpoint_body_golden"]["body"].as_str().unwrap();
    let checkpoint = Checkpoint::parse_body(body.as_bytes()).unwrap();
    assert_eq!(checkpoint.origin, "go.sum database tree");
    assert_eq!(checkpoint.size.0, 123_456_789_012);
    assert_eq!(checkpoint.root, leaf_hash(b"hello world"));
    assert_eq!(
        body.lines().count(),
        3,
        "no extension lines, so body() must reproduce it"
    );
    assert_eq!(checkpoint.body(), body);
}
