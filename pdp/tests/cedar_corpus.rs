//! Cedar's own integration tests, run through `writ_pdp::conformance` against the
//! cedar-policy that writ builds with.
//!
//! The data is vendored in `tests/cedar-corpus/` (cedar-integration-tests at f161e9f,
//! Apache-2.0; see its ABOUT.md): 22 handwritten tests and a tarball of 7,809 generated
//! ones, unpacked into a temporary directory here. Every request must agree; the known
//! validation differences are listed by name so that a Cedar upgrade that changes them
//! is noticed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use writ_pdp::conformance::{run_paths, run_test_file, DisagreementField};

const HANDWRITTEN_TESTS: usize = 22;
const HANDWRITTEN_REQUESTS: usize = 74;
const CORPUS_TESTS: usize = 7_809;
const CORPUS_REQUESTS: usize = 62_472;

/// Corpus tests that expect `shouldValidate: false` (the corpus was generated with
/// Cedar 4.10) but pass strict validation under cedar-policy 4.14.
const VALIDATE_UNDER_4_14: [&str; 35] = [
    "0abc1d31e56e407cf1775de09b3e9a97b2dd202b.json",
    "0b55d9e92dcea359a328572cdb27b41b8d600538.json",
    "0faf76faec0b976254309c5c828d4a11cccd9eb7.json",
    "14a3e412661654af32b458d1044626fddb604d58.json",
    "18ffbaf79ff1e3618110aa8107e0de57d6d2793c.json",
    "1fac75fff64288c08b67a1005ed27ce3ce7bad8b.json",
    "3640e57cbf2f370e545995b762f63d419395736f.json",
    "36ce0d10182a0d1f930224fd741149c8245ed4d1.json",
    "3e13f44e56b14a69c26dfd763d854cbde98ed5f4.json",
    "41400cdb4a0cfe0e5295a04e78ca43414cd2a4aa.json",
    "417c87c2b5d75ee24060847be9af33b2a7125a61.json",
    "471cc9cfc42b8a7ccc28578579d69cbb6a60655e.json",
    "4945bd08148a010c211ffabb00e21ebcfcbdc88b.json",
    "4bb694343cff054757360bb6bcb7f987b86a260b.json",
    "4c2391eb1aba60d52e6bea12a699326cfbc836d2.json",
    "52017e026636c59eff70268dd6df1ede79a5bcbd.json",
    "592507356e7a096074376f2632d4a12663e11a51.json",
    "5ceb8004b259ec507fc9b9dc2494a38ff37ef034.json",
    "5f34bb0690f73dd764d2e77bb02ca23b3d93e96d.json",
    "654e97153b9f78baf902198924e209b0ace7399f.json",
    "732d19bec666d876c40660f127824f525d8528fd.json",
    "902f4b32c1d326a0a473f1def29c08b8fdef91ff.json",
    "97b685e96cba2c4fa28203c96c69a55509870c11.json",
    "99cda07a31ccd75a5f64d0a401eb343e5af002fa.json",
    "9b78f4ab718999bb77480ebb5b8bf30999ebbb54.json",
    "a3057b7552c12af674c8f448086b456494d042f1.json",
    "adc47c033d91bb5ea9f793ce48234924676e3a65.json",
    "b76dc8fc97f573b63547af44b784753badc70d42.json",
    "c54dbee8ca6742ac5299df0cb9f1308fcc679da1.json",
    "c9c6ed1521c2b9608c28224de1a289207b6381cd.json",
    "cba8f5b1d3558f93b1ef4420e5e0fce843de9d74.json",
    "d79df9fb9b44cc14b1640d9bdfe2767a85535069.json",
    "deae4c073e620d9f93e0c24e19a44d120c2e1d04.json",
    "e00bc91fe981b3d1109dee35c69b6e4d0146494e.json",
    "edefda397789ceda19e9d403adff6192ddf267de.json",
];

fn vendored() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cedar-corpus")
}

/// Unpacks the generated corpus into `into` and returns its `corpus-tests/` directory.
fn unpack_corpus(into: &Path) -> Result<PathBuf, String> {
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(vendored().join("corpus-tests.tar.gz"))
        .arg("-C")
        .arg(into)
        .status()
        .map_err(|e| format!("cannot run tar: {e}"))?;
    if !status.success() {
        return Err(format!("tar failed: {status}"));
    }
    Ok(into.join("corpus-tests"))
}

#[test]
fn every_request_of_the_handwritten_and_generated_tests_agrees() {
    let scratch = tempfile::tempdir().unwrap();
    let corpus = unpack_corpus(scratch.path()).unwrap();

    let started = Instant::now();
    let summary = run_paths(&[vendored().join("tests"), corpus]);
    eprintln!(
        "{} tests, {} requests in {:.2?}",
        summary.tests,
        summary.requests,
        started.elapsed()
    );

    assert!(
        summary.failures.is_empty(),
        "files that did not run: {:#?}",
        summary.failures
    );
    let first: Vec<String> = summary
        .disagreements
        .iter()
        .take(20)
        .map(ToString::to_string)
        .collect();
    assert!(
        summary.disagreements.is_empty(),
        "{} disagreements, first: {first:#?}",
        summary.disagreements.len()
    );
    assert_eq!(summary.tests, HANDWRITTEN_TESTS + CORPUS_TESTS);
    assert_eq!(summary.requests, HANDWRITTEN_REQUESTS + CORPUS_REQUESTS);
    assert_eq!(summary.agree, summary.requests);
    assert_eq!(summary.disagree, 0);

    let mut names = BTreeSet::new();
    for difference in &summary.validation_differences {
        let (name, direction) = difference.split_once(": ").unwrap();
        assert!(
            direction.starts_with("expected invalid, validates under cedar-policy "),
            "unexpected validation difference: {difference}"
        );
        names.insert(name);
    }
    let expected: BTreeSet<&str> = VALIDATE_UNDER_4_14.into_iter().collect();
    assert_eq!(names, expected, "{:#?}", summary.validation_differences);
    assert_eq!(
        summary.validation_differences.len(),
        VALIDATE_UNDER_4_14.len()
    );
}

#[test]
fn a_corrupted_expectation_is_a_disagreement() {
    let original = vendored().join("tests/decimal/1.json");
    let mut test: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&original).unwrap()).unwrap();
    // The copy lives elsewhere, so it names its data by absolute path.
    for key in ["policies", "entities", "schema"] {
        let relative = test[key].as_str().unwrap().to_owned();
        test[key] = vendored().join(relative).display().to_string().into();
    }
    assert_eq!(test["requests"][0]["decision"], "allow");
    test["requests"][0]["decision"] = "deny".into();
    let description = test["requests"][0]["description"]
        .as_str()
        .unwrap()
        .to_owned();

    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("flipped.json");
    std::fs::write(&copy, serde_json::to_string_pretty(&test).unwrap()).unwrap();

    let report = run_test_file(&copy).unwrap();
    assert_eq!(report.requests, 2);
    assert_eq!(report.agree, 1);
    assert_eq!(report.disagreements.len(), 1, "{:#?}", report.disagreements);
    let disagreement = &report.disagreements[0];
    assert_eq!(disagreement.file, copy);
    assert_eq!(disagreement.description, description);
    assert_eq!(disagreement.field, DisagreementField::Decision);
    assert_eq!(
        (disagreement.expected.as_str(), disagreement.actual.as_str()),
        ("deny", "allow")
    );

    let summary = run_paths(&[scratch.path().to_path_buf()]);
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
