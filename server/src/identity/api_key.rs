//! API keys: random bearer secrets shown once, stored only as their SHA-256.
//!
//! A key is `writ_` followed by 43 base64url characters (32 bytes from the OS RNG,
//! no padding). The store never sees a key again after `create`: it keeps a record
//! under the key's SHA-256 and an index from the record's public id to that hash.
//! Keys carry 256 bits of entropy, so a fast hash is enough; a slow password hash
//! would only add latency to every request.
//!
//! Layout of the sled tree (owned by this store):
//! - `h` + SHA-256(key) (33 bytes) -> the record, as JSON (`StoredRecord`, version 1);
//! - `i` + id (`ak_` + 16 hex digits) -> SHA-256(key) (32 bytes).

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha256};
use sled::transaction::{ConflictableTransactionError, TransactionError};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::error::IdentityError;
use super::principal::{Credential, Principal, PrincipalEntity, WorkspaceId};

/// Every API key starts with this; the server routes tokens on it.
pub const API_KEY_PREFIX: &str = "writ_";
/// Random bytes in a key.
const SECRET_BYTES: usize = 32;
/// base64url characters for [`SECRET_BYTES`] without padding.
const ENCODED_LEN: usize = 43;
const HASH_PREFIX: u8 = b'h';
const ID_PREFIX: u8 = b'i';
const ID_PREFIX_TEXT: &str = "ak_";
/// Random bytes in a key id (shown as 16 hex digits).
const ID_BYTES: usize = 8;
const MAX_LABEL_CHARS: usize = 128;
const RECORD_VERSION: u32 = 1;
/// Attempts at a fresh id and key before giving up; a collision of 64-bit ids is
/// already vanishingly rare.
const CREATE_ATTEMPTS: usize = 4;

type KeyHash = [u8; 32];

/// The public name of an API key (`ak_` + 16 lowercase hex digits), used to list and
/// revoke it. It says nothing about the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiKeyId(String);

impl ApiKeyId {
    fn generate() -> Result<Self, IdentityError> {
        let mut bytes = [0u8; ID_BYTES];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|_| IdentityError::Rng)?;
        Ok(Self(format!("{ID_PREFIX_TEXT}{}", hex::encode(bytes))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ApiKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for ApiKeyId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex_part = s
            .strip_prefix(ID_PREFIX_TEXT)
            .ok_or(IdentityError::BadKeyId)?;
        let well_formed = hex_part.len() == ID_BYTES * 2
            && hex_part
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !well_formed {
            return Err(IdentityError::BadKeyId);
        }
        Ok(Self(s.to_owned()))
    }
}

impl Serialize for ApiKeyId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ApiKeyId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A freshly created API key: shown to its owner once, then dropped (and wiped).
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// The key text, for the one time it is printed.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

/// What is known about an API key, minus the key and its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub principal: Principal,
    pub label: Option<String>,
    pub created_unix_ms: u64,
    pub revoked: bool,
}

/// The stored form: version 1. Changing a field means a new version, read
/// alongside this one.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredRecord {
    v: u32,
    id: ApiKeyId,
    principal: PrincipalEntity,
    workspace: Option<WorkspaceId>,
    label: Option<String>,
    created_unix_ms: u64,
    revoked: bool,
    /// Hex SHA-256 of the key: the same bytes as the tree key, compared in constant
    /// time after the lookup so a mix-up in the tree cannot authenticate anyone.
    key_sha256: String,
}

impl StoredRecord {
    fn decode(bytes: &[u8]) -> Result<Self, IdentityError> {
        let record: Self = serde_json::from_slice(bytes).map_err(|_| IdentityError::Corrupt {
            what: "an api key record does not decode",
        })?;
        if record.v != RECORD_VERSION {
            return Err(IdentityError::Corrupt {
                what: "an api key record has an unknown version",
            });
        }
        Ok(record)
    }

    fn encode(&self) -> Result<Vec<u8>, IdentityError> {
        serde_json::to_vec(self).map_err(|_| IdentityError::Corrupt {
            what: "an api key record does not encode",
        })
    }

    fn to_record(&self) -> Result<ApiKeyRecord, IdentityError> {
        let principal =
            Principal::new(self.principal.clone(), self.workspace.clone()).map_err(|_| {
                IdentityError::Corrupt {
                    what: "an api key record has an invalid principal",
                }
            })?;
        Ok(ApiKeyRecord {
            id: self.id.clone(),
            principal,
            label: self.label.clone(),
            created_unix_ms: self.created_unix_ms,
            revoked: self.revoked,
        })
    }
}

/// API keys in one sled tree, which this store owns.
#[derive(Clone)]
pub struct ApiKeyStore {
    tree: sled::Tree,
}

impl fmt::Debug for ApiKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyStore")
            .field("tree", &String::from_utf8_lossy(&self.tree.name()))
            .finish()
    }
}

impl ApiKeyStore {
    pub fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }

    /// Creates a key for `principal` and returns it with its record. The record is
    /// flushed to disk before this returns, so a key that gets printed exists.
    pub fn create(
        &self,
        principal: &Principal,
        label: Option<&str>,
        now_unix_ms: u64,
    ) -> Result<(ApiKeyRecord, ApiKeySecret), IdentityError> {
        let label = label.map(check_label).transpose()?;
        for _ in 0..CREATE_ATTEMPTS {
            let secret = new_secret()?;
            let hash = sha256(secret.expose());
            let stored = StoredRecord {
                v: RECORD_VERSION,
                id: ApiKeyId::generate()?,
                principal: principal.entity().clone(),
                workspace: principal.workspace().cloned(),
                label: label.clone(),
                created_unix_ms: now_unix_ms,
                revoked: false,
                key_sha256: hex::encode(hash),
            };
            let value = stored.encode()?;
            let hash_key = hash_key(&hash);
            let id_key = id_key(&stored.id);
            let inserted = self.tree.transaction(|tx| {
                if tx.get(hash_key)?.is_some() || tx.get(&id_key)?.is_some() {
                    return Err(ConflictableTransactionError::Abort(()));
                }
                tx.insert(&hash_key[..], value.as_slice())?;
                tx.insert(id_key.as_slice(), &hash[..])?;
                Ok(())
            });
            match inserted {
                Ok(()) => {
                    self.tree.flush()?;
                    let record = ApiKeyRecord {
                        id: stored.id,
                        principal: principal.clone(),
                        label,
                        created_unix_ms: now_unix_ms,
                        revoked: false,
                    };
                    return Ok((record, secret));
                }
                Err(TransactionError::Abort(())) => continue,
                Err(TransactionError::Storage(error)) => return Err(error.into()),
            }
        }
        Err(IdentityError::Corrupt {
            what: "no fresh api key id could be drawn",
        })
    }

    /// The principal an API key stands for.
    pub fn authenticate(&self, token: &str) -> Result<Principal, IdentityError> {
        if !is_well_formed(token) {
            return Err(IdentityError::MalformedApiKey);
        }
        let hash = sha256(token);
        let value = self
            .tree
            .get(hash_key(&hash))?
            .ok_or(IdentityError::UnknownApiKey)?;
        let stored = StoredRecord::decode(&value)?;
        let stored_hash = decode_hash(&stored.key_sha256)?;
        if !bool::from(stored_hash.ct_eq(&hash)) {
            return Err(IdentityError::Corrupt {
                what: "an api key record is filed under another hash",
            });
        }
        if stored.revoked {
            return Err(IdentityError::Revoked);
        }
        let record = stored.to_record()?;
        Ok(record.principal.with_credential(Credential::ApiKey {
            id: record.id.as_str().to_owned(),
        }))
    }

    /// One key's record.
    pub fn get(&self, id: &str) -> Result<ApiKeyRecord, IdentityError> {
        let id: ApiKeyId = id.parse()?;
        let hash = self
            .tree
            .get(id_key(&id))?
            .ok_or_else(|| IdentityError::NotFound(id.clone()))?;
        let hash = stored_hash(&hash)?;
        let value = self
            .tree
            .get(hash_key(&hash))?
            .ok_or(IdentityError::Corrupt {
                what: "an api key id points at no record",
            })?;
        StoredRecord::decode(&value)?.to_record()
    }

    /// Revokes a key for good and returns its record. Revoking a revoked key
    /// changes nothing and returns the record again.
    pub fn revoke(&self, id: &str) -> Result<ApiKeyRecord, IdentityError> {
        let id: ApiKeyId = id.parse()?;
        let id_key = id_key(&id);
        let revoked = self.tree.transaction(|tx| {
            let abort = ConflictableTransactionError::Abort;
            let hash = tx
                .get(&id_key)?
                .ok_or_else(|| abort(IdentityError::NotFound(id.clone())))?;
            let hash = stored_hash(&hash).map_err(abort)?;
            let hash_key = hash_key(&hash);
            let value = tx.get(hash_key)?.ok_or_else(|| {
                abort(IdentityError::Corrupt {
                    what: "an api key id points at no record",
                })
            })?;
            let mut stored = StoredRecord::decode(&value).map_err(abort)?;
            if !stored.revoked {
                stored.revoked = true;
                tx.insert(&hash_key[..], stored.encode().map_err(abort)?)?;
            }
            Ok(stored)
        });
        let stored = match revoked {
            Ok(stored) => stored,
            Err(TransactionError::Abort(error)) => return Err(error),
            Err(TransactionError::Storage(error)) => return Err(error.into()),
        };
        self.tree.flush()?;
        stored.to_record()
    }

    /// Every key's record (revoked ones included), oldest first. No key or hash is
    /// in a record.
    pub fn list(&self) -> Result<Vec<ApiKeyRecord>, IdentityError> {
        let mut records = Vec::new();
        for entry in self.tree.scan_prefix([HASH_PREFIX]) {
            let (_, value) = entry?;
            records.push(StoredRecord::decode(&value)?.to_record()?);
        }
        records.sort_by(|a, b| (a.created_unix_ms, &a.id).cmp(&(b.created_unix_ms, &b.id)));
        Ok(records)
    }

    /// True when no key was ever created (a revoked key still counts as one).
    pub fn is_empty(&self) -> Result<bool, IdentityError> {
        match self.tree.scan_prefix([HASH_PREFIX]).next() {
            None => Ok(true),
            Some(entry) => entry.map(|_| false).map_err(IdentityError::from),
        }
    }
}

fn new_secret() -> Result<ApiKeySecret, IdentityError> {
    let mut bytes = Zeroizing::new([0u8; SECRET_BYTES]);
    OsRng
        .try_fill_bytes(bytes.as_mut())
        .map_err(|_| IdentityError::Rng)?;
    // Sized up front so the string never reallocates and leaves no stray copy.
    let mut text = String::with_capacity(API_KEY_PREFIX.len() + ENCODED_LEN);
    text.push_str(API_KEY_PREFIX);
    URL_SAFE_NO_PAD.encode_string(bytes.as_ref(), &mut text);
    Ok(ApiKeySecret(text))
}

/// The shape of a key, checked before any lookup: the prefix and 43 base64url characters.
fn is_well_formed(token: &str) -> bool {
    token.strip_prefix(API_KEY_PREFIX).is_some_and(|body| {
        body.len() == ENCODED_LEN
            && body
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

fn check_label(label: &str) -> Result<String, IdentityError> {
    let chars = label.chars().count();
    if chars == 0 || chars > MAX_LABEL_CHARS || label.chars().any(char::is_control) {
        return Err(IdentityError::BadLabel);
    }
    Ok(label.to_owned())
}

fn sha256(token: &str) -> KeyHash {
    Sha256::digest(token.as_bytes()).into()
}

fn hash_key(hash: &KeyHash) -> [u8; 33] {
    let mut key = [HASH_PREFIX; 33];
    for (slot, byte) in key.iter_mut().skip(1).zip(hash) {
        *slot = *byte;
    }
    key
}

fn id_key(id: &ApiKeyId) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.as_str().len());
    key.push(ID_PREFIX);
    key.extend_from_slice(id.as_str().as_bytes());
    key
}

fn stored_hash(bytes: &[u8]) -> Result<KeyHash, IdentityError> {
    KeyHash::try_from(bytes).map_err(|_| IdentityError::Corrupt {
        what: "an api key index entry is not a hash",
    })
}

fn decode_hash(text: &str) -> Result<KeyHash, IdentityError> {
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash).map_err(|_| IdentityError::Corrupt {
        what: "an api key record has a malformed hash",
    })?;
    Ok(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::PrincipalKind;

    fn store() -> (tempfile::TempDir, ApiKeyStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let store = ApiKeyStore::new(db.open_tree("api_keys").unwrap());
        (dir, store)
    }

    fn alice() -> Principal {
        Principal::new(
            PrincipalEntity::new(PrincipalKind::User, "alice").unwrap(),
            Some(WorkspaceId::new("acme").unwrap()),
        )
        .unwrap()
    }

    fn operator() -> Principal {
        Principal::new(
            PrincipalEntity::new(PrincipalKind::Operator, "ops").unwrap(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn key_format() {
        let (_dir, store) = store();
        let (record, secret) = store.create(&alice(), None, 1).unwrap();
        let key = secret.expose();
        assert_eq!(key.len(), 48);
        assert!(key.starts_with("writ_"));
        let body = &key[5..];
        assert_eq!(URL_SAFE_NO_PAD.decode(body).unwrap().len(), 32);
        assert!(is_well_formed(key));
        assert!(record.id.as_str().starts_with("ak_"));
        assert_eq!(record.id.as_str().len(), 19);
        assert_eq!(record.id.as_str().parse::<ApiKeyId>().unwrap(), record.id);
        let (_, other) = store.create(&alice(), None, 1).unwrap();
        assert_ne!(other.expose(), key);
    }

    #[test]
    fn keys_round_trip() {
        let (_dir, store) = store();
        assert!(store.is_empty().unwrap());
        let (record, secret) = store
            .create(&alice(), Some("laptop"), 1_700_000_000_000)
            .unwrap();
        let (op_record, op_secret) = store.create(&operator(), None, 1_700_000_000_001).unwrap();
        assert!(!store.is_empty().unwrap());
        assert_eq!(store.authenticate(secret.expose()).unwrap(), alice());
        assert_eq!(store.authenticate(op_secret.expose()).unwrap(), operator());
        assert_eq!(record.label.as_deref(), Some("laptop"));
        assert_eq!(record.created_unix_ms, 1_700_000_000_000);
        assert!(!record.revoked);
        assert_eq!(store.get(record.id.as_str()).unwrap(), record);
        assert_eq!(store.list().unwrap(), vec![record, op_record]);
    }

    #[test]
    fn keys_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let key = {
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            let store = ApiKeyStore::new(db.open_tree("api_keys").unwrap());
            let (_, secret) = store.create(&alice(), None, 1).unwrap();
            secret.expose().to_owned()
        };
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let store = ApiKeyStore::new(db.open_tree("api_keys").unwrap());
        assert_eq!(store.authenticate(&key).unwrap(), alice());
    }

    #[test]
    fn unknown_and_malformed_keys() {
        let (_dir, store) = store();
        let (_, secret) = store.create(&alice(), None, 1).unwrap();
        let unknown = format!("writ_{}", URL_SAFE_NO_PAD.encode([7u8; 32]));
        assert!(matches!(
            store.authenticate(&unknown),
            Err(IdentityError::UnknownApiKey)
        ));
        // One character changed.
        let mut tampered = secret.expose().to_owned();
        let last = if tampered.ends_with('A') { "B" } else { "A" };
        tampered.replace_range(47.., last);
        assert!(matches!(
            store.authenticate(&tampered),
            Err(IdentityError::UnknownApiKey)
        ));
        for bad in [
            "",
            "writ_",
            "writ_abc",
            &format!("{}=", secret.expose()),
            &format!("{}A", secret.expose()),
            &secret.expose()[..47],
            &secret.expose().replace("writ_", "WRIT_"),
            &format!("writ_{}", "+".repeat(43)),
            &format!("writ_{}", "/".repeat(43)),
        ] {
            let err = store.authenticate(bad).unwrap_err();
            assert!(
                matches!(err, IdentityError::MalformedApiKey),
                "{bad:?}: {err:?}"
            );
            assert_eq!(err.code(), "bad_token");
        }
    }

    #[test]
    fn revoked_key() {
        let (_dir, store) = store();
        let (record, secret) = store.create(&alice(), None, 1).unwrap();
        let (_, other) = store.create(&alice(), None, 2).unwrap();
        let revoked = store.revoke(record.id.as_str()).unwrap();
        assert!(revoked.revoked);
        assert_eq!(revoked.id, record.id);
        let err = store.authenticate(secret.expose()).unwrap_err();
        assert!(matches!(err, IdentityError::Revoked));
        assert_eq!(err.code(), "key_revoked");
        // Other keys are untouched; revoking again is a no-op.
        assert_eq!(store.authenticate(other.expose()).unwrap(), alice());
        assert_eq!(store.revoke(record.id.as_str()).unwrap(), revoked);
        assert!(store.list().unwrap()[0].revoked);
        assert!(!store.list().unwrap()[1].revoked);
    }

    #[test]
    fn revoke_unknown_id() {
        let (_dir, store) = store();
        store.create(&alice(), None, 1).unwrap();
        let err = store.revoke("ak_0123456789abcdef").unwrap_err();
        assert!(
            matches!(&err, IdentityError::NotFound(id) if id.as_str() == "ak_0123456789abcdef")
        );
        assert_eq!(err.code(), "key_not_found");
        assert!(matches!(
            store.get("ak_0123456789abcdef"),
            Err(IdentityError::NotFound(_))
        ));
        for bad in [
            "",
            "ak_",
            "ak_0123456789ABCDEF",
            "ak_0123456789abcde",
            "xx_0123456789abcdef",
        ] {
            assert!(
                matches!(store.revoke(bad), Err(IdentityError::BadKeyId)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn listing_shows_no_secrets() {
        let (_dir, store) = store();
        let (_, secret) = store.create(&alice(), Some("ci"), 1).unwrap();
        let key = secret.expose();
        let hash_hex = hex::encode(sha256(key));
        let listed = serde_json::to_string(&store.list().unwrap()).unwrap();
        let debug = format!("{:?}", store.list().unwrap());
        for text in [&listed, &debug] {
            assert!(!text.contains(key));
            assert!(!text.contains(&key[5..]));
            assert!(!text.contains(&hash_hex));
        }
        assert!(listed.contains("User::\\\"alice\\\""));
        // Nothing in the tree holds the key itself.
        for entry in store.tree.iter() {
            let (k, v) = entry.unwrap();
            for bytes in [&k[..], &v[..]] {
                assert!(!bytes.windows(43).any(|w| w == &key.as_bytes()[5..]));
            }
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        let (_dir, store) = store();
        let (_, secret) = store.create(&alice(), None, 1).unwrap();
        let debug = format!("{secret:?}");
        assert!(!debug.contains(&secret.expose()[5..]));
        assert_eq!(debug, "ApiKeySecret(<redacted>)");
    }

    #[test]
    fn labels_are_checked() {
        let (_dir, store) = store();
        for bad in ["", "a\nb", "tab\there", &"x".repeat(129)] {
            assert!(matches!(
                store.create(&alice(), Some(bad), 1),
                Err(IdentityError::BadLabel)
            ));
        }
        assert!(store.is_empty().unwrap());
        assert!(store.create(&alice(), Some(&"é".repeat(128)), 1).is_ok());
    }

    #[test]
    fn corrupt_records_fail_closed() {
        let (_dir, store) = store();
        let (record, secret) = store.create(&alice(), None, 1).unwrap();
        let key = hash_key(&sha256(secret.expose()));
        let mut stored = StoredRecord::decode(&store.tree.get(key).unwrap().unwrap()).unwrap();
        // A record filed under the wrong hash does not authenticate.
        stored.key_sha256 = hex::encode([0u8; 32]);
        store.tree.insert(key, stored.encode().unwrap()).unwrap();
        let err = store.authenticate(secret.expose()).unwrap_err();
        assert!(err.is_internal());
        store.tree.insert(key, &b"{not json"[..]).unwrap();
        assert!(store
            .authenticate(secret.expose())
            .unwrap_err()
            .is_internal());
        assert!(store.revoke(record.id.as_str()).unwrap_err().is_internal());
    }
}
