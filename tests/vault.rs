//! End-to-end tests of the vault: the real `writ serve` on a loopback port and the
//! `writ vault` / `writ secret` commands. A secret written through the API must
//! never appear in the data dir's files, the ledger export, the server's log or
//! any error body; a sealed vault answers 503 to secret calls while decisions go
//! on; a vault sealed by shares starts sealed and opens with the threshold.
#![cfg(test)]

mod common;
#[path = "common/server.rs"]
mod server;

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use common::{export, verifier_key, verify, writ, Run, WRIT};
use serde_json::{json, Value};
use server::{read_work_item, Answer, Kernel, Server};

const RUNNER: &str = r#"Agent::"runner""#;
const BOB: &str = r#"User::"bob""#;
const GINA: &str = r#"User::"gina""#;
const VERA: &str = r#"User::"vera""#;

/// Runs `writ` against `kernel`'s server with `token`, feeding `stdin`.
fn writ_cli(kernel: &Kernel, token: &str, args: &[&str], stdin: &[u8]) -> Run {
    let mut child = Command::new(WRIT)
        .args(args)
        .env("WRIT_URL", &kernel.client.base)
        .env("WRIT_TOKEN", token)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start writ");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin)
        .expect("write stdin");
    let output = child.wait_with_output().expect("wait for writ");
    Run {
        command: format!("writ {}", args.join(" ")),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Replaces the default policies' reveal permit with one that carries no approval
/// obligation (the approval workflow is another issue), and reloads.
fn allow_reveal_without_approval(kernel: &Kernel) {
    let path = kernel.data.join("policies/sensitive.cedar");
    let text = std::fs::read_to_string(&path).expect("read sensitive.cedar");
    let gated = "@obligation(\"approval\")\n@id(\"secret-reveal\")";
    assert!(
        text.contains(gated),
        "the default reveal policy carries the approval obligation"
    );
    std::fs::write(&path, text.replace(gated, "@id(\"secret-reveal\")")).expect("write policy");
    kernel
        .client
        .post("/v1/admin/policies/reload", Some(&kernel.admin), &json!({}))
        .expect_status(200);
}

fn put(kernel: &Kernel, token: &str, name: &str, value: &str) -> Answer {
    kernel.client.send(
        "PUT",
        &format!("/v1/secrets/{}", server::encode(name)),
        Some(token),
        &json!({"value": value}),
    )
}

fn reveal(kernel: &Kernel, token: &str, name: &str, body: &Value) -> Answer {
    kernel.client.post(
        &format!("/v1/secrets/{}/reveal", server::encode(name)),
        Some(token),
        body,
    )
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).expect("read dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Fails if any file under `dir` holds any of `needles`.
#[track_caller]
fn assert_nowhere_in(dir: &Path, needles: &[&[u8]]) {
    let files = files_under(dir);
    assert!(!files.is_empty(), "{} holds files", dir.display());
    for file in files {
        let bytes = std::fs::read(&file).expect("read file");
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == *needle),
                "`{}` holds a secret value ({} bytes)",
                file.display(),
                needle.len()
            );
        }
    }
}

#[test]
fn a_secret_round_trips_and_leaks_nowhere() {
    let mut kernel = Kernel::new();
    allow_reveal_without_approval(&kernel);
    let bob = kernel.key_for(BOB, "acme");
    let runner = kernel.key_for(RUNNER, "acme");
    let gina = kernel.key_for(GINA, "globex");
    let vera = kernel.key_for(VERA, "acme");
    let canary_one = format!("canary-one-{:016x}", rand_u64());
    let canary_two = format!("canary-two-{:016x}", rand_u64());
    let mut bodies: Vec<String> = Vec::new();

    let first = put(&kernel, &bob, "prod/db", &canary_one).expect_status(201);
    assert_eq!(first.json["version"], 1);
    assert_eq!(first.str("reference"), "writ://acme/prod/db#1");
    let second = put(&kernel, &bob, "prod/db", &canary_two).expect_status(201);
    assert_eq!(second.json["version"], 2);
    bodies.extend([first.text, second.text]);

    // The newest version by default, an older one on request.
    let latest = reveal(&kernel, &runner, "prod/db", &json!({})).expect_status(200);
    assert_eq!(latest.str("value"), canary_two);
    assert_eq!(latest.json["version"], 2);
    assert_eq!(
        STANDARD.decode(latest.str("value_base64")).unwrap(),
        canary_two.as_bytes()
    );
    let lease = latest.json["lease"]["id"].as_str().unwrap().to_owned();
    let older = reveal(&kernel, &runner, "prod/db", &json!({"version": 1})).expect_status(200);
    assert_eq!(older.str("value"), canary_one);

    // The reveal's ledger entry was durable before the answer: its receipt verifies
    // against the entry read back from the export below.
    let decision_id = latest.decision_id();

    // Listing shows names and versions, never values.
    let listing = kernel
        .client
        .get("/v1/secrets", Some(&runner))
        .expect_status(200);
    assert_eq!(listing.json["secrets"][0]["name"], "prod/db");
    assert_eq!(
        listing.json["secrets"][0]["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    bodies.push(listing.text);

    // Refusals: a viewer may not put, another workspace sees nothing, identity in
    // the body is refused, a bad name and a huge value are client errors.
    bodies.push(
        put(&kernel, &vera, "x", "v")
            .expect_error(403, "forbidden")
            .text,
    );
    bodies.push(
        reveal(&kernel, &gina, "prod/db", &json!({}))
            .expect_error(404, "not_found")
            .text,
    );
    bodies.push(
        kernel
            .client
            .send(
                "PUT",
                "/v1/secrets/y",
                Some(&bob),
                &json!({"value": "v", "workspace": "globex"}),
            )
            .expect_error(400, "identity_in_body")
            .text,
    );
    bodies.push(
        put(&kernel, &bob, "../etc", "v")
            .expect_error(422, "bad_secret_name")
            .text,
    );
    bodies.push(
        put(&kernel, &bob, "big", &"x".repeat(70_000))
            .expect_error(413, "value_too_large")
            .text,
    );
    bodies.push(
        reveal(&kernel, &kernel.admin, "prod/db", &json!({}))
            .expect_error(403, "forbidden")
            .text,
    );
    bodies.push(
        put(&kernel, &bob, "prod/db", &canary_one)
            .expect_status(201)
            .text,
    );
    for bad in ["0", "01", "+1", "-1", "4294967296", "x"] {
        kernel
            .client
            .delete(&format!("/v1/secrets/prod%2Fdb/versions/{bad}"), Some(&bob))
            .expect_error(422, "bad_version");
    }
    bodies.push(
        reveal(&kernel, &runner, "prod/db", &json!({"version": 0}))
            .expect_error(422, "bad_version")
            .text,
    );

    // A workspace admin cannot plant the entity the vault builds for a secret (it
    // would shadow it and block every call on it).
    let planted = json!({
        "uid": {"type": "Secret", "id": "acme/prod/db"},
        "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}},
        "parents": [],
    });
    kernel
        .client
        .send("PUT", "/v1/entities", Some(&bob), &planted)
        .expect_error(403, "forbidden");
    reveal(&kernel, &runner, "prod/db", &json!({})).expect_status(200);

    // Leases: listed for the operator, revoked with a record.
    let leases = kernel
        .client
        .get("/v1/vault/leases", Some(&kernel.admin))
        .expect_status(200);
    assert!(leases.text.contains(&lease), "{}", leases.text);
    kernel
        .client
        .post(
            &format!("/v1/vault/leases/{lease}/revoke"),
            Some(&kernel.admin),
            &json!({}),
        )
        .expect_status(200);
    let leases = kernel
        .client
        .get("/v1/vault/leases", Some(&kernel.admin))
        .expect_status(200);
    assert!(
        !leases.text.contains(&lease),
        "a revoked lease is not live: {}",
        leases.text
    );
    kernel
        .client
        .post(
            &format!("/v1/vault/leases/{lease}/revoke"),
            Some(&kernel.admin),
            &json!({}),
        )
        .expect_error(404, "not_found");

    // Crypto-shredding one version.
    kernel
        .client
        .delete("/v1/secrets/prod%2Fdb/versions/1", Some(&bob))
        .expect_status(200);
    bodies.push(
        reveal(&kernel, &runner, "prod/db", &json!({"version": 1}))
            .expect_error(410, "secret_destroyed")
            .text,
    );
    kernel
        .client
        .delete("/v1/secrets/prod%2Fdb/versions/1", Some(&bob))
        .expect_error(410, "secret_destroyed");

    for body in &bodies {
        assert!(
            !body.contains(&canary_one) && !body.contains(&canary_two),
            "a body echoes a value: {body}"
        );
    }

    // After a clean stop: no value in the data dir, the export or the log.
    let log = kernel.stop();
    let needles: Vec<Vec<u8>> = [&canary_one, &canary_two]
        .iter()
        .flat_map(|c| {
            [
                c.as_bytes().to_vec(),
                STANDARD.encode(c.as_bytes()).into_bytes(),
            ]
        })
        .collect();
    let needles: Vec<&[u8]> = needles.iter().map(Vec::as_slice).collect();
    for needle in &needles {
        assert!(
            !log.as_bytes().windows(needle.len()).any(|w| w == *needle),
            "the log holds a value"
        );
    }
    assert_nowhere_in(&kernel.data, &needles);
    let export_dir = kernel.path("export");
    export(&kernel.data, &export_dir);
    verify(&export_dir, &verifier_key(&kernel.data)).ok();
    assert_nowhere_in(&export_dir, &needles);
    let entries = common::export_entries(&export_dir);
    let entry: Value = serde_json::from_slice(&entries[decision_id as usize]).unwrap();
    assert_eq!(entry["action"], "secret.reveal");
    assert_eq!(entry["released"], true);
    assert_eq!(entry["version"], 2);
    assert_eq!(entry["lease"], lease.as_str());
    let kinds: Vec<String> = entries
        .iter()
        .map(|e| {
            serde_json::from_slice::<Value>(e).unwrap()["kind"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect();
    for kind in [
        "vault.initialised",
        "vault.unsealed",
        "secret.destroyed",
        "lease.revoked",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "the ledger has a `{kind}` entry"
        );
    }
}

fn rand_u64() -> u64 {
    let mut bytes = [0u8; 8];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .expect("random bytes");
    u64::from_le_bytes(bytes)
}

#[test]
fn the_default_policies_hold_a_reveal_for_approval() {
    let kernel = Kernel::new();
    let bob = kernel.key_for(BOB, "acme");
    let runner = kernel.key_for(RUNNER, "acme");
    put(&kernel, &bob, "api-token", "value-held").expect_status(201);
    let held =
        reveal(&kernel, &runner, "api-token", &json!({})).expect_error(403, "approval_required");
    assert!(!held.text.contains("value-held"));
}

#[test]
fn a_sealed_vault_refuses_secrets_and_keeps_deciding() {
    let kernel = Kernel::new();
    allow_reveal_without_approval(&kernel);
    let bob = kernel.key_for(BOB, "acme");
    let runner = kernel.key_for(RUNNER, "acme");
    put(&kernel, &bob, "db", "before-seal").expect_status(201);

    // Only an operator seals.
    kernel
        .client
        .post("/v1/vault/seal", Some(&bob), &json!({}))
        .expect_error(403, "forbidden");
    kernel
        .client
        .post("/v1/vault/seal", Some(&kernel.admin), &json!({}))
        .expect_status(200);
    let status = kernel
        .client
        .get("/v1/vault/status", None)
        .expect_status(200);
    assert_eq!(status.json["sealed"], true);
    assert!(
        status.json["kek_versions"].is_null(),
        "no key details while sealed"
    );

    put(&kernel, &bob, "db", "while-sealed").expect_error(503, "vault_sealed");
    reveal(&kernel, &runner, "db", &json!({})).expect_error(503, "vault_sealed");
    kernel
        .client
        .get("/v1/secrets", Some(&runner))
        .expect_error(503, "vault_sealed");
    kernel
        .client
        .delete("/v1/secrets/db/versions/1", Some(&bob))
        .expect_error(503, "vault_sealed");
    kernel
        .authorize(&runner, &read_work_item("w1"))
        .expect_status(200)
        .expect_decision("allow");
    kernel
        .client
        .post("/v1/vault/rotate", Some(&kernel.admin), &json!({}))
        .expect_error(503, "vault_sealed");

    // Unseal with the server's key file: only an operator; then secrets work again.
    kernel
        .client
        .post("/v1/vault/unseal", Some(&bob), &json!({"key_file": true}))
        .expect_error(403, "forbidden");
    kernel
        .client
        .post(
            "/v1/vault/unseal",
            Some(&kernel.admin),
            &json!({"key_file": true}),
        )
        .expect_status(200);
    assert_eq!(
        reveal(&kernel, &runner, "db", &json!({}))
            .expect_status(200)
            .str("value"),
        "before-seal"
    );
}

#[test]
fn rotation_rewrap_and_retirement_over_the_api() {
    let kernel = Kernel::new();
    allow_reveal_without_approval(&kernel);
    let bob = kernel.key_for(BOB, "acme");
    let runner = kernel.key_for(RUNNER, "acme");
    for i in 0..20 {
        put(&kernel, &bob, &format!("s{i}"), &format!("value {i}")).expect_status(201);
    }
    let admin = Some(kernel.admin.as_str());
    let rotated = kernel
        .client
        .post("/v1/vault/rotate", admin, &json!({}))
        .expect_status(200);
    assert_eq!(rotated.json["primary_kek_version"], 2);
    // Version 1 still wraps 20 data keys: retiring it is refused and changes nothing.
    let refused = kernel
        .client
        .post("/v1/vault/retire", admin, &json!({"min_version": 2}))
        .expect_error(409, "kek_in_use");
    let message = refused.json["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("version 1 still wraps 20"),
        "{}",
        refused.text
    );
    kernel
        .client
        .post("/v1/vault/rewrap", admin, &json!({}))
        .expect_status(202);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = kernel
            .client
            .get("/v1/vault/status", None)
            .expect_status(200);
        if status.json["rewrap"]["running"] == false
            && status.json["rewrap"]["finished_unix_ms"].is_number()
        {
            assert_eq!(status.json["rewrap"]["rewrapped"], 20, "{}", status.text);
            assert_eq!(
                status.json["rewrap"]["failed"], 0,
                "a count, never names: {}",
                status.text
            );
            assert_eq!(
                status.json["rewrap"]["stopped_early"], false,
                "{}",
                status.text
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rewrap did not finish: {}",
            status.text
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    kernel
        .client
        .post("/v1/vault/retire", admin, &json!({"min_version": 2}))
        .expect_status(200);
    kernel
        .client
        .post("/v1/vault/retire", admin, &json!({"min_version": 3}))
        .expect_error(409, "bad_retirement");
    for i in [0, 7, 19] {
        let answer = reveal(&kernel, &runner, &format!("s{i}"), &json!({})).expect_status(200);
        assert_eq!(answer.str("value"), format!("value {i}"));
    }
}

#[test]
fn a_vault_sealed_by_shares_starts_sealed_and_opens_with_the_threshold() {
    let mut kernel = Kernel::new();
    allow_reveal_without_approval(&kernel);
    let bob = kernel.key_for(BOB, "acme");
    let runner = kernel.key_for(RUNNER, "acme");
    put(&kernel, &bob, "db", "kept across restarts").expect_status(201);

    let old_key_file = std::fs::read(kernel.data.join("vault.key")).expect("the default key file");
    let init = writ_cli(
        &kernel,
        &kernel.admin,
        &["vault", "init", "--shares", "3", "--threshold", "2"],
        b"",
    )
    .ok();
    let shares: Vec<&str> = init.stdout.lines().collect();
    assert_eq!(shares.len(), 3, "{init}");
    assert!(shares.iter().all(|s| s.starts_with("writ-share-v1:")));
    assert!(
        !kernel.data.join("vault.key").exists(),
        "the key file no longer opens anything and is gone"
    );

    kernel.stop();
    // A stale key file left behind does not stop the start: it is ignored.
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(kernel.data.join("vault.key"))
            .expect("recreate vault.key");
        file.write_all(&old_key_file).expect("write vault.key");
    }
    kernel.restart();
    // The log arrives on its own pipe: wait for the line a little.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !kernel.server().log().contains("ignoring a key file") {
        assert!(
            std::time::Instant::now() < deadline,
            "no warning about the stale key file:\n{}",
            kernel.server().log()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let ready = kernel.client.get("/readyz", None);
    assert_eq!(ready.status, 503, "{}", ready.text);
    kernel
        .authorize(&runner, &read_work_item("w1"))
        .expect_error(503, "vault_sealed");
    assert_eq!(
        kernel.client.get("/v1/vault/status", None).json["sealed"],
        true
    );

    // Offline export needs the ledger's key, which is sealed by shares.
    writ(&[
        &"ledger",
        &"export",
        &"--data",
        &kernel.data,
        &"--out",
        &kernel.path("x"),
    ])
    .fails_with("shares");

    writ_cli(&kernel, &runner, &["vault", "unseal"], shares[0].as_bytes())
        .fails_with("only an operator");
    let one = writ_cli(
        &kernel,
        &kernel.admin,
        &["vault", "unseal"],
        shares[0].as_bytes(),
    )
    .ok();
    assert_eq!(one.stdout.trim(), "1/2");
    writ_cli(
        &kernel,
        &kernel.admin,
        &["vault", "unseal"],
        shares[0].as_bytes(),
    )
    .fails_with("already given");
    writ_cli(
        &kernel,
        &kernel.admin,
        &["vault", "unseal"],
        b"writ-share-v1:nonsense",
    )
    .fails_with("bad_share");
    let two = writ_cli(
        &kernel,
        &kernel.admin,
        &["vault", "unseal"],
        shares[2].as_bytes(),
    )
    .ok();
    assert_eq!(two.stdout.trim(), "unsealed");

    kernel
        .authorize(&runner, &read_work_item("w1"))
        .expect_status(200)
        .expect_decision("allow");
    let revealed = writ_cli(&kernel, &runner, &["secret", "reveal", "db"], b"").ok();
    assert_eq!(revealed.stdout, "kept across restarts");
    assert!(revealed.stderr.contains("lease lease_"), "{revealed}");
    let put = writ_cli(
        &kernel,
        &bob,
        &["secret", "put", "from-stdin"],
        b"piped value",
    )
    .ok();
    assert!(put.stdout.contains("\"version\": 1"), "{put}");
    assert_eq!(
        writ_cli(&kernel, &runner, &["secret", "reveal", "from-stdin"], b"")
            .ok()
            .stdout,
        "piped value"
    );
}

#[test]
fn a_vault_sealed_by_a_passphrase_opens_from_the_environment_at_start() {
    let mut kernel = Kernel::new();
    let runner = kernel.key_for(RUNNER, "acme");
    writ_cli(
        &kernel,
        &kernel.admin,
        &["vault", "init", "--passphrase-stdin"],
        b"short\n",
    )
    .fails_with("weak_passphrase");
    writ_cli(
        &kernel,
        &kernel.admin,
        &["vault", "init", "--passphrase-stdin"],
        b"correct horse battery staple\n",
    )
    .ok();
    assert!(!kernel.data.join("vault.key").exists());
    kernel.stop();

    // A wrong passphrase: the server refuses to start and says why.
    let wrong = Command::new(WRIT)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&kernel.data)
        .env("WRIT_VAULT_PASSPHRASE", "not the passphrase")
        .env_remove("WRIT_VAULT_KEY_FILE")
        .output()
        .expect("run writ serve");
    assert_eq!(wrong.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("wrong passphrase"), "{stderr}");
    assert!(
        !stderr.contains("not the passphrase"),
        "the passphrase is never printed: {stderr}"
    );

    let mut command = Command::new(WRIT);
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(&kernel.data);
    let server = Server::spawn_with_env(
        command,
        &[("WRIT_VAULT_PASSPHRASE", "correct horse battery staple")],
    );
    let client = server::Client::new(&server.base);
    assert_eq!(client.get("/v1/vault/status", None).json["sealed"], false);
    client
        .authorize(&runner, &read_work_item("w1"))
        .expect_status(200)
        .expect_decision("allow");
    let log = server.stop_cleanly();
    assert!(
        !log.contains("correct horse"),
        "the passphrase is never logged"
    );
}
