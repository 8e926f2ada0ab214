//! End-to-end tests of the sidecar: the real `writ serve` on a loopback port, driven
//! over HTTP as an agent, a user, an operator, a confused client and an attacker
//! would drive it. Each test has its own data dir and server.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;
#[path = "common/server.rs"]
mod server;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{export, export_entries, export_size, verifier_key, verify, writ, Run};
use serde_json::{json, Value};
use server::{encode, fixture_entity, raw_http, read_work_item, Answer, Kernel};

const RUNNER: &str = r#"Agent::"runner""#;
const HELPER: &str = r#"Agent::"helper""#;
const GADGET: &str = r#"Agent::"gadget""#;
const VERA: &str = r#"User::"vera""#;
const RITA: &str = r#"User::"rita""#;
const RAVI: &str = r#"User::"ravi""#;
const BOB: &str = r#"User::"bob""#;

/// The policy fixtures (bad and good policy files to drop into a data dir).
const BROKEN_SYNTAX: &str = include_str!("fixtures/sidecar/broken_syntax.cedar");
const BROKEN_SCHEMA: &str = include_str!("fixtures/sidecar/broken_schema.cedar");
const EXTRA_FORBID: &str = include_str!("fixtures/sidecar/extra_forbid.cedar");

fn request(action: &str, resource_type: &str, id: &str) -> Value {
    json!({"action": action, "resource": {"type": resource_type, "id": id}, "context": {}})
}

fn egress(url: &str) -> Value {
    json!({"action": "egress", "url": url})
}

fn file(action: &str, path: &str) -> Value {
    json!({"action": action, "path": path})
}

/// `body` with one more top-level field.
fn with(mut body: Value, field: &str, value: Value) -> Value {
    body.as_object_mut()
        .expect("a JSON object")
        .insert(field.to_owned(), value);
    body
}

/// Checks that a decision answer's `entry` is the ledger entry of exactly this
/// decision: its index, its principal (from the token), what was decided and why.
#[track_caller]
fn check_entry(answer: &Answer, actor: &str, workspace: &str) {
    let entry: Value = serde_json::from_str(answer.str("entry"))
        .unwrap_or_else(|_| panic!("no entry in {}", answer.text));
    assert_eq!(entry["kind"], "decision", "{entry}");
    assert_eq!(entry["index"], answer.decision_id(), "{entry}");
    assert_eq!(entry["actor"], actor, "{entry}");
    assert_eq!(entry["workspace"], workspace, "{entry}");
    assert_eq!(entry["decision"], answer.json["decision"], "{entry}");
    assert_eq!(entry["reasons"], answer.json["reasons"], "{entry}");
    assert_eq!(entry["obligations"], answer.json["obligations"], "{entry}");
    assert_eq!(entry["policy_set"], answer.json["policy_set"], "{entry}");
    let receipt = answer.str("receipt");
    assert!(
        receipt.starts_with(&format!(
            "c2sp.org/tlog-proof@v1\nindex {}\n",
            answer.decision_id()
        )),
        "receipt for another index: {receipt}"
    );
}

/// Asks, checks the decision, its reasons and obligations, and its ledger entry.
#[track_caller]
fn decide(
    kernel: &Kernel,
    (token, actor): (&str, &str),
    body: &Value,
    decision: &str,
    reasons: &[&str],
    obligations: &[&str],
) -> Answer {
    let answer = kernel.authorize(token, body);
    assert_eq!(
        (answer.status, answer.str("decision")),
        (200, decision),
        "{actor} asking {body}: {}",
        answer.text
    );
    assert_eq!(answer.reasons(), reasons, "{actor} asking {body}");
    assert_eq!(answer.obligations(), obligations, "{actor} asking {body}");
    check_entry(&answer, actor, "acme");
    answer
}

/// Asserts an error answer, and that it is a client error.
#[track_caller]
fn refused(answer: Answer, status: u16, code: &str) -> Answer {
    assert!(answer.status < 500, "a server error: {}", answer.text);
    answer.expect_error(status, code)
}

#[test]
fn default_policies_allow_and_deny() {
    let kernel = Kernel::new();
    let vera = kernel.key_for(VERA, "acme");
    let rita = kernel.key_for(RITA, "acme");
    let ravi = kernel.key_for(RAVI, "acme");
    let bob = kernel.key_for(BOB, "acme");
    let runner = kernel.key_for(RUNNER, "acme");
    let (vera, rita, ravi, bob, runner) = (
        (vera.as_str(), VERA),
        (rita.as_str(), RITA),
        (ravi.as_str(), RAVI),
        (bob.as_str(), BOB),
        (runner.as_str(), RUNNER),
    );

    // Roles: a viewer reads but does not write.
    decide(
        &kernel,
        vera,
        &read_work_item("w1"),
        "allow",
        &["workitem-read"],
        &[],
    );
    let update = request("workitem.update", "WorkItem", "w1");
    decide(&kernel, vera, &update, "deny", &[], &[]);
    decide(&kernel, runner, &update, "allow", &["workitem-write"], &[]);

    // Sensitive actions carry the `approval` obligation. The default policies grant
    // `export` to owners and admins only, so an agent's export is a plain deny.
    let export_acme = request("export", "Workspace", "acme");
    decide(
        &kernel,
        bob,
        &export_acme,
        "allow",
        &["workspace-export"],
        &["approval"],
    );
    decide(&kernel, runner, &export_acme, "deny", &[], &[]);
    decide(&kernel, vera, &export_acme, "deny", &[], &[]);
    let reveal = request("secret.reveal", "Secret", "s1");
    decide(
        &kernel,
        runner,
        &reveal,
        "allow",
        &["secret-reveal"],
        &["approval"],
    );
    decide(&kernel, vera, &reveal, "deny", &[], &[]);
    let prod = request("deploy", "Environment", "prod");
    decide(
        &kernel,
        runner,
        &prod,
        "allow",
        &["deploy-production"],
        &["approval"],
    );
    let staging = request("deploy", "Environment", "staging");
    decide(
        &kernel,
        runner,
        &staging,
        "allow",
        &["deploy-non-production"],
        &[],
    );

    // Separation of duties: the reviewer who submitted cannot approve; another can.
    let approve = request("workitem.approve", "WorkItem", "w-by-rita");
    decide(
        &kernel,
        rita,
        &approve,
        "deny",
        &["sod-submitter-cannot-approve"],
        &[],
    );
    decide(&kernel, ravi, &approve, "allow", &["workitem-approve"], &[]);
    let approve_own = request("workitem.approve", "WorkItem", "w-by-runner");
    decide(
        &kernel,
        runner,
        &approve_own,
        "deny",
        &["sod-submitter-cannot-approve"],
        &[],
    );

    // Files: exclusions hold for agents, whatever the path looks like.
    decide(
        &kernel,
        runner,
        &file("file.read", "src/main.rs"),
        "allow",
        &["file-agent-read"],
        &[],
    );
    for (path, forbid) in [
        ("config/.env.local", "file-exclude-dotenv"),
        (".env", "file-exclude-dotenv"),
        ("src/../secrets/x", "file-exclude-secrets-dir"),
        ("./src//./../secrets/x", "file-exclude-secrets-dir"),
        ("src/secrets/../../secrets/x", "file-exclude-secrets-dir"),
        ("deploy/tls/server.key", "file-exclude-key-material"),
        ("sub/.git/config", "file-exclude-git-dir"),
    ] {
        decide(
            &kernel,
            runner,
            &file("file.read", path),
            "deny",
            &[forbid],
            &[],
        );
    }
    // The decided path is the normalised one.
    let answer = kernel.authorize(runner.0, &file("file.read", "src/../secrets/x"));
    assert!(
        answer.str("entry").contains(r#"File::\"acme/secrets/x\""#),
        "{}",
        answer.text
    );
    decide(
        &kernel,
        runner,
        &file("file.edit", ".github/workflows/ci.yml"),
        "deny",
        &["file-agent-edit-deny"],
        &[],
    );
    decide(
        &kernel,
        runner,
        &file("file.edit", "src/auth/login.rs"),
        "allow",
        &["file-agent-edit-allowed", "file-agent-edit-protected"],
        &["review"],
    );
    // Paths that leave the workspace root, or are not relative, are refused outright.
    for path in [
        "../etc/passwd",
        "src/../../x",
        "/etc/passwd",
        "src\\..\\..\\x",
        "a\0b",
        ".",
        "",
    ] {
        refused(
            kernel.authorize(runner.0, &file("file.read", path)),
            422,
            "invalid_path",
        );
    }
    // The caller cannot name the File resource itself (and so choose its workspace).
    let named_file =
        json!({"action": "file.read", "resource": {"type": "File", "id": "acme/src/x.rs"}});
    refused(
        kernel.authorize(runner.0, &named_file),
        400,
        "kernel_built_resource",
    );

    // Egress: the workspace allowlist, matched by host, not by string prefix.
    for url in [
        "https://api.github.com/repos/acme/x",
        "https://API.GitHub.com./repos",
        "http://api.github.com:8443/",
    ] {
        decide(
            &kernel,
            runner,
            &egress(url),
            "allow",
            &["egress-workspace-allowlist"],
            &[],
        );
    }
    decide(
        &kernel,
        runner,
        &egress("https://files.pypi.org/simple/"),
        "allow",
        &["egress-workspace-allowlist"],
        &[],
    );
    for url in [
        "https://example.com/",
        "https://api.github.com.evil.com/",
        "https://evilapi.github.com/",
        "https://github.com/",
        "https://pypi.org/",
        "https://evilpypi.org/",
        // globex's allowlist, not acme's.
        "https://example.org/",
        "https://140.82.112.6/",
    ] {
        decide(&kernel, runner, &egress(url), "deny", &[], &[]);
    }
    // A URL whose userinfo looks like the allowed host is refused, not decided.
    for url in [
        "https://api.github.com@evil.com/",
        "https://user:pw@api.github.com/",
        "ftp://api.github.com/",
        "file:///etc/passwd",
        "not a url",
    ] {
        refused(kernel.authorize(runner.0, &egress(url)), 422, "invalid_url");
    }
    let named_host = json!({"action": "egress", "resource": {"type": "Host", "id": "https://api.github.com:443"}});
    refused(
        kernel.authorize(runner.0, &named_host),
        400,
        "kernel_built_resource",
    );
}

#[test]
fn identity_in_the_body_is_refused_and_not_recorded() {
    let kernel = Kernel::new();
    let runner = kernel.key_for(RUNNER, "acme");
    let first = kernel
        .authorize(&runner, &read_work_item("w1"))
        .expect_decision("allow");
    let mut expected_id = first.decision_id() + 1;

    let spoofs = [
        ("principal", json!(BOB)),
        ("principal", json!({"type": "User", "id": "bob"})),
        ("principal", json!(RUNNER)),
        ("workspace", json!("globex")),
        ("workspace", json!("acme")),
        ("actor", json!(BOB)),
        ("user", json!("bob")),
    ];
    for (field, value) in &spoofs {
        let body = with(read_work_item("g1"), field, value.clone());
        let answer = refused(kernel.authorize(&runner, &body), 400, "identity_in_body");
        assert!(answer.text.contains(field), "{}", answer.text);
        // The same in a batch: at the top level, the whole call is refused...
        let batch = with(
            json!({"requests": [read_work_item("w1")]}),
            field,
            value.clone(),
        );
        refused(
            kernel
                .client
                .post("/v1/authorize/batch", Some(&runner), &batch),
            400,
            "identity_in_body",
        );
        // ...and in one item, that item is an error and the others are answered.
        let batch = json!({"requests": [read_work_item("w1"), body]});
        let answer = kernel
            .client
            .post("/v1/authorize/batch", Some(&runner), &batch)
            .expect_status(200);
        let results = answer.json["results"].as_array().expect("results");
        assert_eq!(results.len(), 2, "{}", answer.text);
        assert_eq!(results[0]["decision"], "allow", "{}", answer.text);
        assert_eq!(
            results[0]["decision_id"],
            expected_id.to_string(),
            "one entry for the good item: {}",
            answer.text
        );
        assert_eq!(
            results[1]["error"]["code"], "identity_in_body",
            "{}",
            answer.text
        );
        expected_id += 1;
    }
    // Near misses are unknown fields (422), not silently ignored.
    for field in ["Principal", "principal_id", "on_behalf_of"] {
        let body = with(read_work_item("w1"), field, json!(BOB));
        refused(kernel.authorize(&runner, &body), 422, "invalid_body");
    }
    // Nor can a principal be slipped in through the context (every action's
    // context is empty in the schema).
    let body = json!({"action": "read", "resource": {"type": "WorkItem", "id": "g1"}, "context": {"principal": BOB}});
    refused(kernel.authorize(&runner, &body), 422, "invalid_context");

    // Nothing refused was recorded: the next decision is the next entry.
    let next = kernel
        .authorize(&runner, &read_work_item("w1"))
        .expect_decision("allow");
    assert_eq!(next.decision_id(), expected_id, "{}", next.text);
    check_entry(&next, RUNNER, "acme");
}

#[test]
fn another_workspace_stays_out_of_reach() {
    let kernel = Kernel::new();
    let runner = kernel.key_for(RUNNER, "acme");
    let gadget = kernel.key_for(GADGET, "globex");
    let runner_id = (runner.as_str(), RUNNER);

    // globex's own agent reads its work item; acme's agent does not.
    let answer = kernel
        .authorize(&gadget, &read_work_item("g1"))
        .expect_decision("allow");
    check_entry(&answer, GADGET, "globex");
    decide(
        &kernel,
        runner_id,
        &read_work_item("g1"),
        "deny",
        &["tenancy-resource"],
        &[],
    );
    decide(
        &kernel,
        runner_id,
        &request("secret.reveal", "Secret", "gs1"),
        "deny",
        &["tenancy-resource"],
        &[],
    );
    decide(
        &kernel,
        runner_id,
        &request("export", "Workspace", "globex"),
        "deny",
        &["tenancy-workspace"],
        &[],
    );
    let answer = kernel
        .authorize(&gadget, &read_work_item("w1"))
        .expect_decision("deny");
    assert_eq!(answer.reasons(), ["tenancy-resource"], "{}", answer.text);
    // A resource the kernel does not know is denied, not assumed to be ours.
    decide(
        &kernel,
        runner_id,
        &read_work_item("nowhere"),
        "deny",
        &["tenancy-resource"],
        &[],
    );

    // The caller cannot bring its own version of globex's work item: the stored
    // one is decided on instead (a refusal naming `g1` would tell acme that globex
    // has it)...
    let shadow = json!({
        "uid": {"type": "WorkItem", "id": "g1"},
        "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "acme"}}},
        "parents": []
    });
    let body = with(read_work_item("g1"), "entities", json!([shadow]));
    decide(
        &kernel,
        runner_id,
        &body,
        "deny",
        &["tenancy-resource"],
        &[],
    );
    // ...nor a workspace, a principal, a role or the kill switch.
    for entity in [
        json!({"uid": {"type": "Workspace", "id": "globex"}, "attrs": {"egress_allow": ["*.com"]}, "parents": []}),
        json!({"uid": {"type": "Workspace", "id": "newco"}, "attrs": {"egress_allow": ["*.com"]}, "parents": []}),
        json!({"uid": {"type": "Agent", "id": "runner"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "globex"}}, "stopped": false}, "parents": [{"type": "Role", "id": "owner"}]}),
        json!({"uid": {"type": "User", "id": "mallory"}, "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": "globex"}}}, "parents": [{"type": "Role", "id": "owner"}]}),
        json!({"uid": {"type": "Role", "id": "superuser"}, "attrs": {}, "parents": []}),
        json!({"uid": {"type": "KillSwitch", "id": "global"}, "attrs": {"engaged": false}, "parents": []}),
    ] {
        let body = with(read_work_item("g1"), "entities", json!([entity]));
        refused(kernel.authorize(&runner, &body), 422, "entity_not_allowed");
    }
    // An entity that shadows nothing is taken for this request, and tenancy still
    // applies to what it claims.
    let fresh = |workspace: &str| {
        json!({"uid": {"type": "WorkItem", "id": "fresh"},
               "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": workspace}}}, "parents": []})
    };
    let body = with(
        read_work_item("fresh"),
        "entities",
        json!([fresh("globex")]),
    );
    decide(
        &kernel,
        runner_id,
        &body,
        "deny",
        &["tenancy-resource"],
        &[],
    );
    let body = with(read_work_item("fresh"), "entities", json!([fresh("acme")]));
    let answer = decide(&kernel, runner_id, &body, "allow", &["workitem-read"], &[]);
    assert!(
        answer.str("entry").contains("request_entities"),
        "{}",
        answer.text
    );

    // Nor does the admin API help: an agent is no admin, and an operator cannot
    // give acme's agent a key for globex.
    let g1 = format!("/v1/entities/{}", encode(r#"WorkItem::"g1""#));
    refused(kernel.client.get(&g1, Some(&runner)), 403, "forbidden");
    refused(
        kernel
            .client
            .send("PUT", "/v1/entities", Some(&runner), &shadow),
        403,
        "forbidden",
    );
    let gadget_key = json!({"principal": RUNNER, "workspace": "globex", "label": null});
    refused(
        kernel
            .client
            .post("/v1/apikeys", Some(&kernel.admin), &gadget_key),
        422,
        "unknown_principal",
    );
    refused(
        kernel
            .client
            .post("/v1/apikeys", Some(&runner), &gadget_key),
        403,
        "forbidden",
    );
    // g1 is unchanged.
    let stored = kernel.get_entity(r#"WorkItem::"g1""#).expect_status(200);
    assert_eq!(
        stored.json["attrs"]["workspace"]["__entity"]["id"],
        "globex"
    );
}

#[test]
fn kill_switches_stop_the_very_next_decision() {
    let kernel = Kernel::new();
    let runner = kernel.key_for(RUNNER, "acme");
    let helper = kernel.key_for(HELPER, "acme");
    let vera = kernel.key_for(VERA, "acme");
    let read = read_work_item("w1");
    let switch = |engaged: bool| json!({"uid": {"type": "KillSwitch", "id": "global"}, "attrs": {"engaged": engaged}, "parents": []});
    kernel.authorize(&runner, &read).expect_decision("allow");

    // The global switch: every agent and user is stopped at once.
    kernel.put_entity(&switch(true));
    for token in [&runner, &helper, &vera] {
        let answer = kernel.authorize(token, &read).expect_decision("deny");
        assert!(
            answer.reasons().contains(&"kill-switch-global".to_owned()),
            "{}",
            answer.text
        );
    }
    let answer = kernel
        .authorize(&runner, &egress("https://api.github.com/"))
        .expect_decision("deny");
    assert!(answer.reasons().contains(&"kill-switch-global".to_owned()));
    // An agent can neither bring its own switch nor flip the stored one.
    let body = with(read.clone(), "entities", json!([switch(false)]));
    refused(kernel.authorize(&runner, &body), 422, "entity_not_allowed");
    refused(
        kernel
            .client
            .send("PUT", "/v1/entities", Some(&runner), &switch(false)),
        403,
        "forbidden",
    );
    let ks = format!("/v1/entities/{}", encode(r#"KillSwitch::"global""#));
    refused(kernel.client.delete(&ks, Some(&runner)), 404, "not_found");
    // Nor can the operator delete it (it fails closed, but must exist).
    refused(
        kernel.client.delete(&ks, Some(&kernel.admin)),
        422,
        "entity_required",
    );
    let stored = kernel
        .get_entity(r#"KillSwitch::"global""#)
        .expect_status(200);
    assert_eq!(stored.json["attrs"]["engaged"], true, "{}", stored.text);
    kernel.authorize(&runner, &read).expect_decision("deny");

    // Released: the very next decision is an allow again.
    kernel.put_entity(&switch(false));
    kernel.authorize(&runner, &read).expect_decision("allow");
    kernel.authorize(&vera, &read).expect_decision("allow");

    // The per-agent switch stops that agent only.
    let mut stopped = fixture_entity("Agent", "runner");
    stopped["attrs"]["stopped"] = json!(true);
    kernel.put_entity(&stopped);
    let answer = kernel.authorize(&runner, &read).expect_decision("deny");
    assert_eq!(answer.reasons(), ["kill-switch-agent"], "{}", answer.text);
    check_entry(&answer, RUNNER, "acme");
    kernel.authorize(&helper, &read).expect_decision("allow");
    // The stopped agent cannot restart itself (no principal writes its own entity).
    let mut restarted = stopped.clone();
    restarted["attrs"]["stopped"] = json!(false);
    refused(
        kernel
            .client
            .send("PUT", "/v1/entities", Some(&runner), &restarted),
        403,
        "self_modification",
    );
    kernel.authorize(&runner, &read).expect_decision("deny");
    // The operator can.
    kernel.put_entity(&restarted);
    let answer = kernel.authorize(&runner, &read).expect_decision("allow");
    assert_eq!(answer.reasons(), ["workitem-read"], "{}", answer.text);
}

fn verify_receipt(receipt: &Path, entry: &Path, key: &str) -> Run {
    writ(&[
        &"ledger",
        &"verify-receipt",
        &receipt,
        &"--entry",
        &entry,
        &"--key",
        &key,
    ])
}

#[test]
fn a_decision_receipt_verifies_offline() {
    let kernel = Kernel::new();
    let runner = kernel.key_for(RUNNER, "acme");
    // The verifier key is public: it can be read while the server runs.
    let key = verifier_key(&kernel.data);
    let key_file = kernel.path("verifier.key");
    fs::write(&key_file, format!("{key}\n")).unwrap();

    let allow = kernel
        .authorize(&runner, &read_work_item("w1"))
        .expect_decision("allow");
    let deny = kernel
        .authorize(&runner, &read_work_item("g1"))
        .expect_decision("deny");
    let mut files = Vec::new();
    for (name, answer) in [("allow", &allow), ("deny", &deny)] {
        check_entry(answer, RUNNER, "acme");
        let receipt = kernel.path(&format!("{name}.receipt"));
        let entry = kernel.path(&format!("{name}.entry"));
        fs::write(&receipt, answer.str("receipt")).unwrap();
        fs::write(&entry, answer.str("entry")).unwrap();
        verify_receipt(&receipt, &entry, &key).ok();
        verify_receipt(&receipt, &entry, &key_file.to_string_lossy()).ok();
        files.push((receipt, entry));
    }
    let (allow_receipt, allow_entry) = &files[0];
    let (deny_receipt, deny_entry) = &files[1];

    // A denial edited into an allow (or anything else changed) does not verify.
    let text = allow.str("entry");
    for (from, to) in [
        (r#""decision":"allow""#, r#""decision":"deny""#),
        (
            r#""actor":"Agent::\"runner\"""#,
            r#""actor":"Agent::\"helper\"""#,
        ),
        (r#""WorkItem::\"w1\"""#, r#""WorkItem::\"w2\"""#),
    ] {
        assert!(text.contains(from), "{text}");
        let tampered = kernel.path("tampered.entry");
        fs::write(&tampered, text.replacen(from, to, 1)).unwrap();
        verify_receipt(allow_receipt, &tampered, &key).fails_with("writ:");
    }
    let deny_text = deny.str("entry");
    let forged = kernel.path("forged.entry");
    fs::write(
        &forged,
        deny_text.replacen(r#""decision":"deny""#, r#""decision":"allow""#, 1),
    )
    .unwrap();
    verify_receipt(deny_receipt, &forged, &key).fails_with("writ:");
    // One more byte (a trailing newline) is another entry.
    let newline = kernel.path("newline.entry");
    fs::write(&newline, format!("{text}\n")).unwrap();
    verify_receipt(allow_receipt, &newline, &key).fails_with("writ:");
    // Receipts and entries do not mix.
    verify_receipt(allow_receipt, deny_entry, &key).fails_with("writ:");
    verify_receipt(deny_receipt, allow_entry, &key).fails_with("writ:");
    // Another kernel's key does not vouch for this ledger.
    let other = Kernel::without_entities();
    verify_receipt(allow_receipt, allow_entry, &verifier_key(&other.data))
        .fails_with("no signature by key");
}

/// `POST /v1/admin/policies/reload` as `token`.
fn reload(kernel: &Kernel, token: &str) -> Answer {
    kernel
        .client
        .post("/v1/admin/policies/reload", Some(token), &json!({}))
}

/// Waits until the server's log mentions `needle` (the SIGHUP reload is async).
fn wait_for_log(kernel: &Kernel, needle: &str, count: usize) {
    let started = Instant::now();
    while kernel.server().log().matches(needle).count() < count {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the log never mentioned {needle:?} {count} times:\n{}",
            kernel.server().log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_broken_policy_reload_keeps_the_running_set() {
    let kernel = Kernel::new();
    let runner = kernel.key_for(RUNNER, "acme");
    let read = read_work_item("w1");
    let before = kernel.authorize(&runner, &read).expect_decision("allow");
    let digest = before.str("policy_set").to_owned();
    assert_eq!(digest.len(), 64, "{}", before.text);

    // Reloading the same files gives the same digest.
    let same = reload(&kernel, &kernel.admin).expect_status(200);
    assert_eq!(same.str("policy_set"), digest, "{}", same.text);
    // Only an operator reloads.
    refused(reload(&kernel, &runner), 403, "forbidden");

    let extra = kernel.data.join("policies").join("zz-extra.cedar");
    for (text, names) in [
        (BROKEN_SYNTAX, vec!["zz-extra.cedar:5"]),
        (
            BROKEN_SCHEMA,
            vec!["zz-extra.cedar:5", "policy `broken-attribute`", "`owner`"],
        ),
    ] {
        fs::write(&extra, text).unwrap();
        let answer = refused(reload(&kernel, &kernel.admin), 422, "invalid_policy_set");
        for name in names {
            assert!(
                answer.text.contains(name),
                "the validator's message should name {name:?}: {}",
                answer.text
            );
        }
        // Decisions go on under the old set.
        let answer = kernel.authorize(&runner, &read).expect_decision("allow");
        assert_eq!(answer.str("policy_set"), digest, "{}", answer.text);
        let ready = kernel.client.get("/readyz", None).expect_status(200);
        assert_eq!(ready.str("policy_set"), digest, "{}", ready.text);
    }

    // SIGHUP with the file still broken: refused (logged), the old set stays.
    let refusals = kernel.server().log().matches("reload refused").count();
    kernel.server().signal("HUP");
    wait_for_log(&kernel, "reload refused", refusals + 1);
    let answer = kernel.authorize(&runner, &read).expect_decision("allow");
    assert_eq!(answer.str("policy_set"), digest, "{}", answer.text);

    // Fixed: SIGHUP loads the new set, and the next answers are made under it.
    fs::write(&extra, EXTRA_FORBID).unwrap();
    let loads = kernel.server().log().matches("policy set loaded").count();
    kernel.server().signal("HUP");
    wait_for_log(&kernel, "policy set loaded", loads + 1);
    let after = kernel.authorize(&runner, &read).expect_decision("deny");
    let new_digest = after.str("policy_set").to_owned();
    assert_ne!(new_digest, digest, "{}", after.text);
    assert_eq!(new_digest.len(), 64, "{}", after.text);
    assert_eq!(after.reasons(), ["extra-forbid-w1"], "{}", after.text);
    check_entry(&after, RUNNER, "acme");
    let ready = kernel.client.get("/readyz", None).expect_status(200);
    assert_eq!(ready.str("policy_set"), new_digest, "{}", ready.text);
    // Other decisions are unaffected by the new policy.
    let answer = kernel
        .authorize(&runner, &egress("https://api.github.com/"))
        .expect_decision("allow");
    assert_eq!(answer.str("policy_set"), new_digest);
}

#[test]
fn after_a_restart_the_ledger_holds_every_answered_decision() {
    let mut kernel = Kernel::new();
    let runner = kernel.key_for(RUNNER, "acme");
    let vera = kernel.key_for(VERA, "acme");
    let bodies = [
        read_work_item("w1"),
        read_work_item("g1"),
        egress("https://api.github.com/"),
        egress("https://evil.example/"),
        file("file.read", "config/.env"),
        request("workitem.update", "WorkItem", "w1"),
    ];
    let mut answered: Vec<(u64, String)> = Vec::new();
    let mut remember = |answer: Answer| {
        assert_eq!(answer.status, 200, "{}", answer.text);
        answered.push((answer.decision_id(), answer.str("entry").to_owned()));
    };
    for (n, body) in bodies.iter().cycle().take(12).enumerate() {
        let token = if n % 2 == 0 { &runner } else { &vera };
        remember(kernel.authorize(token, body));
    }
    // Concurrent callers: 4 threads of 8 decisions each.
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let client = kernel.client.clone();
            let token = if thread % 2 == 0 {
                runner.clone()
            } else {
                vera.clone()
            };
            let bodies = bodies.clone();
            std::thread::spawn(move || {
                (0..8)
                    .map(|n| client.authorize(&token, &bodies[(thread + n) % bodies.len()]))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for thread in threads {
        for answer in thread.join().expect("a client thread") {
            remember(answer);
        }
    }
    // A batch: its items are decisions of their own.
    let batch = json!({"requests": bodies});
    let answer = kernel
        .client
        .post("/v1/authorize/batch", Some(&runner), &batch)
        .expect_status(200);
    for result in answer.json["results"].as_array().expect("results") {
        remember(Answer {
            status: 200,
            text: result.to_string(),
            json: result.clone(),
        });
    }
    let ids: BTreeSet<u64> = answered.iter().map(|(id, _)| *id).collect();
    assert_eq!(ids.len(), answered.len(), "two answers share a decision id");
    assert_eq!(answered.len(), 12 + 32 + bodies.len());

    kernel.stop();
    let export_dir = kernel.path("export");
    export(&kernel.data, &export_dir);
    verify(&export_dir, &verifier_key(&kernel.data)).ok();
    let entries = export_entries(&export_dir);
    for (id, entry) in &answered {
        let exported = entries
            .get(*id as usize)
            .unwrap_or_else(|| panic!("decision {id} is beyond the export"));
        assert_eq!(
            String::from_utf8_lossy(exported),
            entry.as_str(),
            "entry {id} differs from what was answered"
        );
    }
    let size = export_size(&export_dir);

    // The restarted server appends after everything that was recorded.
    kernel.restart();
    let answer = kernel
        .authorize(&runner, &read_work_item("w1"))
        .expect_decision("allow");
    assert!(
        answer.decision_id() >= size,
        "decision {} reuses an index of a log of {size} entries",
        answer.decision_id()
    );
    check_entry(&answer, RUNNER, "acme");
    // The keys made before the restart still work; nothing else changed.
    kernel
        .authorize(&vera, &request("workitem.update", "WorkItem", "w1"))
        .expect_decision("deny");
    kernel.stop();
    let second = kernel.path("export-2");
    export(&kernel.data, &second);
    verify(&second, &verifier_key(&kernel.data)).ok();
    let again = export_entries(&second);
    assert_eq!(
        &again[..entries.len()],
        &entries[..],
        "the log was rewritten"
    );
    assert_eq!(
        String::from_utf8_lossy(&again[answer.decision_id() as usize]),
        answer.str("entry")
    );
}

#[test]
fn client_mistakes_are_4xx_and_not_recorded() {
    let kernel = Kernel::new();
    let runner = kernel.key_for(RUNNER, "acme");
    let vera = kernel.key_for(VERA, "acme");
    let (revoked_id, revoked) = kernel.key_record(HELPER, "acme");
    let read = read_work_item("w1");
    kernel.authorize(&revoked, &read).expect_decision("allow");
    let path = format!("/v1/apikeys/{revoked_id}");
    // An agent cannot revoke keys: in its workspace that is a denied admin action,
    // elsewhere the key is not even confirmed to exist.
    refused(kernel.client.delete(&path, Some(&runner)), 403, "forbidden");
    let (gadget_key_id, _) = kernel.key_record(GADGET, "globex");
    let gadget_path = format!("/v1/apikeys/{gadget_key_id}");
    refused(
        kernel.client.delete(&gadget_path, Some(&runner)),
        404,
        "not_found",
    );
    refused(
        kernel
            .client
            .delete("/v1/apikeys/ak_0000000000000000", Some(&kernel.admin)),
        404,
        "not_found",
    );
    kernel
        .client
        .delete(&path, Some(&kernel.admin))
        .expect_status(204);
    let first = kernel.authorize(&runner, &read).expect_decision("allow");
    let mut answers: Vec<Answer> = Vec::new();
    let body = serde_json::to_vec(&read).unwrap();
    let client = &kernel.client;

    // Authentication.
    answers.push(refused(
        client.post("/v1/authorize", None, &read),
        401,
        "missing_token",
    ));
    answers.push(refused(
        client.post("/v1/authorize", Some(""), &read),
        401,
        "missing_token",
    ));
    answers.push(refused(
        client.post("/v1/authorize", Some(&revoked), &read),
        401,
        "key_revoked",
    ));
    answers.push(refused(
        client.post(
            "/v1/authorize",
            Some("writ_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            &read,
        ),
        401,
        "unknown_key",
    ));
    let last = if runner.ends_with('A') { "B" } else { "A" };
    let mangled = format!("{}{last}", &runner[..runner.len() - 1]);
    let answer = client.post("/v1/authorize", Some(&mangled), &read);
    assert_eq!(answer.status, 401, "{}", answer.text);
    answers.push(answer);
    for header in [
        format!("Basic {runner}"),
        format!("bearer{runner}"),
        "Bearer a b".to_owned(),
    ] {
        let head = format!(
            "POST /v1/authorize HTTP/1.1\r\nHost: x\r\nAuthorization: {header}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let answer = raw_http(&client.base, &head, body.clone());
        assert_eq!(answer.status, 401, "{header}: {}", answer.text);
        answers.push(answer);
    }
    answers.push(refused(
        client.get("/v1/entities", Some(&revoked)),
        401,
        "key_revoked",
    ));
    answers.push(refused(
        client.get("/v1/entities", None),
        401,
        "missing_token",
    ));

    // Bodies.
    let huge = {
        let mut big = read.clone();
        big["context"] = json!({"pad": "x".repeat(2 << 20)});
        serde_json::to_vec(&big).unwrap()
    };
    let head = format!(
        "POST /v1/authorize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {runner}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        huge.len()
    );
    answers.push(refused(
        raw_http(&client.base, &head, huge.clone()),
        413,
        "body_too_large",
    ));
    // Chunked, so no Content-Length warns the server in advance.
    let mut chunked = Vec::new();
    for chunk in huge.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let head = format!(
        "POST /v1/authorize HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {runner}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    answers.push(refused(
        raw_http(&client.base, &head, chunked),
        413,
        "body_too_large",
    ));
    // Unauthenticated senders of huge bodies are refused just the same.
    let head = format!(
        "POST /v1/authorize HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        huge.len()
    );
    let answer = raw_http(&client.base, &head, huge);
    assert!(
        matches!(answer.status, 401 | 413),
        "{}: {}",
        answer.status,
        answer.text
    );
    answers.push(answer);
    for text in [
        r#"{"action": "read","#,
        r#"{"action": "read", "resource": {"type": "WorkItem", "id": "w1"}} trailing"#,
        "[1, 2]",
        "\"read\"",
        "",
        "{'action': 'read'}",
    ] {
        let answer = client.send_raw(
            "POST",
            "/v1/authorize",
            Some(&runner),
            "application/json",
            text.as_bytes(),
        );
        answers.push(refused(answer, 400, "malformed_json"));
    }
    let answer = client.send_raw("POST", "/v1/authorize", Some(&runner), "text/plain", &body);
    answers.push(refused(answer, 415, "not_json"));

    // Requests that parse but make no sense.
    answers.push(refused(
        kernel.authorize(&runner, &request("launch.missiles", "WorkItem", "w1")),
        422,
        "unknown_action",
    ));
    answers.push(refused(
        kernel.authorize(&runner, &request("Read", "WorkItem", "w1")),
        422,
        "unknown_action",
    ));
    answers.push(refused(
        kernel.authorize(&runner, &request("read", "Spaceship", "w1")),
        422,
        "unknown_entity_type",
    ));
    answers.push(refused(
        kernel.authorize(&runner, &json!({"action": "read"})),
        400,
        "missing_resource",
    ));
    answers.push(refused(
        kernel.authorize(
            &runner,
            &json!({"resource": {"type": "WorkItem", "id": "w1"}}),
        ),
        422,
        "invalid_body",
    ));
    answers.push(refused(
        kernel.authorize(&runner, &json!({"action": "egress"})),
        400,
        "missing_url",
    ));
    answers.push(refused(
        kernel.authorize(&runner, &json!({"action": "file.read"})),
        400,
        "missing_path",
    ));
    answers.push(refused(
        kernel.authorize(&runner, &with(read.clone(), "context", json!([1]))),
        422,
        "invalid_context",
    ));
    answers.push(refused(
        kernel.authorize(
            &runner,
            &with(read.clone(), "url", json!("https://api.github.com/")),
        ),
        400,
        "unexpected_field",
    ));
    answers.push(refused(
        kernel.authorize(
            &runner,
            &with(read.clone(), "context", json!({"anything": 1})),
        ),
        422,
        "invalid_context",
    ));
    answers.push(refused(
        client.post(
            "/v1/authorize/batch",
            Some(&runner),
            &json!({"requests": []}),
        ),
        422,
        "invalid_batch",
    ));
    let too_many: Vec<Value> = (0..65).map(|_| read.clone()).collect();
    answers.push(refused(
        client.post(
            "/v1/authorize/batch",
            Some(&runner),
            &json!({"requests": too_many}),
        ),
        422,
        "invalid_batch",
    ));
    answers.push(refused(
        client.get("/v1/nothing-here", Some(&runner)),
        404,
        "not_found",
    ));
    let answer = client.get("/v1/authorize", Some(&runner));
    assert_eq!(answer.status, 405, "{}", answer.text);
    answers.push(answer);

    // None of it was a server error, and none of it was recorded.
    for answer in &answers {
        assert!(answer.status < 500, "a server error: {}", answer.text);
    }
    let next = kernel.authorize(&runner, &read).expect_decision("allow");
    assert_eq!(next.decision_id(), first.decision_id() + 1, "{}", next.text);

    // Outcomes: only the principal that asked may report one.
    let outcome = format!("/v1/decisions/{}/outcome", next.decision_id());
    let succeeded = json!({"status": "succeeded"});
    refused(
        client.post(&outcome, Some(&vera), &succeeded),
        404,
        "not_found",
    );
    refused(
        client.post(&outcome, None, &succeeded),
        401,
        "missing_token",
    );
    refused(
        client.post(&outcome, Some(&runner), &json!({"status": "done"})),
        422,
        "invalid_status",
    );
    refused(
        client.post("/v1/decisions/99999999/outcome", Some(&runner), &succeeded),
        404,
        "not_found",
    );
    refused(
        client.post("/v1/decisions/-1/outcome", Some(&runner), &succeeded),
        404,
        "not_found",
    );
    let answer = client
        .post(&outcome, Some(&runner), &succeeded)
        .expect_status(200);
    let entry: Value = serde_json::from_str(answer.str("entry")).expect("outcome entry");
    assert_eq!(entry["kind"], "outcome");
    assert_eq!(entry["decision_id"], next.decision_id().to_string());
    assert_eq!(entry["actor"], RUNNER);
}
