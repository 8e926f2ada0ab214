//! Shared helpers for the end-to-end tests of the `writ` binary: running it with a
//! time limit, checking its exit status and messages, and reading and rewriting
//! the files of an export directory.
#![allow(
    dead_code,
    reason = "each test file uses a different subset of these helpers"
)]

use std::ffi::OsStr;
use std::fs;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use writ_ledger::tilepath::{tile_path, TileKind};
use writ_ledger::tiles::TILE_WIDTH;

/// The binary under test, built by Cargo for these tests.
pub(crate) const WRIT: &str = env!("CARGO_BIN_EXE_writ");

/// No single command of these tests should come close to this.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What one run of `writ` did.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) command: String,
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    /// Asserts the command succeeded; returns it for further checks.
    #[track_caller]
    pub(crate) fn ok(self) -> Self {
        assert_eq!(self.code, Some(0), "expected success:\n{self}");
        self.no_panic()
    }

    /// Asserts the command failed cleanly (not a panic, not a usage error) and that
    /// its standard error mentions `needle`.
    #[track_caller]
    pub(crate) fn fails_with(self, needle: &str) -> Self {
        assert_eq!(
            self.code,
            Some(1),
            "expected a clean failure (exit 1; 2 is a usage error, 101 a panic):\n{self}"
        );
        assert!(
            self.stderr.contains(needle),
            "expected standard error to mention {needle:?}:\n{self}"
        );
        self.no_panic()
    }

    #[track_caller]
    pub(crate) fn no_panic(self) -> Self {
        assert!(
            !self.stderr.contains("panicked") && !self.stdout.contains("panicked"),
            "writ panicked:\n{self}"
        );
        self
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.code,
            truncate(&self.stdout),
            truncate(&self.stderr)
        )
    }
}

fn truncate(text: &str) -> &str {
    let mut end = text.len().min(4000);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Runs `writ` with `args` (strings or paths) and waits for it, at most a minute.
pub(crate) fn writ(args: &[&dyn AsRef<OsStr>]) -> Run {
    writ_with_env(args, &[])
}

/// `writ`, with each `(name, value)` set in the environment, or removed where the
/// value is `None`.
pub(crate) fn writ_with_env(args: &[&dyn AsRef<OsStr>], env: &[(&str, Option<&str>)]) -> Run {
    let args: Vec<&OsStr> = args.iter().map(|arg| arg.as_ref()).collect();
    let command = std::iter::once(OsStr::new("writ"))
        .chain(args.iter().copied())
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let mut command_line = Command::new(WRIT);
    command_line.args(&args);
    for (name, value) in env {
        match value {
            Some(value) => command_line.env(name, value),
            None => command_line.env_remove(name),
        };
    }
    let mut child = command_line
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start writ");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        stdout.read_to_end(&mut text).map(|_| text)
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        stderr.read_to_end(&mut text).map(|_| text)
    });
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for writ") {
            break status;
        }
        if started.elapsed() > COMMAND_TIMEOUT {
            child.kill().expect("kill writ");
            child.wait().expect("reap writ");
            panic!("`{command}` did not finish within {COMMAND_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = out.join().expect("stdout reader").expect("read stdout");
    let stderr = err.join().expect("stderr reader").expect("read stderr");
    Run {
        command,
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// `writ ledger bench` of `entries` entries from `writers` writers into `data`.
pub(crate) fn bench(data: &Path, entries: u64, writers: u64) -> Run {
    writ(&[
        &"ledger",
        &"bench",
        &"--data",
        &data,
        &"--entries",
        &entries.to_string(),
        &"--writers",
        &writers.to_string(),
    ])
    .ok()
}

/// `writ ledger export` of `data` into `out`.
pub(crate) fn export(data: &Path, out: &Path) -> Run {
    writ(&[&"ledger", &"export", &"--data", &data, &"--out", &out]).ok()
}

/// `writ ledger verify EXPORT --key KEY`, whatever its outcome.
pub(crate) fn verify(export: &Path, key: &dyn AsRef<OsStr>) -> Run {
    writ(&[&"ledger", &"verify", &export, &"--key", key])
}

/// The verifier key string of the ledger in `data`, from `writ keys show`.
pub(crate) fn verifier_key(data: &Path) -> String {
    let run = writ(&[&"keys", &"show", &"--data", &data]).ok();
    let key = run.stdout.trim().to_owned();
    assert_eq!(key.lines().count(), 1, "one key expected:\n{run}");
    key
}

/// The tree size of an export's latest `checkpoint` (its second line).
pub(crate) fn export_size(export: &Path) -> u64 {
    let note = fs::read_to_string(export.join("checkpoint")).expect("read checkpoint");
    note.lines()
        .nth(1)
        .and_then(|line| line.parse().ok())
        .unwrap_or_else(|| panic!("no size in checkpoint:\n{note}"))
}

/// The sizes named by `checkpoints/`, sorted.
pub(crate) fn checkpoint_sizes(export: &Path) -> Vec<u64> {
    let mut sizes: Vec<u64> = fs::read_dir(export.join("checkpoints"))
        .expect("list checkpoints")
        .map(|item| {
            let name = item.expect("checkpoint entry").file_name();
            let name = name.to_string_lossy();
            name.parse()
                .unwrap_or_else(|_| panic!("checkpoint file `{name}` is not a size"))
        })
        .collect();
    sizes.sort_unstable();
    sizes
}

/// The relative path of entry bundle `number` of a log of `size` entries.
pub(crate) fn bundle_path(number: u64, size: u64) -> String {
    let width = (size - number * TILE_WIDTH as u64).min(TILE_WIDTH as u64) as usize;
    tile_path(TileKind::Entries, number, width)
}

/// The relative path of hash tile `index` of tile level `level` for `size` entries.
pub(crate) fn hash_tile_path(level: u8, index: u64, size: u64) -> String {
    let nodes = size >> (8 * u32::from(level));
    let width = (nodes - index * TILE_WIDTH as u64).min(TILE_WIDTH as u64) as usize;
    tile_path(TileKind::Hashes(level), index, width)
}

/// One entry of a bundle: where its length prefix starts, where its bytes start,
/// and how many bytes it has.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub(crate) prefix: usize,
    pub(crate) body: usize,
    pub(crate) len: usize,
}

/// Splits a well-formed bundle into its entries' slots (panics on a malformed one).
pub(crate) fn bundle_slots(bundle: &[u8]) -> Vec<Slot> {
    let mut slots = Vec::new();
    let mut at = 0;
    while at < bundle.len() {
        let len = usize::from(u16::from_be_bytes([bundle[at], bundle[at + 1]]));
        slots.push(Slot {
            prefix: at,
            body: at + 2,
            len,
        });
        at += 2 + len;
        assert!(at <= bundle.len(), "malformed bundle");
    }
    slots
}

/// The entries of a well-formed bundle.
pub(crate) fn bundle_entries(bundle: &[u8]) -> Vec<Vec<u8>> {
    bundle_slots(bundle)
        .into_iter()
        .map(|slot| bundle[slot.body..slot.body + slot.len].to_vec())
        .collect()
}

/// Encodes entries as a bundle: big-endian u16 length, then the bytes.
pub(crate) fn encode_bundle(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut bundle = Vec::new();
    for entry in entries {
        let len = u16::try_from(entry.len()).expect("entry fits a bundle");
        bundle.extend_from_slice(&len.to_be_bytes());
        bundle.extend_from_slice(entry);
    }
    bundle
}

/// Every entry of an export, in order, read from its bundles.
pub(crate) fn export_entries(export: &Path) -> Vec<Vec<u8>> {
    let size = export_size(export);
    let mut entries = Vec::with_capacity(size as usize);
    for number in 0..size.div_ceil(TILE_WIDTH as u64) {
        let path = export.join(bundle_path(number, size));
        let bundle = fs::read(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        entries.extend(bundle_entries(&bundle));
    }
    assert_eq!(entries.len() as u64, size, "entries in the bundles");
    entries
}

/// Copies a directory tree.
pub(crate) fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create copy");
    for item in fs::read_dir(from).expect("list directory") {
        let item = item.expect("directory entry");
        let target = to.join(item.file_name());
        if item.file_type().expect("file type").is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            fs::copy(item.path(), &target).expect("copy file");
        }
    }
}

/// XORs the byte at `offset` of `path` with `mask`.
pub(crate) fn xor_byte(path: &Path, offset: usize, mask: u8) {
    let mut bytes = fs::read(path).expect("read file to damage");
    bytes[offset] ^= mask;
    fs::write(path, bytes).expect("write damaged file");
}

/// Lists every file under `dir`, relative to it, sorted.
pub(crate) fn list_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for item in fs::read_dir(dir).expect("list directory") {
            let item = item.expect("directory entry");
            if item.file_type().expect("file type").is_dir() {
                walk(root, &item.path(), out);
            } else {
                out.push(
                    item.path()
                        .strip_prefix(root)
                        .expect("under root")
                        .to_path_buf(),
                );
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
