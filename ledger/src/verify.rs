//! The offline auditor: verifies an export directory with the public key alone.
//!
//! It re-hashes every entry (checking its `index` is its position), rebuilds the
//! tree and every hash tile, and checks every retained checkpoint's signature and
//! root against the tree rebuilt from the same entries. Because every checkpoint's
//! root is recomputed from one stream of entries, each is consistent with every
//! later one (the consistency proofs between them are implied and not needed).
//! Memory stays O(log n) in the entries: only the tree's right edge is kept, plus
//! one (size, root) pair per retained checkpoint.
//!
//! A caller can also see every entry, in index order, and fail the verification
//! with rules of its own ([`verify_export_with`]; `writ ledger verify` checks signed
//! statements this way). Such a failure is reported only once everything else has
//! verified, so a damaged export is reported as damaged, not as whatever the damage
//! made an entry say.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use crate::checkpoint::LogVerifier;
use crate::entry::check_entry;
use crate::error::LedgerError;
use crate::files::read_bounded;
use crate::hash::{leaf_hash, Hash, HASH_LEN};
use crate::tilepath::{split_bundle, tile_path, TileKind};
use crate::tiles::{bottom_row, NoTiles, TileId, TreeEdge, TILE_HEIGHT, TILE_WIDTH};
use crate::types::{LeafIndex, TreeSize};

/// What a successful verification covered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    pub size: TreeSize,
    pub root: Hash,
    pub checkpoints: usize,
    pub hash_tiles: u64,
}

/// Where and why verification failed.
fn failure(at: impl Into<String>, reason: impl Into<String>) -> LedgerError {
    LedgerError::VerifyFailed {
        at: at.into(),
        reason: reason.into(),
    }
}

/// The largest file an export can hold: a full bundle of maximal entries.
pub(crate) const MAX_EXPORT_FILE: u64 = (TILE_WIDTH * (2 + crate::entry::MAX_ENTRY_BYTES)) as u64;

/// Reads an export file, refusing one larger than any valid export file can be.
fn read(root: &Path, relative: &str) -> Result<Vec<u8>, LedgerError> {
    read_bounded(&root.join(relative), MAX_EXPORT_FILE).map_err(|error| match error.kind() {
        std::io::ErrorKind::NotFound => failure(relative, "missing"),
        _ => failure(relative, error.to_string()),
    })
}

/// Verifies the export in `dir` against the trusted `key`. `progress` is called
/// with (entries done, total) now and then.
pub fn verify_export(
    dir: &Path,
    key: &LogVerifier,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<VerifyReport, LedgerError> {
    verify(dir, key, progress, None)
}

/// A caller's check of one entry (its index and exact bytes); an `Err` is the
/// reason the export fails, reported at `entry <index>`.
pub type EntryCheck<'a> = &'a mut dyn FnMut(LeafIndex, &[u8]) -> Result<(), String>;

/// [`verify_export`], also calling `on_entry` with every entry in index order
/// (each already checked to be a well-formed entry at its index). The first entry
/// it refuses fails the verification, once the export has otherwise verified;
/// `on_entry` is not called again after refusing one.
pub fn verify_export_with(
    dir: &Path,
    key: &LogVerifier,
    progress: &mut dyn FnMut(u64, u64),
    on_entry: EntryCheck<'_>,
) -> Result<VerifyReport, LedgerError> {
    verify(dir, key, progress, Some(on_entry))
}

fn verify(
    dir: &Path,
    key: &LogVerifier,
    progress: &mut dyn FnMut(u64, u64),
    mut on_entry: Option<EntryCheck<'_>>,
) -> Result<VerifyReport, LedgerError> {
    if !dir.is_dir() {
        return Err(failure(dir.display().to_string(), "not a directory"));
    }
    check_keys(dir, key)?;
    let latest = key
        .verify_checkpoint(&read(dir, "checkpoint")?)
        .map_err(|error| failure("checkpoint", error.to_string()))?;
    let checkpoints = read_checkpoints(dir, key, latest.size, latest.root)?;
    let size = latest.size;

    let mut edge = TreeEdge::new();
    let mut completed: Vec<(TileId, Vec<u8>)> = Vec::new();
    let mut hash_tiles = 0u64;
    let mut next_checkpoint = checkpoints.iter().peekable();
    // The empty tree is reached before any entry: its root is fixed.
    if let Some((&at, &root)) = next_checkpoint.next_if(|(&at, _)| at.0 == 0) {
        if root != Hash::empty_tree() {
            return Err(failure(
                format!("checkpoints/{at}"),
                "a tree of size 0 must have the empty root",
            ));
        }
    }
    // A root mismatch is reported once the tile holding the bad entry is checked,
    // which names the entry more precisely.
    let mut pending: Option<LedgerError> = None;
    // The first entry the caller refused; reported once all else has verified.
    let mut refused: Option<LedgerError> = None;
    let bundles = size.0.div_ceil(TILE_WIDTH as u64);
    // Bundles kept for the caller are held whole, so fewer are queued.
    let keep_entries = on_entry.is_some();
    let queued = if keep_entries {
        QUEUED_BUNDLES_WITH_ENTRIES
    } else {
        QUEUED_BUNDLES
    };
    std::thread::scope(|scope| -> Result<(), LedgerError> {
        // Parsing and leaf hashing (most of the work) run on HASH_WORKERS threads,
        // each taking every HASH_WORKERS-th bundle; this thread builds the tree in
        // order. Bounded queues keep memory constant.
        let receivers: Vec<_> = (0..HASH_WORKERS)
            .map(|worker| {
                let (sender, receiver) = crossbeam_channel::bounded(queued);
                scope.spawn(move || {
                    for number in (worker..bundles).step_by(HASH_WORKERS as usize) {
                        let hashed = hash_bundle(dir, number, size, keep_entries);
                        if sender.send(hashed).is_err() {
                            return;
                        }
                    }
                });
                receiver
            })
            .collect();
        for number in 0..bundles {
            let worker = (number % HASH_WORKERS) as usize;
            let HashedBundle { leaves, bytes } = receivers
                .get(worker)
                .and_then(|receiver| receiver.recv().ok())
                .ok_or_else(|| failure("verifier", "a hashing thread stopped"))??;
            if refused.is_none() {
                if let (Some(check), Some(bytes)) = (on_entry.as_mut(), &bytes) {
                    refused = check_entries(&mut **check, bytes, number, size);
                }
            }
            for leaf in leaves.iter() {
                edge.push(*leaf, &mut completed);
                for (id, fat) in completed.drain(..) {
                    hash_tiles += 1;
                    check_hash_tile(dir, id, bottom_row(&fat).unwrap_or_default(), TILE_WIDTH)?;
                }
                if let Some((&at, &root)) = next_checkpoint.peek() {
                    if edge.size() == at {
                        next_checkpoint.next();
                        let rebuilt = edge.root_at(at, &NoTiles)?;
                        if rebuilt != root && pending.is_none() {
                            pending = Some(failure(
                                format!("checkpoints/{at}"),
                                format!("its root does not match entries 0..{at}"),
                            ));
                        }
                    }
                }
            }
            if leaves.len() == TILE_WIDTH {
                if let Some(error) = pending.take() {
                    return Err(error);
                }
            }
            progress(edge.size().0, size.0);
        }
        Ok(())
    })?;
    hash_tiles += check_partial_tiles(dir, &edge)?;
    if let Some(error) = pending {
        return Err(error);
    }
    if let Some((at, _)) = next_checkpoint.next() {
        // INVARIANT: every retained size is at most the latest, so all were reached.
        return Err(failure(
            format!("checkpoints/{at}"),
            "was never reached by the entries",
        ));
    }
    if let Some(error) = refused {
        return Err(error);
    }
    Ok(VerifyReport {
        size,
        root: latest.root,
        checkpoints: checkpoints.len(),
        hash_tiles,
    })
}

/// Threads that parse and hash entry bundles.
const HASH_WORKERS: u64 = 2;
/// Bundles each hashing thread may run ahead of the tree builder.
const QUEUED_BUNDLES: usize = 64;
/// The same when whole bundles are kept for the caller: a bundle of maximal
/// entries is 16 MiB, so this bounds the queues at about 128 MiB at worst.
const QUEUED_BUNDLES_WITH_ENTRIES: usize = 4;

/// An entry bundle's leaf hashes, and its bytes when the caller sees its entries.
struct HashedBundle {
    leaves: Vec<Hash>,
    bytes: Option<Vec<u8>>,
}

/// Reads bundle `number`, checks every entry in it and returns their leaf hashes
/// (and the bundle itself when `keep` is set).
fn hash_bundle(
    dir: &Path,
    number: u64,
    size: TreeSize,
    keep: bool,
) -> Result<HashedBundle, LedgerError> {
    let first = number * TILE_WIDTH as u64;
    let width = bundle_width(number, size);
    let path = tile_path(TileKind::Entries, number, width);
    let bundle = read(dir, &path)?;
    let entries = split_bundle(&bundle, first, width).map_err(|reason| failure(&path, reason))?;
    let mut leaves = Vec::with_capacity(width);
    for (offset, entry) in (first..).zip(entries) {
        let index = LeafIndex(offset);
        check_entry(entry, index)
            .map_err(|error| failure(format!("entry {index}"), error.to_string()))?;
        leaves.push(leaf_hash(entry));
    }
    Ok(HashedBundle {
        leaves,
        bytes: keep.then_some(bundle),
    })
}

/// How many entries bundle `number` holds in a tree of `size`.
fn bundle_width(number: u64, size: TreeSize) -> usize {
    let first = number * TILE_WIDTH as u64;
    (size.0 - first).min(TILE_WIDTH as u64) as usize
}

/// Shows the caller the entries of bundle `number` (already split and checked by
/// [`hash_bundle`]); returns the failure for the first one it refuses.
fn check_entries(
    check: EntryCheck<'_>,
    bundle: &[u8],
    number: u64,
    size: TreeSize,
) -> Option<LedgerError> {
    let first = number * TILE_WIDTH as u64;
    let width = bundle_width(number, size);
    let entries = match split_bundle(bundle, first, width) {
        Ok(entries) => entries,
        Err(reason) => return Some(failure(tile_path(TileKind::Entries, number, width), reason)),
    };
    (first..).zip(entries).find_map(|(index, entry)| {
        let index = LeafIndex(index);
        check(index, entry)
            .err()
            .map(|reason| failure(format!("entry {index}"), reason))
    })
}

/// The `keys` file must list the trusted key first.
fn check_keys(dir: &Path, key: &LogVerifier) -> Result<(), LedgerError> {
    let keys = read(dir, "keys")?;
    let keys = String::from_utf8(keys).map_err(|_| failure("keys", "not UTF-8"))?;
    let first = keys.lines().next().unwrap_or_default();
    let listed = LogVerifier::from_verifier_key(first)
        .map_err(|error| failure("keys", error.to_string()))?;
    if listed.to_verifier_key() != key.to_verifier_key() {
        return Err(failure(
            "keys",
            "the first key is not the key given to verify with",
        ));
    }
    if keys.lines().count() > 1 {
        return Err(failure(
            "keys",
            "key rotation is not supported by this verifier yet",
        ));
    }
    Ok(())
}

/// Reads and verifies `checkpoints/*`; returns size -> root, including the latest.
fn read_checkpoints(
    dir: &Path,
    key: &LogVerifier,
    latest_size: TreeSize,
    latest_root: Hash,
) -> Result<BTreeMap<TreeSize, Hash>, LedgerError> {
    let mut roots = BTreeMap::new();
    let listing = match fs::read_dir(dir.join("checkpoints")) {
        Ok(listing) => listing,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(failure("checkpoints", "missing"));
        }
        Err(error) => return Err(failure("checkpoints", error.to_string())),
    };
    let mut files = Vec::new();
    for item in listing {
        let item = item.map_err(|error| failure("checkpoints", error.to_string()))?;
        files.push(item.file_name().to_string_lossy().into_owned());
    }
    // Signature checks dominate here; spread them over the hashing threads' count.
    let chunk = files.len().div_ceil(HASH_WORKERS as usize).max(1);
    let verified = std::thread::scope(|scope| {
        let handles: Vec<_> = files
            .chunks(chunk)
            .map(|names| {
                scope.spawn(move || {
                    names
                        .iter()
                        .map(|name| read_checkpoint(dir, key, name))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| {
                handle.join().unwrap_or_else(|_| {
                    vec![Err(failure("checkpoints", "a checking thread stopped"))]
                })
            })
            .collect::<Vec<_>>()
    });
    for result in verified.into_iter().flatten() {
        let (at, checkpoint) = result?;
        if checkpoint.size > latest_size {
            return Err(failure(
                &at,
                format!("it is beyond the latest checkpoint ({latest_size})"),
            ));
        }
        roots.insert(checkpoint.size, checkpoint.root);
    }
    if let Some(root) = roots.get(&latest_size) {
        if *root != latest_root {
            return Err(failure(
                format!("checkpoints/{latest_size}"),
                "two signed checkpoints of the same size have different roots",
            ));
        }
    }
    roots.insert(latest_size, latest_root);
    Ok(roots)
}

/// Reads and verifies `checkpoints/<name>`, whose name must be its tree size.
fn read_checkpoint(
    dir: &Path,
    key: &LogVerifier,
    name: &str,
) -> Result<(String, crate::checkpoint::Checkpoint), LedgerError> {
    let at = format!("checkpoints/{name}");
    let canonical = name.bytes().all(|b| b.is_ascii_digit()) && !name.starts_with('0');
    let size = name
        .parse::<u64>()
        .ok()
        .filter(|_| canonical)
        .ok_or_else(|| failure(&at, "file name is not a tree size"))?;
    let checkpoint = key
        .verify_checkpoint(&read(dir, &at)?)
        .map_err(|error| failure(&at, error.to_string()))?;
    if checkpoint.size.0 != size {
        return Err(failure(
            &at,
            format!("its body says size {}", checkpoint.size),
        ));
    }
    Ok((at, checkpoint))
}

fn check_hash_tile(
    dir: &Path,
    id: TileId,
    expected: &[u8],
    width: usize,
) -> Result<(), LedgerError> {
    let path = tile_path(TileKind::Hashes(id.level), id.index, width);
    let stored = read(dir, &path)?;
    if stored.len() != width * HASH_LEN {
        return Err(failure(
            &path,
            format!("{} bytes instead of {}", stored.len(), width * HASH_LEN),
        ));
    }
    let first_bad = stored
        .chunks(HASH_LEN)
        .zip(expected.chunks(HASH_LEN))
        .position(|(stored, rebuilt)| stored != rebuilt);
    match first_bad {
        None => Ok(()),
        Some(position) if id.level == 0 => Err(failure(
            &path,
            format!(
                "hash {position} does not match entry {}",
                id.index * TILE_WIDTH as u64 + position as u64
            ),
        )),
        Some(position) => Err(failure(
            &path,
            format!("hash {position} does not match the tiles below"),
        )),
    }
}

/// Checks the partial hash tiles of the final size; returns how many there were.
fn check_partial_tiles(dir: &Path, edge: &TreeEdge) -> Result<u64, LedgerError> {
    let size = edge.size().0;
    let mut checked = 0;
    for level in 0u8..8 {
        let tree_level = u32::from(level) * TILE_HEIGHT;
        let nodes = size >> tree_level;
        let width = (nodes % TILE_WIDTH as u64) as usize;
        if nodes == 0 {
            break;
        }
        if width == 0 {
            continue;
        }
        let first = nodes - width as u64;
        let mut expected = Vec::with_capacity(width * HASH_LEN);
        for node in first..nodes {
            expected.extend_from_slice(&edge.node(tree_level, node, &NoTiles)?.0);
        }
        check_hash_tile(
            dir,
            TileId {
                level,
                index: first / TILE_WIDTH as u64,
            },
            &expected,
            width,
        )?;
        checked += 1;
    }
    Ok(checked)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::checkpoint::LogSigner;
    use crate::entry::EntryDraft;
    use crate::export::export;
    use crate::log::{Log, Retention, SystemClock};
    use crate::store::SledStore;

    fn signer() -> LogSigner {
        LogSigner::from_seed("verify.example/log", &[3u8; 32]).unwrap()
    }

    /// A log of `entries` entries (`{"n": N}`), appended in batches, exported.
    fn exported(entries: u64) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SledStore::open(&dir.path().join("db")).unwrap());
        let mut log =
            Log::create(store, signer(), Arc::new(SystemClock), Retention::default()).unwrap();
        let drafts: Vec<_> = (0..entries)
            .map(|n| {
                EntryDraft {
                    kind: "test.entry".into(),
                    actor: "writ".into(),
                    workspace: "-".into(),
                    fields: serde_json::json!({ "n": n }).as_object().cloned().unwrap(),
                }
                .prepare()
                .unwrap()
            })
            .collect();
        for chunk in drafts.chunks(100) {
            log.append_batch(chunk).unwrap();
        }
        let out = dir.path().join("export");
        export(&log, &out).unwrap();
        (dir, out)
    }

    fn key() -> LogVerifier {
        LogVerifier::from_verifier_key(&signer().verifier_key()).unwrap()
    }

    #[test]
    fn every_entry_is_seen_once_in_order() {
        // Three bundles, the last partial, spread over both hashing threads.
        let (_dir, out) = exported(600);
        let mut seen = Vec::new();
        let report = verify_export_with(&out, &key(), &mut |_, _| {}, &mut |index, bytes| {
            let header = check_entry(bytes, index).map_err(|error| error.to_string())?;
            assert_eq!(header.kind, "test.entry");
            seen.push(index.0);
            Ok(())
        })
        .unwrap();
        assert_eq!(report.size, TreeSize(600));
        assert_eq!(seen, (0..600).collect::<Vec<_>>());
        assert_eq!(verify_export(&out, &key(), &mut |_, _| {}).unwrap(), report);
    }

    #[test]
    fn a_refused_entry_fails_by_index_and_stops_the_calls() {
        let (_dir, out) = exported(600);
        let mut calls = 0;
        let error = verify_export_with(&out, &key(), &mut |_, _| {}, &mut |index, _| {
            calls += 1;
            if index.0 == 300 {
                Err("not what the caller wanted".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert_eq!(error.to_string(), "entry 300: not what the caller wanted");
        assert_eq!(calls, 301);
    }

    #[test]
    fn damage_is_reported_before_a_refused_entry() {
        let (_dir, out) = exported(600);
        // Damage entry 10's bytes; the caller refuses entry 5 before it.
        let path = out.join(tile_path(TileKind::Entries, 0, TILE_WIDTH));
        let mut bundle = std::fs::read(&path).unwrap();
        let entries = split_bundle(&bundle, 0, TILE_WIDTH).unwrap();
        let tenth = entries[10].as_ptr() as usize - bundle.as_ptr() as usize;
        let digit = tenth + entries[10].len() - 3;
        assert_eq!(bundle[digit], b'1');
        bundle[digit] = b'2';
        std::fs::write(&path, bundle).unwrap();
        let error = verify_export_with(&out, &key(), &mut |_, _| {}, &mut |index, _| {
            if index.0 == 5 {
                Err("refused".into())
            } else {
                Ok(())
            }
        })
        .unwrap_err();
        assert!(
            error.to_string().contains("does not match entry 10"),
            "{error}"
        );
    }
}
