//! The router: every endpoint, the token gate in front of those that need a token,
//! the body limit, and the JSON body extractor that turns malformed JSON into a
//! precise 400, oversized bodies into 413 and bodies that stall into 408.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde_json::{json, Value};

use crate::edge::gate;
use crate::error::ApiError;
use crate::grants::{approval_api, consent_api, elevation_api, keys_api};
use crate::state::{AppState, Shared};
use crate::vault::{api as vault_api, secrets};
use crate::{admin, authorize};

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The OpenAPI 3.1 description of every endpoint.
pub const OPENAPI: &str = include_str!("openapi.json");

/// A JSON body: 400 for malformed JSON or a wrong content type, 413 when too large.
#[derive(Debug)]
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
            });
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the body is larger than 1 MiB",
                    )
                } else if crate::edge::watch::is_body_timeout(&rejection) {
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "body_timeout",
                        "the body did not arrive in time",
                    )
                } else {
                    ApiError::bad_request("unreadable_body", "the body could not be read")
                }
            })?;
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not_json",
                "send the body as `application/json`",
            ));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|error| {
            ApiError::bad_request(
                "malformed_json",
                format!("the body is not valid JSON: {error}"),
            )
        })?;
        if !value.is_object() {
            return Err(ApiError::bad_request(
                "malformed_json",
                "the body must be a JSON object",
            ));
        }
        Ok(Self(value))
    }
}

/// The whole HTTP surface. `ledger` is the read-only ledger API, mounted as is.
///
/// Every route but the last few needs a bearer token, and the token gate checks it
/// before anything reads the body; the open routes (health, metrics, the document,
/// the vault's status, the ledger reads) are GETs that read no body.
pub fn router(state: Shared, ledger: Router) -> Router {
    let open = Router::new()
        .route("/v1/vault/status", get(vault_api::status))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .with_state(Arc::clone(&state));
    let api = Router::new()
        .route("/v1/authorize", post(authorize::authorize))
        .route("/v1/authorize/batch", post(authorize::authorize_batch))
        .route("/v1/decisions/{id}/outcome", post(authorize::outcome))
        .route(
            "/v1/entities",
            get(admin::list_entities).put(admin::put_entity),
        )
        .route(
            "/v1/entities/{uid}",
            get(admin::get_entity).delete(admin::delete_entity),
        )
        .route(
            "/v1/apikeys",
            get(admin::list_api_keys).post(admin::create_api_key),
        )
        .route("/v1/apikeys/{id}", delete(admin::revoke_api_key))
        .route("/v1/admin/policies/reload", post(admin::reload))
        .route("/v1/secrets", get(secrets::list_secrets))
        .route(
            "/v1/secrets/{name}",
            axum::routing::put(secrets::put_secret),
        )
        .route("/v1/secrets/{name}/reveal", post(secrets::reveal))
        .route(
            "/v1/secrets/{name}/versions/{version}",
            delete(secrets::delete_version),
        )
        .route("/v1/vault/unseal", post(vault_api::unseal))
        .route("/v1/vault/seal", post(vault_api::seal))
        .route("/v1/vault/rotate", post(vault_api::rotate))
        .route("/v1/vault/rewrap", post(vault_api::rewrap))
        .route("/v1/vault/retire", post(vault_api::retire))
        .route("/v1/vault/sealer", post(vault_api::set_sealer))
        .route("/v1/vault/leases", get(vault_api::list_leases))
        .route("/v1/vault/leases/{id}", get(vault_api::check_lease))
        .route(
            "/v1/vault/leases/{id}/revoke",
            post(vault_api::revoke_lease),
        )
        .route(
            "/v1/break-glass",
            get(elevation_api::list).post(elevation_api::request),
        )
        .route("/v1/break-glass/{id}", get(elevation_api::show))
        .route("/v1/break-glass/{id}/approve", post(elevation_api::approve))
        .route("/v1/break-glass/{id}/deny", post(elevation_api::deny))
        .route("/v1/break-glass/{id}/revoke", post(elevation_api::revoke))
        .route("/v1/break-glass/{id}/review", post(elevation_api::review))
        .route(
            "/v1/approvals",
            get(approval_api::list).post(approval_api::open),
        )
        .route("/v1/approvals/{id}", get(approval_api::show))
        .route("/v1/approvals/{id}/approve", post(approval_api::approve))
        .route("/v1/approvals/{id}/deny", post(approval_api::deny))
        .route(
            "/v1/consents",
            get(consent_api::list).post(consent_api::grant),
        )
        .route("/v1/consents/{id}", delete(consent_api::revoke))
        .route(
            "/v1/signing-key",
            get(keys_api::show).put(keys_api::register),
        )
        .route("/v1/whoami", get(whoami))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::clone(&state),
            gate::require_token::<AppState>,
        ))
        .with_state(Arc::clone(&state));
    api.merge(open)
        .merge(ledger)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
}

/// Who the bearer token says the caller is: what a client signs statements as.
async fn whoami(
    State(state): State<Shared>,
    headers: axum::http::HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let principal = state.principal(&headers)?;
    let (actor, workspace) = crate::state::actor_and_workspace(&principal);
    Ok(Json(json!({"principal": actor, "workspace": workspace})))
}

async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Ready while the ledger accepts appends; a failed append makes the server unready
/// (the log refuses further writes until it is restarted and recovered).
async fn readyz(State(state): State<Shared>) -> impl IntoResponse {
    if state.ledger_failed.load(Ordering::SeqCst) {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "ledger_failed"})),
        )
    } else {
        (
            StatusCode::OK,
            Json(
                json!({"status": "ready", "policy_set": state.engine.snapshot().policies().digest().to_string()}),
            ),
        )
    }
}

async fn metrics(State(state): State<Shared>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method",
    )
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}
