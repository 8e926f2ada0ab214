//! writ's policy decision point: Cedar policies and schema, the entity store, and decisions.
//!
//! No network I/O and no HTTP: the server hands requests in and takes decisions out.

pub mod conformance;
pub mod decision;
pub mod engine;
pub mod entities;
pub mod error;
pub mod policies;

pub use decision::{entity_uid, Decision, DecisionRequest, EvaluationError};
pub use engine::{Engine, Snapshot};
pub use entities::{EntityStore, MemoryEntityStore, SledEntityStore};
pub use error::{PdpError, PolicyDiagnostic};
pub use policies::{LoadedPolicies, PolicyDigest, SourceFile};

/// Re-exported so that callers name Cedar types through one version.
pub use cedar_policy;
