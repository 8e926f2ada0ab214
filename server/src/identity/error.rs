//! The identity module's errors: every variant names what failed, never token material.

use thiserror::Error;

use super::api_key::ApiKeyId;
use super::principal::PrincipalKind;

/// Why a bearer token, a principal or an API key operation was refused.
///
/// The HTTP layer answers every non-internal variant with 401 and the stable
/// [`code`](Self::code); messages may be shown to the client, so none contains the
/// token, a claim value or a stored hash.
#[derive(Debug, Error)]
pub enum IdentityError {
    // The Authorization header.
    #[error("no bearer token was given")]
    MissingToken,
    #[error("the authorization header is not of the form `Bearer <token>`")]
    BadAuthorizationHeader,
    #[error("the bearer token is longer than {max} bytes")]
    TokenTooLong { max: usize },

    // API keys.
    #[error("malformed api key")]
    MalformedApiKey,
    #[error("unknown api key")]
    UnknownApiKey,
    #[error("the api key has been revoked")]
    Revoked,
    #[error("no api key has id `{0}`")]
    NotFound(ApiKeyId),
    #[error("api key ids are `ak_` followed by 16 lowercase hex digits")]
    BadKeyId,
    #[error("a label is 1 to 128 characters with no control characters")]
    BadLabel,

    // JWTs.
    #[error("this server accepts no jwt (no jwks is configured)")]
    JwtNotConfigured,
    #[error("malformed token: {reason}")]
    Malformed { reason: &'static str },
    #[error("unsupported token algorithm (writ accepts `EdDSA`, `ES256` and `RS256`)")]
    UnsupportedAlgorithm,
    #[error("the token header lists a critical extension writ does not understand")]
    CriticalHeader,
    #[error("the token header has no `kid`")]
    MissingKid,
    #[error("no key in the jwks has the token's `kid`")]
    UnknownKid,
    #[error("the token's algorithm does not match its key")]
    AlgorithmMismatch,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token's issuer is not the configured one")]
    WrongIssuer,
    #[error("the token's audience does not include this server")]
    WrongAudience,
    /// A required claim is absent; the payload is the claim's name (from the
    /// configuration, never from the token).
    #[error("the token has no `{0}` claim")]
    MissingClaim(String),
    /// A claim has the wrong JSON type; the payload is the claim's name.
    #[error("the token's `{0}` claim has the wrong type")]
    BadClaim(String),
    #[error("operator principals cannot sign in with a jwt on this server")]
    OperatorNotAllowed,

    // Principals and workspaces.
    #[error("bad principal: {0}")]
    BadPrincipal(PrincipalSyntax),
    #[error(
        "a workspace id is 1 to 64 characters of `a-z`, `0-9`, `_` and `-`, starting with a letter or digit"
    )]
    BadWorkspace,
    #[error("`{0}` principals need a workspace")]
    MissingWorkspace(PrincipalKind),
    #[error("operator principals have no workspace")]
    UnexpectedWorkspace,

    // Internal: the server's fault, not the caller's.
    #[error("api key store: {0}")]
    Storage(#[from] sled::Error),
    #[error("api key store is corrupt: {what}")]
    Corrupt { what: &'static str },
    #[error("the operating system's random number generator failed")]
    Rng,
}

impl IdentityError {
    /// A stable snake_case code for the HTTP layer and for clients to match on.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingToken => "missing_token",
            Self::BadAuthorizationHeader => "bad_authorization_header",
            Self::TokenTooLong { .. } => "token_too_long",
            Self::MalformedApiKey | Self::Malformed { .. } => "bad_token",
            Self::UnknownApiKey => "unknown_key",
            Self::Revoked => "key_revoked",
            Self::NotFound(_) => "key_not_found",
            Self::BadKeyId => "bad_key_id",
            Self::BadLabel => "bad_label",
            Self::JwtNotConfigured => "jwt_not_configured",
            Self::UnsupportedAlgorithm => "unsupported_algorithm",
            Self::CriticalHeader => "unsupported_critical_header",
            Self::MissingKid => "missing_kid",
            Self::UnknownKid => "unknown_kid",
            Self::AlgorithmMismatch => "algorithm_mismatch",
            Self::BadSignature => "bad_signature",
            Self::Expired => "token_expired",
            Self::NotYetValid => "token_not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
            Self::WrongAudience => "wrong_audience",
            Self::MissingClaim(_) => "missing_claim",
            Self::BadClaim(_) => "bad_claim",
            Self::OperatorNotAllowed => "operator_not_allowed",
            Self::BadPrincipal(_) => "bad_principal",
            Self::BadWorkspace => "bad_workspace",
            Self::MissingWorkspace(_) => "missing_workspace",
            Self::UnexpectedWorkspace => "unexpected_workspace",
            Self::Storage(_) | Self::Corrupt { .. } | Self::Rng => "internal",
        }
    }

    /// True when the failure is the server's (storage, corruption, randomness):
    /// the HTTP layer should answer 500 and log the message, not blame the caller.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Storage(_) | Self::Corrupt { .. } | Self::Rng)
    }
}

/// Why a principal's text form or id was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum PrincipalSyntax {
    #[error("the entity type must be `User`, `Agent`, `Operator` or `Auditor`")]
    UnknownType,
    #[error("expected the form `Type::\"id\"`")]
    Syntax,
    #[error("the only escapes allowed in an id are `\\\"`, `\\'` and `\\\\`")]
    BadEscape,
    #[error("unexpected text after the closing quote")]
    TrailingText,
    #[error("the id is empty")]
    EmptyId,
    #[error("the id is longer than 256 bytes")]
    IdTooLong,
    #[error("the id has control or invisible characters")]
    UnprintableId,
}

/// Why a JWKS file (or the JWT settings that go with it) could not be loaded.
/// These happen at startup, not per request.
#[derive(Debug, Error)]
pub enum JwksError {
    #[error("cannot read `{path}`: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("`{path}` is larger than {max} bytes")]
    TooLarge { path: String, max: u64 },
    #[error("`{path}` is not a jwks (a json object with a `keys` array): {error}")]
    Parse {
        path: String,
        error: serde_json::Error,
    },
    /// One key is unusable or dangerous; `key` is its `kid` in backticks, or its
    /// position in the `keys` array when it has none.
    #[error("`{path}`: key {key}: {reason}")]
    Key {
        path: String,
        key: String,
        reason: &'static str,
    },
    #[error("`{path}`: two keys have the kid `{kid}`")]
    DuplicateKid { path: String, kid: String },
    #[error(
        "`{path}` has no key writ can verify with (`EdDSA` with Ed25519, `ES256` with P-256, or `RS256`)"
    )]
    NoUsableKey { path: String },
    #[error("jwt settings: {reason}")]
    Config { reason: &'static str },
}
