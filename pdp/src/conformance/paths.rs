//! Finding the files a test names, and the test files under a directory.

use std::path::{Path, PathBuf};

use super::error::{one_line, ConformanceError};

/// Resolves `name`, as written in the test file `test`, to an existing path.
///
/// An absolute `name` is taken as it is. A relative one is tried against the test's own
/// directory, then against each directory above it in turn; the first that exists wins.
/// This covers both layouts of cedar-integration-tests without being told which is
/// which: the handwritten tests name paths from the folder holding `tests/` (two levels
/// up), the corpus tests name `corpus-tests/<hash>.cedar` (one level up).
pub(super) fn resolve(test: &Path, name: &str) -> Result<PathBuf, ConformanceError> {
    let named = Path::new(name);
    if named.is_absolute() {
        return Ok(named.to_path_buf());
    }
    let test_abs = std::path::absolute(test).map_err(|e| ConformanceError::Io {
        path: test.display().to_string(),
        reason: one_line(e),
    })?;
    test_abs
        .parent()
        .into_iter()
        .flat_map(Path::ancestors)
        .map(|dir| dir.join(named))
        .find(|candidate| candidate.exists())
        .ok_or_else(|| ConformanceError::NotFound {
            name: name.to_owned(),
            test: test.display().to_string(),
        })
}

/// Every `*.json` file under `dir` (recursively, in sorted order) that is not an
/// `*.entities.json` file: the candidates for tests. Whether a candidate is a test is
/// decided when it is read. Symbolic links to directories are not followed, so a link
/// loop cannot make the walk endless. Directories that cannot be read are returned
/// beside the candidates.
pub(super) fn candidates(dir: &Path) -> (Vec<PathBuf>, Vec<(PathBuf, ConformanceError)>) {
    let mut found = Vec::new();
    let mut unreadable = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        let mut entries = match list(&current) {
            Ok(entries) => entries,
            Err(error) => {
                unreadable.push((current, error));
                continue;
            }
        };
        entries.sort();
        for (path, is_dir) in entries {
            if is_dir {
                pending.push(path);
            } else if is_test_name(&path) {
                found.push(path);
            }
        }
    }
    found.sort();
    (found, unreadable)
}

/// The entries of one directory, each with whether it is a real (not linked) directory.
fn list(dir: &Path) -> Result<Vec<(PathBuf, bool)>, ConformanceError> {
    let io = |e: std::io::Error| ConformanceError::Io {
        path: dir.display().to_string(),
        reason: one_line(e),
    };
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let is_dir = entry.file_type().map_err(io)?.is_dir();
        entries.push((entry.path(), is_dir));
    }
    Ok(entries)
}

fn is_test_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.ends_with(".json") && !name.ends_with(".entities.json")
}
