//! Signed statements (`writ-statement-v1`): what a human signs with its own Ed25519
//! key when it requests or approves, so that the kernel's operator cannot forge it.
//!
//! A statement is a flat JSON object of strings and integers. What is signed is
//! [`STATEMENT_DOMAIN`] followed by the statement encoded with its keys sorted and no
//! whitespace, by [`signed_bytes`], this module's one encoder: it sorts the keys
//! itself rather than relying on `serde_json`'s map order, which a dependency's
//! `preserve_order` feature turns into insertion order.
//!
//! The kernel (on submit) and the offline verifier
//! ([`LedgerSignatureChecker`](super::ledger_check::LedgerSignatureChecker), run by
//! `writ ledger verify`) apply the same matching rule, [`check_matches_fields`]:
//! a statement names the entry kind, actor, workspace and the fields the signer
//! vouches for, so a signature cannot be moved to another entry.

use std::fmt;
use std::path::Path;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// The domain separator and version prefixed to every statement before signing.
pub const STATEMENT_DOMAIN: &[u8] = b"writ-statement-v1\n";

/// The longest key file accepted: a seed in hex or base64 with room for whitespace.
const MAX_KEY_FILE_BYTES: u64 = 4096;

/// The most characters of a statement or entry value echoed back in an error.
const MAX_ECHO_CHARS: usize = 64;

/// Why a statement, a key or a signature was refused. Messages never contain key
/// material; statement values are echoed truncated to 64 characters.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatementError {
    #[error("the signature's key id `{found}` is not the signer's key id `{expected}`")]
    KeyIdMismatch { expected: String, found: String },
    #[error("the signature is not standard base64")]
    SignatureNotBase64,
    #[error("the signature is {len} bytes instead of 64")]
    SignatureLength { len: usize },
    #[error("the signature does not verify")]
    BadSignature,
    #[error("statement field `{field}` is neither a string nor an integer")]
    UnsupportedValue { field: String },
    #[error("statement field `{field}` is missing")]
    MissingField { field: &'static str },
    #[error("statement field `{field}` is not part of a `{kind}` statement")]
    UnexpectedField { field: String, kind: &'static str },
    #[error("statement field `{field}` is `{found}` but the entry's is `{expected}`")]
    FieldMismatch {
        field: &'static str,
        expected: String,
        found: String,
    },
    #[error("statement field `nonce` must be 32 lowercase hex digits")]
    BadNonce,
    #[error("entry kind `{kind}` takes no signed statement")]
    UnsignableKind { kind: String },
    #[error("the entry is not a JSON object")]
    EntryNotObject,
    #[error("entry field `{field}` {problem}")]
    MalformedEntry {
        field: &'static str,
        problem: &'static str,
    },
    #[error("the public key is not standard base64")]
    PublicKeyNotBase64,
    #[error("the public key is {len} bytes instead of 32")]
    PublicKeyLength { len: usize },
    #[error("the public key is not a valid Ed25519 point")]
    InvalidPublicKey,
    #[error("the public key is weak (of small order) and would accept forged signatures")]
    WeakPublicKey,
    #[error("signing key file `{path}`: {reason}")]
    KeyFile { path: String, reason: String },
}

impl StatementError {
    /// A stable code for HTTP answers.
    pub fn code(&self) -> &'static str {
        match self {
            Self::KeyIdMismatch { .. } => "signature_key_mismatch",
            Self::SignatureNotBase64 | Self::SignatureLength { .. } => "malformed_signature",
            Self::BadSignature => "bad_signature",
            Self::UnsupportedValue { .. }
            | Self::MissingField { .. }
            | Self::UnexpectedField { .. }
            | Self::BadNonce => "malformed_statement",
            Self::FieldMismatch { .. } | Self::UnsignableKind { .. } => "statement_mismatch",
            Self::EntryNotObject | Self::MalformedEntry { .. } => "malformed_entry",
            Self::PublicKeyNotBase64
            | Self::PublicKeyLength { .. }
            | Self::InvalidPublicKey
            | Self::WeakPublicKey => "malformed_public_key",
            Self::KeyFile { .. } => "bad_key_file",
        }
    }
}

/// The bytes a statement's signature covers: [`STATEMENT_DOMAIN`], then the
/// statement as compact JSON with every object's keys sorted (byte order).
pub fn signed_bytes(statement: &Map<String, Value>) -> Vec<u8> {
    let mut out = Vec::with_capacity(STATEMENT_DOMAIN.len() + 256);
    out.extend_from_slice(STATEMENT_DOMAIN);
    write_object(&mut out, statement);
    out
}

fn write_object(out: &mut Vec<u8>, object: &Map<String, Value>) {
    let mut names: Vec<&String> = object.keys().collect();
    names.sort();
    out.push(b'{');
    for (position, name) in names.into_iter().enumerate() {
        if position > 0 {
            out.push(b',');
        }
        write_scalar(out, &Value::String(name.clone()));
        out.push(b':');
        if let Some(value) = object.get(name) {
            write_value(out, value);
        }
    }
    out.push(b'}');
}

fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Object(object) => write_object(out, object),
        Value::Array(items) => {
            out.push(b'[');
            for (position, item) in items.iter().enumerate() {
                if position > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        scalar => write_scalar(out, scalar),
    }
}

fn write_scalar(out: &mut Vec<u8>, value: &Value) {
    // Writing a string, number, bool or null into a Vec cannot fail; if it ever
    // did, the bytes would differ and the signature would not verify.
    let _ = serde_json::to_writer(&mut *out, value);
}

/// The id of a public key: the first 16 bytes of its SHA-256, lowercase hex.
pub fn key_id(public_key: &VerifyingKey) -> String {
    let digest = Sha256::digest(public_key.as_bytes());
    hex::encode(digest.get(..16).unwrap_or_default())
}

/// A public key as registered (`PUT /v1/signing-key`): standard base64 of its 32 bytes.
pub fn public_key_base64(public_key: &VerifyingKey) -> String {
    BASE64.encode(public_key.as_bytes())
}

/// Parses a registered public key: standard base64 of 32 bytes, a valid point, not
/// of small order (a weak key lets anyone forge signatures that verify).
pub fn parse_public_key(base64: &str) -> Result<VerifyingKey, StatementError> {
    let bytes = BASE64
        .decode(base64)
        .map_err(|_| StatementError::PublicKeyNotBase64)?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| StatementError::PublicKeyLength { len: bytes.len() })?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| StatementError::InvalidPublicKey)?;
    if key.is_weak() {
        return Err(StatementError::WeakPublicKey);
    }
    Ok(key)
}

/// Reads a signing key file (`--sign-key FILE`): one line holding the 32-byte
/// Ed25519 seed as hex (64 digits) or standard base64, surrounding whitespace
/// ignored. Errors never echo the file's content.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, StatementError> {
    let refuse = |reason: String| StatementError::KeyFile {
        path: path.display().to_string(),
        reason,
    };
    let bytes = Zeroizing::new(
        writ_ledger::files::read_bounded(path, MAX_KEY_FILE_BYTES)
            .map_err(|error| refuse(format!("cannot be read: {error}")))?,
    );
    let text = std::str::from_utf8(&bytes).map_err(|_| refuse("is not text".into()))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(refuse("is empty".into()));
    }
    if text.lines().nth(1).is_some() {
        return Err(refuse(
            "holds more than one line; it must hold only the key".into(),
        ));
    }
    let seed = decode_hex(text)
        .or_else(|| BASE64.decode(text).ok().map(Zeroizing::new))
        .ok_or_else(|| {
            refuse(
                "is neither hex nor standard base64 (it must hold a 32-byte Ed25519 seed)".into(),
            )
        })?;
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(seed.as_slice().try_into().map_err(|_| {
        refuse(format!(
            "holds {} bytes; it must hold a 32-byte Ed25519 seed",
            seed.len()
        ))
    })?);
    Ok(SigningKey::from_bytes(&seed))
}

/// Hex of an even number of digits (either case), or `None`.
fn decode_hex(text: &str) -> Option<Zeroizing<Vec<u8>>> {
    if text.len() % 2 != 0 || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    hex::decode(text).ok().map(Zeroizing::new)
}

/// A statement, the id of the key that signed it, and the signature, as sent in a
/// request body and recorded in an entry's `signature` field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedStatement {
    /// [`key_id`] of the signer's public key.
    pub key_id: String,
    /// The flat statement; its keys may not repeat.
    #[serde(deserialize_with = "unique_object")]
    pub statement: Map<String, Value>,
    /// Standard base64 of the 64-byte Ed25519 signature over [`signed_bytes`].
    pub signature: String,
}

impl SignedStatement {
    /// Signs `statement` with `key`.
    pub fn sign(key: &SigningKey, statement: Map<String, Value>) -> Self {
        let signature = key.sign(&signed_bytes(&statement));
        Self {
            key_id: key_id(&key.verifying_key()),
            statement,
            signature: BASE64.encode(signature.to_bytes()),
        }
    }

    /// Checks the statement is flat, names `key` and is signed by it
    /// (`verify_strict`: no small-order keys or non-canonical signatures).
    pub fn verify(&self, key: &VerifyingKey) -> Result<(), StatementError> {
        let expected = key_id(key);
        if self.key_id != expected {
            return Err(StatementError::KeyIdMismatch {
                expected,
                found: echo(&self.key_id),
            });
        }
        check_flat(&self.statement)?;
        let bytes = BASE64
            .decode(&self.signature)
            .map_err(|_| StatementError::SignatureNotBase64)?;
        let bytes: [u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| StatementError::SignatureLength { len: bytes.len() })?;
        key.verify_strict(
            &signed_bytes(&self.statement),
            &Signature::from_bytes(&bytes),
        )
        .map_err(|_| StatementError::BadSignature)
    }
}

/// Refuses a statement holding anything but strings and integers.
fn check_flat(statement: &Map<String, Value>) -> Result<(), StatementError> {
    match statement.iter().find(|(_, value)| !is_flat_value(value)) {
        Some((field, _)) => Err(StatementError::UnsupportedValue { field: echo(field) }),
        None => Ok(()),
    }
}

fn is_flat_value(value: &Value) -> bool {
    match value {
        Value::String(_) => true,
        Value::Number(number) => number.is_i64() || number.is_u64(),
        _ => false,
    }
}

/// The statement kind a ledger entry kind is signed as, if it can be signed.
pub fn expected_statement_kind(entry_kind: &str) -> Option<&'static str> {
    match entry_kind {
        "break_glass.requested" => Some(REQUEST),
        "break_glass.approved" => Some("break_glass.approve"),
        "break_glass.denied" => Some("break_glass.deny"),
        "approval.approved" => Some("approval.approve"),
        "approval.denied" => Some("approval.deny"),
        _ => None,
    }
}

const REQUEST: &str = "break_glass.request";
const REQUEST_FIELDS: [&str; 7] = [
    "kind",
    "actor",
    "workspace",
    "role",
    "reason",
    "duration_ms",
    "nonce",
];
const DECISION_FIELDS: [&str; 5] = ["kind", "actor", "workspace", "subject", "comment"];

/// A `break_glass.request` statement.
pub fn request_statement(
    actor: &str,
    workspace: &str,
    role: &str,
    reason: &str,
    duration_ms: u64,
    nonce: &str,
) -> Map<String, Value> {
    let mut statement = Map::new();
    statement.insert("kind".into(), REQUEST.into());
    statement.insert("actor".into(), actor.into());
    statement.insert("workspace".into(), workspace.into());
    statement.insert("role".into(), role.into());
    statement.insert("reason".into(), reason.into());
    statement.insert("duration_ms".into(), duration_ms.into());
    statement.insert("nonce".into(), nonce.into());
    statement
}

/// An approve or deny statement (`kind` is `break_glass.approve`,
/// `break_glass.deny`, `approval.approve` or `approval.deny`) about `subject` (a
/// `bg_` or `ap_` id); `comment` is `""` when there is none.
pub fn decision_statement(
    kind: &str,
    actor: &str,
    workspace: &str,
    subject: &str,
    comment: &str,
) -> Map<String, Value> {
    let mut statement = Map::new();
    statement.insert("kind".into(), kind.into());
    statement.insert("actor".into(), actor.into());
    statement.insert("workspace".into(), workspace.into());
    statement.insert("subject".into(), subject.into());
    statement.insert("comment".into(), comment.into());
    statement
}

/// The matching rule on a whole parsed ledger entry: see [`check_matches_fields`].
pub fn check_matches(entry: &Value, statement: &Map<String, Value>) -> Result<(), StatementError> {
    let object = entry.as_object().ok_or(StatementError::EntryNotObject)?;
    check_matches_fields(
        entry_string(object, "kind")?,
        entry_string(object, "actor")?,
        entry_string(object, "workspace")?,
        object,
        statement,
    )
}

/// The matching rule, for an entry of `kind` by `actor` in `workspace` with the
/// kind-specific `fields` (a draft's fields, or the whole entry object).
///
/// The statement must hold exactly the fields of its kind, strings and integers
/// only; its `kind` must be the entry kind's statement kind, its `actor` and
/// `workspace` the entry's. An approve or deny statement's `subject` must be the
/// entry's `id` and its `comment` the entry's (`""` when absent); a request's
/// `role`, `reason` and `duration_ms` must be the entry's, and its `nonce` 32
/// lowercase hex digits. Fields the signer did not vouch for are refused rather
/// than ignored, so a signer never believes a field binds what the kernel ignores.
pub fn check_matches_fields(
    kind: &str,
    actor: &str,
    workspace: &str,
    fields: &Map<String, Value>,
    statement: &Map<String, Value>,
) -> Result<(), StatementError> {
    let expected_kind = expected_statement_kind(kind)
        .ok_or_else(|| StatementError::UnsignableKind { kind: echo(kind) })?;
    check_flat(statement)?;
    let allowed: &[&str] = if expected_kind == REQUEST {
        &REQUEST_FIELDS
    } else {
        &DECISION_FIELDS
    };
    if let Some(field) = statement
        .keys()
        .find(|field| !allowed.contains(&field.as_str()))
    {
        return Err(StatementError::UnexpectedField {
            field: echo(field),
            kind: expected_kind,
        });
    }
    same_string(statement, "kind", expected_kind)?;
    same_string(statement, "actor", actor)?;
    same_string(statement, "workspace", workspace)?;
    if expected_kind == REQUEST {
        same_string(statement, "role", entry_string(fields, "role")?)?;
        same_string(statement, "reason", entry_string(fields, "reason")?)?;
        let duration = fields.get("duration_ms").and_then(Value::as_u64).ok_or(
            StatementError::MalformedEntry {
                field: "duration_ms",
                problem: "is missing or not a non-negative integer",
            },
        )?;
        let signed = statement
            .get("duration_ms")
            .ok_or(StatementError::MissingField {
                field: "duration_ms",
            })?;
        if signed.as_u64() != Some(duration) {
            return Err(StatementError::FieldMismatch {
                field: "duration_ms",
                expected: duration.to_string(),
                found: echo(&signed.to_string()),
            });
        }
        let nonce = statement_string(statement, "nonce")?;
        if nonce.len() != 32
            || !nonce
                .bytes()
                .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
        {
            return Err(StatementError::BadNonce);
        }
    } else {
        same_string(statement, "subject", entry_string(fields, "id")?)?;
        let comment = match fields.get("comment") {
            None | Some(Value::Null) => "",
            Some(Value::String(comment)) => comment,
            Some(_) => {
                return Err(StatementError::MalformedEntry {
                    field: "comment",
                    problem: "is not a string",
                })
            }
        };
        same_string(statement, "comment", comment)?;
    }
    Ok(())
}

pub(super) fn entry_string<'a>(
    object: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, StatementError> {
    match object.get(field) {
        Some(Value::String(value)) => Ok(value),
        Some(_) => Err(StatementError::MalformedEntry {
            field,
            problem: "is not a string",
        }),
        None => Err(StatementError::MalformedEntry {
            field,
            problem: "is missing",
        }),
    }
}

fn statement_string<'a>(
    statement: &'a Map<String, Value>,
    field: &'static str,
) -> Result<&'a str, StatementError> {
    match statement.get(field) {
        Some(Value::String(value)) => Ok(value),
        Some(other) => Err(StatementError::FieldMismatch {
            field,
            expected: "a string".into(),
            found: echo(&other.to_string()),
        }),
        None => Err(StatementError::MissingField { field }),
    }
}

fn same_string(
    statement: &Map<String, Value>,
    field: &'static str,
    expected: &str,
) -> Result<(), StatementError> {
    let found = statement_string(statement, field)?;
    if found == expected {
        Ok(())
    } else {
        Err(StatementError::FieldMismatch {
            field,
            expected: echo(expected),
            found: echo(found),
        })
    }
}

/// At most [`MAX_ECHO_CHARS`] characters of a value, for an error message.
pub(super) fn echo(value: &str) -> String {
    let mut chars = value.chars();
    let mut out: String = chars.by_ref().take(MAX_ECHO_CHARS).collect();
    if chars.next().is_some() {
        out.push_str("...");
    }
    out
}

/// Deserializes a JSON object into a map, refusing a key that appears twice (a
/// plain `Map` keeps the last, while another reader may keep the first).
pub(super) fn unique_object<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Map<String, Value>, D::Error> {
    struct UniqueObject;
    impl<'de> Visitor<'de> for UniqueObject {
        type Value = Map<String, Value>;

        fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
            formatter.write_str("a JSON object")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
            let mut object = Map::new();
            while let Some((name, value)) = access.next_entry::<String, Value>()? {
                if object.contains_key(&name) {
                    return Err(de::Error::custom(format_args!(
                        "duplicate field `{}`",
                        echo(&name)
                    )));
                }
                object.insert(name, value);
            }
            Ok(object)
        }
    }
    deserializer.deserialize_map(UniqueObject)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected input"
)]
mod tests {
    use super::*;
    use crate::grants::test_keys::{approve, key, object, ALICE, BG, BOB};
    use serde_json::json;

    #[test]
    fn signed_bytes_sort_keys_and_have_no_whitespace() {
        let mut statement = Map::new();
        statement.insert("zeta".into(), json!("z"));
        statement.insert("alpha".into(), json!(7));
        statement.insert("mid".into(), json!("a \"quote\""));
        assert_eq!(
            signed_bytes(&statement),
            b"writ-statement-v1\n{\"alpha\":7,\"mid\":\"a \\\"quote\\\"\",\"zeta\":\"z\"}"
        );
    }

    #[test]
    fn key_id_is_sixteen_bytes_of_sha256() {
        let public = key(1).verifying_key();
        let id = key_id(&public);
        assert_eq!(id.len(), 32);
        assert_eq!(id, hex::encode(&Sha256::digest(public.as_bytes())[..16]));
        assert_eq!(
            parse_public_key(&public_key_base64(&public)).unwrap(),
            public
        );
    }

    #[test]
    fn sign_verify_round_trip_through_json() {
        let signed = SignedStatement::sign(&key(1), approve(BG, "ok"));
        let text = serde_json::to_string(&signed).unwrap();
        let parsed: SignedStatement = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, signed);
        parsed.verify(&key(1).verifying_key()).unwrap();
    }

    #[test]
    fn a_flipped_byte_fails() {
        let public = key(1).verifying_key();
        let signed = SignedStatement::sign(&key(1), approve(BG, "ok"));
        let mut statement = signed.clone();
        statement.statement.insert("comment".into(), json!("oK"));
        assert_eq!(statement.verify(&public), Err(StatementError::BadSignature));
        for position in [0, 31, 32, 63] {
            let mut bytes = BASE64.decode(&signed.signature).unwrap();
            bytes[position] ^= 1;
            let mut forged = signed.clone();
            forged.signature = BASE64.encode(&bytes);
            assert_eq!(forged.verify(&public), Err(StatementError::BadSignature));
        }
        let mut short = signed.clone();
        short.signature = BASE64.encode([0u8; 63]);
        assert_eq!(
            short.verify(&public),
            Err(StatementError::SignatureLength { len: 63 })
        );
        let mut garbage = signed;
        garbage.signature = "not base64!".into();
        assert_eq!(
            garbage.verify(&public),
            Err(StatementError::SignatureNotBase64)
        );
    }

    #[test]
    fn wrong_key_and_wrong_key_id_fail() {
        let signed = SignedStatement::sign(&key(1), approve(BG, ""));
        assert!(matches!(
            signed.verify(&key(2).verifying_key()),
            Err(StatementError::KeyIdMismatch { .. })
        ));
        // Claiming the other key's id does not help: the signature is still key 1's.
        let mut claimed = signed;
        claimed.key_id = key_id(&key(2).verifying_key());
        assert_eq!(
            claimed.verify(&key(2).verifying_key()),
            Err(StatementError::BadSignature)
        );
    }

    #[test]
    fn nested_values_and_unknown_fields_are_refused() {
        let mut statement = approve(BG, "");
        statement.insert("extra".into(), json!({"a": 1}));
        let signed = SignedStatement::sign(&key(1), statement);
        assert!(matches!(
            signed.verify(&key(1).verifying_key()),
            Err(StatementError::UnsupportedValue { .. })
        ));
        let mut float = approve(BG, "");
        float.insert("subject".into(), json!(1.5));
        assert!(check_flat(&float).is_err());
        let text = r#"{"key_id":"x","statement":{},"signature":"","extra":1}"#;
        assert!(serde_json::from_str::<SignedStatement>(text).is_err());
        let repeated = r#"{"key_id":"x","statement":{"a":"1","a":"2"},"signature":""}"#;
        let error = serde_json::from_str::<SignedStatement>(repeated).unwrap_err();
        assert!(error.to_string().contains("duplicate field `a`"), "{error}");
    }

    #[test]
    fn public_keys_must_be_32_byte_strong_points() {
        assert_eq!(
            parse_public_key("AAAA"),
            Err(StatementError::PublicKeyLength { len: 3 })
        );
        assert_eq!(
            parse_public_key("%%%"),
            Err(StatementError::PublicKeyNotBase64)
        );
        // The identity point (small order).
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            parse_public_key(&BASE64.encode(identity)),
            Err(StatementError::WeakPublicKey)
        );
    }

    fn approved_entry(comment: Option<&str>) -> Value {
        let mut entry = json!({
            "v": 1, "index": 5, "time": "2026-01-01T00:00:00.000Z",
            "kind": "break_glass.approved", "actor": ALICE, "workspace": "acme",
            "id": BG, "approvals": 1,
        });
        if let Some(comment) = comment {
            entry["comment"] = json!(comment);
        }
        entry
    }

    #[test]
    fn matching_follows_the_entry() {
        check_matches(&approved_entry(Some("ok")), &approve(BG, "ok")).unwrap();
        check_matches(&approved_entry(None), &approve(BG, "")).unwrap();
        let mismatch =
            |entry: &Value, statement: &Map<String, Value>| match check_matches(entry, statement) {
                Err(StatementError::FieldMismatch { field, .. }) => field,
                other => panic!("expected a mismatch, got {other:?}"),
            };
        assert_eq!(
            mismatch(
                &approved_entry(None),
                &approve("bg_ffffffffffffffffffffffffffffffff", "")
            ),
            "subject"
        );
        assert_eq!(
            mismatch(&approved_entry(Some("ok")), &approve(BG, "")),
            "comment"
        );
        assert_eq!(
            mismatch(&approved_entry(None), &approve(BG, "ok")),
            "comment"
        );
        let by_bob = decision_statement("break_glass.approve", BOB, "acme", BG, "");
        assert_eq!(mismatch(&approved_entry(None), &by_bob), "actor");
        let elsewhere = decision_statement("break_glass.approve", ALICE, "other", BG, "");
        assert_eq!(mismatch(&approved_entry(None), &elsewhere), "workspace");
        let deny = decision_statement("break_glass.deny", ALICE, "acme", BG, "");
        assert_eq!(mismatch(&approved_entry(None), &deny), "kind");
        let mut extra = approve(BG, "");
        extra.insert("valid_until".into(), json!(1));
        assert!(matches!(
            check_matches(&approved_entry(None), &extra),
            Err(StatementError::UnexpectedField { .. })
        ));
        let mut missing = approve(BG, "");
        missing.remove("comment");
        assert_eq!(
            check_matches(&approved_entry(None), &missing),
            Err(StatementError::MissingField { field: "comment" })
        );
        let mut decision = approved_entry(None);
        decision["kind"] = json!("decision");
        assert!(matches!(
            check_matches(&decision, &approve(BG, "")),
            Err(StatementError::UnsignableKind { .. })
        ));
    }

    #[test]
    fn a_request_matches_role_reason_duration_and_needs_a_nonce() {
        let nonce = "00112233445566778899aabbccddeeff";
        let fields = object(
            json!({"id": BG, "role": "admin", "reason": "outage", "duration_ms": 1_800_000}),
        );
        let statement = request_statement(BOB, "acme", "admin", "outage", 1_800_000, nonce);
        check_matches_fields("break_glass.requested", BOB, "acme", &fields, &statement).unwrap();
        let longer = request_statement(BOB, "acme", "admin", "outage", 3_600_000, nonce);
        assert!(matches!(
            check_matches_fields("break_glass.requested", BOB, "acme", &fields, &longer),
            Err(StatementError::FieldMismatch {
                field: "duration_ms",
                ..
            })
        ));
        let other_role = request_statement(BOB, "acme", "owner", "outage", 1_800_000, nonce);
        assert!(
            check_matches_fields("break_glass.requested", BOB, "acme", &fields, &other_role)
                .is_err()
        );
        let bad_nonce = request_statement(BOB, "acme", "admin", "outage", 1_800_000, "00");
        assert_eq!(
            check_matches_fields("break_glass.requested", BOB, "acme", &fields, &bad_nonce),
            Err(StatementError::BadNonce)
        );
    }

    #[test]
    fn signing_key_files_hold_a_seed_in_hex_or_base64() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let seed = [7u8; 32];
        for text in [
            format!("{}\n", hex::encode(seed)),
            format!("  {}  \n", hex::encode_upper(seed)),
            format!("{}\n", BASE64.encode(seed)),
        ] {
            std::fs::write(&path, text).unwrap();
            let read = read_signing_key(&path).unwrap();
            assert_eq!(read.to_bytes(), seed);
        }
        let secret = hex::encode([9u8; 31]);
        for (text, needle) in [
            (secret.clone(), "holds 31 bytes"),
            (BASE64.encode([9u8; 64]), "holds 64 bytes"),
            (
                "not a key at all".to_owned(),
                "neither hex nor standard base64",
            ),
            (format!("{secret}\n{secret}"), "more than one line"),
            ("\n".to_owned(), "is empty"),
        ] {
            std::fs::write(&path, &text).unwrap();
            let error = read_signing_key(&path).unwrap_err().to_string();
            assert!(error.contains(needle), "{error}");
            assert!(
                !error.contains(&secret),
                "the error echoes the key: {error}"
            );
        }
        let missing = read_signing_key(&dir.path().join("missing")).unwrap_err();
        assert!(missing.to_string().contains("cannot be read"), "{missing}");
    }
}
