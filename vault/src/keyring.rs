//! The key ring: the versioned key-encryption keys (KEKs), which one is primary,
//! the minimum version still allowed to decrypt, and the ledger's signing key.
//! It exists in the clear only in memory; at rest it is sealed (`seal.rs`).
//!
//! Encoding (big-endian, no trailing bytes):
//! `b"wrtk" | 1 | ring id (16) | primary u32 | min_decrypt u32 | count u16 |
//!  count × (version u32 | created_unix_ms u64 | key 32) | has_ledger_key u8 |
//!  [u16 length | the ledger's note signer key string]`.

use std::collections::BTreeMap;
use std::fmt;

use rand::{CryptoRng, RngCore};
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::ids::KekVersion;
use crate::keys::{Key, KEY_LEN};

/// The longest ledger signer key string a ring holds (a note signer key string
/// is about 100 bytes).
pub const MAX_LEDGER_KEY_LEN: usize = 1024;

/// The ledger's signing key, as the note signer key string
/// `PRIVATE+KEY+name+hexkeyid+base64(0x01||seed)`: zeroized, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct LedgerKey(Zeroizing<String>);

impl LedgerKey {
    /// `None` when longer than [`MAX_LEDGER_KEY_LEN`].
    pub fn new(text: Zeroizing<String>) -> Option<Self> {
        (text.len() <= MAX_LEDGER_KEY_LEN).then_some(Self(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LedgerKey(..)")
    }
}

const MAGIC: [u8; 4] = *b"wrtk";
const FORMAT_VERSION: u8 = 1;
/// More versions than anyone will rotate to; bounds what a decoder allocates.
const MAX_KEKS: usize = 4096;

/// A key ring's random identity; shares and sealed files name it so that a share
/// of another ring is refused by name.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RingId([u8; 16]);

impl RingId {
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for RingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RingId({self})")
    }
}

#[derive(Clone)]
struct Kek {
    key: Key,
    created_unix_ms: u64,
}

/// What may be said about one KEK version (no key bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KekInfo {
    pub version: KekVersion,
    pub created_unix_ms: u64,
    pub primary: bool,
}

/// The unsealed key ring.
#[derive(Clone)]
pub struct KeyRing {
    id: RingId,
    // INVARIANT: `older` holds the versions >= `min_decrypt` below `primary`, which
    // is the newest version (kept apart so that it always exists).
    older: BTreeMap<KekVersion, Kek>,
    primary: KekVersion,
    primary_kek: Kek,
    min_decrypt: KekVersion,
    ledger_key: Option<LedgerKey>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("id", &self.id)
            .field("older", &self.older.keys().collect::<Vec<_>>())
            .field("primary", &self.primary)
            .field("min_decrypt", &self.min_decrypt)
            .field("ledger_key", &self.ledger_key.as_ref().map(|_| ".."))
            .finish()
    }
}

impl KeyRing {
    /// A new ring with one KEK (version 1, primary) and no ledger key.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng), now_unix_ms: u64) -> Self {
        let mut id = [0u8; 16];
        rng.fill_bytes(&mut id);
        Self {
            id: RingId(id),
            older: BTreeMap::new(),
            primary: KekVersion::FIRST,
            primary_kek: Kek {
                key: Key::generate(rng),
                created_unix_ms: now_unix_ms,
            },
            min_decrypt: KekVersion::FIRST,
            ledger_key: None,
        }
    }

    pub fn id(&self) -> RingId {
        self.id
    }

    /// The KEK new secrets are wrapped under.
    pub fn primary(&self) -> (KekVersion, &Key) {
        (self.primary, &self.primary_kek.key)
    }

    pub fn primary_version(&self) -> KekVersion {
        self.primary
    }

    pub fn min_decrypt(&self) -> KekVersion {
        self.min_decrypt
    }

    /// The KEK of `version`, if it may still decrypt.
    pub fn kek(&self, version: KekVersion) -> Result<&Key, VaultError> {
        if version < self.min_decrypt {
            return Err(VaultError::KekRetired(version));
        }
        if version == self.primary {
            return Ok(&self.primary_kek.key);
        }
        self.older
            .get(&version)
            .map(|kek| &kek.key)
            .ok_or(VaultError::KekUnknown(version))
    }

    pub fn versions(&self) -> Vec<KekInfo> {
        self.older
            .iter()
            .chain([(&self.primary, &self.primary_kek)])
            .map(|(&version, kek)| KekInfo {
                version,
                created_unix_ms: kek.created_unix_ms,
                primary: version == self.primary,
            })
            .collect()
    }

    /// Adds a KEK version and makes it primary; new secrets use it at once.
    pub fn rotate(
        &mut self,
        rng: &mut (impl RngCore + CryptoRng),
        now_unix_ms: u64,
    ) -> Result<KekVersion, VaultError> {
        if self.older.len() + 1 >= MAX_KEKS {
            return Err(VaultError::RingFull);
        }
        let next = self.primary.next().ok_or(VaultError::RingFull)?;
        let new = Kek {
            key: Key::generate(rng),
            created_unix_ms: now_unix_ms,
        };
        let old = std::mem::replace(&mut self.primary_kek, new);
        self.older.insert(self.primary, old);
        self.primary = next;
        Ok(next)
    }

    /// Raises the minimum decryption version to `min` and drops every KEK below it.
    /// `wrapped_by` counts the data keys each version still wraps; retiring a
    /// version that wraps any is refused, as is retiring the primary.
    pub fn retire_below(
        &mut self,
        min: KekVersion,
        wrapped_by: &BTreeMap<KekVersion, u64>,
    ) -> Result<Vec<KekVersion>, VaultError> {
        if min <= self.min_decrypt {
            return Err(VaultError::RetireBackwards(self.min_decrypt));
        }
        if min > self.primary {
            return Err(VaultError::RetirePrimary(self.primary));
        }
        if let Some((&version, &count)) = wrapped_by.range(..min).find(|(_, &count)| count > 0) {
            return Err(VaultError::KekInUse {
                min,
                version,
                count,
            });
        }
        let retired: Vec<KekVersion> = self.older.range(..min).map(|(&v, _)| v).collect();
        self.older.retain(|&version, _| version >= min);
        self.min_decrypt = min;
        Ok(retired)
    }

    /// The ledger's signing key, when the ring holds it.
    pub fn ledger_key(&self) -> Option<&LedgerKey> {
        self.ledger_key.as_ref()
    }

    pub fn set_ledger_key(&mut self, key: LedgerKey) {
        self.ledger_key = Some(key);
    }

    /// The explicit encoding that is sealed at rest.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let count = self.older.len() + 1;
        let mut out = Zeroizing::new(Vec::with_capacity(40 + count * 44 + 33));
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.id.0);
        out.extend_from_slice(&self.primary.get().to_be_bytes());
        out.extend_from_slice(&self.min_decrypt.get().to_be_bytes());
        // INVARIANT: at most MAX_KEKS (4096) entries, which fits a u16.
        out.extend_from_slice(&u16::try_from(count).unwrap_or(u16::MAX).to_be_bytes());
        for (version, kek) in self
            .older
            .iter()
            .chain([(&self.primary, &self.primary_kek)])
        {
            out.extend_from_slice(&version.get().to_be_bytes());
            out.extend_from_slice(&kek.created_unix_ms.to_be_bytes());
            out.extend_from_slice(kek.key.expose());
        }
        match &self.ledger_key {
            Some(key) => {
                out.push(1);
                // INVARIANT: at most MAX_LEDGER_KEY_LEN (1024) bytes.
                let len = u16::try_from(key.expose().len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(key.expose().as_bytes());
            }
            None => out.push(0),
        }
        out
    }

    /// Parses [`KeyRing::encode`]'s output, checking every invariant.
    pub fn decode(bytes: &[u8]) -> Result<Self, VaultError> {
        let mut reader = Reader::new(bytes, VaultError::RingMalformed);
        if reader.take(4)? != MAGIC {
            return Err(VaultError::RingMalformed("bad magic"));
        }
        let version = reader.u8()?;
        if version != FORMAT_VERSION {
            return Err(VaultError::RingVersion(version));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(reader.take(16)?);
        let primary =
            KekVersion::new(reader.u32()?).ok_or(VaultError::RingMalformed("primary version 0"))?;
        let min_decrypt =
            KekVersion::new(reader.u32()?).ok_or(VaultError::RingMalformed("minimum version 0"))?;
        let count = usize::from(reader.u16()?);
        if count == 0 || count > MAX_KEKS {
            return Err(VaultError::RingMalformed("key count out of range"));
        }
        let mut older = BTreeMap::new();
        let mut last: Option<(KekVersion, Kek)> = None;
        for _ in 0..count {
            let version =
                KekVersion::new(reader.u32()?).ok_or(VaultError::RingMalformed("key version 0"))?;
            if last.as_ref().is_some_and(|(last, _)| version <= *last) || version < min_decrypt {
                return Err(VaultError::RingMalformed("key versions out of order"));
            }
            let created_unix_ms = reader.u64()?;
            let key = Key::from_slice(reader.take(KEY_LEN)?)
                .ok_or(VaultError::RingMalformed("short key"))?;
            if let Some((version, kek)) = last.replace((
                version,
                Kek {
                    key,
                    created_unix_ms,
                },
            )) {
                older.insert(version, kek);
            }
        }
        let primary_kek = match last {
            Some((version, kek)) if version == primary => kek,
            _ => {
                return Err(VaultError::RingMalformed(
                    "the primary is not the newest key",
                ))
            }
        };
        let ledger_key = match reader.u8()? {
            0 => None,
            1 => {
                let len = usize::from(reader.u16()?);
                if len > MAX_LEDGER_KEY_LEN {
                    return Err(VaultError::RingMalformed("ledger key too long"));
                }
                let text = std::str::from_utf8(reader.take(len)?)
                    .map_err(|_| VaultError::RingMalformed("ledger key is not UTF-8"))?;
                LedgerKey::new(Zeroizing::new(text.to_owned()))
            }
            _ => return Err(VaultError::RingMalformed("bad ledger key flag")),
        };
        if !reader.is_empty() {
            return Err(VaultError::RingMalformed("trailing bytes"));
        }
        Ok(Self {
            id: RingId(id),
            older,
            primary,
            primary_kek,
            min_decrypt,
            ledger_key,
        })
    }
}

/// A bounds-checked cursor over untrusted bytes; `malformed` builds its errors.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
    malformed: fn(&'static str) -> VaultError,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8], malformed: fn(&'static str) -> VaultError) -> Self {
        Self {
            bytes,
            at: 0,
            malformed,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.at >= self.bytes.len()
    }

    pub(crate) fn take(&mut self, len: usize) -> Result<&'a [u8], VaultError> {
        let end = self
            .at
            .checked_add(len)
            .ok_or((self.malformed)("length overflow"))?;
        let slice = self
            .bytes
            .get(self.at..end)
            .ok_or((self.malformed)("truncated"))?;
        self.at = end;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], VaultError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, VaultError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    pub(crate) fn u16(&mut self) -> Result<u16, VaultError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, VaultError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, VaultError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes.get(self.at..).unwrap_or_default();
        self.at = self.bytes.len();
        rest
    }
}
