//! JWTs from an outside identity provider, verified against a local JWKS file.
//!
//! Only asymmetric signatures are accepted: `EdDSA` (Ed25519), `ES256` (P-256) and
//! `RS256` (RSA, 2048 to 4096 bits). Each key in the JWKS fixes the one algorithm a
//! token signed by it may name, so `none`, HMAC with a public key as the secret, and
//! any other header trick are refused before a signature is looked at. Signatures
//! are checked by `jsonwebtoken`'s crypto backend; the header, the claims and the
//! registered claims (`exp`, `nbf`, `iss`, `aud`) are parsed and checked here, the
//! times against a clock reading the caller passes in.
//!
//! Claim mapping (names configurable, see [`JwtConfig`]):
//! - `writ_principal`, when present, is the principal's entity UID text
//!   (`Agent::"runner-1"`); it wins over `sub`;
//! - otherwise `sub` is a user id: `sub = "alice"` means `User::"alice"`;
//! - `writ_workspace` is the workspace, required for users and agents and refused
//!   for operators; operators can sign in by JWT only if `allow_operator` is set.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read as _;
use std::path::Path;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::error::{IdentityError, JwksError};
use super::principal::{Credential, Principal, PrincipalEntity, PrincipalKind, WorkspaceId};
use super::MAX_TOKEN_BYTES;

/// The largest JWKS file read. Real ones are a few KiB.
const MAX_JWKS_BYTES: u64 = 1 << 20;
/// The longest `kid` accepted in the JWKS.
const MAX_KID_BYTES: usize = 256;
/// The most clock skew the configuration may allow for.
const MAX_LEEWAY_SECS: u64 = 300;
const MIN_RSA_BITS: usize = 2048;
/// `rsa` (under `jsonwebtoken`) refuses larger moduli, so such a key could never verify.
const MAX_RSA_BITS: usize = 4096;
/// `rsa` refuses larger public exponents.
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;
/// JWK members that hold private or secret key material.
const SECRET_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// JWKS members are base64url; tolerate padding there, since the file is trusted
/// configuration. Tokens are held to the strict unpadded form.
const JWK_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How tokens are checked and turned into principals.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    /// The exact `iss` every token must carry.
    pub issuer: String,
    /// A value the token's `aud` (a string or an array of strings) must contain.
    pub audience: String,
    /// Claim holding the principal's entity UID text (`Agent::"runner-1"`); wins
    /// over `principal_claim`. Default `writ_principal`.
    #[serde(default = "default_principal_uid_claim")]
    pub principal_uid_claim: String,
    /// Claim holding a user id, used when `principal_uid_claim` is absent; its value
    /// `alice` means `User::"alice"`. Default `sub`.
    #[serde(default = "default_principal_claim")]
    pub principal_claim: String,
    /// Claim holding the workspace id. Default `writ_workspace`.
    #[serde(default = "default_workspace_claim")]
    pub workspace_claim: String,
    /// Allowed clock skew for `exp` and `nbf`, at most 300 seconds. Default 30.
    #[serde(default = "default_leeway_secs")]
    pub leeway_secs: u64,
    /// Whether a token must carry `nbf`. Default true; some providers (Auth0, Okta
    /// access tokens) omit it, and then this must be turned off.
    #[serde(default = "default_true")]
    pub require_nbf: bool,
    /// Whether a token may name an `Operator` principal. Default false: operator
    /// power then never depends on what an identity provider lets into a claim.
    #[serde(default)]
    pub allow_operator: bool,
}

fn default_principal_uid_claim() -> String {
    "writ_principal".to_owned()
}

fn default_principal_claim() -> String {
    "sub".to_owned()
}

fn default_workspace_claim() -> String {
    "writ_workspace".to_owned()
}

fn default_leeway_secs() -> u64 {
    30
}

fn default_true() -> bool {
    true
}

impl JwtConfig {
    /// The default settings for one issuer and audience.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            principal_uid_claim: default_principal_uid_claim(),
            principal_claim: default_principal_claim(),
            workspace_claim: default_workspace_claim(),
            leeway_secs: default_leeway_secs(),
            require_nbf: true,
            allow_operator: false,
        }
    }

    fn check(&self) -> Result<(), JwksError> {
        let reason = if self.issuer.is_empty() {
            "`issuer` is empty"
        } else if self.audience.is_empty() {
            "`audience` is empty"
        } else if self.principal_uid_claim.is_empty()
            || self.principal_claim.is_empty()
            || self.workspace_claim.is_empty()
        {
            "a claim name is empty"
        } else if self.principal_uid_claim == self.principal_claim {
            "`principal_uid_claim` and `principal_claim` must differ"
        } else if self.leeway_secs > MAX_LEEWAY_SECS {
            "`leeway_secs` is more than 300"
        } else {
            return Ok(());
        };
        Err(JwksError::Config { reason })
    }
}

/// One verification key: the only algorithm it accepts, and the key.
struct VerifyKey {
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies JWTs against the keys of one JWKS file.
pub struct JwksVerifier {
    config: JwtConfig,
    keys: BTreeMap<String, VerifyKey>,
    skipped: usize,
}

impl fmt::Debug for JwksVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksVerifier")
            .field("config", &self.config)
            .field("keys", &self.keys().collect::<Vec<_>>())
            .field("skipped", &self.skipped)
            .finish()
    }
}

impl JwksVerifier {
    /// Loads a JWKS file (`{"keys": [...]}`, RFC 7517).
    ///
    /// Keys marked `"use": "enc"`, keys whose `key_ops` lack `verify`, and keys of an
    /// algorithm or curve writ does not verify (P-384, PS256, Ed448, ...) are skipped.
    /// Anything dangerous or broken fails the load: private or symmetric key
    /// material, a usable key without `kid`, a duplicate `kid`, an `alg` that does
    /// not fit the key type, a malformed point, an RSA modulus outside 2048 to 4096
    /// bits. A file left with no usable key fails too.
    pub fn from_file(path: &Path, config: JwtConfig) -> Result<Self, JwksError> {
        let label = path.display().to_string();
        let read_error = |error| JwksError::Read {
            path: label.clone(),
            error,
        };
        let file = std::fs::File::open(path).map_err(read_error)?;
        let mut bytes = Vec::new();
        file.take(MAX_JWKS_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_error)?;
        if bytes.len() as u64 > MAX_JWKS_BYTES {
            return Err(JwksError::TooLarge {
                path: label,
                max: MAX_JWKS_BYTES,
            });
        }
        Self::from_json(&label, &bytes, config)
    }

    /// Loads a JWKS from memory; `source` names it in errors.
    pub fn from_json(source: &str, jwks: &[u8], config: JwtConfig) -> Result<Self, JwksError> {
        config.check()?;
        let set: JwkSetFile = serde_json::from_slice(jwks).map_err(|error| JwksError::Parse {
            path: source.to_owned(),
            error,
        })?;
        let mut keys = BTreeMap::new();
        let mut skipped = 0;
        for (index, jwk) in set.keys.iter().enumerate() {
            let key_error = |reason| JwksError::Key {
                path: source.to_owned(),
                key: jwk
                    .kid
                    .as_ref()
                    .map_or_else(|| format!("#{index}"), |kid| format!("`{kid}`")),
                reason,
            };
            let Some((kid, key)) = load_key(jwk).map_err(key_error)? else {
                skipped += 1;
                continue;
            };
            if keys.contains_key(&kid) {
                return Err(JwksError::DuplicateKid {
                    path: source.to_owned(),
                    kid,
                });
            }
            keys.insert(kid, key);
        }
        if keys.is_empty() {
            return Err(JwksError::NoUsableKey {
                path: source.to_owned(),
            });
        }
        Ok(Self {
            config,
            keys,
            skipped,
        })
    }

    pub fn config(&self) -> &JwtConfig {
        &self.config
    }

    /// The usable keys, as (`kid`, algorithm name), for a startup log line.
    pub fn keys(&self) -> impl Iterator<Item = (&str, &'static str)> {
        self.keys
            .iter()
            .map(|(kid, key)| (kid.as_str(), alg_name(key.alg)))
    }

    /// How many keys of the file were skipped as not for writ.
    pub fn skipped_keys(&self) -> usize {
        self.skipped
    }

    /// Verifies a token as of `now_unix_secs` and maps its claims to a principal.
    pub fn verify(&self, token: &str, now_unix_secs: u64) -> Result<Principal, IdentityError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(IdentityError::TokenTooLong {
                max: MAX_TOKEN_BYTES,
            });
        }
        let parts = split_token(token)?;
        let header = decode_json(parts.header, "the header is not a base64url json object")?;
        if header.contains_key("crit") {
            // RFC 7515 4.1.11: an extension marked critical that is not understood
            // makes the token invalid. writ understands none.
            return Err(IdentityError::CriticalHeader);
        }
        let alg = match header.get("alg") {
            Some(Value::String(alg)) => {
                supported_alg(alg).ok_or(IdentityError::UnsupportedAlgorithm)?
            }
            Some(_) => {
                return Err(IdentityError::Malformed {
                    reason: "`alg` is not a string",
                })
            }
            None => {
                return Err(IdentityError::Malformed {
                    reason: "the header has no `alg`",
                })
            }
        };
        let kid = match header.get("kid") {
            Some(Value::String(kid)) => kid,
            Some(_) => {
                return Err(IdentityError::Malformed {
                    reason: "`kid` is not a string",
                })
            }
            None => return Err(IdentityError::MissingKid),
        };
        let key = self.keys.get(kid).ok_or(IdentityError::UnknownKid)?;
        if key.alg != alg {
            return Err(IdentityError::AlgorithmMismatch);
        }

        // The signature, by `jsonwebtoken`'s backend, over the header and claims
        // exactly as sent. The claims are parsed only once it holds.
        if URL_SAFE_NO_PAD.decode(parts.signature).is_err() {
            return Err(IdentityError::Malformed {
                reason: "the signature is not base64url",
            });
        }
        // An `Err` here is the backend refusing the key itself: fail closed.
        let verified =
            jsonwebtoken::crypto::verify(parts.signature, parts.message.as_bytes(), &key.key, alg)
                .map_err(|_| IdentityError::BadSignature)?;
        if !verified {
            return Err(IdentityError::BadSignature);
        }
        let claims = decode_json(parts.claims, "the claims are not a base64url json object")?;

        self.check_time(&claims, now_unix_secs)?;
        self.check_issuer_audience(&claims)?;
        let credential = Credential::jwt(
            &self.config.issuer,
            claims.get("jti").and_then(Value::as_str),
            claims.get("sub").and_then(Value::as_str),
        );
        Ok(self.principal(&claims)?.with_credential(credential))
    }

    fn check_time(&self, claims: &Map<String, Value>, now: u64) -> Result<(), IdentityError> {
        let leeway = self.config.leeway_secs;
        let exp = numeric_date(claims, "exp")?.ok_or_else(|| missing("exp"))?;
        // RFC 7519 4.1.4: the current time must be before `exp`.
        if now >= exp.saturating_add(leeway) {
            return Err(IdentityError::Expired);
        }
        match numeric_date(claims, "nbf")? {
            Some(nbf) if now.saturating_add(leeway) < nbf => Err(IdentityError::NotYetValid),
            Some(_) => Ok(()),
            None if self.config.require_nbf => Err(missing("nbf")),
            None => Ok(()),
        }
    }

    fn check_issuer_audience(&self, claims: &Map<String, Value>) -> Result<(), IdentityError> {
        match claims.get("iss") {
            None => return Err(missing("iss")),
            Some(Value::String(iss)) if *iss == self.config.issuer => {}
            Some(Value::String(_)) => return Err(IdentityError::WrongIssuer),
            Some(_) => return Err(IdentityError::BadClaim("iss".to_owned())),
        }
        let wanted = self.config.audience.as_str();
        let found = match claims.get("aud") {
            None => return Err(missing("aud")),
            Some(Value::String(aud)) => aud == wanted,
            Some(Value::Array(auds)) => {
                if !auds.iter().all(Value::is_string) {
                    return Err(IdentityError::BadClaim("aud".to_owned()));
                }
                auds.iter().any(|aud| aud.as_str() == Some(wanted))
            }
            Some(_) => return Err(IdentityError::BadClaim("aud".to_owned())),
        };
        if !found {
            return Err(IdentityError::WrongAudience);
        }
        Ok(())
    }

    fn principal(&self, claims: &Map<String, Value>) -> Result<Principal, IdentityError> {
        let config = &self.config;
        let entity = match string_claim(claims, &config.principal_uid_claim)? {
            Some(uid) => uid.parse::<PrincipalEntity>()?,
            None => {
                let sub = string_claim(claims, &config.principal_claim)?
                    .ok_or_else(|| missing(&config.principal_claim))?;
                PrincipalEntity::new(PrincipalKind::User, sub)?
            }
        };
        // Kernel-wide principals (operators, auditors) come from a JWT only when the
        // deployment says its IdP may name them.
        if matches!(
            entity.kind(),
            PrincipalKind::Operator | PrincipalKind::Auditor
        ) && !config.allow_operator
        {
            return Err(IdentityError::OperatorNotAllowed);
        }
        let workspace = string_claim(claims, &config.workspace_claim)?;
        let workspace = match (entity.kind().has_workspace(), workspace) {
            (true, None) => return Err(missing(&config.workspace_claim)),
            (true, Some(ws)) => Some(WorkspaceId::new(ws)?),
            (false, None) => None,
            (false, Some(_)) => return Err(IdentityError::UnexpectedWorkspace),
        };
        Principal::new(entity, workspace)
    }
}

fn missing(claim: &str) -> IdentityError {
    IdentityError::MissingClaim(claim.to_owned())
}

/// A string claim, `None` when absent; a claim of another type is refused rather
/// than treated as absent, so a fallback never hides a malformed claim.
fn string_claim<'a>(
    claims: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, IdentityError> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::String(value)) => Ok(Some(value)),
        Some(_) => Err(IdentityError::BadClaim(name.to_owned())),
    }
}

/// An RFC 7519 NumericDate (seconds, possibly fractional), rounded down.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, IdentityError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let bad = || IdentityError::BadClaim(name.to_owned());
    let Value::Number(number) = value else {
        return Err(bad());
    };
    if let Some(secs) = number.as_u64() {
        return Ok(Some(secs));
    }
    match number.as_f64() {
        // `as` saturates, so a huge date becomes `u64::MAX`: never expiring, which
        // is what the issuer signed.
        Some(secs) if secs.is_finite() && secs >= 0.0 => Ok(Some(secs.floor() as u64)),
        _ => Err(bad()),
    }
}

/// A compact JWS, cut into its parts.
struct TokenParts<'a> {
    /// `header.claims`: the signed bytes.
    message: &'a str,
    header: &'a str,
    claims: &'a str,
    signature: &'a str,
}

fn split_token(token: &str) -> Result<TokenParts<'_>, IdentityError> {
    let bad_shape = || IdentityError::Malformed {
        reason: "not three dot-separated parts",
    };
    let (message, signature) = token.rsplit_once('.').ok_or_else(bad_shape)?;
    let (header, claims) = message.split_once('.').ok_or_else(bad_shape)?;
    if claims.contains('.') {
        return Err(bad_shape());
    }
    Ok(TokenParts {
        message,
        header,
        claims,
        signature,
    })
}

/// One base64url (unpadded) part of a token, as a JSON object.
fn decode_json(part: &str, reason: &'static str) -> Result<Map<String, Value>, IdentityError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| IdentityError::Malformed { reason })?;
    serde_json::from_slice(&bytes).map_err(|_| IdentityError::Malformed { reason })
}

fn supported_alg(name: &str) -> Option<Algorithm> {
    match name {
        "EdDSA" => Some(Algorithm::EdDSA),
        "ES256" => Some(Algorithm::ES256),
        "RS256" => Some(Algorithm::RS256),
        _ => None,
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::EdDSA => "EdDSA",
        Algorithm::ES256 => "ES256",
        Algorithm::RS256 => "RS256",
        // INVARIANT: `load_key` builds keys for the three algorithms above only.
        _ => "unsupported",
    }
}

#[derive(Deserialize)]
struct JwkSetFile {
    keys: Vec<RawJwk>,
}

/// The JWK members writ reads; others (`x5c`, `x5t`, ...) are ignored.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    #[serde(flatten)]
    rest: Map<String, Value>,
}

/// A usable key, `None` for a key to skip, or why the key is refused.
fn load_key(jwk: &RawJwk) -> Result<Option<(String, VerifyKey)>, &'static str> {
    if SECRET_MEMBERS
        .iter()
        .any(|member| jwk.rest.contains_key(*member))
    {
        return Err("holds private or secret key material; a jwks file must hold public keys only");
    }
    if jwk
        .key_use
        .as_deref()
        .is_some_and(|key_use| key_use != "sig")
    {
        return Ok(None);
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Ok(None);
    }
    let kty = jwk.kty.as_deref().ok_or("has no `kty`")?;
    let inferred = match (kty, jwk.crv.as_deref()) {
        ("oct", _) => {
            return Err("is a symmetric (`oct`) key; writ accepts asymmetric signatures only")
        }
        ("OKP", Some("Ed25519")) => Algorithm::EdDSA,
        ("EC", Some("P-256")) => Algorithm::ES256,
        ("RSA", _) => Algorithm::RS256,
        ("OKP" | "EC", None) => return Err("has no `crv`"),
        // Other curves and key types: not for writ.
        _ => return Ok(None),
    };
    if let Some(alg) = jwk.alg.as_deref() {
        match supported_alg(alg) {
            None => return Ok(None),
            Some(alg) if alg != inferred => return Err("its `alg` does not fit its key type"),
            Some(_) => {}
        }
    }
    let kid = jwk.kid.clone().ok_or("has no `kid`")?;
    if kid.is_empty() || kid.len() > MAX_KID_BYTES {
        return Err("its `kid` is empty or longer than 256 bytes");
    }
    let key = match inferred {
        Algorithm::EdDSA => {
            let x = fixed_member(jwk.x.as_deref(), 32, "`x` must be 32 base64url bytes")?;
            DecodingKey::from_ed_components(&URL_SAFE_NO_PAD.encode(x))
                .map_err(|_| "`x` must be 32 base64url bytes")?
        }
        Algorithm::ES256 => {
            let x = fixed_member(jwk.x.as_deref(), 32, "`x` must be 32 base64url bytes")?;
            let y = fixed_member(jwk.y.as_deref(), 32, "`y` must be 32 base64url bytes")?;
            DecodingKey::from_ec_components(&URL_SAFE_NO_PAD.encode(x), &URL_SAFE_NO_PAD.encode(y))
                .map_err(|_| "`x` and `y` must be base64url")?
        }
        _ => rsa_key(jwk)?,
    };
    // Make the backend parse the key now, so a point off its curve fails the load
    // rather than every request. An empty signature never verifies: `Ok(false)`
    // means the key parsed. (RSA keys are parsed lazily; `rsa_key` checked them.)
    if inferred != Algorithm::RS256 {
        match jsonwebtoken::crypto::verify("", b"", &key, inferred) {
            Ok(false) => {}
            _ => return Err("is not a valid public key (not a point on its curve)"),
        }
    }
    Ok(Some((kid, VerifyKey { alg: inferred, key })))
}

fn fixed_member(
    value: Option<&str>,
    len: usize,
    reason: &'static str,
) -> Result<Vec<u8>, &'static str> {
    let bytes = JWK_BASE64
        .decode(value.ok_or(reason)?)
        .map_err(|_| reason)?;
    if bytes.len() != len {
        return Err(reason);
    }
    Ok(bytes)
}

fn rsa_key(jwk: &RawJwk) -> Result<DecodingKey, &'static str> {
    let n = jwk.n.as_deref().ok_or("has no `n`")?;
    let e = jwk.e.as_deref().ok_or("has no `e`")?;
    let n = JWK_BASE64.decode(n).map_err(|_| "`n` is not base64url")?;
    let e = JWK_BASE64.decode(e).map_err(|_| "`e` is not base64url")?;
    let n = strip_leading_zeros(&n);
    let e = strip_leading_zeros(&e);
    let bits = match n.first() {
        Some(first) => (n.len() - 1) * 8 + (8 - first.leading_zeros() as usize),
        None => 0,
    };
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err("the RSA modulus must be 2048 to 4096 bits");
    }
    if n.last().is_some_and(|last| last % 2 == 0) {
        return Err("the RSA modulus is even");
    }
    if e.len() > 8 {
        return Err("the RSA exponent is too large");
    }
    let exponent = e
        .iter()
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
    if exponent < 3 || exponent % 2 == 0 || exponent > MAX_RSA_EXPONENT {
        return Err("the RSA exponent must be odd, at least 3 and below 2^33");
    }
    Ok(DecodingKey::from_rsa_raw_components(n, e))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(start..).unwrap_or_default()
}

#[cfg(test)]
mod tests;
