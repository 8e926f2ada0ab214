//! Unit tests for the conformance runner: path resolution, `@id` loading, and the
//! detection of disagreements on small hand-made tests.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::paths::{candidates, resolve};
use super::*;

const SCHEMA: &str = r#"
entity User;
entity Photo;
action view appliesTo { principal: User, resource: Photo, context: { n: Long } };
"#;

const ENTITIES: &str = r#"[
  {"uid": {"type": "User", "id": "alice"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Photo", "id": "p"}, "attrs": {}, "parents": []}
]"#;

/// Two policies: policy0 permits when `n > 0`; policy1 overflows (an evaluation error)
/// when `n > 0` and is not satisfied otherwise.
const POLICIES: &str = r#"
permit(principal, action, resource) when { context.n > 0 };
permit(principal, action, resource) when { context.n > 0 && context.n + 9223372036854775807 > 0 };
"#;

fn write(path: &Path, text: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(path, text).unwrap();
}

fn request(
    description: &str,
    n: i64,
    decision: &str,
    reason: &[&str],
    errors: &[&str],
) -> serde_json::Value {
    json!({
        "description": description,
        "principal": {"type": "User", "id": "alice"},
        "action": {"type": "Action", "id": "view"},
        "resource": {"type": "Photo", "id": "p"},
        "context": {"n": n},
        "validateRequest": true,
        "decision": decision,
        "reason": reason,
        "errors": errors,
    })
}

/// Writes the schema, entities and policies under `dir`, and a test at `dir/tests/t.json`
/// naming them relative to `dir` (the handwritten tests' layout).
fn fixture(dir: &Path, should_validate: bool, requests: Vec<serde_json::Value>) -> PathBuf {
    write(&dir.join("data/schema.cedarschema"), SCHEMA);
    write(&dir.join("data/entities.json"), ENTITIES);
    write(&dir.join("data/policies.cedar"), POLICIES);
    let test = json!({
        "policies": "data/policies.cedar",
        "entities": "data/entities.json",
        "schema": "data/schema.cedarschema",
        "shouldValidate": should_validate,
        "requests": requests,
    });
    let path = dir.join("tests/t.json");
    write(&path, &test.to_string());
    path
}

#[test]
fn names_resolve_beside_the_test_first_then_upwards() {
    let dir = tempfile::tempdir().unwrap();
    let test = dir.path().join("a/b/t.json");
    write(&test, "{}");
    write(&dir.path().join("a/data/x.cedar"), "");
    assert_eq!(
        resolve(&test, "data/x.cedar").unwrap(),
        dir.path().join("a/data/x.cedar")
    );

    // A file of the same name beside the test wins over the one above.
    write(&dir.path().join("a/b/data/x.cedar"), "");
    assert_eq!(
        resolve(&test, "data/x.cedar").unwrap(),
        dir.path().join("a/b/data/x.cedar")
    );

    // Absolute names are taken as they are, even when missing (reading them then fails).
    let absolute = dir.path().join("elsewhere.cedar");
    assert_eq!(
        resolve(&test, absolute.to_str().unwrap()).unwrap(),
        absolute
    );

    let missing = resolve(&test, "data/nowhere-writ-test.cedar").unwrap_err();
    assert!(
        matches!(missing, ConformanceError::NotFound { ref name, .. } if name == "data/nowhere-writ-test.cedar")
    );
    assert!(missing
        .to_string()
        .starts_with("cannot find `data/nowhere-writ-test.cedar` named by `"));
}

#[test]
fn a_directory_yields_json_files_but_not_entities_files() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "z.json",
        "a/1.json",
        "a/x.entities.json",
        "a/p.cedar",
        "b/c/2.json",
    ] {
        write(&dir.path().join(name), "[]");
    }
    let (found, unreadable) = candidates(dir.path());
    assert!(unreadable.is_empty());
    let expected: Vec<PathBuf> = ["a/1.json", "b/c/2.json", "z.json"]
        .iter()
        .map(|name| dir.path().join(name))
        .collect();
    assert_eq!(found, expected);
}

#[test]
fn a_policy_directory_is_named_by_id_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("b.cedar"),
        r#"@id("second") permit(principal, action, resource);"#,
    );
    write(
        &dir.path().join("a.cedar"),
        r#"@id("first") forbid(principal, action, resource);
           @id("also-first") permit(principal, action, resource);"#,
    );
    write(&dir.path().join("notes.txt"), "not a policy");
    let set = load_policy_dir(dir.path()).unwrap();
    let mut ids: Vec<String> = set.policies().map(|p| p.id().to_string()).collect();
    ids.sort();
    assert_eq!(ids, ["also-first", "first", "second"]);
}

#[test]
fn a_policy_without_id_is_refused_naming_file_and_policy() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.cedar");
    write(
        &file,
        r#"@id("ok") permit(principal, action, resource);
           permit(principal, action, resource);"#,
    );
    let error = load_policy_dir(dir.path()).unwrap_err();
    let file = file.display().to_string();
    assert_eq!(
        error,
        ConformanceError::MissingId {
            file: file.clone(),
            number: 2
        }
    );
    assert_eq!(
        error.to_string(),
        format!("policy number 2 in `{file}` has no `@id(\"...\")` annotation")
    );

    write(
        &dir.path().join("p.cedar"),
        r#"@id("") permit(principal, action, resource);"#,
    );
    let error = load_policy_dir(dir.path()).unwrap_err();
    assert_eq!(error, ConformanceError::EmptyId { file, number: 1 });
}

#[test]
fn a_duplicate_id_is_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("a.cedar"),
        r#"@id("same") permit(principal, action, resource);"#,
    );
    write(
        &dir.path().join("b.cedar"),
        r#"@id("same") forbid(principal, action, resource);"#,
    );
    let error = load_policy_dir(dir.path()).unwrap_err();
    assert_eq!(
        error,
        ConformanceError::DuplicateId {
            id: "same".to_owned(),
            file: dir.path().join("b.cedar").display().to_string(),
            first: dir.path().join("a.cedar").display().to_string(),
        }
    );
}

#[test]
fn templates_and_syntax_errors_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("t.cedar"),
        r#"@id("t") permit(principal == ?principal, action, resource);"#,
    );
    assert!(matches!(
        load_policy_dir(dir.path()),
        Err(ConformanceError::Template { .. })
    ));

    write(
        &dir.path().join("t.cedar"),
        "permit(principal, action, resource",
    ); // no closing
    let error = load_policy_dir(dir.path()).unwrap_err();
    assert!(
        matches!(error, ConformanceError::Policies { .. }),
        "{error}"
    );
    assert!(!error.to_string().contains('\n'));
}

#[test]
fn matching_expectations_agree() {
    let dir = tempfile::tempdir().unwrap();
    let test = fixture(
        dir.path(),
        true,
        vec![
            request("positive", 1, "allow", &["policy0"], &["policy1"]),
            request("negative", -1, "deny", &[], &[]),
        ],
    );
    let report = run_test_file(&test).unwrap();
    assert_eq!(report.disagreements, []);
    assert_eq!((report.requests, report.agree), (2, 2));
    assert_eq!(report.validation_difference, None);
}

#[test]
fn wrong_expectations_are_disagreements_per_field() {
    let dir = tempfile::tempdir().unwrap();
    let test = fixture(
        dir.path(),
        true,
        vec![
            // Wrong on all three counts: Cedar allows by policy0, and policy1 errors.
            request("all wrong", 1, "deny", &["policy1"], &[]),
            request("right", -1, "deny", &[], &[]),
        ],
    );
    let report = run_test_file(&test).unwrap();
    assert_eq!((report.requests, report.agree), (2, 1));
    let found: Vec<(DisagreementField, &str, &str)> = report
        .disagreements
        .iter()
        .map(|d| (d.field, d.expected.as_str(), d.actual.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            (DisagreementField::Decision, "deny", "allow"),
            (DisagreementField::Reason, "[policy1]", "[policy0]"),
            (DisagreementField::Errors, "[]", "[policy1]"),
        ]
    );
    let first = &report.disagreements[0];
    assert_eq!(first.description, "all wrong");
    assert_eq!(
        first.to_string(),
        format!(
            "`{}`: request `all wrong`: decision expected deny, got allow",
            test.display()
        )
    );

    let summary = run_paths(&[dir.path().join("tests")]);
    assert_eq!(
        (
            summary.tests,
            summary.requests,
            summary.agree,
            summary.disagree
        ),
        (1, 2, 1, 1)
    );
    assert_eq!(summary.disagreements, report.disagreements);
}

#[test]
fn an_unbuildable_request_is_a_request_disagreement() {
    let dir = tempfile::tempdir().unwrap();
    let mut no_principal = request("no principal", 1, "allow", &["policy0"], &[]);
    no_principal.as_object_mut().unwrap().remove("principal");
    let mut bad_context = request("bad context", 1, "allow", &["policy0"], &[]);
    bad_context["context"] = json!({"n": "one"});
    let test = fixture(dir.path(), true, vec![no_principal, bad_context]);
    let report = run_test_file(&test).unwrap();
    assert_eq!(report.agree, 0);
    let fields: Vec<DisagreementField> = report.disagreements.iter().map(|d| d.field).collect();
    assert_eq!(
        fields,
        [DisagreementField::Request, DisagreementField::Request]
    );
    assert!(report.disagreements[0].actual.starts_with("no principal"));
}

#[test]
fn validation_differences_are_reported_apart_from_disagreements() {
    let dir = tempfile::tempdir().unwrap();
    let test = fixture(dir.path(), false, vec![request("r", -1, "deny", &[], &[])]);
    let report = run_test_file(&test).unwrap();
    assert_eq!(report.agree, 1);
    let version = cedar_policy::get_sdk_version();
    assert_eq!(
        report.validation_difference,
        Some(format!(
            "expected invalid, validates under cedar-policy {version}"
        ))
    );
    let summary = run_paths(&[dir.path().to_path_buf()]);
    assert_eq!(summary.disagree, 0);
    assert_eq!(
        summary.validation_differences,
        [format!(
            "tests/t.json: expected invalid, validates under cedar-policy {version}"
        )]
    );

    // A policy that does not typecheck, in a test that expects it to.
    let dir = tempfile::tempdir().unwrap();
    let test = fixture(dir.path(), true, vec![request("r", -1, "deny", &[], &[])]);
    write(
        &dir.path().join("data/policies.cedar"),
        "permit(principal, action, resource) when { context.n };",
    );
    let report = run_test_file(&test).unwrap();
    let difference = report.validation_difference.unwrap();
    assert!(
        difference.starts_with("expected valid, fails strict validation under cedar-policy"),
        "{difference}"
    );
}

#[test]
fn a_test_may_name_a_policy_directory() {
    let dir = tempfile::tempdir().unwrap();
    let test = fixture(
        dir.path(),
        true,
        vec![request("by id", 1, "allow", &["view-positive"], &[])],
    );
    write(
        &dir.path().join("data/writ/p.cedar"),
        r#"@id("view-positive") permit(principal, action, resource) when { context.n > 0 };"#,
    );
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&test).unwrap()).unwrap();
    json["policies"] = json!("data/writ");
    write(&test, &json.to_string());
    let report = run_test_file(&test).unwrap();
    assert_eq!(report.disagreements, []);
    assert_eq!(report.agree, 1);
}

#[test]
fn files_that_cannot_run_are_failures() {
    let dir = tempfile::tempdir().unwrap();
    let test = fixture(dir.path(), true, vec![request("r", -1, "deny", &[], &[])]);
    // An unknown field: the format is closed, as in cedar-testing.
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&test).unwrap()).unwrap();
    json["comment"] = json!("not allowed");
    write(&dir.path().join("tests/extra.json"), &json.to_string());
    // Names a schema that is not there.
    json.as_object_mut().unwrap().remove("comment");
    json["schema"] = json!("data/missing.cedarschema");
    write(&dir.path().join("tests/missing.json"), &json.to_string());
    // JSON that is not a test at all is passed over when found in a directory.
    write(&dir.path().join("tests/other.json"), r#"{"just": "data"}"#);

    let error = run_test_file(&dir.path().join("tests/extra.json")).unwrap_err();
    assert!(
        matches!(error, ConformanceError::NotATest { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("comment"), "{error}");
    assert!(run_test_file(&dir.path().join("tests/other.json")).is_err());

    let summary = run_paths(&[dir.path().join("tests")]);
    assert_eq!(
        (
            summary.tests,
            summary.requests,
            summary.agree,
            summary.disagree
        ),
        (3, 1, 1, 2)
    );
    let failed: Vec<&Path> = summary
        .failures
        .iter()
        .map(|(path, _)| path.as_path())
        .collect();
    assert_eq!(
        failed,
        [
            dir.path().join("tests/extra.json"),
            dir.path().join("tests/missing.json")
        ]
    );
}

#[test]
fn the_summary_serializes_to_the_five_headline_figures() {
    let summary = Summary {
        tests: 2,
        requests: 5,
        agree: 4,
        disagree: 1,
        validation_differences: vec![
            "t.json: expected invalid, validates under cedar-policy 4".to_owned()
        ],
        disagreements: vec![],
        failures: vec![(PathBuf::from("x.json"), "bad".to_owned())],
    };
    assert_eq!(
        serde_json::to_value(&summary).unwrap(),
        json!({
            "tests": 2,
            "requests": 5,
            "agree": 4,
            "disagree": 1,
            "validation_differences": ["t.json: expected invalid, validates under cedar-policy 4"],
        })
    );
}
