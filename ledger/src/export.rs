//! Export: writes a stopped data dir as a C2SP tlog-tiles directory, plus
//! `checkpoints/<size>` (the retained signed checkpoints) and `keys`.
//!
//! The export is written into a fresh sibling directory and renamed into place
//! only when complete, so a failed export leaves nothing behind.

use std::fs;
use std::path::{Path, PathBuf};

use crate::error::LedgerError;
use crate::log::Log;
use crate::store::LedgerStore;
use crate::tile_reader::{entry_bundle_at, hash_tile_at, tiles_of};
use crate::tilepath::TileKind;
use crate::types::TreeSize;

/// What an export wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSummary {
    pub size: TreeSize,
    pub checkpoints: u64,
    pub hash_tiles: u64,
    pub entry_bundles: u64,
}

/// Exports `log` into `out`, which must not exist yet.
pub fn export<S: LedgerStore>(log: &Log<S>, out: &Path) -> Result<ExportSummary, LedgerError> {
    if out.exists() {
        return Err(LedgerError::io(
            out,
            std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "already exists; choose a new path",
            ),
        ));
    }
    let size = log.size();
    if size.0 == 0 {
        return Err(LedgerError::EmptyLog);
    }
    let name = out
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| "export".into());
    let staging = out.with_file_name(format!(".{name}.partial-{:08x}", rand::random::<u32>()));
    let result = write_all(log, &staging, size);
    match result {
        Ok(summary) => {
            fs::rename(&staging, out).map_err(|error| LedgerError::io(out, error))?;
            Ok(summary)
        }
        Err(error) => {
            let _ = fs::remove_dir_all(&staging);
            Err(error)
        }
    }
}

fn write_file(root: &Path, relative: &str, bytes: &[u8]) -> Result<(), LedgerError> {
    let path: PathBuf = root.join(relative);
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|error| LedgerError::io(parent, error))?;
    }
    fs::write(&path, bytes).map_err(|error| LedgerError::io(&path, error))
}

fn write_all<S: LedgerStore>(
    log: &Log<S>,
    root: &Path,
    size: TreeSize,
) -> Result<ExportSummary, LedgerError> {
    let store = log.store().as_ref();
    fs::create_dir_all(root).map_err(|error| LedgerError::io(root, error))?;
    let mut summary = ExportSummary {
        size,
        checkpoints: 0,
        hash_tiles: 0,
        entry_bundles: 0,
    };

    // Entry bundles and hash tiles: the same bytes the server's tile API serves.
    for tile in tiles_of(size) {
        let bytes = match tile.kind {
            TileKind::Entries => {
                summary.entry_bundles += 1;
                entry_bundle_at(store, size, tile.index, tile.width())?
            }
            TileKind::Hashes(level) => {
                summary.hash_tiles += 1;
                hash_tile_at(store, size, level, tile.index, tile.width())?
            }
        };
        write_file(root, &tile.path(), &bytes)?;
    }

    // Checkpoints: every retained one, and the latest as `checkpoint`.
    let mut latest = None;
    for checkpoint in store.checkpoints_from(TreeSize(0)) {
        let checkpoint = checkpoint?;
        write_file(
            root,
            &format!("checkpoints/{}", checkpoint.size.0),
            checkpoint.note.as_bytes(),
        )?;
        summary.checkpoints += 1;
        latest = Some(checkpoint);
    }
    let latest = latest
        .filter(|checkpoint| checkpoint.size == size)
        .ok_or_else(|| LedgerError::corrupt(format!("no checkpoint for size {size}")))?;
    write_file(root, "checkpoint", latest.note.as_bytes())?;
    write_file(root, "keys", format!("{}\n", log.verifier_key()).as_bytes())?;
    Ok(summary)
}
