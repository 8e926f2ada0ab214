//! Vault micro-benchmarks (criterion): the pure cost of sealing a value, opening
//! it, and rewrapping one data key, and the store-backed put and rewrap batches
//! that `docs/PERFORMANCE.md` reports against the vault issue's targets.
//!
//! `cargo bench -p writ-vault --bench vault`

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rand::rngs::OsRng;
use writ_vault::envelope;
use writ_vault::{
    rewrap_batch, Binding, KeyRing, Purpose, SecretName, SecretStore, SecretVersion,
    SledSecretStore, Workspace,
};

const VALUE: &[u8] = b"postgres://app:correct-horse-battery-staple@db.internal:5432/app";

fn envelope_costs(c: &mut Criterion) {
    let mut ring = KeyRing::generate(&mut OsRng, 0);
    let workspace = Workspace::new("acme").unwrap_or_else(|_| unreachable!());
    let name = SecretName::new("prod/db").unwrap_or_else(|_| unreachable!());
    let purpose = Purpose::secret_value();
    let binding = Binding {
        workspace: &workspace,
        name: &name,
        version: SecretVersion::FIRST,
        purpose: &purpose,
    };
    let sealed = envelope::seal(&ring, binding, VALUE, &mut OsRng).unwrap_or_default();

    let mut group = c.benchmark_group("envelope");
    group.throughput(Throughput::Elements(1));
    group.bench_function("seal_64B", |b| {
        b.iter(|| envelope::seal(&ring, binding, black_box(VALUE), &mut OsRng))
    });
    group.bench_function("open_64B", |b| {
        b.iter(|| envelope::open(&ring, binding, black_box(&sealed)))
    });
    let _ = ring.rotate(&mut OsRng, 1);
    group.bench_function("rewrap_one_dek", |b| {
        b.iter(|| envelope::rewrap(&ring, binding, black_box(&sealed), &mut OsRng))
    });
    group.finish();
}

fn store_costs(c: &mut Criterion) {
    let Ok(dir) = tempfile::tempdir() else { return };
    let Ok(db) = sled::open(dir.path().join("db")) else {
        return;
    };
    let Ok(tree) = db.open_tree("secrets") else {
        return;
    };
    let store = SledSecretStore::new(tree);
    let mut ring = KeyRing::generate(&mut OsRng, 0);
    let workspace = Workspace::new("acme").unwrap_or_else(|_| unreachable!());
    let purpose = Purpose::secret_value();

    // Fill with 10,000 secrets under KEK 1.
    const SECRETS: usize = 10_000;
    let names: Vec<SecretName> = (0..SECRETS)
        .filter_map(|i| SecretName::new(format!("svc/secret-{i:05}")).ok())
        .collect();
    let put = |ring: &KeyRing, name: &SecretName| {
        store.put_new_version(&workspace, name, 0, &|version| {
            envelope::seal(
                ring,
                Binding {
                    workspace: &workspace,
                    name,
                    version,
                    purpose: &purpose,
                },
                VALUE,
                &mut OsRng,
            )
        })
    };
    for name in &names {
        let _ = put(&ring, name);
    }

    let mut group = c.benchmark_group("store");
    group.measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    let mut cycle = names.iter().cycle();
    group.bench_function("put_new_version", |b| {
        b.iter(|| cycle.next().map(|name| put(&ring, name)))
    });

    // One full rewrap pass over every stored version, after a rotation: the
    // throughput figure is DEKs rewrapped per second.
    let total = store
        .wrapped_by_version()
        .map(|c| c.values().sum::<u64>())
        .unwrap_or(0);
    group.throughput(Throughput::Elements(total));
    group.sample_size(10);
    group.bench_function("rewrap_all_batches_of_1000", |b| {
        b.iter_batched(
            || {
                let _ = ring.rotate(&mut OsRng, 1);
                ring.clone()
            },
            |current| {
                let mut after = None;
                let mut done = 0usize;
                while let Ok(batch) =
                    rewrap_batch(&store, &current, &purpose, after.as_ref(), 1000, &mut OsRng)
                {
                    done += batch.rewrapped;
                    match batch.next {
                        Some(next) => after = Some(next),
                        None => break,
                    }
                }
                done
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, envelope_costs, store_costs);
criterion_main!(benches);
