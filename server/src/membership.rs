//! Roles and membership. Each role a User or Agent gains or loses through the
//! entity API is a Cedar decision of its own (`admin.roles.assign`,
//! `admin.roles.remove`) on a kernel-built `RoleChange`, made on the giver's
//! standing roles and recorded with the role, the subject and the giver. The
//! kernel also remembers who made whom a member, so that a member someone just
//! created or promoted cannot approve what that someone asked for
//! (`grants.new_member_cooldown`): a puppet is useless even to an owner.

use std::collections::BTreeSet;
use std::str::FromStr;

use serde_json::{json, Map, Value};

use crate::admin::entity_workspace;
use crate::error::ApiError;
use crate::grants::common::decide_standing;
use crate::identity::{Principal, PrincipalEntity, PrincipalKind};
use crate::state::AppState;

/// The Cedar action that gives a role.
pub const ASSIGN: &str = "admin.roles.assign";
/// The Cedar action that takes a role away.
pub const REMOVE: &str = "admin.roles.remove";
/// The role a workspace must always keep one holder of.
const OWNER: &str = "owner";

/// Whether a role is given or taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Assign,
    Remove,
}

impl Direction {
    fn action(self) -> &'static str {
        match self {
            Self::Assign => ASSIGN,
            Self::Remove => REMOVE,
        }
    }

    fn entry_kind(self) -> &'static str {
        match self {
            Self::Assign => "role.assigned",
            Self::Remove => "role.removed",
        }
    }
}

/// One role given to or taken from a subject in a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleChange {
    pub direction: Direction,
    pub workspace: String,
    pub role: String,
}

/// The roles (ids of `Role` parents) of an entity in Cedar's JSON form.
pub fn roles(entity: &Value) -> BTreeSet<String> {
    entity
        .get("parents")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|parent| {
            let parent = parent.get("__entity").unwrap_or(parent);
            if parent.get("type").and_then(Value::as_str) != Some("Role") {
                return None;
            }
            parent.get("id").and_then(Value::as_str).map(str::to_owned)
        })
        .collect()
}

/// What replacing `old` by `new` (either absent) changes in a subject's roles:
/// removals first, so that a move between workspaces takes every role in the
/// old one and gives every role in the new one.
pub fn changes(old: Option<&Value>, new: Option<&Value>) -> Vec<RoleChange> {
    let side = |entity: Option<&Value>| {
        entity.and_then(|e| entity_workspace(e).map(|ws| (ws.to_owned(), roles(e))))
    };
    let (old, new) = (side(old), side(new));
    let mut out = Vec::new();
    let empty = BTreeSet::new();
    let same_workspace = matches!((&old, &new), (Some((a, _)), Some((b, _))) if a == b);
    if let Some((workspace, before)) = &old {
        let after = match &new {
            Some((_, after)) if same_workspace => after,
            _ => &empty,
        };
        out.extend(before.difference(after).map(|role| RoleChange {
            direction: Direction::Remove,
            workspace: workspace.clone(),
            role: role.clone(),
        }));
    }
    if let Some((workspace, after)) = &new {
        let before = match &old {
            Some((_, before)) if same_workspace => before,
            _ => &empty,
        };
        out.extend(after.difference(before).map(|role| RoleChange {
            direction: Direction::Assign,
            workspace: workspace.clone(),
            role: role.clone(),
        }));
    }
    out
}

/// Whether `uid` (Cedar's text form) is of type User or Agent: an entity that can
/// hold roles and act.
pub fn is_member(uid: &str) -> bool {
    uid.starts_with("User::\"") || uid.starts_with("Agent::\"")
}

/// Refuses a User or Agent whose id no token could ever name (unprintable, too
/// long): it would hold roles that no role decision covered and count as an owner
/// nobody can be.
pub fn check_member_uid(uid: &str) -> Result<(), ApiError> {
    if is_member(uid) && PrincipalEntity::from_str(uid).is_err() {
        return Err(ApiError::unprocessable(
            "invalid_entity_uid",
            "a User's or Agent's id is printable text of at most 256 bytes",
        ));
    }
    Ok(())
}

/// Held from reading a subject's roles until its change is stored, so that two
/// removals never each count the other's owner and leave a workspace with none.
#[derive(Debug)]
pub struct MembershipLock<'a>(
    #[expect(dead_code, reason = "held for its drop")] tokio::sync::MutexGuard<'a, ()>,
);

/// Takes the kernel's membership lock (one entity change at a time).
pub async fn lock(state: &AppState) -> MembershipLock<'_> {
    MembershipLock(state.grants.membership.lock().await)
}

/// Decides every role change of `subject` on the giver's standing roles and
/// records each decision; the first deny is a 403 and nothing is changed.
pub async fn authorize(
    state: &AppState,
    giver: &Principal,
    subject: &str,
    changes: &[RoleChange],
) -> Result<(), ApiError> {
    if changes.is_empty() {
        return Ok(());
    }
    let subject_entity = PrincipalEntity::from_str(subject).map_err(|_| {
        ApiError::unprocessable(
            "invalid_entity",
            format!("only Users and Agents hold roles, not `{subject}`"),
        )
    })?;
    for change in changes {
        let last_owner = change.direction == Direction::Remove
            && change.role == OWNER
            && !has_other_owner(state, subject, &change.workspace);
        let entity = change_entity(&subject_entity, change, last_owner);
        decide_standing(state, giver, change.direction.action(), &entity)
            .await
            .map_err(|error| {
                if last_owner && error.status == axum::http::StatusCode::FORBIDDEN {
                    ApiError::forbidden(format!(
                        "`{subject}` is the last owner of `{}`; make someone else owner first",
                        change.workspace
                    ))
                    .with_code("last_owner")
                } else {
                    error
                }
            })?;
    }
    Ok(())
}

/// Records each role change (`role.assigned`, `role.removed`: the subject, the
/// role and its workspace; the giver is the entry's actor).
pub async fn record(
    state: &AppState,
    giver: &Principal,
    subject: &str,
    changes: &[RoleChange],
) -> Result<(), ApiError> {
    for change in changes {
        let mut fields = Map::new();
        fields.insert("subject".into(), json!(subject));
        fields.insert("role".into(), json!(change.role));
        fields.insert("role_workspace".into(), json!(change.workspace));
        crate::admin::record_change(state, giver, change.direction.entry_kind(), fields).await?;
    }
    Ok(())
}

/// The kernel-built `RoleChange` entity of one change.
fn change_entity(subject: &PrincipalEntity, change: &RoleChange, last_owner: bool) -> Value {
    let subject_attr = match subject.kind() {
        PrincipalKind::Agent => "subject_agent",
        _ => "subject_user",
    };
    let id = format!("{}/{}/{}", change.workspace, subject, change.role);
    json!({
        "uid": {"type": "RoleChange", "id": id},
        "attrs": {
            "workspace": {"__entity": {"type": "Workspace", "id": change.workspace}},
            "role": {"__entity": {"type": "Role", "id": change.role}},
            subject_attr: {"__entity": {"type": subject.kind().as_str(), "id": subject.id()}},
            "last_owner": last_owner,
        },
        "parents": [],
    })
}

/// Whether a workspace has an owner other than `subject`. Only Users count: an
/// Agent never approves anything, so it cannot stand in for the last person who
/// can.
fn has_other_owner(state: &AppState, subject: &str, workspace: &str) -> bool {
    state
        .engine
        .snapshot()
        .list_entities(Some("User"))
        .any(|(uid, entity)| {
            uid != subject
                && entity_workspace(entity) == Some(workspace)
                && roles(entity).contains(OWNER)
        })
}

/// The key of the record that `giver` made `subject` a member.
fn onboarded_key(subject: &str, giver: &str) -> String {
    format!("{subject}\u{1f}{giver}")
}

/// Notes that `giver` created `subject` or gave it a role now. Stored (and
/// flushed) before the change is recorded: a failed note changes nothing, a note
/// whose change then fails only delays an approval.
///
/// A giver that is itself new passes its own makers on: a member made by someone
/// that owner O just made counts as made by O too, so a chain of puppets is no
/// shorter way around the cooldown.
pub async fn note_onboarded(
    state: &AppState,
    subject: &str,
    giver: &Principal,
) -> Result<(), ApiError> {
    let now = state.grants.now().0.to_be_bytes();
    let tree = &state.grants.onboarded;
    let mut makers = vec![giver.entity().to_string()];
    makers.extend(
        recent_makers(state, &giver.entity().to_string())?
            .iter()
            .map(ToString::to_string),
    );
    for maker in makers {
        tree.insert(onboarded_key(subject, &maker).as_bytes(), &now)
            .map_err(|error| ApiError::internal("storing who made a member", &error))?;
    }
    tree.flush_async()
        .await
        .map_err(|error| ApiError::internal("storing who made a member", &error))?;
    Ok(())
}

/// Refuses an approval by `approver` of a gate an Agent asked for (or work it
/// submitted) when the approver created that Agent, gave it a role, or minted a key
/// for it, at any time: whoever holds an Agent's key is its second pair of hands,
/// never its second pair of eyes.
pub fn check_not_agent_maker(
    state: &AppState,
    approver: &Principal,
    asker: &str,
) -> Result<(), ApiError> {
    if !asker.starts_with("Agent::\"") {
        return Ok(());
    }
    let approver_uid = approver.entity().to_string();
    let made = state
        .grants
        .onboarded
        .contains_key(onboarded_key(asker, &approver_uid).as_bytes())
        .map_err(|error| ApiError::internal("reading who made a member", &error))?;
    if made {
        return Err(ApiError::forbidden(format!(
            "`{approver_uid}` created `{asker}`, gave it a role or minted a key for it, so \
             someone else approves what it asks for"
        ))
        .with_code("agent_maker"));
    }
    Ok(())
}

/// Actions that approve someone's request or work: the kernel tells policy who
/// recently made the principal a member (`context.made_by`), so that the deny is a
/// recorded decision naming its policy. `check_cooldown` says the same again in the
/// kernel, whatever the policies.
pub const APPROVING_ACTIONS: [&str; 4] = [
    "workitem.approve",
    "break-glass.approve",
    "break-glass.review",
    "approval.approve",
];

/// The Users who created `principal` or gave it a role within the cooldown,
/// newest record per maker.
fn recent_makers(state: &AppState, subject: &str) -> Result<Vec<PrincipalEntity>, ApiError> {
    let prefix = format!("{subject}\u{1f}");
    let cooldown_ms =
        u64::try_from(state.grants.config.new_member_cooldown.as_millis()).unwrap_or(u64::MAX);
    let now = state.grants.now().0;
    let mut makers = Vec::new();
    for item in state.grants.onboarded.scan_prefix(prefix.as_bytes()) {
        let (key, value) =
            item.map_err(|error| ApiError::internal("reading who made a member", &error))?;
        let at = <[u8; 8]>::try_from(value.as_ref())
            .map(u64::from_be_bytes)
            .map_err(|_| ApiError::internal("reading who made a member", &"malformed"))?;
        if now >= at.saturating_add(cooldown_ms) {
            continue;
        }
        let maker = key
            .get(prefix.len()..)
            .and_then(|bytes| std::str::from_utf8(bytes).ok())
            .and_then(|text| PrincipalEntity::from_str(text).ok());
        if let Some(maker) = maker.filter(|m| m.kind() == PrincipalKind::User) {
            makers.push(maker);
        }
    }
    Ok(makers)
}

/// Sets `context.made_by` (a kernel fact; a caller's is refused before this).
pub fn apply_made_by(
    state: &AppState,
    principal: &Principal,
    context: &mut Value,
) -> Result<(), ApiError> {
    let makers = recent_makers(state, &principal.entity().to_string())?;
    if let Some(context) = context.as_object_mut() {
        let set: Vec<Value> = makers
            .iter()
            .map(|m| json!({"__entity": {"type": m.kind().as_str(), "id": m.id()}}))
            .collect();
        context.insert("made_by".into(), Value::Array(set));
    }
    Ok(())
}

/// Refuses an approval by `approver` of what `asker` asked for while the
/// approver is new: `asker` created it or gave it a role within the cooldown.
pub fn check_cooldown(state: &AppState, approver: &Principal, asker: &str) -> Result<(), ApiError> {
    let approver_uid = approver.entity().to_string();
    let Some(bytes) = state
        .grants
        .onboarded
        .get(onboarded_key(&approver_uid, asker).as_bytes())
        .map_err(|error| ApiError::internal("reading who made a member", &error))?
    else {
        return Ok(());
    };
    let at = <[u8; 8]>::try_from(bytes.as_ref())
        .map(u64::from_be_bytes)
        .map_err(|_| ApiError::internal("reading who made a member", &"malformed"))?;
    let cooldown = state.grants.config.new_member_cooldown;
    let cooldown_ms = u64::try_from(cooldown.as_millis()).unwrap_or(u64::MAX);
    if state.grants.now().0 < at.saturating_add(cooldown_ms) {
        return Err(ApiError::forbidden(format!(
            "`{approver_uid}` was made a member or given a role by `{asker}` less than {} ago, \
             so it may not approve what `{asker}` asked for yet",
            humantime::format_duration(cooldown)
        ))
        .with_code("new_member_cooldown"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(ws: &str, roles: &[&str]) -> Value {
        json!({
            "uid": {"type": "User", "id": "bob"},
            "attrs": {"workspace": {"__entity": {"type": "Workspace", "id": ws}}},
            "parents": roles.iter().map(|r| json!({"type": "Role", "id": r})).collect::<Vec<_>>(),
        })
    }

    fn change(direction: Direction, ws: &str, role: &str) -> RoleChange {
        RoleChange {
            direction,
            workspace: ws.into(),
            role: role.into(),
        }
    }

    #[test]
    fn a_new_member_gains_every_role() {
        assert_eq!(
            changes(None, Some(&user("acme", &["owner", "viewer"]))),
            vec![
                change(Direction::Assign, "acme", "owner"),
                change(Direction::Assign, "acme", "viewer")
            ]
        );
    }

    #[test]
    fn an_edit_gives_and_takes_the_difference() {
        let old = user("acme", &["viewer", "reviewer"]);
        let new = user("acme", &["reviewer", "owner"]);
        assert_eq!(
            changes(Some(&old), Some(&new)),
            vec![
                change(Direction::Remove, "acme", "viewer"),
                change(Direction::Assign, "acme", "owner")
            ]
        );
        assert!(changes(Some(&old), Some(&old)).is_empty());
    }

    #[test]
    fn a_delete_or_a_move_takes_every_role() {
        let old = user("acme", &["owner"]);
        assert_eq!(
            changes(Some(&old), None),
            vec![change(Direction::Remove, "acme", "owner")]
        );
        let moved = user("globex", &["owner"]);
        assert_eq!(
            changes(Some(&old), Some(&moved)),
            vec![
                change(Direction::Remove, "acme", "owner"),
                change(Direction::Assign, "globex", "owner")
            ]
        );
    }

    #[test]
    fn parents_in_entity_escape_form_count() {
        let entity = json!({"parents": [{"__entity": {"type": "Role", "id": "admin"}},
                                         {"type": "Workspace", "id": "acme"}]});
        assert_eq!(roles(&entity), BTreeSet::from(["admin".to_owned()]));
    }
}
