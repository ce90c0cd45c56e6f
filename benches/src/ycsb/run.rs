//! Running one cell (an engine, a mix, a key distribution, a thread count). The samples
//! and their medians are the thread suite's ([`crate::threads::run::Sample`],
//! [`crate::threads::run::Summary`]): here a "commit" is one completed operation.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{ensure, Result};
use rand::rngs::SmallRng;
use rand::SeedableRng;

use super::{key_of, value, Dist, Keys, Kind, Mix, Store, Value};
use crate::threads::run::Sample;

/// What one cell is.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Threads running operations.
    pub threads: u64,
    /// Reads and updates.
    pub mix: Mix,
    /// How keys are picked.
    pub dist: Dist,
    /// Time run before measuring (the threads are already running).
    pub warm_up: Duration,
    /// Time measured.
    pub measure: Duration,
    /// Seeds the threads' generators (thread `t` uses `seed + t`) and the versions the
    /// updates write.
    pub seed: u64,
}

/// One measured run: every operation, and the reads and the updates apart (their
/// `elapsed` is the run's, so their rates are per second of the whole run).
#[derive(Debug, Clone)]
pub struct Cell {
    /// Every operation.
    pub all: Sample,
    /// The reads.
    pub reads: Sample,
    /// The updates.
    pub updates: Sample,
}

/// What one thread measured: operations, retries, and the latencies of its reads and of
/// its updates (ns).
type Counts = (u64, u64, Vec<u32>, Vec<u32>);

/// Runs `plan` on `store`: `plan.threads` threads run operations from the start,
/// measuring runs from `warm_up` for `measure`. Each read's value is checked to belong
/// to its key.
///
/// # Errors
/// The first error of a thread (the others stop too).
pub fn run(store: &dyn Store, keys: &Keys, plan: &Plan) -> Result<Cell> {
    let stop = AtomicBool::new(false);
    let measuring = AtomicBool::new(false);
    std::thread::scope(|s| -> Result<Cell> {
        let workers: Vec<_> = (0..plan.threads)
            .map(|t| {
                let (stop, measuring) = (&stop, &measuring);
                s.spawn(move || -> Result<Counts> {
                    let result = work(store, keys, plan, t, stop, measuring);
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
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        wait(plan.measure);
        measuring.store(false, Ordering::Relaxed);
        let elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let empty = Sample {
            commits: 0,
            retries: 0,
            elapsed,
            latencies: Vec::new(),
            probe: 0,
        };
        let (mut all, mut reads, mut updates) = (empty.clone(), empty.clone(), empty);
        let mut first_error = None;
        for w in workers {
            match w.join().expect("a benchmark thread panicked") {
                Ok((c, r, rl, ul)) => {
                    all.commits += c;
                    all.retries += r;
                    all.latencies.extend(&rl);
                    all.latencies.extend(&ul);
                    reads.commits += rl.len() as u64;
                    reads.latencies.extend(rl);
                    updates.commits += ul.len() as u64;
                    updates.latencies.extend(ul);
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        for s in [&mut all, &mut reads, &mut updates] {
            s.latencies.sort_unstable();
        }
        Ok(Cell {
            all,
            reads,
            updates,
        })
    })
}

/// One thread's loop: operations, retries and the latencies of reads and of updates
/// while measuring.
fn work(
    store: &dyn Store,
    keys: &Keys,
    plan: &Plan,
    thread: u64,
    stop: &AtomicBool,
    measuring: &AtomicBool,
) -> Result<Counts> {
    let mut client = store.client(thread)?;
    let mut rng = SmallRng::seed_from_u64(plan.seed.wrapping_add(thread));
    let (mut ops, mut retries) = (0, 0);
    let mut reads = Vec::with_capacity(1 << 20);
    let mut updates = Vec::with_capacity(if plan.mix == super::Mix::C {
        0
    } else {
        1 << 20
    });
    // Versions are unique per run and thread: the seed's, the thread's, a counter.
    let mut version = (plan.seed << 24) ^ (thread << 56);
    let mut out: Value = [0; super::VALUE_LEN];
    while !stop.load(Ordering::Relaxed) {
        let kind = plan.mix.choose(&mut rng);
        let key = keys.next(plan.dist, &mut rng);
        // The new value is made before the clock starts, like an application's.
        let new = (kind == Kind::Update).then(|| {
            version += 1;
            value(key, version)
        });
        let start = Instant::now();
        let tries = match &new {
            None => client.read(key, &mut out)?,
            Some(v) => client.update(key, v)?,
        };
        let ns = start.elapsed().as_nanos();
        if new.is_none() {
            ensure!(
                key_of(&out) == key,
                "a read of key {key} returned key {}",
                key_of(&out)
            );
        }
        if measuring.load(Ordering::Relaxed) {
            let ns = u32::try_from(ns).unwrap_or(u32::MAX);
            if new.is_none() {
                reads.push(ns);
            } else {
                updates.push(ns);
            }
            ops += 1;
            retries += tries;
        }
    }
    Ok((ops, retries, reads, updates))
}
