//! Key and plaintext holders: zeroized on drop, and a `Debug` that prints no bytes.

use std::fmt;

use rand::{CryptoRng, RngCore};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Bytes in every symmetric key of the vault (XChaCha20-Poly1305 keys, KEKs, DEKs,
/// root keys).
pub const KEY_LEN: usize = 32;

/// A 256-bit symmetric key.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Key([u8; KEY_LEN]);

impl Key {
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        let mut key = Self([0; KEY_LEN]);
        rng.fill_bytes(&mut key.0);
        key
    }

    /// Takes the bytes and wipes the caller's copy.
    pub fn from_bytes(bytes: &mut [u8; KEY_LEN]) -> Self {
        let key = Self(*bytes);
        bytes.zeroize();
        key
    }

    /// `None` unless `bytes` is exactly [`KEY_LEN`] long.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut array: [u8; KEY_LEN] = bytes.try_into().ok()?;
        Some(Self::from_bytes(&mut array))
    }

    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl Eq for Key {}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// A secret value in the clear: wiped on drop, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretValue({} bytes)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_prints_no_bytes() {
        let key = Key::from_slice(&[0xAB; KEY_LEN]).expect("32 bytes");
        let shown = format!("{key:?}");
        assert!(
            !shown.contains("171") && !shown.to_lowercase().contains("ab"),
            "{shown}"
        );
        let value = SecretValue::new(b"hunter2".to_vec());
        assert_eq!(format!("{value:?}"), "SecretValue(7 bytes)");
    }

    #[test]
    fn from_bytes_wipes_the_source() {
        let mut bytes = [7u8; KEY_LEN];
        let key = Key::from_bytes(&mut bytes);
        assert_eq!(bytes, [0; KEY_LEN]);
        assert_eq!(key.expose(), &[7; KEY_LEN]);
        assert!(Key::from_slice(&[1; 31]).is_none());
    }
}
