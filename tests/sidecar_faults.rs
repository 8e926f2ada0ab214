//! Fault tests of the sidecar: the disk fills up under load. Answers must turn into
//! 503 `ledger_unavailable` (never another server error, never an unrecorded
//! answer), `/readyz` must say so, and after a restart without the limit the export
//! must verify and hold every answered decision byte for byte.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{export, export_entries, verifier_key, verify, WRIT};
use serde_json::{json, Value};
use server::{fixture_entity, read_work_item, Answer, Client, Kernel, Server};

/// sled's segment size in the ledger store (`SEGMENT_BYTES` in ledger/src/store.rs).
const LEDGER_SEGMENT_BYTES: u64 = 8 << 20;

/// How far past the data dir's largest file the file size limit is set.
///
/// Why this works: sled keeps the ledger in one log file, `ledger.db/db`, made of
/// 8 MiB segments. `writ init` and the first start leave it at one segment (8 MiB,
/// written up to its last byte); the state database's file is smaller (512 KiB
/// segments) and decisions do not write to it. Each decision then appends about
/// 3 KB to the ledger's log (its entry, the changed hash tiles and a signed
/// checkpoint per batch, as sled pages), so the log grows into a second segment
/// at about 3 KB a decision. With RLIMIT_FSIZE 6 MiB beyond the first segment the
/// server starts (it only writes inside the first segment while opening) and the
/// write that crosses the limit comes after roughly 2,000 decisions, in the middle
/// of the second segment, so it does not depend on when sled would start reusing
/// freed segments. SIGXFSZ is ignored, so the write fails with EFBIG like a full
/// disk's ENOSPC instead of killing the process.
const HEADROOM_BYTES: u64 = 6 << 20;

/// Fewer answered decisions than this means the limit was hit by something other
/// than the load (the measurement above went wrong).
const MIN_ANSWERED: usize = 1000;

/// The load must fill the limit well within this.
const LOAD_DEADLINE: Duration = Duration::from_secs(40);

/// Requests each client sends after it has seen a 503 (they must all be 503 too).
const AFTER_FAILURE: usize = 3;

/// The largest regular file under `dir` and its size.
fn largest_file(dir: &Path) -> (PathBuf, u64) {
    let mut largest = (PathBuf::new(), 0);
    for item in fs::read_dir(dir).expect("list data dir") {
        let item = item.expect("directory entry");
        let kind = item.file_type().expect("file type");
        let found = if kind.is_dir() {
            largest_file(&item.path())
        } else {
            (item.path(), item.metadata().expect("metadata").len())
        };
        if found.1 > largest.1 {
            largest = found;
        }
    }
    largest
}

/// The `Max file size` soft limit of `/proc/<pid>/limits`, in bytes (`None` when
/// unlimited).
fn file_size_limit(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find(|line| line.starts_with("Max file size"))
        .unwrap_or_else(|| panic!("no `Max file size` in:\n{limits}"));
    line.trim_start_matches("Max file size")
        .split_whitespace()
        .next()
        .and_then(|soft| soft.parse().ok())
}

/// The unit of `sh`'s `ulimit -f`: 512 bytes for dash and POSIX shells, 1024 for
/// bash. Measured rather than assumed.
fn ulimit_block_bytes() -> u64 {
    let output = Command::new("sh")
        .args(["-c", "ulimit -f 2 && exec cat /proc/self/limits"])
        .output()
        .expect("run sh");
    assert!(output.status.success(), "{output:?}");
    let limit = file_size_limit(&String::from_utf8_lossy(&output.stdout))
        .expect("ulimit -f 2 sets a limit");
    limit / 2
}

/// Whether `pid` ignores SIGXFSZ (signal 25; bit 24 of `SigIgn`).
fn ignores_sigxfsz(pid: u32) -> bool {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .expect("SigIgn in /proc/pid/status");
    mask & (1 << 24) != 0
}

/// What one request of the load got.
#[derive(Debug)]
enum Outcome {
    /// A recorded decision: its id, its entry text, allow or deny.
    Answered {
        id: u64,
        entry: String,
        decision: String,
    },
    /// 503 `ledger_unavailable`.
    Unavailable,
}

/// What one client saw.
#[derive(Debug, Default)]
struct Seen {
    outcomes: Vec<Outcome>,
    /// Answers that are neither a recorded decision nor a 503 `ledger_unavailable`.
    unexpected: Vec<String>,
    /// Answers other than 503 to requests sent after some client had seen a 503.
    after_failure: Vec<String>,
}

/// The mix each client sends: allows and denies of several kinds.
fn bodies() -> Vec<Value> {
    vec![
        read_work_item("w1"),
        read_work_item("g1"),
        json!({"action": "egress", "url": "https://api.github.com/repos"}),
        json!({"action": "egress", "url": "https://api.github.com.evil.com/"}),
        json!({"action": "file.read", "path": "src/lib.rs"}),
        json!({"action": "file.read", "path": "config/.env"}),
    ]
}

/// The decisions of one answer: one for `/v1/authorize`, several for a batch.
fn decisions_of(answer: &Answer, batch: bool) -> Result<Vec<Outcome>, String> {
    let items: Vec<&Value> = if batch {
        answer
            .json
            .get("results")
            .and_then(Value::as_array)
            .map(|results| results.iter().collect())
            .unwrap_or_default()
    } else {
        vec![&answer.json]
    };
    if items.is_empty() {
        return Err(answer.text.clone());
    }
    items
        .into_iter()
        .map(|item| {
            let field = |name: &str| item.get(name).and_then(Value::as_str);
            match (field("decision_id"), field("entry"), field("decision")) {
                (Some(id), Some(entry), Some(decision)) => Ok(Outcome::Answered {
                    id: id.parse().map_err(|_| item.to_string())?,
                    entry: entry.to_owned(),
                    decision: decision.to_owned(),
                }),
                _ => Err(item.to_string()),
            }
        })
        .collect()
}

/// Sends the mix until the ledger fails, then `AFTER_FAILURE` more requests.
fn drive(client: Client, token: String, batch: bool, failed: Arc<AtomicBool>) -> Seen {
    let bodies = bodies();
    let mut seen = Seen::default();
    let started = Instant::now();
    let mut left_after_failure = AFTER_FAILURE;
    for n in 0.. {
        let failed_before = failed.load(Ordering::SeqCst);
        if failed_before {
            if left_after_failure == 0 {
                break;
            }
            left_after_failure -= 1;
        }
        if started.elapsed() > LOAD_DEADLINE {
            break;
        }
        let answer = if batch {
            let requests: Vec<Value> = (0..8)
                .map(|k| bodies[(n + k) % bodies.len()].clone())
                .collect();
            client.post(
                "/v1/authorize/batch",
                Some(&token),
                &json!({"requests": requests}),
            )
        } else {
            client.authorize(&token, &bodies[n % bodies.len()])
        };
        match (answer.status, answer.code()) {
            (200, _) => match decisions_of(&answer, batch) {
                Ok(outcomes) => seen.outcomes.extend(outcomes),
                Err(text) => seen
                    .unexpected
                    .push(format!("200 without a decision: {text}")),
            },
            (503, "ledger_unavailable") => {
                failed.store(true, Ordering::SeqCst);
                seen.outcomes.push(Outcome::Unavailable);
            }
            (status, _) => seen.unexpected.push(format!("{status}: {}", answer.text)),
        }
        if failed_before && answer.status != 503 {
            seen.after_failure
                .push(format!("{}: {}", answer.status, answer.text));
        }
    }
    seen
}

#[test]
fn a_full_disk_turns_answers_into_503_and_loses_no_answered_decision() {
    // A kernel with its entities and keys, stopped, then measured.
    let mut kernel = Kernel::new();
    let runner = kernel.key_for(r#"Agent::"runner""#, "acme");
    let vera = kernel.key_for(r#"User::"vera""#, "acme");
    kernel.stop();
    let (largest_path, largest) = largest_file(&kernel.data);
    assert!(
        largest_path.ends_with("ledger.db/db") && largest <= LEDGER_SEGMENT_BYTES,
        "expected sled's ledger log of one 8 MiB segment to be the largest file, found {} ({largest} bytes)",
        largest_path.display()
    );
    let unit = ulimit_block_bytes();
    let blocks = (largest + HEADROOM_BYTES).div_ceil(unit);
    let limit = blocks * unit;

    // The same data dir, served under RLIMIT_FSIZE with SIGXFSZ ignored.
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(
            r#"ulimit -f "$1" && trap '' XFSZ && exec "$0" serve --data "$2" --listen 127.0.0.1:0"#,
        )
        .arg(WRIT)
        .arg(blocks.to_string())
        .arg(&kernel.data);
    let limited = Server::spawn(command);
    let limits = fs::read_to_string(format!("/proc/{}/limits", limited.pid())).expect("limits");
    assert_eq!(file_size_limit(&limits), Some(limit), "{limits}");
    assert!(ignores_sigxfsz(limited.pid()), "SIGXFSZ is not ignored");
    let client = Client::new(&limited.base);
    client.get("/readyz", None).expect_status(200);

    // Load from four clients (one of them sending batches) until the ledger fails.
    let started = Instant::now();
    let failed = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = [
        (&runner, false),
        (&vera, false),
        (&runner, false),
        (&vera, true),
    ]
    .into_iter()
    .map(|(token, batch)| {
        let (client, token, failed) = (client.clone(), token.clone(), Arc::clone(&failed));
        std::thread::spawn(move || drive(client, token, batch, failed))
    })
    .collect();
    let seen: Vec<Seen> = clients
        .into_iter()
        .map(|client| client.join().expect("a client thread"))
        .collect();
    let load_time = started.elapsed();
    let unexpected: Vec<&String> = seen.iter().flat_map(|s| &s.unexpected).collect();
    assert!(
        unexpected.is_empty(),
        "answers other than a decision or 503 ledger_unavailable: {unexpected:#?}\nlog:\n{}",
        limited.log()
    );
    let after_failure: Vec<&String> = seen.iter().flat_map(|s| &s.after_failure).collect();
    assert!(
        after_failure.is_empty(),
        "answered after the ledger had failed: {after_failure:#?}"
    );
    assert!(
        failed.load(Ordering::SeqCst),
        "no 503 within {LOAD_DEADLINE:?} under a {limit}-byte file size limit; log:\n{}",
        limited.log()
    );
    let mut answered: BTreeMap<u64, (String, String)> = BTreeMap::new();
    for outcome in seen.into_iter().flat_map(|s| s.outcomes) {
        if let Outcome::Answered {
            id,
            entry,
            decision,
        } = outcome
        {
            let previous = answered.insert(id, (entry, decision));
            assert!(previous.is_none(), "decision id {id} answered twice");
        }
    }
    assert!(
        answered.len() >= MIN_ANSWERED,
        "only {} decisions before the ledger failed: the limit was hit by something else; log:\n{}",
        answered.len(),
        limited.log()
    );
    assert!(answered.values().any(|(_, decision)| decision == "allow"));
    assert!(answered.values().any(|(_, decision)| decision == "deny"));

    // The failed server stays up, says it is not ready, and answers nothing.
    client.get("/healthz", None).expect_status(200);
    let ready = client.get("/readyz", None).expect_status(503);
    assert_eq!(ready.str("status"), "ledger_failed", "{}", ready.text);
    client
        .authorize(&runner, &read_work_item("w1"))
        .expect_error(503, "ledger_unavailable");
    let batch = json!({"requests": [read_work_item("w1"), read_work_item("g1")]});
    client
        .post("/v1/authorize/batch", Some(&vera), &batch)
        .expect_error(503, "ledger_unavailable");
    // Admin changes are recorded before they take effect, so they fail too.
    let mut stopped = fixture_entity("Agent", "runner");
    stopped["attrs"]["stopped"] = json!(true);
    let kernel_admin = kernel.admin.clone();
    client
        .send("PUT", "/v1/entities", Some(&kernel_admin), &stopped)
        .expect_error(503, "ledger_unavailable");
    let metrics = client.get("/metrics", None).expect_status(200);
    let failures = metrics
        .text
        .lines()
        .find_map(|line| line.strip_prefix("writ_ledger_failures_total "))
        .and_then(|count| count.trim().parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no ledger failure count in:\n{}", metrics.text));
    assert!(failures >= 1, "{}", metrics.text);

    // SIGTERM still stops it, without a panic.
    let stopped_server = limited.stop();
    assert!(
        stopped_server.status.code().is_some(),
        "killed by a signal: {}; log:\n{}",
        stopped_server.status,
        stopped_server.log
    );
    assert!(
        !stopped_server.log.contains("panicked"),
        "{}",
        stopped_server.log
    );
    let (_, size_after) = largest_file(&kernel.data);
    assert!(size_after <= limit, "a file grew past the limit");

    // Without the limit the data dir opens again and takes new decisions.
    kernel.restart();
    kernel.client.get("/readyz", None).expect_status(200);
    let after = kernel
        .authorize(&runner, &read_work_item("w1"))
        .expect_decision("allow");
    let last_answered = *answered.keys().next_back().expect("answers");
    assert!(after.decision_id() > last_answered, "{}", after.text);
    // The write refused before the limit was lifted did not take effect.
    let agent = kernel.get_entity(r#"Agent::"runner""#).expect_status(200);
    assert_eq!(agent.json["attrs"]["stopped"], false, "{}", agent.text);
    kernel.stop();

    // The export verifies and holds every answered decision, byte for byte.
    let export_dir = kernel.path("export");
    export(&kernel.data, &export_dir);
    verify(&export_dir, &verifier_key(&kernel.data)).ok();
    let entries = export_entries(&export_dir);
    for (id, (entry, _)) in &answered {
        let exported = entries
            .get(*id as usize)
            .unwrap_or_else(|| panic!("answered decision {id} is not in the export"));
        assert_eq!(
            String::from_utf8_lossy(exported),
            entry.as_str(),
            "entry {id} differs from the answer"
        );
    }
    eprintln!(
        "file size limit {limit} bytes ({blocks} blocks of {unit}); {} decisions answered in {load_time:?} before the ledger failed",
        answered.len()
    );
}
