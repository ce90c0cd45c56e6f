//! Running one cell (an engine, a shape, a thread count) and summarising repeated runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::{Bank, Op, Shape};

/// What one cell is.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Threads running transactions.
    pub threads: u64,
    /// Which branches they pick.
    pub shape: Shape,
    /// Time run before measuring (the threads are already running).
    pub warm_up: Duration,
    /// Time measured.
    pub measure: Duration,
    /// Seeds the threads' generators (thread `t` uses `seed + t`).
    pub seed: u64,
}

/// One measured run of a cell.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Transactions committed while measuring.
    pub commits: u64,
    /// Extra tries of those transactions (conflicts, busy locks).
    pub retries: u64,
    /// How long measuring lasted.
    pub elapsed: Duration,
    /// Latency of each committed transaction while measuring, from the call to the
    /// return of [`super::Teller::transfer`] (retries included), in ns, sorted.
    pub latencies: Vec<u32>,
    /// How much the probe passed to [`run`] advanced while measuring.
    pub probe: u64,
}

impl Sample {
    /// Committed transactions per second.
    pub fn tps(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64()
    }

    /// Retries per committed transaction.
    pub fn retry_rate(&self) -> f64 {
        self.retries as f64 / self.commits.max(1) as f64
    }

    /// The `p` quantile (0..=1) of the latencies in µs (nearest rank); 0 without any.
    pub fn percentile_us(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies.len() - 1) as f64 * p).round() as usize;
        f64::from(self.latencies[i]) / 1000.0
    }
}

/// Runs `plan` on `bank`: `plan.threads` threads transact from the start, measuring runs
/// from `warm_up` for `measure`. `probe` is read when measuring starts and ends (for
/// example a segment's checkpoint count). Returns the sample and the sum of the deltas of
/// every transaction committed during the whole run (warm-up included), for
/// [`super::Totals::check`].
///
/// # Errors
/// The first error of a thread (the others stop too).
pub fn run(
    bank: &dyn Bank,
    plan: &Plan,
    probe: &(dyn Fn() -> u64 + Sync),
) -> Result<(Sample, i64)> {
    let stop = AtomicBool::new(false);
    let measuring = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<(Sample, i64)> {
        let workers: Vec<_> = (0..plan.threads)
            .map(|t| {
                let (stop, measuring) = (&stop, &measuring);
                s.spawn(move || -> Result<(u64, u64, Vec<u32>, i64)> {
                    let result = work(bank, plan, t, stop, measuring);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        let wait = |d: Duration| {
            let end = Instant::now() + d;
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                std::thread::sleep(Duration::from_millis(1).min(d));
            }
        };
        wait(plan.warm_up);
        let probe_start = probe();
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        wait(plan.measure);
        measuring.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed();
        let probe_end = probe();
        stop.store(true, Ordering::Relaxed);
        let mut sample = Sample {
            commits: 0,
            retries: 0,
            elapsed,
            latencies: Vec::new(),
            probe: probe_end.saturating_sub(probe_start),
        };
        let mut deltas = 0i64;
        let mut first_error = None;
        for w in workers {
            match w.join().expect("a benchmark thread panicked") {
                Ok((c, r, l, d)) => {
                    sample.commits += c;
                    sample.retries += r;
                    sample.latencies.extend(l);
                    deltas = deltas.wrapping_add(d);
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        sample.latencies.sort_unstable();
        Ok((sample, deltas))
    })
}

/// One thread's loop: commits, retries and latencies while measuring, and the sum of the
/// deltas it committed.
fn work(
    bank: &dyn Bank,
    plan: &Plan,
    thread: u64,
    stop: &AtomicBool,
    measuring: &AtomicBool,
) -> Result<(u64, u64, Vec<u32>, i64)> {
    let mut teller = bank.teller(thread)?;
    let mut rng = SmallRng::seed_from_u64(plan.seed.wrapping_add(thread));
    let (mut commits, mut retries) = (0, 0);
    let mut latencies = Vec::with_capacity(1 << 18);
    let mut deltas = 0i64;
    let mut n = 0;
    while !stop.load(Ordering::Relaxed) {
        let op = Op::generate(&mut rng, plan.shape, thread, n);
        let start = Instant::now();
        let tries = teller.transfer(&op)?;
        let ns = start.elapsed().as_nanos();
        n += 1;
        deltas = deltas.wrapping_add(op.delta);
        if measuring.load(Ordering::Relaxed) {
            latencies.push(u32::try_from(ns).unwrap_or(u32::MAX));
            commits += 1;
            retries += tries;
        }
    }
    Ok((commits, retries, latencies, deltas))
}

/// The median of `v` (the mean of the middle two for an even count); 0 when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    }
}

/// Medians over the repeated runs of one cell.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    /// Runs summarised.
    pub runs: usize,
    /// Median transactions per second.
    pub tps: f64,
    /// Lowest and highest transactions per second of the runs.
    pub tps_range: (f64, f64),
    /// Median retries per committed transaction.
    pub retry_rate: f64,
    /// Median of the runs' p50, p99, p99.9 and largest latency, µs.
    pub p50: f64,
    /// See `p50`.
    pub p99: f64,
    /// See `p50`.
    pub p999: f64,
    /// See `p50`.
    pub max: f64,
    /// Median of the probe's advance while measuring.
    pub probe: f64,
}

impl Summary {
    /// Summarises `samples` (runs of one cell).
    pub fn of(samples: &[Sample]) -> Summary {
        let m = |f: &dyn Fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        let tps: Vec<f64> = samples.iter().map(Sample::tps).collect();
        Summary {
            runs: samples.len(),
            tps: m(&Sample::tps),
            tps_range: (
                tps.iter().copied().fold(f64::INFINITY, f64::min),
                tps.iter().copied().fold(0.0, f64::max),
            ),
            retry_rate: m(&Sample::retry_rate),
            p50: m(&|s| s.percentile_us(0.5)),
            p99: m(&|s| s.percentile_us(0.99)),
            p999: m(&|s| s.percentile_us(0.999)),
            max: m(&|s| s.percentile_us(1.0)),
            probe: m(&|s| s.probe as f64),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert!((median(vec![3.0, 1.0, 2.0]) - 2.0).abs() < 1e-12);
        assert!((median(vec![4.0, 1.0, 3.0, 2.0]) - 2.5).abs() < 1e-12);
        assert!(median(Vec::new()).abs() < 1e-12);
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = Sample {
            commits: 1000,
            retries: 10,
            elapsed: Duration::from_secs(1),
            latencies: (1..=1000).map(|i| i * 1000).collect(),
            probe: 0,
        };
        assert!((s.percentile_us(0.5) - 501.0).abs() < 1e-9);
        assert!((s.percentile_us(0.99) - 990.0).abs() < 1e-9);
        assert!((s.percentile_us(1.0) - 1000.0).abs() < 1e-9);
        assert!((s.retry_rate() - 0.01).abs() < 1e-12);
        assert!((s.tps() - 1000.0).abs() < 1e-9);
    }
}
