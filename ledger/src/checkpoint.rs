//! Checkpoints: the C2SP `tlog-checkpoint` body inside a C2SP `signed-note`, Ed25519.
//!
//! Note parsing and the signature-line format come from the `signed_note` crate;
//! the checkpoint body from `tlog_tiles`. The key types here are ours so that the
//! signing key zeroizes on drop, prints no bytes, and verification uses
//! `verify_strict` (see `docs/LEDGER-FORMAT.md`, "Ed25519 verification").

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use signed_note::{Note, VerificationError, Verifier, Verifiers};
use zeroize::Zeroizing;

use crate::error::LedgerError;
use crate::hash::Hash;
use crate::types::TreeSize;

/// The signed-note algorithm byte for Ed25519.
const ALG_ED25519: u8 = 0x01;

/// The Ed25519 key that signs the log's checkpoints; the key name is the log's origin.
pub struct LogSigner {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for LogSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogSigner")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}

/// Computes the signed-note key ID: the first 4 bytes of
/// SHA-256(name || 0x0A || 0x01 || public key), big-endian.
pub fn key_id(name: &str, public_key: &VerifyingKey) -> u32 {
    let mut encoded = Vec::with_capacity(33);
    encoded.push(ALG_ED25519);
    encoded.extend_from_slice(public_key.as_bytes());
    signed_note::key_id(name, &encoded)
}

fn check_key_name(name: &str) -> bool {
    signed_note::is_key_name_valid(name)
}

impl LogSigner {
    /// A fresh key for the log named `origin`.
    pub fn generate(origin: &str) -> Result<Self, LedgerError> {
        let key = SigningKey::generate(&mut rand::rngs::OsRng);
        Self::from_key(origin, key)
    }

    /// A signer from a 32-byte seed (tests and the key file).
    pub fn from_seed(origin: &str, seed: &[u8; 32]) -> Result<Self, LedgerError> {
        Self::from_key(origin, SigningKey::from_bytes(seed))
    }

    fn from_key(origin: &str, key: SigningKey) -> Result<Self, LedgerError> {
        if !check_key_name(origin) {
            return Err(LedgerError::MalformedSigningKey {
                reason: "the key name must be non-empty, without spaces or `+`",
            });
        }
        Ok(Self {
            name: origin.to_owned(),
            key_id: key_id(origin, &key.verifying_key()),
            key,
        })
    }

    /// Parses the Go `note` private key form `PRIVATE+KEY+name+hexid+base64(0x01||seed)`.
    pub fn from_signer_key_string(text: &str) -> Result<Self, LedgerError> {
        let malformed = |reason| LedgerError::MalformedSigningKey { reason };
        let rest = text
            .trim_end()
            .strip_prefix("PRIVATE+KEY+")
            .ok_or(malformed("missing `PRIVATE+KEY+` prefix"))?;
        let (name, rest) = rest.split_once('+').ok_or(malformed("missing key name"))?;
        let (id_hex, key_b64) = rest.split_once('+').ok_or(malformed("missing key id"))?;
        let decoded = Zeroizing::new(
            BASE64
                .decode(key_b64)
                .map_err(|_| malformed("key is not base64"))?,
        );
        let (alg, seed) = decoded.split_first().ok_or(malformed("empty key"))?;
        if *alg != ALG_ED25519 {
            return Err(malformed("not an Ed25519 key"));
        }
        let seed: &[u8; 32] = seed
            .try_into()
            .map_err(|_| malformed("seed is not 32 bytes"))?;
        let signer = Self::from_seed(name, seed)?;
        if id_hex.len() != 8 || format!("{:08x}", signer.key_id) != id_hex {
            return Err(malformed("key id does not match the key"));
        }
        Ok(signer)
    }

    /// The private key string (handle with care: it is the log's signing key).
    pub fn to_signer_key_string(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new(Vec::with_capacity(33));
        raw.push(ALG_ED25519);
        raw.extend_from_slice(self.key.as_bytes());
        // Built in one zeroizing buffer of its final size: no copy of the encoded
        // seed is left behind in freed memory.
        let mut text = Zeroizing::new(String::with_capacity(self.name.len() + 96));
        text.push_str("PRIVATE+KEY+");
        text.push_str(&self.name);
        text.push_str(&format!("+{:08x}+", self.key_id));
        BASE64.encode_string(raw.as_slice(), &mut text);
        text
    }

    /// The verifier key string `name+hexkeyid+base64(0x01||pubkey)`.
    pub fn verifier_key(&self) -> String {
        verifier_key_string(&self.name, &self.key.verifying_key())
    }

    /// The public half, as a verifier.
    pub fn verifier(&self) -> LogVerifier {
        LogVerifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// The log's origin, which is also the key name.
    pub fn origin(&self) -> &str {
        &self.name
    }

    /// Signs `checkpoint` and returns the whole signed note text.
    pub fn sign(&self, checkpoint: &Checkpoint) -> Result<String, LedgerError> {
        if checkpoint.origin != self.name {
            return Err(LedgerError::OriginMismatch {
                expected: self.name.clone(),
                found: checkpoint.origin.clone(),
            });
        }
        self.sign_note_text(&checkpoint.body())
    }

    /// Signs arbitrary note text and returns the signed note (text, blank line,
    /// one signature line). The text must be a valid note text: UTF-8 without
    /// control characters other than newline, ending in a newline.
    pub fn sign_note_text(&self, text: &str) -> Result<String, LedgerError> {
        Note::new(text.as_bytes(), &[]).map_err(|error| LedgerError::MalformedNote {
            reason: error.to_string(),
        })?;
        let signature = self.key.sign(text.as_bytes());
        let mut line = Vec::with_capacity(68);
        line.extend_from_slice(&self.key_id.to_be_bytes());
        line.extend_from_slice(&signature.to_bytes());
        Ok(format!(
            "{text}\n\u{2014} {} {}\n",
            self.name,
            BASE64.encode(line)
        ))
    }
}

fn verifier_key_string(name: &str, key: &VerifyingKey) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(ALG_ED25519);
    raw.extend_from_slice(key.as_bytes());
    format!("{name}+{:08x}+{}", key_id(name, key), BASE64.encode(raw))
}

/// A trusted log public key, parsed from its verifier key string.
#[derive(Clone, Debug)]
pub struct LogVerifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl LogVerifier {
    /// Parses `name+hexkeyid+base64(0x01||pubkey)`, refusing a key ID that does not
    /// match, an unknown algorithm, and weak (small-order) public keys.
    pub fn from_verifier_key(text: &str) -> Result<Self, LedgerError> {
        let malformed = |reason| LedgerError::MalformedVerifierKey { reason };
        let text = text.trim_end_matches(['\n', '\r']);
        let (name, rest) = text.split_once('+').ok_or(malformed("missing key name"))?;
        let (id_hex, key_b64) = rest.split_once('+').ok_or(malformed("missing key id"))?;
        if !check_key_name(name) {
            return Err(malformed("bad key name"));
        }
        if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(malformed("key id is not 8 hex digits"));
        }
        let raw = BASE64
            .decode(key_b64)
            .map_err(|_| malformed("key is not base64"))?;
        let (alg, public) = raw.split_first().ok_or(malformed("empty key"))?;
        if *alg != ALG_ED25519 {
            return Err(malformed("not an Ed25519 key"));
        }
        let public: &[u8; 32] = public
            .try_into()
            .map_err(|_| malformed("public key is not 32 bytes"))?;
        let key = VerifyingKey::from_bytes(public).map_err(|_| malformed("not a curve point"))?;
        if key.is_weak() {
            return Err(malformed("weak (small-order) public key"));
        }
        let key_id = key_id(name, &key);
        if format!("{key_id:08x}") != id_hex.to_ascii_lowercase() {
            return Err(malformed("key id does not match the key"));
        }
        Ok(Self {
            name: name.to_owned(),
            key_id,
            key,
        })
    }

    /// The key name (the log's origin).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key string this was parsed from, in canonical form.
    pub fn to_verifier_key(&self) -> String {
        verifier_key_string(&self.name, &self.key)
    }

    /// Verifies a signed checkpoint note and returns its parsed body.
    ///
    /// The note must carry a valid signature by this key (signatures by other keys,
    /// such as witnesses, are ignored), and the checkpoint origin must be the key name.
    pub fn verify_checkpoint(&self, note: &[u8]) -> Result<Checkpoint, LedgerError> {
        let text = verify_note(note, &KeyRing(vec![self.clone()]))?;
        let checkpoint = Checkpoint::parse_body(&text)?;
        if checkpoint.origin != self.name {
            return Err(LedgerError::OriginMismatch {
                expected: self.name.clone(),
                found: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }
}

impl Verifier for LogVerifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn key_id(&self) -> u32 {
        self.key_id
    }

    fn verify(&self, msg: &[u8], sig: &[u8]) -> bool {
        let Ok(bytes) = <&[u8; 64]>::try_from(sig) else {
            return false;
        };
        let signature = ed25519_dalek::Signature::from_bytes(bytes);
        self.key.verify_strict(msg, &signature).is_ok()
    }
}

/// Lets a `LogVerifier` list several keys (after a key rotation).
#[derive(Debug)]
pub struct KeyRing(pub Vec<LogVerifier>);

impl Verifiers for KeyRing {
    fn verifier(&self, name: &str, id: u32) -> Result<&dyn Verifier, VerificationError> {
        self.0
            .iter()
            .find(|key| key.name == name && key.key_id == id)
            .map(|key| key as &dyn Verifier)
            .ok_or(VerificationError::UnknownKey {
                name: name.to_owned(),
                id,
            })
    }
}

/// Verifies a signed note against a set of trusted keys and returns its text.
///
/// At least one signature must be by a trusted key and every signature by a trusted
/// key must verify; signatures by unknown keys are ignored (as in Go's `note.Open`).
pub fn verify_note(note: &[u8], keys: &KeyRing) -> Result<Vec<u8>, LedgerError> {
    let parsed = Note::from_bytes(note).map_err(|error| LedgerError::MalformedNote {
        reason: error.to_string(),
    })?;
    parsed.verify(keys).map_err(|error| match error {
        signed_note::NoteError::UnverifiedNote => LedgerError::UnsignedNote { key: keys.names() },
        signed_note::NoteError::InvalidSignature { name, .. } => {
            LedgerError::BadSignature { key: name }
        }
        other => LedgerError::MalformedNote {
            reason: other.to_string(),
        },
    })?;
    Ok(parsed.text().to_vec())
}

impl KeyRing {
    fn names(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(|key| key.name()).collect();
        names.join(", ")
    }
}

/// A checkpoint body: origin, tree size, root hash (no extension lines are written).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: TreeSize,
    pub root: Hash,
}

impl Checkpoint {
    /// The note text: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size.0,
            self.root.to_base64()
        )
    }

    /// Parses a checkpoint body (extension lines are accepted and ignored).
    pub fn parse_body(text: &[u8]) -> Result<Self, LedgerError> {
        let parsed = tlog_tiles::Checkpoint::from_bytes(text).map_err(|error| {
            LedgerError::MalformedCheckpoint {
                reason: error.to_string(),
            }
        })?;
        Ok(Self {
            origin: parsed.origin().to_owned(),
            size: TreeSize(parsed.size()),
            root: Hash::from_tlog(*parsed.hash()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> LogSigner {
        LogSigner::from_seed("example.com/log", &[7u8; 32]).unwrap()
    }

    #[test]
    fn sign_then_verify_round_trips() {
        let signer = signer();
        let checkpoint = Checkpoint {
            origin: "example.com/log".into(),
            size: TreeSize(3),
            root: Hash([9u8; 32]),
        };
        let note = signer.sign(&checkpoint).unwrap();
        let verifier = LogVerifier::from_verifier_key(&signer.verifier_key()).unwrap();
        assert_eq!(
            verifier.verify_checkpoint(note.as_bytes()).unwrap(),
            checkpoint
        );
    }

    #[test]
    fn signer_key_string_round_trips() {
        let signer = signer();
        let text = signer.to_signer_key_string();
        let again = LogSigner::from_signer_key_string(&text).unwrap();
        assert_eq!(again.verifier_key(), signer.verifier_key());
        assert!(!format!("{signer:?}").contains(&BASE64.encode([7u8; 32])));
    }

    #[test]
    fn a_flipped_body_byte_fails() {
        let signer = signer();
        let checkpoint = Checkpoint {
            origin: "example.com/log".into(),
            size: TreeSize(3),
            root: Hash([9u8; 32]),
        };
        let note = signer.sign(&checkpoint).unwrap().replace("\n3\n", "\n4\n");
        let verifier = LogVerifier::from_verifier_key(&signer.verifier_key()).unwrap();
        let err = verifier.verify_checkpoint(note.as_bytes()).unwrap_err();
        assert!(matches!(err, LedgerError::BadSignature { .. }), "{err}");
    }
}
