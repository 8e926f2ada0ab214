//! `writ ledger verify --url` against a running `writ serve`: the entry bundles it
//! fetches are served only to an Operator's or an Auditor's token, which it sends
//! from `--token` or `WRIT_TOKEN`; without one it fails, saying which token it
//! needs, and exits non-zero.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;
#[path = "common/server.rs"]
mod server;

use std::ffi::OsStr;

use common::{verifier_key, writ_with_env, Run};
use serde_json::json;
use server::Kernel;

/// Runs `writ ledger verify --url URL --key KEY [--token TOKEN]`, with `WRIT_TOKEN`
/// set to `env_token` or removed.
fn verify(url: &str, key: &str, token: Option<&str>, env_token: Option<&str>) -> Run {
    let mut args: Vec<&dyn AsRef<OsStr>> =
        vec![&"ledger", &"verify", &"--url", &url, &"--key", &key];
    if let Some(token) = &token {
        args.push(&"--token");
        args.push(token);
    }
    writ_with_env(&args, &[("WRIT_TOKEN", env_token)])
}

#[test]
fn verify_over_http_needs_an_operator_or_auditor_token() {
    let kernel = Kernel::new();
    let key = verifier_key(&kernel.data);
    let url = format!("{}/ledger", kernel.server().base);
    let auditor = kernel
        .client
        .post(
            "/v1/apikeys",
            Some(&kernel.admin),
            &json!({"principal": "Auditor::\"ada\""}),
        )
        .expect_status(201)
        .str("key")
        .to_owned();
    let agent = kernel.key_for("Agent::\"runner\"", "acme");

    // An auditor's token, as a flag or from the environment: verified.
    for (flag, env) in [
        (Some(auditor.as_str()), None),
        (None, Some(auditor.as_str())),
    ] {
        let run = verify(&url, &key, flag, env).ok();
        assert!(run.stdout.starts_with("ok: "), "{run}");
    }
    // The operator's too.
    verify(&url, &key, Some(&kernel.admin), None).ok();

    // No token: a clean failure that says what is needed.
    let run = verify(&url, &key, None, None);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains("401 `missing_token`")
            && run.stderr.contains("Operator's or an Auditor's token")
            && run.stderr.contains("--token or set WRIT_TOKEN"),
        "{run}"
    );
    // An agent's token: refused by the server, and said so.
    let run = verify(&url, &key, Some(&agent), None);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(
        run.stderr.contains("403 `ledger_entries_forbidden`")
            && run.stderr.contains("Operator's or an Auditor's token"),
        "{run}"
    );
    // A token that does not verify.
    let run = verify(&url, &key, Some("writ_notakey"), None);
    assert_eq!(run.code, Some(1), "{run}");
    assert!(run.stderr.contains("the token was not accepted"), "{run}");
    assert!(
        !run.stderr.contains("writ_notakey"),
        "no token in the message"
    );
}
