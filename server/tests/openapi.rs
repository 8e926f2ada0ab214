//! The OpenAPI document served at `/openapi.json` (`server/src/openapi.json`): it
//! parses, is OpenAPI 3.1, describes exactly the routes the server has, and is
//! internally consistent (operation ids, 2xx answers, `$ref`s, path parameters).
#![cfg(test)]

use std::collections::BTreeSet;

use serde_json::Value;
use writ_server::routes::OPENAPI;

/// Every (method, path) the server routes, in OpenAPI form (`{*path}` is `{path}`).
///
/// MAINTAINERS: this list, `server/src/openapi.json` and the routers must agree. When
/// you add, remove or rename a route in `server/src/routes.rs` or
/// `server/src/ledger_api.rs`, update this list AND the document (and docs/API.md).
const ROUTES: [(&str, &str); 32] = [
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
    ("post", "/v1/vault/leases/{id}/revoke"),
    ("get", "/healthz"),
    ("get", "/readyz"),
    ("get", "/metrics"),
    ("get", "/openapi.json"),
    // ledger_api.rs
    ("get", "/ledger/checkpoint"),
    ("get", "/ledger/tile/{path}"),
    ("get", "/v1/ledger/proof/inclusion"),
    ("get", "/v1/ledger/proof/consistency"),
];

/// Operations that need no bearer token (`security: []` in the document).
const PUBLIC: [&str; 9] = [
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/ledger/checkpoint",
    "/ledger/tile/{path}",
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
