//! Tests of the JWT verifier with keys generated at test time (none is checked in).

use std::sync::OnceLock;

use jsonwebtoken::EncodingKey;
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePrivateKey as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use rsa::pkcs1::{EncodeRsaPrivateKey as _, EncodeRsaPublicKey as _};
use rsa::traits::PublicKeyParts as _;
use serde_json::json;

use super::*;
use crate::identity::{ApiKeyStore, Authenticator, PrincipalSyntax};

const ISS: &str = "https://idp.example.com/";
const AUD: &str = "writ-prod";
const NOW: u64 = 1_700_000_000;

struct TestKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn ed25519_key(kid: &str) -> TestKey {
    let mut seed = [0u8; 32];
    OsRng.fill_bytes(&mut seed);
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    // PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410): a fixed 16-byte prefix.
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&seed);
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::EdDSA,
        encoding: EncodingKey::from_ed_der(&der),
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public), "kid": kid, "alg": "EdDSA", "use": "sig"}),
    }
}

fn p256_key(kid: &str) -> TestKey {
    let secret = p256::SecretKey::random(&mut OsRng);
    let der = secret.to_pkcs8_der().unwrap();
    let point = secret.public_key().to_encoded_point(false);
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(der.as_bytes()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256",
            "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()),
        }),
    }
}

/// RSA key generation is slow, so each test process makes two keys and shares them.
fn rsa_private(which: usize) -> &'static rsa::RsaPrivateKey {
    static KEYS: OnceLock<[rsa::RsaPrivateKey; 2]> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        [
            rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
            rsa::RsaPrivateKey::new(&mut OsRng, 2048).unwrap(),
        ]
    });
    &keys[which]
}

fn rsa_key(kid: &str, which: usize) -> TestKey {
    let private = rsa_private(which);
    let der = private.to_pkcs1_der().unwrap();
    TestKey {
        kid: kid.to_owned(),
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        // No `alg`: RS256 is inferred for an RSA key.
        jwk: json!({
            "kty": "RSA", "kid": kid, "use": "sig",
            "n": b64(&private.n().to_bytes_be()), "e": b64(&private.e().to_bytes_be()),
        }),
    }
}

fn sign_raw(encoding: &EncodingKey, alg: Algorithm, header: &Value, claims: &Value) -> String {
    let message = format!(
        "{}.{}",
        b64(&serde_json::to_vec(header).unwrap()),
        b64(&serde_json::to_vec(claims).unwrap())
    );
    let signature = jsonwebtoken::crypto::sign(message.as_bytes(), encoding, alg).unwrap();
    format!("{message}.{signature}")
}

fn header(key: &TestKey) -> Value {
    json!({"alg": alg_name(key.alg), "typ": "JWT", "kid": key.kid})
}

fn claims() -> Value {
    json!({
        "iss": ISS, "aud": AUD, "sub": "alice", "writ_workspace": "acme",
        "iat": NOW - 10, "nbf": NOW - 10, "exp": NOW + 300,
    })
}

fn with(mut claims: Value, name: &str, value: Value) -> Value {
    claims[name] = value;
    claims
}

fn without(mut claims: Value, name: &str) -> Value {
    claims.as_object_mut().unwrap().remove(name);
    claims
}

fn token(key: &TestKey, claims: &Value) -> String {
    sign_raw(&key.encoding, key.alg, &header(key), claims)
}

struct Fixture {
    ed: TestKey,
    ec: TestKey,
    rsa: TestKey,
}

impl Fixture {
    fn new() -> Self {
        Self {
            ed: ed25519_key("ed-1"),
            ec: p256_key("ec-1"),
            rsa: rsa_key("rsa-1", 0),
        }
    }

    fn jwks(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"keys": [self.ed.jwk, self.ec.jwk, self.rsa.jwk]})).unwrap()
    }

    fn verifier_with(&self, config: JwtConfig) -> JwksVerifier {
        JwksVerifier::from_json("test jwks", &self.jwks(), config).unwrap()
    }

    fn verifier(&self) -> JwksVerifier {
        self.verifier_with(JwtConfig::new(ISS, AUD))
    }
}

fn alice() -> Principal {
    Principal::new(
        PrincipalEntity::new(PrincipalKind::User, "alice").unwrap(),
        Some(WorkspaceId::new("acme").unwrap()),
    )
    .unwrap()
}

/// Verifies a token that must fail, and checks the error carries no token material.
fn refuse(verifier: &JwksVerifier, token: &str) -> IdentityError {
    let err = verifier
        .verify(token, NOW)
        .expect_err("the token must be refused");
    let message = err.to_string();
    for part in token.split('.').filter(|part| part.len() >= 8) {
        assert!(!message.contains(part), "{message}");
    }
    for value in ["alice", "acme", ISS, AUD] {
        assert!(!message.contains(value), "{message}");
    }
    assert!(!err.is_internal());
    err
}

#[test]
fn good_token_for_each_algorithm() {
    let f = Fixture::new();
    let verifier = f.verifier();
    for key in [&f.ed, &f.ec, &f.rsa] {
        assert_eq!(
            verifier.verify(&token(key, &claims()), NOW).unwrap(),
            alice(),
            "{:?}",
            key.alg
        );
    }
    let mut keys: Vec<_> = verifier.keys().collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        vec![("ec-1", "ES256"), ("ed-1", "EdDSA"), ("rsa-1", "RS256")]
    );
}

#[test]
fn authenticator_sends_jwts_to_the_verifier() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    let store = ApiKeyStore::new(db.open_tree("api_keys").unwrap());
    let auth = Authenticator::new(store, Some(f.verifier()));
    assert_eq!(
        auth.authenticate_at(&token(&f.ed, &claims()), NOW).unwrap(),
        alice()
    );
    let expired = token(&f.ed, &with(claims(), "exp", json!(NOW - 3600)));
    assert_eq!(
        auth.authenticate_at(&expired, NOW).unwrap_err().code(),
        "token_expired"
    );
}

#[test]
fn expired() {
    let f = Fixture::new();
    let verifier = f.verifier();
    let err = refuse(
        &verifier,
        &token(&f.ec, &with(claims(), "exp", json!(NOW - 31))),
    );
    assert!(matches!(err, IdentityError::Expired));
    assert_eq!(err.code(), "token_expired");
    // `exp` is exclusive, and the 30 s leeway applies.
    let err = refuse(
        &verifier,
        &token(&f.ec, &with(claims(), "exp", json!(NOW - 30))),
    );
    assert!(matches!(err, IdentityError::Expired));
    assert!(verifier
        .verify(&token(&f.ec, &with(claims(), "exp", json!(NOW - 29))), NOW)
        .is_ok());
    // Fractional NumericDates are allowed.
    assert!(verifier
        .verify(
            &token(&f.ec, &with(claims(), "exp", json!(1.0e9 + 0.5))),
            NOW
        )
        .is_err());
    assert!(verifier
        .verify(
            &token(&f.ec, &with(claims(), "exp", json!(2.0e9 + 0.5))),
            NOW
        )
        .is_ok());
}

#[test]
fn not_yet_valid() {
    let f = Fixture::new();
    let verifier = f.verifier();
    let err = refuse(
        &verifier,
        &token(&f.ed, &with(claims(), "nbf", json!(NOW + 31))),
    );
    assert!(matches!(err, IdentityError::NotYetValid));
    assert_eq!(err.code(), "token_not_yet_valid");
    assert!(verifier
        .verify(&token(&f.ed, &with(claims(), "nbf", json!(NOW + 30))), NOW)
        .is_ok());
}

#[test]
fn time_claims_are_required_and_typed() {
    let f = Fixture::new();
    let verifier = f.verifier();
    for name in ["exp", "nbf"] {
        let err = refuse(&verifier, &token(&f.ed, &without(claims(), name)));
        assert!(
            matches!(&err, IdentityError::MissingClaim(c) if c == name),
            "{err:?}"
        );
        for bad in [json!("1700000300"), json!(-5), json!(null), json!([1])] {
            let err = refuse(&verifier, &token(&f.ed, &with(claims(), name, bad)));
            assert!(
                matches!(&err, IdentityError::BadClaim(c) if c == name),
                "{err:?}"
            );
        }
    }
    let mut config = JwtConfig::new(ISS, AUD);
    config.require_nbf = false;
    let lenient = f.verifier_with(config);
    assert_eq!(
        lenient
            .verify(&token(&f.ed, &without(claims(), "nbf")), NOW)
            .unwrap(),
        alice()
    );
    assert!(matches!(
        refuse(&lenient, &token(&f.ed, &without(claims(), "exp"))),
        IdentityError::MissingClaim(_)
    ));
}

#[test]
fn wrong_issuer() {
    let f = Fixture::new();
    let verifier = f.verifier();
    for iss in ["https://evil.example.com/", "https://idp.example.com", ""] {
        let err = refuse(
            &verifier,
            &token(&f.rsa, &with(claims(), "iss", json!(iss))),
        );
        assert!(matches!(err, IdentityError::WrongIssuer), "{iss}");
        assert_eq!(err.code(), "wrong_issuer");
    }
    let err = refuse(
        &verifier,
        &token(&f.rsa, &with(claims(), "iss", json!([ISS]))),
    );
    assert!(matches!(&err, IdentityError::BadClaim(c) if c == "iss"));
    let err = refuse(&verifier, &token(&f.rsa, &without(claims(), "iss")));
    assert!(matches!(&err, IdentityError::MissingClaim(c) if c == "iss"));
}

#[test]
fn wrong_audience() {
    let f = Fixture::new();
    let verifier = f.verifier();
    for aud in [
        json!("writ-staging"),
        json!([]),
        json!(["writ-staging", "other"]),
    ] {
        let err = refuse(&verifier, &token(&f.ed, &with(claims(), "aud", aud)));
        assert!(matches!(err, IdentityError::WrongAudience));
        assert_eq!(err.code(), "wrong_audience");
    }
    let listed = with(claims(), "aud", json!(["other", AUD]));
    assert_eq!(
        verifier.verify(&token(&f.ed, &listed), NOW).unwrap(),
        alice()
    );
    for aud in [json!(7), json!([AUD, 7])] {
        let err = refuse(&verifier, &token(&f.ed, &with(claims(), "aud", aud)));
        assert!(matches!(&err, IdentityError::BadClaim(c) if c == "aud"));
    }
    let err = refuse(&verifier, &token(&f.ed, &without(claims(), "aud")));
    assert!(matches!(&err, IdentityError::MissingClaim(c) if c == "aud"));
}

#[test]
fn unknown_or_missing_kid() {
    let f = Fixture::new();
    let verifier = f.verifier();
    let stranger = ed25519_key("ed-2");
    let err = refuse(&verifier, &token(&stranger, &claims()));
    assert!(matches!(err, IdentityError::UnknownKid));
    assert_eq!(err.code(), "unknown_kid");
    let no_kid = json!({"alg": "EdDSA", "typ": "JWT"});
    let err = refuse(
        &verifier,
        &sign_raw(&f.ed.encoding, f.ed.alg, &no_kid, &claims()),
    );
    assert!(matches!(err, IdentityError::MissingKid));
    let number_kid = json!({"alg": "EdDSA", "kid": 1});
    let err = refuse(
        &verifier,
        &sign_raw(&f.ed.encoding, f.ed.alg, &number_kid, &claims()),
    );
    assert!(matches!(err, IdentityError::Malformed { .. }));
}

#[test]
fn alg_none_is_refused() {
    let f = Fixture::new();
    let verifier = f.verifier();
    for alg in ["none", "None", "NONE", ""] {
        let header = json!({"alg": alg, "typ": "JWT", "kid": f.ed.kid});
        let unsigned = format!(
            "{}.{}.",
            b64(&serde_json::to_vec(&header).unwrap()),
            b64(&serde_json::to_vec(&claims()).unwrap())
        );
        let err = refuse(&verifier, &unsigned);
        assert!(matches!(err, IdentityError::UnsupportedAlgorithm), "{alg}");
        assert_eq!(err.code(), "unsupported_algorithm");
    }
}

#[test]
fn hs256_with_the_public_key_as_secret_is_refused() {
    let f = Fixture::new();
    let verifier = f.verifier();
    // The classic confusion: an HMAC "signed" with the server's public key, which
    // anyone can fetch, in every form a naive verifier might use as the secret.
    let public = rsa_private(0).to_public_key();
    let secrets: Vec<Vec<u8>> = vec![
        public
            .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
            .into_bytes(),
        public.to_pkcs1_der().unwrap().as_bytes().to_vec(),
        public.n().to_bytes_be(),
        serde_json::to_vec(&f.rsa.jwk).unwrap(),
    ];
    for (alg, kid) in [
        (Algorithm::HS256, &f.rsa.kid),
        (Algorithm::HS384, &f.rsa.kid),
        (Algorithm::HS512, &f.ed.kid),
    ] {
        for secret in &secrets {
            let header = json!({"alg": format!("{alg:?}"), "typ": "JWT", "kid": kid});
            let forged = sign_raw(&EncodingKey::from_secret(secret), alg, &header, &claims());
            let err = refuse(&verifier, &forged);
            assert!(
                matches!(err, IdentityError::UnsupportedAlgorithm),
                "{alg:?}"
            );
        }
    }
}

#[test]
fn other_algorithms_are_refused() {
    let f = Fixture::new();
    let verifier = f.verifier();
    // PS256 with the very RSA key in the JWKS: a real signature, but not RS256.
    let header = json!({"alg": "PS256", "kid": f.rsa.kid});
    let pss = sign_raw(&f.rsa.encoding, Algorithm::PS256, &header, &claims());
    assert!(matches!(
        refuse(&verifier, &pss),
        IdentityError::UnsupportedAlgorithm
    ));
    let header = json!({"alg": "Ed25519", "kid": f.ed.kid});
    let fully_specified = sign_raw(&f.ed.encoding, Algorithm::EdDSA, &header, &claims());
    assert!(matches!(
        refuse(&verifier, &fully_specified),
        IdentityError::UnsupportedAlgorithm
    ));
}

#[test]
fn header_alg_must_match_the_key() {
    let f = Fixture::new();
    let verifier = f.verifier();
    // Each token is correctly signed by the key its header names, but claims the
    // kid of a key of another type.
    for (signer, kid) in [(&f.ec, &f.ed.kid), (&f.ed, &f.rsa.kid), (&f.rsa, &f.ec.kid)] {
        let header = json!({"alg": alg_name(signer.alg), "kid": kid});
        let err = refuse(
            &verifier,
            &sign_raw(&signer.encoding, signer.alg, &header, &claims()),
        );
        assert!(
            matches!(err, IdentityError::AlgorithmMismatch),
            "{:?}",
            signer.alg
        );
        assert_eq!(err.code(), "algorithm_mismatch");
    }
}

#[test]
fn another_key_with_the_same_kid_is_refused() {
    let f = Fixture::new();
    let verifier = f.verifier();
    for impostor in [ed25519_key("ed-1"), p256_key("ec-1"), rsa_key("rsa-1", 1)] {
        let err = refuse(&verifier, &token(&impostor, &claims()));
        assert!(
            matches!(err, IdentityError::BadSignature),
            "{:?}",
            impostor.alg
        );
        assert_eq!(err.code(), "bad_signature");
    }
}

#[test]
fn tampered_tokens_are_refused() {
    let f = Fixture::new();
    let verifier = f.verifier();
    let good = token(&f.ed, &claims());
    let parts: Vec<&str> = good.split('.').collect();
    let forged_claims = b64(&serde_json::to_vec(&with(claims(), "sub", json!("mallory"))).unwrap());
    let swapped = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    assert!(matches!(
        refuse(&verifier, &swapped),
        IdentityError::BadSignature
    ));
    let no_signature = format!("{}.{}.", parts[0], parts[1]);
    assert!(matches!(
        refuse(&verifier, &no_signature),
        IdentityError::BadSignature
    ));
    let bad_base64 = format!("{}.{}.{}!", parts[0], parts[1], parts[2]);
    assert!(matches!(
        refuse(&verifier, &bad_base64),
        IdentityError::Malformed { .. }
    ));
}

#[test]
fn malformed_tokens_are_refused() {
    let f = Fixture::new();
    let verifier = f.verifier();
    let good = token(&f.ed, &claims());
    for bad in [
        String::new(),
        "a".to_owned(),
        "a.b".to_owned(),
        "a.b.c.d".to_owned(),
        "a.b.c.d.e".to_owned(),
        format!("{good}.extra"),
        format!("!!.{}", good.split_once('.').unwrap().1),
        format!("{}.e30.sig", b64(b"not json")),
        format!("{}.e30.sig", b64(b"[1,2]")),
        format!(
            "{}.e30.sig",
            URL_SAFE_NO_PAD.encode(b"{\"alg\":\"EdDSA\"}") + "="
        ),
        format!("{}.e30.sig", b64(br#"{"alg":1,"kid":"ed-1"}"#)),
        format!("{}.e30.sig", b64(br#"{"kid":"ed-1"}"#)),
    ] {
        let err = refuse(&verifier, &bad);
        assert!(
            matches!(err, IdentityError::Malformed { .. }),
            "{bad:?}: {err:?}"
        );
        assert_eq!(err.code(), "bad_token");
    }
    let long = format!("{good}{}", "A".repeat(MAX_TOKEN_BYTES));
    assert!(matches!(
        refuse(&verifier, &long),
        IdentityError::TokenTooLong { .. }
    ));
    // Claims that are not an object.
    let header = b64(&serde_json::to_vec(&header(&f.ed)).unwrap());
    let message = format!("{header}.{}", b64(b"[1]"));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &f.ed.encoding, f.ed.alg).unwrap();
    let err = refuse(&verifier, &format!("{message}.{signature}"));
    assert!(matches!(err, IdentityError::Malformed { .. }), "{err:?}");
}

#[test]
fn critical_header_extensions_are_refused() {
    let f = Fixture::new();
    let verifier = f.verifier();
    let header = json!({"alg": "EdDSA", "kid": f.ed.kid, "crit": ["b64"], "b64": false});
    let err = refuse(
        &verifier,
        &sign_raw(&f.ed.encoding, f.ed.alg, &header, &claims()),
    );
    assert!(matches!(err, IdentityError::CriticalHeader));
}

#[test]
fn header_key_hints_are_ignored() {
    let f = Fixture::new();
    let verifier = f.verifier();
    // A token that brings its own key (`jwk`, `jku`) is still checked against the
    // JWKS only: signed by a stranger under a known kid, it fails.
    let stranger = ed25519_key("ed-1");
    let header = json!({
        "alg": "EdDSA", "kid": "ed-1", "jwk": stranger.jwk, "jku": "https://evil.example.com/jwks",
    });
    let err = refuse(
        &verifier,
        &sign_raw(&stranger.encoding, stranger.alg, &header, &claims()),
    );
    assert!(matches!(err, IdentityError::BadSignature));
}

#[test]
fn missing_workspace_claim() {
    let f = Fixture::new();
    let verifier = f.verifier();
    let err = refuse(
        &verifier,
        &token(&f.ed, &without(claims(), "writ_workspace")),
    );
    assert!(matches!(&err, IdentityError::MissingClaim(c) if c == "writ_workspace"));
    assert_eq!(err.code(), "missing_claim");
    let err = refuse(
        &verifier,
        &token(&f.ed, &with(claims(), "writ_workspace", json!("Acme!"))),
    );
    assert!(matches!(err, IdentityError::BadWorkspace));
    let err = refuse(
        &verifier,
        &token(&f.ed, &with(claims(), "writ_workspace", json!(["acme"]))),
    );
    assert!(matches!(&err, IdentityError::BadClaim(c) if c == "writ_workspace"));
}

#[test]
fn principal_claim_takes_precedence_over_sub() {
    let f = Fixture::new();
    let verifier = f.verifier();
    let agent = with(claims(), "writ_principal", json!("Agent::\"runner-1\""));
    let principal = verifier.verify(&token(&f.ec, &agent), NOW).unwrap();
    assert_eq!(principal.entity().to_string(), "Agent::\"runner-1\"");
    assert_eq!(principal.workspace().map(WorkspaceId::as_str), Some("acme"));
    // Without `sub` too.
    let agent = without(agent, "sub");
    assert_eq!(
        verifier.verify(&token(&f.ec, &agent), NOW).unwrap().kind(),
        PrincipalKind::Agent
    );
    // `sub` is a user id, never a UID: its text is not parsed.
    let sub_uid = with(claims(), "sub", json!("Operator::\"ops\""));
    let principal = verifier.verify(&token(&f.ec, &sub_uid), NOW).unwrap();
    assert_eq!(principal.kind(), PrincipalKind::User);
    assert_eq!(
        principal.entity().to_string(),
        r#"User::"Operator::\"ops\"""#
    );
    let err = refuse(&verifier, &token(&f.ec, &without(claims(), "sub")));
    assert!(matches!(&err, IdentityError::MissingClaim(c) if c == "sub"));
}

#[test]
fn bad_principal_text() {
    let f = Fixture::new();
    let verifier = f.verifier();
    for (text, reason) in [
        (r#"Role::"admin""#, PrincipalSyntax::UnknownType),
        (
            r#"User::"a" in Group::"admins""#,
            PrincipalSyntax::TrailingText,
        ),
        (
            r#"User::"a", Operator::"ops""#,
            PrincipalSyntax::TrailingText,
        ),
        (r#"User::"""#, PrincipalSyntax::EmptyId),
        ("alice", PrincipalSyntax::Syntax),
        ("User::\"a\u{0}b\"", PrincipalSyntax::UnprintableId),
    ] {
        let err = refuse(
            &verifier,
            &token(&f.rsa, &with(claims(), "writ_principal", json!(text))),
        );
        assert!(
            matches!(&err, IdentityError::BadPrincipal(r) if *r == reason),
            "{text}: {err:?}"
        );
        assert_eq!(err.code(), "bad_principal");
    }
    // A malformed principal claim does not fall back to `sub`.
    let err = refuse(
        &verifier,
        &token(&f.rsa, &with(claims(), "writ_principal", json!(5))),
    );
    assert!(matches!(&err, IdentityError::BadClaim(c) if c == "writ_principal"));
    let err = refuse(&verifier, &token(&f.rsa, &with(claims(), "sub", json!(""))));
    assert!(matches!(
        err,
        IdentityError::BadPrincipal(PrincipalSyntax::EmptyId)
    ));
    let err = refuse(
        &verifier,
        &token(&f.rsa, &with(claims(), "sub", json!("a\nb"))),
    );
    assert!(matches!(
        err,
        IdentityError::BadPrincipal(PrincipalSyntax::UnprintableId)
    ));
}

#[test]
fn operators_need_explicit_permission() {
    let f = Fixture::new();
    let op = without(
        with(claims(), "writ_principal", json!("Operator::\"ops\"")),
        "writ_workspace",
    );
    let err = refuse(&f.verifier(), &token(&f.ed, &op));
    assert!(matches!(err, IdentityError::OperatorNotAllowed));
    let mut config = JwtConfig::new(ISS, AUD);
    config.allow_operator = true;
    let verifier = f.verifier_with(config);
    let principal = verifier.verify(&token(&f.ed, &op), NOW).unwrap();
    assert_eq!(principal.kind(), PrincipalKind::Operator);
    assert_eq!(principal.workspace(), None);
    let with_workspace = with(op, "writ_workspace", json!("acme"));
    let err = refuse(&verifier, &token(&f.ed, &with_workspace));
    assert!(matches!(err, IdentityError::UnexpectedWorkspace));
}

#[test]
fn claim_names_are_configurable() {
    let f = Fixture::new();
    let mut config = JwtConfig::new(ISS, AUD);
    config.principal_uid_claim = "https://writ.dev/principal".to_owned();
    config.principal_claim = "email".to_owned();
    config.workspace_claim = "tenant".to_owned();
    let verifier = f.verifier_with(config);
    let custom = json!({
        "iss": ISS, "aud": AUD, "nbf": NOW, "exp": NOW + 60,
        "email": "alice", "tenant": "acme", "sub": "ignored", "writ_principal": "Operator::\"x\"",
    });
    assert_eq!(
        verifier.verify(&token(&f.ed, &custom), NOW).unwrap(),
        alice()
    );
    let agent = with(
        custom,
        "https://writ.dev/principal",
        json!("Agent::\"bot\""),
    );
    assert_eq!(
        verifier.verify(&token(&f.ed, &agent), NOW).unwrap().kind(),
        PrincipalKind::Agent
    );
}

fn load(keys: Value) -> Result<JwksVerifier, JwksError> {
    let jwks = serde_json::to_vec(&json!({ "keys": keys })).unwrap();
    JwksVerifier::from_json("test jwks", &jwks, JwtConfig::new(ISS, AUD))
}

fn key_reason(result: Result<JwksVerifier, JwksError>) -> &'static str {
    match result {
        Err(JwksError::Key { reason, .. }) => reason,
        other => panic!("expected a key error, got {other:?}"),
    }
}

#[test]
fn jwks_refuses_dangerous_keys() {
    let f = Fixture::new();
    for member in ["d", "p", "k"] {
        let key = with(f.ed.jwk.clone(), member, json!("AAAA"));
        assert!(
            key_reason(load(json!([key]))).contains("private"),
            "{member}"
        );
    }
    let oct = json!({"kty": "oct", "kid": "h", "alg": "HS256"});
    assert!(key_reason(load(json!([oct, f.ed.jwk]))).contains("symmetric"));
    let mismatched = with(f.ed.jwk.clone(), "alg", json!("ES256"));
    assert!(key_reason(load(json!([mismatched]))).contains("does not fit"));
    let no_kid = without(f.ec.jwk.clone(), "kid");
    assert!(key_reason(load(json!([no_kid]))).contains("kid"));
    let err = load(json!([f.ed.jwk, f.ed.jwk])).unwrap_err();
    assert!(matches!(&err, JwksError::DuplicateKid { kid, .. } if kid == "ed-1"));
}

#[test]
fn jwks_refuses_malformed_keys() {
    let f = Fixture::new();
    // jsonwebtoken would slice a short Ed25519 key and panic on the first request.
    let short = with(f.ed.jwk.clone(), "x", json!(b64(&[9u8; 31])));
    assert!(key_reason(load(json!([short]))).contains("32"));
    let long = with(f.ed.jwk.clone(), "x", json!(b64(&[9u8; 33])));
    assert!(key_reason(load(json!([long]))).contains("32"));
    // A P-256 "point" that is not on the curve.
    let off_curve = with(f.ec.jwk.clone(), "y", json!(b64(&[1u8; 32])));
    assert!(key_reason(load(json!([off_curve]))).contains("curve"));
    let no_y = without(f.ec.jwk.clone(), "y");
    assert!(key_reason(load(json!([no_y]))).contains("`y`"));
    let mut weak_n = vec![0xffu8; 128];
    weak_n[127] = 0xfd;
    let weak = with(f.rsa.jwk.clone(), "n", json!(b64(&weak_n)));
    assert!(key_reason(load(json!([weak]))).contains("2048"));
    let even_e = with(f.rsa.jwk.clone(), "e", json!(b64(&[1, 0, 0])));
    assert!(key_reason(load(json!([even_e]))).contains("exponent"));
    let bad_b64 = with(f.rsa.jwk.clone(), "n", json!("!!!"));
    assert!(key_reason(load(json!([bad_b64]))).contains("base64"));
}

#[test]
fn jwks_skips_keys_not_for_writ() {
    let f = Fixture::new();
    let enc = with(
        with(f.rsa.jwk.clone(), "use", json!("enc")),
        "alg",
        json!("RSA-OAEP"),
    );
    let p384 = json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"});
    let pss = with(f.rsa.jwk.clone(), "alg", json!("PS256"));
    let x25519 = json!({"kty": "OKP", "crv": "X25519", "kid": "x", "x": "AA"});
    let unknown = json!({"kty": "AKP", "kid": "pq"});
    let encrypt_only = with(f.ec.jwk.clone(), "key_ops", json!(["encrypt"]));
    let verifier = load(json!([
        enc,
        p384,
        pss,
        x25519,
        unknown,
        encrypt_only,
        f.ed.jwk
    ]))
    .unwrap();
    assert_eq!(verifier.keys().collect::<Vec<_>>(), vec![("ed-1", "EdDSA")]);
    assert_eq!(verifier.skipped_keys(), 6);
    // A skipped key's kid is unknown to the verifier.
    let err = refuse(&verifier, &token(&f.ec, &claims()));
    assert!(matches!(err, IdentityError::UnknownKid));
    let padded = with(
        f.ed.jwk.clone(),
        "x",
        json!(format!("{}=", f.ed.jwk["x"].as_str().unwrap())),
    );
    assert!(load(json!([padded])).is_ok());
}

#[test]
fn jwks_needs_a_usable_key() {
    assert!(matches!(
        load(json!([])),
        Err(JwksError::NoUsableKey { .. })
    ));
    let p384 = json!({"kty": "EC", "crv": "P-384", "kid": "p384", "x": "AA", "y": "AA"});
    assert!(matches!(
        load(json!([p384])),
        Err(JwksError::NoUsableKey { .. })
    ));
    for bad in [&b"not json"[..], b"[]", b"{}", b"{\"keys\": {}}"] {
        let err = JwksVerifier::from_json("x", bad, JwtConfig::new(ISS, AUD)).unwrap_err();
        assert!(matches!(err, JwksError::Parse { .. }), "{err:?}");
    }
}

#[test]
fn jwks_from_file() {
    let f = Fixture::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, f.jwks()).unwrap();
    let verifier = JwksVerifier::from_file(&path, JwtConfig::new(ISS, AUD)).unwrap();
    assert_eq!(
        verifier.verify(&token(&f.rsa, &claims()), NOW).unwrap(),
        alice()
    );
    let debug = format!("{verifier:?}");
    assert!(debug.contains("rsa-1"));
    let missing = JwksVerifier::from_file(&dir.path().join("nope.json"), JwtConfig::new(ISS, AUD));
    assert!(matches!(missing, Err(JwksError::Read { .. })));
    let big = dir.path().join("big.json");
    std::fs::write(&big, vec![b' '; (MAX_JWKS_BYTES + 1) as usize]).unwrap();
    let too_large = JwksVerifier::from_file(&big, JwtConfig::new(ISS, AUD));
    assert!(matches!(too_large, Err(JwksError::TooLarge { .. })));
}

#[test]
fn config_defaults_and_checks() {
    let config: JwtConfig =
        toml::from_str("issuer = \"https://idp\"\naudience = \"writ\"\n").unwrap();
    assert_eq!(config, JwtConfig::new("https://idp", "writ"));
    assert_eq!(config.principal_uid_claim, "writ_principal");
    assert_eq!(config.principal_claim, "sub");
    assert_eq!(config.workspace_claim, "writ_workspace");
    assert_eq!(config.leeway_secs, 30);
    assert!(config.require_nbf);
    assert!(!config.allow_operator);
    assert!(toml::from_str::<JwtConfig>(
        "issuer = \"a\"\naudience = \"b\"\nallow_operators = true\n"
    )
    .is_err());
    assert!(toml::from_str::<JwtConfig>("issuer = \"a\"\n").is_err());

    let f = Fixture::new();
    let mut bad = Vec::new();
    bad.push(JwtConfig::new("", AUD));
    bad.push(JwtConfig::new(ISS, ""));
    let mut c = JwtConfig::new(ISS, AUD);
    c.leeway_secs = 301;
    bad.push(c);
    let mut c = JwtConfig::new(ISS, AUD);
    c.workspace_claim = String::new();
    bad.push(c);
    let mut c = JwtConfig::new(ISS, AUD);
    c.principal_claim = "writ_principal".to_owned();
    bad.push(c);
    for config in bad {
        let err = JwksVerifier::from_json("x", &f.jwks(), config).unwrap_err();
        assert!(matches!(err, JwksError::Config { .. }), "{err:?}");
    }
}

#[test]
fn the_credential_names_the_issuer_and_the_token_id_never_the_token() {
    let f = Fixture::new();
    let verifier = f.verifier();
    let with_jti = with(claims(), "jti", json!("tok-1"));
    let principal = verifier.verify(&token(&f.ec, &with_jti), NOW).unwrap();
    assert_eq!(
        principal.credential().unwrap().to_json(),
        json!({"type": "jwt", "iss": ISS, "jti": "tok-1"})
    );
    // Without a `jti`, the `sub` tells tokens apart as far as the IdP does.
    let principal = verifier.verify(&token(&f.ec, &claims()), NOW).unwrap();
    assert_eq!(
        principal.credential().unwrap().to_json(),
        json!({"type": "jwt", "iss": ISS, "sub": "alice"})
    );
    // A credential never makes two principals differ.
    let other = verifier.verify(&token(&f.ec, &with_jti), NOW).unwrap();
    assert_eq!(principal, other);
    // An auditor comes from a JWT only where operators may.
    let auditor = without(
        with(claims(), "writ_principal", json!("Auditor::\"ada\"")),
        "writ_workspace",
    );
    assert!(matches!(
        verifier.verify(&token(&f.ec, &auditor), NOW),
        Err(IdentityError::OperatorNotAllowed)
    ));
}
