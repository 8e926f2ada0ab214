//! The OpenAPI document served at `/openapi.json` (`server/src/openapi.json`): it
//! parses, is OpenAPI 3.1, describes exactly the routes the server has, and is
//! internally consistent (operation ids, 2xx answers, `$ref`s, path parameters,
//! examples that fit their schemas); the vault's error codes and sealer kinds are
//! the ones the code uses, and docs/API.md lists those codes.
#![cfg(test)]

use std::collections::BTreeSet;

use serde_json::Value;
use writ_server::routes::OPENAPI;

/// Every (method, path) the server routes, in OpenAPI form (`{*path}` is `{path}`).
///
/// MAINTAINERS: this list, `server/src/openapi.json` and the routers must agree. When
/// you add, remove or rename a route in `server/src/routes.rs` or
/// `server/src/ledger_api.rs`, update this list AND the document (and docs/API.md).
const ROUTES: [(&str, &str); 52] = [
    // routes.rs
    ("post", "/v1/authorize"),
    ("post", "/v1/authorize/batch"),
    ("post", "/v1/decisions/{id}/outcome"),
    ("get", "/v1/entities"),
    ("put", "/v1/entities"),
    ("get", "/v1/entities/{uid}"),
    ("delete", "/v1/entities/{uid}"),
    ("get", "/v1/apikeys"),
    ("post", "/v1/apikeys"),
    ("delete", "/v1/apikeys/{id}"),
    ("post", "/v1/admin/policies/reload"),
    ("get", "/v1/secrets"),
    ("put", "/v1/secrets/{name}"),
    ("post", "/v1/secrets/{name}/reveal"),
    ("delete", "/v1/secrets/{name}/versions/{version}"),
    ("get", "/v1/vault/status"),
    ("post", "/v1/vault/unseal"),
    ("post", "/v1/vault/seal"),
    ("post", "/v1/vault/rotate"),
    ("post", "/v1/vault/rewrap"),
    ("post", "/v1/vault/retire"),
    ("post", "/v1/vault/sealer"),
    ("get", "/v1/vault/leases"),
    ("get", "/v1/vault/leases/{id}"),
    ("post", "/v1/vault/leases/{id}/revoke"),
    ("get", "/v1/break-glass"),
    ("post", "/v1/break-glass"),
    ("get", "/v1/break-glass/{id}"),
    ("post", "/v1/break-glass/{id}/approve"),
    ("post", "/v1/break-glass/{id}/deny"),
    ("post", "/v1/break-glass/{id}/revoke"),
    ("post", "/v1/break-glass/{id}/review"),
    ("get", "/v1/approvals"),
    ("post", "/v1/approvals"),
    ("get", "/v1/approvals/{id}"),
    ("post", "/v1/approvals/{id}/approve"),
    ("post", "/v1/approvals/{id}/deny"),
    ("get", "/v1/consents"),
    ("post", "/v1/consents"),
    ("delete", "/v1/consents/{id}"),
    ("get", "/v1/signing-key"),
    ("put", "/v1/signing-key"),
    ("get", "/v1/whoami"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    // ledger_api.rs
    ("get", "/ledger/checkpoint"),
    ("get", "/ledger/tile/{path}"),
    ("get", "/v1/ledger/proof/inclusion"),
    ("get", "/v1/ledger/proof/consistency"),
    ("get", "/v1/ledger/entries"),
];

/// Operations that need no bearer token (`security: []` in the document).
/// (`/ledger/tile/{path}` is not: its hash tiles are, its entry bundles need an
/// Operator's or Auditor's token, so its `security` makes the token optional.)
const PUBLIC: [&str; 8] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/ledger/checkpoint",
    "/v1/ledger/proof/inclusion",
    "/v1/ledger/proof/consistency",
    "/v1/vault/status",
];

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn document() -> Value {
    serde_json::from_str(OPENAPI).unwrap_or_else(|error| panic!("openapi.json: {error}"))
}

/// Every operation: (method, path, operation object).
fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let paths = doc["paths"].as_object().expect("`paths` is an object");
    let mut found = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for (key, operation) in item {
            if METHODS.contains(&key.as_str()) {
                found.push((key.clone(), path.clone(), operation));
            }
        }
    }
    found
}

/// Follows a local `$ref` (`#/...`) to what it names.
fn resolve<'a>(doc: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("`{reference}` is not a local reference"));
            doc.pointer(pointer)
                .unwrap_or_else(|| panic!("`{reference}` resolves to nothing"))
        }
        None => value,
    }
}

/// The (method, path) pairs routed in a router source file: each `.route("path", ...)`
/// call and the method functions (`get(`, `.put(`, `axum::routing::put(`, ...) inside it.
fn routes_in_source(source: &str) -> BTreeSet<(String, String)> {
    let mut found = BTreeSet::new();
    let mut rest = source;
    while let Some(start) = rest.find(".route(") {
        let call = &rest[start + ".route(".len()..];
        // The call's arguments, up to its closing parenthesis.
        let mut depth = 1usize;
        let mut end = call.len();
        for (offset, c) in call.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = offset;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &call[..end];
        let path = args
            .split('"')
            .nth(1)
            .unwrap_or_else(|| panic!("a `.route(` call without a path: {args}"))
            .replace("{*", "{");
        for method in ["get", "post", "put", "delete", "patch"] {
            let token = format!("{method}(");
            let mut from = 0;
            while let Some(at) = args[from..].find(&token) {
                let at = from + at;
                let prefix = &args[..at];
                let before = prefix.chars().last();
                // `get(` alone, `.get(` chained, or a path to axum's own (`routing::get(`);
                // never a longer name (`forget(`) or another module's function (`foo::get(`).
                let method_call = !before
                    .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
                    || prefix.ends_with("routing::");
                if method_call {
                    found.insert((method.to_owned(), path.clone()));
                }
                from = at + token.len();
            }
        }
        rest = &call[end..];
    }
    found
}

fn expected() -> BTreeSet<(String, String)> {
    ROUTES
        .iter()
        .map(|(method, path)| ((*method).to_owned(), (*path).to_owned()))
        .collect()
}

#[test]
fn the_document_is_openapi_3_1() {
    let doc = document();
    let version = doc["openapi"].as_str().expect("`openapi` is a string");
    assert!(version.starts_with("3.1."), "openapi is `{version}`");
    assert!(doc["info"]["title"].is_string());
    assert!(doc["info"]["version"].is_string());
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

#[test]
fn the_document_describes_exactly_the_routes() {
    let doc = document();
    let described: BTreeSet<(String, String)> = operations(&doc)
        .into_iter()
        .map(|(method, path, _)| (method, path))
        .collect();
    let expected = expected();
    assert_eq!(
        described.difference(&expected).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "described in openapi.json but not in the route list"
    );
    assert_eq!(
        expected.difference(&described).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in the route list but not described in openapi.json"
    );
}

#[test]
fn the_route_list_matches_the_router_sources() {
    let mut routed = routes_in_source(include_str!("../src/routes.rs"));
    routed.extend(routes_in_source(include_str!("../src/ledger_api.rs")));
    assert_eq!(routed, expected(), "routes.rs + ledger_api.rs vs ROUTES");
}

#[test]
fn every_operation_is_complete() {
    let doc = document();
    let mut ids = BTreeSet::new();
    for (method, path, operation) in operations(&doc) {
        let name = format!("{} {path}", method.to_uppercase());
        let id = operation["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{name} has no operationId"));
        assert!(
            ids.insert(id.to_owned()),
            "{name}: operationId `{id}` is used twice"
        );
        let responses = operation["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{name} has no responses"));
        assert!(
            responses.keys().any(|status| status.starts_with('2')),
            "{name} has no 2xx response"
        );
        for (status, response) in responses {
            let response = resolve(&doc, response);
            assert!(
                response["description"].is_string(),
                "{name} {status} has no description"
            );
        }

        // Public operations say so; the others may answer 401.
        let public = operation
            .get("security")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        assert_eq!(public, PUBLIC.contains(&path.as_str()), "{name}: security");
        if !public {
            assert!(responses.contains_key("401"), "{name} has no 401 response");
        }

        // Every `{param}` of the path is declared as a path parameter.
        let declared: BTreeSet<&str> = operation["parameters"]
            .as_array()
            .map(|parameters| {
                parameters
                    .iter()
                    .map(|parameter| resolve(&doc, parameter))
                    .filter(|parameter| parameter["in"] == "path")
                    .filter_map(|parameter| parameter["name"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        let templated: BTreeSet<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        assert_eq!(declared, templated, "{name}: path parameters");
    }
}

#[test]
fn every_ref_resolves() {
    fn walk<'a>(value: &'a Value, refs: &mut Vec<&'a str>) {
        match value {
            Value::Object(map) => {
                for (key, item) in map {
                    match (key.as_str(), item) {
                        ("$ref", Value::String(reference)) => refs.push(reference),
                        _ => walk(item, refs),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|item| walk(item, refs)),
            _ => {}
        }
    }
    let doc = document();
    let mut refs = Vec::new();
    walk(&doc, &mut refs);
    assert!(!refs.is_empty());
    for reference in refs {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("`{reference}` is not a local reference"));
        assert!(
            doc.pointer(pointer).is_some(),
            "`{reference}` resolves to nothing"
        );
    }
}

#[test]
fn error_answers_use_the_envelope() {
    let doc = document();
    for (method, path, operation) in operations(&doc) {
        let responses = operation["responses"].as_object().expect("responses");
        for (status, response) in responses {
            let response = resolve(&doc, response);
            let Some(schema) = response.pointer("/content/application~1json/schema") else {
                continue;
            };
            // `/readyz` answers 503 with its own status object, not an error.
            if status.starts_with('2') || path == "/readyz" {
                continue;
            }
            assert_eq!(
                schema["$ref"], "#/components/schemas/Error",
                "{method} {path} {status}"
            );
            let codes = response["x-error-codes"]
                .as_array()
                .unwrap_or_else(|| panic!("{method} {path} {status}: no x-error-codes"));
            assert!(!codes.is_empty(), "{method} {path} {status}");
        }
    }
}

#[test]
fn the_source_scanner_reads_routes() {
    let source = r#"
        Router::new()
            .route("/a/{id}", get(admin::get_entity).delete(admin::delete_entity))
            .route("/b/{*rest}", post(handler))
            .route("/c/{name}", axum::routing::put(handler))
            .route("/d", post(foo::get(x)))
    "#;
    let found: Vec<(String, String)> = routes_in_source(source).into_iter().collect();
    let want: Vec<(String, String)> = [
        ("delete", "/a/{id}"),
        ("get", "/a/{id}"),
        ("post", "/b/{rest}"),
        ("post", "/d"),
        ("put", "/c/{name}"),
    ]
    .iter()
    .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
    .collect();
    assert_eq!(found, want);
}

/// The JSON type of a value, by JSON Schema's names.
fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(number) if number.is_i64() || number.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks an example against its schema as far as the document's schemas go: the
/// type, `enum` and `const`; for objects the required properties and, with
/// `additionalProperties: false`, no others; then each property and array item.
fn check_example(doc: &Value, at: &str, schema: &Value, example: &Value, faults: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    if let Some(wanted) = schema.get("type") {
        let types: Vec<&str> = match wanted {
            Value::String(one) => vec![one.as_str()],
            Value::Array(many) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let actual = json_type(example);
        let fits = types.contains(&actual) || (actual == "integer" && types.contains(&"number"));
        if !fits {
            faults.push(format!("{at}: a {actual}, the schema says {types:?}"));
        }
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(example) {
            faults.push(format!("{at}: {example} is not one of {allowed:?}"));
        }
    }
    if let Some(constant) = schema.get("const") {
        if constant != example {
            faults.push(format!("{at}: {example} is not {constant}"));
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (example, schema.get("items")) {
        for (index, item) in items.iter().enumerate() {
            check_example(doc, &format!("{at}[{index}]"), item_schema, item, faults);
        }
        return;
    }
    let (Value::Object(fields), Some(properties)) =
        (example, schema.get("properties").and_then(Value::as_object))
    else {
        return;
    };
    for required in schema["required"].as_array().into_iter().flatten() {
        let required = required.as_str().unwrap_or_default();
        if !fields.contains_key(required) {
            faults.push(format!("{at}: no `{required}`, which is required"));
        }
    }
    let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
    for (key, value) in fields {
        match properties.get(key) {
            Some(property) => check_example(doc, &format!("{at}.{key}"), property, value, faults),
            None if closed => faults.push(format!("{at}: `{key}` is not a property")),
            None => {}
        }
    }
}

/// Every example (of a schema, a request body or a JSON answer) fits its schema, so
/// an answer that changes shape cannot leave a stale example behind.
#[test]
fn examples_fit_their_schemas() {
    let doc = document();
    let mut faults = Vec::new();
    let mut checked = 0;
    let schemas = doc["components"]["schemas"]
        .as_object()
        .expect("`components.schemas` is an object");
    for (name, schema) in schemas {
        let examples = schema.get("example").into_iter().chain(
            schema
                .get("examples")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
        for example in examples {
            check_example(&doc, name, schema, example, &mut faults);
            checked += 1;
        }
    }
    for (method, path, operation) in operations(&doc) {
        let name = format!("{} {path}", method.to_uppercase());
        let body = operation.pointer("/requestBody/content/application~1json");
        if let Some((schema, example)) =
            body.and_then(|body| Some((body.get("schema")?, body.get("example")?)))
        {
            check_example(&doc, &format!("{name} body"), schema, example, &mut faults);
            checked += 1;
        }
        let responses = operation["responses"].as_object().expect("responses");
        for (status, response) in responses {
            let response = resolve(&doc, response);
            let content = response.pointer("/content/application~1json");
            if let Some((schema, example)) =
                content.and_then(|content| Some((content.get("schema")?, content.get("example")?)))
            {
                check_example(
                    &doc,
                    &format!("{name} {status}"),
                    schema,
                    example,
                    &mut faults,
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 0);
    assert!(
        faults.is_empty(),
        "examples that do not fit:\n{}",
        faults.join("\n")
    );
}

/// The snake_case string literals of a piece of Rust source (error codes and the like).
fn code_literals(source: &str) -> BTreeSet<String> {
    source
        .split('"')
        .skip(1)
        .step_by(2)
        .filter(|text| {
            text.starts_with(|c: char| c.is_ascii_lowercase())
                && text
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
        .map(str::to_owned)
        .collect()
}

/// The text from `start` to the first `end` after it (a closing brace on its own line).
fn item_from<'a>(source: &'a str, start: &str, end: &str) -> &'a str {
    let from = source
        .find(start)
        .unwrap_or_else(|| panic!("`{start}` is not in the source"));
    let rest = &source[from..];
    let to = rest.find(end).map_or(rest.len(), |to| to + end.len());
    &rest[..to]
}

/// Every error code the vault's errors map to (`server/src/error.rs`) is one some
/// answer of the document can carry, and is in the error table of docs/API.md.
#[test]
fn vault_error_codes_are_documented() {
    let doc = document();
    let mut described = BTreeSet::new();
    let mut responses: Vec<&Value> = doc["components"]["responses"]
        .as_object()
        .map(|responses| responses.values().collect())
        .unwrap_or_default();
    for (_, _, operation) in operations(&doc) {
        if let Some(answers) = operation["responses"].as_object() {
            responses.extend(answers.values());
        }
    }
    for response in responses {
        for code in response["x-error-codes"].as_array().into_iter().flatten() {
            described.insert(code.as_str().unwrap_or_default().to_owned());
        }
    }
    let source = include_str!("../src/error.rs");
    let codes = code_literals(item_from(
        source,
        "impl From<writ_vault::VaultError> for ApiError",
        "\n}\n",
    ));
    assert!(codes.contains("vault_sealed"), "the scan found {codes:?}");
    let table = include_str!("../../docs/API.md");
    for code in &codes {
        assert!(
            described.contains(code),
            "`{code}` is in no x-error-codes of openapi.json"
        );
        assert!(
            table.contains(&format!("| `{code}` |")),
            "`{code}` is not in the error table of docs/API.md"
        );
    }
}

/// `GET /v1/vault/status`, the sealer endpoint and the ledger entries name a sealer
/// by the vault's kinds (`writ_vault::Sealer::kind`).
#[test]
fn sealer_kinds_agree() {
    let doc = document();
    let kinds = code_literals(item_from(
        include_str!("../../vault/src/seal.rs"),
        "    pub fn kind(&self)",
        "\n    }\n",
    ));
    assert!(kinds.contains("key_file"), "the scan found {kinds:?}");
    let listed = |pointer: &str| -> BTreeSet<String> {
        doc.pointer(pointer)
            .and_then(Value::as_array)
            .unwrap_or_else(|| panic!("`{pointer}` is not an array"))
            .iter()
            .map(|kind| kind.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let status = listed("/components/schemas/VaultStatus/properties/sealer/enum");
    assert_eq!(status, kinds, "VaultStatus.sealer vs Sealer::kind");
    let changed = listed("/components/schemas/SealerAnswer/properties/sealer/enum");
    assert!(
        changed.is_subset(&kinds),
        "SealerAnswer.sealer {changed:?} vs Sealer::kind {kinds:?}"
    );
}
