//! Per-transaction cost of vista: an empty transaction, and set_range + write + commit
//! of 8 B, 64 B, 1 KiB and 4 KiB at random offsets in a 64 MiB segment, for each
//! protection mode; an 8-byte read in a read-only and in a read-write transaction; and
//! a transaction of a two-segment `Group` that writes 8 B in one member or in both, beside
//! the same write in a plain transaction. Run: `cargo bench -p vista --bench vista`.
//!
//! The segment file lives in a temporary directory under the target dir (a real disk);
//! the memory image on `/dev/shm`. Writeback is manual, so no checkpoint runs during a
//! measurement: these are the costs on the transaction path itself.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vista::{Group, Options, Protection, Segment, Writeback};

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
    let dir = tempfile::tempdir_in(target_dir()).unwrap();
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

/// An 8-byte read at a random offset: a read-only transaction against a read-write one.
fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(target_dir()).unwrap();
    let mut g = c.benchmark_group("vista read");
    let seg = open(dir.path(), Protection::None);
    let mut rng = SmallRng::seed_from_u64(7);
    g.bench_function("8B/read-only", |b| {
        b.iter(|| {
            let off = rng.gen_range(0..SEGMENT - 8) & !7;
            black_box(seg.begin_read().unwrap().get::<u64>(off).unwrap())
        });
    });
    g.bench_function("8B/read-write", |b| {
        b.iter(|| {
            let off = rng.gen_range(0..SEGMENT - 8) & !7;
            let tx = seg.begin().unwrap();
            let v = tx.get::<u64>(off).unwrap();
            tx.commit().unwrap();
            black_box(v)
        });
    });
    g.finish();
}

/// What a transaction across segments costs: 8 B in a plain transaction, in a group
/// transaction that touches one member (no group record, no decision), and in one that
/// touches both (group records, the decision's `pwrite`, two commit stores).
fn groups(c: &mut Criterion) {
    let dir = tempfile::tempdir_in(target_dir()).unwrap();
    let opts = Options::new()
        .size(8 << 20)
        .protection(Protection::None)
        .writeback(Writeback::Manual)
        .cache_dir("/dev/shm");
    let members = (0..2)
        .map(|m| Segment::open(dir.path().join(format!("m{m}.vista")), &opts).expect("open"))
        .collect();
    let group = Group::open(dir.path().join("group.coord"), members, &opts).expect("group");
    let mut g = c.benchmark_group("vista group");
    let mut rng = SmallRng::seed_from_u64(7);
    let mut off = move || rng.gen_range(0..(8u64 << 20) - 8) & !7;
    g.bench_function("8B/plain", |b| {
        b.iter(|| {
            let mut tx = group.segment(0).begin().unwrap();
            tx.put(off(), &1u64).unwrap();
            tx.commit().unwrap();
        });
    });
    g.bench_function("8B/one member", |b| {
        b.iter(|| {
            let mut tx = group.begin().unwrap();
            tx.on(0).unwrap().put(off(), &1u64).unwrap();
            tx.commit().unwrap();
        });
    });
    g.bench_function("8B/both members", |b| {
        b.iter(|| {
            let mut tx = group.begin().unwrap();
            tx.on(0).unwrap().put(off(), &1u64).unwrap();
            tx.on(1).unwrap().put(off(), &1u64).unwrap();
            tx.commit().unwrap();
        });
    });
    g.finish();
    // The members are fenced now: the close's group checkpoint writes them back.
    group.close().expect("close");
}

fn target_dir() -> std::path::PathBuf {
    let base = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"),
        std::path::PathBuf::from,
    );
    std::fs::create_dir_all(&base).unwrap();
    base
}

criterion_group!(benches, bench, reads, groups);
criterion_main!(benches);
