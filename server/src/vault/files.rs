//! The vault's files in a data dir: `vault.sealed` (the sealed key ring) and, for
//! the embedded default, `vault.key` (the key file that opens it). Both are mode
//! 0600; the sealed ring is replaced atomically (temporary file, fsync, rename,
//! fsync of the directory), so a crash leaves the old ring or the new one.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use writ_ledger::checkpoint::LogSigner;
use writ_vault::seal::{parse_key_file, MAX_SEALED_LEN};
use writ_vault::{Key, KeyRing, SealedRing, Sealer};
use zeroize::Zeroizing;

/// The sealed key ring.
pub const SEALED_FILE: &str = "vault.sealed";
/// The key file of the embedded default's key-file sealer.
pub const KEY_FILE: &str = "vault.key";
/// The environment variable a passphrase-sealed vault is unsealed from at start.
pub const PASSPHRASE_ENV: &str = "WRIT_VAULT_PASSPHRASE";

pub fn sealed_path(data_dir: &Path) -> PathBuf {
    data_dir.join(SEALED_FILE)
}

pub fn key_file_path(data_dir: &Path) -> PathBuf {
    data_dir.join(KEY_FILE)
}

/// Refuses a secret file that group or others can read.
fn check_private(path: &Path) -> anyhow::Result<()> {
    let metadata =
        fs::metadata(path).with_context(|| format!("cannot read `{}`", path.display()))?;
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "`{}` has mode {mode:o}: group and others must not read it (chmod 600)",
            path.display()
        );
    }
    Ok(())
}

fn read_bounded(path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    writ_ledger::files::read_bounded(path, limit)
        .with_context(|| format!("cannot read `{}`", path.display()))
}

/// Reads and parses the sealed key ring of a data dir.
pub fn read_sealed(data_dir: &Path) -> anyhow::Result<SealedRing> {
    let path = sealed_path(data_dir);
    if !path.exists() {
        bail!(
            "`{}` is missing: this data dir has no vault (was it made by `writ init`?)",
            path.display()
        );
    }
    check_private(&path)?;
    let bytes = read_bounded(&path, MAX_SEALED_LEN as u64)?;
    SealedRing::decode(&bytes).with_context(|| format!("`{}`", path.display()))
}

/// Replaces the sealed key ring atomically.
pub fn write_sealed(data_dir: &Path, sealed: &SealedRing) -> anyhow::Result<()> {
    write_private_atomically(&sealed_path(data_dir), &sealed.encode())
}

/// Writes a file of mode 0600 under a temporary name, syncs it, renames it into
/// place and syncs the directory.
pub fn write_private_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("vault");
    let staging = dir.join(format!(".{name}.{:08x}.new", rand::random::<u32>()));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&staging, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if let Err(error) = result {
        let _ = fs::remove_file(&staging);
        return Err(error).with_context(|| format!("cannot write `{}`", path.display()));
    }
    Ok(())
}

/// Reads a key file (mode 0600 required).
pub fn read_key_file(path: &Path) -> anyhow::Result<Key> {
    check_private(path)?;
    let bytes = Zeroizing::new(read_bounded(path, 4096)?);
    let text =
        std::str::from_utf8(&bytes).with_context(|| format!("`{}` is not text", path.display()))?;
    parse_key_file(text).with_context(|| format!("`{}`", path.display()))
}

/// How a vault is opened when the server starts.
#[derive(Debug)]
pub enum UnsealSource {
    KeyFile(PathBuf),
    Passphrase(Zeroizing<String>),
}

/// The unseal source of a data dir at start: an explicit key file, else the data
/// dir's `vault.key`, else a passphrase in `WRIT_VAULT_PASSPHRASE`, else none (the
/// server starts sealed and waits for shares or a passphrase through the API).
///
/// A key file is only tried for a ring sealed by a key file: one left behind
/// after the ring was sealed anew by shares or a passphrase is ignored (and said
/// in the log) rather than stopping the start.
pub fn unseal_source(
    data_dir: &Path,
    key_file: Option<&Path>,
    sealer: &Sealer,
) -> Option<UnsealSource> {
    let default = key_file_path(data_dir);
    let candidate = key_file
        .map(Path::to_path_buf)
        .or_else(|| default.exists().then_some(default));
    if let Some(path) = candidate {
        if matches!(sealer, Sealer::KeyFile { .. }) {
            return Some(UnsealSource::KeyFile(path));
        }
        tracing::warn!(
            path = %path.display(),
            sealer = sealer.kind(),
            "ignoring a key file: the vault is no longer sealed by one; remove it"
        );
    }
    std::env::var(PASSPHRASE_ENV)
        .ok()
        .filter(|p| !p.is_empty())
        .map(|p| UnsealSource::Passphrase(Zeroizing::new(p)))
}

/// Opens a sealed ring with a source; returns the ring and its root key.
pub fn unseal_with(sealed: &SealedRing, source: &UnsealSource) -> anyhow::Result<(KeyRing, Key)> {
    match source {
        UnsealSource::KeyFile(path) => {
            let root = read_key_file(path)?;
            let ring = sealed
                .open_with_key_file(&root)
                .with_context(|| format!("cannot unseal the vault with `{}`", path.display()))?;
            Ok((ring, root))
        }
        UnsealSource::Passphrase(passphrase) => sealed
            .open_with_passphrase(passphrase.as_bytes())
            .with_context(|| {
                format!("cannot unseal the vault with the passphrase in {PASSPHRASE_ENV}")
            }),
    }
}

/// The ledger's signer kept in a ring.
pub fn ledger_signer(ring: &KeyRing) -> anyhow::Result<LogSigner> {
    let Some(key) = ring.ledger_key() else {
        bail!("the vault holds no ledger signing key");
    };
    LogSigner::from_signer_key_string(key.expose())
        .context("the ledger signing key in the vault is malformed")
}

/// For offline commands on a stopped data dir (`writ ledger export`): the ledger's
/// signer, from the vault opened with the data dir's key file or the passphrase
/// in the environment. A vault sealed by shares cannot be opened offline.
pub fn offline_ledger_signer(data_dir: &Path) -> anyhow::Result<LogSigner> {
    let sealed = read_sealed(data_dir)?;
    let Some(source) = unseal_source(data_dir, None, sealed.sealer()) else {
        bail!(
            "the ledger's key is sealed in the vault by {} and no unseal source is at hand: \
             export through the running server instead (`writ ledger verify --url`), or set {PASSPHRASE_ENV}",
            sealed.sealer().name()
        );
    };
    let (ring, _root) = unseal_with(&sealed, &source)?;
    ledger_signer(&ring)
}
