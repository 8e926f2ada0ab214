//! Tamper tests of `writ ledger verify`: every change to an export (entries, length
//! prefixes, bundles, hash tiles, checkpoints, keys) must fail verification with
//! exit 1 and a message that names where the export is wrong.
//!
//! One export is built (its bench fsyncs hundreds of batches, so it is built once),
//! then each named case damages a fresh copy of it; all cases run, on a few
//! threads, and every failing case is reported at the end.

// Integration tests always build with cfg(test); stating it lets clippy's
// allow-*-in-tests settings cover the helper functions as well.
#![cfg(test)]

mod common;

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use common::{
    bench, bundle_entries, bundle_slots, checkpoint_sizes, copy_dir, encode_bundle, export,
    export_size, verifier_key, verify, writ, xor_byte,
};
use tempfile::TempDir;
use writ_ledger::{leaf_hash, node_hash, Hash};

/// Entries in the export: 11 full bundles and a partial one of 184, so hash tiles
/// `tile/0/000`..`tile/0/010`, `tile/0/011.p/184` and `tile/1/000.p/11`.
const SIZE: u64 = 3000;
const PARTIAL_BUNDLE: &str = "tile/entries/011.p/184";
const PARTIAL_TILE: &str = "tile/0/011.p/184";
const LEVEL_1_TILE: &str = "tile/1/000.p/11";

/// The export every case starts from.
#[derive(Debug)]
struct Fixture {
    _tmp: TempDir,
    export: PathBuf,
    key: String,
    checkpoints: Vec<u64>,
}

impl Fixture {
    fn new() -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data = tmp.path().join("data");
        let out = tmp.path().join("export");
        bench(&data, SIZE, 8);
        export(&data, &out);
        let key = verifier_key(&data);
        assert_eq!(export_size(&out), SIZE);
        for file in [
            "tile/entries/000",
            "tile/entries/010",
            PARTIAL_BUNDLE,
            "tile/0/000",
            "tile/0/010",
            PARTIAL_TILE,
            LEVEL_1_TILE,
        ] {
            assert!(out.join(file).is_file(), "the export lacks {file}");
        }
        let checkpoints = checkpoint_sizes(&out);
        assert!(
            checkpoints.len() >= 50,
            "8 writers give many small batches, hence many checkpoints: {}",
            checkpoints.len()
        );
        Self {
            _tmp: tmp,
            export: out,
            key,
            checkpoints,
        }
    }

    /// A fresh copy of the export, in a temp dir of its own.
    fn copy(&self) -> (TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let copy = tmp.path().join("export");
        copy_dir(&self.export, &copy);
        (tmp, copy)
    }

    /// The smallest checkpoint that covers entry `index`, as verify names it.
    fn first_covering(&self, index: u64) -> String {
        let size = self
            .checkpoints
            .iter()
            .copied()
            .find(|&size| size > index)
            .unwrap();
        format!("checkpoints/{size}: its root does not match entries 0..{size}")
    }
}

/// One way of damaging an export, and what the failure message must mention.
struct Case {
    name: &'static str,
    damage: Box<dyn Fn(&Path) + Send + Sync>,
    expect: Vec<String>,
}

fn case(
    name: &'static str,
    expect: &[&str],
    damage: impl Fn(&Path) + Send + Sync + 'static,
) -> Case {
    Case {
        name,
        damage: Box::new(damage),
        expect: expect.iter().map(|needle| (*needle).to_owned()).collect(),
    }
}

/// Damages a copy, verifies it, and checks the failure: exit 1, a `FAILED:` line on
/// standard error naming every expected place, no panic.
fn run_case(fixture: &Fixture, case: &Case) -> Result<String, String> {
    let (_tmp, copy) = fixture.copy();
    (case.damage)(&copy);
    let run = verify(&copy, &fixture.key);
    let mut problems = Vec::new();
    if run.code != Some(1) {
        problems.push(format!("exit {:?} instead of 1", run.code));
    }
    if !run.stderr.starts_with("FAILED: ") {
        problems.push("no `FAILED:` line".to_owned());
    }
    if run.stderr.contains("panicked") {
        problems.push("writ panicked".to_owned());
    }
    for needle in &case.expect {
        if !run.stderr.contains(needle.as_str()) {
            problems.push(format!("the message does not mention {needle:?}"));
        }
    }
    if problems.is_empty() {
        Ok(run.stderr.trim_end().to_owned())
    } else {
        Err(format!("{}\n{run}", problems.join("; ")))
    }
}

fn read_bundle(export_dir: &Path, relative: &str) -> Vec<u8> {
    fs::read(export_dir.join(relative)).unwrap()
}

/// Where the `n`th entry's body of a bundle starts, and its length.
fn body_of(export_dir: &Path, bundle: &str, n: usize) -> (usize, usize) {
    let slot = bundle_slots(&read_bundle(export_dir, bundle))[n];
    (slot.body, slot.len)
}

/// Changes one byte of the padding (`"pad":"xxx..."`) of entry `n` of `bundle`
/// from `x` to `y`: still valid JSON with the right index, but other bytes.
fn edit_padding(export_dir: &Path, bundle: &str, n: usize) {
    let (body, len) = body_of(export_dir, bundle, n);
    let offset = body + len - 5;
    assert_eq!(
        read_bundle(export_dir, bundle)[offset],
        b'x',
        "padding byte"
    );
    xor_byte(&export_dir.join(bundle), offset, 0x01);
}

/// MTH of a power-of-two run of hashes.
fn subtree_root(hashes: &[Hash]) -> Hash {
    let mut row = hashes.to_vec();
    while row.len() > 1 {
        row = row
            .chunks(2)
            .map(|pair| node_hash(&pair[0], &pair[1]))
            .collect();
    }
    row[0]
}

fn set_hash(tile: &Path, position: usize, hash: Hash) {
    let mut bytes = fs::read(tile).unwrap();
    bytes[position * 32..(position + 1) * 32].copy_from_slice(&hash.0);
    fs::write(tile, bytes).unwrap();
}

/// Rewrites a bundle after `edit` changed its entries.
fn rewrite_bundle(export_dir: &Path, relative: &str, edit: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let path = export_dir.join(relative);
    let mut entries = bundle_entries(&fs::read(&path).unwrap());
    edit(&mut entries);
    fs::write(&path, encode_bundle(&entries)).unwrap();
}

/// Cuts `bytes` bytes off the end of a file.
fn cut(path: &Path, bytes: usize) {
    let content = fs::read(path).unwrap();
    fs::write(path, &content[..content.len() - bytes]).unwrap();
}

fn cases(fixture: &Fixture) -> Vec<Case> {
    let sizes = &fixture.checkpoints;
    let middle = sizes[sizes.len() / 2];
    let (older, newer) = (sizes[sizes.len() / 3], middle);
    assert!(older < newer && newer < SIZE);
    let middle_name = format!("checkpoints/{middle}");
    let key = fixture.key.clone();
    vec![
        // Entries edited inside a bundle.
        case(
            "padding byte of entry 100 (full bundle 0)",
            &["entry 100"],
            |copy| {
                edit_padding(copy, "tile/entries/000", 100);
            },
        ),
        case(
            "padding byte of entry 1297 (full bundle 5)",
            &["entry 1297"],
            |copy| {
                edit_padding(copy, "tile/entries/005", 17);
            },
        ),
        case("first byte `{` of entry 42", &["entry 42"], |copy| {
            let (body, _) = body_of(copy, "tile/entries/000", 42);
            xor_byte(&copy.join("tile/entries/000"), body, 0x01);
        }),
        case("last byte `}` of entry 2559", &["entry 2559"], |copy| {
            let (body, len) = body_of(copy, "tile/entries/009", 255);
            xor_byte(&copy.join("tile/entries/009"), body + len - 1, 0x01);
        }),
        case(
            "padding byte of entry 2916 (partial bundle)",
            &["entry 2916"],
            |copy| {
                edit_padding(copy, PARTIAL_BUNDLE, 100);
            },
        ),
        case(
            "padding byte of the last entry, 2999",
            &["entry 2999"],
            |copy| {
                edit_padding(copy, PARTIAL_BUNDLE, 183);
            },
        ),
        // Length prefixes.
        case(
            "high byte of entry 778's length prefix",
            &["tile/entries/003"],
            |copy| {
                let slot = bundle_slots(&read_bundle(copy, "tile/entries/003"))[10];
                xor_byte(&copy.join("tile/entries/003"), slot.prefix, 0x01);
            },
        ),
        case(
            "low byte of entry 778's length prefix",
            &["tile/entries/003"],
            |copy| {
                let slot = bundle_slots(&read_bundle(copy, "tile/entries/003"))[10];
                xor_byte(&copy.join("tile/entries/003"), slot.prefix + 1, 0x01);
            },
        ),
        case(
            "first length prefix of the partial bundle",
            &[PARTIAL_BUNDLE],
            |copy| {
                xor_byte(&copy.join(PARTIAL_BUNDLE), 1, 0x04);
            },
        ),
        // Entries deleted, swapped, appended.
        case(
            "entry 562 deleted from bundle 2",
            &["tile/entries/002"],
            |copy| {
                rewrite_bundle(copy, "tile/entries/002", |entries| {
                    entries.remove(50);
                });
            },
        ),
        case(
            "entry 2816 deleted from the partial bundle",
            &[PARTIAL_BUNDLE],
            |copy| {
                rewrite_bundle(copy, PARTIAL_BUNDLE, |entries| {
                    entries.remove(0);
                });
            },
        ),
        case("entries 1030 and 1031 swapped", &["entry 1030"], |copy| {
            rewrite_bundle(copy, "tile/entries/004", |entries| entries.swap(6, 7));
        }),
        case("bundles 1 and 2 swapped", &["entry 256"], |copy| {
            let one = copy.join("tile/entries/001");
            let two = copy.join("tile/entries/002");
            let first = fs::read(&one).unwrap();
            fs::copy(&two, &one).unwrap();
            fs::write(&two, first).unwrap();
        }),
        case(
            "garbage after the last entry of bundle 6",
            &["tile/entries/006", "7 bytes after the last entry"],
            |copy| {
                let path = copy.join("tile/entries/006");
                let mut bytes = fs::read(&path).unwrap();
                bytes.extend_from_slice(b"garbage");
                fs::write(&path, bytes).unwrap();
            },
        ),
        case(
            "a well-formed entry 3000 appended to the partial bundle",
            &[PARTIAL_BUNDLE, "after the last entry"],
            |copy| {
                rewrite_bundle(copy, PARTIAL_BUNDLE, |entries| {
                    let extra = String::from_utf8(entries[183].clone())
                        .unwrap()
                        .replace("\"index\":2999,", "\"index\":3000,");
                    entries.push(extra.into_bytes());
                });
            },
        ),
        // The log truncated.
        case(
            "the last bundle deleted",
            &[PARTIAL_BUNDLE, "missing"],
            |copy| {
                fs::remove_file(copy.join(PARTIAL_BUNDLE)).unwrap();
            },
        ),
        case(
            "10 bytes cut off the last bundle",
            &[PARTIAL_BUNDLE, "entry 2999"],
            |copy| cut(&copy.join(PARTIAL_BUNDLE), 10),
        ),
        case(
            "the last entry cut off the last bundle",
            &[PARTIAL_BUNDLE, "entry 2999"],
            |copy| {
                let path = copy.join(PARTIAL_BUNDLE);
                let bytes = fs::read(&path).unwrap();
                let last = *bundle_slots(&bytes).last().unwrap();
                fs::write(&path, &bytes[..last.prefix]).unwrap();
            },
        ),
        case(
            "1 byte cut off full bundle 7",
            &["tile/entries/007"],
            |copy| {
                cut(&copy.join("tile/entries/007"), 1);
            },
        ),
        case("full bundle 7 emptied", &["tile/entries/007"], |copy| {
            fs::write(copy.join("tile/entries/007"), b"").unwrap();
        }),
        case(
            "no entry bundles at all",
            &["tile/entries/000", "missing"],
            |copy| {
                fs::remove_dir_all(copy.join("tile/entries")).unwrap();
            },
        ),
        // Checkpoints.
        case("size line of a retained checkpoint", &[&middle_name], {
            let path = middle_name.clone();
            move |copy| {
                let path = copy.join(&path);
                let note = fs::read_to_string(&path).unwrap();
                let edited =
                    note.replacen(&format!("\n{middle}\n"), &format!("\n{}\n", middle + 1), 1);
                assert_ne!(note, edited);
                fs::write(&path, edited).unwrap();
            }
        }),
        case("root of a retained checkpoint", &[&middle_name], {
            let path = middle_name.clone();
            move |copy| {
                let path = copy.join(&path);
                let note = fs::read_to_string(&path).unwrap();
                let root =
                    note.find(&format!("\n{middle}\n")).unwrap() + middle.to_string().len() + 2;
                xor_byte(&path, root + 3, 0x01);
            }
        }),
        case("signature of a retained checkpoint", &[&middle_name], {
            let path = middle_name.clone();
            move |copy| {
                let path = copy.join(&path);
                let length = fs::metadata(&path).unwrap().len() as usize;
                xor_byte(&path, length - 10, 0x01);
            }
        }),
        case(
            "size line of the latest checkpoint",
            &["FAILED: checkpoint:"],
            |copy| {
                let path = copy.join("checkpoint");
                let note = fs::read_to_string(&path).unwrap();
                fs::write(&path, note.replacen("\n3000\n", "\n2999\n", 1)).unwrap();
            },
        ),
        case(
            "the latest checkpoint deleted",
            &["FAILED: checkpoint: missing"],
            |copy| {
                fs::remove_file(copy.join("checkpoint")).unwrap();
            },
        ),
        case(
            "a genuine checkpoint filed under another size",
            &[
                &format!("checkpoints/{newer}"),
                &format!("says size {older}"),
            ],
            move |copy| {
                fs::copy(
                    copy.join(format!("checkpoints/{older}")),
                    copy.join(format!("checkpoints/{newer}")),
                )
                .unwrap();
            },
        ),
        case(
            "the latest checkpoint rolled back to an older genuine one",
            &["beyond the latest checkpoint"],
            move |copy| {
                fs::copy(
                    copy.join(format!("checkpoints/{older}")),
                    copy.join("checkpoint"),
                )
                .unwrap();
            },
        ),
        case(
            "a checkpoint file name that is not a tree size",
            &[&format!("checkpoints/0{older}")],
            move |copy| {
                fs::copy(
                    copy.join(format!("checkpoints/{older}")),
                    copy.join(format!("checkpoints/0{older}")),
                )
                .unwrap();
            },
        ),
        case(
            "no checkpoints directory",
            &["checkpoints", "missing"],
            |copy| {
                fs::remove_dir_all(copy.join("checkpoints")).unwrap();
            },
        ),
        // Hash tiles.
        case("hash 7 of tile/0/000", &["tile/0/000", "entry 7"], |copy| {
            xor_byte(&copy.join("tile/0/000"), 7 * 32 + 3, 0x80);
        }),
        case(
            "hash 255 of tile/0/010",
            &["tile/0/010", "entry 2815"],
            |copy| {
                xor_byte(&copy.join("tile/0/010"), 255 * 32 + 31, 0x01);
            },
        ),
        case(
            "hash 183 of the partial level-0 tile",
            &[PARTIAL_TILE, "entry 2999"],
            |copy| {
                xor_byte(&copy.join(PARTIAL_TILE), 183 * 32, 0x01);
            },
        ),
        case("hash 3 of the level-1 tile", &[LEVEL_1_TILE], |copy| {
            xor_byte(&copy.join(LEVEL_1_TILE), 3 * 32 + 9, 0x01);
        }),
        case("one hash cut off tile/0/004", &["tile/0/004"], |copy| {
            cut(&copy.join("tile/0/004"), 32);
        }),
        case("tile/0/005 deleted", &["tile/0/005", "missing"], |copy| {
            fs::remove_file(copy.join("tile/0/005")).unwrap();
        }),
        case(
            "the level-1 tile deleted",
            &[LEVEL_1_TILE, "missing"],
            |copy| {
                fs::remove_file(copy.join(LEVEL_1_TILE)).unwrap();
            },
        ),
        case(
            "a hash appended to the partial tile",
            &[PARTIAL_TILE],
            |copy| {
                let path = copy.join(PARTIAL_TILE);
                let mut bytes = fs::read(&path).unwrap();
                bytes.extend_from_slice(&[0; 32]);
                fs::write(&path, bytes).unwrap();
            },
        ),
        // Entries edited with every hash tile above them rewritten to match: only
        // the signed checkpoints can tell, and the first covering one is named.
        case(
            "entry 100 edited, tile/0/000 and the level-1 tile rewritten",
            &[&fixture.first_covering(100)],
            |copy| {
                edit_padding(copy, "tile/entries/000", 100);
                let entries = bundle_entries(&read_bundle(copy, "tile/entries/000"));
                let leaves: Vec<Hash> = entries.iter().map(|entry| leaf_hash(entry)).collect();
                set_hash(&copy.join("tile/0/000"), 100, leaves[100]);
                set_hash(&copy.join(LEVEL_1_TILE), 0, subtree_root(&leaves));
            },
        ),
        case(
            "entry 2916 edited, the partial tile rewritten",
            &[&fixture.first_covering(2916)],
            |copy| {
                edit_padding(copy, PARTIAL_BUNDLE, 100);
                let entries = bundle_entries(&read_bundle(copy, PARTIAL_BUNDLE));
                set_hash(&copy.join(PARTIAL_TILE), 100, leaf_hash(&entries[100]));
            },
        ),
        // The keys file.
        case(
            "the keys file deleted",
            &["FAILED: keys: missing"],
            |copy| {
                fs::remove_file(copy.join("keys")).unwrap();
            },
        ),
        case("garbage in the keys file", &["FAILED: keys:"], |copy| {
            fs::write(copy.join("keys"), "garbage\n").unwrap();
        }),
        case(
            "a second key in the keys file",
            &["FAILED: keys:"],
            move |copy| {
                fs::write(copy.join("keys"), format!("{key}\n{key}\n")).unwrap();
            },
        ),
    ]
}

#[test]
fn every_tampering_fails_verification_and_names_the_place() {
    let fixture = Fixture::new();

    // The untouched export verifies, so a failure below is the damage's doing.
    let (_tmp, copy) = fixture.copy();
    let run = verify(&copy, &fixture.key).ok();
    assert!(run.stdout.starts_with("ok: 3000 entries"), "{run}");

    let cases = cases(&fixture);
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<String, String>)>> = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let number = next.fetch_add(1, Ordering::Relaxed);
                let Some(case) = cases.get(number) else {
                    break;
                };
                let result = catch_unwind(AssertUnwindSafe(|| run_case(&fixture, case)))
                    .unwrap_or_else(|_| Err("the test's damage step panicked".to_owned()));
                results.lock().unwrap().push((number, result));
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|(number, _)| *number);
    assert_eq!(results.len(), cases.len());
    let mut failures = Vec::new();
    for (number, result) in results {
        let name = cases[number].name;
        match result {
            Ok(message) => eprintln!("ok   {name}: {message}"),
            Err(problem) => {
                eprintln!("FAIL {name}: {problem}");
                failures.push(format!("{name}: {problem}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} tamperings were not reported as required:\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );

    // The JSON report names the place too.
    let (_tmp, copy) = fixture.copy();
    edit_padding(&copy, "tile/entries/000", 100);
    let run = writ(&[
        &"ledger",
        &"verify",
        &copy,
        &"--key",
        &fixture.key,
        &"--json",
    ]);
    assert_eq!(run.code, Some(1), "{run}");
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("JSON");
    assert_eq!(report["ok"], false, "{run}");
    assert!(
        report["error"].as_str().unwrap().contains("entry 100"),
        "{run}"
    );
}
