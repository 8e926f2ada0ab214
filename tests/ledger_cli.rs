//! End-to-end tests of the `writ ledger` and `writ keys` commands: the happy path
//! (bench, export, keys show, verify, prove, verify-receipt, consistency) and bad
//! input, which must fail with exit 1 and a clear message, never a panic.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;

use std::fs;
use std::io::BufRead;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use common::{
    bench, bundle_entries, bundle_path, checkpoint_sizes, export, export_size, list_files,
    verifier_key, verify, writ, Run, WRIT,
};
use tempfile::TempDir;
use writ_ledger::proof::verify_consistency;
use writ_ledger::{Hash, LeafIndex, Receipt, TreeSize};

/// A small ledger and its export, in a temp dir of its own.
struct Ledger {
    tmp: TempDir,
    data: PathBuf,
    export: PathBuf,
    key: String,
}

impl Ledger {
    /// Benches `entries` entries from 2 writers and exports them.
    fn new(entries: u64) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let export_dir = tmp.path().join("export");
        bench(&data, entries, 2);
        export(&data, &export_dir);
        let key = verifier_key(&data);
        Self {
            tmp,
            data,
            export: export_dir,
            key,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `writ ledger prove` for `index`, written to a file; returns (receipt, entry) files.
    fn receipt_files(&self, index: u64, size: Option<u64>) -> (PathBuf, PathBuf) {
        let receipt = prove(&self.export, index, size).stdout;
        let receipt_path = self.path(&format!("receipt-{index}-{size:?}"));
        fs::write(&receipt_path, receipt).expect("write receipt");
        let entry_path = self.path(&format!("entry-{index}"));
        fs::write(&entry_path, entry_of(&self.export, index)).expect("write entry");
        (receipt_path, entry_path)
    }
}

/// `writ ledger prove EXPORT --index I [--size N]`, which must succeed.
fn prove(export_dir: &Path, index: u64, size: Option<u64>) -> Run {
    let index = index.to_string();
    match size {
        None => writ(&[
            &"ledger",
            &"prove",
            &export_dir,
            &"--key",
            &export_dir.join("keys"),
            &"--index",
            &index,
        ]),
        Some(size) => writ(&[
            &"ledger",
            &"prove",
            &export_dir,
            &"--key",
            &export_dir.join("keys"),
            &"--index",
            &index,
            &"--size",
            &size.to_string(),
        ]),
    }
    .ok()
}

fn verify_receipt(receipt: &Path, entry: &Path, key: &dyn AsRef<std::ffi::OsStr>) -> Run {
    writ(&[
        &"ledger",
        &"verify-receipt",
        &receipt,
        &"--entry",
        &entry,
        &"--key",
        key,
    ])
}

/// The bytes of entry `index`, cut out of its bundle in the export.
fn entry_of(export_dir: &Path, index: u64) -> Vec<u8> {
    let size = export_size(export_dir);
    let bundle = fs::read(export_dir.join(bundle_path(index / 256, size))).expect("read bundle");
    bundle_entries(&bundle)
        .into_iter()
        .nth((index % 256) as usize)
        .expect("entry in its bundle")
}

/// The root (third line) of a signed checkpoint note.
fn note_root(note: &str) -> Hash {
    Hash::from_base64(note.lines().nth(2).expect("root line")).expect("root is base64")
}

/// Kills and reaps a child process when dropped, even if the test fails.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a long `bench` on `data` and returns once it holds the data dir (its
/// first receipt is out). Keep the reader: a closed pipe would stop the bench,
/// while a full one makes it wait, still holding the data dir.
fn hold_data_dir(data: &Path, writers: &str) -> (KillOnDrop, impl BufRead) {
    let child = Command::new(WRIT)
        .args([
            "ledger",
            "bench",
            "--entries",
            "10000000",
            "--writers",
            writers,
        ])
        .arg("--data")
        .arg(data)
        .arg("--print-receipts")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start bench");
    let mut bench_process = KillOnDrop(child);
    let mut receipts = std::io::BufReader::new(bench_process.0.stdout.take().unwrap());
    let mut first = String::new();
    receipts.read_line(&mut first).unwrap();
    assert!(first.starts_with("{\"index\":"), "first receipt: {first:?}");
    (bench_process, receipts)
}

#[test]
fn bench_export_verify_prove_and_consistency() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let out = tmp.path().join("export");

    // bench --json: exactly one JSON object with the documented keys.
    let run = writ(&[
        &"ledger",
        &"bench",
        &"--data",
        &data,
        &"--entries",
        &"700",
        &"--writers",
        &"4",
        &"--entry-bytes",
        &"300",
        &"--json",
    ])
    .ok();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one line of JSON expected:\n{run}");
    let report: serde_json::Value = serde_json::from_str(lines[0]).expect("bench prints JSON");
    let object = report.as_object().expect("a JSON object");
    let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "entries",
            "entries_per_sec",
            "p50_us",
            "p99_us",
            "seconds",
            "writers"
        ]
    );
    assert_eq!(report["entries"], 700);
    assert_eq!(report["writers"], 4);
    assert!(report["seconds"].as_f64().unwrap() > 0.0, "{run}");
    assert!(report["entries_per_sec"].as_f64().unwrap() > 0.0, "{run}");
    let p50 = report["p50_us"].as_u64().unwrap();
    let p99 = report["p99_us"].as_u64().unwrap();
    assert!(0 < p50 && p50 <= p99, "{run}");

    // export
    let run = export(&data, &out);
    assert!(
        run.stdout.starts_with("exported 700 entries"),
        "export summary:\n{run}"
    );
    assert_eq!(export_size(&out), 700);
    for file in [
        "checkpoint",
        "keys",
        "tile/entries/000",
        "tile/entries/002.p/188",
    ] {
        assert!(out.join(file).is_file(), "export lacks {file}");
    }
    for file in [
        "tile/0/000",
        "tile/0/001",
        "tile/0/002.p/188",
        "tile/1/000.p/2",
    ] {
        let tile = fs::read(out.join(file)).unwrap();
        let width = file
            .rsplit_once(".p/")
            .map_or(256, |(_, w)| w.parse().unwrap());
        assert_eq!(tile.len(), width * 32, "{file} holds {width} hashes");
    }
    let entries = common::export_entries(&out);
    for (index, entry) in entries.iter().enumerate() {
        let entry: serde_json::Value = serde_json::from_slice(entry).expect("entry is JSON");
        assert_eq!(entry["index"], index, "entry {index}");
        assert_eq!(entry["kind"], "bench");
    }

    // keys show: the key the export lists.
    let key = verifier_key(&data);
    let listed = fs::read_to_string(out.join("keys")).unwrap();
    assert_eq!(listed, format!("{key}\n"));

    // verify, with the key string and with the key file, in text and JSON.
    let run = verify(&out, &key).ok();
    assert!(run.stdout.starts_with("ok: 700 entries"), "{run}");
    let run = writ(&[
        &"ledger",
        &"verify",
        &out,
        &"--key",
        &out.join("keys"),
        &"--json",
    ])
    .ok();
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(report["ok"], true, "{run}");
    assert_eq!(report["size"], 700, "{run}");
    let sizes = checkpoint_sizes(&out);
    assert_eq!(report["checkpoints"], sizes.len(), "{run}");
    assert_eq!(sizes.last(), Some(&700));
    assert!(sizes.len() >= 3, "several checkpoints expected: {sizes:?}");

    // prove + verify-receipt for the first, a middle and the last entry.
    for index in [0u64, 1, 255, 256, 350, 511, 512, 699] {
        let run = prove(&out, index, None);
        let receipt = Receipt::parse(run.stdout.as_bytes()).expect("prove prints a receipt");
        assert_eq!(receipt.index, LeafIndex(index));
        assert!(run.stdout.starts_with("c2sp.org/tlog-proof@v1\nindex "));
        let receipt_file = tmp.path().join(format!("receipt-{index}"));
        let entry_file = tmp.path().join(format!("entry-{index}"));
        fs::write(&receipt_file, &run.stdout).unwrap();
        fs::write(&entry_file, &entries[index as usize]).unwrap();
        let run = verify_receipt(&receipt_file, &entry_file, &key).ok();
        assert!(
            run.stdout
                .starts_with(&format!("ok: entry {index} is in writ.local/ledger-")),
            "{run}"
        );
        assert!(run.stdout.contains(" at size 700 "), "{run}");
        // The key file works as well as the key string.
        verify_receipt(&receipt_file, &entry_file, &out.join("keys")).ok();
    }

    // prove against an older signed checkpoint named in checkpoints/.
    let older = sizes[sizes.len() / 2];
    assert!(older < 700);
    for index in [0, older / 2, older - 1] {
        let run = prove(&out, index, Some(older));
        let receipt = Receipt::parse(run.stdout.as_bytes()).unwrap();
        let note = fs::read_to_string(out.join(format!("checkpoints/{older}"))).unwrap();
        assert_eq!(
            receipt.checkpoint, note,
            "the receipt carries checkpoint {older}"
        );
        let receipt_file = tmp.path().join(format!("receipt-{index}-at-{older}"));
        let entry_file = tmp.path().join(format!("entry-{index}"));
        fs::write(&receipt_file, &run.stdout).unwrap();
        fs::write(&entry_file, &entries[index as usize]).unwrap();
        let run = verify_receipt(&receipt_file, &entry_file, &key).ok();
        assert!(run.stdout.contains(&format!(" at size {older} ")), "{run}");
    }
    // An entry after that checkpoint cannot be proved in it.
    writ(&[
        &"ledger",
        &"prove",
        &out,
        &"--key",
        &out.join("keys"),
        &"--index",
        &older.to_string(),
        &"--size",
        &older.to_string(),
    ])
    .fails_with("out of range");

    // consistency from older checkpoints to the latest, and between two older ones.
    let roots = |size: u64| {
        let name = if size == 700 {
            "checkpoint".to_owned()
        } else {
            format!("checkpoints/{size}")
        };
        note_root(&fs::read_to_string(out.join(name)).unwrap())
    };
    let pairs = [
        (sizes[0], None),
        (older, None),
        (sizes[1], Some(older)),
        (700, None),
    ];
    for (old, new) in pairs {
        let run = match new {
            None => writ(&[
                &"ledger",
                &"consistency",
                &out,
                &"--key",
                &out.join("keys"),
                &"--old",
                &old.to_string(),
            ]),
            Some(new) => writ(&[
                &"ledger",
                &"consistency",
                &out,
                &"--key",
                &out.join("keys"),
                &"--old",
                &old.to_string(),
                &"--new",
                &new.to_string(),
            ]),
        }
        .ok();
        let new = new.unwrap_or(700);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert!(lines.len() >= 3, "{run}");
        assert_eq!(lines[0], format!("consistency {old} {new}"), "{run}");
        assert_eq!(lines[1], format!("old {}", roots(old).to_base64()), "{run}");
        assert_eq!(lines[2], format!("new {}", roots(new).to_base64()), "{run}");
        let proof: Vec<Hash> = lines[3..]
            .iter()
            .map(|line| Hash::from_base64(line).expect("proof hash"))
            .collect();
        assert_eq!(proof.is_empty(), old == new, "{run}");
        verify_consistency(
            TreeSize(old),
            TreeSize(new),
            &roots(old),
            &roots(new),
            &proof,
        )
        .unwrap_or_else(|error| panic!("consistency {old} {new}: {error}\n{run}"));
    }
}

#[test]
fn bench_appends_to_an_existing_ledger() {
    let ledger = Ledger::new(30);
    let key = ledger.key.clone();
    bench(&ledger.data, 20, 3);
    assert_eq!(verifier_key(&ledger.data), key, "the key is kept");
    let second = ledger.path("second");
    export(&ledger.data, &second);
    assert_eq!(export_size(&second), 50);
    verify(&second, &key).ok();
    // The first export's entries are a prefix of the second's.
    let first = common::export_entries(&ledger.export);
    assert_eq!(first[..], common::export_entries(&second)[..30]);
    writ(&[
        &"ledger",
        &"consistency",
        &second,
        &"--key",
        &second.join("keys"),
        &"--old",
        &"30",
    ])
    .ok();
}

#[test]
fn verify_refuses_another_ledgers_key() {
    let ledger = Ledger::new(20);
    let other = Ledger::new(1);
    verify(&ledger.export, &other.key).fails_with("FAILED: keys:");
    verify(&ledger.export, &other.export.join("keys")).fails_with("FAILED: keys:");
    let run = writ(&[
        &"ledger",
        &"verify",
        &ledger.export,
        &"--key",
        &other.key,
        &"--json",
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(report["ok"], false, "{run}");
    assert!(
        report["error"].as_str().unwrap().starts_with("keys:"),
        "{run}"
    );
    // Even with the other key listed in `keys`, its signatures are not ours.
    fs::copy(other.export.join("keys"), ledger.export.join("keys")).unwrap();
    verify(&ledger.export, &other.key).fails_with("FAILED: checkpoint:");
}

#[test]
fn verify_refuses_a_malformed_key() {
    let ledger = Ledger::new(5);
    verify(&ledger.export, &"not-a-key").fails_with("--key is neither a verifier key nor a file");
    verify(&ledger.export, &"").fails_with("--key");
    // The right name and key id, but another public key.
    let (head, tail) = ledger.key.split_at(ledger.key.len() - 6);
    let last = if tail.starts_with('A') { "B" } else { "A" };
    let forged = format!("{head}{last}{}", &tail[1..]);
    verify(&ledger.export, &forged).fails_with("writ:");
    // A file that holds no key.
    let junk = ledger.path("junk-key");
    fs::write(&junk, "hello\n").unwrap();
    verify(&ledger.export, &junk).fails_with("junk-key");
    // The signing key file is not a verifier key (and is never echoed).
    let run = verify(&ledger.export, &ledger.data.join("ledger.key")).fails_with("ledger.key");
    assert!(!run.stderr.contains("PRIVATE+KEY"), "{run}");
}

#[test]
fn verify_refuses_a_missing_export() {
    let ledger = Ledger::new(5);
    let missing = ledger.path("no-such-export");
    verify(&missing, &ledger.key).fails_with("no-such-export");
    // A file instead of a directory.
    verify(&ledger.export.join("checkpoint"), &ledger.key).fails_with("not a directory");
    // An empty directory.
    let empty = ledger.path("empty");
    fs::create_dir(&empty).unwrap();
    verify(&empty, &ledger.key).fails_with("FAILED: keys: missing");
}

#[test]
fn verify_receipt_refuses_a_malformed_receipt() {
    let ledger = Ledger::new(20);
    let (receipt, entry) = ledger.receipt_files(3, None);
    verify_receipt(&receipt, &entry, &ledger.key).ok();
    let text = fs::read_to_string(&receipt).unwrap();
    let cases = [
        ("junk", "hello\n".to_owned(), "malformed receipt"),
        ("empty", String::new(), "malformed receipt"),
        (
            "header",
            text.replace("tlog-proof@v1", "tlog-proof@v2"),
            "line 1",
        ),
        (
            "hash",
            text.replacen("\n\n", "\nnot-base64\n\n", 1),
            "malformed receipt",
        ),
        (
            "no-checkpoint",
            text.replace("\n\n", "\n"),
            "malformed receipt",
        ),
        ("cut-signature", text[..text.len() - 20].to_owned(), "writ:"),
    ];
    for (name, broken, needle) in cases {
        let path = ledger.path(&format!("receipt-{name}"));
        fs::write(&path, broken).unwrap();
        verify_receipt(&path, &entry, &ledger.key).fails_with(needle);
    }
    verify_receipt(&ledger.path("no-such-receipt"), &entry, &ledger.key)
        .fails_with("no-such-receipt");
    verify_receipt(&receipt, &ledger.path("no-such-entry"), &ledger.key)
        .fails_with("no-such-entry");
}

#[test]
fn verify_receipt_refuses_a_receipt_for_another_entry() {
    let ledger = Ledger::new(20);
    let (receipt, _) = ledger.receipt_files(3, None);
    let (_, other_entry) = ledger.receipt_files(4, None);
    verify_receipt(&receipt, &other_entry, &ledger.key).fails_with("writ:");

    // The same index but other content (one byte of its padding changed).
    let mut entry = entry_of(&ledger.export, 3);
    let pad = entry.len() - 5;
    assert_eq!(entry[pad], b'x');
    entry[pad] = b'y';
    let edited = ledger.path("entry-3-edited");
    fs::write(&edited, entry).unwrap();
    verify_receipt(&receipt, &edited, &ledger.key).fails_with("does not lead to the expected root");
}

#[test]
fn verify_receipt_refuses_an_edited_index_line() {
    let ledger = Ledger::new(20);
    let (receipt, entry) = ledger.receipt_files(3, None);
    let (_, entry_4) = ledger.receipt_files(4, None);
    let text = fs::read_to_string(&receipt).unwrap();
    assert!(text.contains("\nindex 3\n"));
    for edited_index in ["4", "2", "19", "20", "1000"] {
        let path = ledger.path(&format!("receipt-index-{edited_index}"));
        fs::write(
            &path,
            text.replace("\nindex 3\n", &format!("\nindex {edited_index}\n")),
        )
        .unwrap();
        verify_receipt(&path, &entry, &ledger.key).fails_with("writ:");
        // Not even with the entry that index names.
        verify_receipt(&path, &entry_4, &ledger.key).fails_with("writ:");
    }
}

#[test]
fn verify_receipt_refuses_a_wrong_key() {
    let ledger = Ledger::new(20);
    let other = Ledger::new(1);
    let (receipt, entry) = ledger.receipt_files(7, None);
    verify_receipt(&receipt, &entry, &other.key).fails_with("no signature by key");
    verify_receipt(&receipt, &entry, &other.export.join("keys")).fails_with("no signature by key");
    verify_receipt(&receipt, &entry, &"not-a-key").fails_with("--key");
}

#[test]
fn prove_refuses_an_index_beyond_the_size() {
    let ledger = Ledger::new(20);
    for index in ["20", "21", "18446744073709551615"] {
        writ(&[
            &"ledger",
            &"prove",
            &ledger.export,
            &"--key",
            &ledger.export.join("keys"),
            &"--index",
            &index,
        ])
        .fails_with("out of range");
    }
    writ(&[
        &"ledger",
        &"prove",
        &ledger.export,
        &"--key",
        &ledger.export.join("keys"),
        &"--index",
        &"0",
        &"--size",
        &"12345",
    ])
    .fails_with("the latest checkpoint is for size 20");
    writ(&[
        &"ledger",
        &"consistency",
        &ledger.export,
        &"--key",
        &ledger.export.join("keys"),
        &"--old",
        &"12345",
    ])
    .fails_with("the latest checkpoint is for size 20");
}

/// prove and consistency take the trusted key only from --key (never from the
/// export, which whoever made it controls); a missing export is named.
#[test]
fn prove_and_consistency_need_a_key_and_name_a_missing_export() {
    let ledger = Ledger::new(5);
    let nowhere = ledger.path("nowhere");
    for run in [
        writ(&[&"ledger", &"prove", &ledger.export, &"--index", &"0"]),
        writ(&[&"ledger", &"consistency", &ledger.export, &"--old", &"1"]),
    ] {
        assert_eq!(run.code, Some(2), "a usage error:\n{run}");
        assert!(run.stderr.contains("--key"), "{run}");
    }
    for command in ["prove", "consistency"] {
        let (flag, value) = if command == "prove" {
            ("--index", "0")
        } else {
            ("--old", "1")
        };
        writ(&[
            &"ledger",
            &command,
            &nowhere,
            &flag,
            &value,
            &"--key",
            &ledger.key,
        ])
        .fails_with("nowhere");
    }
}

#[test]
fn export_refuses_an_existing_path_and_leaves_it_alone() {
    let ledger = Ledger::new(20);
    // An existing export.
    let before = list_files(&ledger.export);
    let checkpoint = fs::read(ledger.export.join("checkpoint")).unwrap();
    bench(&ledger.data, 5, 1);
    let run = writ(&[
        &"ledger",
        &"export",
        &"--data",
        &ledger.data,
        &"--out",
        &ledger.export,
    ])
    .fails_with("already exists");
    assert!(run.stdout.is_empty(), "{run}");
    assert_eq!(list_files(&ledger.export), before);
    assert_eq!(
        fs::read(ledger.export.join("checkpoint")).unwrap(),
        checkpoint
    );
    // An existing file.
    let file = ledger.path("a-file");
    fs::write(&file, "keep me").unwrap();
    writ(&[
        &"ledger",
        &"export",
        &"--data",
        &ledger.data,
        &"--out",
        &file,
    ])
    .fails_with("already exists");
    assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
    // Nothing was staged next to them.
    let names: Vec<String> = fs::read_dir(ledger.tmp.path())
        .unwrap()
        .map(|item| item.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|name| !name.contains("partial")),
        "{names:?}"
    );
}

/// An I/O error's reason is printed once, not once per level of its chain.
#[test]
fn export_error_messages_are_not_repeated() {
    let ledger = Ledger::new(2);
    let run = writ(&[
        &"ledger",
        &"export",
        &"--data",
        &ledger.data,
        &"--out",
        &ledger.export,
    ])
    .fails_with("already exists");
    assert_eq!(
        run.stderr.matches("already exists").count(),
        1,
        "the reason is repeated:\n{run}"
    );
}

#[test]
fn export_refuses_a_dir_with_no_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let missing = tmp.path().join("missing");
    for data in [&empty, &missing] {
        let out = tmp.path().join("out");
        writ(&[&"ledger", &"export", &"--data", data, &"--out", &out]).fails_with("no ledger in");
        assert!(!out.exists());
    }
    assert!(!missing.exists(), "export must not create a data dir");
    assert!(
        list_files(&empty).is_empty(),
        "export must not write into it"
    );
}

#[test]
fn export_of_an_empty_ledger_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    bench(&data, 0, 1);
    let out = tmp.path().join("out");
    let run = writ(&[&"ledger", &"export", &"--data", &data, &"--out", &out])
        .fails_with("the log is empty");
    assert!(
        !run.stderr.contains("no ledger in `the log is empty"),
        "the reason is printed as if it were a path:\n{run}"
    );
    assert!(!out.exists());
}

#[test]
fn export_refuses_a_data_dir_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (mut bench_process, receipts) = hold_data_dir(&data, "4");
    assert!(data.join("ledger.key").is_file());

    let out = tmp.path().join("out");
    let run = writ(&[&"ledger", &"export", &"--data", &data, &"--out", &out]).fails_with("in use");
    assert!(run.stderr.contains("data"), "names the data dir:\n{run}");
    assert!(!out.exists());
    assert_eq!(
        bench_process.0.try_wait().unwrap(),
        None,
        "the long bench is still running"
    );
    drop(bench_process);
    drop(receipts);
    // Once it is gone, the data dir opens again.
    export(&data, &out);
    verify(&out, &verifier_key(&data)).ok();
}

#[test]
fn a_second_bench_refuses_a_data_dir_in_use() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (bench_process, receipts) = hold_data_dir(&data, "2");
    writ(&[
        &"ledger",
        &"bench",
        &"--data",
        &data,
        &"--entries",
        &"1",
        &"--writers",
        &"1",
    ])
    .fails_with("in use");
    // Showing the public key needs no lock.
    verifier_key(&data);
    drop(bench_process);
    drop(receipts);
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let ledger = Ledger::new(10);
    let key_file = ledger.data.join("ledger.key");
    assert_eq!(
        fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600,
        "bench creates the key owner-only"
    );
    for mode in [0o644, 0o640, 0o604] {
        fs::set_permissions(&key_file, fs::Permissions::from_mode(mode)).unwrap();
        let out = ledger.path("out");
        writ(&[
            &"ledger",
            &"export",
            &"--data",
            &ledger.data,
            &"--out",
            &out,
        ])
        .fails_with("chmod 600");
        assert!(!out.exists());
        writ(&[
            &"ledger",
            &"bench",
            &"--data",
            &ledger.data,
            &"--entries",
            &"1",
            &"--writers",
            &"1",
        ])
        .fails_with("chmod 600");
        writ(&[&"keys", &"show", &"--data", &ledger.data]).fails_with("chmod 600");
    }
    fs::set_permissions(&key_file, fs::Permissions::from_mode(0o600)).unwrap();
    export(&ledger.data, &ledger.path("out"));
    assert_eq!(export_size(&ledger.path("out")), 10);
}

#[test]
fn another_ledgers_key_file_is_refused() {
    let ledger = Ledger::new(10);
    let other = Ledger::new(1);
    fs::copy(
        other.data.join("ledger.key"),
        ledger.data.join("ledger.key"),
    )
    .unwrap();
    let out = ledger.path("out");
    let run = writ(&[
        &"ledger",
        &"export",
        &"--data",
        &ledger.data,
        &"--out",
        &out,
    ])
    .fails_with("corrupt");
    assert!(
        run.stderr.contains(&ledger.key),
        "names the log's key:\n{run}"
    );
    assert!(!out.exists());
    writ(&[
        &"ledger",
        &"bench",
        &"--data",
        &ledger.data,
        &"--entries",
        &"1",
        &"--writers",
        &"1",
    ])
    .fails_with("written by");
}

#[test]
fn a_malformed_key_file_is_refused_by_name() {
    let ledger = Ledger::new(10);
    let key_file = ledger.data.join("ledger.key");
    fs::write(&key_file, "not a signing key\n").unwrap();
    let out = ledger.path("out");
    writ(&[
        &"ledger",
        &"export",
        &"--data",
        &ledger.data,
        &"--out",
        &out,
    ])
    .fails_with("ledger.key");
    writ(&[&"keys", &"show", &"--data", &ledger.data]).fails_with("ledger.key");
}

#[test]
fn a_missing_key_file_is_named_and_not_replaced() {
    let ledger = Ledger::new(10);
    let key_file = ledger.data.join("ledger.key");
    fs::remove_file(&key_file).unwrap();
    let out = ledger.path("out");
    writ(&[
        &"ledger",
        &"export",
        &"--data",
        &ledger.data,
        &"--out",
        &out,
    ])
    .fails_with("ledger.key");
    assert!(!out.exists());
    // bench must not give the existing log a new signing key.
    writ(&[
        &"ledger",
        &"bench",
        &"--data",
        &ledger.data,
        &"--entries",
        &"1",
        &"--writers",
        &"1",
    ])
    .fails_with("ledger.key");
    assert!(
        !key_file.exists(),
        "bench wrote a new ledger.key into a data dir that holds a log"
    );
}

#[test]
fn a_missing_database_is_not_silently_replaced() {
    let ledger = Ledger::new(10);
    fs::remove_dir_all(ledger.data.join("ledger.db")).unwrap();
    // Appending would start a second log from index 0 under the same key: a fork
    // (two signed checkpoints that no consistency proof can join).
    writ(&[
        &"ledger",
        &"bench",
        &"--data",
        &ledger.data,
        &"--entries",
        &"5",
        &"--writers",
        &"1",
    ])
    .fails_with("ledger.db");
    let out = ledger.path("out");
    writ(&[
        &"ledger",
        &"export",
        &"--data",
        &ledger.data,
        &"--out",
        &out,
    ])
    .fails_with("ledger.db");
    assert!(!out.exists());
}

#[test]
fn keys_show_on_a_dir_with_no_ledger() {
    let tmp = tempfile::tempdir().unwrap();
    writ(&[&"keys", &"show", &"--data", &tmp.path()]).fails_with("no ledger in");
    let missing = tmp.path().join("missing");
    writ(&[&"keys", &"show", &"--data", &missing]).fails_with("no ledger in");
    assert!(!missing.exists());
}

#[test]
fn bench_refuses_bad_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    writ(&[
        &"ledger",
        &"bench",
        &"--data",
        &data,
        &"--entries",
        &"5",
        &"--writers",
        &"0",
    ])
    .fails_with("--writers");
    let run = writ(&[
        &"ledger",
        &"bench",
        &"--data",
        &data,
        &"--entries",
        &"-5",
        &"--writers",
        &"1",
    ]);
    assert_eq!(run.code, Some(2), "a usage error:\n{run}");
    let run = run.no_panic();
    assert!(run.stderr.contains("--entries"), "{run}");
}
