//! Per-transaction cost of vista: an empty transaction, and set_range + write + commit
//! of 8 B, 64 B, 1 KiB and 4 KiB at random offsets in a 64 MiB segment, for each
//! protection mode. Run: `cargo bench -p vista`.
//!
//! The segment file lives in a temporary directory under the target dir (a real disk);
//! the memory image on `/dev/shm`. Writeback is manual, so no checkpoint runs during a
//! measurement: these are the costs on the transaction path itself.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vista::{Options, Protection, Segment, Writeback};

const SEGMENT: u64 = 64 << 20;

fn modes() -> Vec<(&'static str, Protection)> {
    let mut m = vec![
        ("none", Protection::None),
        ("mprotect", Protection::Mprotect),
    ];
    if rio_cache::pkeys_supported() {
        m.push(("pkey", Protection::Pkey));
    } else {
        eprintln!("memory protection keys unavailable here: skipping the pkey mode");
    }
    m
}

fn open(dir: &std::path::Path, protection: Protection) -> Segment {
    let opts = Options::new()
        .size(SEGMENT)
        .protection(protection)
        .writeback(Writeback::Manual)
        .cache_dir("/dev/shm");
    Segment::open(dir.join(format!("bench-{protection:?}.vista")), &opts).expect("open")
}

fn bench(c: &mut Criterion) {
    let base = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(base).unwrap();
    let mut g = c.benchmark_group("vista txn");
    for (name, protection) in modes() {
        let seg = open(dir.path(), protection);
        g.bench_function(BenchmarkId::new("empty", name), |b| {
            b.iter(|| seg.begin().unwrap().commit().unwrap());
        });
        for size in [8usize, 64, 1024, 4096] {
            let data = vec![0xA5u8; size];
            let mut rng = SmallRng::seed_from_u64(7);
            g.bench_function(BenchmarkId::new(format!("{size}B"), name), |b| {
                b.iter(|| {
                    let off = rng.gen_range(0..SEGMENT - size as u64) & !7;
                    let mut tx = seg.begin().unwrap();
                    tx.write(off, black_box(&data)).unwrap();
                    tx.commit().unwrap();
                });
            });
        }
        let path = seg.path().to_owned();
        drop(seg);
        let _ = rio_cache::remove(&path, &rio_cache::RioOptions::new().cache_dir("/dev/shm"));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
