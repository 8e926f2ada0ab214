//! Loading a policy set: `*.cedar` files and `*.cedarschema` files, strictly validated.
//!
//! Every policy carries a unique `@id("...")` annotation, which becomes its policy ID:
//! decisions and ledger entries name policies by it, so it must not depend on file order.
//! A set that does not parse or does not validate is refused whole, with every message
//! located by file, line and policy ID.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{
    Effect, PolicyId, PolicySet, Schema, SchemaFragment, ValidationMode, Validator,
};
use miette::Diagnostic;
use sha2::{Digest, Sha256};

use crate::error::{PdpError, PolicyDiagnostic};

/// The annotation that names a policy.
pub const ID_ANNOTATION: &str = "id";
/// The annotation that attaches obligations to a permit policy (comma-separated).
pub const OBLIGATION_ANNOTATION: &str = "obligation";

/// One source file: its name (relative to the directory it came from) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub name: String,
    pub text: String,
}

/// The SHA-256 of a loaded set: its schema files and policy files, names and bytes.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyDigest([u8; 32]);

impl PolicyDigest {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for PolicyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PolicyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PolicyDigest({self})")
    }
}

/// A validated policy set with its schema, digest and obligations.
#[derive(Debug)]
pub struct LoadedPolicies {
    set: PolicySet,
    schema: Schema,
    digest: PolicyDigest,
    obligations: BTreeMap<String, Vec<String>>,
    forbids: BTreeSet<String>,
    policy_files: Vec<String>,
    schema_files: Vec<String>,
    warnings: Vec<PolicyDiagnostic>,
}

impl LoadedPolicies {
    /// Reads `*.cedar` from `policy_dir` and `*.cedarschema` from `schema_dir`.
    pub fn load(policy_dir: &Path, schema_dir: &Path) -> Result<Self, PdpError> {
        let policies = read_sources(policy_dir, "cedar")?;
        let schemas = read_sources(schema_dir, "cedarschema")?;
        Self::from_sources(&policies, &schemas)
    }

    /// Parses, names and strictly validates the given sources. Pure.
    pub fn from_sources(policies: &[SourceFile], schemas: &[SourceFile]) -> Result<Self, PdpError> {
        let mut policies = policies.to_vec();
        policies.sort_by(|a, b| a.name.cmp(&b.name));
        let mut schemas = schemas.to_vec();
        schemas.sort_by(|a, b| a.name.cmp(&b.name));

        let schema = parse_schema(&schemas)?;
        let (set, origin) = parse_policies(&policies)?;

        let result = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        let locate = |diagnostic: &dyn Diagnostic, policy: Option<&PolicyId>, message: String| {
            let file = policy.and_then(|id| origin.get(&id.to_string()));
            PolicyDiagnostic {
                file: file.map_or_else(|| "(policy set)".to_owned(), |f| f.name.clone()),
                line: file.and_then(|f| first_line(diagnostic, &f.text)),
                policy_id: policy.map(ToString::to_string),
                message: with_help(diagnostic, message),
            }
        };
        let errors: Vec<PolicyDiagnostic> = result
            .validation_errors()
            .map(|e| locate(e, Some(e.policy_id()), e.to_string()))
            .collect();
        if !errors.is_empty() {
            return Err(PdpError::InvalidPolicySet {
                diagnostics: errors,
            });
        }
        let warnings = result
            .validation_warnings()
            .map(|w| locate(w, Some(w.policy_id()), w.to_string()))
            .collect();

        let mut obligations = BTreeMap::new();
        let mut forbids = BTreeSet::new();
        for policy in set.policies() {
            let id = policy.id().to_string();
            if policy.effect() == Effect::Forbid {
                forbids.insert(id.clone());
            }
            if let Some(value) = policy.annotation(OBLIGATION_ANNOTATION) {
                let list: Vec<String> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                obligations.insert(id, list);
            }
        }

        Ok(Self {
            digest: digest(&policies, &schemas),
            set,
            schema,
            obligations,
            forbids,
            policy_files: policies.iter().map(|f| f.name.clone()).collect(),
            schema_files: schemas.iter().map(|f| f.name.clone()).collect(),
            warnings,
        })
    }

    pub fn set(&self) -> &PolicySet {
        &self.set
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn digest(&self) -> PolicyDigest {
        self.digest
    }

    /// The obligations a policy carries (empty for most).
    pub fn obligations_of(&self, policy_id: &str) -> &[String] {
        self.obligations.get(policy_id).map_or(&[], Vec::as_slice)
    }

    pub fn is_forbid(&self, policy_id: &str) -> bool {
        self.forbids.contains(policy_id)
    }

    pub fn policy_count(&self) -> usize {
        self.set.policies().count()
    }

    pub fn policy_files(&self) -> &[String] {
        &self.policy_files
    }

    pub fn schema_files(&self) -> &[String] {
        &self.schema_files
    }

    /// The validator's warnings (the set loaded; these are worth a look).
    pub fn warnings(&self) -> &[PolicyDiagnostic] {
        &self.warnings
    }
}

/// Reads every `*.EXTENSION` regular file directly in `dir`, sorted by name.
pub fn read_sources(dir: &Path, extension: &'static str) -> Result<Vec<SourceFile>, PdpError> {
    let io = |path: &Path, error: std::io::Error| PdpError::Io {
        path: path.display().to_string(),
        reason: error.to_string(),
    };
    let mut files = Vec::new();
    for item in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let item = item.map_err(|e| io(dir, e))?;
        let path = item.path();
        if path.extension().and_then(|e| e.to_str()) != Some(extension) {
            continue;
        }
        if !item.file_type().map_err(|e| io(&path, e))?.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        files.push(SourceFile {
            name: item.file_name().to_string_lossy().into_owned(),
            text,
        });
    }
    if files.is_empty() {
        return Err(PdpError::NothingToLoad {
            dir: dir.display().to_string(),
            extension,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn parse_schema(schemas: &[SourceFile]) -> Result<Schema, PdpError> {
    let mut fragments = Vec::new();
    let mut diagnostics = Vec::new();
    for file in schemas {
        match SchemaFragment::from_cedarschema_str(&file.text) {
            Ok((fragment, _warnings)) => fragments.push(fragment),
            Err(error) => diagnostics.push(PolicyDiagnostic {
                file: file.name.clone(),
                line: first_line(&error, &file.text),
                policy_id: None,
                message: with_help(&error, error.to_string()),
            }),
        }
    }
    if !diagnostics.is_empty() {
        return Err(PdpError::InvalidPolicySet { diagnostics });
    }
    Schema::from_schema_fragments(fragments).map_err(|error| PdpError::InvalidPolicySet {
        diagnostics: vec![PolicyDiagnostic {
            file: "(schema)".to_owned(),
            line: None,
            policy_id: None,
            message: with_help(&error, error.to_string()),
        }],
    })
}

/// Parses every file and renames each policy to its `@id`. Returns the set and, per
/// policy ID, the file it came from.
fn parse_policies(
    policies: &[SourceFile],
) -> Result<(PolicySet, BTreeMap<String, SourceFile>), PdpError> {
    let mut set = PolicySet::new();
    let mut origin: BTreeMap<String, SourceFile> = BTreeMap::new();
    let mut diagnostics = Vec::new();
    let diagnostic = |file: &SourceFile, line, policy_id, message| PolicyDiagnostic {
        file: file.name.clone(),
        line,
        policy_id,
        message,
    };
    for file in policies {
        let parsed = match PolicySet::from_str(&file.text) {
            Ok(parsed) => parsed,
            Err(error) => {
                let line = first_line(&error, &file.text);
                diagnostics.push(diagnostic(
                    file,
                    line,
                    None,
                    with_help(&error, error.to_string()),
                ));
                continue;
            }
        };
        if parsed.templates().next().is_some() {
            diagnostics.push(diagnostic(
                file,
                None,
                None,
                "policy templates are not supported; write static policies".to_owned(),
            ));
            continue;
        }
        // PolicySet::from_str names policies policy0, policy1, ... in text order.
        let mut in_order: Vec<(usize, cedar_policy::Policy)> = parsed
            .policies()
            .map(|p| {
                let position = p
                    .id()
                    .to_string()
                    .strip_prefix("policy")
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap_or(usize::MAX);
                (position, p.clone())
            })
            .collect();
        in_order.sort_by_key(|(position, _)| *position);
        for (position, policy) in in_order {
            let nth = position.saturating_add(1);
            let Some(id) = policy.annotation(ID_ANNOTATION).map(str::to_owned) else {
                diagnostics.push(diagnostic(
                    file,
                    None,
                    None,
                    format!("policy number {nth} in the file has no `@id(\"...\")` annotation"),
                ));
                continue;
            };
            if id.is_empty() || id.len() > 128 || id.chars().any(char::is_whitespace) {
                diagnostics.push(diagnostic(
                    file,
                    None,
                    Some(id.clone()),
                    "a policy id must be 1 to 128 characters without spaces".to_owned(),
                ));
                continue;
            }
            if let Some(first) = origin.get(&id) {
                diagnostics.push(diagnostic(
                    file,
                    None,
                    Some(id.clone()),
                    format!("duplicate policy id, first used in `{}`", first.name),
                ));
                continue;
            }
            if let Err(error) = set.add(policy.new_id(PolicyId::new(&id))) {
                diagnostics.push(diagnostic(file, None, Some(id.clone()), error.to_string()));
                continue;
            }
            origin.insert(id, file.clone());
        }
    }
    if diagnostics.is_empty() {
        Ok((set, origin))
    } else {
        Err(PdpError::InvalidPolicySet { diagnostics })
    }
}

/// The 1-based line of a diagnostic's first labelled span within `text`.
fn first_line(diagnostic: &dyn Diagnostic, text: &str) -> Option<usize> {
    let offset = diagnostic.labels()?.map(|label| label.offset()).min()?;
    let before = text.get(..offset.min(text.len()))?;
    Some(
        before
            .bytes()
            .filter(|b| *b == b'\n')
            .count()
            .saturating_add(1),
    )
}

fn with_help(diagnostic: &dyn Diagnostic, message: String) -> String {
    match diagnostic.help() {
        Some(help) => format!("{message} ({help})"),
        None => message,
    }
}

/// SHA-256 over a framed list of the files: what a `policy.loaded` entry names.
fn digest(policies: &[SourceFile], schemas: &[SourceFile]) -> PolicyDigest {
    let mut hasher = Sha256::new();
    hasher.update(b"writ-policy-set/v1\n");
    for (kind, files) in [("schema", schemas), ("policy", policies)] {
        for file in files {
            hasher.update(
                format!(
                    "{kind} {} {} {}\n",
                    file.name.len(),
                    file.name,
                    file.text.len()
                )
                .as_bytes(),
            );
            hasher.update(file.text.as_bytes());
            hasher.update(b"\n");
        }
    }
    PolicyDigest(hasher.finalize().into())
}
