//! `writ ledger bench`: synthetic load on a data dir, closed loop (writers that each
//! wait for their receipt) or open loop (entries offered at a fixed rate).

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use writ_ledger::datadir::{default_origin, DataDir};
use writ_ledger::log::Retention;
use writ_ledger::writer::{self, BatchConfig, LedgerWriter};
use writ_ledger::{EntryDraft, LeafIndex, Receipt};

/// What to run.
#[derive(Debug)]
pub(crate) struct BenchOptions {
    pub(crate) entries: u64,
    pub(crate) writers: u64,
    pub(crate) entry_bytes: usize,
    pub(crate) print_receipts: bool,
    pub(crate) rate: Option<u64>,
    pub(crate) batch: BatchConfig,
}

/// What was measured.
#[derive(Debug)]
pub(crate) struct BenchReport {
    entries: u64,
    writers: u64,
    seconds: f64,
    offered: Option<u64>,
    /// Submit-to-receipt latencies in microseconds, sorted.
    latencies: Vec<u64>,
}

impl BenchReport {
    fn percentile(&self, p: f64) -> u64 {
        let rank = ((self.latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
        self.latencies.get(rank).copied().unwrap_or(0)
    }

    pub(crate) fn print(&self, json: bool) {
        let rate = self.entries as f64 / self.seconds.max(1e-9);
        if json {
            let mut object = serde_json::json!({
                "entries": self.entries,
                "writers": self.writers,
                "seconds": self.seconds,
                "entries_per_sec": rate,
                "p50_us": self.percentile(0.50),
                "p99_us": self.percentile(0.99),
            });
            if let (Some(offered), Some(map)) = (self.offered, object.as_object_mut()) {
                map.insert("offered_per_sec".into(), offered.into());
            }
            println!("{object}");
        } else {
            let load = match self.offered {
                Some(offered) => format!("offered at {offered}/s"),
                None => format!("from {} writers", self.writers),
            };
            println!(
                "{} entries {load} in {:.3}s: {rate:.0} entries/s, p50 {} us, p99 {} us",
                self.entries,
                self.seconds,
                self.percentile(0.50),
                self.percentile(0.99)
            );
        }
    }
}

/// A synthetic entry of about `entry_bytes` bytes once encoded.
#[derive(Clone, Debug)]
struct EntryMaker {
    padding: Arc<str>,
}

impl EntryMaker {
    fn new(entry_bytes: usize, typical_index: u64) -> anyhow::Result<Self> {
        let empty = Self { padding: "".into() };
        let encoded = empty
            .draft(0, 0)
            .prepare()?
            .encode(LeafIndex(typical_index), std::time::SystemTime::now());
        let padding = "x".repeat(entry_bytes.saturating_sub(encoded.len()));
        Ok(Self {
            padding: padding.into(),
        })
    }

    fn draft(&self, writer: u64, n: u64) -> EntryDraft {
        let fields = serde_json::json!({ "n": n, "pad": &*self.padding });
        EntryDraft {
            kind: "bench".into(),
            actor: format!("Agent::\"bench-{writer}\""),
            workspace: "bench".into(),
            fields: fields.as_object().cloned().unwrap_or_default(),
        }
    }
}

fn print_receipt(receipt: &Receipt) -> anyhow::Result<()> {
    let line = serde_json::json!({ "index": receipt.index.0, "receipt": receipt.to_text() });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// Runs the load described by `options` against the data dir `data`.
pub(crate) fn run(data: &Path, options: &BenchOptions) -> anyhow::Result<BenchReport> {
    if options.writers == 0 {
        bail!("--writers must be at least 1");
    }
    if options.rate == Some(0) {
        bail!("--rate must be at least 1");
    }
    let dir = DataDir::new(data);
    if !dir.exists() {
        dir.init(&default_origin())?;
    }
    let log = dir.open_log(Retention::default())?;
    let maker = EntryMaker::new(options.entry_bytes, log.size().0 + options.entries / 2)?;
    let (ledger, committer) = writer::spawn(log, options.batch)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut latencies = runtime.block_on(async {
        match options.rate {
            None => closed_loop(&ledger, &maker, options).await,
            Some(rate) => open_loop(&ledger, &maker, options, rate).await,
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    drop(ledger);
    committer.join()?;
    latencies.sort_unstable();
    Ok(BenchReport {
        entries: options.entries,
        writers: options.writers,
        seconds,
        offered: options.rate,
        latencies,
    })
}

/// `writers` tasks, each appending its share and waiting for every receipt.
async fn closed_loop(
    ledger: &LedgerWriter,
    maker: &EntryMaker,
    options: &BenchOptions,
) -> anyhow::Result<Vec<u64>> {
    let mut tasks = Vec::new();
    for worker in 0..options.writers {
        let (ledger, maker) = (ledger.clone(), maker.clone());
        let count = options.entries / options.writers
            + u64::from(worker < options.entries % options.writers);
        let print = options.print_receipts;
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(count as usize);
            for n in 0..count {
                let draft = maker.draft(worker, n);
                let submitted = Instant::now();
                let receipt = ledger.append(&draft).await?;
                latencies.push(submitted.elapsed().as_micros() as u64);
                if print {
                    print_receipt(&receipt)?;
                }
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::with_capacity(options.entries as usize);
    for task in tasks {
        all.extend(task.await??);
    }
    Ok(all)
}

/// One task per entry, started at its scheduled time `n / rate`; the latency
/// counts from the schedule, so a stalled ledger cannot hide its queue.
async fn open_loop(
    ledger: &LedgerWriter,
    maker: &EntryMaker,
    options: &BenchOptions,
    rate: u64,
) -> anyhow::Result<Vec<u64>> {
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(options.entries as usize);
    for n in 0..options.entries {
        let scheduled = start + Duration::from_secs_f64(n as f64 / rate as f64);
        tokio::time::sleep_until(scheduled).await;
        let (ledger, draft) = (ledger.clone(), maker.draft(n % options.writers, n));
        let print = options.print_receipts;
        tasks.push(tokio::spawn(async move {
            let receipt = ledger.append(&draft).await?;
            let latency = scheduled.elapsed().as_micros() as u64;
            if print {
                print_receipt(&receipt)?;
            }
            anyhow::Ok(latency)
        }));
    }
    let mut all = Vec::with_capacity(tasks.len());
    for task in tasks {
        all.push(task.await??);
    }
    Ok(all)
}
