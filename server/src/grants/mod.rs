//! Break-glass elevations, approval gates and consents: the three ways a decision can
//! rest on something other than a principal's standing roles, each recorded in the
//! ledger before it takes effect.
//!
//! The kernel keeps them in memory (`Book`), written through to the state
//! database. Every step is a ledger entry: a step that grants (an activation, an
//! approval, a consent) is recorded and then takes effect; a step that ends one
//! (revoke, deny, expiry) waits for the decisions that rely on it to be recorded
//! (they hold `transitions` for reading), records its entry, and then takes
//! effect. Expiry needs no sweeper: before every decision that could rely on a
//! grant, due expiries are recorded first (`lifecycle::settle`); a background
//! task does the same for grants nobody asks about.

pub mod approval_api;
pub mod clock;
pub mod common;
pub mod consent_api;
pub mod elevation_api;
pub mod facts;
pub mod keys_api;
pub mod ledger_check;
pub mod lifecycle;
pub mod records;
pub mod statement;
#[cfg(test)]
mod test_keys;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use self::clock::{Clock, UnixMs};
use self::records::{Consent, Elevation, Gate};
use crate::error::ApiError;

/// The rules of grants, from the `[grants]` section of the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantsConfig {
    /// Distinct approvals an elevation needs (default 1).
    pub break_glass_approvals: u32,
    /// The longest elevation (default 4 h).
    pub break_glass_max_duration: Duration,
    /// How long a request waits for approvals (default 1 h).
    pub break_glass_pending: Duration,
    /// Whether an on-call User may activate alone (default off).
    pub break_glass_emergency: bool,
    /// How long an approved gate may be used (default 15 min).
    pub approval_window: Duration,
    /// How long an approval request waits for a reviewer (default 1 h).
    pub approval_pending: Duration,
    /// The longest consent (default 30 days).
    pub consent_max_duration: Duration,
    /// How long a User or Agent that someone created or gave a role may not
    /// approve what that someone asked for (default 24 h).
    pub new_member_cooldown: Duration,
}

impl Default for GrantsConfig {
    fn default() -> Self {
        Self {
            break_glass_approvals: 1,
            break_glass_max_duration: Duration::from_secs(4 * 3600),
            break_glass_pending: Duration::from_secs(3600),
            break_glass_emergency: false,
            approval_window: Duration::from_secs(15 * 60),
            approval_pending: Duration::from_secs(3600),
            consent_max_duration: Duration::from_secs(30 * 24 * 3600),
            new_member_cooldown: Duration::from_secs(24 * 3600),
        }
    }
}

/// Every grant the kernel knows, by id, and the ids of the live ones (pending,
/// active or approved: with a deadline), so that a decision looks at those only
/// however long the history grows.
#[derive(Debug, Default)]
pub struct Book {
    pub elevations: BTreeMap<String, Elevation>,
    pub gates: BTreeMap<String, Gate>,
    pub consents: BTreeMap<String, Consent>,
    live: BTreeSet<String>,
}

impl Book {
    fn new(
        elevations: BTreeMap<String, Elevation>,
        gates: BTreeMap<String, Gate>,
        consents: BTreeMap<String, Consent>,
    ) -> Self {
        let live = elevations
            .values()
            .filter(|e| e.deadline().is_some())
            .map(|e| e.id.clone())
            .chain(
                gates
                    .values()
                    .filter(|g| g.deadline().is_some())
                    .map(|g| g.id.clone()),
            )
            .chain(
                consents
                    .values()
                    .filter(|c| c.deadline().is_some())
                    .map(|c| c.id.clone()),
            )
            .collect();
        Self {
            elevations,
            gates,
            consents,
            live,
        }
    }

    fn track(&mut self, id: &str, live: bool) {
        if live {
            self.live.insert(id.to_owned());
        } else {
            self.live.remove(id);
        }
    }

    /// Pending and active elevations.
    pub fn live_elevations(&self) -> impl Iterator<Item = &Elevation> {
        self.live.iter().filter_map(|id| self.elevations.get(id))
    }

    /// Pending and approved gates.
    pub fn live_gates(&self) -> impl Iterator<Item = &Gate> {
        self.live.iter().filter_map(|id| self.gates.get(id))
    }

    /// Active consents.
    pub fn live_consents(&self) -> impl Iterator<Item = &Consent> {
        self.live.iter().filter_map(|id| self.consents.get(id))
    }
}

/// The grants of one kernel.
#[derive(Debug)]
pub struct Grants {
    pub clock: Arc<dyn Clock>,
    pub config: GrantsConfig,
    book: Mutex<Book>,
    /// Held for reading by a decision that relies on a grant until its entry is
    /// recorded; held for writing by a step that ends a grant.
    pub(crate) transitions: Arc<tokio::sync::RwLock<()>>,
    /// Serialises every step that changes a grant (request, approve, deny,
    /// revoke, review, grant, expiry), so that no two read-modify-write at once.
    pub(crate) steps: tokio::sync::Mutex<()>,
    /// Grants with a deadline: when 0, decisions skip grants entirely.
    live: AtomicUsize,
    elevations: sled::Tree,
    gates: sled::Tree,
    consents: sled::Tree,
    pub(crate) signing_keys: sled::Tree,
    /// Who made whom a member: `subject \x1f giver` -> the latest time (ms, big
    /// endian) the giver created the subject or gave it a role.
    pub(crate) onboarded: sled::Tree,
    /// Serialises entity writes that change members (see `membership::lock`).
    pub(crate) membership: tokio::sync::Mutex<()>,
}

fn load<T: DeserializeOwned>(tree: &sled::Tree) -> anyhow::Result<BTreeMap<String, T>> {
    let mut out = BTreeMap::new();
    for item in tree {
        let (key, bytes) = item?;
        let id = String::from_utf8(key.to_vec())?;
        out.insert(id, serde_json::from_slice(&bytes)?);
    }
    Ok(out)
}

fn save<T: Serialize>(tree: &sled::Tree, id: &str, record: &T) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(record)
        .map_err(|error| ApiError::internal("encoding a grant", &error))?;
    tree.insert(id.as_bytes(), bytes)
        .map_err(|error| ApiError::internal("storing a grant", &error))?;
    tree.flush()
        .map_err(|error| ApiError::internal("storing a grant", &error))?;
    Ok(())
}

impl Grants {
    /// Opens the grant trees of the state database.
    pub fn open(
        state_db: &sled::Db,
        config: GrantsConfig,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let elevations = state_db.open_tree("grants.elevations")?;
        let gates = state_db.open_tree("grants.gates")?;
        let consents = state_db.open_tree("grants.consents")?;
        let book = Book::new(load(&elevations)?, load(&gates)?, load(&consents)?);
        let live = AtomicUsize::new(book.live.len());
        Ok(Self {
            clock,
            config,
            book: Mutex::new(book),
            transitions: Arc::new(tokio::sync::RwLock::new(())),
            steps: tokio::sync::Mutex::new(()),
            live,
            elevations,
            gates,
            consents,
            signing_keys: state_db.open_tree("signing_keys")?,
            onboarded: state_db.open_tree("grants.onboarded")?,
            membership: tokio::sync::Mutex::new(()),
        })
    }

    pub fn now(&self) -> UnixMs {
        self.clock.now()
    }

    /// The book, locked (a poisoned lock still holds consistent records: each
    /// change is made whole before it is stored).
    pub(crate) fn book(&self) -> MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether any grant is pending, active or approved.
    pub fn any_live(&self) -> bool {
        self.live.load(Ordering::SeqCst) > 0
    }

    fn recount(&self, book: &Book) {
        self.live.store(book.live.len(), Ordering::SeqCst);
    }

    /// Stores an elevation that is about to end, without changing the book: the
    /// end is then recorded, and only then put in the book. A crash in between
    /// leaves it ended with no end entry, which `lifecycle::recover` records at
    /// the next start; it never comes back to life.
    pub(crate) fn persist_elevation(&self, elevation: &Elevation) -> Result<(), ApiError> {
        save(&self.elevations, &elevation.id, elevation)
    }

    /// `persist_elevation` for a consent.
    pub(crate) fn persist_consent(&self, consent: &Consent) -> Result<(), ApiError> {
        save(&self.consents, &consent.id, consent)
    }

    /// Puts an elevation in the book and stores it. The book changes even when
    /// storing fails: the step is recorded by then, and an ended grant must stop
    /// counting whatever the disk says (its end was stored before it was recorded).
    pub(crate) fn put_elevation(&self, elevation: Elevation) -> Result<(), ApiError> {
        let stored = save(&self.elevations, &elevation.id, &elevation);
        let mut book = self.book();
        book.track(&elevation.id, elevation.deadline().is_some());
        book.elevations.insert(elevation.id.clone(), elevation);
        self.recount(&book);
        stored
    }

    pub(crate) fn put_gate(&self, gate: Gate) -> Result<(), ApiError> {
        let stored = save(&self.gates, &gate.id, &gate);
        let mut book = self.book();
        book.track(&gate.id, gate.deadline().is_some());
        book.gates.insert(gate.id.clone(), gate);
        self.recount(&book);
        stored
    }

    pub(crate) fn put_consent(&self, consent: Consent) -> Result<(), ApiError> {
        let stored = save(&self.consents, &consent.id, &consent);
        let mut book = self.book();
        book.track(&consent.id, consent.deadline().is_some());
        book.consents.insert(consent.id.clone(), consent);
        self.recount(&book);
        stored
    }
}
