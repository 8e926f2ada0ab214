//! Running `writ serve` for the end-to-end tests of the sidecar: a guard that stops
//! the server when dropped, a small blocking HTTP client, and a kernel fixture (a
//! fresh data dir, a running server, the entities of `tests/fixtures/sidecar`).
//!
//! Include it with `#[path = "common/server.rs"] mod server;` next to `mod common;`.
#![allow(
    dead_code,
    reason = "each test file uses a different subset of these helpers"
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

use crate::common::{writ, WRIT};

/// The entities every kernel fixture starts with (besides the seed entities).
pub(crate) const FIXTURE_ENTITIES: &str = include_str!("../fixtures/sidecar/entities.json");

/// How long a server may take to say it listens, or to stop after SIGTERM.
const START_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Environment variables `writ serve` reads; removed so the caller's shell cannot
/// change what a test runs.
const WRIT_ENV: [&str; 10] = [
    "WRIT_VAULT_PASSPHRASE",
    "WRIT_VAULT_KEY_FILE",
    "WRIT_DATA",
    "WRIT_LISTEN",
    "WRIT_CONFIG",
    "WRIT_POLICY_DIR",
    "WRIT_SCHEMA_DIR",
    "WRIT_LOG_FORMAT",
    "WRIT_URL",
    "WRIT_TOKEN",
];

/// A running `writ serve`. Dropping it sends SIGTERM (then SIGKILL if it hangs)
/// and reaps it, so a failing test leaves no server behind.
#[derive(Debug)]
pub(crate) struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub(crate) base: String,
    /// Everything the server wrote to standard error so far (its log).
    log: Arc<Mutex<String>>,
    stopped: bool,
}

/// How a server ended.
#[derive(Debug)]
pub(crate) struct Stopped {
    pub(crate) status: ExitStatus,
    pub(crate) log: String,
}

impl Server {
    /// `writ serve --data DATA --listen 127.0.0.1:0`.
    pub(crate) fn start(data: &Path) -> Self {
        let mut command = Command::new(WRIT);
        command
            .arg("serve")
            .arg("--data")
            .arg(data)
            .args(["--listen", "127.0.0.1:0"]);
        Self::spawn(command)
    }

    /// Starts `command` (which must end up running `writ serve`, for instance
    /// through `sh -c '... exec writ serve ...'`) and waits until it prints the
    /// address it listens on.
    pub(crate) fn spawn(command: Command) -> Self {
        Self::spawn_with_env(command, &[])
    }

    /// `spawn`, with these of writ's environment variables set (all others removed).
    pub(crate) fn spawn_with_env(mut command: Command, env: &[(&str, &str)]) -> Self {
        for name in WRIT_ENV {
            command.env_remove(name);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start writ serve");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        // Both pipes are drained for the server's whole life: a full pipe would
        // block its logging and so its requests.
        let log_writer = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while reader
                .read_until(b'\n', &mut line)
                .is_ok_and(|read| read > 0)
            {
                log_writer
                    .lock()
                    .expect("log lock")
                    .push_str(&String::from_utf8_lossy(&line));
                line.clear();
            }
        });
        let (address_sender, address) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("listening on ") {
                    let _ = address_sender.send(address.trim().to_owned());
                    break;
                }
            }
            for _ in lines {}
        });
        let mut server = Self {
            child,
            base: String::new(),
            log,
            stopped: false,
        };
        match address.recv_timeout(START_TIMEOUT) {
            Ok(address) => server.base = format!("http://{address}"),
            Err(_) => {
                let status = server.child.try_wait().expect("poll writ serve");
                panic!(
                    "writ serve did not say where it listens (exit: {status:?}); log:\n{}",
                    server.log()
                );
            }
        }
        server
    }

    /// The server's process id.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server has logged so far.
    pub(crate) fn log(&self) -> String {
        self.log.lock().expect("log lock").clone()
    }

    /// Sends a signal (`TERM`, `HUP`, ...) with kill(1).
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} {} failed", self.pid());
    }

    /// Sends SIGTERM and waits for the server to exit (it must, within 30 s).
    pub(crate) fn stop(mut self) -> Stopped {
        self.signal("TERM");
        let status = self.wait(STOP_TIMEOUT).unwrap_or_else(|| {
            let _ = self.child.kill();
            let _ = self.child.wait();
            panic!(
                "writ serve did not stop within {STOP_TIMEOUT:?} of SIGTERM; log:\n{}",
                self.log()
            )
        });
        self.stopped = true;
        // The log thread ends at end of file, shortly after the exit.
        std::thread::sleep(Duration::from_millis(50));
        Stopped {
            status,
            log: self.log(),
        }
    }

    /// Stops the server and asserts it exited cleanly, without a panic.
    #[track_caller]
    pub(crate) fn stop_cleanly(self) -> String {
        let stopped = self.stop();
        assert!(
            stopped.status.success(),
            "writ serve exited with {}; log:\n{}",
            stopped.status,
            stopped.log
        );
        assert!(
            !stopped.log.contains("panicked"),
            "writ serve panicked:\n{}",
            stopped.log
        );
        stopped.log
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll writ serve") {
                return Some(status);
            }
            if started.elapsed() > limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.pid().to_string())
                .status();
            if self.wait(Duration::from_secs(10)).is_none() {
                let _ = self.child.kill();
            }
        }
        let _ = self.child.wait();
    }
}

/// One HTTP answer: the status and the body, parsed as JSON when it is JSON.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) text: String,
    pub(crate) json: Value,
}

impl Answer {
    fn new(status: u16, text: String) -> Self {
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self { status, text, json }
    }

    /// The `error.code` of an error answer.
    pub(crate) fn code(&self) -> &str {
        self.json
            .pointer("/error/code")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// A string field of the body (empty when absent).
    pub(crate) fn str(&self, field: &str) -> &str {
        self.json.get(field).and_then(Value::as_str).unwrap_or("")
    }

    /// Asserts the status; returns the answer for further checks.
    #[track_caller]
    pub(crate) fn expect_status(self, status: u16) -> Self {
        assert_eq!(self.status, status, "unexpected answer: {}", self.text);
        self
    }

    /// Asserts an error answer with this status and code.
    #[track_caller]
    pub(crate) fn expect_error(self, status: u16, code: &str) -> Self {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "unexpected answer: {}",
            self.text
        );
        self
    }

    /// Asserts a 200 decision answer with this decision; returns it.
    #[track_caller]
    pub(crate) fn expect_decision(self, decision: &str) -> Self {
        assert_eq!(self.status, 200, "not a decision: {}", self.text);
        assert_eq!(self.str("decision"), decision, "{}", self.text);
        self
    }

    /// The `reasons` of a decision.
    pub(crate) fn reasons(&self) -> Vec<String> {
        strings(self.json.get("reasons"))
    }

    /// The `obligations` of a decision.
    pub(crate) fn obligations(&self) -> Vec<String> {
        strings(self.json.get("obligations"))
    }

    /// The `decision_id` of a decision, as a number.
    #[track_caller]
    pub(crate) fn decision_id(&self) -> u64 {
        self.str("decision_id")
            .parse()
            .unwrap_or_else(|_| panic!("no decision_id in {}", self.text))
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// A blocking HTTP client for one server.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
    pub(crate) base: String,
}

impl Client {
    pub(crate) fn new(base: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Self {
            agent,
            base: base.to_owned(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET or DELETE (no body).
    pub(crate) fn call(&self, method: &str, path: &str, token: Option<&str>) -> Answer {
        let url = self.url(path);
        let mut request = match method {
            "GET" => self.agent.get(&url),
            "DELETE" => self.agent.delete(&url),
            other => panic!("{other} needs a body; use `send`"),
        };
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        finish(request.call(), method, &url)
    }

    pub(crate) fn get(&self, path: &str, token: Option<&str>) -> Answer {
        self.call("GET", path, token)
    }

    pub(crate) fn delete(&self, path: &str, token: Option<&str>) -> Answer {
        self.call("DELETE", path, token)
    }

    /// POST or PUT of raw bytes with a content type.
    pub(crate) fn send_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> Answer {
        let url = self.url(path);
        let mut request = match method {
            "POST" => self.agent.post(&url),
            "PUT" => self.agent.put(&url),
            other => panic!("{other} takes no body; use `call`"),
        };
        if let Some(token) = token {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        finish(request.content_type(content_type).send(body), method, &url)
    }

    /// POST or PUT of a JSON body.
    pub(crate) fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> Answer {
        let bytes = serde_json::to_vec(body).expect("encode body");
        self.send_raw(method, path, token, "application/json", &bytes)
    }

    pub(crate) fn post(&self, path: &str, token: Option<&str>, body: &Value) -> Answer {
        self.send("POST", path, token, body)
    }

    /// `POST /v1/authorize`.
    pub(crate) fn authorize(&self, token: &str, body: &Value) -> Answer {
        self.post("/v1/authorize", Some(token), body)
    }
}

fn finish(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    method: &str,
    url: &str,
) -> Answer {
    let mut response = response.unwrap_or_else(|error| panic!("{method} {url}: {error}"));
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .unwrap_or_else(|error| panic!("{method} {url}: reading the answer: {error}"));
    Answer::new(status, text)
}

/// Sends a hand-made HTTP/1.1 request over a fresh connection and reads the answer
/// (for bodies a polite client would not send: too large, or chunked). The request
/// is written from another thread, so a server that answers before reading the
/// whole body (413) is still heard; write errors after that are expected.
pub(crate) fn raw_http(base: &str, head: &str, body: Vec<u8>) -> Answer {
    let address = base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    let mut writer = stream.try_clone().expect("clone stream");
    let head = head.to_owned();
    let sender = std::thread::spawn(move || {
        let _ = writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(&body));
    });
    let mut bytes = Vec::new();
    // A reset after the answer is fine: what was read before it is kept.
    let _ = stream.read_to_end(&mut bytes);
    let _ = sender.join();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status in {:?}", truncate(&text)));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Answer::new(status, body)
}

fn truncate(text: &str) -> String {
    text.chars().take(2000).collect()
}

/// A kernel of its own for one test: a temp dir, `writ init`'s data dir and
/// operator key, a running server, and the fixture entities stored.
#[derive(Debug)]
pub(crate) struct Kernel {
    pub(crate) tmp: TempDir,
    pub(crate) data: PathBuf,
    /// The bootstrap operator API key.
    pub(crate) admin: String,
    pub(crate) server: Option<Server>,
    pub(crate) client: Client,
}

impl Kernel {
    /// `writ init`, `writ serve`, then every fixture entity stored by the operator.
    pub(crate) fn new() -> Self {
        let kernel = Self::without_entities();
        for entity in fixture_entities() {
            kernel.put_entity(&entity);
        }
        kernel
    }

    /// `writ init` and `writ serve` only.
    pub(crate) fn without_entities() -> Self {
        let tmp = tempfile::tempdir().expect("temp dir");
        let data = tmp.path().join("data");
        let key_file = tmp.path().join("admin.key");
        writ(&[&"init", &"--data", &data, &"--admin-key-out", &key_file]).ok();
        let admin = std::fs::read_to_string(&key_file)
            .expect("read admin key")
            .trim()
            .to_owned();
        assert!(admin.starts_with("writ_"), "an operator key: {admin:?}");
        let server = Server::start(&data);
        let client = Client::new(&server.base);
        Self {
            tmp,
            data,
            admin,
            server: Some(server),
            client,
        }
    }

    /// The running server.
    pub(crate) fn server(&self) -> &Server {
        self.server.as_ref().expect("the server is running")
    }

    /// Stops the server (cleanly) and returns its log.
    pub(crate) fn stop(&mut self) -> String {
        self.server.take().expect("a running server").stop_cleanly()
    }

    /// Starts the server again on the same data dir.
    pub(crate) fn restart(&mut self) {
        assert!(self.server.is_none(), "stop the server first");
        let server = Server::start(&self.data);
        self.client = Client::new(&server.base);
        self.server = Some(server);
    }

    /// A path in this kernel's temp dir.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `PUT /v1/entities` by the operator; must succeed.
    #[track_caller]
    pub(crate) fn put_entity(&self, entity: &Value) {
        let answer = self
            .client
            .send("PUT", "/v1/entities", Some(&self.admin), entity);
        assert_eq!(answer.status, 200, "PUT {entity}: {}", answer.text);
    }

    /// `GET /v1/entities/{uid}` by the operator.
    pub(crate) fn get_entity(&self, uid: &str) -> Answer {
        self.client
            .get(&format!("/v1/entities/{}", encode(uid)), Some(&self.admin))
    }

    /// A new API key for `principal` (e.g. `Agent::"runner"`) in `workspace`.
    #[track_caller]
    pub(crate) fn key_for(&self, principal: &str, workspace: &str) -> String {
        self.key_record(principal, workspace).1
    }

    /// A new API key: (id, key).
    #[track_caller]
    pub(crate) fn key_record(&self, principal: &str, workspace: &str) -> (String, String) {
        let answer = self
            .client
            .post(
                "/v1/apikeys",
                Some(&self.admin),
                &json!({"principal": principal, "workspace": workspace, "label": null}),
            )
            .expect_status(201);
        assert_eq!(answer.str("principal"), principal, "{}", answer.text);
        assert_eq!(answer.str("workspace"), workspace, "{}", answer.text);
        (answer.str("id").to_owned(), answer.str("key").to_owned())
    }

    /// `POST /v1/authorize`.
    pub(crate) fn authorize(&self, token: &str, body: &Value) -> Answer {
        self.client.authorize(token, body)
    }
}

/// The fixture entities, one JSON value each.
pub(crate) fn fixture_entities() -> Vec<Value> {
    serde_json::from_str(FIXTURE_ENTITIES).expect("fixture entities are JSON")
}

/// The fixture entity with this type and id, to change and PUT again.
#[track_caller]
pub(crate) fn fixture_entity(entity_type: &str, id: &str) -> Value {
    fixture_entities()
        .into_iter()
        .find(|entity| {
            entity.pointer("/uid/type").and_then(Value::as_str) == Some(entity_type)
                && entity.pointer("/uid/id").and_then(Value::as_str) == Some(id)
        })
        .unwrap_or_else(|| panic!("no fixture entity {entity_type}::{id:?}"))
}

/// Percent-encodes a path segment (an entity uid such as `KillSwitch::"global"`).
pub(crate) fn encode(segment: &str) -> String {
    let mut out = String::new();
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// A read of a work item: `{"action": "read", "resource": WorkItem::id}`.
pub(crate) fn read_work_item(id: &str) -> Value {
    json!({"action": "read", "resource": {"type": "WorkItem", "id": id}, "context": {}})
}
