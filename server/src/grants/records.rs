//! The three kinds of grant as the kernel keeps them (and answers them over HTTP):
//! break-glass elevations, approval gates and consents, each with its state.

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::clock::UnixMs;

/// Where an elevation is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ElevationState {
    Pending,
    Active,
    Expired,
    Revoked,
    Denied,
}

/// Where an approval gate is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GateState {
    Pending,
    Approved,
    Used,
    Denied,
    Expired,
}

/// Where a consent is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConsentState {
    Active,
    Revoked,
    Expired,
}

/// One approval, denial or review by another principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sign {
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Whether it came with a verified signed statement.
    pub signed: bool,
    pub at_unix_ms: UnixMs,
    /// The ledger entry that recorded it.
    pub entry: String,
}

/// A principal reference: its Cedar type and id. Stored and answered as the uid
/// text (`User::"alice"`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub kind: String,
    pub id: String,
}

impl Serialize for Party {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.uid_text())
    }
}

impl<'de> Deserialize<'de> for Party {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Party::parse(&text).ok_or_else(|| serde::de::Error::custom("not an entity uid"))
    }
}

impl Party {
    /// Parses `Type::"id"`.
    pub fn parse(text: &str) -> Option<Self> {
        let uid = writ_pdp::cedar_policy::EntityUid::from_str(text).ok()?;
        Some(Self {
            kind: uid.type_name().to_string(),
            id: uid.id().unescaped().to_owned(),
        })
    }

    /// The party of a verified principal.
    pub fn of(principal: &crate::identity::Principal) -> Self {
        let entity = principal.entity();
        Self {
            kind: entity.kind().as_str().to_owned(),
            id: entity.id().to_owned(),
        }
    }

    /// `Type::"id"`, as Cedar prints it.
    pub fn uid_text(&self) -> String {
        format!("{}::\"{}\"", self.kind, self.id.escape_debug())
    }

    /// The Cedar JSON entity reference.
    pub fn entity_ref(&self) -> Value {
        json!({"__entity": {"type": self.kind, "id": self.id}})
    }
}

/// A break-glass elevation: a User asks for a role for a while; others approve.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Elevation {
    pub id: String,
    pub workspace: String,
    pub requester: Party,
    pub role: String,
    pub reason: String,
    pub state: ElevationState,
    pub emergency: bool,
    /// For an emergency elevation: whether someone else has recorded a review.
    pub reviewed: bool,
    pub approvals: Vec<Sign>,
    #[serde(default)]
    pub denials: Vec<Sign>,
    #[serde(default)]
    pub reviews: Vec<Sign>,
    pub approvals_required: u32,
    pub signed_approvals: bool,
    pub duration_ms: u64,
    pub requested_unix_ms: UnixMs,
    pub pending_expires_unix_ms: UnixMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activated_unix_ms: Option<UnixMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_unix_ms: Option<UnixMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_unix_ms: Option<UnixMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_reason: Option<String>,
    /// The ledger entries of its steps, by step name.
    #[serde(default)]
    pub entries: std::collections::BTreeMap<String, String>,
}

impl Elevation {
    /// When it stops counting, if it is pending or active.
    pub fn deadline(&self) -> Option<UnixMs> {
        match self.state {
            ElevationState::Pending => Some(self.pending_expires_unix_ms),
            ElevationState::Active => self.expires_unix_ms,
            _ => None,
        }
    }

    /// The Cedar entity the kernel builds for break-glass actions on it.
    pub fn entity(&self) -> Value {
        json!({
            "uid": {"type": "Elevation", "id": self.id},
            "attrs": {
                "workspace": {"__entity": {"type": "Workspace", "id": self.workspace}},
                "requester": self.requester.entity_ref(),
                "role": {"__entity": {"type": "Role", "id": self.role}},
            },
            "parents": [],
        })
    }
}

/// An approval gate: one recorded decision that carried an approval obligation,
/// waiting for (or holding) a reviewer's approval.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Gate {
    pub id: String,
    pub workspace: String,
    pub requester: Party,
    pub decision_id: String,
    pub action: String,
    pub resource: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Who submitted the work (copied from the resource entity), who may not approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submitter: Option<Party>,
    /// Who granted the consent the gated decision relied on: it may not approve
    /// what it let happen (four eyes, not two by proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_grantor: Option<Party>,
    pub state: GateState,
    pub requested_unix_ms: UnixMs,
    pub pending_expires_unix_ms: UnixMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided: Option<Sign>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_ends_unix_ms: Option<UnixMs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by_decision: Option<String>,
    #[serde(default)]
    pub entries: std::collections::BTreeMap<String, String>,
}

impl Gate {
    pub fn deadline(&self) -> Option<UnixMs> {
        match self.state {
            GateState::Pending => Some(self.pending_expires_unix_ms),
            GateState::Approved => self.window_ends_unix_ms,
            _ => None,
        }
    }

    /// The Cedar entity the kernel builds for `approval.approve` and `approval.deny`.
    pub fn entity(&self) -> Value {
        let mut attrs = serde_json::Map::new();
        attrs.insert(
            "workspace".into(),
            json!({"__entity": {"type": "Workspace", "id": self.workspace}}),
        );
        let role = |prefix: &str, party: &Party| match party.kind.as_str() {
            "User" => Some((format!("{prefix}_user"), party.entity_ref())),
            "Agent" => Some((format!("{prefix}_agent"), party.entity_ref())),
            _ => None,
        };
        if let Some((key, value)) = role("requester", &self.requester) {
            attrs.insert(key, value);
        }
        if let Some(grantor) = self.consent_grantor.as_ref().filter(|g| g.kind == "User") {
            attrs.insert("consent_grantor".into(), grantor.entity_ref());
        }
        if let Some((key, value)) = self.submitter.as_ref().and_then(|s| role("submitter", s)) {
            attrs.insert(key, value);
        }
        json!({"uid": {"type": "ApprovalRequest", "id": self.id}, "attrs": attrs, "parents": []})
    }
}

/// A consent: a resource owner lets a grantee do some actions on some resources
/// for a while.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Consent {
    pub id: String,
    pub workspace: String,
    pub grantor: Party,
    pub grantee: Party,
    pub actions: Vec<String>,
    pub resources: Vec<String>,
    pub state: ConsentState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub granted_unix_ms: UnixMs,
    pub expires_unix_ms: UnixMs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_unix_ms: Option<UnixMs>,
    #[serde(default)]
    pub entries: std::collections::BTreeMap<String, String>,
}

impl Consent {
    pub fn deadline(&self) -> Option<UnixMs> {
        (self.state == ConsentState::Active).then_some(self.expires_unix_ms)
    }

    /// Whether its scope names exactly this action and this resource.
    pub fn covers(&self, grantee: &Party, action: &str, resource: &str) -> bool {
        self.grantee == *grantee
            && self.actions.iter().any(|a| a == action)
            && self.resources.iter().any(|r| r == resource)
    }

    /// The Cedar entity given as `context.consent`.
    pub fn entity(&self) -> Value {
        json!({
            "uid": {"type": "Consent", "id": self.id},
            "attrs": {
                "workspace": {"__entity": {"type": "Workspace", "id": self.workspace}},
                "grantor": self.grantor.entity_ref(),
            },
            "parents": [],
        })
    }
}

/// A new random id with a kind prefix (`bg`, `ap`, `cs`).
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}
