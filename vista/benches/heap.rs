//! The persistent heap's alloc+free pairs: a transaction that allocates and writes a
//! block, then one that frees it, for 16 B, 256 B and 4 KiB, against `Box` (the floor:
//! no persistence, no transaction). Run: `cargo bench -p vista --bench heap`. PMDK's
//! side and the churn workload are in `benches` (`--bin heap`).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use vista::{Options, Segment, Writeback};

fn pair<const N: usize>(c: &mut Criterion, seg: &Segment) {
    let mut g = c.benchmark_group("heap alloc+free");
    let value = [7u8; N];
    g.bench_function(BenchmarkId::new(format!("{N}B"), "vista"), |b| {
        b.iter(|| {
            let mut tx = seg.begin().unwrap();
            let p = tx.alloc(black_box(value)).unwrap();
            tx.commit().unwrap();
            let mut tx = seg.begin().unwrap();
            tx.free(p).unwrap();
            tx.commit().unwrap();
        });
    });
    g.bench_function(BenchmarkId::new(format!("{N}B"), "box"), |b| {
        b.iter(|| drop(black_box(Box::new(black_box(value)))));
    });
    g.finish();
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir_in("/dev/shm").unwrap();
    let opts = Options::new()
        .size(16 << 20)
        .writeback(Writeback::Manual)
        .cache_dir(dir.path());
    let seg = Segment::open(dir.path().join("heap.vista"), &opts).unwrap();
    pair::<16>(c, &seg);
    pair::<256>(c, &seg);
    pair::<4096>(c, &seg);
}

criterion_group!(benches, bench);
criterion_main!(benches);
