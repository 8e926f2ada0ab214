//! Loads a directory of `*.cedar` files, naming each policy by its `@id`, for tests
//! whose `policies` names a directory (writ's own policy tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{PolicyId, PolicySet};

use super::error::{one_line, ConformanceError};

/// The annotation that names a policy.
const ID_ANNOTATION: &str = "id";

/// Loads every `*.cedar` file directly in `dir` (not in subdirectories), in order of
/// file name, into one policy set.
///
/// Each policy's ID is the value of its `@id("...")` annotation, which is required,
/// non-empty and unique across the directory; templates are refused. Policy IDs in a
/// test's `reason` and `errors` then name these IDs rather than `policy0`, `policy1`, ...
pub fn load_policy_dir(dir: &Path) -> Result<PolicySet, ConformanceError> {
    let mut set = PolicySet::new();
    // Policy ID -> the file that first used it.
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    for path in cedar_files(dir)? {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(&path).map_err(|e| ConformanceError::Io {
            path: file.clone(),
            reason: one_line(e),
        })?;
        let parsed = PolicySet::from_str(&text).map_err(|e| ConformanceError::Policies {
            path: file.clone(),
            reason: one_line(e),
        })?;
        if parsed.templates().next().is_some() {
            return Err(ConformanceError::Template { file });
        }
        for (position, policy) in in_text_order(&parsed) {
            let number = position.saturating_add(1);
            let id = match policy.annotation(ID_ANNOTATION) {
                None => return Err(ConformanceError::MissingId { file, number }),
                Some("") => return Err(ConformanceError::EmptyId { file, number }),
                Some(id) => id.to_owned(),
            };
            if let Some(first) = origin.get(&id) {
                return Err(ConformanceError::DuplicateId {
                    id,
                    file,
                    first: first.clone(),
                });
            }
            set.add(policy.new_id(PolicyId::new(&id)))
                .map_err(|e| ConformanceError::Policies {
                    path: file.clone(),
                    reason: one_line(e),
                })?;
            origin.insert(id, file.clone());
        }
    }
    Ok(set)
}

/// The regular `*.cedar` files directly in `dir`, sorted by file name.
fn cedar_files(dir: &Path) -> Result<Vec<PathBuf>, ConformanceError> {
    let io = |path: &Path, e: std::io::Error| ConformanceError::Io {
        path: path.display().to_string(),
        reason: one_line(e),
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("cedar") {
            continue;
        }
        // Follows links: a linked policy file is still a policy file.
        if std::fs::metadata(&path)
            .map_err(|e| io(&path, e))?
            .is_file()
        {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.file_name().cmp(&b.file_name()));
    Ok(files)
}

/// The policies of a freshly parsed set, in the order of the text, with their positions.
fn in_text_order(parsed: &PolicySet) -> Vec<(usize, cedar_policy::Policy)> {
    // PolicySet::from_str names policies policy0, policy1, ... in text order.
    let mut policies: Vec<(usize, cedar_policy::Policy)> = parsed
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
    policies.sort_by_key(|(position, _)| *position);
    policies
}
