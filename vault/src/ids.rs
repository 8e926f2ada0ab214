//! Newtypes for the numbers and names the vault binds ciphertexts to.

use std::fmt;

use crate::error::VaultError;

/// At most 64 characters of refused input, without control characters, for an
/// error message.
fn shown(input: &str) -> String {
    input.chars().take(64).filter(|c| !c.is_control()).collect()
}

/// The version of a key-encryption key in the ring, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KekVersion(u32);

impl KekVersion {
    pub const FIRST: Self = Self(1);

    /// `None` for 0, which names no key.
    pub fn new(version: u32) -> Option<Self> {
        (version != 0).then_some(Self(version))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub(crate) fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }
}

impl fmt::Display for KekVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The version of one secret, starting at 1; every write makes a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretVersion(u32);

impl SecretVersion {
    pub const FIRST: Self = Self(1);

    pub fn new(version: u32) -> Result<Self, VaultError> {
        if version == 0 {
            return Err(VaultError::BadSecretVersion);
        }
        Ok(Self(version))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for SecretVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A secret's name: 1 to 128 characters of `[A-Za-z0-9._-]`, with `/` between
/// non-empty parts, and no part `.` or `..` (names appear in paths and URLs).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SecretName(String);

pub const MAX_SECRET_NAME_LEN: usize = 128;

impl SecretName {
    pub fn new(name: impl Into<String>) -> Result<Self, VaultError> {
        let name = name.into();
        let part_ok = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        };
        if name.len() > MAX_SECRET_NAME_LEN || !name.split('/').all(part_ok) {
            return Err(VaultError::BadSecretName(shown(&name)));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The workspace a secret belongs to, as the vault binds it: the server checks
/// the workspace grammar; the vault only needs a non-empty, bounded, printable name
/// with no NUL (it separates key parts in storage).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Workspace(String);

impl Workspace {
    pub fn new(workspace: impl Into<String>) -> Result<Self, VaultError> {
        let workspace = workspace.into();
        if workspace.is_empty()
            || workspace.len() > 64
            || !workspace.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(VaultError::BadWorkspace(shown(&workspace)));
        }
        Ok(Self(workspace))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Workspace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a ciphertext is for, bound into its associated data so that bytes sealed
/// for one use cannot be opened as another.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Purpose(String);

impl Purpose {
    /// A secret value stored through the API.
    pub fn secret_value() -> Self {
        Self("secret.value".to_owned())
    }

    pub fn new(purpose: impl Into<String>) -> Result<Self, VaultError> {
        let purpose = purpose.into();
        if purpose.is_empty()
            || purpose.len() > 64
            || !purpose.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
            })
        {
            return Err(VaultError::BadPurpose(shown(&purpose)));
        }
        Ok(Self(purpose))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_path_safe() {
        for good in ["db", "prod/db.password", "a-b_c.d/e", "A9"] {
            assert!(SecretName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "", "/db", "db/", "a//b", "../x", "a/./b", "a b", "a\0b", "é", "a?b",
        ] {
            assert!(SecretName::new(bad).is_err(), "{bad:?}");
        }
        assert!(SecretName::new("x".repeat(128)).is_ok());
        assert!(SecretName::new("x".repeat(129)).is_err());
    }

    #[test]
    fn versions_start_at_one() {
        assert!(SecretVersion::new(0).is_err());
        assert!(KekVersion::new(0).is_none());
        assert_eq!(
            SecretVersion::new(u32::MAX).map(SecretVersion::get).ok(),
            Some(u32::MAX)
        );
    }

    #[test]
    fn workspaces_and_purposes_are_bounded() {
        assert!(Workspace::new("acme").is_ok());
        assert!(Workspace::new("").is_err());
        assert!(Workspace::new("a\0b").is_err());
        assert!(Workspace::new("x".repeat(65)).is_err());
        assert!(Purpose::new("secret.value").is_ok());
        assert!(Purpose::new("Secret").is_err());
    }
}
