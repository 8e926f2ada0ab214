//! Runs one test file: loads what it names, validates, evaluates each request and
//! compares the answers, with the semantics of cedar-testing's `integration_testing.rs`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use cedar_policy::{
    AuthorizationError, Authorizer, Context, Decision, Entities, EntityUid, PolicySet, Request,
    Schema, ValidationMode, Validator,
};

use super::error::{one_line, ConformanceError};
use super::format::{JsonRequest, JsonTest};
use super::paths::resolve;
use super::policy_dir::load_policy_dir;
use super::{Disagreement, DisagreementField, TestFileReport};

/// A parsed schema and a validator for it.
#[derive(Debug)]
struct LoadedSchema {
    schema: Schema,
    validator: Validator,
}

/// Parsed schemas by their text, shared by the worker threads.
///
/// Parsing a schema is the largest single cost of a generated test (Cedar's schema
/// grammar runs a full parse for every identifier), and the 7,809 corpus tests hold only
/// 4,659 distinct schemas under as many file names, so the key is the text, not the path.
#[derive(Debug, Default)]
pub(super) struct SchemaCache {
    loaded: Mutex<HashMap<String, Arc<LoadedSchema>>>,
}

impl SchemaCache {
    fn get(&self, path: &Path) -> Result<Arc<LoadedSchema>, ConformanceError> {
        let text = read(path)?;
        // A worker that panicked cannot leave the map half-updated: insert is the only write.
        let cached = self
            .loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&text)
            .cloned();
        if let Some(loaded) = cached {
            return Ok(loaded);
        }
        // Parsed outside the lock; two workers may both parse a schema once, which is harmless.
        let (schema, _warnings) =
            Schema::from_cedarschema_str(&text).map_err(|e| ConformanceError::Schema {
                path: path.display().to_string(),
                reason: one_line(e),
            })?;
        let loaded = Arc::new(LoadedSchema {
            validator: Validator::new(schema.clone()),
            schema,
        });
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(text, Arc::clone(&loaded));
        Ok(loaded)
    }
}

/// Runs the test file at `path`.
///
/// With `explicit` false (a file found by walking a directory), JSON that is not an
/// object with a `requests` field is not taken for a test and yields `Ok(None)`; an
/// object with `requests` that does not fit the format is an error, so a damaged test
/// is reported rather than skipped. With `explicit` true, anything but a test is an error.
pub(super) fn run_file(
    path: &Path,
    cache: &SchemaCache,
    explicit: bool,
) -> Result<Option<TestFileReport>, ConformanceError> {
    let text = read(path)?;
    match serde_json::from_str::<JsonTest>(&text) {
        Ok(test) => run_test(path, test, cache).map(Some),
        Err(error) if explicit || has_requests(&text) => Err(ConformanceError::NotATest {
            path: path.display().to_string(),
            reason: one_line(error),
        }),
        Err(_) => Ok(None),
    }
}

/// Whether `text` is a JSON object with a `requests` field: meant as a test.
fn has_requests(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|json| json.get("requests").is_some())
}

fn run_test(
    path: &Path,
    test: JsonTest,
    cache: &SchemaCache,
) -> Result<TestFileReport, ConformanceError> {
    let policies = load_policies(&resolve(path, &test.policies)?)?;
    let loaded = cache.get(&resolve(path, &test.schema)?)?;
    let entities_path = resolve(path, &test.entities)?;
    let entities =
        Entities::from_json_str(&read(&entities_path)?, Some(&loaded.schema)).map_err(|e| {
            ConformanceError::Entities {
                path: entities_path.display().to_string(),
                reason: one_line(e),
            }
        })?;

    let validation_difference =
        validation_difference(&loaded.validator, &policies, test.should_validate);

    let authorizer = Authorizer::new();
    let mut report = TestFileReport {
        file: path.to_path_buf(),
        requests: test.requests.len(),
        agree: 0,
        disagreements: Vec::new(),
        validation_difference,
    };
    for request in test.requests {
        let found = check_request(
            path,
            request,
            &loaded.schema,
            &policies,
            &entities,
            &authorizer,
        );
        if found.is_empty() {
            report.agree = report.agree.saturating_add(1);
        }
        report.disagreements.extend(found);
    }
    Ok(report)
}

/// A policy file is parsed whole (IDs `policy0`, `policy1`, ... in text order); a
/// directory is loaded by `@id` (writ's extension of the format).
fn load_policies(path: &Path) -> Result<PolicySet, ConformanceError> {
    if path.is_dir() {
        return load_policy_dir(path);
    }
    PolicySet::from_str(&read(path)?).map_err(|e| ConformanceError::Policies {
        path: path.display().to_string(),
        reason: one_line(e),
    })
}

/// Strict validation, as cedar-testing does it: passing means no errors (warnings allowed).
fn validation_difference(
    validator: &Validator,
    policies: &PolicySet,
    should_validate: bool,
) -> Option<String> {
    let result = validator.validate(policies, ValidationMode::Strict);
    let version = cedar_policy::get_sdk_version();
    match (should_validate, result.validation_passed()) {
        (false, true) => Some(format!(
            "expected invalid, validates under cedar-policy {version}"
        )),
        (true, false) => {
            let first = result
                .validation_errors()
                .next()
                .map(|e| format!(": {}", one_line(e)))
                .unwrap_or_default();
            Some(format!(
                "expected valid, fails strict validation under cedar-policy {version}{first}"
            ))
        }
        _ => None,
    }
}

/// Evaluates one request and returns what differs from the expectation (empty: agreement).
fn check_request(
    file: &Path,
    request: JsonRequest,
    schema: &Schema,
    policies: &PolicySet,
    entities: &Entities,
    authorizer: &Authorizer,
) -> Vec<Disagreement> {
    let JsonRequest {
        description,
        principal,
        action,
        resource,
        context,
        validate_request,
        decision,
        reason,
        errors,
    } = request;
    let disagreement = |field, expected: String, actual: String| Disagreement {
        file: file.to_path_buf(),
        description: description.clone(),
        field,
        expected,
        actual,
    };
    let built = build_request(
        principal,
        action,
        resource,
        context,
        validate_request,
        schema,
    );
    let cedar_request = match built {
        Ok(built) => built,
        Err(problem) => {
            let field = DisagreementField::Request;
            return vec![disagreement(field, "a valid request".to_owned(), problem)];
        }
    };
    let response = authorizer.is_authorized(&cedar_request, policies, entities);

    let mut found = Vec::new();
    if response.decision() != decision {
        let (expected, actual) = (decision_name(decision), decision_name(response.decision()));
        found.push(disagreement(
            DisagreementField::Decision,
            expected.to_owned(),
            actual.to_owned(),
        ));
    }
    let actual_reason: BTreeSet<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    let expected_reason: BTreeSet<String> = reason.into_iter().collect();
    if actual_reason != expected_reason {
        found.push(disagreement(
            DisagreementField::Reason,
            show(&expected_reason),
            show(&actual_reason),
        ));
    }
    let actual_errors: BTreeSet<String> = response
        .diagnostics()
        .errors()
        .map(|error| {
            let AuthorizationError::PolicyEvaluationError(error) = error;
            error.policy_id().to_string()
        })
        .collect();
    let expected_errors: BTreeSet<String> = errors.into_iter().collect();
    if actual_errors != expected_errors {
        found.push(disagreement(
            DisagreementField::Errors,
            show(&expected_errors),
            show(&actual_errors),
        ));
    }
    found
}

/// Builds the request as cedar-testing does: the context is always parsed against the
/// action's context type in the schema; the request as a whole is checked against the
/// schema only when the test says `validateRequest` (the default).
fn build_request(
    principal: Option<serde_json::Value>,
    action: Option<serde_json::Value>,
    resource: Option<serde_json::Value>,
    context: serde_json::Value,
    validate_request: bool,
    schema: &Schema,
) -> Result<Request, String> {
    let uid = |role: &str, json: Option<serde_json::Value>| {
        let json =
            json.ok_or_else(|| format!("no {role} (cedar-policy 4 has no unspecified entities)"))?;
        EntityUid::from_json(json).map_err(|e| format!("invalid {role}: {}", one_line(e)))
    };
    let principal = uid("principal", principal)?;
    let action = uid("action", action)?;
    let resource = uid("resource", resource)?;
    let context = Context::from_json_value(context, Some((schema, &action)))
        .map_err(|e| format!("invalid context: {}", one_line(e)))?;
    Request::new(
        principal,
        action,
        resource,
        context,
        validate_request.then_some(schema),
    )
    .map_err(|e| format!("invalid request: {}", one_line(e)))
}

fn decision_name(decision: Decision) -> &'static str {
    match decision {
        Decision::Allow => "allow",
        Decision::Deny => "deny",
    }
}

/// A set of policy IDs as `[a, b]`.
fn show(ids: &BTreeSet<String>) -> String {
    format!(
        "[{}]",
        ids.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn read(path: &Path) -> Result<String, ConformanceError> {
    std::fs::read_to_string(path).map_err(|e| ConformanceError::Io {
        path: path.display().to_string(),
        reason: one_line(e),
    })
}
