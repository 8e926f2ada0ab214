//! Verified identity: who a request comes from, proven by an API key or a JWT.
//!
//! A bearer token is turned into a [`Principal`] (a Cedar entity such as
//! `User::"alice"` plus the workspace it acts in) and nothing else: what the
//! principal may do is the PDP's business. Tokens that start with `writ_` are API
//! keys, looked up by their SHA-256 in the [`ApiKeyStore`]; anything else is a JWT,
//! checked against a JWKS file by the [`JwksVerifier`]. Every failure is an
//! [`IdentityError`] with a stable [`code`](IdentityError::code); none of their
//! messages carries token material.

mod api_key;
mod error;
mod jwt;
mod principal;

use std::time::{SystemTime, UNIX_EPOCH};

pub use api_key::{ApiKeyId, ApiKeyRecord, ApiKeySecret, ApiKeyStore, API_KEY_PREFIX};
pub use error::{IdentityError, JwksError, PrincipalSyntax};
pub use jwt::{JwksVerifier, JwtConfig};
pub use principal::{Credential, Principal, PrincipalEntity, PrincipalKind, WorkspaceId};

/// The longest bearer token accepted, in bytes. API keys are 48 bytes; real JWTs
/// are well under 2 KiB. The cap bounds the work an unauthenticated caller can
/// cause before any signature is checked.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Slack for the scheme and spaces around a token of [`MAX_TOKEN_BYTES`].
const MAX_HEADER_SLACK: usize = 64;

/// Turns bearer tokens into principals: API keys always, JWTs when a JWKS is set.
#[derive(Debug)]
pub struct Authenticator {
    api_keys: ApiKeyStore,
    jwt: Option<JwksVerifier>,
}

impl Authenticator {
    /// An authenticator over the given key store; `jwt` is `None` when the server
    /// has no JWKS configured, and JWTs are then refused with `jwt_not_configured`.
    pub fn new(api_keys: ApiKeyStore, jwt: Option<JwksVerifier>) -> Self {
        Self { api_keys, jwt }
    }

    pub fn api_keys(&self) -> &ApiKeyStore {
        &self.api_keys
    }

    pub fn jwt(&self) -> Option<&JwksVerifier> {
        self.jwt.as_ref()
    }

    /// Authenticates a bearer token (as returned by [`parse_bearer`]) at the
    /// current system time.
    pub fn authenticate(&self, bearer: &str) -> Result<Principal, IdentityError> {
        self.authenticate_at(bearer, unix_now_secs())
    }

    /// Authenticates a bearer token as of `now_unix_secs` (used for a JWT's `exp`
    /// and `nbf`; API keys do not expire).
    pub fn authenticate_at(
        &self,
        bearer: &str,
        now_unix_secs: u64,
    ) -> Result<Principal, IdentityError> {
        if bearer.trim().is_empty() {
            return Err(IdentityError::MissingToken);
        }
        if bearer.len() > MAX_TOKEN_BYTES {
            return Err(IdentityError::TokenTooLong {
                max: MAX_TOKEN_BYTES,
            });
        }
        if bearer.starts_with(API_KEY_PREFIX) {
            return self.api_keys.authenticate(bearer);
        }
        match &self.jwt {
            Some(verifier) => verifier.verify(bearer, now_unix_secs),
            None => Err(IdentityError::JwtNotConfigured),
        }
    }
}

/// Extracts the token from an `Authorization` header value of the form
/// `Bearer <token>`.
///
/// The scheme is matched case-insensitively and may be followed by one or more
/// spaces (RFC 7235 `1*SP`); spaces and tabs around the whole value are ignored.
/// The token must be an RFC 6750 `b64token` of at most [`MAX_TOKEN_BYTES`] bytes.
pub fn parse_bearer(header_value: &str) -> Result<&str, IdentityError> {
    if header_value.len() > MAX_TOKEN_BYTES + MAX_HEADER_SLACK {
        return Err(IdentityError::TokenTooLong {
            max: MAX_TOKEN_BYTES,
        });
    }
    let value = header_value.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(IdentityError::MissingToken);
    }
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(IdentityError::BadAuthorizationHeader);
    }
    let token = rest.trim_start_matches(' ');
    if token.is_empty() {
        return Err(IdentityError::MissingToken);
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Err(IdentityError::TokenTooLong {
            max: MAX_TOKEN_BYTES,
        });
    }
    if !is_b64token(token) {
        return Err(IdentityError::BadAuthorizationHeader);
    }
    Ok(token)
}

/// RFC 6750: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

/// Seconds since the Unix epoch. A clock set before 1970 reads as the far future,
/// so every JWT then counts as expired rather than as never expiring.
fn unix_now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(u64::MAX, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_is_parsed_case_insensitively() {
        assert_eq!(parse_bearer("Bearer abc.def-ghi").unwrap(), "abc.def-ghi");
        assert_eq!(parse_bearer("bearer abc").unwrap(), "abc");
        assert_eq!(parse_bearer("BEARER abc").unwrap(), "abc");
        assert_eq!(parse_bearer("  Bearer   abc==  ").unwrap(), "abc==");
    }

    #[test]
    fn bearer_refuses_missing_and_malformed() {
        for value in ["", "   ", "Bearer", "Bearer ", "bearer    ", "\t"] {
            assert!(
                matches!(parse_bearer(value), Err(IdentityError::MissingToken)),
                "{value:?}"
            );
        }
        for value in [
            "Basic dXNlcjpwYXNz",
            "Bearerabc",
            "Bearer\tabc",
            "Bearer abc def",
            "Bearer a\"b",
            "Bearer ===",
            "Bearer a=b",
            "Token abc",
        ] {
            assert!(
                matches!(
                    parse_bearer(value),
                    Err(IdentityError::BadAuthorizationHeader)
                ),
                "{value:?}"
            );
        }
    }

    #[test]
    fn bearer_refuses_oversized() {
        let token = "a".repeat(MAX_TOKEN_BYTES);
        assert_eq!(parse_bearer(&format!("Bearer {token}")).unwrap(), token);
        let long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let err = parse_bearer(&format!("Bearer {long}")).unwrap_err();
        assert_eq!(err.code(), "token_too_long");
        let huge = "a".repeat(1 << 20);
        let err = parse_bearer(&format!("Bearer {huge}")).unwrap_err();
        assert_eq!(err.code(), "token_too_long");
    }

    #[test]
    fn authenticator_routes_by_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let store = ApiKeyStore::new(db.open_tree("api_keys").unwrap());
        let principal = Principal::new(
            "User::\"alice\"".parse().unwrap(),
            Some("acme".parse().unwrap()),
        )
        .unwrap();
        let (_, secret) = store.create(&principal, None, 1).unwrap();
        let auth = Authenticator::new(store, None);
        assert_eq!(auth.authenticate(secret.expose()).unwrap(), principal);
        let err = auth
            .authenticate("eyJhbGciOiJFZERTQSJ9.e30.sig")
            .unwrap_err();
        assert!(matches!(err, IdentityError::JwtNotConfigured));
        assert_eq!(err.code(), "jwt_not_configured");
        assert!(matches!(
            auth.authenticate(" "),
            Err(IdentityError::MissingToken)
        ));
        let err = auth.authenticate("writ_short").unwrap_err();
        assert_eq!(err.code(), "bad_token");
    }
}
