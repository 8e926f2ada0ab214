//! Shamir shares of a ring's root key (GF(256), crate `vsss-rs`), their text form,
//! and the collector that takes them one at a time while unsealing.
//!
//! A share's text: `writ-share-v1:<ring id, 32 hex>:<base64url(x || y), 33 bytes>:<check>`
//! where `check` is the first 4 bytes, in hex, of SHA-256 of everything before it:
//! a mistyped share is refused as such instead of yielding a wrong key.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::{CryptoRng, RngCore};
use sha2::{Digest as _, Sha256};
use vsss_rs::Gf256;
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::keyring::{KeyRing, RingId};
use crate::keys::{Key, KEY_LEN};
use crate::seal::{check_share_parameters, SealedRing, Sealer};

const PREFIX: &str = "writ-share-v1";
const SHARE_LEN: usize = 1 + KEY_LEN;

fn check_of(body: &str) -> String {
    let digest = Sha256::digest(body.as_bytes());
    hex::encode(digest.get(..4).unwrap_or_default())
}

/// A new shares sealer for the ring `ring_id`: its parameters, the root key, and
/// the shares' texts (to be shown once and never stored).
pub fn shares_sealer(
    ring_id: RingId,
    threshold: u8,
    shares: u8,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<(Sealer, Key, Vec<Zeroizing<String>>), VaultError> {
    check_share_parameters(threshold, shares)?;
    let root = Key::generate(rng);
    let points = Gf256::split_array(
        usize::from(threshold),
        usize::from(shares),
        root.expose(),
        &mut *rng,
    )
    .map_err(|_| VaultError::ShareParameters { threshold, shares })?;
    let texts = points
        .into_iter()
        .map(|point| {
            let point = Zeroizing::new(point);
            let body = Zeroizing::new(format!(
                "{PREFIX}:{ring_id}:{}",
                URL_SAFE_NO_PAD.encode(point.as_slice())
            ));
            Zeroizing::new(format!("{}:{}", body.as_str(), check_of(&body)))
        })
        .collect();
    Ok((Sealer::Shares { threshold, shares }, root, texts))
}

/// A parsed share: the ring it belongs to and its point.
struct Share {
    ring_id: RingId,
    point: Zeroizing<Vec<u8>>,
}

fn parse_share(text: &str) -> Result<Share, VaultError> {
    let text = text.trim();
    let (body, check) = text
        .rsplit_once(':')
        .ok_or(VaultError::ShareMalformed("not a writ share"))?;
    let mut parts = body.split(':');
    if parts.next() != Some(PREFIX) {
        return Err(VaultError::ShareMalformed(
            "it does not start with `writ-share-v1:`",
        ));
    }
    let (Some(ring_hex), Some(point_b64), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(VaultError::ShareMalformed("wrong number of fields"));
    };
    if check != check_of(body) {
        return Err(VaultError::ShareMalformed(
            "its check does not match: a character is wrong",
        ));
    }
    let mut ring_id = [0u8; 16];
    hex::decode_to_slice(ring_hex, &mut ring_id)
        .map_err(|_| VaultError::ShareMalformed("bad ring id"))?;
    let point = Zeroizing::new(
        URL_SAFE_NO_PAD
            .decode(point_b64)
            .map_err(|_| VaultError::ShareMalformed("the share is not base64url"))?,
    );
    if point.len() != SHARE_LEN || point.first() == Some(&0) {
        return Err(VaultError::ShareMalformed("the share has the wrong length"));
    }
    Ok(Share {
        ring_id: RingId::from_bytes(ring_id),
        point,
    })
}

/// Where an unseal by shares stands.
#[derive(Debug)]
pub enum UnsealProgress {
    /// `have` of the `need` shares are in.
    Pending { have: u8, need: u8 },
    /// The ring is open; the root key is kept to seal the ring again after changes.
    Unsealed { ring: Box<KeyRing>, root: Key },
}

/// Takes shares one at a time. A share of another ring, a duplicate or a malformed
/// one is refused alone; if a full set fails to open the ring, every share given so
/// far is dropped and the unseal starts again.
#[derive(Debug)]
pub struct ShareCollector {
    ring_id: RingId,
    threshold: u8,
    points: BTreeMap<u8, Zeroizing<Vec<u8>>>,
}

impl ShareCollector {
    pub fn new(sealed: &SealedRing) -> Result<Self, VaultError> {
        let Sealer::Shares { threshold, .. } = sealed.sealer() else {
            return Err(VaultError::WrongSealer {
                expected: "shares",
                actual: sealed.sealer().name(),
            });
        };
        Ok(Self {
            ring_id: sealed.ring_id(),
            threshold: *threshold,
            points: BTreeMap::new(),
        })
    }

    pub fn progress(&self) -> (u8, u8) {
        // INVARIANT: `points` never holds more than `threshold` (a u8) entries.
        (
            u8::try_from(self.points.len()).unwrap_or(u8::MAX),
            self.threshold,
        )
    }

    pub fn add(&mut self, share: &str, sealed: &SealedRing) -> Result<UnsealProgress, VaultError> {
        if sealed.ring_id() != self.ring_id {
            return Err(VaultError::ShareWrongRing {
                share_ring: sealed.ring_id().to_string(),
                ring: self.ring_id.to_string(),
            });
        }
        let share = parse_share(share)?;
        if share.ring_id != self.ring_id {
            return Err(VaultError::ShareWrongRing {
                share_ring: share.ring_id.to_string(),
                ring: self.ring_id.to_string(),
            });
        }
        let x = share.point.first().copied().unwrap_or_default();
        if self.points.contains_key(&x) {
            return Err(VaultError::ShareDuplicate(x));
        }
        self.points.insert(x, share.point);
        let (have, need) = self.progress();
        if have < need {
            return Ok(UnsealProgress::Pending { have, need });
        }
        let points: Vec<Vec<u8>> = self.points.values().map(|p| p.to_vec()).collect();
        let points = Zeroizing::new(points);
        self.points.clear();
        let combined = Zeroizing::new(
            Gf256::combine_array(points.as_slice()).map_err(|_| VaultError::SharesDoNotOpen)?,
        );
        let root = Key::from_slice(&combined).ok_or(VaultError::SharesDoNotOpen)?;
        match sealed.open(&root) {
            Ok(ring) => Ok(UnsealProgress::Unsealed {
                ring: Box::new(ring),
                root,
            }),
            Err(VaultError::SealedTampered) => Err(VaultError::SharesDoNotOpen),
            Err(other) => Err(other),
        }
    }
}
