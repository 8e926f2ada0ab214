//! The entity store: users, agents, roles, workspaces and memberships (parent edges),
//! kept in Cedar's JSON entity format behind a small storage trait.
//!
//! The store holds bytes only; the engine validates every entity against the schema
//! before it is stored, and again whenever the schema changes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::error::PdpError;

/// Durable storage of entities, keyed by their UID text (`Type::"id"`).
pub trait EntityStore: Send + Sync + std::fmt::Debug {
    /// Every stored entity, as (UID text, Cedar entity JSON).
    fn load_all(&self) -> Result<Vec<(String, serde_json::Value)>, PdpError>;
    /// Stores (or replaces) one entity durably before returning.
    fn put(&self, uid: &str, entity: &serde_json::Value) -> Result<(), PdpError>;
    /// Removes one entity durably; false when it was not there.
    fn remove(&self, uid: &str) -> Result<bool, PdpError>;
}

/// Entities in a sled tree, one key per entity.
#[derive(Debug, Clone)]
pub struct SledEntityStore {
    tree: sled::Tree,
}

impl SledEntityStore {
    pub fn new(tree: sled::Tree) -> Self {
        Self { tree }
    }
}

impl EntityStore for SledEntityStore {
    fn load_all(&self) -> Result<Vec<(String, serde_json::Value)>, PdpError> {
        let mut all = Vec::new();
        for item in self.tree.iter() {
            let (key, value) = item?;
            let uid = String::from_utf8_lossy(&key).into_owned();
            let entity =
                serde_json::from_slice(&value).map_err(|error| PdpError::CorruptStore {
                    key: uid.clone(),
                    reason: error.to_string(),
                })?;
            all.push((uid, entity));
        }
        Ok(all)
    }

    fn put(&self, uid: &str, entity: &serde_json::Value) -> Result<(), PdpError> {
        let bytes = serde_json::to_vec(entity).map_err(|error| PdpError::InvalidEntity {
            reason: error.to_string(),
        })?;
        self.tree.insert(uid.as_bytes(), bytes)?;
        self.tree.flush()?;
        Ok(())
    }

    fn remove(&self, uid: &str) -> Result<bool, PdpError> {
        let existed = self.tree.remove(uid.as_bytes())?.is_some();
        self.tree.flush()?;
        Ok(existed)
    }
}

/// Entities in memory: for tests and for `writ policy` tooling.
#[derive(Debug, Default)]
pub struct MemoryEntityStore {
    entities: Mutex<BTreeMap<String, serde_json::Value>>,
}

impl EntityStore for MemoryEntityStore {
    fn load_all(&self) -> Result<Vec<(String, serde_json::Value)>, PdpError> {
        let entities = self
            .entities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(entities
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    fn put(&self, uid: &str, entity: &serde_json::Value) -> Result<(), PdpError> {
        let mut entities = self
            .entities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        entities.insert(uid.to_owned(), entity.clone());
        Ok(())
    }

    fn remove(&self, uid: &str) -> Result<bool, PdpError> {
        let mut entities = self
            .entities
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(entities.remove(uid).is_some())
    }
}
