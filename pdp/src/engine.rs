//! The engine: the current snapshot (policies + entities), swapped whole on every change.
//!
//! Decisions take an `Arc<Snapshot>` and never lock: a reload or an entity write builds
//! a new snapshot off to the side and swaps it in, so a decision sees the old state or
//! the new one, never a mix. Writers are serialised by one mutex.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;
use cedar_policy::{Entities, Entity, EntityUid};

use crate::entities::EntityStore;
use crate::error::PdpError;
use crate::policies::LoadedPolicies;

/// One consistent state: a policy set and the entities it is evaluated against.
#[derive(Debug)]
pub struct Snapshot {
    policies: Arc<LoadedPolicies>,
    entities: Entities,
    json: BTreeMap<String, serde_json::Value>,
}

impl Snapshot {
    pub fn policies(&self) -> &LoadedPolicies {
        &self.policies
    }

    pub fn entities(&self) -> &Entities {
        &self.entities
    }

    /// One stored entity, in Cedar's JSON entity format.
    pub fn entity_json(&self, uid: &str) -> Option<&serde_json::Value> {
        self.json.get(uid)
    }

    /// The stored entities (UID text and JSON), optionally of one type only.
    pub fn list_entities<'a>(
        &'a self,
        entity_type: Option<&'a str>,
    ) -> impl Iterator<Item = (&'a String, &'a serde_json::Value)> + 'a {
        self.json.iter().filter(move |(uid, _)| match entity_type {
            Some(wanted) => uid.split_once("::\"").is_some_and(|(t, _)| t == wanted),
            None => true,
        })
    }

    pub fn contains(&self, uid: &EntityUid) -> bool {
        self.json.contains_key(&uid.to_string())
    }

    /// Parses entities given with one request and vets them: each conforms to the
    /// schema, none is an action, none is of a type in `reserved_types` (principals,
    /// roles, workspaces: what the kernel alone may say), and none is given twice.
    ///
    /// A non-empty `reserved_types` means a caller sent the entities, and they are
    /// vetted as [`Self::caller_entities`] does; an empty one means the kernel built
    /// them, as [`Self::kernel_entities`] does.
    pub fn request_entities(
        &self,
        values: &[serde_json::Value],
        reserved_types: &BTreeSet<String>,
    ) -> Result<Vec<Entity>, PdpError> {
        if reserved_types.is_empty() {
            self.kernel_entities(values)
        } else {
            self.caller_entities(values, reserved_types)
        }
    }

    /// Entities a caller sent with one request, vetted (schema, no action, no type
    /// of `reserved_types`, none twice). One whose UID is in the entity store is
    /// replaced by the stored entity, silently: a caller never overrides what the
    /// store says, and the answer does not say whether the UID is stored (in
    /// another workspace, say), which a refusal naming it would.
    pub fn caller_entities(
        &self,
        values: &[serde_json::Value],
        reserved_types: &BTreeSet<String>,
    ) -> Result<Vec<Entity>, PdpError> {
        self.vet(values, reserved_types, Shadowing::StoredWins)
    }

    /// Entities the kernel built for one request (a `File`, a `Host`, a `Secret`, a
    /// consent), vetted against the schema. One whose UID is in the entity store is
    /// refused, naming it: the kernel's own fact must not be replaced by a stored
    /// entity, and the kernel chose the UID, so naming it tells the caller nothing.
    pub fn kernel_entities(&self, values: &[serde_json::Value]) -> Result<Vec<Entity>, PdpError> {
        self.vet(values, &BTreeSet::new(), Shadowing::Refused)
    }

    fn vet(
        &self,
        values: &[serde_json::Value],
        reserved_types: &BTreeSet<String>,
        shadowing: Shadowing,
    ) -> Result<Vec<Entity>, PdpError> {
        let mut seen = BTreeSet::new();
        let mut entities = Vec::with_capacity(values.len());
        for value in values {
            let entity = Entity::from_json_value(value.clone(), Some(self.policies.schema()))
                .map_err(|error| PdpError::InvalidEntity {
                    reason: error.to_string(),
                })?;
            let uid = entity.uid();
            let type_name = uid.type_name().to_string();
            let refuse = |reason: &str| PdpError::EntityNotAllowed {
                uid: uid.to_string(),
                reason: reason.to_owned(),
            };
            if is_action_type(&type_name) {
                return Err(refuse("actions come from the schema"));
            }
            if reserved_types.contains(&type_name) {
                return Err(refuse(
                    "the kernel alone says what entities of this type are",
                ));
            }
            // Checked before the store is looked at, so that the refusal does not
            // depend on what the store holds.
            if !seen.insert(uid.to_string()) {
                return Err(refuse("it is given twice"));
            }
            match (self.entities.get(&uid), shadowing) {
                (None, _) => entities.push(entity),
                // INVARIANT: the stored entity is the one decided on; it is also
                // in the store's entities, and Cedar accepts the same entity twice.
                (Some(stored), Shadowing::StoredWins) => entities.push(stored.clone()),
                (Some(_), Shadowing::Refused) => {
                    return Err(refuse(
                        "it is in the entity store and cannot be replaced for one request",
                    ))
                }
            }
        }
        Ok(entities)
    }
}

/// What becomes of a request entity whose UID is in the entity store.
#[derive(Clone, Copy, Debug)]
enum Shadowing {
    /// The stored entity is used instead (entities a caller sent).
    StoredWins,
    /// The request is refused (entities the kernel built).
    Refused,
}

fn is_action_type(type_name: &str) -> bool {
    type_name == "Action" || type_name.ends_with("::Action")
}

/// The current snapshot and the durable entity store behind it.
#[derive(Debug)]
pub struct Engine {
    current: ArcSwap<Snapshot>,
    store: Box<dyn EntityStore>,
    /// Serialises writers (reload, upsert, delete); readers never take it.
    writer: Mutex<()>,
    /// Entities that must always exist (for example `KillSwitch::"global"`).
    required: BTreeSet<String>,
}

impl Engine {
    /// Loads every stored entity, validated against the policies' schema.
    pub fn open(
        policies: LoadedPolicies,
        store: Box<dyn EntityStore>,
        required: BTreeSet<String>,
    ) -> Result<Self, PdpError> {
        let snapshot = build_snapshot(Arc::new(policies), store.load_all()?)?;
        Ok(Self {
            current: ArcSwap::from_pointee(snapshot),
            store,
            writer: Mutex::new(()),
            required,
        })
    }

    /// The current snapshot; hold it for as long as one decision (or batch) takes.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the policy set whole, or changes nothing: the stored entities must
    /// conform to the new schema.
    pub fn reload(&self, policies: LoadedPolicies) -> Result<Arc<Snapshot>, PdpError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.current.load_full();
        let entities: Vec<(String, serde_json::Value)> = old
            .json
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let snapshot = Arc::new(
            build_snapshot(Arc::new(policies), entities).map_err(|error| match error {
                PdpError::InvalidEntity { reason } => PdpError::EntitiesRejectedBySchema { reason },
                other => other,
            })?,
        );
        self.current.store(Arc::clone(&snapshot));
        Ok(snapshot)
    }

    /// Validates one entity (Cedar JSON) without storing it; returns its UID text.
    pub fn check_entity(&self, value: &serde_json::Value) -> Result<String, PdpError> {
        let snapshot = self.snapshot();
        let entity = parse_entity(value, snapshot.policies.schema())?;
        Ok(entity.uid().to_string())
    }

    /// Adds or replaces one entity: validated, stored durably, then visible to decisions.
    pub fn upsert_entity(&self, value: &serde_json::Value) -> Result<String, PdpError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.current.load_full();
        let schema = old.policies.schema();
        let entity = parse_entity(value, schema)?;
        let uid = entity.uid().to_string();
        let entities = old
            .entities
            .clone()
            .upsert_entities([entity], Some(schema))
            .map_err(|error| PdpError::InvalidEntity {
                reason: error.to_string(),
            })?;
        self.store.put(&uid, value)?;
        let mut json = old.json.clone();
        json.insert(uid.clone(), value.clone());
        self.current.store(Arc::new(Snapshot {
            policies: Arc::clone(&old.policies),
            entities,
            json,
        }));
        Ok(uid)
    }

    /// Deletes one entity: gone from the store durably, then from decisions.
    pub fn delete_entity(&self, uid_text: &str) -> Result<(), PdpError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let uid = EntityUid::from_str(uid_text).map_err(|error| PdpError::InvalidUid {
            uid: uid_text.to_owned(),
            reason: error.to_string(),
        })?;
        let key = uid.to_string();
        if self.required.contains(&key) {
            return Err(PdpError::EntityRequired { uid: key });
        }
        let old = self.current.load_full();
        if !old.json.contains_key(&key) {
            return Err(PdpError::EntityNotFound { uid: key });
        }
        let entities = old
            .entities
            .clone()
            .remove_entities([uid])
            .map_err(|error| PdpError::InvalidEntity {
                reason: error.to_string(),
            })?;
        self.store.remove(&key)?;
        let mut json = old.json.clone();
        json.remove(&key);
        self.current.store(Arc::new(Snapshot {
            policies: Arc::clone(&old.policies),
            entities,
            json,
        }));
        Ok(())
    }

    /// The required entities that are missing from the store.
    pub fn missing_required(&self) -> Vec<String> {
        let snapshot = self.snapshot();
        self.required
            .iter()
            .filter(|uid| !snapshot.json.contains_key(*uid))
            .cloned()
            .collect()
    }
}

fn parse_entity(
    value: &serde_json::Value,
    schema: &cedar_policy::Schema,
) -> Result<Entity, PdpError> {
    let entity = Entity::from_json_value(value.clone(), Some(schema)).map_err(|error| {
        PdpError::InvalidEntity {
            reason: error.to_string(),
        }
    })?;
    if is_action_type(&entity.uid().type_name().to_string()) {
        return Err(PdpError::InvalidEntity {
            reason: "actions come from the schema and cannot be stored".to_owned(),
        });
    }
    Ok(entity)
}

fn build_snapshot(
    policies: Arc<LoadedPolicies>,
    stored: Vec<(String, serde_json::Value)>,
) -> Result<Snapshot, PdpError> {
    let schema = policies.schema();
    let mut parsed = Vec::with_capacity(stored.len());
    let mut json = BTreeMap::new();
    for (key, value) in stored {
        let entity = parse_entity(&value, schema).map_err(|error| match error {
            PdpError::InvalidEntity { reason } => PdpError::InvalidEntity {
                reason: format!("`{key}`: {reason}"),
            },
            other => other,
        })?;
        if entity.uid().to_string() != key {
            return Err(PdpError::CorruptStore {
                key,
                reason: "the stored entity has another uid".to_owned(),
            });
        }
        parsed.push(entity);
        json.insert(key, value);
    }
    let entities =
        Entities::from_entities(parsed, Some(schema)).map_err(|error| PdpError::InvalidEntity {
            reason: error.to_string(),
        })?;
    Ok(Snapshot {
        policies,
        entities,
        json,
    })
}
