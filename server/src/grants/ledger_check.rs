//! The offline check of a whole ledger's signed statements, run by `writ ledger
//! verify` over every entry in index order: registered keys are well formed, every
//! signed entry matches its statement and verifies with the key its actor
//! registered before it, and a request that required signed approvals gets them.
//!
//! It applies the same matching rule as the kernel on submit
//! ([`check_matches_fields`]), and parses entries itself, refusing a repeated
//! top-level field so that it reads what every other reader reads.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};

use ed25519_dalek::VerifyingKey;
use serde::de::{Deserializer, IgnoredAny};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::statement::{
    check_matches_fields, echo, entry_string, key_id, parse_public_key, unique_object,
    SignedStatement,
};

/// A whole ledger entry parsed with no repeated top-level field.
struct UniqueEntry(Map<String, Value>);

impl<'de> Deserialize<'de> for UniqueEntry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        unique_object(deserializer).map(Self)
    }
}

/// Whether a field is present at all, whatever its value (`null` included).
#[derive(Debug, Default)]
struct Present(bool);

impl<'de> Deserialize<'de> for Present {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(deserializer).map(|_| Self(true))
    }
}

/// The little of an entry looked at before deciding whether to parse all of it.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default)]
    signature: Present,
}

/// Entry kinds the checker follows even when they carry no signature.
const FOLLOWED_KINDS: [&str; 4] = [
    "signing_key.registered",
    "break_glass.requested",
    "break_glass.approved",
    "break_glass.activated",
];

/// What a [`LedgerSignatureChecker`] checked.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SignatureReport {
    /// `signing_key.registered` entries (each key checked).
    pub keys_registered: u64,
    /// Entries with a `signature` field, each matched and verified.
    pub signed_entries_checked: u64,
    /// `break_glass.approved` entries whose request required a signed approval.
    pub required_approvals_checked: u64,
}

/// A signing key as registered by a principal.
#[derive(Debug)]
struct RegisteredKey {
    key: VerifyingKey,
    key_id: String,
    index: u64,
}

/// What the checker remembers of a break-glass request.
#[derive(Debug)]
struct Request {
    index: u64,
    /// Who asked (never counted as an approver).
    requester: String,
    signed_approvals: bool,
    emergency: bool,
    approvals_required: u64,
    /// The approvers whose signed approval verified, when signed ones are required.
    signed_approvers: BTreeSet<String>,
}

/// Checks the signed statements of a ledger, fed its entries in index order (by
/// `writ ledger verify`, after or while their integrity is verified).
///
/// - A `signing_key.registered` entry registers its key for its actor in its
///   workspace (the latest registration wins); a malformed key, or a `key_id`
///   that is not the key's, fails.
/// - An entry with a `signature` field must be of a kind that takes one, its
///   statement must match the entry
///   ([`check_matches`](super::statement::check_matches)), and it must verify
///   with the key its actor registered at a lower index, whose id it names.
/// - A `break_glass.requested` entry with `signed_approvals: true` makes every
///   `break_glass.approved` entry for its `id` need a signature, and its
///   `break_glass.activated` entry (unless an emergency) need as many signed
///   approvals, by distinct approvers, as it required.
/// - A `break_glass.approved` or `break_glass.activated` entry must follow the
///   request for its `id`; a request's id may not be requested again.
///
/// Entries that are not JSON objects, or of other kinds without a signature, are
/// skipped: their integrity is what the Merkle verification covers.
#[derive(Debug, Default)]
pub struct LedgerSignatureChecker {
    /// (workspace, actor) -> its latest registered key.
    keys: HashMap<(String, String), RegisteredKey>,
    /// (workspace, elevation id) -> its request.
    requests: HashMap<(String, String), Request>,
    next_index: u64,
    report: SignatureReport,
}

impl LedgerSignatureChecker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks entry `index`; entries must come in index order. The error is one
    /// line naming what is wrong (the caller adds the entry's index).
    pub fn check(&mut self, index: u64, entry_bytes: &[u8]) -> Result<(), String> {
        if index < self.next_index {
            return Err(format!(
                "entries must be checked in index order (expected at least {})",
                self.next_index
            ));
        }
        self.next_index = index.saturating_add(1);
        let followed = match serde_json::from_slice::<Probe<'_>>(entry_bytes) {
            Ok(probe) => {
                probe.signature.0
                    || probe
                        .kind
                        .is_some_and(|kind| FOLLOWED_KINDS.contains(&kind.as_ref()))
            }
            Err(error) => {
                // Not JSON or not an object: not this checker's concern. But an
                // object whose `kind` is not a string or that repeats `kind` or
                // `signature` must not slip past the rules by being skipped.
                return match serde_json::from_slice::<Value>(entry_bytes) {
                    Ok(Value::Object(_)) => Err(format!("malformed entry: {error}")),
                    _ => Ok(()),
                };
            }
        };
        if !followed {
            return Ok(());
        }
        let entry = serde_json::from_slice::<UniqueEntry>(entry_bytes)
            .map_err(|error| format!("malformed entry: {error}"))?
            .0;
        self.check_entry(index, entry)
    }

    /// What was checked.
    pub fn finish(self) -> SignatureReport {
        self.report
    }

    fn check_entry(&mut self, index: u64, entry: Map<String, Value>) -> Result<(), String> {
        let text = |field: &'static str| {
            entry_string(&entry, field).map_err(|error| format!("malformed entry: {error}"))
        };
        let kind = text("kind")?;
        let actor = text("actor")?;
        let workspace = text("workspace")?;
        let signed = match entry.get("signature") {
            None => false,
            Some(signature) => {
                self.check_signature(index, kind, actor, workspace, &entry, signature)?;
                self.report.signed_entries_checked += 1;
                true
            }
        };
        match kind {
            "signing_key.registered" => {
                let public_key = text("public_key")?;
                let claimed = text("key_id")?;
                let key = parse_public_key(public_key)
                    .map_err(|error| format!("signing key registered by `{actor}`: {error}"))?;
                let key_id = key_id(&key);
                if claimed != key_id {
                    return Err(format!(
                        "signing key registered by `{actor}`: key id `{}` is not the key's id `{key_id}`",
                        echo(claimed)
                    ));
                }
                self.keys.insert(
                    (workspace.to_owned(), actor.to_owned()),
                    RegisteredKey { key, key_id, index },
                );
                self.report.keys_registered += 1;
            }
            "break_glass.requested" => {
                let id = text("id")?;
                let flag = |field: &'static str| match entry.get(field) {
                    None => Ok(false),
                    Some(Value::Bool(value)) => Ok(*value),
                    Some(_) => Err(format!("malformed entry: field `{field}` is not a boolean")),
                };
                let signed_approvals = flag("signed_approvals")?;
                let request = Request {
                    index,
                    requester: actor.to_owned(),
                    signed_approvals,
                    emergency: flag("emergency")?,
                    approvals_required: match entry.get("approvals_required") {
                        None if signed_approvals => {
                            return Err("malformed entry: a request that requires signed approvals must say how many (`approvals_required`)".to_owned());
                        }
                        None => 0,
                        Some(value) => value.as_u64().ok_or_else(|| {
                            "malformed entry: field `approvals_required` is not a non-negative integer"
                                .to_owned()
                        })?,
                    },
                    signed_approvers: BTreeSet::new(),
                };
                let key = (workspace.to_owned(), id.to_owned());
                if let Some(earlier) = self.requests.get(&key) {
                    return Err(format!(
                        "elevation `{}` was already requested at entry {}",
                        echo(id),
                        earlier.index
                    ));
                }
                self.requests.insert(key, request);
            }
            "break_glass.approved" => {
                let id = text("id")?;
                let request = self
                    .requests
                    .get_mut(&(workspace.to_owned(), id.to_owned()))
                    .ok_or_else(|| {
                        format!("approval of `{}` follows no request for it", echo(id))
                    })?;
                if actor == request.requester {
                    return Err(format!("`{}` is approved by its own requester", echo(id)));
                }
                if request.signed_approvals {
                    if !signed {
                        return Err(format!(
                            "approval of `{}` is not signed but its request (entry {}) requires signed approvals",
                            echo(id),
                            request.index
                        ));
                    }
                    request.signed_approvers.insert(actor.to_owned());
                    self.report.required_approvals_checked += 1;
                }
            }
            "break_glass.activated" => {
                let id = text("id")?;
                let request = self
                    .requests
                    .get(&(workspace.to_owned(), id.to_owned()))
                    .ok_or_else(|| {
                        format!("activation of `{}` follows no request for it", echo(id))
                    })?;
                // Whether it was an emergency is the request's to say, not the
                // activation's; and signed approvals are never skipped.
                let claimed = entry.get("emergency") == Some(&Value::Bool(true));
                if claimed != request.emergency {
                    return Err(format!(
                        "the activation of `{}` says emergency: {claimed}, its request (entry {}) says {}",
                        echo(id),
                        request.index,
                        request.emergency
                    ));
                }
                let approvers = request.signed_approvers.len() as u64;
                if request.signed_approvals && approvers < request.approvals_required {
                    return Err(format!(
                        "`{}` is activated with {approvers} signed approvals but its request (entry {}) requires {}",
                        echo(id),
                        request.index,
                        request.approvals_required
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn check_signature(
        &self,
        index: u64,
        kind: &str,
        actor: &str,
        workspace: &str,
        entry: &Map<String, Value>,
        signature: &Value,
    ) -> Result<(), String> {
        let signed = SignedStatement::deserialize(signature)
            .map_err(|error| format!("field `signature` is not a signed statement: {error}"))?;
        check_matches_fields(kind, actor, workspace, entry, &signed.statement)
            .map_err(|error| format!("the signed statement does not match the entry: {error}"))?;
        let registered = self
            .keys
            .get(&(workspace.to_owned(), actor.to_owned()))
            .filter(|registered| registered.index < index)
            .ok_or_else(|| {
                format!("the entry is signed but `{actor}` registered no signing key before it")
            })?;
        if signed.key_id != registered.key_id {
            return Err(format!(
                "signed with key `{}` but `{actor}`'s key registered at entry {} is `{}`",
                echo(&signed.key_id),
                registered.index,
                registered.key_id
            ));
        }
        signed
            .verify(&registered.key)
            .map_err(|error| format!("the signed statement of `{actor}`: {error}"))
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "tests fail loudly on unexpected input"
)]
mod tests {
    use super::*;
    use crate::grants::statement::public_key_base64;
    use crate::grants::test_keys::{approve, key, object, ALICE, BG, BOB};
    use ed25519_dalek::SigningKey;
    use serde_json::json;

    const CAROL: &str = "User::\"carol\"";

    /// Feeds entries (the header is added) to a checker; returns its verdicts.
    struct Ledger {
        checker: LedgerSignatureChecker,
        next: u64,
    }

    impl Ledger {
        fn new() -> Self {
            Self {
                checker: LedgerSignatureChecker::new(),
                next: 0,
            }
        }

        fn push(&mut self, kind: &str, actor: &str, fields: Value) -> Result<(), String> {
            let mut entry = json!({
                "v": 1, "index": self.next, "time": "2026-01-01T00:00:00.000Z",
                "kind": kind, "actor": actor, "workspace": "acme",
            });
            for (name, value) in object(fields) {
                entry[name] = value;
            }
            let index = self.next;
            self.next += 1;
            self.checker
                .check(index, &serde_json::to_vec(&entry).unwrap())
        }

        fn register(&mut self, actor: &str, key: &SigningKey) {
            let public = key.verifying_key();
            self.push(
                "signing_key.registered",
                actor,
                json!({"key_id": key_id(&public), "public_key": public_key_base64(&public)}),
            )
            .unwrap();
        }

        fn request(&mut self, signed_approvals: bool) {
            self.push(
                "break_glass.requested",
                BOB,
                json!({
                    "id": BG, "role": "admin", "reason": "outage", "duration_ms": 60_000,
                    "pending_expires_unix_ms": 1, "approvals_required": 1,
                    "signed_approvals": signed_approvals, "emergency": false,
                }),
            )
            .unwrap();
        }

        fn approve(
            &mut self,
            actor: &str,
            signature: Option<SignedStatement>,
        ) -> Result<(), String> {
            let mut fields = json!({"id": BG, "comment": "ok", "approvals": 1});
            if let Some(signature) = signature {
                fields["signature"] = serde_json::to_value(signature).unwrap();
            }
            self.push("break_glass.approved", actor, fields)
        }

        fn activate(&mut self) -> Result<(), String> {
            self.push(
                "break_glass.activated",
                "writ",
                json!({"id": BG, "requester": BOB, "role": "admin", "expires_unix_ms": 2, "emergency": false}),
            )
        }
    }

    fn alice_approves(key: &SigningKey) -> SignedStatement {
        SignedStatement::sign(key, approve(BG, "ok"))
    }

    #[test]
    fn checker_accepts_a_registered_key_and_a_signed_approval() {
        let mut ledger = Ledger::new();
        ledger
            .push("decision", ALICE, json!({"effect": "allow"}))
            .unwrap();
        ledger.register(ALICE, &key(1));
        ledger.request(true);
        ledger
            .approve(ALICE, Some(alice_approves(&key(1))))
            .unwrap();
        ledger.activate().unwrap();
        assert_eq!(
            ledger.checker.finish(),
            SignatureReport {
                keys_registered: 1,
                signed_entries_checked: 1,
                required_approvals_checked: 1,
            }
        );
    }

    #[test]
    fn checker_refuses_a_forged_signature() {
        let mut ledger = Ledger::new();
        ledger.register(ALICE, &key(1));
        ledger.request(true);
        // Signed by a key the operator holds, claiming alice's key id.
        let mut forged = alice_approves(&key(2));
        forged.key_id = key_id(&key(1).verifying_key());
        let error = ledger.approve(ALICE, Some(forged)).unwrap_err();
        assert!(error.contains("does not verify"), "{error}");
        // Naming its own key id is caught before the signature is looked at.
        let error = ledger
            .approve(ALICE, Some(alice_approves(&key(2))))
            .unwrap_err();
        assert!(error.contains("registered at entry 0"), "{error}");
    }

    #[test]
    fn checker_refuses_a_missing_required_signature() {
        let mut ledger = Ledger::new();
        ledger.register(ALICE, &key(1));
        ledger.request(true);
        let error = ledger.approve(ALICE, None).unwrap_err();
        assert_eq!(
            error,
            format!("approval of `{BG}` is not signed but its request (entry 1) requires signed approvals")
        );
        // Without the requirement, an unsigned approval is fine.
        let mut relaxed = Ledger::new();
        relaxed.request(false);
        relaxed.approve(ALICE, None).unwrap();
        relaxed.activate().unwrap();
        assert_eq!(relaxed.checker.finish(), SignatureReport::default());
    }

    #[test]
    fn checker_refuses_a_signature_before_the_key_registration() {
        let mut ledger = Ledger::new();
        ledger.request(true);
        let error = ledger
            .approve(ALICE, Some(alice_approves(&key(1))))
            .unwrap_err();
        assert!(
            error.contains("registered no signing key before it"),
            "{error}"
        );
        ledger.register(ALICE, &key(1));
    }

    #[test]
    fn checker_refuses_a_key_registered_by_another_actor_or_workspace() {
        let mut ledger = Ledger::new();
        ledger.register(CAROL, &key(1));
        ledger
            .push(
                "signing_key.registered",
                ALICE,
                json!({"key_id": key_id(&key(1).verifying_key()), "public_key": public_key_base64(&key(1).verifying_key()), "workspace": "other"}),
            )
            .unwrap();
        ledger.request(true);
        let error = ledger
            .approve(ALICE, Some(alice_approves(&key(1))))
            .unwrap_err();
        assert!(error.contains("registered no signing key"), "{error}");
    }

    #[test]
    fn checker_uses_the_latest_registration() {
        let mut ledger = Ledger::new();
        ledger.register(ALICE, &key(1));
        ledger.register(ALICE, &key(2));
        ledger.request(true);
        assert!(ledger
            .approve(ALICE, Some(alice_approves(&key(1))))
            .is_err());
        ledger
            .approve(ALICE, Some(alice_approves(&key(2))))
            .unwrap();
    }

    #[test]
    fn checker_refuses_a_statement_about_another_entry() {
        let mut ledger = Ledger::new();
        ledger.register(ALICE, &key(1));
        ledger.request(true);
        let other = SignedStatement::sign(
            &key(1),
            approve("bg_ffffffffffffffffffffffffffffffff", "ok"),
        );
        let error = ledger.approve(ALICE, Some(other)).unwrap_err();
        assert!(error.contains("`subject`"), "{error}");
        let comment = SignedStatement::sign(&key(1), approve(BG, "not ok"));
        let error = ledger.approve(ALICE, Some(comment)).unwrap_err();
        assert!(error.contains("`comment`"), "{error}");
    }

    #[test]
    fn checker_refuses_bad_registrations_and_early_activations() {
        let mut ledger = Ledger::new();
        let public = key(1).verifying_key();
        let error = ledger
            .push(
                "signing_key.registered",
                ALICE,
                json!({"key_id": key_id(&key(2).verifying_key()), "public_key": public_key_base64(&public)}),
            )
            .unwrap_err();
        assert!(error.contains("is not the key's id"), "{error}");
        let error = ledger
            .push(
                "signing_key.registered",
                ALICE,
                json!({"key_id": "x", "public_key": "AAAA"}),
            )
            .unwrap_err();
        assert!(error.contains("3 bytes instead of 32"), "{error}");
        ledger.request(true);
        let error = ledger.activate().unwrap_err();
        assert!(
            error.contains("activated with 0 signed approvals"),
            "{error}"
        );
    }

    #[test]
    fn checker_skips_other_entries_and_refuses_repeated_fields() {
        let mut checker = LedgerSignatureChecker::new();
        checker.check(0, b"not json").unwrap();
        checker.check(1, b"[1,2]").unwrap();
        checker
            .check(2, br#"{"kind":"decision","actor":"a","workspace":"w"}"#)
            .unwrap();
        let repeated = br#"{"kind":"break_glass.approved","actor":"a","workspace":"w","id":"bg_1","id":"bg_2"}"#;
        let error = checker.check(3, repeated).unwrap_err();
        assert!(error.contains("duplicate field `id`"), "{error}");
        let twice =
            br#"{"kind":"decision","actor":"a","workspace":"w","signature":{},"signature":{}}"#;
        assert!(checker.check(4, twice).is_err());
        let null = br#"{"kind":"decision","actor":"a","workspace":"w","signature":null}"#;
        assert!(checker.check(5, null).is_err());
        assert!(checker.check(5, b"{}").is_err(), "out of order");
    }

    #[test]
    fn checker_refuses_an_approval_by_the_requester() {
        let mut ledger = Ledger::new();
        ledger.request(false);
        let error = ledger.approve(BOB, None).unwrap_err();
        assert!(error.contains("its own requester"), "{error}");
    }

    #[test]
    fn checker_refuses_an_activation_that_claims_an_emergency_its_request_did_not() {
        let mut ledger = Ledger::new();
        ledger.register(ALICE, &key(1));
        ledger.request(true);
        let forged = ledger.push(
            "break_glass.activated",
            "writ",
            json!({"id": BG, "requester": BOB, "role": "admin", "expires_unix_ms": 2, "emergency": true}),
        );
        assert!(forged.unwrap_err().contains("emergency"));
    }

    #[test]
    fn checker_refuses_a_signed_request_that_does_not_say_how_many_approvals() {
        let mut ledger = Ledger::new();
        let error = ledger
            .push(
                "break_glass.requested",
                BOB,
                json!({"id": BG, "role": "owner", "reason": "x", "duration_ms": 1, "signed_approvals": true}),
            )
            .unwrap_err();
        assert!(error.contains("approvals_required"), "{error}");
    }
}
