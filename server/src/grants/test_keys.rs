//! Test fixtures the statement and ledger-check tests share: principals, an
//! elevation id, deterministic keys and an approve statement.
#![allow(clippy::unwrap_used, reason = "test fixtures fail loudly")]

use ed25519_dalek::SigningKey;
use serde_json::{Map, Value};

use super::statement::decision_statement;

pub(super) const ALICE: &str = "User::\"alice\"";
pub(super) const BOB: &str = "User::\"bob\"";
pub(super) const BG: &str = "bg_0123456789abcdef0123456789abcdef";

/// A signing key from a repeated seed byte.
pub(super) fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

/// A JSON object's map.
pub(super) fn object(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

/// Alice's `break_glass.approve` statement in `acme`.
pub(super) fn approve(subject: &str, comment: &str) -> Map<String, Value> {
    decision_statement("break_glass.approve", ALICE, "acme", subject, comment)
}
