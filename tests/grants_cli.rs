//! End-to-end tests of break-glass, approval gates and consents: the real `writ
//! serve` on a loopback port and the `writ break-glass`, `writ approval`, `writ
//! consent` and `writ signing-key` commands; `writ ledger verify` checks the
//! signed approval offline.
#![cfg(test)]

mod common;
#[path = "common/server.rs"]
mod server;

use common::{verifier_key, writ, Run};
use serde_json::{json, Value};
use server::Kernel;

/// Runs `writ ARGS --url BASE --token TOKEN`.
fn cli(kernel: &Kernel, token: &str, args: &[&str]) -> Run {
    let base = kernel.server().base.clone();
    let mut all: Vec<&dyn AsRef<std::ffi::OsStr>> = args
        .iter()
        .map(|a| a as &dyn AsRef<std::ffi::OsStr>)
        .collect();
    all.extend([
        &"--url" as &dyn AsRef<std::ffi::OsStr>,
        &base,
        &"--token",
        &token,
    ]);
    writ(&all)
}

fn json_of(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|error| panic!("{}: {error}: {}", run.command, run.stdout))
}

#[test]
fn a_signed_break_glass_over_the_cli_verifies_offline() {
    let kernel = Kernel::new();
    let vera = kernel.key_for(r#"User::"vera""#, "acme");
    let bob = kernel.key_for(r#"User::"bob""#, "acme");
    let key_file = kernel.path("bob.signing-key");
    let key_path = key_file.to_str().unwrap();

    let generated = writ(&[&"signing-key", &"generate", &"--out", &key_file]).ok();
    assert!(!generated.stdout.contains(
        &std::fs::read_to_string(&key_file)
            .unwrap()
            .trim()
            .to_owned()
    ));
    cli(
        &kernel,
        &bob,
        &["signing-key", "register", "--sign-key", key_path],
    )
    .ok();

    let requested = cli(
        &kernel,
        &vera,
        &[
            "break-glass",
            "request",
            "--role",
            "owner",
            "--reason",
            "INC-9: billing outage",
            "--duration",
            "30m",
            "--json",
        ],
    )
    .ok();
    let elevation = json_of(&requested);
    assert_eq!(elevation["signed_approvals"], true, "{elevation}");
    let id = elevation["id"].as_str().unwrap().to_owned();

    // Owner elevations need signed approvals: an unsigned one is refused.
    cli(&kernel, &bob, &["break-glass", "approve", &id]).fails_with("sign");
    cli(
        &kernel,
        &vera,
        &["break-glass", "approve", &id, "--sign-key", key_path],
    )
    .fails_with("self-approval");
    let approved = cli(
        &kernel,
        &bob,
        &[
            "break-glass",
            "approve",
            &id,
            "--comment",
            "INC-9",
            "--sign-key",
            key_path,
            "--json",
        ],
    )
    .ok();
    assert_eq!(json_of(&approved)["state"], "active");

    let answer = kernel
        .authorize(
            &vera,
            &json!({"action": "billing.update", "resource": {"type": "Workspace", "id": "acme"}}),
        )
        .expect_decision("allow");
    assert_eq!(answer.str("elevation"), id);

    let listed = cli(
        &kernel,
        &vera,
        &["break-glass", "list", "--state", "active"],
    )
    .ok();
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);
    cli(
        &kernel,
        &vera,
        &["break-glass", "revoke", &id, "--reason", "outage over"],
    )
    .ok();
    kernel
        .authorize(
            &vera,
            &json!({"action": "billing.update", "resource": {"type": "Workspace", "id": "acme"}}),
        )
        .expect_decision("deny");

    let key = verifier_key(&kernel.data);
    let verified = writ(&[
        &"ledger",
        &"verify",
        &"--url",
        &format!("{}/ledger", kernel.server().base),
        &"--key",
        &key,
        // Entry bundles are read with a token that may read the whole ledger.
        &"--token",
        &kernel.admin,
        &"--json",
    ])
    .ok();
    let report: Value = serde_json::from_str(&verified.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["signed_statements"].as_u64().unwrap() >= 1,
        "{report}"
    );
    assert!(
        report["required_approvals"].as_u64().unwrap() >= 1,
        "{report}"
    );
}

#[test]
fn a_gate_and_a_consent_over_the_cli() {
    let kernel = Kernel::new();
    kernel.put_entity(&json!({"uid": {"type": "Integration", "id": "gh"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}}, "parents": []}));
    kernel.put_entity(&json!({"uid": {"type": "Agent", "id": "scout"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}, "stopped": false}, "parents": []}));
    let bob = kernel.key_for(r#"User::"bob""#, "acme");
    let rita = kernel.key_for(r#"User::"rita""#, "acme");
    kernel.put_entity(&json!({"uid": {"type": "User", "id": "olive"}, "attrs": {"workspace": {"type": "Workspace", "id": "acme"}}, "parents": [{"type": "Role", "id": "owner"}]}));
    let olive = kernel.key_for(r#"User::"olive""#, "acme");
    let scout = kernel.key_for(r#"Agent::"scout""#, "acme");

    let deploy = json!({"action": "deploy", "resource": {"type": "Environment", "id": "prod"}});
    let held = kernel.authorize(&bob, &deploy).expect_decision("allow");
    assert_eq!(held.obligations(), ["approval"]);
    let decision = held.decision_id().to_string();
    let opened = json_of(
        &cli(
            &kernel,
            &bob,
            &[
                "approval",
                "request",
                &decision,
                "--reason",
                "release 2.0",
                "--json",
            ],
        )
        .ok(),
    );
    let gate = opened["id"].as_str().unwrap().to_owned();
    cli(&kernel, &bob, &["approval", "approve", &gate]).fails_with("approval-no-self-approval");
    cli(
        &kernel,
        &rita,
        &["approval", "approve", &gate, "--comment", "checked"],
    )
    .ok();
    let used = kernel.authorize(&bob, &deploy).expect_decision("allow");
    assert!(used.obligations().is_empty(), "{}", used.text);
    assert_eq!(kernel.authorize(&bob, &deploy).obligations(), ["approval"]);
    let shown = json_of(&cli(&kernel, &bob, &["approval", "show", &gate, "--json"]).ok());
    assert_eq!(shown["state"], "used");

    let read =
        json!({"action": "integration.read", "resource": {"type": "Integration", "id": "gh"}});
    kernel.authorize(&scout, &read).expect_decision("deny");
    cli(
        &kernel,
        &olive,
        &[
            "consent",
            "grant",
            "--grantee",
            r#"Role::"admin""#,
            "--action",
            "integration.read",
            "--resource",
            r#"Integration::"gh""#,
            "--duration",
            "1h",
        ],
    )
    .fails_with("role");
    let granted = json_of(
        &cli(
            &kernel,
            &olive,
            &[
                "consent",
                "grant",
                "--grantee",
                r#"Agent::"scout""#,
                "--action",
                "integration.read",
                "--resource",
                r#"Integration::"gh""#,
                "--duration",
                "1h",
                "--json",
            ],
        )
        .ok(),
    );
    let consent = granted["id"].as_str().unwrap().to_owned();
    kernel.authorize(&scout, &read).expect_decision("allow");
    assert!(cli(&kernel, &olive, &["consent", "list"])
        .ok()
        .stdout
        .contains(&consent));
    cli(&kernel, &olive, &["consent", "revoke", &consent]).ok();
    kernel.authorize(&scout, &read).expect_decision("deny");
}
