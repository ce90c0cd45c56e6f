//! Runs SPS transactions on vista (`Protection::None`, `Writeback::Manual`) and nothing
//! else, for profilers: instructions per swap are the difference of two runs over the
//! difference of their swap counts.
//!
//! ```sh
//! cargo build --release -p benches --example sps_profile
//! valgrind --tool=callgrind target/release/examples/sps_profile 16 20000
//! valgrind --tool=callgrind target/release/examples/sps_profile 16 40000
//! ```
//!
//! Arguments: swaps per transaction, transaction count, and optionally the array's
//! entries (default 1,000,000: the standard 10,000,000 takes minutes to fill under a
//! simulator, and a smaller array changes no instruction of a swap).

use anyhow::{Context, Result};
use benches::threads::sps::VistaArray;
use rand::{Rng, SeedableRng};
use vista::{Options, Protection, Writeback};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [swaps, count, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: sps_profile SWAPS COUNT [ENTRIES]");
    };
    let swaps: usize = swaps.parse().context("SWAPS")?;
    let count: u64 = count.parse().context("COUNT")?;
    let entries: u64 = rest
        .first()
        .map_or(Ok(1_000_000), |e| e.parse())
        .context("ENTRIES")?;
    let opts = Options::new()
        .protection(Protection::None)
        .writeback(Writeback::Manual);
    let array = VistaArray::open(&std::env::temp_dir(), &opts, entries, false)?;
    let seg = array.segment();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
    let mut pairs = Vec::with_capacity(swaps);
    let start = std::time::Instant::now();
    for _ in 0..count {
        pairs.clear();
        for _ in 0..swaps {
            pairs.push((rng.gen_range(0..entries) * 8, rng.gen_range(0..entries) * 8));
        }
        seg.transaction(|tx| {
            for &(a, b) in &pairs {
                let va: u64 = tx.get(a)?;
                let vb: u64 = tx.get(b)?;
                tx.put(a, &vb)?;
                tx.put(b, &va)?;
            }
            Ok::<(), vista::Error>(())
        })?;
    }
    let elapsed = start.elapsed();
    array.check()?;
    eprintln!(
        "sps S={swaps}: {count} transactions, {:.1} ns each",
        elapsed.as_nanos() as f64 / count.max(1) as f64
    );
    Ok(())
}
