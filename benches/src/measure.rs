//! Timing: transactions run in batches; a batch's mean is its wall time over its size; the
//! reported figure is the median of the batch means.
//!
//! Batching keeps the clock's own cost (about 20 ns for `Instant::now`) out of transactions
//! that take 50 ns. The batch size doubles during warm-up until one batch takes at least
//! `measure / target_batches`, so fast engines get large batches and slow (fsyncing) ones get
//! batches of one; the measuring phase then runs batches until its time is spent or it has
//! `max_batches`. At least `min_batches` are always run.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use crate::engine::Engine;
use crate::workload::Workload;

/// How long to warm up and measure one (engine, workload) cell.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Budget {
    /// Warm-up time, also used to size batches.
    pub warmup: Duration,
    /// Measuring time.
    pub measure: Duration,
    /// Batches the measuring time is split into.
    pub target_batches: u32,
    /// Fewest batches measured, even past the time.
    pub min_batches: u32,
    /// Most batches measured.
    pub max_batches: u32,
}

impl Budget {
    /// `quick`: 100 ms warm-up, 300 ms measuring, ~30 batches.
    pub const QUICK: Budget = Budget {
        warmup: Duration::from_millis(100),
        measure: Duration::from_millis(300),
        target_batches: 30,
        min_batches: 5,
        max_batches: 200,
    };
    /// `smoke`: 2 ms warm-up, 10 ms measuring, at least 3 batches: seconds for the suite.
    pub const SMOKE: Budget = Budget {
        warmup: Duration::from_millis(2),
        measure: Duration::from_millis(10),
        target_batches: 5,
        min_batches: 3,
        max_batches: 20,
    };
    /// `full`: 300 ms warm-up, 2 s measuring, ~100 batches.
    pub const FULL: Budget = Budget {
        warmup: Duration::from_millis(300),
        measure: Duration::from_secs(2),
        target_batches: 100,
        min_batches: 10,
        max_batches: 2_000,
    };
}

/// The outcome of measuring one cell.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Sample {
    /// Median over batches of the mean nanoseconds per transaction.
    pub median_ns: f64,
    /// Measuring time over transactions measured: unlike the median, it includes every
    /// stall (a truncation the log had to wait for, a checkpoint) in full.
    pub mean_ns: f64,
    /// Fastest batch mean.
    pub min_ns: f64,
    /// Slowest batch mean.
    pub max_ns: f64,
    /// Transactions per batch.
    pub batch: u64,
    /// Batches measured.
    pub batches: u32,
    /// Transactions measured (warm-up excluded).
    pub transactions: u64,
}

impl Sample {
    /// Transactions per second at the median.
    pub fn per_second(&self) -> f64 {
        1e9 / self.median_ns
    }
}

fn run_batch(w: &mut dyn Workload, e: &mut dyn Engine, n: u64) -> Result<Duration> {
    let start = Instant::now();
    for _ in 0..n {
        w.run_one(e)?;
    }
    Ok(start.elapsed())
}

/// Warms up and measures `w` on `e`; also returns the engine's
/// [`counters`](Engine::counters) as they were when the measuring phase began.
///
/// # Errors
/// The first failed transaction.
pub fn measure(
    w: &mut dyn Workload,
    e: &mut dyn Engine,
    budget: &Budget,
) -> Result<(Sample, Vec<(&'static str, u64)>)> {
    let target = budget.measure / budget.target_batches.max(1);
    let mut batch = 1u64;
    let warm_start = Instant::now();
    while warm_start.elapsed() < budget.warmup {
        let t = run_batch(w, e, batch)?;
        if t < target {
            batch = batch.saturating_mul(2);
        }
    }
    let counters = e.counters();
    let mut means = Vec::new();
    let start = Instant::now();
    let mut total = Duration::ZERO;
    while (means.len() < budget.min_batches as usize || start.elapsed() < budget.measure)
        && means.len() < budget.max_batches as usize
    {
        let t = run_batch(w, e, batch)?;
        total += t;
        means.push(t.as_nanos() as f64 / batch as f64);
    }
    let batches = means.len() as u32;
    let transactions = batch * u64::from(batches);
    let sample = Sample {
        median_ns: median(&mut means),
        mean_ns: total.as_nanos() as f64 / transactions as f64,
        min_ns: means.iter().copied().fold(f64::INFINITY, f64::min),
        max_ns: means.iter().copied().fold(0.0, f64::max),
        batch,
        batches,
        transactions,
    };
    Ok((sample, counters))
}

/// The median of `v` (mean of the middle two for an even count); sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    assert!(!v.is_empty(), "median of nothing");
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        f64::midpoint(v[m - 1], v[m])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn median_of_odd_and_even() {
        assert!((super::median(&mut [3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((super::median(&mut [4.0, 1.0, 3.0, 2.0]) - 2.5).abs() < f64::EPSILON);
    }
}
