//! The one error type of the PDP crate.

use thiserror::Error;

/// One message of the parser or validator, located in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiagnostic {
    /// The file, relative to the directory that was loaded.
    pub file: String,
    /// 1-based line of the first labelled span, when the message has one.
    pub line: Option<usize>,
    /// The policy the message is about, when it is about one.
    pub policy_id: Option<String>,
    /// The message, with Cedar's help text appended when there is some.
    pub message: String,
}

impl std::fmt::Display for PolicyDiagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(id) = &self.policy_id {
            write!(f, ": policy `{id}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Everything that can go wrong in the PDP.
#[derive(Debug, Error)]
pub enum PdpError {
    /// A file or directory could not be read.
    #[error("cannot read `{path}`: {reason}")]
    Io { path: String, reason: String },
    /// A directory held no file of the kind needed.
    #[error("no `*.{extension}` file in `{dir}`")]
    NothingToLoad {
        dir: String,
        extension: &'static str,
    },
    /// The policy set or the schema does not parse or does not validate.
    #[error("the policy set is invalid:\n{}", join_lines(.diagnostics))]
    InvalidPolicySet { diagnostics: Vec<PolicyDiagnostic> },
    /// The stored entities do not conform to a (new) schema.
    #[error("the entity store does not conform to the schema: {reason}")]
    EntitiesRejectedBySchema { reason: String },
    /// An entity given to the store or to one request is malformed or does not conform.
    #[error("invalid entity: {reason}")]
    InvalidEntity { reason: String },
    /// An entity UID could not be parsed.
    #[error("invalid entity uid `{uid}`: {reason}")]
    InvalidUid { uid: String, reason: String },
    /// The entity type is not declared in the schema.
    #[error("unknown entity type `{entity_type}`")]
    UnknownEntityType { entity_type: String },
    /// The action is not declared in the schema.
    #[error("unknown action `{action}`")]
    UnknownAction { action: String },
    /// The request does not fit the schema (principal or resource type for the action).
    #[error("the request does not fit the schema: {reason}")]
    InvalidRequest { reason: String },
    /// The context does not fit the schema of the action.
    #[error("invalid context: {reason}")]
    InvalidContext { reason: String },
    /// A caller-supplied entity that the caller may not supply.
    #[error("entity `{uid}` may not be supplied with a request: {reason}")]
    EntityNotAllowed { uid: String, reason: String },
    /// A kernel entity that may not be deleted.
    #[error("entity `{uid}` is required by the kernel and cannot be deleted")]
    EntityRequired { uid: String },
    /// No such entity in the store.
    #[error("no entity `{uid}`")]
    EntityNotFound { uid: String },
    /// The entity store's backing storage failed.
    #[error("entity store: {0}")]
    Storage(#[from] sled::Error),
    /// A stored entity could not be decoded (the store was damaged).
    #[error("entity store is damaged at `{key}`: {reason}")]
    CorruptStore { key: String, reason: String },
}

fn join_lines(diagnostics: &[PolicyDiagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| format!("  {d}"))
        .collect::<Vec<_>>()
        .join("\n")
}
