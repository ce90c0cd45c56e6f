//! Runs one YCSB operation on vista's `PHashMap` over and over and nothing else, for
//! profilers (the cost of one read or one update, with the workload's 100-byte values):
//!
//! ```sh
//! cargo build --release -p benches --example ycsb_profile
//! # instructions per operation: the difference of two runs over the difference of counts
//! valgrind --tool=callgrind target/release/examples/ycsb_profile read 100000
//! valgrind --tool=callgrind target/release/examples/ycsb_profile read 200000
//! ```
//!
//! Arguments: `read` (the benchmark's read: a read-only transaction), `read-rw` (the same
//! lookup in a read-write transaction, `Segment::transaction`) or `update`, the
//! operation count, and optionally the records (default 100,000). Keys are visited in a fixed pseudo-random order. `vista-none`'s
//! configuration (no guard, manual writeback).

use anyhow::{Context, Result};
use benches::ycsb::vista::{Config, VistaStore};
use benches::ycsb::{value, Store};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [op, count, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: ycsb_profile (read|read-rw|update) COUNT [RECORDS]");
    };
    let count: u64 = count.parse().context("COUNT")?;
    let records: u64 = rest
        .first()
        .map_or(Ok(100_000), |m| m.parse())
        .context("RECORDS")?;
    let store = VistaStore::open(&std::env::temp_dir(), Config::None, records)?;
    let (seg, map) = (store.segment(), store.map());
    let mut client = store.client(0)?;
    let mut out = value(0, 0);
    let mut key = 1u64;
    let start = std::time::Instant::now();
    for i in 0..count {
        key = key
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
            % records;
        match op.as_str() {
            "read" => {
                client.read(key, &mut out)?;
            }
            "read-rw" => {
                out = seg
                    .transaction(|tx| map.get(tx, &key))?
                    .context("a loaded key is missing")?;
            }
            "update" => {
                client.update(key, &value(key, i))?;
            }
            other => anyhow::bail!("unknown operation {other}"),
        }
    }
    let elapsed = start.elapsed();
    eprintln!(
        "vista-none {op}: {count} operations, {:.1} ns each",
        elapsed.as_nanos() as f64 / count.max(1) as f64
    );
    Ok(())
}
