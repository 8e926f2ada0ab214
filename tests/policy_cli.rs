//! `writ policy validate` and `writ policy test` on the shipped policies, on broken
//! policy sets, and on test files that disagree with the policies.
#![cfg(test)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::writ;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn the_shipped_policies_validate() {
    let root = repo();
    let run = writ(&[
        &"policy",
        &"validate",
        &root.join("policies"),
        &"--schema",
        &root.join("schemas"),
    ])
    .ok();
    assert!(run.stdout.starts_with("valid: "), "{run}");
    assert!(run.stdout.contains("policy set "), "{run}");
}

#[test]
fn every_shipped_policy_test_agrees() {
    let run = writ(&[
        &"policy",
        &"test",
        &repo().join("policies/tests"),
        &"--json",
    ])
    .ok();
    let summary: serde_json::Value =
        serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    let mut keys: Vec<&String> = summary.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "agree",
            "disagree",
            "requests",
            "tests",
            "validation_differences"
        ],
        "{run}"
    );
    assert_eq!(summary["disagree"], 0, "{run}");
    assert!(summary["tests"].as_u64().unwrap() >= 10, "{run}");
    assert!(summary["requests"].as_u64().unwrap() >= 300, "{run}");
    assert_eq!(summary["agree"], summary["requests"], "{run}");
    assert_eq!(
        summary["validation_differences"],
        serde_json::json!([]),
        "{run}"
    );
}

/// A copy of the shipped policies and tests in a temp dir, to break on purpose.
fn copy_of_policies() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let policies = tmp.path().join("policies");
    let schemas = tmp.path().join("schemas");
    copy_dir(&repo().join("policies"), &policies);
    copy_dir(&repo().join("schemas"), &schemas);
    (tmp, policies, schemas)
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for item in fs::read_dir(from).unwrap() {
        let item = item.unwrap();
        let target = to.join(item.file_name());
        if item.file_type().unwrap().is_dir() {
            copy_dir(&item.path(), &target);
        } else {
            fs::copy(item.path(), target).unwrap();
        }
    }
}

#[test]
fn an_invalid_policy_is_named_by_file_line_and_id() {
    let (_tmp, policies, schemas) = copy_of_policies();
    fs::write(
        policies.join("zz_broken.cedar"),
        "// a comment\n@id(\"typo-attribute\")\npermit(principal, action == Action::\"read\", resource is WorkItem)\nwhen { resource.wrkspace == principal.workspace };\n",
    )
    .unwrap();
    let run = writ(&[&"policy", &"validate", &policies, &"--schema", &schemas])
        .fails_with("zz_broken.cedar:4");
    assert!(run.stderr.contains("policy `typo-attribute`"), "{run}");
    assert!(run.stderr.contains("wrkspace"), "{run}");
}

#[test]
fn a_syntax_error_and_a_missing_id_are_refused() {
    let (_tmp, policies, schemas) = copy_of_policies();
    fs::write(
        policies.join("zz_syntax.cedar"),
        "@id(\"x\")\npermit(principal, action, resource\n",
    )
    .unwrap();
    writ(&[&"policy", &"validate", &policies, &"--schema", &schemas])
        .fails_with("zz_syntax.cedar:");
    fs::remove_file(policies.join("zz_syntax.cedar")).unwrap();
    fs::write(
        policies.join("zz_noid.cedar"),
        "permit(principal, action, resource);\n",
    )
    .unwrap();
    writ(&[&"policy", &"validate", &policies, &"--schema", &schemas]).fails_with("has no `@id");
    fs::write(
        policies.join("zz_noid.cedar"),
        "@id(\"workitem-read\")\nforbid(principal, action, resource);\n",
    )
    .unwrap();
    writ(&[&"policy", &"validate", &policies, &"--schema", &schemas])
        .fails_with("duplicate policy id");
}

#[test]
fn a_test_that_disagrees_fails_and_says_where() {
    let (_tmp, policies, _schemas) = copy_of_policies();
    let tests = policies.join("tests");
    let roles = tests.join("roles.json");
    let mut test: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&roles).unwrap()).unwrap();
    let request = &mut test["requests"][0];
    let flipped = if request["decision"] == "allow" {
        "deny"
    } else {
        "allow"
    };
    request["decision"] = serde_json::json!(flipped);
    let description = request["description"].as_str().unwrap().to_owned();
    fs::write(&roles, serde_json::to_string_pretty(&test).unwrap()).unwrap();
    let run = writ(&[&"policy", &"test", &tests, &"--json"]);
    assert_eq!(run.code, Some(1), "{run}");
    let summary: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(summary["disagree"], 1, "{run}");
    assert!(run.stderr.contains(&description), "{run}");
}

#[test]
fn a_policy_change_changes_the_digest() {
    let (_tmp, policies, schemas) = copy_of_policies();
    let before = writ(&[&"policy", &"validate", &policies, &"--schema", &schemas])
        .ok()
        .stdout;
    let path = policies.join("roles.cedar");
    let text = fs::read_to_string(&path).unwrap();
    fs::write(&path, format!("{text}\n// an added comment\n")).unwrap();
    let after = writ(&[&"policy", &"validate", &policies, &"--schema", &schemas])
        .ok()
        .stdout;
    assert_ne!(before, after);
}
