//! Why a test file (or a policy directory) could not be run at all.
//!
//! A test that runs but gets a different answer is not an error: it is a
//! [`Disagreement`](super::Disagreement) in the report.

use thiserror::Error;

/// A test file, or something it names, that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConformanceError {
    /// A file or directory could not be read.
    #[error("cannot read `{path}`: {reason}")]
    Io { path: String, reason: String },
    /// The file is not JSON in the integration-test format.
    #[error("`{path}` is not a cedar integration test: {reason}")]
    NotATest { path: String, reason: String },
    /// A relative name in a test matches no file beside the test or above it.
    #[error("cannot find `{name}` named by `{test}`, beside it or in any folder above it")]
    NotFound { name: String, test: String },
    /// A policy file does not parse.
    #[error("cannot parse the policies in `{path}`: {reason}")]
    Policies { path: String, reason: String },
    /// A file in a policy directory holds a template, which has no `@id` of its own to go by.
    #[error("`{file}` holds a policy template; write static policies")]
    Template { file: String },
    /// A policy in a policy directory has no `@id("...")` annotation.
    #[error("policy number {number} in `{file}` has no `@id(\"...\")` annotation")]
    MissingId { file: String, number: usize },
    /// A policy in a policy directory has `@id("")`.
    #[error("policy number {number} in `{file}` has an empty `@id`")]
    EmptyId { file: String, number: usize },
    /// Two policies in a policy directory carry the same `@id`.
    #[error("duplicate policy id `{id}` in `{file}`, first used in `{first}`")]
    DuplicateId {
        id: String,
        file: String,
        first: String,
    },
    /// The schema does not parse.
    #[error("cannot parse the schema `{path}`: {reason}")]
    Schema { path: String, reason: String },
    /// The entities do not parse or do not conform to the schema.
    #[error("the entities in `{path}` do not load under the schema: {reason}")]
    Entities { path: String, reason: String },
    /// Cedar panicked while running the file (the other files still run).
    #[error("the runner crashed while running `{path}`")]
    Crashed { path: String },
}

/// Cedar's messages can span lines; reports keep one line per problem.
pub(super) fn one_line(text: impl std::fmt::Display) -> String {
    text.to_string()
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
