//! Steps that end grants: expiry (recorded before any decision that could have
//! relied on the grant, and by a background task), revocation and denial. Each
//! waits for in-flight decisions that rely on grants, records its entry, and only
//! then takes effect.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use writ_ledger::EntryDraft;

use super::clock::UnixMs;
use super::records::{ConsentState, Elevation, ElevationState, GateState};
use crate::error::ApiError;
use crate::state::AppState;
use crate::vault::leases::DEFAULT_LEASE_MS;

/// The most lease ids an end entry names (the rest are counted).
pub const MAX_NAMED_LEASES: usize = 100;

/// How often the background task records expiries nobody asked about.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Who takes a grant step: a principal (`actor`, `workspace`, and the credential it
/// showed, which the step's entry names) or the kernel.
#[derive(Debug, Clone)]
pub struct Ender {
    pub actor: String,
    pub workspace: String,
    pub credential: Option<crate::identity::Credential>,
}

impl Ender {
    pub fn kernel(workspace: &str) -> Self {
        Self {
            actor: "writ".to_owned(),
            workspace: workspace.to_owned(),
            credential: None,
        }
    }
}

pub(crate) async fn record_step(
    state: &AppState,
    kind: &str,
    by: &Ender,
    fields: Map<String, Value>,
) -> Result<String, ApiError> {
    let mut fields = fields;
    if let Some(credential) = &by.credential {
        fields.insert("credential".into(), credential.to_json());
    }
    let receipt = state
        .record(&EntryDraft {
            kind: kind.into(),
            actor: by.actor.clone(),
            workspace: by.workspace.clone(),
            fields,
        })
        .await?;
    Ok(receipt.index.0.to_string())
}

/// Whether any grant's deadline has passed.
fn any_due(state: &AppState, now: UnixMs) -> bool {
    let book = state.grants.book();
    let due = |deadline: Option<UnixMs>| deadline.is_some_and(|d| d <= now);
    book.live_elevations().any(|e| due(e.deadline()))
        || book.live_gates().any(|g| due(g.deadline()))
        || book.live_consents().any(|c| due(c.deadline()))
}

/// Records every expiry that is due, each before it takes effect. Cheap when
/// nothing is live or due.
pub async fn settle(state: &AppState) -> Result<(), ApiError> {
    let grants = &state.grants;
    if !grants.any_live() || !any_due(state, grants.now()) {
        return Ok(());
    }
    let _steps = grants.steps.lock().await;
    let _ending = grants.transitions.write().await;
    let now = grants.now();
    let (elevations, gates, consents) = {
        let book = grants.book();
        let due = |deadline: Option<UnixMs>| deadline.is_some_and(|d| d <= now);
        (
            book.live_elevations()
                .filter(|e| due(e.deadline()))
                .cloned()
                .collect::<Vec<_>>(),
            book.live_gates()
                .filter(|g| due(g.deadline()))
                .cloned()
                .collect::<Vec<_>>(),
            book.live_consents()
                .filter(|c| due(c.deadline()))
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    for elevation in elevations {
        let by = Ender::kernel(&elevation.workspace);
        end_elevation(state, elevation, ElevationState::Expired, &by, None, None).await?;
    }
    for mut gate in gates {
        let by = Ender::kernel(&gate.workspace);
        let mut fields = Map::new();
        fields.insert("id".into(), json!(gate.id));
        fields.insert("was".into(), json!(gate.state));
        let entry = record_step(state, "approval.expired", &by, fields).await?;
        gate.state = GateState::Expired;
        gate.entries.insert("expired".into(), entry);
        grants.put_gate(gate)?;
    }
    for mut consent in consents {
        let by = Ender::kernel(&consent.workspace);
        let mut fields = Map::new();
        fields.insert("id".into(), json!(consent.id));
        consent.state = ConsentState::Expired;
        consent.ended_unix_ms = Some(now);
        grants.persist_consent(&consent)?;
        let entry = record_step(state, "consent.expired", &by, fields).await?;
        consent.entries.insert("expired".into(), entry);
        grants.put_consent(consent)?;
    }
    Ok(())
}

/// Ends a pending or active elevation (`to` is Expired, Revoked or Denied): the
/// caller holds `steps` and `transitions` for writing. Leases of secrets revealed
/// under it are named in the entry and revoked once it is recorded.
pub(crate) async fn end_elevation(
    state: &AppState,
    mut elevation: Elevation,
    to: ElevationState,
    by: &Ender,
    reason: Option<String>,
    signature: Option<Value>,
) -> Result<Elevation, ApiError> {
    let now = state.grants.now();
    let was = elevation.state;
    let leases = if was == ElevationState::Active {
        state
            .vault
            .leases
            .live_under(&elevation.id, crate::unix_now_ms())
            .map_err(|error| ApiError::internal("listing an elevation's leases", &error))?
    } else {
        Vec::new()
    };
    let (kind, step) = match to {
        ElevationState::Revoked => ("break_glass.revoked", "revoked"),
        ElevationState::Denied => ("break_glass.denied", "denied"),
        _ => ("break_glass.expired", "expired"),
    };
    let mut fields = Map::new();
    fields.insert("id".into(), json!(elevation.id));
    fields.insert("was".into(), json!(was));
    if let Some(reason) = &reason {
        let key = if to == ElevationState::Denied {
            "comment"
        } else {
            "reason"
        };
        fields.insert(key.into(), json!(reason));
    }
    if let Some(signature) = signature {
        fields.insert("signature".into(), signature);
    }
    if was == ElevationState::Active {
        // Bounded, so that the entry always fits: the count is exact.
        let named: Vec<&String> = leases.iter().take(MAX_NAMED_LEASES).collect();
        fields.insert("leases_revoked".into(), json!(named));
        fields.insert("leases_revoked_count".into(), json!(leases.len()));
    }
    elevation.state = to;
    elevation.ended_unix_ms = Some(now);
    elevation.end_reason = Some(reason.unwrap_or_else(|| step.to_owned()));
    state.grants.persist_elevation(&elevation)?;
    let entry = record_step(state, kind, by, fields).await?;
    elevation.entries.insert(step.into(), entry);
    state.grants.put_elevation(elevation.clone())?;
    revoke_leases(state, &leases);
    Ok(elevation)
}

/// Revokes leases (of an ended elevation) and makes that durable. The end entry
/// already names them; `recover` finishes the job if a crash comes first.
fn revoke_leases(state: &AppState, leases: &[String]) {
    if leases.is_empty() {
        return;
    }
    for lease in leases {
        if let Err(error) = state.vault.leases.revoke(lease, crate::unix_now_ms()) {
            tracing::error!(%error, lease = %lease, "cannot revoke a lease of an ended elevation");
        }
    }
    if let Err(error) = state.vault.leases.flush() {
        tracing::error!(%error, "cannot flush the revoked leases of an ended elevation");
    }
}

/// Records expiries nobody asked about, every `SWEEP_EVERY`, until the state goes.
pub fn spawn_sweeper(state: &Arc<AppState>) {
    let weak = Arc::downgrade(state);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            let Some(state) = weak.upgrade() else { return };
            if let Err(error) = settle(&state).await {
                tracing::warn!(code = error.code, "recording due expiries failed");
            }
        }
    });
}

/// Records the end entries a crash kept from the ledger: a grant stored as ended
/// (its end is stored before it is recorded) whose entry is missing. Run once at
/// start, before any request.
pub async fn recover(state: &AppState) -> Result<usize, ApiError> {
    let (elevations, consents) = {
        let book = state.grants.book();
        let step = |s: ElevationState| match s {
            ElevationState::Revoked => Some("revoked"),
            ElevationState::Denied => Some("denied"),
            ElevationState::Expired => Some("expired"),
            _ => None,
        };
        (
            book.elevations
                .values()
                .filter(|e| step(e.state).is_some_and(|s| !e.entries.contains_key(s)))
                .cloned()
                .collect::<Vec<_>>(),
            book.consents
                .values()
                .filter(|c| match c.state {
                    ConsentState::Revoked => !c.entries.contains_key("revoked"),
                    ConsentState::Expired => !c.entries.contains_key("expired"),
                    ConsentState::Active => false,
                })
                .cloned()
                .collect::<Vec<_>>(),
        )
    };
    let recovered = elevations.len() + consents.len();
    // Leases of elevations that ended before a crash could revoke them: one
    // pass over the live leases, and only when an elevation ended recently enough
    // for a lease issued under it (which lasts `DEFAULT_LEASE_MS`) to be live.
    let since = state.grants.now().0.saturating_sub(DEFAULT_LEASE_MS);
    let ended: std::collections::BTreeSet<String> = state
        .grants
        .book()
        .elevations
        .values()
        .filter(|e| e.activated_unix_ms.is_some())
        .filter(|e| e.ended_unix_ms.is_some_and(|end| end.0 >= since))
        .map(|e| e.id.clone())
        .collect();
    if !ended.is_empty() {
        let leases: Vec<String> = state
            .vault
            .leases
            .live(crate::unix_now_ms(), None)
            .map_err(|error| ApiError::internal("listing the live leases", &error))?
            .into_iter()
            .filter(|lease| lease.elevation.as_ref().is_some_and(|e| ended.contains(e)))
            .map(|lease| lease.id)
            .collect();
        revoke_leases(state, &leases);
    }
    for mut elevation in elevations {
        let (kind, step) = match elevation.state {
            ElevationState::Revoked => ("break_glass.revoked", "revoked"),
            ElevationState::Denied => ("break_glass.denied", "denied"),
            _ => ("break_glass.expired", "expired"),
        };
        let mut fields = Map::new();
        fields.insert("id".into(), json!(elevation.id));
        fields.insert("recovered".into(), json!(true));
        let by = Ender::kernel(&elevation.workspace);
        let entry = record_step(state, kind, &by, fields).await?;
        elevation.entries.insert(step.into(), entry);
        state.grants.put_elevation(elevation)?;
    }
    for mut consent in consents {
        let (kind, step) = if consent.state == ConsentState::Revoked {
            ("consent.revoked", "revoked")
        } else {
            ("consent.expired", "expired")
        };
        let mut fields = Map::new();
        fields.insert("id".into(), json!(consent.id));
        fields.insert("recovered".into(), json!(true));
        let by = Ender::kernel(&consent.workspace);
        let entry = record_step(state, kind, &by, fields).await?;
        consent.entries.insert(step.into(), entry);
        state.grants.put_consent(consent)?;
    }
    Ok(recovered)
}
