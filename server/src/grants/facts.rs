//! What grants add to one decision: an active elevation's role as a parent of the
//! principal, a covering consent as `context.consent`, and an approved gate that
//! satisfies the decision's approval obligation. The decision's entry names each.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::OwnedRwLockReadGuard;
use writ_ledger::EntryDraft;
use writ_pdp::cedar_policy::EntityUid;
use writ_pdp::{DecisionRequest, Snapshot};

use super::lifecycle::settle;
use super::records::{ConsentState, ElevationState, GateState, Party};
use crate::error::ApiError;
use crate::identity::Principal;
use crate::state::AppState;

/// The obligation an approved gate satisfies.
pub const APPROVAL: &str = "approval";

/// The grants one decision may rely on. While it holds any, it holds the
/// transitions lock for reading, so none of them can end before the decision's
/// entry is recorded; drop it after recording.
#[derive(Debug, Default)]
pub struct Facts {
    /// (elevation id, role).
    pub elevation: Option<(String, String)>,
    /// (consent id, its Cedar entity).
    pub consent: Option<(String, Value)>,
    /// An approved gate for exactly this request, not yet taken.
    pub gate: Option<String>,
    /// Set once the gate is taken: the decision used it.
    pub gate_used: Option<String>,
    _guard: Option<OwnedRwLockReadGuard<()>>,
}

/// Whether grants apply to an action: break-glass, approval and consent actions
/// are decided on standing roles alone.
pub fn standing_only(action: &str) -> bool {
    ["break-glass.", "approval.", "consent."]
        .iter()
        .any(|prefix| action.starts_with(prefix))
}

impl Facts {
    /// No grants (for decisions on standing roles).
    pub fn none() -> Self {
        Self::default()
    }

    /// Whether the decision relies on any grant.
    fn relies_on_any(&self) -> bool {
        self.elevation.is_some() || self.consent.is_some() || self.gate.is_some()
    }

    /// Extra parents of the principal for this decision.
    pub fn parents(&self) -> Result<Vec<EntityUid>, ApiError> {
        match &self.elevation {
            Some((_, role)) => Ok(vec![writ_pdp::entity_uid("Role", role)?]),
            None => Ok(Vec::new()),
        }
    }

    /// Gives a covering consent to the PDP: its entity, and `context.consent`.
    pub fn apply(
        &self,
        snapshot: &Snapshot,
        request: &mut DecisionRequest,
    ) -> Result<(), ApiError> {
        let Some((_, entity)) = &self.consent else {
            return Ok(());
        };
        request
            .entities
            .extend(snapshot.request_entities(std::slice::from_ref(entity), &Default::default())?);
        if let (Some(context), Some(uid)) = (request.context.as_object_mut(), entity.get("uid")) {
            context.insert("consent".into(), json!({"__entity": uid}));
        }
        Ok(())
    }

    /// Names the grants in the decision's entry.
    pub fn annotate(&self, draft: &mut EntryDraft) {
        if let Some((id, role)) = &self.elevation {
            draft.fields.insert("elevation".into(), json!(id));
            draft.fields.insert("elevation_role".into(), json!(role));
        }
        if let Some((id, _)) = &self.consent {
            draft.fields.insert("consent".into(), json!(id));
        }
        if let Some(id) = &self.gate_used {
            draft.fields.insert("approval".into(), json!(id));
        }
    }
}

/// The grants a decision of `principal` on `action` and `resource` (uid text)
/// relies on, after recording any due expiry. Holds the transitions lock for
/// reading when it finds any.
pub async fn facts(
    state: &AppState,
    principal: &Principal,
    action: &str,
    resource: &EntityUid,
) -> Result<Facts, ApiError> {
    let grants = &state.grants;
    if standing_only(action) {
        return Ok(Facts::none());
    }
    if !grants.any_live() {
        return Ok(Facts::none());
    }
    let who = Party::of(principal);
    let resource = resource.to_string();
    let resource = resource.as_str();
    // A grant may fall due between the settle and the look-up: then settle again.
    for _ in 0..3 {
        if !grants.any_live() {
            return Ok(Facts::none());
        }
        settle(state).await?;
        // Without the lock first: a decision that no grant covers never waits for
        // a grant of someone else to end.
        let (found, due) = scan(state, &who, action, resource);
        if due {
            continue;
        }
        if !found.relies_on_any() {
            return Ok(found);
        }
        let guard = Arc::clone(&grants.transitions).read_owned().await;
        // Under the lock, again: what it finds cannot end before the entry is recorded.
        let (mut found, due) = scan(state, &who, action, resource);
        if due {
            continue;
        }
        if found.relies_on_any() {
            found._guard = Some(guard);
        }
        return Ok(found);
    }
    Err(ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "grants_unsettled",
        "grants kept falling due while this request was decided; try again",
    ))
}

/// The live grants that cover one decision, and whether any of them is due (its
/// expiry must be recorded first).
fn scan(state: &AppState, who: &Party, action: &str, resource: &str) -> (Facts, bool) {
    let now = state.grants.now();
    let book = state.grants.book();
    let mut facts = Facts::default();
    let mut due = false;
    for elevation in book.live_elevations() {
        if elevation.state == ElevationState::Active && elevation.requester == *who {
            if elevation.deadline().is_some_and(|d| d <= now) {
                due = true;
            } else if facts.elevation.is_none() {
                facts.elevation = Some((elevation.id.clone(), elevation.role.clone()));
            }
        }
    }
    for consent in book.live_consents() {
        if consent.state == ConsentState::Active && consent.covers(who, action, resource) {
            if consent.expires_unix_ms <= now {
                due = true;
            } else if facts.consent.is_none() {
                facts.consent = Some((consent.id.clone(), consent.entity()));
            }
        }
    }
    for gate in book.live_gates() {
        if gate.state == GateState::Approved
            && gate.requester == *who
            && gate.action == action
            && gate.resource == resource
        {
            if gate.deadline().is_some_and(|d| d <= now) {
                due = true;
            } else if facts.gate.is_none() {
                facts.gate = Some(gate.id.clone());
            }
        }
    }
    (facts, due)
}

/// Takes the approved gate of `facts` for a decision whose approval obligation it
/// satisfies: once taken it is used, whatever becomes of the decision. `None` when
/// the gate is gone (another decision took it first).
pub fn take_gate(state: &AppState, facts: &mut Facts) -> Result<Option<String>, ApiError> {
    let Some(id) = facts.gate.take() else {
        return Ok(None);
    };
    let now = state.grants.now();
    let taken = {
        let mut book = state.grants.book();
        match book.gates.get_mut(&id) {
            Some(gate)
                if gate.state == GateState::Approved
                    && gate.window_ends_unix_ms.is_some_and(|end| now < end) =>
            {
                gate.state = GateState::Used;
                Some(gate.clone())
            }
            _ => None,
        }
    };
    let Some(gate) = taken else {
        return Ok(None);
    };
    state.grants.put_gate(gate)?;
    facts.gate_used = Some(id.clone());
    Ok(Some(id))
}

/// Notes which recorded decision used a gate.
pub fn note_gate_use(state: &AppState, id: &str, decision_id: &str) {
    let gate = {
        let mut book = state.grants.book();
        book.gates.get_mut(id).map(|gate| {
            gate.used_by_decision = Some(decision_id.to_owned());
            gate.entries.insert("used".into(), decision_id.to_owned());
            gate.clone()
        })
    };
    if let Some(gate) = gate {
        if let Err(error) = state.grants.put_gate(gate) {
            tracing::warn!(
                code = error.code,
                "cannot note the decision that used a gate"
            );
        }
    }
}
