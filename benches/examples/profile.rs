//! Runs one engine on one synthetic size (or `debit-credit` / `order-entry`) for a given
//! number of transactions and nothing else, for profilers:
//!
//! ```sh
//! cargo build --release -p benches --example profile
//! perf record -e cpu-clock target/release/examples/profile vista-none 8 2000000
//! # instructions per transaction: the difference of two runs over the difference of counts
//! valgrind --tool=callgrind target/release/examples/profile vista-none 8 100000
//! valgrind --tool=callgrind target/release/examples/profile vista-none 8 200000
//! ```
//!
//! Arguments: engine name, workload (bytes per synthetic transaction, or a table workload's
//! name), transaction count, and optionally the synthetic segment in MiB (default 64).

use anyhow::{Context, Result};
use benches::registry::{engines, OpenOptions};
use benches::workload::debit_credit::DebitCredit;
use benches::workload::order_entry::OrderEntry;
use benches::workload::synthetic::Synthetic;
use benches::workload::{Scale, Workload};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [engine, workload, count, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: profile ENGINE (BYTES|debit-credit|order-entry) COUNT [SEGMENT_MIB]");
    };
    let count: u64 = count.parse().context("COUNT")?;
    let mib: u64 = rest
        .first()
        .map_or(Ok(64), |m| m.parse())
        .context("SEGMENT_MIB")?;
    let mut w: Box<dyn Workload> = match workload.as_str() {
        "debit-credit" => Box::new(DebitCredit::new(Scale::Standard)),
        "order-entry" => Box::new(OrderEntry::new(Scale::Standard)),
        n => Box::new(Synthetic::new(mib << 20, n.parse().context("BYTES")?)),
    };
    let spec = &engines(std::slice::from_ref(engine))?[0];
    spec.supported()
        .map_err(|r| anyhow::anyhow!("{engine} cannot run here: {r}"))?;
    let scratch = std::env::temp_dir();
    let layout = w.layout();
    let mut e = spec.open(OpenOptions {
        layout: &layout,
        scratch: &scratch,
    })?;
    w.load(e.as_mut())?;
    let start = std::time::Instant::now();
    for _ in 0..count {
        w.run_one(e.as_mut())?;
    }
    let elapsed = start.elapsed();
    w.check(e.as_mut())?;
    eprintln!(
        "{engine} {}: {count} transactions, {:.1} ns each",
        w.name(),
        elapsed.as_nanos() as f64 / count.max(1) as f64
    );
    Ok(())
}
