//! `writ ledger verify` checks the signed statements recorded in a ledger.
//!
//! The ledgers here are written through the writ-ledger API directly, as an operator
//! holding the ledger's signing key could: every one of them is a valid Merkle log
//! with valid checkpoints, so only the signed-statement rules can tell a forged
//! approval from a real one.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;

use std::path::{Path, PathBuf};

use common::{verify, writ, Run};
use serde_json::{json, Map, Value};
use tempfile::TempDir;
use writ_ledger::datadir::{default_origin, DataDir};
use writ_ledger::log::Retention;
use writ_ledger::EntryDraft;
use writ_server::grants::statement::{self, SignedStatement};

const ALICE: &str = "User::\"alice\"";
const BOB: &str = "User::\"bob\"";
const WORKSPACE: &str = "acme";
const ELEVATION: &str = "bg_00112233445566778899aabbccddeeff";
/// Entry indexes in every ledger built here.
const REQUEST_INDEX: u64 = 2;
const APPROVAL_INDEX: u64 = 3;

/// An exported ledger and the verifier key string to check it with.
struct Exported {
    _tmp: TempDir,
    export: PathBuf,
    key: String,
}

impl Exported {
    fn verify(&self) -> Run {
        verify(&self.export, &self.key)
    }
}

/// A key file (as `--sign-key FILE` reads) holding the seed of 32 bytes `seed`.
fn key_file(dir: &Path, seed: u8) -> PathBuf {
    let path = dir.join(format!("key-{seed}"));
    let hex: String = std::iter::repeat_n(format!("{seed:02x}"), 32).collect();
    std::fs::write(&path, format!("{hex}\n")).unwrap();
    path
}

/// The fields of a `signing_key.registered` entry for the key of `seed`.
fn registration(seed: u8) -> Map<String, Value> {
    let tmp = tempfile::tempdir().unwrap();
    let public = statement::read_signing_key(&key_file(tmp.path(), seed))
        .unwrap()
        .verifying_key();
    fields(json!({
        "key_id": statement::key_id(&public),
        "public_key": statement::public_key_base64(&public),
    }))
}

/// `statement` signed with the key of `seed`.
fn signed_by(seed: u8, statement: Map<String, Value>) -> SignedStatement {
    let tmp = tempfile::tempdir().unwrap();
    let key = statement::read_signing_key(&key_file(tmp.path(), seed)).unwrap();
    SignedStatement::sign(&key, statement)
}

fn fields(value: Value) -> Map<String, Value> {
    value.as_object().cloned().unwrap()
}

fn draft(kind: &str, actor: &str, fields: Map<String, Value>) -> EntryDraft {
    EntryDraft {
        kind: kind.into(),
        actor: actor.into(),
        workspace: WORKSPACE.into(),
        fields,
    }
}

/// A ledger as the kernel writes it: a decision, alice's key registration, bob's
/// break-glass request requiring signed approvals, alice's approval (with
/// `signature`, when given) and the activation; exported.
fn ledger(signature: Option<&SignedStatement>) -> Exported {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let dir = DataDir::new(&data);
    let key = dir.init(&default_origin()).unwrap();
    let mut approval = fields(json!({"id": ELEVATION, "comment": "ok", "approvals": 1}));
    if let Some(signature) = signature {
        approval.insert("signature".into(), serde_json::to_value(signature).unwrap());
    }
    let drafts = [
        draft("decision", BOB, fields(json!({"effect": "allow"}))),
        draft("signing_key.registered", ALICE, registration(1)),
        draft(
            "break_glass.requested",
            BOB,
            fields(json!({
                "id": ELEVATION, "role": "admin", "reason": "outage", "duration_ms": 1_800_000,
                "pending_expires_unix_ms": 1_900_000_000_000u64, "approvals_required": 1,
                "signed_approvals": true, "emergency": false,
            })),
        ),
        draft("break_glass.approved", ALICE, approval),
        draft(
            "break_glass.activated",
            ALICE,
            fields(json!({
                "id": ELEVATION, "requester": BOB, "role": "admin",
                "expires_unix_ms": 1_900_000_000_000u64, "emergency": false,
            })),
        ),
    ];
    let prepared: Vec<_> = drafts.iter().map(|d| d.prepare().unwrap()).collect();
    let mut log = dir.open_log(Retention::default()).unwrap();
    // Two batches, so the export holds two checkpoints.
    log.append_batch(&prepared[..3]).unwrap();
    log.append_batch(&prepared[3..]).unwrap();
    let export = tmp.path().join("export");
    writ_ledger::export::export(&log, &export).unwrap();
    drop(log);
    Exported {
        _tmp: tmp,
        export,
        key,
    }
}

/// Alice's approval statement about `subject`, with the entry's comment.
fn approval_statement(subject: &str) -> Map<String, Value> {
    statement::decision_statement("break_glass.approve", ALICE, WORKSPACE, subject, "ok")
}

#[test]
fn a_signed_approval_verifies_and_is_counted() {
    let exported = ledger(Some(&signed_by(1, approval_statement(ELEVATION))));
    let run = exported.verify().ok();
    assert!(
        run.stdout.starts_with("ok: 5 entries")
            && run
                .stdout
                .contains("1 signed statements checked (1 required approvals, 1 signing keys)"),
        "{run}"
    );
    let run = writ(&[
        &"ledger",
        &"verify",
        &exported.export,
        &"--key",
        &exported.key,
        &"--json",
    ])
    .ok();
    let report: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["ok"], true, "{run}");
    assert_eq!(report["size"], 5, "{run}");
    assert_eq!(report["signed_statements"], 1, "{run}");
    assert_eq!(report["required_approvals"], 1, "{run}");
    assert_eq!(report["signing_keys"], 1, "{run}");
}

#[test]
fn a_forged_signature_fails_naming_the_entry() {
    // Signed with the operator's own key, but claiming alice's key id.
    let mut forged = signed_by(2, approval_statement(ELEVATION));
    forged.key_id = signed_by(1, approval_statement(ELEVATION)).key_id;
    let run = ledger(Some(&forged))
        .verify()
        .fails_with(&format!("entry {APPROVAL_INDEX}: "));
    assert!(run.stderr.contains("does not verify"), "{run}");
    // Naming the operator's key id is refused as not alice's registered key.
    let own = signed_by(2, approval_statement(ELEVATION));
    let run = ledger(Some(&own))
        .verify()
        .fails_with(&format!("entry {APPROVAL_INDEX}: "));
    assert!(run.stderr.contains("registered at entry 1"), "{run}");
}

#[test]
fn a_missing_signature_fails_when_the_request_requires_one() {
    let exported = ledger(None);
    exported.verify().fails_with(&format!(
        "FAILED: entry {APPROVAL_INDEX}: approval of `{ELEVATION}` is not signed but its \
         request (entry {REQUEST_INDEX}) requires signed approvals"
    ));
    let run = writ(&[
        &"ledger",
        &"verify",
        &exported.export,
        &"--key",
        &exported.key,
        &"--json",
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    let report: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["ok"], false, "{run}");
    assert!(
        report["error"]
            .as_str()
            .unwrap()
            .starts_with(&format!("entry {APPROVAL_INDEX}: ")),
        "{run}"
    );
}

#[test]
fn a_signature_over_another_subject_fails() {
    let other = signed_by(1, approval_statement("bg_ffffffffffffffffffffffffffffffff"));
    let run = ledger(Some(&other))
        .verify()
        .fails_with(&format!("entry {APPROVAL_INDEX}: "));
    assert!(run.stderr.contains("statement field `subject`"), "{run}");
}

/// Serves the files of `root` over HTTP on loopback under `/ledger/`, as a kernel
/// serves its tiles, until the test ends; returns the base URL.
fn serve_files(root: PathBuf) -> String {
    use std::io::{BufRead as _, BufReader, Write as _};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}/ledger", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap();
            // Skip the headers.
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap() > 2 {
                line.clear();
            }
            let path = request.split(' ').nth(1).unwrap_or_default();
            let file = path
                .strip_prefix("/ledger/")
                .filter(|relative| !relative.contains(".."))
                .and_then(|relative| std::fs::read(root.join(relative)).ok());
            let (status, body) = match file {
                Some(body) => ("200 OK", body),
                None => ("404 Not Found", Vec::new()),
            };
            let head = format!(
                "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream
                .write_all(head.as_bytes())
                .and_then(|()| stream.write_all(&body));
        }
    });
    base
}

#[test]
fn verify_over_http_checks_signatures_too() {
    let good = ledger(Some(&signed_by(1, approval_statement(ELEVATION))));
    let url = serve_files(good.export.clone());
    let run = writ(&[&"ledger", &"verify", &"--url", &url, &"--key", &good.key]).ok();
    assert!(run.stdout.contains("1 signed statements checked"), "{run}");
    let unsigned = ledger(None);
    let url = serve_files(unsigned.export.clone());
    writ(&[
        &"ledger",
        &"verify",
        &"--url",
        &url,
        &"--key",
        &unsigned.key,
    ])
    .fails_with(&format!(
        "FAILED: entry {APPROVAL_INDEX}: approval of `{ELEVATION}` is not signed"
    ));
}
