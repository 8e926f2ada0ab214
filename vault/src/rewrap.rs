//! Rewrap: move every data key under the ring's primary KEK, a batch at a time,
//! while reads and writes go on. Each record is replaced only if it is unchanged
//! since it was read (compare-and-swap), so a concurrent destroy or new version is
//! never undone; the ciphertext itself is never touched.

use rand::{CryptoRng, RngCore};

use crate::envelope::{self, Binding};
use crate::error::VaultError;
use crate::ids::Purpose;
use crate::keyring::KeyRing;
use crate::store::{SecretId, SecretStore};

/// What one batch did.
#[derive(Debug, Default)]
pub struct RewrapBatch {
    /// Live versions looked at.
    pub scanned: usize,
    /// Re-wrapped under the primary.
    pub rewrapped: usize,
    /// Changed by someone else between the read and the swap (left as they are).
    pub raced: usize,
    /// Versions that did not open (damaged, or under a key the ring lacks), by address.
    pub failed: Vec<(SecretId, VaultError)>,
    /// Where the next batch starts; `None` when the scan is complete.
    pub next: Option<SecretId>,
}

/// Re-wraps up to `limit` live versions after `after`.
pub fn rewrap_batch(
    store: &dyn SecretStore,
    ring: &KeyRing,
    purpose: &Purpose,
    after: Option<&SecretId>,
    limit: usize,
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<RewrapBatch, VaultError> {
    let page = store.scan_live(after, limit)?;
    let mut batch = RewrapBatch {
        scanned: page.len(),
        ..RewrapBatch::default()
    };
    if page.len() >= limit {
        batch.next = page.last().map(|(id, _)| id.clone());
    }
    for (id, old) in page {
        let binding = Binding {
            workspace: &id.workspace,
            name: &id.name,
            version: id.version,
            purpose,
        };
        match envelope::rewrap(ring, binding, &old, rng) {
            Ok(None) => {}
            Ok(Some(new)) => {
                if store.replace_envelope(&id, &old, &new)? {
                    batch.rewrapped += 1;
                } else {
                    batch.raced += 1;
                }
            }
            Err(error) => batch.failed.push((id, error)),
        }
    }
    Ok(batch)
}
