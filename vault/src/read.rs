//! Reading a secret version while the ring may be rotating: the one place that
//! pairs a stored envelope with a ring snapshot.

use std::sync::Arc;

use crate::envelope::{self, Binding};
use crate::error::VaultError;
use crate::ids::Purpose;
use crate::keyring::KeyRing;
use crate::keys::SecretValue;
use crate::store::{SecretId, SecretStore, StoredVersion};

/// How often a read is retried when a rotation raced it.
const ATTEMPTS: usize = 3;

/// Opens one version. `ring` gives the current ring snapshot (`None` while the
/// vault is sealed); a rewrap may move the
/// envelope to a KEK newer than the snapshot, or a retirement may drop the KEK of
/// an envelope read just before its rewrap, so on a missing or retired KEK the read
/// takes a fresh snapshot and envelope and tries again.
pub fn open_version(
    store: &dyn SecretStore,
    ring: &dyn Fn() -> Option<Arc<KeyRing>>,
    id: &SecretId,
    purpose: &Purpose,
) -> Result<SecretValue, VaultError> {
    let binding = Binding {
        workspace: &id.workspace,
        name: &id.name,
        version: id.version,
        purpose,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let envelope = match store.get(id)? {
            Some(StoredVersion::Live { envelope, .. }) => envelope,
            Some(StoredVersion::Destroyed { .. }) => {
                return Err(VaultError::Destroyed {
                    name: id.name.to_string(),
                    version: id.version.get(),
                })
            }
            None => {
                return Err(VaultError::NoSuchVersion {
                    name: id.name.to_string(),
                    version: id.version.get(),
                })
            }
        };
        let Some(snapshot) = ring() else {
            return Err(VaultError::Sealed);
        };
        match envelope::open(&snapshot, binding, &envelope) {
            Err(VaultError::KekUnknown(_) | VaultError::KekRetired(_)) if attempt < ATTEMPTS => {
                continue
            }
            other => return other,
        }
    }
}
