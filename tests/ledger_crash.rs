//! Crash test: `writ ledger bench --print-receipts` is killed with SIGKILL at a
//! random moment, several times on one data dir. Every receipt printed before the
//! kill must hold for the entry the export has at its index, the export must
//! verify, and each round must reopen the data dir and append after the last.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;

use std::collections::HashSet;
use std::fs;
use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{bench, export, export_entries, export_size, verifier_key, verify, writ, WRIT};
use rand::Rng as _;
use writ_ledger::prove::ExportReader;
use writ_ledger::receipt::verify_receipt;
use writ_ledger::{LeafIndex, LogVerifier, Receipt};

const ROUNDS: usize = 4;
/// Receipts per round also checked through `ExportReader::entry` (plus the last).
const SAMPLE: usize = 200;

/// One receipt line printed by the bench: `{"index": n, "receipt": "..."}`.
#[derive(Debug)]
struct Printed {
    index: u64,
    receipt: String,
}

/// What one killed bench printed.
#[derive(Debug)]
struct Round {
    printed: Vec<Printed>,
    /// Bytes of a last line cut short by the kill (not a receipt).
    partial_bytes: usize,
    ran_for: Duration,
}

/// Starts a bench that would run for hours and kills it after `delay`, or right
/// after its first receipt if that comes later.
fn bench_and_kill(data: &Path, delay: Duration) -> Round {
    let mut child = Command::new(WRIT)
        .args([
            "ledger",
            "bench",
            "--entries",
            "10000000",
            "--writers",
            "16",
        ])
        .arg("--data")
        .arg(data)
        .arg("--print-receipts")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start bench");
    let started = Instant::now();
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let (first_sender, first_receipt) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut lines = Vec::new();
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line).expect("read receipts");
            if read == 0 || line.last() != Some(&b'\n') {
                // End of output; a line without its newline was cut by the kill.
                return (lines, line.len());
            }
            if lines.is_empty() {
                let _ = first_sender.send(());
            }
            lines.push(String::from_utf8(line.clone()).expect("receipt line is UTF-8"));
        }
    });
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let first = first_receipt.recv_timeout(Duration::from_secs(30));
    if first.is_ok() {
        std::thread::sleep(delay.saturating_sub(started.elapsed()));
    }
    let early_exit = child.try_wait().expect("poll bench");
    let _ = child.kill();
    child.wait().expect("reap bench");
    let ran_for = started.elapsed();
    let (lines, partial_bytes) = reader.join().expect("receipt reader");
    let stderr = errors.join().expect("stderr reader");
    assert!(
        first.is_ok(),
        "no receipt within 30 s; bench stderr:\n{stderr}"
    );
    assert!(
        early_exit.is_none(),
        "the bench stopped by itself ({early_exit:?}) before the kill; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "bench panicked:\n{stderr}");

    let printed = lines
        .iter()
        .map(|line| {
            let value: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|error| panic!("receipt line is not JSON ({error}): {line}"));
            let object = value.as_object().expect("a JSON object");
            assert_eq!(object.len(), 2, "only index and receipt: {line}");
            Printed {
                index: value["index"].as_u64().expect("index"),
                receipt: value["receipt"].as_str().expect("receipt").to_owned(),
            }
        })
        .collect();
    Round {
        printed,
        partial_bytes,
        ran_for,
    }
}

#[test]
fn receipts_printed_before_sigkill_survive_and_the_log_reopens() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut rng = rand::thread_rng();
    let mut key: Option<String> = None;
    let mut previous_entries: Vec<Vec<u8>> = Vec::new();
    // The last receipt of each round, re-checked against every later export.
    let mut old_receipts: Vec<(u64, String)> = Vec::new();

    for round in 0..ROUNDS {
        let delay = Duration::from_millis(rng.gen_range(200..=1500));
        let Round {
            printed,
            partial_bytes,
            ran_for,
        } = bench_and_kill(&data, delay);
        let out = tmp.path().join(format!("export-{round}"));
        export(&data, &out);
        let round_key = verifier_key(&data);
        let key = key.get_or_insert_with(|| round_key.clone());
        assert_eq!(&round_key, key, "the data dir keeps its key");
        let run = verify(&out, key).ok();
        let size = export_size(&out);
        let previous_size = previous_entries.len() as u64;
        eprintln!(
            "round {round}: killed after {ran_for:?} (delay {delay:?}), {} receipts, \
             {partial_bytes} bytes of a cut line, size {previous_size} -> {size}; {}",
            printed.len(),
            run.stdout.trim()
        );

        // Every printed index is new, after the previous rounds, and in the export.
        let indexes: HashSet<u64> = printed.iter().map(|printed| printed.index).collect();
        assert_eq!(
            indexes.len(),
            printed.len(),
            "an index was acknowledged twice"
        );
        let lowest = *indexes.iter().min().expect("at least one receipt");
        let highest = *indexes.iter().max().expect("at least one receipt");
        assert!(
            lowest >= previous_size,
            "round {round} acknowledged entry {lowest}, but {previous_size} entries were already there"
        );
        assert!(
            size > highest,
            "round {round}: entry {highest} was acknowledged but the export has {size} entries"
        );

        // The earlier entries are untouched: the log only grew.
        let entries = export_entries(&out);
        assert_eq!(entries.len() as u64, size);
        assert!(
            entries[..previous_entries.len()] == previous_entries[..],
            "round {round} changed entries of earlier rounds"
        );
        if previous_size > 0 {
            writ(&[
                &"ledger",
                &"consistency",
                &out,
                &"--key",
                &out.join("keys"),
                &"--old",
                &previous_size.to_string(),
            ])
            .ok();
        }

        // Every receipt holds for the exported entry at its index, and its
        // checkpoint is the one the export retains for that size.
        let verifier = LogVerifier::from_verifier_key(key).unwrap();
        let reader = ExportReader::open(&out, verifier.clone()).unwrap();
        let every = (printed.len() / SAMPLE).max(1);
        for (number, line) in printed.iter().enumerate() {
            let receipt = Receipt::parse(line.receipt.as_bytes())
                .unwrap_or_else(|error| panic!("receipt {}: {error}", line.index));
            assert_eq!(receipt.index, LeafIndex(line.index));
            let entry = &entries[line.index as usize];
            let checkpoint = verify_receipt(&receipt, entry, &verifier).unwrap_or_else(|error| {
                panic!(
                    "round {round}: the receipt for entry {} does not hold for the exported entry: {error}",
                    line.index
                )
            });
            let retained = fs::read_to_string(out.join(format!("checkpoints/{}", checkpoint.size)))
                .unwrap_or_else(|error| {
                    panic!(
                        "checkpoint {} of an acknowledged batch: {error}",
                        checkpoint.size
                    )
                });
            assert_eq!(
                retained, receipt.checkpoint,
                "the acknowledged checkpoint {} is not the one the log kept",
                checkpoint.size
            );
            if number % every == 0 {
                assert_eq!(&reader.entry(LeafIndex(line.index)).unwrap(), entry);
            }
        }
        let last = printed.last().expect("at least one receipt");
        assert_eq!(
            &reader.entry(LeafIndex(last.index)).unwrap(),
            &entries[last.index as usize]
        );

        // The last receipt printed, checked by the command line too.
        let receipt_file = tmp.path().join(format!("receipt-{round}"));
        let entry_file = tmp.path().join(format!("entry-{round}"));
        fs::write(&receipt_file, &last.receipt).unwrap();
        fs::write(&entry_file, &entries[last.index as usize]).unwrap();
        writ(&[
            &"ledger",
            &"verify-receipt",
            &receipt_file,
            &"--entry",
            &entry_file,
            &"--key",
            key,
        ])
        .ok();

        // Receipts of earlier rounds still hold against this export.
        old_receipts.push((last.index, last.receipt.clone()));
        for (index, text) in &old_receipts {
            let receipt = Receipt::parse(text.as_bytes()).unwrap();
            verify_receipt(&receipt, &entries[*index as usize], &verifier)
                .unwrap_or_else(|error| panic!("old receipt for entry {index}: {error}"));
        }
        previous_entries = entries;
    }

    // Reopening after the last kill: a bench that runs to completion appends.
    let key = key.expect("a key");
    let before = previous_entries.len() as u64;
    bench(&data, 100, 4);
    let out = tmp.path().join("export-final");
    export(&data, &out);
    verify(&out, &key).ok();
    assert_eq!(export_size(&out), before + 100);
    let entries = export_entries(&out);
    assert!(entries[..previous_entries.len()] == previous_entries[..]);
}
