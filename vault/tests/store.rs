//! The sled secret store, and rotation plus rewrap under concurrent reads.
#![cfg(test)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use rand::rngs::OsRng;
use writ_vault::envelope;
use writ_vault::{
    rewrap_batch, Binding, KeyRing, Purpose, SecretId, SecretName, SecretStore, SecretVersion,
    SledSecretStore, StoredVersion, VaultError, Workspace,
};

fn store() -> (tempfile::TempDir, SledSecretStore) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    (dir, SledSecretStore::new(db.open_tree("secrets").unwrap()))
}

fn put(
    store: &SledSecretStore,
    ring: &KeyRing,
    ws: &Workspace,
    name: &SecretName,
    value: &[u8],
) -> SecretVersion {
    let purpose = Purpose::secret_value();
    store
        .put_new_version(ws, name, 7, &|version| {
            envelope::seal(
                ring,
                Binding {
                    workspace: ws,
                    name,
                    version,
                    purpose: &purpose,
                },
                value,
                &mut OsRng,
            )
        })
        .unwrap()
}

fn reveal(store: &SledSecretStore, ring: &KeyRing, id: &SecretId) -> Result<Vec<u8>, VaultError> {
    let purpose = Purpose::secret_value();
    let binding = Binding {
        workspace: &id.workspace,
        name: &id.name,
        version: id.version,
        purpose: &purpose,
    };
    match store.get(id)? {
        Some(StoredVersion::Live { envelope, .. }) => {
            Ok(envelope::open(ring, binding, &envelope)?.expose().to_vec())
        }
        Some(StoredVersion::Destroyed { .. }) => Err(VaultError::Destroyed {
            name: id.name.to_string(),
            version: id.version.get(),
        }),
        None => Err(VaultError::NoSuchVersion {
            name: id.name.to_string(),
            version: id.version.get(),
        }),
    }
}

#[test]
fn versions_count_up_and_destroy_shreds_one() {
    let (_dir, store) = store();
    let ring = KeyRing::generate(&mut OsRng, 0);
    let acme = Workspace::new("acme").unwrap();
    let globex = Workspace::new("globex").unwrap();
    let db = SecretName::new("db").unwrap();
    let db2 = SecretName::new("db2").unwrap();

    assert_eq!(put(&store, &ring, &acme, &db, b"one").get(), 1);
    assert_eq!(put(&store, &ring, &acme, &db, b"two").get(), 2);
    assert_eq!(put(&store, &ring, &acme, &db2, b"other").get(), 1);
    assert_eq!(put(&store, &ring, &globex, &db, b"theirs").get(), 1);

    let v = |n| SecretVersion::new(n).unwrap();
    let id = |ws: &Workspace, name: &SecretName, n| SecretId {
        workspace: ws.clone(),
        name: name.clone(),
        version: v(n),
    };
    assert_eq!(reveal(&store, &ring, &id(&acme, &db, 1)).unwrap(), b"one");
    assert_eq!(store.latest_live(&acme, &db).unwrap().unwrap().0, v(2));

    let listing = store.list(&acme).unwrap();
    assert_eq!(
        listing.keys().map(|n| n.as_str()).collect::<Vec<_>>(),
        ["db", "db2"]
    );
    assert_eq!(listing[&db].len(), 2);
    assert_eq!(store.list(&globex).unwrap().len(), 1);

    store.destroy(&id(&acme, &db, 2), 99).unwrap();
    let listing = store.list(&acme).unwrap();
    assert_eq!(listing[&db][1].destroyed_unix_ms, Some(99));
    assert_eq!(listing[&db][1].kek, None);
    assert!(matches!(
        store.get(&id(&acme, &db, 2)).unwrap(),
        Some(StoredVersion::Destroyed { .. })
    ));
    assert!(matches!(
        reveal(&store, &ring, &id(&acme, &db, 2)),
        Err(VaultError::Destroyed { .. })
    ));
    assert!(matches!(
        store.destroy(&id(&acme, &db, 2), 100),
        Err(VaultError::Destroyed { .. })
    ));
    assert!(matches!(
        store.destroy(&id(&acme, &db, 9), 100),
        Err(VaultError::NoSuchVersion { .. })
    ));
    assert_eq!(
        store.latest_live(&acme, &db).unwrap().unwrap().0,
        v(1),
        "latest live skips the destroyed"
    );

    // A destroyed version number is never given again.
    assert_eq!(put(&store, &ring, &acme, &db, b"three").get(), 3);
    assert_eq!(store.wrapped_by_version().unwrap().values().sum::<u64>(), 4);
}

#[test]
fn a_failed_seal_writes_nothing() {
    let (_dir, store) = store();
    let acme = Workspace::new("acme").unwrap();
    let db = SecretName::new("db").unwrap();
    let error = store
        .put_new_version(&acme, &db, 0, &|_| {
            Err(VaultError::ValueTooLarge { len: 1, max: 0 })
        })
        .unwrap_err();
    assert!(matches!(error, VaultError::ValueTooLarge { .. }));
    assert!(store.list(&acme).unwrap().is_empty());
    let ring = KeyRing::generate(&mut OsRng, 0);
    assert_eq!(
        put(&store, &ring, &acme, &db, b"x").get(),
        1,
        "no version number was used up"
    );
}

#[test]
fn rewrap_during_concurrent_reads_fails_no_read() {
    let (_dir, store) = store();
    let store = Arc::new(store);
    let ring = Arc::new(RwLock::new(KeyRing::generate(&mut OsRng, 0)));
    let acme = Workspace::new("acme").unwrap();
    let mut ids = Vec::new();
    for i in 0..600 {
        let name = SecretName::new(format!("s{i}")).unwrap();
        let version = put(
            &store,
            &ring.read().unwrap(),
            &acme,
            &name,
            format!("value {i}").as_bytes(),
        );
        ids.push((
            SecretId {
                workspace: acme.clone(),
                name,
                version,
            },
            format!("value {i}"),
        ));
    }
    let ids = Arc::new(ids);
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..3)
        .map(|offset| {
            let (store, ring, ids, stop, reads, failures) = (
                store.clone(),
                ring.clone(),
                ids.clone(),
                stop.clone(),
                reads.clone(),
                failures.clone(),
            );
            std::thread::spawn(move || {
                let mut i = offset * 101;
                while !stop.load(Ordering::Relaxed) {
                    let (id, expected) = &ids[i % ids.len()];
                    let snapshot = || Some(Arc::new(ring.read().unwrap().clone()));
                    let read = writ_vault::open_version(
                        store.as_ref(),
                        &snapshot,
                        id,
                        &Purpose::secret_value(),
                    );
                    match read.map(|value| value.expose().to_vec()) {
                        Ok(value) if value == expected.as_bytes() => {}
                        _ => {
                            failures.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    reads.fetch_add(1, Ordering::Relaxed);
                    i += 1;
                }
            })
        })
        .collect();

    let purpose = Purpose::secret_value();
    for _round in 0..3 {
        ring.write().unwrap().rotate(&mut OsRng, 1).unwrap();
        let current = ring.read().unwrap().clone();
        let mut after: Option<SecretId> = None;
        let mut rewrapped = 0;
        loop {
            let batch = rewrap_batch(
                store.as_ref(),
                &current,
                &purpose,
                after.as_ref(),
                50,
                &mut OsRng,
            )
            .unwrap();
            assert!(batch.failed.is_empty(), "{:?}", batch.failed);
            rewrapped += batch.rewrapped;
            match batch.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(rewrapped, ids.len());
        let usage = store.wrapped_by_version().unwrap();
        assert_eq!(usage.len(), 1, "everything is under the primary: {usage:?}");
        let primary = current.primary_version();
        ring.write().unwrap().retire_below(primary, &usage).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }
    assert!(reads.load(Ordering::Relaxed) > 100, "the readers ran");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no read failed during rotation and rewrap"
    );
}

#[test]
fn reserved_versions_are_never_given_twice() {
    let (_dir, store) = store();
    let ring = KeyRing::generate(&mut OsRng, 0);
    let acme = Workspace::new("acme").unwrap();
    let db = SecretName::new("db").unwrap();
    let purpose = Purpose::secret_value();
    let one = store.reserve_version(&acme, &db).unwrap();
    let two = store.reserve_version(&acme, &db).unwrap();
    assert_eq!((one.get(), two.get()), (1, 2));
    let id = SecretId {
        workspace: acme.clone(),
        name: db.clone(),
        version: two,
    };
    let binding = Binding {
        workspace: &acme,
        name: &db,
        version: two,
        purpose: &purpose,
    };
    let sealed = envelope::seal(&ring, binding, b"v2", &mut OsRng).unwrap();
    store.insert_version(&id, 5, &sealed).unwrap();
    assert!(
        store.insert_version(&id, 6, &sealed).is_err(),
        "a stored version is never overwritten"
    );
    assert_eq!(reveal(&store, &ring, &id).unwrap(), b"v2");
    // Version 1 was reserved and never written: a gap, not a record.
    let gap = SecretId {
        workspace: acme.clone(),
        name: db.clone(),
        version: one,
    };
    assert!(store.get(&gap).unwrap().is_none());
    assert_eq!(put(&store, &ring, &acme, &db, b"v3").get(), 3);
}
