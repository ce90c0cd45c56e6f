//! Checkpoint speed, beside the raw disk: for each segment size, a fully dirty segment
//! (one byte changed per page) is checkpointed, and the same number of bytes is written
//! to a scratch file in the same directory and `fdatasync`ed (the rewrite of an existing
//! file, as a checkpoint's install is). Also the open of the segment cold (its memory
//! image deleted) beside a sequential read of its file, and warm; and the first checkpoint
//! after that cold open, of one changed page: what it copies into the other slot besides
//! that page is what the disk image says the slots may differ on (docs/rio-cache.md, "Why
//! the other slot ends up whole"), here the last checkpoint's one page (a checkpoint of
//! one page is taken before the cold open).
//!
//! The stall: the segment is dirtied again and checkpointed while another thread runs
//! one-byte transactions on random pages (each on a page the checkpoint has yet to
//! write, or has written: either way the page is in the checkpoint's snapshot). The
//! table gives that writer's longest transaction and its p99.9 during the checkpoint;
//! beside them, the same over as long a time while another thread only copies memory
//! (what sharing two cores with a busy thread costs, checkpoint or not), and the
//! writer's p99.9 alone. For both, the writer's count of context switches is read
//! before and after each transaction (outside the timed part): the tables give the
//! longest transaction during which the writer was not preempted, of all the runs, and
//! how many transactions took above 1 ms, how many of those were preempted (the
//! scheduler gave the core to another thread) and how many slept (waited for a lock, a
//! condition or I/O: a wait in the library would show here).
//!
//! A measured run first waits up to 30 s for the load to settle
//! ([`benches::machine::settle`]) and prints the machine and the load at start and end.
//!
//! ```sh
//! cargo run --release -p benches --bin checkpoint -- --sizes 64,256,1024 --runs 3
//! ```
//!
//! Medians of `--runs` runs, interleaved (segment, raw, segment, raw, ...). The scratch
//! directory is `--dir` (default: the system temporary directory); memory images go to
//! the default cache directory (`$RIO_CACHE_DIR`, else `/dev/shm`).

use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use benches::machine::{load_average, settle, Machine};
use benches::sys::context_switches;
use clap::Parser;
use rand::Rng;
use vista::{Options, Protection, Segment, Writeback};

/// Checkpoint and open speed beside the raw disk.
#[derive(Debug, Parser)]
struct Args {
    /// Segment sizes in MiB, comma-separated.
    #[arg(long, default_value = "64,256,1024", value_delimiter = ',')]
    sizes: Vec<u64>,
    /// Runs per size (medians are reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where the segment and the scratch file go.
    #[arg(long)]
    dir: Option<PathBuf>,
}

const PAGE: u64 = 4096;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// One transaction's latency; whether the scheduler preempted the writer during it; and
/// whether the writer slept during it (waited for a lock, a condition, I/O).
type Sample = (Duration, bool, bool);

/// One-byte transactions on random pages of `seg` until `stop`; the latency of each, and
/// whether the writer was preempted during it (its count of involuntary context switches
/// is read before and after each transaction, outside the timed part).
fn writer(seg: &Segment, stop: &AtomicBool) -> Result<Vec<Sample>> {
    let pages = seg.len() / PAGE;
    let mut rng = rand::thread_rng();
    let mut lat = Vec::with_capacity(1 << 20);
    while !stop.load(Ordering::Relaxed) {
        let page = rng.gen_range(0..pages);
        let before = context_switches()?;
        let t = Instant::now();
        seg.transaction(|tx| tx.write(page * PAGE + 1, &[7]))?;
        let took = t.elapsed();
        let after = context_switches()?;
        lat.push((took, after.0 != before.0, after.1 != before.1));
    }
    Ok(lat)
}

/// The tail of a writer's latencies.
#[derive(Debug, Clone, Copy)]
struct Tail {
    longest: Duration,
    p999: Duration,
    /// The longest transaction during which the writer was not preempted.
    longest_kept: Duration,
    /// Transactions above 1 ms; how many of them were preempted; how many slept.
    over_ms: (usize, usize, usize),
}

fn tail(mut lat: Vec<Sample>) -> Tail {
    lat.sort_unstable();
    let n = lat.len();
    if n == 0 {
        return Tail {
            longest: Duration::ZERO,
            p999: Duration::ZERO,
            longest_kept: Duration::ZERO,
            over_ms: (0, 0, 0),
        };
    }
    let slow = lat.iter().filter(|s| s.0 > Duration::from_millis(1));
    Tail {
        longest: lat[n - 1].0,
        p999: lat[(n * 999 / 1000).min(n - 1)].0,
        longest_kept: lat
            .iter()
            .rev()
            .find(|s| !s.1)
            .map_or(Duration::ZERO, |s| s.0),
        over_ms: (
            slow.clone().count(),
            slow.clone().filter(|s| s.1).count(),
            slow.filter(|s| s.2).count(),
        ),
    }
}

/// A writer's tail latency while `during` runs, and how long `during` took.
fn writer_during(seg: &Segment, during: impl FnOnce() -> Result<()>) -> Result<(Tail, Duration)> {
    let stop = AtomicBool::new(false);
    let (lat, took) = std::thread::scope(|s| {
        let w = s.spawn(|| writer(seg, &stop));
        let t = Instant::now();
        let r = during();
        let took = t.elapsed();
        stop.store(true, Ordering::Relaxed);
        let lat = w.join().expect("the writer does not panic");
        r.and_then(|()| lat.map(|l| (l, took)))
    })?;
    Ok((tail(lat), took))
}

/// Copies memory for `d` (a companion thread as busy as a checkpoint's copy, without
/// one): what sharing the cores costs the writer on its own.
fn busy_for(d: Duration) {
    let src = vec![1u8; 1 << 20];
    let mut dst = vec![0u8; 1 << 20];
    let t = Instant::now();
    while t.elapsed() < d {
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
    }
}

/// The stall columns: a writer's longest transaction and p99.9 during a checkpoint,
/// then its longest and p99.9 over as long a time beside a thread that copies memory
/// (no checkpoint), then its p99.9 alone.
struct Stall {
    during: Tail,
    busy: Tail,
    alone: Duration,
}

fn stall(seg: &Segment) -> Result<Stall> {
    let (during, took) = writer_during(seg, || Ok(seg.checkpoint()?))?;
    let (busy, _) = writer_during(seg, || {
        busy_for(took);
        Ok(())
    })?;
    let (alone, _) = writer_during(seg, || {
        std::thread::sleep(took);
        Ok(())
    })?;
    Ok(Stall {
        during,
        busy,
        alone: alone.p999,
    })
}

/// The table's two cells for one of the stalls' tails over the runs: the medians of the
/// longest transaction and the p99.9; then the longest not preempted, of all the runs,
/// and how many transactions took above 1 ms (summed over the runs), of which how many
/// were preempted and how many slept.
fn tail_cells(stalls: &[Stall], of: fn(&Stall) -> &Tail) -> String {
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let med = |f: fn(&Tail) -> Duration| us(median(stalls.iter().map(|s| f(of(s))).collect()));
    let kept = us(stalls
        .iter()
        .map(|s| of(s).longest_kept)
        .max()
        .unwrap_or_default());
    let (n, preempted, slept) = stalls
        .iter()
        .map(|s| of(s).over_ms)
        .fold((0, 0, 0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2));
    format!(
        "{:.0} µs / {:.1} µs | {kept:.0} µs; {n} ({preempted}, {slept})",
        med(|t| t.longest),
        med(|t| t.p999),
    )
}

fn mib_s(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / f64::from(1u32 << 20) / d.as_secs_f64()
}

/// Changes one byte of every page, in transactions of 64 pages.
fn dirty_all(seg: &Segment, round: u8) -> Result<()> {
    let pages = seg.len() / PAGE;
    let mut p = 0;
    while p < pages {
        let end = (p + 64).min(pages);
        seg.transaction(|tx| {
            for q in p..end {
                tx.write(q * PAGE, &[round])?;
            }
            Ok::<_, vista::Error>(())
        })?;
        p = end;
    }
    Ok(())
}

/// Writes `len` bytes over the existing file `path` in 1 MiB writes, then fdatasync.
fn raw_rewrite(path: &Path, len: u64) -> Result<Duration> {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let buf = vec![0x5au8; 1 << 20];
    let start = Instant::now();
    let mut off = 0;
    while off < len {
        let n = (1u64 << 20).min(len - off) as usize;
        f.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    f.sync_data()?;
    Ok(start.elapsed())
}

/// Reads `path` sequentially (after dropping it from the page cache where allowed).
fn raw_read(path: &Path) -> Result<Duration> {
    let mut f = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let start = Instant::now();
    while f.read(&mut buf)? > 0 {}
    Ok(start.elapsed())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let load_warning = settle();
    let dir = tempfile::Builder::new()
        .prefix("vista-checkpoint-")
        .tempdir_in(args.dir.clone().unwrap_or_else(std::env::temp_dir))?;
    let mut machine = Machine::detect(dir.path());
    machine.load_warning = load_warning;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    println!("Command: `{command}`\n");
    println!("Machine: {}\n", machine.summary());
    if let Some(w) = &machine.load_warning {
        println!("**Warning: {w}.**\n");
    }
    println!(
        "| size | checkpoint | its speed | raw write + fdatasync | ratio | cold open | raw read | ratio | warm open | first checkpoint after the cold open (one page changed): time / bytes written | writer's longest / p99.9 during a checkpoint | longest not preempted (of all runs); above 1 ms (of those: preempted, slept) | beside a memory copy, no checkpoint | longest not preempted; above 1 ms (preempted, slept) | p99.9 alone |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &mib in &args.sizes {
        let len = mib << 20;
        let path = dir.path().join(format!("seg-{mib}.vista"));
        let opts = Options::new()
            .size(len)
            .protection(Protection::None)
            .writeback(Writeback::Manual);
        let scratch = dir.path().join(format!("raw-{mib}"));
        std::fs::File::create(&scratch)?.write_all(&vec![0u8; len as usize])?;
        let (mut ck, mut raw, mut cold, mut read, mut warm) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut first, mut first_bytes) = (Vec::new(), Vec::new());
        let mut stalls = Vec::new();
        for run in 0..args.runs {
            let seg = Segment::open(&path, &opts).context("open")?;
            dirty_all(&seg, run as u8 + 1)?;
            let t = Instant::now();
            seg.checkpoint()?;
            ck.push(t.elapsed());
            dirty_all(&seg, run as u8 + 101)?;
            stalls.push(stall(&seg)?);
            // The writer's pages, then one page: the last checkpoint before the cold
            // open is small, as a steady load's is.
            seg.checkpoint()?;
            seg.transaction(|tx| tx.put(0, &[run as u8]))?;
            seg.checkpoint()?;
            drop(seg);
            raw.push(raw_rewrite(&scratch, len)?);
            let t = Instant::now();
            drop(Segment::open(&path, &opts)?);
            warm.push(t.elapsed());
            // A cold start: the memory image is gone (as after a reboot).
            let cache_dir = vista::rio_cache::RioOptions::new().resolved_cache_dir();
            std::fs::remove_file(vista::rio_cache::image_path(&path, &cache_dir)?)?;
            let t = Instant::now();
            let seg = Segment::open(&path, &opts)?;
            cold.push(t.elapsed());
            let before = seg.cache_stats().bytes_written;
            seg.transaction(|tx| tx.put(len / 2, &[run as u8 + 201]))?;
            let t = Instant::now();
            seg.checkpoint()?;
            first.push(t.elapsed());
            first_bytes.push(seg.cache_stats().bytes_written - before);
            drop(seg);
            read.push(raw_read(&scratch)?);
        }
        let (ck, raw, cold, read, warm) = (
            median(ck),
            median(raw),
            median(cold),
            median(read),
            median(warm),
        );
        let (first, first_bytes) = (median(first), {
            first_bytes.sort_unstable();
            first_bytes[first_bytes.len() / 2]
        });
        let alone = median(stalls.iter().map(|s| s.alone).collect());
        println!(
            "| {mib} MiB | {:.2} s | {:.0} MiB/s | {:.0} MiB/s | {:.2}x | {:.2} s | {:.0} MiB/s | {:.2}x | {:.1} ms | {:.1} ms / {} KiB | {} | {} | {:.1} µs |",
            ck.as_secs_f64(),
            mib_s(len, ck),
            mib_s(len, raw),
            mib_s(len, ck) / mib_s(len, raw),
            cold.as_secs_f64(),
            mib_s(len, read),
            mib_s(len, cold) / mib_s(len, read),
            warm.as_secs_f64() * 1e3,
            first.as_secs_f64() * 1e3,
            first_bytes >> 10,
            tail_cells(&stalls, |s| &s.during),
            tail_cells(&stalls, |s| &s.busy),
            alone.as_secs_f64() * 1e6,
        );
        Segment::remove(&path, &opts)?;
    }
    machine.load_end = load_average();
    println!(
        "\nLoad average {:.2} at start, {:.2} at end; medians of {} run(s).",
        machine.load_start, machine.load_end, args.runs
    );
    Ok(())
}
