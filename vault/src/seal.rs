//! The sealed key ring at rest, and the three sealers that open it: a passphrase
//! (Argon2id), a key file, and Shamir shares (`shares.rs`). Each sealer yields a
//! 256-bit root key; the ring's encoding is encrypted under a key derived from it.
//!
//! ```text
//! b"wrts" | format 1 | sealer u8 | ring id (16) | sealer parameters | nonce (24) | ciphertext
//!   sealer 1, passphrase: m_cost_kib u32 | t_cost u32 | p_cost u32 | salt (16)
//!   sealer 2, key file:   key check (8) = SHA-256("writ-vault/v1/keyfile-check" || key)[..8]
//!   sealer 3, shares:     threshold u8 | shares u8
//! ```
//! The associated data is every byte before the nonce, so the parameters cannot be
//! changed without the ring failing to open.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead as _, KeyInit as _, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::{CryptoRng, RngCore};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::keyring::{KeyRing, Reader, RingId};
use crate::keys::{Key, KEY_LEN};

const MAGIC: [u8; 4] = *b"wrts";
const FORMAT_VERSION: u8 = 1;
const NONCE_LEN: usize = 24;
const SALT_LEN: usize = 16;
const KEYFILE_PREFIX: &str = "writ-vault-key-v1:";
/// The largest sealed ring a reader accepts (4096 KEKs and headers fit well inside).
pub const MAX_SEALED_LEN: usize = 256 * 1024;

/// Argon2id cost parameters, stored with the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Cost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Argon2Cost {
    /// RFC 9106's second recommended option (64 MiB, 3 passes), one lane.
    pub const RECOMMENDED: Self = Self {
        memory_kib: 64 * 1024,
        iterations: 3,
        parallelism: 1,
    };

    fn params(self) -> Result<Params, VaultError> {
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(KEY_LEN),
        )
        .map_err(|error| VaultError::Argon2(error.to_string()))
    }
}

/// How a ring is sealed, with the parameters each sealer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sealer {
    Passphrase {
        cost: Argon2Cost,
        salt: [u8; SALT_LEN],
    },
    KeyFile {
        check: [u8; 8],
    },
    Shares {
        threshold: u8,
        shares: u8,
    },
}

impl Sealer {
    /// For messages: "sealed with a key file".
    pub fn name(&self) -> &'static str {
        match self {
            Self::Passphrase { .. } => "a passphrase",
            Self::KeyFile { .. } => "a key file",
            Self::Shares { .. } => "shares",
        }
    }

    /// For machines (status, ledger entries): `passphrase`, `key_file`, `shares`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Passphrase { .. } => "passphrase",
            Self::KeyFile { .. } => "key_file",
            Self::Shares { .. } => "shares",
        }
    }

    fn code(&self) -> u8 {
        match self {
            Self::Passphrase { .. } => 1,
            Self::KeyFile { .. } => 2,
            Self::Shares { .. } => 3,
        }
    }
}

/// A ring as it is stored: parsed, not opened.
#[derive(Debug, Clone)]
pub struct SealedRing {
    ring_id: RingId,
    sealer: Sealer,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

fn ring_cipher(root: &Key) -> XChaCha20Poly1305 {
    let hkdf = Hkdf::<Sha256>::new(Some(b"writ-vault/v1"), root.expose());
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    // INVARIANT: 32 bytes is within HKDF-SHA256's output limit.
    let _ = hkdf.expand(b"ring", key.as_mut());
    XChaCha20Poly1305::new(key.as_ref().into())
}

impl SealedRing {
    /// Seals `ring` under `root`, with the parameters of `sealer`.
    pub fn seal(
        ring: &KeyRing,
        root: &Key,
        sealer: Sealer,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, VaultError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let mut sealed = Self {
            ring_id: ring.id(),
            sealer,
            nonce,
            ciphertext: Vec::new(),
        };
        let aad = sealed.header();
        let plaintext = ring.encode();
        sealed.ciphertext = ring_cipher(root)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| VaultError::SealedMalformed("the ring is too large to seal"))?;
        Ok(sealed)
    }

    pub fn ring_id(&self) -> RingId {
        self.ring_id
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    fn header(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(self.sealer.code());
        out.extend_from_slice(self.ring_id.as_bytes());
        match &self.sealer {
            Sealer::Passphrase { cost, salt } => {
                out.extend_from_slice(&cost.memory_kib.to_be_bytes());
                out.extend_from_slice(&cost.iterations.to_be_bytes());
                out.extend_from_slice(&cost.parallelism.to_be_bytes());
                out.extend_from_slice(salt);
            }
            Sealer::KeyFile { check } => out.extend_from_slice(check),
            Sealer::Shares { threshold, shares } => out.extend_from_slice(&[*threshold, *shares]),
        }
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.header();
        out.extend_from_slice(&self.nonce);
        out.extend_from_slice(&self.ciphertext);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, VaultError> {
        if bytes.len() > MAX_SEALED_LEN {
            return Err(VaultError::SealedMalformed("larger than any sealed ring"));
        }
        let mut reader = Reader::new(bytes, VaultError::SealedMalformed);
        if reader.take(4)? != MAGIC {
            return Err(VaultError::SealedMagic);
        }
        let version = reader.u8()?;
        if version != FORMAT_VERSION {
            return Err(VaultError::SealedVersion(version));
        }
        let code = reader.u8()?;
        let mut id = [0u8; 16];
        id.copy_from_slice(reader.take(16)?);
        let sealer = match code {
            1 => {
                let cost = Argon2Cost {
                    memory_kib: reader.u32()?,
                    iterations: reader.u32()?,
                    parallelism: reader.u32()?,
                };
                let mut salt = [0u8; SALT_LEN];
                salt.copy_from_slice(reader.take(SALT_LEN)?);
                Sealer::Passphrase { cost, salt }
            }
            2 => {
                let mut check = [0u8; 8];
                check.copy_from_slice(reader.take(8)?);
                Sealer::KeyFile { check }
            }
            3 => {
                let threshold = reader.u8()?;
                let shares = reader.u8()?;
                check_share_parameters(threshold, shares)?;
                Sealer::Shares { threshold, shares }
            }
            _ => return Err(VaultError::SealedMalformed("unknown sealer")),
        };
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(reader.take(NONCE_LEN)?);
        let ciphertext = reader.rest().to_vec();
        if ciphertext.len() < 16 {
            return Err(VaultError::SealedMalformed("truncated"));
        }
        Ok(Self {
            ring_id: RingId::from_bytes(id),
            sealer,
            nonce,
            ciphertext,
        })
    }

    /// Opens the ring with its root key. A wrong key and an altered file look
    /// alike to the AEAD; the sealers say which is likelier.
    pub fn open(&self, root: &Key) -> Result<KeyRing, VaultError> {
        let plaintext = Zeroizing::new(
            ring_cipher(root)
                .decrypt(
                    XNonce::from_slice(&self.nonce),
                    Payload {
                        msg: &self.ciphertext,
                        aad: &self.header(),
                    },
                )
                .map_err(|_| VaultError::SealedTampered)?,
        );
        let ring = KeyRing::decode(&plaintext)?;
        if ring.id() != self.ring_id {
            return Err(VaultError::SealedMalformed(
                "ring id differs from its header",
            ));
        }
        Ok(ring)
    }

    /// Seals a changed ring again under the same root and sealer (fresh nonce).
    pub fn reseal(
        &self,
        ring: &KeyRing,
        root: &Key,
        rng: &mut (impl RngCore + CryptoRng),
    ) -> Result<Self, VaultError> {
        Self::seal(ring, root, self.sealer.clone(), rng)
    }

    pub fn open_with_passphrase(&self, passphrase: &[u8]) -> Result<(KeyRing, Key), VaultError> {
        let Sealer::Passphrase { cost, salt } = &self.sealer else {
            return Err(VaultError::WrongSealer {
                expected: "a passphrase",
                actual: self.sealer.name(),
            });
        };
        let root = passphrase_root(passphrase, *cost, salt)?;
        match self.open(&root) {
            Ok(ring) => Ok((ring, root)),
            Err(VaultError::SealedTampered) => Err(VaultError::WrongPassphrase),
            Err(other) => Err(other),
        }
    }

    pub fn open_with_key_file(&self, root: &Key) -> Result<KeyRing, VaultError> {
        let Sealer::KeyFile { check } = &self.sealer else {
            return Err(VaultError::WrongSealer {
                expected: "a key file",
                actual: self.sealer.name(),
            });
        };
        if !bool::from(key_check(root).ct_eq(check)) {
            return Err(VaultError::WrongKeyFile);
        }
        self.open(root)
    }
}

pub(crate) fn check_share_parameters(threshold: u8, shares: u8) -> Result<(), VaultError> {
    if threshold < 2 || threshold > shares {
        return Err(VaultError::ShareParameters { threshold, shares });
    }
    Ok(())
}

/// The root key a passphrase gives under `cost` and `salt` (Argon2id).
pub fn passphrase_root(
    passphrase: &[u8],
    cost: Argon2Cost,
    salt: &[u8; SALT_LEN],
) -> Result<Key, VaultError> {
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, cost.params()?);
    let mut root = Zeroizing::new([0u8; KEY_LEN]);
    argon2
        .hash_password_into(passphrase, salt, root.as_mut())
        .map_err(|error| VaultError::Argon2(error.to_string()))?;
    Ok(Key::from_bytes(&mut root))
}

/// A new passphrase sealer: its parameters and the root key.
pub fn passphrase_sealer(
    passphrase: &[u8],
    cost: Argon2Cost,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<(Sealer, Key), VaultError> {
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    let root = passphrase_root(passphrase, cost, &salt)?;
    Ok((Sealer::Passphrase { cost, salt }, root))
}

fn key_check(root: &Key) -> [u8; 8] {
    let digest = Sha256::new()
        .chain_update(b"writ-vault/v1/keyfile-check")
        .chain_update(root.expose())
        .finalize();
    let mut check = [0u8; 8];
    check.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    check
}

/// A new key file sealer: its parameters, the root key, and the file's text.
pub fn key_file_sealer(rng: &mut (impl RngCore + CryptoRng)) -> (Sealer, Key, Zeroizing<String>) {
    let root = Key::generate(rng);
    let text = Zeroizing::new(format!(
        "{KEYFILE_PREFIX}{}\n",
        STANDARD.encode(root.expose())
    ));
    (
        Sealer::KeyFile {
            check: key_check(&root),
        },
        root,
        text,
    )
}

/// The root key in a key file's text.
pub fn parse_key_file(text: &str) -> Result<Key, VaultError> {
    let body = text
        .trim_end_matches(['\n', '\r'])
        .strip_prefix(KEYFILE_PREFIX)
        .ok_or(VaultError::KeyFileMalformed(
            "it does not start with `writ-vault-key-v1:`",
        ))?;
    let bytes = Zeroizing::new(
        STANDARD
            .decode(body)
            .map_err(|_| VaultError::KeyFileMalformed("the key is not base64"))?,
    );
    Key::from_slice(&bytes).ok_or(VaultError::KeyFileMalformed("the key is not 32 bytes"))
}
