//! End-to-end tests of the HTTP edge against slow and hostile clients: the real
//! `writ serve` on a loopback port, with short timeouts from its config file.
//!
//! Stalled unauthenticated bodies cost the server almost no memory and `/healthz`
//! stays fast meanwhile; idle, slowloris and over-the-limit connections are closed
//! on time and the server keeps accepting; idle keep-alive connections cannot take
//! every slot; a stop cuts what is still open after its drain deadline; two
//! `Authorization` headers are refused; wrong vault passphrases are tried one at a
//! time, logged and recorded.
//!
//! The tests run one at a time: they measure the server's memory and latency.
//! Latency is judged as the issue states it ("/healthz answers in under 100 ms
//! throughout") on the 95th percentile of the probes, with no probe over 1 s: on a
//! loaded two-core machine a single probe can lose its core for longer than that.
#![cfg(test)]

mod common;
#[path = "common/server.rs"]
mod server;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex, PoisonError};
use std::time::{Duration, Instant};

use common::{export_entries, writ, WRIT};
use serde_json::json;
use server::{raw_http, Client, Server};
use tempfile::TempDir;

/// One test at a time: each measures its server's memory or latency.
static SERIAL: Mutex<()> = Mutex::new(());

/// The 95th percentile of `/healthz` tolerated while the server is under attack.
const HEALTHZ_LIMIT: Duration = Duration::from_millis(100);
/// The slowest single `/healthz` tolerated while the server is under attack.
const HEALTHZ_MAX: Duration = Duration::from_secs(1);
/// Slack on top of a configured timeout before a connection must be closed.
const SLACK: Duration = Duration::from_millis(1500);

/// A fresh data dir and a running server with this `[http]` section.
struct Edge {
    tmp: TempDir,
    data: PathBuf,
    admin: String,
    server: Option<Server>,
    client: Client,
    /// `127.0.0.1:PORT`.
    address: String,
}

impl Edge {
    /// `writ init`, then `writ serve --config` with `http` as the `[http]` section;
    /// with `open_files`, under that `ulimit -n`.
    fn start(http: &str, open_files: Option<u32>) -> Self {
        Self::start_with_config(&format!("[http]\n{http}\n"), open_files)
    }

    /// `writ init`, then `writ serve --config` with this config file.
    fn start_with_config(config_text: &str, open_files: Option<u32>) -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let key_file = tmp.path().join("admin.key");
        writ(&[&"init", &"--data", &data, &"--admin-key-out", &key_file]).ok();
        let admin = std::fs::read_to_string(&key_file)
            .expect("read admin key")
            .trim()
            .to_owned();
        let config = tmp.path().join("writ.toml");
        std::fs::write(&config, config_text).expect("write config");
        let mut command = match open_files {
            Some(limit) => {
                let mut command = Command::new("sh");
                command
                    .arg("-c")
                    .arg(format!("ulimit -n {limit} && exec \"$0\" \"$@\""))
                    .arg(WRIT);
                command
            }
            None => Command::new(WRIT),
        };
        command
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .args(["--listen", "127.0.0.1:0", "--config"])
            .arg(&config);
        let server = Server::spawn(command);
        let client = Client::new(&server.base);
        let address = server.base.trim_start_matches("http://").to_owned();
        Self {
            tmp,
            data,
            admin,
            server: Some(server),
            client,
            address,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("the server is running")
    }

    /// The server's resident memory, in KiB.
    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.server().pid()))
            .expect("read the server's /proc status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a VmRSS line")
    }

    fn connect(&self) -> TcpStream {
        TcpStream::connect(&self.address).expect("connect")
    }
}

/// `GET /healthz` over a new connection: how long the whole answer took.
fn healthz(address: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|error| error.to_string())?;
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|error| error.to_string())?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .map_err(|error| error.to_string())?;
    let text = String::from_utf8_lossy(&answer);
    if text.starts_with("HTTP/1.1 200") && text.contains(r#"{"status":"ok"}"#) {
        Ok(started.elapsed())
    } else {
        Err(format!("unexpected answer: {text:?}"))
    }
}

/// Reads from `stream` until the server closes it or `limit` passes: when it closed.
/// What the server sent before closing is appended to `seen`.
fn closed_within(stream: &mut TcpStream, limit: Duration, seen: &mut Vec<u8>) -> Option<Duration> {
    let started = Instant::now();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    let mut buffer = [0u8; 4096];
    while started.elapsed() < limit {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(started.elapsed()),
            Ok(read) => seen.extend_from_slice(&buffer[..read]),
            Err(error)
                if matches!(
                    error.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return Some(started.elapsed()),
        }
    }
    None
}

/// Whether the server has closed `stream` already (without waiting); what it sent
/// before is appended to `seen`.
fn is_closed(stream: &mut TcpStream, seen: &mut Vec<u8>) -> bool {
    stream.set_nonblocking(true).expect("non-blocking");
    let mut buffer = [0u8; 4096];
    let closed = loop {
        match stream.read(&mut buffer) {
            Ok(0) => break true,
            Ok(read) => seen.extend_from_slice(&buffer[..read]),
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break false,
            Err(_) => break true,
        }
    };
    stream.set_nonblocking(false).expect("blocking");
    closed
}

/// How long the `/healthz` probes took.
#[derive(Debug)]
struct Latency {
    took: Vec<Duration>,
}

impl Latency {
    fn max(&self) -> Duration {
        self.took.iter().copied().max().unwrap_or_default()
    }

    /// The 95th percentile (nearest rank).
    fn p95(&self) -> Duration {
        let mut sorted = self.took.clone();
        sorted.sort();
        let rank = (sorted.len() * 95).div_ceil(100).max(1);
        sorted.get(rank - 1).copied().unwrap_or_default()
    }

    /// Prints the figures and checks them: p95 under [`HEALTHZ_LIMIT`], none over
    /// [`HEALTHZ_MAX`].
    #[track_caller]
    fn check(&self, during: &str) {
        let (max, p95) = (self.max(), self.p95());
        eprintln!(
            "/healthz {during}: {} probes, p95 {p95:?}, max {max:?}",
            self.took.len()
        );
        assert!(!self.took.is_empty(), "no /healthz probe {during}");
        assert!(
            p95 < HEALTHZ_LIMIT,
            "/healthz {during}: p95 {p95:?} (max {max:?})"
        );
        assert!(max < HEALTHZ_MAX, "/healthz {during}: max {max:?}");
    }
}

/// Probes `/healthz` every 50 ms and samples the server's memory until stopped:
/// (the time of every answer, failures, largest resident memory in KiB).
struct Probe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(Latency, Vec<String>, u64)>,
}

impl Probe {
    fn start(edge: &Edge) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let address = edge.address.clone();
        let status = format!("/proc/{}/status", edge.server().pid());
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut took = Vec::new();
            let mut failures = Vec::new();
            let mut peak = 0;
            while !flag.load(Ordering::SeqCst) {
                match healthz(&address) {
                    Ok(answer) => took.push(answer),
                    Err(error) => failures.push(error),
                }
                let rss = std::fs::read_to_string(&status)
                    .ok()
                    .and_then(|text| {
                        text.lines()
                            .find_map(|line| line.strip_prefix("VmRSS:"))
                            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
                    })
                    .unwrap_or(0);
                peak = peak.max(rss);
                std::thread::sleep(Duration::from_millis(50));
            }
            (Latency { took }, failures, peak)
        });
        Self { stop, thread }
    }

    fn finish(self) -> (Latency, Vec<String>, u64) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("probe thread")
    }
}

#[test]
fn stalled_unauthenticated_bodies_cost_little_and_healthz_stays_fast() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let edge = Edge::start(
        "header_read_timeout = \"2s\"\nidle_timeout = \"5s\"\nbody_read_timeout = \"3s\"",
        None,
    );
    for _ in 0..20 {
        healthz(&edge.address).expect("healthz before");
    }
    let before = edge.rss_kib();
    let probe = Probe::start(&edge);

    // 300 connections announce a 1 MiB body without a token, send 960 KiB of it,
    // and stall (they stay open until the end of the test).
    const THREADS: usize = 10;
    const PER_THREAD: usize = 30;
    let senders: Vec<_> = (0..THREADS)
        .map(|_| {
            let address = edge.address.clone();
            std::thread::spawn(move || {
                let head = "POST /v1/authorize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n";
                let chunk = vec![b' '; 64 * 1024];
                let mut streams = Vec::new();
                for _ in 0..PER_THREAD {
                    let mut stream = TcpStream::connect(&address).expect("connect");
                    stream
                        .set_write_timeout(Some(Duration::from_secs(1)))
                        .expect("write timeout");
                    // The server may answer 401 and close before the body is sent:
                    // write errors are expected.
                    if stream.write_all(head.as_bytes()).is_ok() {
                        for _ in 0..15 {
                            if stream.write_all(&chunk).is_err() {
                                break;
                            }
                        }
                    }
                    streams.push(stream);
                }
                streams
            })
        })
        .collect();
    let mut streams: Vec<TcpStream> = senders
        .into_iter()
        .flat_map(|sender| sender.join().expect("sender thread"))
        .collect();
    assert_eq!(streams.len(), THREADS * PER_THREAD);
    std::thread::sleep(Duration::from_secs(1));
    let after = edge.rss_kib();
    let (latency, failures, peak) = probe.finish();

    let grown_mib = (peak.max(after).saturating_sub(before)) / 1024;
    eprintln!("rss before {before} KiB, after {after} KiB, peak {peak} KiB");
    // The token was checked before the body: each of them got its 401.
    for stream in streams.iter_mut().take(10) {
        let mut seen = Vec::new();
        closed_within(stream, Duration::from_secs(2), &mut seen);
        let text = String::from_utf8_lossy(&seen);
        assert!(
            text.starts_with("HTTP/1.1 401") && text.contains("missing_token"),
            "a stalled body without a token: {text:?}"
        );
    }
    assert!(
        grown_mib < 50,
        "300 stalled bodies grew the server by {grown_mib} MiB (from {before} KiB to a peak of {peak} KiB)"
    );
    assert!(failures.is_empty(), "/healthz failed: {failures:?}");
    latency.check("while 300 bodies stalled");
    drop(streams);
}

#[test]
fn idle_and_slowloris_connections_are_closed_on_time() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let header = Duration::from_secs(1);
    let idle = Duration::from_secs(3);
    let edge = Edge::start(
        "header_read_timeout = \"1s\"\nidle_timeout = \"3s\"\nbody_read_timeout = \"2s\"",
        None,
    );
    let probe = Probe::start(&edge);

    // Connects and sends nothing: it has the head timeout to send a head.
    let mut silent = edge.connect();
    let silent =
        std::thread::spawn(move || closed_within(&mut silent, header + SLACK, &mut Vec::new()));

    // Sends a header line every 300 ms, forever: cut at the head timeout however
    // busy it keeps the connection.
    let mut slowloris = edge.connect();
    let slowloris = std::thread::spawn(move || {
        let started = Instant::now();
        let _ = slowloris.write_all(b"GET /healthz HTTP/1.1\r\n");
        let mut line = 0;
        while started.elapsed() < header + SLACK {
            if slowloris
                .write_all(format!("X-Line-{line}: slow\r\n").as_bytes())
                .is_err()
            {
                return Some(started.elapsed());
            }
            line += 1;
            if closed_within(&mut slowloris, Duration::from_millis(300), &mut Vec::new()).is_some()
            {
                return Some(started.elapsed());
            }
        }
        None
    });

    // One request, then idle on a keep-alive connection: it has the idle timeout,
    // which is longer than the head timeout, to send its next request.
    let mut kept = edge.connect();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send a request");
    let mut seen = Vec::new();
    let answered = Instant::now();
    while !String::from_utf8_lossy(&seen).contains(r#"{"status":"ok"}"#) {
        assert!(
            closed_within(&mut kept, Duration::from_millis(100), &mut seen).is_none(),
            "the keep-alive connection closed after its answer"
        );
        assert!(answered.elapsed() < Duration::from_secs(5), "no answer");
    }
    let still_open = closed_within(&mut kept, header + Duration::from_millis(800), &mut seen);
    assert_eq!(
        still_open, None,
        "an idle keep-alive connection was closed at the head timeout, not the idle one"
    );
    let closed = closed_within(&mut kept, idle + SLACK, &mut seen).map(|_| answered.elapsed());
    assert!(
        closed.is_some_and(|at| at <= idle + SLACK + Duration::from_millis(500)),
        "an idle keep-alive connection: closed {closed:?} after its answer (the idle timeout is {idle:?})"
    );

    let silent = silent.join().expect("silent thread");
    assert!(
        silent.is_some_and(|at| at >= header.mul_f32(0.8)),
        "a silent connection: closed after {silent:?} (the head timeout is {header:?})"
    );
    let slowloris = slowloris.join().expect("slowloris thread");
    assert!(
        slowloris.is_some(),
        "a slowloris connection was still open {:?} after it started",
        header + SLACK
    );
    let (latency, failures, _) = probe.finish();
    assert!(failures.is_empty(), "/healthz failed: {failures:?}");
    latency.check("beside idle and slowloris connections");
}

#[test]
fn connections_over_the_limit_are_refused_and_the_server_recovers() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // 256 open files: the default limit is 192 connections, and 400 connections
    // would otherwise exhaust the descriptors.
    // A head timeout long enough that, on a loaded machine, the served connections
    // cannot time out before the refused ones are counted.
    let header = Duration::from_secs(5);
    let edge = Edge::start(
        "header_read_timeout = \"5s\"\nidle_timeout = \"2s\"",
        Some(256),
    );
    const LIMIT: usize = 192;
    const OPENED: usize = 400;
    let started = Instant::now();
    let mut streams: Vec<TcpStream> = (0..OPENED).map(|_| edge.connect()).collect();
    // The ones over the limit are accepted and closed at once (some with a 503).
    std::thread::sleep(Duration::from_millis(300));
    let mut refused = 0;
    let mut said_503 = 0;
    for stream in &mut streams {
        let mut seen = Vec::new();
        if is_closed(stream, &mut seen) {
            refused += 1;
            said_503 +=
                usize::from(String::from_utf8_lossy(&seen).contains("too_many_connections"));
        }
    }
    let counted = started.elapsed();
    assert!(
        counted < header,
        "counting took {counted:?}, too long to tell refused connections from timed-out ones"
    );
    assert!(
        refused >= OPENED - LIMIT,
        "{refused} of {OPENED} connections were closed at once; the limit is {LIMIT}"
    );
    assert!(
        refused < OPENED,
        "every connection was closed: none was served"
    );

    // The client keeps every socket open; the served ones time out on the server,
    // and /healthz answers again, quickly.
    let deadline = started + header + SLACK;
    let recovered = loop {
        if let Ok(took) = healthz(&edge.address) {
            if took < HEALTHZ_LIMIT {
                break Some(started.elapsed());
            }
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        recovered.is_some(),
        "/healthz did not answer within {:?} while {OPENED} idle sockets were held",
        header + SLACK
    );

    // Released: the server keeps accepting, well past the limit in total.
    drop(streams);
    for _ in 0..LIMIT + 10 {
        let took = healthz(&edge.address).expect("healthz after the connections closed");
        assert!(took < Duration::from_secs(1), "/healthz took {took:?}");
    }
    let log = edge.server().log();
    assert!(
        log.contains("connection limit reached"),
        "no warning in the log:\n{log}"
    );
    eprintln!(
        "{refused} refused at once ({said_503} heard the 503), counted after {counted:?}; recovered after {recovered:?}"
    );
}

/// Sends `GET /healthz` on a keep-alive connection and reads its answer; the
/// connection stays open.
fn healthz_kept_alive(stream: &mut TcpStream) {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send a request");
    let mut seen = Vec::new();
    let started = Instant::now();
    while !String::from_utf8_lossy(&seen).contains(r#"{"status":"ok"}"#) {
        assert!(
            closed_within(stream, Duration::from_millis(100), &mut seen).is_none(),
            "the keep-alive connection closed: {:?}",
            String::from_utf8_lossy(&seen)
        );
        assert!(started.elapsed() < Duration::from_secs(5), "no answer");
    }
}

#[test]
fn idle_keep_alive_connections_cannot_take_every_slot() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // Idle connections would stay a minute: only eviction can free their slots.
    const LIMIT: usize = 16;
    let edge = Edge::start(
        &format!("idle_timeout = \"60s\"\nmax_connections = {LIMIT}"),
        None,
    );
    // Every slot is taken by a keep-alive connection that made one request and
    // waits for its next, as a client refreshing them every 59 s would.
    let mut held: Vec<TcpStream> = (0..LIMIT)
        .map(|_| {
            let mut stream = edge.connect();
            healthz_kept_alive(&mut stream);
            stream
        })
        .collect();

    // A new client is still served, again and again, and so is /healthz.
    let mut took = Vec::new();
    for _ in 0..LIMIT {
        took.push(healthz(&edge.address).expect("healthz with every slot idle"));
        let mut kept = edge.connect();
        healthz_kept_alive(&mut kept);
        held.push(kept);
    }
    Latency { took }.check("with every slot held by an idle connection");

    // The oldest idle connections made room; the newest are still open.
    std::thread::sleep(Duration::from_millis(200));
    let closed: Vec<bool> = held
        .iter_mut()
        .map(|stream| is_closed(stream, &mut Vec::new()))
        .collect();
    let evicted = closed.iter().filter(|&&closed| closed).count();
    assert!(
        closed.first() == Some(&true),
        "the oldest idle connection is still open: {closed:?}"
    );
    assert!(
        closed.last() == Some(&false),
        "the newest connection was closed: {closed:?}"
    );
    assert!(
        evicted >= LIMIT,
        "only {evicted} idle connections were closed for {LIMIT} kept-alive newcomers"
    );
    let log = edge.server().log();
    assert!(
        log.contains("closing the oldest idle connections to make room"),
        "no warning in the log:\n{log}"
    );
    assert!(
        !log.contains("no connection is idle"),
        "a connection was refused:\n{log}"
    );
    eprintln!("{evicted} idle connections evicted for newcomers");
}

/// The log without its terminal colour sequences (`ESC [ ... m`).
fn without_colours(log: &str) -> String {
    let mut plain = String::with_capacity(log.len());
    let mut chars = log.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            chars.by_ref().find(|&c| c == 'm');
        } else {
            plain.push(c);
        }
    }
    plain
}

#[test]
fn a_stop_cuts_what_is_still_open_after_the_drain_deadline() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let drain = Duration::from_secs(1);
    let mut edge = Edge::start("body_read_timeout = \"60s\"\nshutdown_drain = \"1s\"", None);
    // An authenticated request whose body stalls: its handler waits for the body,
    // and a graceful stop would wait for the handler for a minute.
    let mut stalled = edge.connect();
    let head = format!(
        "POST /v1/authorize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"action\":",
        edge.admin
    );
    stalled.write_all(head.as_bytes()).expect("send a head");
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let stopped = edge.server.take().expect("running").stop();
    let took = started.elapsed();
    eprintln!("stopped {took:?} after SIGTERM (drain deadline {drain:?})");
    assert!(
        stopped.status.success(),
        "writ serve exited with {}; log:\n{}",
        stopped.status,
        stopped.log
    );
    assert!(
        took < drain + Duration::from_secs(4),
        "the stop took {took:?}, the drain deadline is {drain:?}"
    );
    let log = without_colours(&stopped.log);
    assert!(
        log.contains("cut the connections still open after the drain deadline cut=1"),
        "the cut is not in the log:\n{log}"
    );
    assert!(
        stopped.log.contains("writ stopped"),
        "the ledger was not closed after the cut:\n{}",
        stopped.log
    );
    let mut seen = Vec::new();
    assert!(
        closed_within(&mut stalled, Duration::from_secs(2), &mut seen).is_some(),
        "the stalled connection is still open"
    );
}

#[test]
fn two_authorization_headers_are_refused() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let edge = Edge::start("", None);
    let admin = &edge.admin;
    let once = format!(
        "GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nConnection: close\r\n\r\n"
    );
    raw_http(&edge.client.base, &once, Vec::new()).expect_status(200);
    let twice = format!(
        "GET /v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nAuthorization: Bearer writ_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\r\nConnection: close\r\n\r\n"
    );
    raw_http(&edge.client.base, &twice, Vec::new()).expect_error(400, "duplicate_authorization");
    // The same on a route with a body, before the body is read.
    let body = json!({"action": "read", "resource": {"type": "WorkItem", "id": "w"}}).to_string();
    let head = format!(
        "POST /v1/authorize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    raw_http(&edge.client.base, &head, body.into_bytes())
        .expect_error(400, "duplicate_authorization");
}

/// `POST /v1/vault/unseal` with a passphrase: (status, code, Retry-After).
fn unseal(edge: &Edge, passphrase: &str) -> (u16, String, Option<String>) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .build()
        .into();
    let mut response = agent
        .post(&format!("{}/v1/vault/unseal", edge.client.base))
        .header("Authorization", &format!("Bearer {}", edge.admin))
        .send_json(json!({"passphrase": passphrase}))
        .expect("unseal call");
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let code = answer
        .pointer("/error/code")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("")
        .to_owned();
    (status, code, retry_after)
}

#[test]
fn wrong_passphrases_are_tried_one_at_a_time_logged_and_recorded() {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    // A 3 s wait after three failures: time enough for the recorded third failure
    // and the next request to pass before it ends, even on a loaded machine.
    let base = Duration::from_secs(3);
    let edge = Edge::start_with_config("[vault]\nunseal_backoff_base = \"3s\"\n", None);
    let right = "correct horse battery staple";
    let admin = edge.admin.clone();
    edge.client
        .post(
            "/v1/vault/sealer",
            Some(&admin),
            &json!({"passphrase": right}),
        )
        .expect_status(200);
    edge.client
        .post("/v1/vault/seal", Some(&admin), &json!({}))
        .expect_status(200);

    // Four wrong passphrases at once: never two Argon2 runs together. Which of them
    // overlap depends on the scheduler: each is either tried (422) or refused
    // because another one runs (429 busy), or, once three have failed, because of
    // the wait (429 backoff).
    const AT_ONCE: usize = 4;
    let barrier = Arc::new(Barrier::new(AT_ONCE));
    let edge = Arc::new(edge);
    let callers: Vec<_> = (0..AT_ONCE)
        .map(|n| {
            let barrier = Arc::clone(&barrier);
            let edge = Arc::clone(&edge);
            std::thread::spawn(move || {
                barrier.wait();
                unseal(&edge, &format!("wrong guess number {n}"))
            })
        })
        .collect();
    let mut answers: Vec<(u16, String)> = callers
        .into_iter()
        .map(|caller| {
            let (status, code, _) = caller.join().expect("caller");
            (status, code)
        })
        .collect();
    answers.sort();
    let busy = (429, "unseal_busy".to_owned());
    let failed = (422, "unseal_failed".to_owned());
    let backoff = (429, "unseal_backoff".to_owned());
    assert!(
        answers
            .iter()
            .all(|answer| [&failed, &busy, &backoff].contains(&answer)),
        "four wrong passphrases at once: {answers:?}"
    );
    let tried = answers.iter().filter(|&answer| *answer == failed).count();
    assert!(tried >= 1, "none of four was tried: {answers:?}");
    assert!(
        answers.contains(&busy),
        "four passphrases sent at once never overlapped: {answers:?}"
    );
    eprintln!("four unseals at once: {answers:?}");

    // More failures up to three in a row, then the next attempt must wait.
    for n in tried..3 {
        let (status, code, _) = unseal(&edge, &format!("another wrong guess {n}"));
        assert_eq!((status, code), failed, "attempt {n}");
    }
    let failures = tried.max(3);
    let (status, code, retry_after) = unseal(&edge, right);
    assert_eq!((status, code.as_str()), (429, "unseal_backoff"));
    let retry_after: u64 = retry_after
        .as_deref()
        .and_then(|secs| secs.parse().ok())
        .expect("a Retry-After in whole seconds");
    // Rounded up from what is left of the wait after the third failure.
    let waits = if failures > 3 { base * 2 } else { base };
    assert!(
        (1..=waits.as_secs()).contains(&retry_after),
        "Retry-After {retry_after} after {failures} failures (wait {waits:?})"
    );
    std::thread::sleep(Duration::from_secs(retry_after) + Duration::from_millis(100));
    let (status, code, _) = unseal(&edge, right);
    assert_eq!(
        (status, code.as_str()),
        (200, ""),
        "the right passphrase, after the wait"
    );

    let mut edge = Arc::into_inner(edge).expect("the callers are done");
    let log = edge.server.take().expect("running").stop_cleanly();
    assert_eq!(
        log.matches("vault unseal attempt failed").count(),
        failures,
        "one warning per failed attempt:\n{log}"
    );
    assert!(
        !log.contains("wrong guess"),
        "a passphrase reached the log:\n{log}"
    );
    // The ledger's key is now sealed by the passphrase: the export needs it.
    let out = edge.tmp.path().join("export");
    let exported = Command::new(WRIT)
        .args(["ledger", "export", "--data"])
        .arg(&edge.data)
        .arg("--out")
        .arg(&out)
        .env("WRIT_VAULT_PASSPHRASE", right)
        .output()
        .expect("run writ ledger export");
    assert!(
        exported.status.success(),
        "writ ledger export: {}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let entries: Vec<String> = export_entries(&out)
        .iter()
        .map(|entry| String::from_utf8_lossy(entry).into_owned())
        .collect();
    let recorded = entries
        .iter()
        .filter(|entry| entry.contains("vault.unseal_failed"))
        .count();
    assert_eq!(
        recorded, failures,
        "one `vault.unseal_failed` entry per failed attempt"
    );
    assert!(
        entries
            .iter()
            .any(|entry| entry.contains("vault.unsealed") && entry.contains("failed_attempts")),
        "the `vault.unsealed` entry counts the failures before it"
    );
    assert!(!entries.iter().any(|entry| entry.contains("wrong guess")));
}
