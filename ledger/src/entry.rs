//! The ledger entry: one explicit, versioned JSON encoder and its strict parser.
//!
//! An entry is stored as the exact bytes that are hashed. The encoder writes the
//! common fields first, in a fixed order (`v`, `index`, `time`, `kind`, `actor`,
//! `workspace`), then the kind-specific fields sorted by name. The verifier never
//! re-encodes: it hashes the stored bytes and parses them only to check the common
//! fields.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::error::LedgerError;
use crate::types::LeafIndex;

/// The format version written into every entry's `v` field.
pub const ENTRY_VERSION: u64 = 1;

/// The largest entry, in bytes: the tlog-tiles entry bundles prefix each entry with
/// a big-endian uint16 length, so 64 KiB - 1 is the hard limit of the format.
pub const MAX_ENTRY_BYTES: usize = u16::MAX as usize;

/// Fields every entry has; a caller can never set them through `fields`.
pub const RESERVED_FIELDS: [&str; 6] = ["v", "index", "time", "kind", "actor", "workspace"];

/// The longest header the encoder can write: `{"v":1,"index":<20 digits>,"time":"<24>",`.
const MAX_HEADER_BYTES: usize = r#"{"v":1,"index":,"time":"","#.len() + 20 + 24;

/// What a writer asks the ledger to record; the ledger adds `v`, `index` and `time`.
#[derive(Clone, Debug)]
pub struct EntryDraft {
    /// What happened: `decision`, `outcome`, `policy.loaded`, `kernel.started`, ...
    pub kind: String,
    /// The verified principal, or `writ` for the kernel itself.
    pub actor: String,
    /// The workspace the entry belongs to (`-` when none applies).
    pub workspace: String,
    /// The kind-specific fields; never a secret, token or key.
    pub fields: Map<String, Value>,
}

/// A draft checked and encoded up to its ledger-assigned header, so that the single
/// writer only has to prepend `{"v":1,"index":N,"time":"T",`.
#[derive(Clone, Debug)]
pub struct PreparedEntry {
    /// The JSON from `"kind"` to the closing brace.
    tail: Vec<u8>,
}

impl EntryDraft {
    /// Validates the draft and encodes everything but the header.
    pub fn prepare(&self) -> Result<PreparedEntry, LedgerError> {
        if !is_valid_kind(&self.kind) {
            return Err(LedgerError::MalformedEntry {
                // Echo at most 64 characters of a caller's input back.
                reason: format!(
                    "kind `{}` is not lowercase words joined by `.` or `_` (at most 64 bytes)",
                    self.kind.chars().take(64).collect::<String>()
                ),
            });
        }
        if let Some(name) = self
            .fields
            .keys()
            .find(|name| RESERVED_FIELDS.contains(&name.as_str()))
        {
            return Err(LedgerError::ReservedField { name: name.clone() });
        }
        let mut tail = Vec::with_capacity(128);
        write_field(&mut tail, "kind", &Value::String(self.kind.clone()))?;
        tail.push(b',');
        write_field(&mut tail, "actor", &Value::String(self.actor.clone()))?;
        tail.push(b',');
        write_field(
            &mut tail,
            "workspace",
            &Value::String(self.workspace.clone()),
        )?;
        let mut names: Vec<&String> = self.fields.keys().collect();
        names.sort();
        for name in names {
            if let Some(value) = self.fields.get(name) {
                tail.push(b',');
                write_field(&mut tail, name, value)?;
            }
        }
        tail.push(b'}');
        let worst = MAX_HEADER_BYTES + tail.len();
        if worst > MAX_ENTRY_BYTES {
            return Err(LedgerError::EntryTooLarge {
                len: worst,
                max: MAX_ENTRY_BYTES,
            });
        }
        Ok(PreparedEntry { tail })
    }
}

impl PreparedEntry {
    /// The final entry bytes at `index`, stamped with `time`.
    pub fn encode(&self, index: LeafIndex, time: SystemTime) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_HEADER_BYTES + self.tail.len());
        out.extend_from_slice(br#"{"v":1,"index":"#);
        out.extend_from_slice(index.0.to_string().as_bytes());
        out.extend_from_slice(br#","time":""#);
        out.extend_from_slice(format_time(time).as_bytes());
        out.extend_from_slice(br#"","#);
        out.extend_from_slice(&self.tail);
        out
    }
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-11-21T23:59:59.123Z`.
pub fn format_time(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn write_field(out: &mut Vec<u8>, name: &str, value: &Value) -> Result<(), LedgerError> {
    serde_json::to_writer(&mut *out, name).map_err(|error| LedgerError::MalformedEntry {
        reason: error.to_string(),
    })?;
    out.push(b':');
    serde_json::to_writer(&mut *out, value).map_err(|error| LedgerError::MalformedEntry {
        reason: error.to_string(),
    })
}

fn is_valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte == b'.' || byte == b'_')
        && !kind.starts_with('.')
        && !kind.ends_with('.')
}

/// The common fields of a stored entry, as the verifier checks them.
#[derive(Debug, Deserialize)]
pub struct EntryHeader {
    pub v: u64,
    pub index: u64,
    pub time: String,
    pub kind: String,
    pub actor: String,
    pub workspace: String,
}

/// Parses a stored entry and checks it is entry `expected` of format version 1.
pub fn check_entry(bytes: &[u8], expected: LeafIndex) -> Result<EntryHeader, LedgerError> {
    if bytes.len() > MAX_ENTRY_BYTES {
        return Err(LedgerError::EntryTooLarge {
            len: bytes.len(),
            max: MAX_ENTRY_BYTES,
        });
    }
    let header: EntryHeader =
        serde_json::from_slice(bytes).map_err(|error| LedgerError::MalformedEntry {
            reason: error.to_string(),
        })?;
    if header.v != ENTRY_VERSION {
        return Err(LedgerError::MalformedEntry {
            reason: format!("unknown format version {}", header.v),
        });
    }
    if header.index != expected.0 {
        return Err(LedgerError::MalformedEntry {
            reason: format!("field index is {} at position {}", header.index, expected.0),
        });
    }
    if humantime::parse_rfc3339(&header.time).is_err() {
        return Err(LedgerError::MalformedEntry {
            reason: format!("time `{}` is not RFC 3339", header.time),
        });
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn draft(fields: Value) -> EntryDraft {
        EntryDraft {
            kind: "decision".into(),
            actor: "User::\"alice\"".into(),
            workspace: "acme".into(),
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn encodes_header_then_sorted_fields() {
        let prepared = draft(serde_json::json!({"zeta": 1, "alpha": "x"}))
            .prepare()
            .unwrap();
        let time = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let bytes = prepared.encode(LeafIndex(42), time);
        assert_eq!(
            std::str::from_utf8(&bytes).unwrap(),
            r#"{"v":1,"index":42,"time":"2023-11-14T22:13:20.123Z","kind":"decision","actor":"User::\"alice\"","workspace":"acme","alpha":"x","zeta":1}"#
        );
        let header = check_entry(&bytes, LeafIndex(42)).unwrap();
        assert_eq!(header.kind, "decision");
        assert!(check_entry(&bytes, LeafIndex(41)).is_err());
    }

    #[test]
    fn reserved_fields_and_bad_kinds_are_refused() {
        let err = draft(serde_json::json!({"index": 7}))
            .prepare()
            .unwrap_err();
        assert!(matches!(err, LedgerError::ReservedField { .. }));
        let mut bad = draft(serde_json::json!({}));
        bad.kind = "Decision\n".into();
        assert!(bad.prepare().is_err());
    }

    #[test]
    fn oversized_entries_are_refused_before_the_writer_sees_them() {
        let big = "x".repeat(MAX_ENTRY_BYTES);
        let err = draft(serde_json::json!({ "blob": big }))
            .prepare()
            .unwrap_err();
        assert!(matches!(err, LedgerError::EntryTooLarge { .. }), "{err}");
    }

    #[test]
    fn the_largest_accepted_entry_fits_the_bundle_prefix() {
        // Find the largest blob that prepares; its encoding at the largest index must fit.
        let overhead = draft(serde_json::json!({ "blob": "" }))
            .prepare()
            .unwrap()
            .tail
            .len();
        let room = MAX_ENTRY_BYTES - MAX_HEADER_BYTES - overhead;
        let prepared = draft(serde_json::json!({ "blob": "y".repeat(room) }))
            .prepare()
            .unwrap();
        let bytes = prepared.encode(LeafIndex(u64::MAX), UNIX_EPOCH);
        assert!(bytes.len() <= MAX_ENTRY_BYTES);
        assert!(draft(serde_json::json!({ "blob": "y".repeat(room + 1) }))
            .prepare()
            .is_err());
    }

    #[test]
    fn parser_refuses_garbage_and_duplicates() {
        assert!(check_entry(b"not json", LeafIndex(0)).is_err());
        assert!(check_entry(b"[]", LeafIndex(0)).is_err());
        let dup = br#"{"v":1,"index":0,"index":0,"time":"2023-11-14T22:13:20.123Z","kind":"k","actor":"a","workspace":"w"}"#;
        assert!(check_entry(dup, LeafIndex(0)).is_err());
        let v2 = br#"{"v":2,"index":0,"time":"2023-11-14T22:13:20.123Z","kind":"k","actor":"a","workspace":"w"}"#;
        assert!(check_entry(v2, LeafIndex(0)).is_err());
    }
}
