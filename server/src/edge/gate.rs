//! The token gate: the bearer token of every route that needs one is verified before
//! anything reads the request body.
//!
//! A stranger who sends a large body, or half of one and then stalls, gets 401 at
//! once and costs no more than its request head: the body is never buffered, and
//! hyper closes a connection whose body was left unread. Handlers still verify the
//! token themselves (`AppState::principal`) and use the principal they get; the
//! gate only answers early, with the same answer the handler would have given.
//!
//! No route of writ takes a body without a token (`/healthz`, `/readyz`,
//! `/metrics`, `/openapi.json`, `GET /v1/vault/status` and the ledger reads are all
//! GETs whose handlers never read one), so there is no unauthenticated body to bound.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// What can verify a request's bearer token.
pub trait TokenCheck: Send + Sync + 'static {
    /// `Ok` when the `Authorization` header holds a token that verifies; the error is
    /// the answer (401, 400 `duplicate_authorization`, or 500).
    fn check_token(&self, headers: &HeaderMap) -> Result<(), ApiError>;
}

impl TokenCheck for AppState {
    fn check_token(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        // The same call as the handlers' (it counts and logs a refusal): a refused
        // request never reaches its handler, so it is counted once.
        self.principal(headers).map(|_| ())
    }
}

/// The middleware (`axum::middleware::from_fn_with_state`) of every route that needs
/// a token: answers the token's error without reading the body.
pub async fn require_token<S: TokenCheck>(
    State(state): State<Arc<S>>,
    request: Request,
    next: Next,
) -> Response {
    match state.check_token(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(error) => error.into_response(),
    }
}
