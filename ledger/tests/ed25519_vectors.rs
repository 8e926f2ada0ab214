//! C2SP CCTV Ed25519 edge-case vectors: pins exactly which signatures our checkpoint
//! verifier (`LogVerifier`: weak-key refusal + ed25519-dalek `verify_strict`) accepts.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use common::*;
use ed25519_dalek::{Signature, VerifyingKey};
use signed_note::Verifier as _;
use writ_ledger::LogVerifier;

/// The only flags a strictly verified signature may carry: A or R has a low-order
/// *component* but is not itself low-order, so no blocklist can refuse it, and the
/// cofactorless equation still holds (no `low_order_residue`).
const TOLERATED_FLAGS: &[&str] = &["low_order_component_A", "low_order_component_R"];

struct Vector {
    number: u64,
    key: [u8; 32],
    sig: [u8; 64],
    msg: Vec<u8>,
    flags: Vec<String>,
}

fn vectors() -> Vec<Vector> {
    let all = read_json(&vectors_dir().join("cctv-ed25519/ed25519vectors.json"));
    all.as_array()
        .unwrap()
        .iter()
        .map(|v| Vector {
            number: u64_field(v, "number"),
            key: hex(v["key"].as_str().unwrap()).try_into().unwrap(),
            sig: hex(v["sig"].as_str().unwrap()).try_into().unwrap(),
            // `msg` is the plain message text, not hex.
            msg: v["msg"].as_str().unwrap().as_bytes().to_vec(),
            // One vector (the plain valid signature) has `"flags": null`.
            flags: v["flags"]
                .as_array()
                .map(|flags| {
                    flags
                        .iter()
                        .map(|f| f.as_str().unwrap().to_owned())
                        .collect()
                })
                .unwrap_or_default(),
        })
        .collect()
}

fn strict_accepts(v: &Vector) -> bool {
    VerifyingKey::from_bytes(&v.key).is_ok_and(|key| {
        key.verify_strict(&v.msg, &Signature::from_bytes(&v.sig))
            .is_ok()
    })
}

fn plain_verify_accepts(v: &Vector) -> bool {
    use ed25519_dalek::Verifier as _;
    VerifyingKey::from_bytes(&v.key)
        .is_ok_and(|key| key.verify(&v.msg, &Signature::from_bytes(&v.sig)).is_ok())
}

/// The vector's key as a signed-note verifier key, through our own parser.
fn log_verifier(v: &Vector) -> Option<LogVerifier> {
    let mut raw = vec![0x01];
    raw.extend_from_slice(&v.key);
    let vkey = format!(
        "cctv+{:08x}+{}",
        signed_note::key_id("cctv", &raw),
        BASE64.encode(&raw)
    );
    LogVerifier::from_verifier_key(&vkey).ok()
}

#[test]
fn verify_strict_accepts_exactly_the_pinned_cctv_vectors() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 914, "expected all 914 CCTV vectors");
    let mut strict = Vec::new();
    let (mut plain, mut keys_refused) = (0, 0);
    for v in &vectors {
        let strict_ok = strict_accepts(v);
        let ours = log_verifier(v);
        let low_order_key = v.flags.iter().any(|f| f == "low_order_A");
        assert_eq!(
            ours.is_none(),
            low_order_key,
            "#{}: key refused at parse",
            v.number
        );
        keys_refused += usize::from(ours.is_none());
        let ours_ok = ours.is_some_and(|key| key.verify(&v.msg, &v.sig));
        assert_eq!(
            ours_ok, strict_ok,
            "#{}: LogVerifier and verify_strict disagree",
            v.number
        );
        let tolerated = v
            .flags
            .iter()
            .all(|f| TOLERATED_FLAGS.contains(&f.as_str()));
        // Strict verification accepts a vector if and only if it has no other flag.
        assert_eq!(strict_ok, tolerated, "#{} flags {:?}", v.number, v.flags);
        if strict_ok {
            strict.push(v.number);
        }
        // The CCTV README's "ref10" behaviour (Go, OpenSSL, dalek's `verify`): refuse
        // non_canonical_R and low_order_residue, accept everything else.
        let ref10 = !v
            .flags
            .iter()
            .any(|f| f == "non_canonical_R" || f == "low_order_residue");
        assert_eq!(plain_verify_accepts(v), ref10, "#{} plain verify", v.number);
        plain += usize::from(ref10);
    }
    println!(
        "CCTV Ed25519: verify_strict/LogVerifier accept {} of {}: {strict:?}; \
         key refused at parse: {keys_refused}; plain verify() would accept {plain}",
        strict.len(),
        vectors.len()
    );
    // 43 = 1 ordinary valid signature (#305, no flags) + 7 with a low-order component
    // in A only + 35 with low-order components in both A and R. All 871 others carry
    // low_order_A/R, non_canonical_A/R (all of them low-order encodings) or
    // low_order_residue, and are refused.
    assert_eq!(strict.len(), 43);
    // 526 keys are low-order (`low_order_A`): `LogVerifier` refuses them when the
    // verifier key is parsed (weak key or not decodable), before any signature.
    assert_eq!(keys_refused, 526);
    // For comparison only: the cofactorless ref10 rule (Go's crypto/ed25519, dalek's
    // plain `verify`) also accepts low-order and non-canonical A and low-order R:
    // 208 vectors, i.e. 165 that we refuse.
    assert_eq!(plain, 208);
}
