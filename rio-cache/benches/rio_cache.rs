//! rio-cache micro-benchmarks.
//!
//! - `window/<placement>/<mode>`: open a write window, store 8 bytes, close it, in a
//!   64 MiB cache whose memory image is on /dev/shm; at a random page each time, or
//!   always the same page. Modes: none, mprotect, pkey (where the CPU has them).
//! - `checkpoint/<N> MiB/rio`: dirty N MiB (untimed), then `checkpoint()` (journal
//!   write and fsync, commit and fsync, install and fsync, clear and fsync), against
//!   `checkpoint/<N> MiB/write+fsync`: one sequential write of the same bytes to a file
//!   in the same directory and one fsync, the floor any durable write-back pays. Both
//!   files live under the target dir (on disk, not tmpfs).
//!
//! ```text
//! cargo bench -p rio-cache --bench rio_cache -- --warm-up-time 1 --measurement-time 3
//! ```

use std::fs::OpenOptions;
use std::hint::black_box;
use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rio_cache::{Protection, RioCache, RioOptions, Writeback, PAGE_SIZE};

const CACHE: u64 = 64 << 20;
const PAGE: u64 = PAGE_SIZE as u64;

fn modes() -> Vec<(&'static str, Protection)> {
    let mut m = vec![
        ("none", Protection::None),
        ("mprotect", Protection::Mprotect),
        ("alias", Protection::Alias),
    ];
    if rio_cache::pkeys_supported() {
        m.push(("pkey", Protection::Pkey));
    } else {
        eprintln!("note: no memory protection keys on this machine; pkey not measured");
    }
    m
}

fn shm_dir() -> tempfile::TempDir {
    tempfile::tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .expect("tempdir")
}

fn disk_dir() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir on disk")
}

fn windows(crit: &mut Criterion) {
    let mut g = crit.benchmark_group("window");
    for (name, mode) in modes() {
        let shm = shm_dir();
        let disk = disk_dir();
        let opts = RioOptions::new()
            .size(CACHE)
            .cache_dir(shm.path())
            .protection(mode)
            .writeback(Writeback::Manual)
            .checkpoint_on_close(false);
        let mut cache = RioCache::open(disk.path().join("bench.rio"), &opts).unwrap();
        // Random page offsets (xorshift), precomputed so the generator is not measured.
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        let offsets: Vec<u64> = (0..4096)
            .map(|_| {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                (rng % (CACHE / PAGE)) * PAGE + 64
            })
            .collect();
        let mut i = 0usize;
        g.bench_function(BenchmarkId::new("random page", name), |b| {
            b.iter(|| {
                i = (i + 1) % offsets.len();
                let mut w = cache.window(offsets[i], 8).unwrap();
                w.copy_from_slice(&black_box(i as u64).to_le_bytes());
            });
        });
        g.bench_function(BenchmarkId::new("same page", name), |b| {
            b.iter(|| {
                let mut w = cache.window(4096 + 64, 8).unwrap();
                w.copy_from_slice(&black_box(7u64).to_le_bytes());
            });
        });
        drop(cache);
    }
    g.finish();
}

fn checkpoints(crit: &mut Criterion) {
    let mut g = crit.benchmark_group("checkpoint");
    g.sample_size(10);
    for mib in [1u64, 8] {
        let bytes = mib << 20;
        g.throughput(Throughput::Bytes(bytes));
        let shm = shm_dir();
        let disk = disk_dir();
        let opts = RioOptions::new()
            .size(CACHE)
            .cache_dir(shm.path())
            .protection(Protection::Auto)
            .writeback(Writeback::Manual)
            .checkpoint_on_close(false);
        let mut cache = RioCache::open(disk.path().join("bench.rio"), &opts).unwrap();
        let mut round = 0u8;
        g.bench_function(BenchmarkId::new(format!("{mib} MiB"), "rio"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round = round.wrapping_add(1);
                    cache.window(0, bytes).unwrap().fill(round);
                    let t = Instant::now();
                    cache.checkpoint().unwrap();
                    total += t.elapsed();
                }
                total
            });
        });
        drop(cache);

        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(disk.path().join("plain.bin"))
            .unwrap();
        let mut buf = vec![0u8; bytes as usize];
        g.bench_function(BenchmarkId::new(format!("{mib} MiB"), "write+fsync"), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    round = round.wrapping_add(1);
                    buf.fill(round);
                    let t = Instant::now();
                    file.write_all_at(&buf, 0).unwrap();
                    file.sync_data().unwrap();
                    total += t.elapsed();
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, windows, checkpoints);
criterion_main!(benches);
