//! The JSON shape of one integration test, field for field as cedar-testing reads it.

use cedar_policy::Decision;
use serde::Deserialize;

/// One test file: the data it runs on and its requests.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JsonTest {
    /// The policy file (or, for writ's own tests, a directory of `*.cedar` files).
    pub(super) policies: String,
    /// The entities file (JSON), parsed against the schema.
    pub(super) entities: String,
    /// The schema, in Cedar's schema syntax.
    pub(super) schema: String,
    /// Whether the policies pass strict validation against the schema.
    pub(super) should_validate: bool,
    pub(super) requests: Vec<JsonRequest>,
}

/// One request and the answer the test expects.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct JsonRequest {
    pub(super) description: String,
    /// Entity UIDs in `{"type": ..., "id": ...}` or `{"__entity": {...}}` form. Optional in
    /// the format, but cedar-policy 4 has no unspecified entities, so a missing one makes
    /// the request unbuildable.
    #[serde(default)]
    pub(super) principal: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) action: Option<serde_json::Value>,
    #[serde(default)]
    pub(super) resource: Option<serde_json::Value>,
    pub(super) context: serde_json::Value,
    /// Whether the request is checked against the schema; absent means yes (the
    /// handwritten tests leave it out).
    #[serde(default = "yes")]
    pub(super) validate_request: bool,
    /// `"allow"` or `"deny"`, read with Cedar's own deserializer.
    pub(super) decision: Decision,
    /// Policy IDs that determined the decision.
    pub(super) reason: Vec<String>,
    /// Policy IDs whose evaluation errored.
    pub(super) errors: Vec<String>,
}

fn yes() -> bool {
    true
}
