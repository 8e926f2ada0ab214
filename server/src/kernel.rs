//! Creating and opening a data dir: the ledger, the state database (entities and API
//! keys), the policy files, and the bootstrap operator key.
//!
//! Layout of a data dir: `ledger.db/` and `ledger.pub` (the ledger and its verifier
//! key), `vault.sealed` (the sealed key ring, which holds the ledger's signing key and
//! the vault's KEKs), `vault.key` (the key file that unseals it, for the embedded
//! default only), `state.db/` (entities, API keys, secrets, leases), `policies/` and
//! `schemas/` (the policy set that is loaded and reloaded).

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use rand::rngs::OsRng;
use serde_json::{json, Map, Value};
use writ_ledger::checkpoint::LogSigner;
use writ_ledger::datadir::{default_origin, DataDir};
use writ_ledger::log::{Retention, SystemClock};
use writ_ledger::EntryDraft;
use writ_pdp::{Engine, LoadedPolicies, SledEntityStore};
use writ_vault::seal::key_file_sealer;
use writ_vault::{KeyRing, LedgerKey, SealedRing};

use crate::defaults;
use crate::identity::{ApiKeySecret, ApiKeyStore, Principal, PrincipalEntity, PrincipalKind};
use crate::state::REQUIRED_ENTITIES;
use crate::vault::files;

/// The sled database of entities and API keys, beside the ledger.
pub const STATE_DB: &str = "state.db";
/// Where `serve` writes the bootstrap key when it initialises a data dir itself.
pub const BOOTSTRAP_KEY_FILE: &str = "bootstrap-admin.key";
/// The principal of the bootstrap key.
pub const BOOTSTRAP_OPERATOR: &str = "bootstrap";

/// What `init` made.
#[derive(Debug)]
pub struct Initialised {
    pub verifier_key: String,
    pub admin_key: ApiKeySecret,
    pub admin_key_id: String,
    /// The key file that unseals the vault (the embedded default's sealer).
    pub vault_key_file: PathBuf,
}

/// Opens the state database with a small cache (entities and keys are small).
pub fn open_state_db(data_dir: &Path) -> anyhow::Result<sled::Db> {
    let path = data_dir.join(STATE_DB);
    sled::Config::new()
        .path(&path)
        .cache_capacity(16 * 1024 * 1024)
        .open()
        .with_context(|| format!("cannot open the state database `{}`", path.display()))
}

/// The entity store and the policy set of a data dir, as one engine.
pub fn open_engine(
    state: &sled::Db,
    policy_dir: &Path,
    schema_dir: &Path,
) -> anyhow::Result<Engine> {
    let policies = LoadedPolicies::load(policy_dir, schema_dir)?;
    let tree = state
        .open_tree("entities")
        .context("cannot open the entity store")?;
    let required: BTreeSet<String> = REQUIRED_ENTITIES.iter().map(|s| (*s).to_owned()).collect();
    let engine = Engine::open(policies, Box::new(SledEntityStore::new(tree)), required)?;
    Ok(engine)
}

/// Creates a data dir: the ledger and its key, the default policies and schema, the
/// seed entities, and one operator API key (returned, never stored in clear).
pub fn init(data_dir: &Path) -> anyhow::Result<Initialised> {
    let ledger_dir = DataDir::new(data_dir);
    if is_initialised(data_dir) {
        bail!("`{}` already holds a writ data dir", data_dir.display());
    }
    // The vault first: a ring holding the ledger's new signing key, sealed by a key
    // file. The ledger's database is stamped with that key afterwards, so a crash
    // leaves a vault without a ledger (refused by `init` and `serve` by name), never
    // a ledger whose key is nowhere.
    let signer = LogSigner::generate(&default_origin())?;
    let mut ring = KeyRing::generate(&mut OsRng, crate::unix_now_ms());
    let ledger_key = LedgerKey::new(signer.to_signer_key_string())
        .context("the ledger signing key is too long for the vault")?;
    ring.set_ledger_key(ledger_key);
    let (sealer, root, key_text) = key_file_sealer(&mut OsRng);
    let sealed = SealedRing::seal(&ring, &root, sealer, &mut OsRng)?;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(data_dir)
        .with_context(|| format!("cannot create `{}`", data_dir.display()))?;
    let vault_key_file = files::key_file_path(data_dir);
    files::write_private_atomically(&vault_key_file, key_text.as_bytes())?;
    files::write_sealed(data_dir, &sealed)?;
    let ring_id = ring.id().to_string();
    let verifier_key = ledger_dir.create_with_signer(signer)?;
    let policy_dir = data_dir.join("policies");
    let schema_dir = data_dir.join("schemas");
    write_files(&policy_dir, &defaults::POLICIES)?;
    write_files(&schema_dir, &defaults::SCHEMAS)?;

    let state = open_state_db(data_dir)?;
    let engine = open_engine(&state, &policy_dir, &schema_dir)?;
    let seed: Vec<Value> =
        serde_json::from_str(defaults::SEED_ENTITIES).context("the built-in seed entities")?;
    for entity in &seed {
        engine.upsert_entity(entity)?;
    }
    let missing = engine.missing_required();
    if !missing.is_empty() {
        bail!("the seed entities lack {}", missing.join(", "));
    }
    let operator = Principal::new(
        PrincipalEntity::new(PrincipalKind::Operator, BOOTSTRAP_OPERATOR)?,
        None,
    )?;
    let keys = ApiKeyStore::new(
        state
            .open_tree("apikeys")
            .context("cannot open the api key store")?,
    );
    let (record, secret) = keys.create(&operator, Some("bootstrap"), crate::unix_now_ms())?;
    state.flush().context("cannot flush the state database")?;

    // The ledger's first entries say what was made, with no secret in them.
    let signer = files::ledger_signer(&ring)?;
    let mut log = ledger_dir.open_log_with_signer(
        signer,
        Retention::default(),
        std::sync::Arc::new(SystemClock),
    )?;
    let policy_set = engine.snapshot().policies().digest().to_string();
    let mut initialised = Map::new();
    initialised.insert("verifier_key".into(), json!(verifier_key));
    initialised.insert("policy_set".into(), json!(policy_set));
    initialised.insert("seed_entities".into(), json!(seed.len()));
    let mut key_created = Map::new();
    key_created.insert("key_id".into(), json!(record.id.as_str()));
    key_created.insert("principal".into(), json!(operator.entity().to_string()));
    key_created.insert("key_workspace".into(), Value::Null);
    let mut vault_made = Map::new();
    vault_made.insert("sealer".into(), json!("key_file"));
    vault_made.insert("ring_id".into(), json!(ring_id));
    vault_made.insert("kek_version".into(), json!(1));
    let drafts = [
        EntryDraft {
            kind: "kernel.initialised".into(),
            actor: "writ".into(),
            workspace: "-".into(),
            fields: initialised,
        },
        EntryDraft {
            kind: "vault.initialised".into(),
            actor: "writ".into(),
            workspace: "-".into(),
            fields: vault_made,
        },
        EntryDraft {
            kind: "apikey.created".into(),
            actor: "writ".into(),
            workspace: "-".into(),
            fields: key_created,
        },
    ];
    let prepared = drafts
        .iter()
        .map(EntryDraft::prepare)
        .collect::<Result<Vec<_>, _>>()?;
    log.append_batch(&prepared)?;
    Ok(Initialised {
        verifier_key,
        admin_key_id: record.id.as_str().to_owned(),
        admin_key: secret,
        vault_key_file,
    })
}

fn write_files(dir: &Path, files: &[(&str, &str)]) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create `{}`", dir.display()))?;
    for (name, text) in files {
        let path = dir.join(name);
        fs::write(&path, text).with_context(|| format!("cannot write `{}`", path.display()))?;
    }
    Ok(())
}

/// Writes a secret to a new file of mode 0600; refuses to overwrite.
pub fn write_secret_file(path: &Path, secret: &str) -> anyhow::Result<PathBuf> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create `{}` (it must not exist yet)", path.display()))?;
    let written = file
        .write_all(secret.as_bytes())
        .and_then(|()| file.write_all(b"\n"))
        .and_then(|()| file.sync_all());
    if let Err(error) = written {
        drop(file);
        // A partial secret file is useless; failing to remove it changes nothing.
        let _ = fs::remove_file(path);
        return Err(error).with_context(|| format!("cannot write `{}`", path.display()));
    }
    Ok(path.to_path_buf())
}

/// Whether a data dir has been initialised.
pub fn is_initialised(data_dir: &Path) -> bool {
    DataDir::new(data_dir).exists()
        || data_dir.join(STATE_DB).exists()
        || files::sealed_path(data_dir).exists()
}
