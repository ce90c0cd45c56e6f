//! Criterion micro-benchmarks with paired names: `txn 8B/vista-mprotect`,
//! `txn 8B/rvm-rio-restore-flush`, `txn 8B/floor-noguard`, `debit-credit/vista-none`,
//! `debit-credit/sqlite-off`, ... Every engine of the build that this machine supports and
//! whose commits do not wait for the disk (`EngineSpec::flushes_to_disk`: `lmdb-sync`,
//! `sqlite-full`, `rvm-*-flush` on disk; the suite binary measures those), on a 64 MiB
//! synthetic segment and the debit-credit tables.
//!
//! `cargo bench -p benches --bench txn` (add `-- 'txn 8B'` to filter).

use benches::registry::{all_engines, OpenOptions};
use benches::workload::debit_credit::DebitCredit;
use benches::workload::synthetic::{human_bytes, Synthetic};
use benches::workload::{Scale, Workload};
use criterion::{criterion_group, criterion_main, Criterion};

fn transactions(c: &mut Criterion) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    for size in [8usize, 64, 4096] {
        let mut group = c.benchmark_group(format!("txn {}", human_bytes(size)));
        for spec in all_engines() {
            if spec.supported().is_err() || spec.flushes_to_disk {
                // Engines that fsync per commit take milliseconds; the suite binary covers them.
                continue;
            }
            let mut w = Synthetic::new(64 << 20, size);
            let layout = w.layout();
            let mut e = spec
                .open(OpenOptions {
                    layout: &layout,
                    scratch: scratch.path(),
                })
                .expect("open");
            group.bench_function(spec.name, |b| {
                b.iter(|| w.run_one(e.as_mut()).expect("txn"));
            });
        }
        group.finish();
    }
    let mut group = c.benchmark_group("debit-credit");
    for spec in all_engines() {
        if spec.supported().is_err() || spec.flushes_to_disk {
            continue;
        }
        let mut w = DebitCredit::new(Scale::Standard);
        let layout = w.layout();
        let mut e = spec
            .open(OpenOptions {
                layout: &layout,
                scratch: scratch.path(),
            })
            .expect("open");
        group.bench_function(spec.name, |b| {
            b.iter(|| w.run_one(e.as_mut()).expect("txn"));
        });
    }
    group.finish();
}

criterion_group!(benches, transactions);
criterion_main!(benches);
