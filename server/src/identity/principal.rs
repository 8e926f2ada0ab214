//! Who a request comes from: a Cedar entity such as `User::"alice"`, and the
//! workspace it acts in.
//!
//! The text form of a [`PrincipalEntity`] is exactly what Cedar's `EntityUid`
//! displays (`Type::"id"` with the id escaped by `str::escape_debug`), so the
//! server can hand it to the PDP as is. Ids are restricted to printable text so that
//! the only escapes ever written are `\"`, `\'` and `\\`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{IdentityError, PrincipalSyntax};

/// The longest principal id, in bytes.
const MAX_ID_BYTES: usize = 256;
/// The longest workspace id, in characters (all ASCII).
const MAX_WORKSPACE_LEN: usize = 64;

/// The entity types a verified caller can be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrincipalKind {
    /// A person, always inside one workspace.
    User,
    /// A program acting on its own account (an AI agent, a CI runner), inside one workspace.
    Agent,
    /// Whoever runs the writ deployment; above workspaces, so it has none.
    Operator,
    /// Someone who checks the ledger: reads every entry, decides and changes
    /// nothing; above workspaces, so it has none.
    Auditor,
}

impl PrincipalKind {
    /// The Cedar entity type name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "User",
            Self::Agent => "Agent",
            Self::Operator => "Operator",
            Self::Auditor => "Auditor",
        }
    }

    /// Whether a principal of this kind must act inside a workspace.
    pub fn has_workspace(self) -> bool {
        !matches!(self, Self::Operator | Self::Auditor)
    }
}

impl fmt::Display for PrincipalKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PrincipalKind {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "User" => Ok(Self::User),
            "Agent" => Ok(Self::Agent),
            "Operator" => Ok(Self::Operator),
            "Auditor" => Ok(Self::Auditor),
            _ => Err(IdentityError::BadPrincipal(PrincipalSyntax::UnknownType)),
        }
    }
}

/// A principal's Cedar entity: its kind and id. Displays as `User::"alice"` and
/// parses from that form only.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrincipalEntity {
    kind: PrincipalKind,
    // INVARIANT: 1..=MAX_ID_BYTES bytes, and `escape_debug` escapes nothing in it
    // but `"`, `'` and `\` (see `check_id`).
    id: String,
}

impl PrincipalEntity {
    pub fn new(kind: PrincipalKind, id: impl Into<String>) -> Result<Self, IdentityError> {
        let id = id.into();
        check_id(&id).map_err(IdentityError::BadPrincipal)?;
        Ok(Self { kind, id })
    }

    pub fn kind(&self) -> PrincipalKind {
        self.kind
    }

    /// The unescaped id (`alice` for `User::"alice"`).
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl fmt::Display for PrincipalEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The same bytes as Cedar's `EntityUID` display.
        write!(f, "{}::\"{}\"", self.kind, self.id.escape_debug())
    }
}

impl FromStr for PrincipalEntity {
    type Err = IdentityError;

    /// Parses `User::"alice"`, `Agent::"runner-1"` or `Operator::"ops"`. Nothing else
    /// is accepted: no other entity type, no namespace, no whitespace, no text after
    /// the closing quote, and no escape but `\"`, `\'` and `\\`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_entity(s).map_err(IdentityError::BadPrincipal)
    }
}

fn parse_entity(s: &str) -> Result<PrincipalEntity, PrincipalSyntax> {
    let (type_name, rest) = s.split_once("::").ok_or(PrincipalSyntax::Syntax)?;
    let kind = match type_name {
        "User" => PrincipalKind::User,
        "Agent" => PrincipalKind::Agent,
        "Operator" => PrincipalKind::Operator,
        "Auditor" => PrincipalKind::Auditor,
        _ => return Err(PrincipalSyntax::UnknownType),
    };
    let quoted = rest.strip_prefix('"').ok_or(PrincipalSyntax::Syntax)?;
    let mut id = String::with_capacity(quoted.len());
    let mut chars = quoted.chars();
    loop {
        match chars.next() {
            None => return Err(PrincipalSyntax::Syntax),
            Some('"') => break,
            Some('\\') => match chars.next() {
                Some(c @ ('"' | '\'' | '\\')) => id.push(c),
                _ => return Err(PrincipalSyntax::BadEscape),
            },
            Some(c) => id.push(c),
        }
    }
    if chars.next().is_some() {
        return Err(PrincipalSyntax::TrailingText);
    }
    check_id(&id)?;
    Ok(PrincipalEntity { kind, id })
}

fn check_id(id: &str) -> Result<(), PrincipalSyntax> {
    if id.is_empty() {
        return Err(PrincipalSyntax::EmptyId);
    }
    if id.len() > MAX_ID_BYTES {
        return Err(PrincipalSyntax::IdTooLong);
    }
    // `escape_debug` leaves printable text alone except for the three quoting
    // characters; anything else it would escape (control characters, invisible or
    // leading combining characters) is refused, so no two ids look alike in a log.
    let minimal = id.chars().flat_map(|c| {
        let escape = matches!(c, '"' | '\'' | '\\');
        ['\\'].into_iter().filter(move |_| escape).chain([c])
    });
    if !id.escape_debug().eq(minimal) {
        return Err(PrincipalSyntax::UnprintableId);
    }
    Ok(())
}

impl Serialize for PrincipalEntity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PrincipalEntity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A workspace id: 1 to 64 characters of `[a-z0-9_-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    pub fn new(id: impl Into<String>) -> Result<Self, IdentityError> {
        let id = id.into();
        let mut bytes = id.bytes();
        let first_ok = bytes
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok =
            bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if !first_ok || !rest_ok || id.len() > MAX_WORKSPACE_LEN {
            return Err(IdentityError::BadWorkspace);
        }
        Ok(Self(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for WorkspaceId {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl Serialize for WorkspaceId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for WorkspaceId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::new(text).map_err(serde::de::Error::custom)
    }
}

/// A verified caller: its entity and, for users and agents, its workspace.
/// A verified caller: its entity, its workspace, and the credential it showed.
///
/// Two principals are equal when their entity and workspace are: the credential
/// says which of a principal's keys acted, never who acted, so two keys of one
/// person are still one person for every separation-of-duties rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "PrincipalRepr")]
pub struct Principal {
    entity: PrincipalEntity,
    workspace: Option<WorkspaceId>,
    #[serde(skip)]
    credential: Option<Credential>,
}

impl PartialEq for Principal {
    fn eq(&self, other: &Self) -> bool {
        self.entity == other.entity && self.workspace == other.workspace
    }
}

impl Eq for Principal {}

impl std::hash::Hash for Principal {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.entity.hash(state);
        self.workspace.hash(state);
    }
}

impl Principal {
    pub fn new(
        entity: PrincipalEntity,
        workspace: Option<WorkspaceId>,
    ) -> Result<Self, IdentityError> {
        match (entity.kind().has_workspace(), &workspace) {
            (true, None) => Err(IdentityError::MissingWorkspace(entity.kind())),
            (false, Some(_)) => Err(IdentityError::UnexpectedWorkspace),
            _ => Ok(Self {
                entity,
                workspace,
                credential: None,
            }),
        }
    }

    /// The same principal, as shown by `credential`.
    pub fn with_credential(mut self, credential: Credential) -> Self {
        self.credential = Some(credential);
        self
    }

    pub fn entity(&self) -> &PrincipalEntity {
        &self.entity
    }

    pub fn kind(&self) -> PrincipalKind {
        self.entity.kind()
    }

    pub fn workspace(&self) -> Option<&WorkspaceId> {
        self.workspace.as_ref()
    }

    /// The credential the request was made with (none for a principal the kernel
    /// built itself, such as a stored key's owner).
    pub fn credential(&self) -> Option<&Credential> {
        self.credential.as_ref()
    }
}

/// Which credential made a request, as its ledger entries name it: an API key by
/// its id, a JWT by its issuer and its `jti` (or, without one, its `sub`). Never
/// the token itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key, by its public id (`ak_...`).
    ApiKey { id: String },
    /// A JWT, by its `iss` and its `jti` or `sub` claim (at most 256 bytes each).
    Jwt {
        issuer: String,
        token_id: Option<String>,
        subject: Option<String>,
    },
}

impl Credential {
    /// The longest claim copied into an entry, in bytes; longer ones are cut at a
    /// character boundary.
    const MAX_CLAIM_BYTES: usize = 256;

    /// A JWT's credential from its verified claims.
    pub fn jwt(issuer: &str, token_id: Option<&str>, subject: Option<&str>) -> Self {
        Self::Jwt {
            issuer: bounded(issuer, Self::MAX_CLAIM_BYTES),
            token_id: token_id.map(|t| bounded(t, Self::MAX_CLAIM_BYTES)),
            subject: subject.map(|s| bounded(s, Self::MAX_CLAIM_BYTES)),
        }
    }

    /// The `credential` field of a ledger entry.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Self::ApiKey { id } => serde_json::json!({"type": "api_key", "id": id}),
            Self::Jwt {
                issuer,
                token_id,
                subject,
            } => {
                let mut object = serde_json::Map::new();
                object.insert("type".into(), "jwt".into());
                object.insert("iss".into(), issuer.as_str().into());
                match (token_id, subject) {
                    (Some(jti), _) => object.insert("jti".into(), jti.as_str().into()),
                    (None, Some(sub)) => object.insert("sub".into(), sub.as_str().into()),
                    (None, None) => None,
                };
                serde_json::Value::Object(object)
            }
        }
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn bounded(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default().to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PrincipalRepr {
    entity: PrincipalEntity,
    workspace: Option<WorkspaceId>,
}

impl TryFrom<PrincipalRepr> for Principal {
    type Error = IdentityError;

    fn try_from(repr: PrincipalRepr) -> Result<Self, Self::Error> {
        Self::new(repr.entity, repr.workspace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syntax(text: &str) -> PrincipalSyntax {
        match text.parse::<PrincipalEntity>() {
            Err(IdentityError::BadPrincipal(reason)) => reason,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    #[test]
    fn entity_round_trips_through_text() {
        for (kind, id, text) in [
            (PrincipalKind::User, "alice", r#"User::"alice""#),
            (PrincipalKind::Agent, "runner-1", r#"Agent::"runner-1""#),
            (PrincipalKind::Operator, "ops", r#"Operator::"ops""#),
            (PrincipalKind::User, r#"a"b"#, r#"User::"a\"b""#),
            (PrincipalKind::User, r"a\b", r#"User::"a\\b""#),
            (PrincipalKind::User, "o'brien", r#"User::"o\'brien""#),
            (PrincipalKind::User, "auth0|5f7c", r#"User::"auth0|5f7c""#),
            (PrincipalKind::User, "zoë 日本", r#"User::"zoë 日本""#),
        ] {
            let entity = PrincipalEntity::new(kind, id).unwrap();
            assert_eq!(entity.to_string(), text);
            let parsed: PrincipalEntity = text.parse().unwrap();
            assert_eq!(parsed, entity);
            assert_eq!(parsed.id(), id);
        }
        // An unescaped single quote is unambiguous and accepted; it displays escaped.
        let parsed: PrincipalEntity = r#"User::"o'brien""#.parse().unwrap();
        assert_eq!(parsed.id(), "o'brien");
    }

    #[test]
    fn entity_text_matches_cedar_escaping() {
        // `escape_debug` is what Cedar's `EntityUID` display uses for the id.
        let entity = PrincipalEntity::new(PrincipalKind::User, r#"x"y\z'"#).unwrap();
        assert_eq!(
            entity.to_string(),
            format!("User::\"{}\"", r#"x"y\z'"#.escape_debug())
        );
    }

    #[test]
    fn entity_refuses_other_forms() {
        assert_eq!(syntax(r#"Role::"admin""#), PrincipalSyntax::UnknownType);
        assert_eq!(syntax(r#"user::"alice""#), PrincipalSyntax::UnknownType);
        assert_eq!(
            syntax(r#"Writ::User::"alice""#),
            PrincipalSyntax::UnknownType
        );
        assert_eq!(syntax(r#" User::"alice""#), PrincipalSyntax::UnknownType);
        assert_eq!(syntax(r#"User :: "alice""#), PrincipalSyntax::UnknownType);
        assert_eq!(syntax(r#"User::alice"#), PrincipalSyntax::Syntax);
        assert_eq!(syntax(r#"User:: "alice""#), PrincipalSyntax::Syntax);
        assert_eq!(syntax(r#"User::"alice"#), PrincipalSyntax::Syntax);
        assert_eq!(syntax("alice"), PrincipalSyntax::Syntax);
        assert_eq!(syntax(""), PrincipalSyntax::Syntax);
        assert_eq!(
            syntax(r#"User::"a" in Group::"admins""#),
            PrincipalSyntax::TrailingText
        );
        assert_eq!(
            syntax(r#"User::"a" || true"#),
            PrincipalSyntax::TrailingText
        );
        assert_eq!(syntax(r#"User::"alice" "#), PrincipalSyntax::TrailingText);
        assert_eq!(syntax(r#"User::"a\nb""#), PrincipalSyntax::BadEscape);
        assert_eq!(syntax(r#"User::"a\u{41}""#), PrincipalSyntax::BadEscape);
        assert_eq!(syntax(r#"User::"a\""#), PrincipalSyntax::Syntax);
        assert_eq!(syntax(r#"User::"""#), PrincipalSyntax::EmptyId);
        assert_eq!(syntax("User::\"a\nb\""), PrincipalSyntax::UnprintableId);
        assert_eq!(
            syntax("User::\"a\u{200b}b\""),
            PrincipalSyntax::UnprintableId
        );
        assert_eq!(syntax("User::\"\u{301}a\""), PrincipalSyntax::UnprintableId);
        let long = format!("User::\"{}\"", "a".repeat(MAX_ID_BYTES + 1));
        assert_eq!(syntax(&long), PrincipalSyntax::IdTooLong);
        let longest = format!("User::\"{}\"", "a".repeat(MAX_ID_BYTES));
        assert!(longest.parse::<PrincipalEntity>().is_ok());
    }

    #[test]
    fn workspace_ids_are_validated() {
        for good in ["a", "acme", "0", "team_1-x", &"a".repeat(64)] {
            assert_eq!(WorkspaceId::new(good).unwrap().as_str(), good);
        }
        for bad in ["", "-a", "_a", "Acme", "a b", "a.b", "ä", &"a".repeat(65)] {
            assert!(
                matches!(WorkspaceId::new(bad), Err(IdentityError::BadWorkspace)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn principal_workspace_follows_kind() {
        let ws = WorkspaceId::new("acme").unwrap();
        let user = PrincipalEntity::new(PrincipalKind::User, "alice").unwrap();
        let agent = PrincipalEntity::new(PrincipalKind::Agent, "bot").unwrap();
        let op = PrincipalEntity::new(PrincipalKind::Operator, "ops").unwrap();
        assert!(Principal::new(user.clone(), Some(ws.clone())).is_ok());
        assert!(Principal::new(agent.clone(), Some(ws.clone())).is_ok());
        assert!(Principal::new(op.clone(), None).is_ok());
        assert!(matches!(
            Principal::new(user, None),
            Err(IdentityError::MissingWorkspace(PrincipalKind::User))
        ));
        assert!(matches!(
            Principal::new(agent, None),
            Err(IdentityError::MissingWorkspace(PrincipalKind::Agent))
        ));
        assert!(matches!(
            Principal::new(op, Some(ws)),
            Err(IdentityError::UnexpectedWorkspace)
        ));
    }

    #[test]
    fn principal_serde_keeps_the_invariant() {
        let p = Principal::new(
            r#"User::"alice""#.parse().unwrap(),
            Some(WorkspaceId::new("acme").unwrap()),
        )
        .unwrap();
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"entity":"User::\"alice\"","workspace":"acme"}"#);
        assert_eq!(serde_json::from_str::<Principal>(&json).unwrap(), p);
        assert!(
            serde_json::from_str::<Principal>(r#"{"entity":"User::\"a\"","workspace":null}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<Principal>(r#"{"entity":"Role::\"a\"","workspace":"x"}"#)
                .is_err()
        );
        assert!(
            serde_json::from_str::<Principal>(r#"{"entity":"User::\"a\"","workspace":"X"}"#)
                .is_err()
        );
    }
}
