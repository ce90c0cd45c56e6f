//! Per-transaction cost of LRVM: 8 B, 64 B, 1 KiB and 4 KiB ranges, in every combination
//! of restore mode and commit mode, with the log on the normal disk and on `/dev/shm`
//! (the paper's "RVM on Rio": the log write and its sync cost only a memory copy).
//!
//! Every `Flush` commit really writes its redo record (new values) and `fdatasync`s the
//! log; `NoFlush` commits are forced when the 64 KiB buffer fills. Epoch truncation runs
//! in the background as in normal use (64 MiB log, 50 % threshold).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use lrvm::{create_log, CommitMode, CreateMode, MapOptions, Options, RegionSpec, RestoreMode, Rvm};
use std::path::{Path, PathBuf};

const REGION: u64 = 1 << 20;
const LOG: u64 = 64 << 20;

fn places() -> Vec<(&'static str, PathBuf)> {
    let mut v = Vec::new();
    // Not /tmp: it may be tmpfs. /var/tmp is on the root disk on the reference machine.
    for (name, base) in [("disk", "/var/tmp"), ("shm", "/dev/shm")] {
        if Path::new(base).is_dir() {
            v.push((name, PathBuf::from(base)));
        }
    }
    v
}

fn bench(c: &mut Criterion) {
    for (place, base) in places() {
        let dir = tempfile::tempdir_in(&base).expect("tempdir");
        let log = dir.path().join("log");
        let data = dir.path().join("data");
        create_log(&log, LOG, CreateMode::CreateNew).expect("create_log");
        let mut rvm = Rvm::initialize(Options::new(&log)).expect("initialize");
        let region = rvm
            .map(
                &RegionSpec::new(&data, 0, REGION),
                MapOptions::create_or_extend(),
            )
            .expect("map");
        let mut group = c.benchmark_group(format!("txn/{place}"));
        for size in [8u64, 64, 1024, 4096] {
            group.throughput(Throughput::Bytes(size));
            for (rname, restore) in [
                ("restore", RestoreMode::Restore),
                ("norestore", RestoreMode::NoRestore),
            ] {
                for (cname, commit) in [
                    ("flush", CommitMode::Flush),
                    ("noflush", CommitMode::NoFlush),
                ] {
                    let id = BenchmarkId::new(format!("{rname}-{cname}"), format!("{size}B"));
                    let mut i = 0u64;
                    group.bench_function(id, |b| {
                        b.iter(|| {
                            let off = (i * 4096 + (i % 7) * 8) % (REGION - size);
                            i += 1;
                            let t = rvm.begin_transaction(restore).expect("begin");
                            let buf = rvm.set_range(t, region, off, size).expect("set_range");
                            buf.fill(i as u8);
                            rvm.end_transaction(t, commit).expect("end");
                        });
                    });
                    rvm.flush().expect("flush");
                }
            }
        }
        group.finish();
        rvm.close().expect("close");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
