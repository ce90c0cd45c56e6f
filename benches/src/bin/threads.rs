//! Debit-credit from many threads on one vista segment:
//! `cargo run --release -p benches --bin threads -- --threads 1,2,4,8`.
//!
//! Each transaction adds a delta to one account, its teller and its branch (each balance
//! changed in place through `set_range`, so its lock is taken exclusively at once) and
//! writes a 50-byte history record into its thread's own ring (a shared history head
//! would make every transaction conflict). Tables: 100,000 accounts, 10,000 tellers and
//! 1,000 branches of 100 bytes. `uniform` picks the branch uniformly; `hotspot` uses 4
//! branches (and their 40 tellers), so most transactions meet on a few records.
//!
//! Engines: `vista` (transactions run concurrently, one lane each, range locks,
//! `Segment::transaction` retrying conflicts), and `vista-mutex` (every transaction under
//! one global mutex: what a program needed before segments were `Sync`).
//!
//! Reports per cell: transactions per second, retries per committed transaction,
//! p50 / p99 / p99.9 latency of a whole `transaction` call (retries included). With
//! `--checkpoint-ms N`, another thread takes a checkpoint every N ms meanwhile, which
//! shows the stall a checkpoint's copy adds to the tail.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use clap::{Parser, ValueEnum};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vista::{Options, Protection, Segment, Writeback};

const RECORD: u64 = 100;
const ACCOUNTS: u64 = 100_000;
const TELLERS_PER_BRANCH: u64 = 10;
const ACCOUNTS_OFF: u64 = 0;
const TELLERS_OFF: u64 = ACCOUNTS * RECORD;
const BRANCHES_OFF: u64 = TELLERS_OFF + 10_000 * RECORD;
const HISTORY_OFF: u64 = BRANCHES_OFF + 1_000 * RECORD;
const HISTORY_LEN: u64 = 50;
const HISTORY_PER_THREAD: u64 = 8192;
const MAX_THREADS: u64 = 64;
const SEGMENT: u64 = HISTORY_OFF + MAX_THREADS * HISTORY_PER_THREAD * HISTORY_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Engine {
    Vista,
    VistaMutex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Shape {
    Uniform,
    Hotspot,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Guard {
    None,
    Mprotect,
}

/// Debit-credit from many threads.
#[derive(Debug, Parser)]
struct Args {
    /// Thread counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    threads: Vec<u64>,
    /// Engines.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "vista,vista-mutex"
    )]
    engines: Vec<Engine>,
    /// Workload shapes.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "uniform,hotspot"
    )]
    shapes: Vec<Shape>,
    /// Protection of the segment.
    #[arg(long, value_enum, default_value = "none")]
    protection: Guard,
    /// Seconds per cell (after a quarter of it as warm-up).
    #[arg(long, default_value = "2")]
    seconds: f64,
    /// Take a checkpoint every this many ms while the cell runs (0: none).
    #[arg(long, default_value = "0")]
    checkpoint_ms: u64,
    /// Where the segment and its memory image live (default: a temporary directory).
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

struct Cell {
    commits: u64,
    attempts: u64,
    latencies: Vec<u32>,
    checkpoints: u64,
    elapsed: Duration,
}

fn put(b: &mut [u8], delta: i64) {
    let v = i64::from_le_bytes(b[..8].try_into().expect("8 bytes")) + delta;
    b[..8].copy_from_slice(&v.to_le_bytes());
}

/// One debit-credit transaction; returns how many times the closure ran.
fn transact(seg: &Segment, rng: &mut SmallRng, shape: Shape, thread: u64, n: u64) -> Result<u64> {
    let branches = match shape {
        Shape::Uniform => 1_000,
        Shape::Hotspot => 4,
    };
    let branch = rng.gen_range(0..branches);
    let teller = branch * TELLERS_PER_BRANCH + rng.gen_range(0..TELLERS_PER_BRANCH);
    let account = rng.gen_range(0..ACCOUNTS);
    let delta: i64 = rng.gen_range(-99_999..=99_999);
    let slot = HISTORY_OFF + (thread * HISTORY_PER_THREAD + n % HISTORY_PER_THREAD) * HISTORY_LEN;
    let mut record = [0u8; HISTORY_LEN as usize];
    record[..8].copy_from_slice(&n.to_le_bytes());
    record[8..16].copy_from_slice(&account.to_le_bytes());
    record[16..24].copy_from_slice(&teller.to_le_bytes());
    record[24..32].copy_from_slice(&branch.to_le_bytes());
    record[32..40].copy_from_slice(&delta.to_le_bytes());
    let mut runs = 0;
    seg.transaction(|tx| {
        runs += 1;
        put(tx.set_range(ACCOUNTS_OFF + account * RECORD, 8)?, delta);
        put(tx.set_range(TELLERS_OFF + teller * RECORD, 8)?, delta);
        put(tx.set_range(BRANCHES_OFF + branch * RECORD, 8)?, delta);
        tx.write(slot, &record)
    })?;
    Ok(runs)
}

fn run_cell(
    seg: &Segment,
    engine: Engine,
    shape: Shape,
    threads: u64,
    args: &Args,
) -> Result<Cell> {
    let global = Mutex::new(());
    let stop = AtomicBool::new(false);
    let measuring = AtomicBool::new(false);
    let warm = Duration::from_secs_f64(args.seconds / 4.0);
    let run = Duration::from_secs_f64(args.seconds);
    let mut cell = Cell {
        commits: 0,
        attempts: 0,
        latencies: Vec::new(),
        checkpoints: 0,
        elapsed: Duration::ZERO,
    };
    std::thread::scope(|s| -> Result<()> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (global, stop, measuring) = (&global, &stop, &measuring);
                s.spawn(move || -> Result<(u64, u64, Vec<u32>)> {
                    let mut rng = SmallRng::seed_from_u64(t + 1);
                    let (mut commits, mut attempts, mut lat) = (0, 0, Vec::with_capacity(1 << 20));
                    let mut n = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let start = Instant::now();
                        let runs = if engine == Engine::VistaMutex {
                            let _g = global
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner);
                            transact(seg, &mut rng, shape, t, n)?
                        } else {
                            transact(seg, &mut rng, shape, t, n)?
                        };
                        n += 1;
                        if measuring.load(Ordering::Relaxed) {
                            let ns = start.elapsed().as_nanos();
                            lat.push(u32::try_from(ns).unwrap_or(u32::MAX));
                            commits += 1;
                            attempts += runs;
                        }
                    }
                    Ok((commits, attempts, lat))
                })
            })
            .collect();
        let checkpointer = (args.checkpoint_ms > 0).then(|| {
            let (stop, every) = (&stop, Duration::from_millis(args.checkpoint_ms));
            s.spawn(move || -> Result<u64> {
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(every);
                    seg.checkpoint()?;
                    n += 1;
                }
                Ok(n)
            })
        });
        std::thread::sleep(warm);
        measuring.store(true, Ordering::Relaxed);
        let started = Instant::now();
        std::thread::sleep(run);
        measuring.store(false, Ordering::Relaxed);
        cell.elapsed = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            let (c, a, l) = w.join().expect("worker")?;
            cell.commits += c;
            cell.attempts += a;
            cell.latencies.extend(l);
        }
        if let Some(c) = checkpointer {
            cell.checkpoints = c.join().expect("checkpointer")?;
        }
        Ok(())
    })?;
    Ok(cell)
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i]) / 1000.0
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.threads.iter().any(|&t| t == 0 || t > MAX_THREADS) {
        bail!("thread counts must be between 1 and {MAX_THREADS}");
    }
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let protection = match args.protection {
        Guard::None => Protection::None,
        Guard::Mprotect => Protection::Mprotect,
    };
    let lanes = u32::try_from(*args.threads.iter().max().unwrap_or(&1))
        .unwrap_or(64)
        .max(4);
    let opts = Options::new()
        .size(SEGMENT)
        .lanes(lanes)
        .protection(protection)
        .writeback(Writeback::Manual)
        .cache_dir(&dir);
    println!(
        "| engine | shape | threads | txn/s | vs 1 thread | retries/txn | p50 us | p99 us | p99.9 us | checkpoints |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for &engine in &args.engines {
        for &shape in &args.shapes {
            let path = dir.join(format!("threads-{engine:?}-{shape:?}.vista"));
            Segment::remove(&path, &opts)?;
            let seg = Segment::open(&path, &opts)?;
            let mut base = None;
            for &threads in &args.threads {
                let mut cell = run_cell(&seg, engine, shape, threads, &args)?;
                cell.latencies.sort_unstable();
                let tps = cell.commits as f64 / cell.elapsed.as_secs_f64();
                let base_tps = *base.get_or_insert(tps);
                println!(
                    "| {engine:?} | {shape:?} | {threads} | {tps:.0} | {:.2}x | {:.4} | {:.2} | {:.2} | {:.2} | {} |",
                    tps / base_tps,
                    (cell.attempts - cell.commits) as f64 / cell.commits.max(1) as f64,
                    percentile(&cell.latencies, 0.5),
                    percentile(&cell.latencies, 0.99),
                    percentile(&cell.latencies, 0.999),
                    cell.checkpoints,
                );
            }
            seg.close()?;
            Segment::remove(&path, &opts)?;
        }
    }
    Ok(())
}
