//! The envelope: one secret version encrypted under its own data key (DEK), the
//! DEK wrapped by a key-encryption key (KEK) of the ring. The byte layout is the
//! external contract of `docs/VAULT-FORMAT.md`; this module is its one encoder and
//! its one parser.
//!
//! ```text
//! offset  len  field
//!      0    4  magic `wrtv`
//!      4    1  format version (1)
//!      5    1  algorithm (1: XChaCha20-Poly1305 both layers, HKDF-SHA256)
//!      6    4  KEK version, big-endian u32
//!     10   24  wrap nonce
//!     34   48  wrapped DEK (32 bytes + 16-byte Poly1305 tag)
//!     82   32  key commitment
//!    114   24  data nonce
//!    138    n  ciphertext + 16-byte tag
//! ```
//!
//! Both layers' associated data carry the [`Binding`] (workspace, secret name,
//! version, purpose), so bytes moved to another secret do not open. The data layer
//! does not bind the KEK fields, so a rewrap replaces only bytes 6..114.

use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use sha2::Sha256;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::ids::{KekVersion, Purpose, SecretName, SecretVersion, Workspace};
use crate::keyring::KeyRing;
use crate::keys::{Key, SecretValue, KEY_LEN};

pub const MAGIC: [u8; 4] = *b"wrtv";
pub const FORMAT_VERSION: u8 = 1;
/// XChaCha20-Poly1305 for the wrap and the data, HKDF-SHA256 for the data key and
/// the commitment.
pub const ALGORITHM_XCHACHA20POLY1305_HKDF_SHA256: u8 = 1;
/// The largest secret value the vault seals.
pub const MAX_VALUE_LEN: usize = 64 * 1024;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const WRAPPED_LEN: usize = KEY_LEN + TAG_LEN;
const COMMIT_LEN: usize = 32;

const KEK_AT: usize = 6;
const WRAP_NONCE_AT: usize = KEK_AT + 4;
const WRAPPED_AT: usize = WRAP_NONCE_AT + NONCE_LEN;
const COMMIT_AT: usize = WRAPPED_AT + WRAPPED_LEN;
const DATA_NONCE_AT: usize = COMMIT_AT + COMMIT_LEN;
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = DATA_NONCE_AT + NONCE_LEN;

const WRAP_LABEL: &[u8] = b"writ-vault/v1/wrap";
const DATA_LABEL: &[u8] = b"writ-vault/v1/data";
const HKDF_SALT: &[u8] = b"writ-vault/v1";
const DATA_KEY_INFO: &[u8] = b"data-key";
const COMMIT_INFO: &[u8] = b"commit";

/// What a ciphertext is bound to: it opens only under the same binding.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub workspace: &'a Workspace,
    pub name: &'a SecretName,
    pub version: SecretVersion,
    pub purpose: &'a Purpose,
}

impl Binding<'_> {
    /// Length-prefixed fields, so no two bindings encode alike.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 64 + 128 + 64);
        for field in [
            self.workspace.as_str(),
            self.name.as_str(),
            self.purpose.as_str(),
        ] {
            // Every field is at most 128 bytes (checked by its newtype).
            out.extend_from_slice(&u16::try_from(field.len()).unwrap_or(u16::MAX).to_be_bytes());
            out.extend_from_slice(field.as_bytes());
        }
        out.extend_from_slice(&self.version.get().to_be_bytes());
        out
    }
}

/// The parsed fixed-size part of an envelope.
struct Header<'a> {
    kek: KekVersion,
    wrap_nonce: &'a [u8],
    wrapped: &'a [u8],
    commitment: &'a [u8],
    data_nonce: &'a [u8],
    ciphertext: &'a [u8],
}

fn parse(envelope: &[u8]) -> Result<Header<'_>, VaultError> {
    if envelope.len() < HEADER_LEN + TAG_LEN {
        return Err(VaultError::EnvelopeTruncated(envelope.len()));
    }
    let field = |from: usize, len: usize| {
        envelope
            .get(from..from + len)
            .ok_or(VaultError::EnvelopeTruncated(envelope.len()))
    };
    if field(0, 4)? != MAGIC {
        return Err(VaultError::EnvelopeMagic);
    }
    let version = envelope.get(4).copied().unwrap_or_default();
    if version != FORMAT_VERSION {
        return Err(VaultError::EnvelopeVersion(version));
    }
    let algorithm = envelope.get(5).copied().unwrap_or_default();
    if algorithm != ALGORITHM_XCHACHA20POLY1305_HKDF_SHA256 {
        return Err(VaultError::EnvelopeAlgorithm(algorithm));
    }
    let kek_bytes: [u8; 4] = field(KEK_AT, 4)?
        .try_into()
        .map_err(|_| VaultError::EnvelopeTruncated(envelope.len()))?;
    let kek = KekVersion::new(u32::from_be_bytes(kek_bytes))
        .ok_or(VaultError::KekUnknown(KekVersion::FIRST))?;
    Ok(Header {
        kek,
        wrap_nonce: field(WRAP_NONCE_AT, NONCE_LEN)?,
        wrapped: field(WRAPPED_AT, WRAPPED_LEN)?,
        commitment: field(COMMIT_AT, COMMIT_LEN)?,
        data_nonce: field(DATA_NONCE_AT, NONCE_LEN)?,
        ciphertext: envelope.get(HEADER_LEN..).unwrap_or_default(),
    })
}

/// The KEK version an envelope is wrapped under (header only; nothing is opened).
pub fn kek_version(envelope: &[u8]) -> Result<KekVersion, VaultError> {
    parse(envelope).map(|header| header.kek)
}

fn cipher(key: &[u8; KEY_LEN]) -> XChaCha20Poly1305 {
    XChaCha20Poly1305::new(key.into())
}

fn wrap_aad(kek: KekVersion, binding: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(WRAP_LABEL.len() + 10 + binding.len());
    aad.extend_from_slice(WRAP_LABEL);
    aad.extend_from_slice(&MAGIC);
    aad.push(FORMAT_VERSION);
    aad.push(ALGORITHM_XCHACHA20POLY1305_HKDF_SHA256);
    aad.extend_from_slice(&kek.get().to_be_bytes());
    aad.extend_from_slice(binding);
    aad
}

fn data_aad(binding: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(DATA_LABEL.len() + 6 + binding.len());
    aad.extend_from_slice(DATA_LABEL);
    aad.extend_from_slice(&MAGIC);
    aad.push(FORMAT_VERSION);
    aad.push(ALGORITHM_XCHACHA20POLY1305_HKDF_SHA256);
    aad.extend_from_slice(binding);
    aad
}

/// The data key and the commitment, both derived from the DEK: the commitment
/// covers every header byte before it, the data nonce and the binding, so a DEK
/// that opens under another header or binding is caught before decryption.
fn derive(
    dek: &Key,
    header_before_commit: &[u8],
    data_nonce: &[u8],
    binding: &[u8],
) -> (Key, [u8; COMMIT_LEN]) {
    let hkdf = Hkdf::<Sha256>::new(Some(HKDF_SALT), dek.expose());
    let mut data_key = Zeroizing::new([0u8; KEY_LEN]);
    let mut commitment = [0u8; COMMIT_LEN];
    // INVARIANT: 32 bytes is far below HKDF-SHA256's 8160-byte output limit, so
    // neither expand can fail.
    let _ = hkdf.expand(DATA_KEY_INFO, data_key.as_mut());
    let _ = hkdf.expand_multi_info(
        &[COMMIT_INFO, header_before_commit, data_nonce, binding],
        &mut commitment,
    );
    (Key::from_bytes(&mut data_key), commitment)
}

fn random_nonce(rng: &mut (impl RngCore + CryptoRng)) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill_bytes(&mut nonce);
    nonce
}

/// Writes the KEK fields and the commitment of an envelope for `dek`, leaving
/// `out` holding the full header (the data nonce is given).
fn write_header(
    out: &mut Vec<u8>,
    kek_version: KekVersion,
    kek: &Key,
    dek: &Key,
    data_nonce: &[u8],
    binding: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Key, VaultError> {
    let wrap_nonce = random_nonce(rng);
    let wrapped = cipher(kek.expose())
        .encrypt(
            XNonce::from_slice(&wrap_nonce),
            Payload {
                msg: dek.expose(),
                aad: &wrap_aad(kek_version, binding),
            },
        )
        .map_err(|_| VaultError::UnwrapFailed)?;
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.push(ALGORITHM_XCHACHA20POLY1305_HKDF_SHA256);
    out.extend_from_slice(&kek_version.get().to_be_bytes());
    out.extend_from_slice(&wrap_nonce);
    out.extend_from_slice(&wrapped);
    let (data_key, commitment) = derive(dek, out, data_nonce, binding);
    out.extend_from_slice(&commitment);
    out.extend_from_slice(data_nonce);
    Ok(data_key)
}

/// Seals `value` for `binding` under a fresh DEK wrapped by the ring's primary KEK.
pub fn seal(
    ring: &KeyRing,
    binding: Binding<'_>,
    value: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Vec<u8>, VaultError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(VaultError::ValueTooLarge {
            len: value.len(),
            max: MAX_VALUE_LEN,
        });
    }
    let binding = binding.encode();
    let (kek_version, kek) = ring.primary();
    let dek = Key::generate(rng);
    let data_nonce = random_nonce(rng);
    let mut out = Vec::with_capacity(HEADER_LEN + value.len() + TAG_LEN);
    let data_key = write_header(&mut out, kek_version, kek, &dek, &data_nonce, &binding, rng)?;
    let ciphertext = cipher(data_key.expose())
        .encrypt(
            XNonce::from_slice(&data_nonce),
            Payload {
                msg: value,
                aad: &data_aad(&binding),
            },
        )
        .map_err(|_| VaultError::DecryptFailed)?;
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

/// Unwraps the DEK of a parsed envelope and checks its commitment.
fn unwrap_checked(
    ring: &KeyRing,
    header: &Header<'_>,
    envelope: &[u8],
    binding: &[u8],
) -> Result<(Key, Key), VaultError> {
    let kek = ring.kek(header.kek)?;
    let dek_bytes = Zeroizing::new(
        cipher(kek.expose())
            .decrypt(
                XNonce::from_slice(header.wrap_nonce),
                Payload {
                    msg: header.wrapped,
                    aad: &wrap_aad(header.kek, binding),
                },
            )
            .map_err(|_| VaultError::UnwrapFailed)?,
    );
    let dek = Key::from_slice(&dek_bytes).ok_or(VaultError::UnwrapFailed)?;
    let before_commit = envelope
        .get(..COMMIT_AT)
        .ok_or(VaultError::EnvelopeTruncated(envelope.len()))?;
    let (data_key, commitment) = derive(&dek, before_commit, header.data_nonce, binding);
    if !bool::from(commitment.ct_eq(header.commitment)) {
        return Err(VaultError::CommitmentMismatch);
    }
    Ok((dek, data_key))
}

/// Opens an envelope sealed for `binding`. The commitment is checked before the
/// ciphertext is decrypted.
pub fn open(
    ring: &KeyRing,
    binding: Binding<'_>,
    envelope: &[u8],
) -> Result<SecretValue, VaultError> {
    let header = parse(envelope)?;
    let binding = binding.encode();
    let (_dek, data_key) = unwrap_checked(ring, &header, envelope, &binding)?;
    let value = cipher(data_key.expose())
        .decrypt(
            XNonce::from_slice(header.data_nonce),
            Payload {
                msg: header.ciphertext,
                aad: &data_aad(&binding),
            },
        )
        .map_err(|_| VaultError::DecryptFailed)?;
    Ok(SecretValue::new(value))
}

/// Re-wraps the DEK of `envelope` under the ring's primary KEK; the data nonce and
/// ciphertext are kept byte for byte. `None` when it is already under the primary.
pub fn rewrap(
    ring: &KeyRing,
    binding: Binding<'_>,
    envelope: &[u8],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Option<Vec<u8>>, VaultError> {
    let header = parse(envelope)?;
    let (primary_version, primary) = ring.primary();
    if header.kek == primary_version {
        return Ok(None);
    }
    let binding = binding.encode();
    let (dek, _) = unwrap_checked(ring, &header, envelope, &binding)?;
    let mut out = Vec::with_capacity(envelope.len());
    write_header(
        &mut out,
        primary_version,
        primary,
        &dek,
        header.data_nonce,
        &binding,
        rng,
    )?;
    out.extend_from_slice(header.ciphertext);
    Ok(Some(out))
}
