//! The persistent heap: alloc+free pairs and a churn workload, vista against PMDK's
//! `pmemobj_tx_alloc`/`pmemobj_tx_free` (feature `pmdk`) and the system allocator (the
//! floor: no persistence, no transaction).
//!
//! ```text
//! cargo run --release -p benches --features pmdk --bin heap -- --runs 5
//! ```
//!
//! A pair is two transactions: one allocates a block and writes its value, the next
//! frees it (vista: `tx.alloc(value)` then `tx.free(ptr)`; PMDK: `pmemobj_tx_alloc` +
//! copy, then `pmemobj_tx_free`; the floor: `Box::new` then `drop`). The churn keeps
//! about `--live` blocks of random sizes (16 B to 4 KiB, log-uniform) and then allocates
//! or frees at random, one transaction each; afterwards it reports the pages the heap
//! uses against the live bytes. Each figure is the median of `--runs` runs.

use std::hint::black_box;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use vista::{Options, PPtr, Segment, Writeback};

#[derive(Parser, Debug)]
struct Args {
    /// Pairs per run and size.
    #[arg(long, default_value_t = 20_000)]
    pairs: u64,
    /// Churn operations per run.
    #[arg(long, default_value_t = 100_000)]
    churn: u64,
    /// Blocks kept live by the churn.
    #[arg(long, default_value_t = 10_000)]
    live: usize,
    /// Runs (the median is reported).
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// Only the pairs of this size (16, 256 or 4096), no churn.
    #[arg(long)]
    only: Option<u64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn segment() -> Result<(tempfile::TempDir, Segment)> {
    let dir = tempfile::tempdir_in("/dev/shm")?;
    let opts = Options::new()
        .size(64 << 20)
        .writeback(Writeback::Manual)
        .cache_dir(dir.path());
    let seg = Segment::open(dir.path().join("heap.vista"), &opts)?;
    Ok((dir, seg))
}

/// ns per pair.
fn vista_pairs<const N: usize>(n: u64) -> Result<f64> {
    let (_dir, seg) = segment()?;
    let value = [7u8; N];
    let t = Instant::now();
    for _ in 0..n {
        let mut tx = seg.begin()?;
        let p = tx.alloc(value)?;
        tx.commit()?;
        let mut tx = seg.begin()?;
        tx.free(p)?;
        tx.commit()?;
    }
    Ok(t.elapsed().as_nanos() as f64 / n as f64)
}

fn floor_pairs<const N: usize>(n: u64) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        let b = black_box(Box::new([7u8; N]));
        drop(b);
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

#[cfg(feature = "pmdk")]
fn pmdk_pool() -> Result<(std::path::PathBuf, benches::sys::pmemobj::Pool)> {
    use benches::sys::pmemobj::{force_pmem_mode, Pool};
    force_pmem_mode();
    let path = std::path::PathBuf::from(format!(
        "/dev/shm/vista-heap-bench-{}.pmemobj",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let pool = Pool::create(&path, 512 << 20, 64)?;
    Ok((path, pool))
}

#[cfg(feature = "pmdk")]
fn pmdk_pairs<const N: usize>(n: u64) -> Result<f64> {
    let (path, mut pool) = pmdk_pool()?;
    let value = [7u8; N];
    let t = Instant::now();
    for _ in 0..n {
        pool.tx_begin()?;
        let o = pool.tx_alloc(&value)?;
        pool.tx_commit()?;
        pool.tx_begin()?;
        pool.tx_free(o)?;
        pool.tx_commit()?;
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    drop(pool);
    let _ = std::fs::remove_file(path);
    Ok(ns)
}

/// A churn size: 16 B to 4 KiB, log-uniform.
fn churn_size(rng: &mut SmallRng) -> u64 {
    let shift = rng.gen_range(4..12);
    (1u64 << shift) + rng.gen_range(0..(1u64 << shift))
}

/// The churn's choices: `Some(size)` allocates, `None` frees a random live block.
fn churn_plan(args: &Args) -> Vec<(Option<u64>, usize)> {
    let mut rng = SmallRng::seed_from_u64(42);
    let mut live = 0usize;
    let mut plan = Vec::new();
    for i in 0..args.live as u64 + args.churn {
        let alloc = i < args.live as u64 || live == 0 || rng.gen_bool(0.5);
        if alloc {
            plan.push((Some(churn_size(&mut rng).min(4096)), 0));
            live += 1;
        } else {
            plan.push((None, rng.gen_range(0..live)));
            live -= 1;
        }
    }
    plan
}

/// ns per churn operation (after the warm-up), the heap's stats afterwards, and the
/// bytes the live blocks were asked for.
fn vista_churn(args: &Args, plan: &[(Option<u64>, usize)]) -> Result<(f64, vista::HeapStats, u64)> {
    let (_dir, seg) = segment()?;
    let mut live: Vec<(PPtr<[u8]>, u64)> = Vec::new();
    let mut t = Instant::now();
    for (i, &(op, pick)) in plan.iter().enumerate() {
        if i == args.live {
            t = Instant::now();
        }
        let mut tx = seg.begin()?;
        match op {
            Some(size) => {
                let p = tx.alloc_bytes(size)?;
                tx.commit()?;
                live.push((p, size));
            }
            None => {
                tx.free(live.swap_remove(pick).0)?;
                tx.commit()?;
            }
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / args.churn as f64;
    let asked = live.iter().map(|l| l.1).sum();
    Ok((ns, seg.heap_stats()?, asked))
}

fn floor_churn(args: &Args, plan: &[(Option<u64>, usize)]) -> f64 {
    let mut live: Vec<Vec<u8>> = Vec::new();
    let mut t = Instant::now();
    for (i, &(op, pick)) in plan.iter().enumerate() {
        if i == args.live {
            t = Instant::now();
        }
        match op {
            Some(size) => live.push(black_box(vec![0u8; size as usize])),
            None => drop(live.swap_remove(pick)),
        }
    }
    t.elapsed().as_nanos() as f64 / args.churn as f64
}

#[cfg(feature = "pmdk")]
fn pmdk_churn(args: &Args, plan: &[(Option<u64>, usize)]) -> Result<f64> {
    let (path, mut pool) = pmdk_pool()?;
    let zeros = vec![0u8; 8192];
    let mut live = Vec::new();
    let mut t = Instant::now();
    for (i, &(op, pick)) in plan.iter().enumerate() {
        if i == args.live {
            t = Instant::now();
        }
        pool.tx_begin()?;
        match op {
            Some(size) => live.push(pool.tx_alloc(&zeros[..size as usize])?),
            None => pool.tx_free(live.swap_remove(pick))?,
        }
        pool.tx_commit()?;
    }
    let ns = t.elapsed().as_nanos() as f64 / args.churn as f64;
    drop(pool);
    let _ = std::fs::remove_file(path);
    Ok(ns)
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1000.0 {
        format!("{:.2} µs", ns / 1000.0)
    } else {
        format!("{ns:.0} ns")
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "heap benchmark: median of {} runs; /proc/loadavg at start: {}",
        args.runs,
        loadavg.trim()
    );
    println!();
    println!("| operation | system allocator (floor) | vista | PMDK | PMDK / vista |");
    println!("|---|---:|---:|---:|---:|");
    macro_rules! pair_row {
        ($n:literal) => {{
            let floor = median(
                (0..args.runs)
                    .map(|_| floor_pairs::<$n>(args.pairs))
                    .collect(),
            );
            let vista = median(
                (0..args.runs)
                    .map(|_| vista_pairs::<$n>(args.pairs))
                    .collect::<Result<_>>()?,
            );
            #[cfg(feature = "pmdk")]
            let pmdk = Some(median(
                (0..args.runs)
                    .map(|_| pmdk_pairs::<$n>(args.pairs))
                    .collect::<Result<_>>()?,
            ));
            #[cfg(not(feature = "pmdk"))]
            let pmdk: Option<f64> = None;
            println!(
                "| alloc+free pair, {} B | {} | {} | {} | {} |",
                $n,
                fmt_ns(floor),
                fmt_ns(vista),
                pmdk.map_or("(feature pmdk)".into(), fmt_ns),
                pmdk.map_or(String::new(), |p| format!("{:.1}x", p / vista))
            );
        }};
    }
    if args.only.is_none_or(|n| n == 16) {
        pair_row!(16);
    }
    if args.only.is_none_or(|n| n == 256) {
        pair_row!(256);
    }
    if args.only.is_none_or(|n| n == 4096) {
        pair_row!(4096);
    }
    if args.only.is_some() {
        return Ok(());
    }
    let plan = churn_plan(&args);
    let floor = median((0..args.runs).map(|_| floor_churn(&args, &plan)).collect());
    let mut stats = None;
    let vista = median(
        (0..args.runs)
            .map(|_| {
                vista_churn(&args, &plan).map(|(ns, s, asked)| {
                    stats = Some((s, asked));
                    ns
                })
            })
            .collect::<Result<_>>()?,
    );
    #[cfg(feature = "pmdk")]
    let pmdk = Some(median(
        (0..args.runs)
            .map(|_| pmdk_churn(&args, &plan))
            .collect::<Result<_>>()?,
    ));
    #[cfg(not(feature = "pmdk"))]
    let pmdk: Option<f64> = None;
    println!(
        "| churn op (16 B-4 KiB, 50% free), {} live | {} | {} | {} | {} |",
        args.live,
        fmt_ns(floor),
        fmt_ns(vista),
        pmdk.map_or_else(|| "(feature pmdk)".into(), fmt_ns),
        pmdk.map_or_else(String::new, |p| format!("{:.1}x", p / vista))
    );
    if let Some((s, asked)) = stats {
        println!();
        println!(
            "vista heap after the churn: {} live blocks of {} bytes asked for ({} bytes in their size classes); {} bytes of pages in use ({:.2}x the bytes asked for, {:.2}x the class bytes), {} bytes formatted in all (with header and descriptors); {} free runs, external fragmentation {:.2}",
            s.live_blocks,
            asked,
            s.live_bytes,
            s.used_bytes,
            s.used_bytes as f64 / asked as f64,
            s.overhead(),
            s.formatted_bytes,
            s.free_runs,
            s.fragmentation()
        );
    }
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("/proc/loadavg at end: {}", loadavg.trim());
    Ok(())
}
