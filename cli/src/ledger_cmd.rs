//! `writ ledger ...` and `writ keys ...`: offline commands on a data dir or an export.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context as _};
use clap::Subcommand;
use writ_ledger::datadir::DataDir;
use writ_ledger::files::read_bounded;
use writ_ledger::log::Retention;
use writ_ledger::prove::ExportReader;
use writ_ledger::receipt::verify_receipt;
use writ_ledger::verify::{verify_export_with, VerifyReport};
use writ_ledger::writer::BatchConfig;
use writ_ledger::{LeafIndex, LogVerifier, Receipt, TreeSize};
use writ_server::grants::ledger_check::{LedgerSignatureChecker, SignatureReport};

use crate::bench;

#[derive(Debug, Subcommand)]
pub(crate) enum LedgerCommand {
    /// Append synthetic entries from concurrent writers and report throughput and latency.
    Bench {
        /// The data dir (created with a new key if it holds no ledger).
        #[arg(long)]
        data: PathBuf,
        /// How many entries to append.
        #[arg(long)]
        entries: u64,
        /// How many concurrent writers.
        #[arg(long)]
        writers: u64,
        /// Size of each entry in bytes (approximately; at least the fixed fields).
        #[arg(long, default_value_t = 200)]
        entry_bytes: usize,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Print every receipt as a JSON line on standard output as it arrives.
        #[arg(long)]
        print_receipts: bool,
        /// Longest wait for more entries before a batch is committed, in microseconds.
        #[arg(long, default_value_t = 200)]
        linger_us: u64,
        /// Most entries in one batch.
        #[arg(long, default_value_t = 4096)]
        max_batch: usize,
        /// Offer entries at this rate (entries/s, open loop: each entry is submitted
        /// at its scheduled time, and its latency counts from then) instead of
        /// closed-loop writers that each wait for their receipt.
        #[arg(long)]
        rate: Option<u64>,
    },
    /// Export a stopped data dir as a tlog-tiles directory.
    Export {
        #[arg(long)]
        data: PathBuf,
        /// The directory to create (must not exist).
        #[arg(long)]
        out: PathBuf,
    },
    /// Verify an export offline with the public key alone.
    Verify {
        /// The export directory (or give `--url`).
        #[arg(required_unless_present = "url", conflicts_with = "url")]
        export: Option<PathBuf>,
        /// Verify a running server's ledger through its tiles API instead, e.g.
        /// `http://127.0.0.1:7700/ledger` (fetched client side, then verified).
        #[arg(long)]
        url: Option<String>,
        /// With `--url`: an Operator's or Auditor's bearer token, sent with the
        /// entry-bundle fetches only (the server serves bundles to those alone);
        /// unused offline. Prefer the environment variable: a flag is visible in
        /// the process list.
        #[arg(long, env = "WRIT_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// The verifier key string, or a file holding it.
        #[arg(long)]
        key: String,
        #[arg(long)]
        json: bool,
    },
    /// Verify one receipt offline.
    VerifyReceipt {
        receipt: PathBuf,
        /// The file holding the exact entry bytes.
        #[arg(long)]
        entry: PathBuf,
        /// The verifier key string, or a file holding it.
        #[arg(long)]
        key: String,
    },
    /// Print a receipt (tlog-proof@v1) for an entry of an export.
    Prove {
        export: PathBuf,
        #[arg(long)]
        index: u64,
        /// The signed checkpoint's size (default: the latest).
        #[arg(long)]
        size: Option<u64>,
        /// The trusted verifier key string, or a file holding it (never taken from
        /// the export itself, which whoever made it controls).
        #[arg(long)]
        key: String,
    },
    /// Print the consistency proof between two signed checkpoints of an export,
    /// or from a checkpoint you kept (`--old-checkpoint`) to the export.
    Consistency {
        export: PathBuf,
        /// The size of an older checkpoint retained in the export.
        #[arg(
            long,
            required_unless_present = "old_checkpoint",
            conflicts_with = "old_checkpoint"
        )]
        old: Option<u64>,
        /// A signed checkpoint kept from earlier (a file); the export must extend it.
        #[arg(long)]
        old_checkpoint: Option<PathBuf>,
        #[arg(long)]
        new: Option<u64>,
        /// The trusted verifier key string, or a file holding it.
        #[arg(long)]
        key: String,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Print the ledger's verifier key string.
    Show {
        #[arg(long)]
        data: PathBuf,
    },
}

pub(crate) fn run(command: LedgerCommand) -> anyhow::Result<ExitCode> {
    match command {
        LedgerCommand::Bench {
            data,
            entries,
            writers,
            entry_bytes,
            json,
            print_receipts,
            linger_us,
            max_batch,
            rate,
        } => {
            let options = bench::BenchOptions {
                entries,
                writers,
                entry_bytes,
                print_receipts,
                rate,
                batch: BatchConfig {
                    max_batch,
                    linger: std::time::Duration::from_micros(linger_us),
                    ..BatchConfig::default()
                },
            };
            let report = bench::run(&data, &options)?;
            if !print_receipts {
                report.print(json);
            }
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Export { data, out } => {
            let dir = DataDir::new(&data);
            let server_dir = writ_server::vault::files::sealed_path(&data).exists();
            let log = if !server_dir {
                dir.open_log(Retention::default())?
            } else {
                // A server's data dir: the signing key is sealed in its vault.
                let signer = writ_server::vault::files::offline_ledger_signer(&data)?;
                dir.open_log_with_signer(
                    signer,
                    Retention::default(),
                    std::sync::Arc::new(writ_ledger::log::SystemClock),
                )?
            };
            let summary = writ_ledger::export::export(&log, &out)?;
            println!(
                "exported {} entries, {} hash tiles, {} entry bundles, {} checkpoints to {}",
                summary.size,
                summary.hash_tiles,
                summary.entry_bundles,
                summary.checkpoints,
                out.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Verify {
            export,
            url,
            token,
            key,
            json,
        } => verify(export.as_deref(), url.as_deref(), token, &key, json),
        LedgerCommand::VerifyReceipt {
            receipt,
            entry,
            key,
        } => {
            let key = parse_key(&key)?;
            let text = read_limited(&receipt, 64 * 1024)?;
            let receipt = Receipt::parse(&text)?;
            let entry = read_limited(&entry, writ_ledger::MAX_ENTRY_BYTES)?;
            let checkpoint = verify_receipt(&receipt, &entry, &key)?;
            println!(
                "ok: entry {} is in {} at size {} (root {})",
                receipt.index,
                checkpoint.origin,
                checkpoint.size,
                checkpoint.root.to_base64()
            );
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Prove {
            export,
            index,
            size,
            key,
        } => {
            let reader = ExportReader::open(&export, export_key(&export, &key)?)?;
            let receipt = reader.prove(LeafIndex(index), size.map(TreeSize))?;
            print!("{}", receipt.to_text());
            Ok(ExitCode::SUCCESS)
        }
        LedgerCommand::Consistency {
            export,
            old,
            old_checkpoint,
            new,
            key,
        } => {
            let reader = ExportReader::open(&export, export_key(&export, &key)?)?;
            let new = new.map(TreeSize);
            let (old, new, proof) = match (old, old_checkpoint) {
                (_, Some(path)) => {
                    reader.consistency_from_note(&read_limited(&path, 64 * 1024)?, new)?
                }
                (Some(old), None) => reader.consistency(TreeSize(old), new)?,
                (None, None) => bail!("give --old SIZE or --old-checkpoint FILE"),
            };
            println!("consistency {} {}", old.size, new.size);
            println!("old {}", old.root.to_base64());
            println!("new {}", new.root.to_base64());
            for hash in proof {
                println!("{}", hash.to_base64());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

pub(crate) fn run_keys(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Show { data } => {
            let dir = DataDir::new(&data);
            if !dir.exists() {
                bail!("no ledger in `{}`", data.display());
            }
            println!("{}", dir.verifier_key()?);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Reads a regular file, refusing one larger than `limit` bytes.
fn read_limited(path: &Path, limit: usize) -> anyhow::Result<Vec<u8>> {
    read_bounded(path, limit as u64).with_context(|| format!("`{}`", path.display()))
}

/// A verifier key given inline, or in a file.
fn parse_key(value: &str) -> anyhow::Result<LogVerifier> {
    match LogVerifier::from_verifier_key(value.trim()) {
        Ok(key) => Ok(key),
        Err(inline_error) => {
            let path = Path::new(value);
            if path.is_file() {
                let text = read_limited(path, 4096)?;
                let text = String::from_utf8_lossy(&text);
                let first = text.lines().next().unwrap_or_default();
                LogVerifier::from_verifier_key(first.trim())
                    .with_context(|| format!("key file `{value}`"))
            } else {
                Err(inline_error).context("--key is neither a verifier key nor a file")
            }
        }
    }
}

fn export_key(export: &Path, key: &str) -> anyhow::Result<LogVerifier> {
    if !export.is_dir() {
        bail!(
            "export `{}` does not exist or is not a directory",
            export.display()
        );
    }
    parse_key(key)
}

fn verify(
    export: Option<&Path>,
    url: Option<&str>,
    token: Option<String>,
    key: &str,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let key = parse_key(key)?;
    // Every entry also goes through the signed-statement rules, in index order.
    let mut checker = LedgerSignatureChecker::new();
    let mut check = |index: LeafIndex, bytes: &[u8]| checker.check(index.0, bytes);
    if let Some(url) = url {
        let started = Instant::now();
        let result = crate::verify_url::verify_url(
            url,
            &key.to_verifier_key(),
            token.map(zeroize::Zeroizing::new),
            std::io::stderr().is_terminal(),
            &mut check,
        )
        .map_err(|error| format!("{error:#}"))
        .map(|report| (report, checker.finish()));
        return report_verify(result, started.elapsed().as_secs_f64(), json);
    }
    let Some(export) = export else {
        bail!("give an export directory or --url");
    };
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {pos}/{len} entries {per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = Instant::now();
    let mut progress = |done: u64, total: u64| {
        if let Some(bar) = &bar {
            bar.set_length(total);
            bar.set_position(done);
        }
    };
    let result = verify_export_with(export, &key, &mut progress, &mut check);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    let result = result
        .map_err(|error| error.to_string())
        .map(|report| (report, checker.finish()));
    report_verify(result, seconds, json)
}

fn report_verify(
    result: Result<(VerifyReport, SignatureReport), String>,
    seconds: f64,
    json: bool,
) -> anyhow::Result<ExitCode> {
    match result {
        Ok((report, signatures)) => {
            if json {
                println!(
                    "{}",
                    serde_json::json!({
                        "ok": true,
                        "size": report.size.0,
                        "root": report.root.to_base64(),
                        "checkpoints": report.checkpoints,
                        "hash_tiles": report.hash_tiles,
                        "signed_statements": signatures.signed_entries_checked,
                        "required_approvals": signatures.required_approvals_checked,
                        "signing_keys": signatures.keys_registered,
                        "seconds": seconds,
                        "entries_per_sec": report.size.0 as f64 / seconds.max(1e-9),
                    })
                );
            } else {
                println!(
                    "ok: {} entries, {} checkpoints, {} hash tiles verified; \
                     {} signed statements checked ({} required approvals, {} signing keys); \
                     root {} ({:.2}s)",
                    report.size,
                    report.checkpoints,
                    report.hash_tiles,
                    signatures.signed_entries_checked,
                    signatures.required_approvals_checked,
                    signatures.keys_registered,
                    report.root.to_base64(),
                    seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            if json {
                println!("{}", serde_json::json!({ "ok": false, "error": error }));
            } else {
                eprintln!("FAILED: {error}");
            }
            Ok(ExitCode::FAILURE)
        }
    }
}
