//! Criterion micro-benchmarks with paired names: `txn 8B/vista-mprotect`,
//! `txn 8B/rvm-rio-restore-flush`, `txn 8B/floor-noguard`, `debit-credit/vista-none`,
//! `debit-credit/sqlite-off`, ... Every engine of the build that this machine supports and
//! whose commits do not wait for the disk (`EngineSpec::flushes_to_disk`: `lmdb-sync`,
//! `sqlite-full`, `rvm-*-flush` on disk; the suite binary measures those), on a 64 MiB
//! synthetic segment and the debit-credit tables.
//!
//! `cargo bench -p benches --bench txn` (add `-- 'txn 8B'` to filter).

use std::path::Path;

use benches::engine::Engine;
use benches::registry::{all_engines, EngineSpec, OpenOptions};
use benches::workload::debit_credit::DebitCredit;
use benches::workload::synthetic::{human_bytes, Synthetic};
use benches::workload::{Scale, Workload};
use criterion::{criterion_group, criterion_main, Criterion};

/// Benchmarks `spec` on the workload `make` builds. The engine is opened (and the tables
/// loaded) only when criterion's filter selects the benchmark, so `-- 'txn 8B/vista-none'`
/// does not pay for opening every other engine.
fn bench(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    spec: &EngineSpec,
    scratch: &Path,
    make: impl Fn() -> Box<dyn Workload>,
) {
    if spec.supported().is_err() || spec.flushes_to_disk {
        // Engines that fsync per commit take milliseconds; the suite binary covers them.
        return;
    }
    let mut state: Option<(Box<dyn Workload>, Box<dyn Engine>)> = None;
    group.bench_function(spec.name, |b| {
        let (w, e) = state.get_or_insert_with(|| {
            let mut w = make();
            let layout = w.layout();
            let mut e = spec
                .open(OpenOptions {
                    layout: &layout,
                    scratch,
                })
                .expect("open");
            w.load(e.as_mut()).expect("load");
            (w, e)
        });
        b.iter(|| w.run_one(e.as_mut()).expect("txn"));
    });
}

fn transactions(c: &mut Criterion) {
    let scratch = tempfile::tempdir().expect("scratch dir");
    let engines = all_engines();
    for size in [8usize, 64, 4096] {
        let mut group = c.benchmark_group(format!("txn {}", human_bytes(size)));
        for spec in &engines {
            bench(&mut group, spec, scratch.path(), || {
                Box::new(Synthetic::new(64 << 20, size))
            });
        }
        group.finish();
    }
    let mut group = c.benchmark_group("debit-credit");
    for spec in &engines {
        bench(&mut group, spec, scratch.path(), || {
            Box::new(DebitCredit::new(Scale::Standard))
        });
    }
    group.finish();
}

criterion_group!(benches, transactions);
criterion_main!(benches);
