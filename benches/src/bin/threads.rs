//! Debit-credit from many threads: vista against the peers with the locking a user of
//! each would need (`benches::threads` describes the workload and the engines).
//!
//! ```sh
//! cargo run --release -p benches --features pmdk --bin threads                 # scaling, every engine
//! cargo run --release -p benches --bin threads -- --mode stall                 # vista's checkpoint stall
//! cargo run --release -p benches --features pmdk --bin threads -- --smoke      # seconds, for CI
//! ```
//!
//! `--mode scale` (the default) runs each engine and shape at every thread count, `--runs`
//! times (interleaved, so a change in the machine's load hits every thread count alike),
//! and prints per cell the median transactions per second, its ratio to one thread, the
//! runs' range, retries per committed transaction and the median p50 / p99 / p99.9
//! latency of a whole transaction (retries included).
//!
//! `--mode stall` runs vista alone, each thread count with `Writeback::Manual` (no
//! checkpoint while measuring) and with `Writeback::Background` (a checkpoint every
//! `--checkpoint-ms` while pages are dirty, or after `--dirty-mib`), and prints the
//! latency percentiles side by side (and how long the last checkpoint of each run took):
//! what a running checkpoint costs the transactions.
//!
//! Either mode (not `--smoke`) first waits up to 30 s for the 1-minute load average to
//! fall below the number of cores, and writes a warning under its machine line if it did
//! not ([`benches::machine::settle`]).
//!
//! Every run ends with a check that each table's balances sum to the deltas of every
//! committed transaction (a lost update fails the run). `--results DIR` also writes the
//! report to `DIR/threads-<mode>.md`, and in scale mode the figure `DIR/threads-scale.svg`
//! and `.png` (transactions per second against threads, log-log, a panel per shape).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use benches::machine::{load_average, settle, Machine};
use benches::threads::plot::write_scale;
use benches::threads::run::{median, run, Plan, Sample, Summary};
use benches::threads::table::{self, ScaleRow, StallRow};
use benches::threads::vista::{default_options, VistaBank};
use benches::threads::{Bank, Engine, Shape, MAX_THREADS};
use clap::{Parser, ValueEnum};
use vista::Writeback;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// Throughput, retries and latency against thread count, every engine.
    Scale,
    /// vista's latency with and without background checkpoints.
    Stall,
}

/// Debit-credit from many threads.
#[derive(Debug, Parser)]
struct Args {
    /// What to measure.
    #[arg(long, value_enum, default_value = "scale")]
    mode: Mode,
    /// Thread counts (the first is the base of the "vs 1 thread" column).
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,8")]
    threads: Vec<u64>,
    /// Engines (default: every engine of this build; PMDK needs `--features pmdk`).
    #[arg(long, value_delimiter = ',', value_enum)]
    engines: Vec<Engine>,
    /// Workload shapes (default: both in scale mode, uniform in stall mode).
    #[arg(long, value_delimiter = ',', value_enum)]
    shapes: Vec<Shape>,
    /// Seconds measured per cell and run (after a quarter of it as warm-up).
    #[arg(long, default_value = "1")]
    seconds: f64,
    /// Runs of every cell; the tables show medians.
    #[arg(long, default_value = "3")]
    runs: usize,
    /// Stall mode: the background writeback's interval in ms.
    #[arg(long, default_value = "50")]
    checkpoint_ms: u64,
    /// Stall mode: dirty MiB that trigger an early background checkpoint.
    #[arg(long, default_value = "16")]
    dirty_mib: u64,
    /// Seed of the threads' generators.
    #[arg(long, default_value = "1")]
    seed: u64,
    /// Where engines keep their files (default: the system temp dir); vista's memory
    /// image goes to `$RIO_CACHE_DIR` or `/dev/shm`.
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Also write the report to `DIR/threads-<mode>.md`.
    #[arg(long)]
    results: Option<PathBuf>,
    /// A bounded run for CI: 1 and 2 threads, 20 ms per cell, one run, checkpoints at
    /// most 5 ms apart in stall mode (overrides those options).
    #[arg(long)]
    smoke: bool,
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.threads = vec![1, 2];
        args.seconds = 0.02;
        args.runs = 1;
        args.checkpoint_ms = args.checkpoint_ms.min(5);
    }
    if args.threads.is_empty() || args.threads.iter().any(|&t| t == 0 || t > MAX_THREADS) {
        bail!("thread counts must be between 1 and {MAX_THREADS}");
    }
    if args.runs == 0 || !args.seconds.is_finite() || args.seconds <= 0.0 {
        bail!("--runs and --seconds must be positive");
    }
    if args.engines.is_empty() {
        args.engines = Engine::all();
    }
    if let Some(e) = args.engines.iter().find(|e| !e.available()) {
        bail!("{} needs `--features pmdk`", e.name());
    }
    if args.shapes.is_empty() {
        args.shapes = match args.mode {
            Mode::Scale => vec![Shape::Uniform, Shape::Hotspot],
            Mode::Stall => vec![Shape::Uniform],
        };
    }
    let scratch = args.scratch.clone().unwrap_or_else(std::env::temp_dir);
    // Smoke numbers mean nothing, so CI does not wait; a measured run first waits for
    // the machine to quiet down, and says so next to its numbers if it did not.
    let load_warning = if args.smoke { None } else { settle() };
    let mut machine = Machine::detect(&scratch);
    machine.load_warning = load_warning;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let (body, rows) = match args.mode {
        Mode::Scale => {
            let rows = scale(&args, &scratch)?;
            (table::scale(&rows), rows)
        }
        Mode::Stall => (stall(&args, &scratch)?, Vec::new()),
    };
    machine.load_end = load_average();
    let mut doc = String::new();
    let _ = writeln!(doc, "Command: `{command}`\n");
    let _ = writeln!(doc, "Machine: {}\n", machine.summary());
    if let Some(w) = &machine.load_warning {
        let _ = writeln!(doc, "**Warning: {w}.**\n");
    }
    let _ = writeln!(
        doc,
        "{} s measured per cell after {} s of warm-up, medians of {} run(s).\n",
        args.seconds,
        args.seconds / 4.0,
        args.runs
    );
    doc.push_str(&body);
    print!("{doc}");
    if let Some(dir) = &args.results {
        std::fs::create_dir_all(dir)?;
        let name = match args.mode {
            Mode::Scale => "threads-scale.md",
            Mode::Stall => "threads-stall.md",
        };
        let path = dir.join(name);
        if !rows.is_empty() {
            let footer = format!(
                "{}, {} cores; load average {:.2} at start, {:.2} at end; {} s per cell, medians of {} runs",
                machine.cpu,
                machine.cores,
                machine.load_start,
                machine.load_end,
                args.seconds,
                args.runs
            );
            match write_scale(&rows, dir, &footer)? {
                Ok((_svg, png)) => {
                    let _ = writeln!(
                        doc,
                        "\n![transactions per second against threads]({})",
                        png.file_name().unwrap_or_default().to_string_lossy()
                    );
                }
                Err(why) => {
                    let _ = writeln!(doc, "\nNo figure: {why}");
                }
            }
        }
        std::fs::write(&path, &doc).with_context(|| path.display().to_string())?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn plan(args: &Args, shape: Shape, threads: u64, run: usize) -> Plan {
    Plan {
        threads,
        shape,
        warm_up: Duration::from_secs_f64(args.seconds / 4.0),
        measure: Duration::from_secs_f64(args.seconds),
        seed: args.seed.wrapping_add(1000 * run as u64),
    }
}

/// Runs every thread count `args.runs` times on `bank` (interleaved), checks the balances,
/// and returns the samples per thread count.
fn cells(
    bank: &dyn Bank,
    args: &Args,
    shape: Shape,
    probe: &(dyn Fn() -> u64 + Sync),
) -> Result<Vec<Vec<Sample>>> {
    let mut samples = vec![Vec::new(); args.threads.len()];
    let mut committed = 0i64;
    for r in 0..args.runs {
        for (i, &threads) in args.threads.iter().enumerate() {
            let (sample, deltas) = run(bank, &plan(args, shape, threads, r), probe)?;
            committed = committed.wrapping_add(deltas);
            samples[i].push(sample);
        }
    }
    bank.totals()?.check(committed)?;
    Ok(samples)
}

fn scale(args: &Args, scratch: &std::path::Path) -> Result<Vec<ScaleRow>> {
    let mut rows = Vec::new();
    for &engine in &args.engines {
        for &shape in &args.shapes {
            eprintln!("{} {} ...", engine.name(), shape.name());
            let bank = engine.open(scratch)?;
            let samples = cells(bank.as_ref(), args, shape, &|| 0)
                .with_context(|| format!("{} {}", engine.name(), shape.name()))?;
            let summaries: Vec<Summary> = samples.iter().map(|s| Summary::of(s)).collect();
            let base = (args.threads[0] == 1).then(|| summaries[0].tps);
            for (&threads, summary) in args.threads.iter().zip(summaries) {
                rows.push(ScaleRow {
                    engine: engine.name().into(),
                    shape: shape.name().into(),
                    threads,
                    summary,
                    base_tps: base,
                });
            }
        }
    }
    Ok(rows)
}

fn stall(args: &Args, scratch: &std::path::Path) -> Result<String> {
    let background = Writeback::Background {
        interval: Duration::from_millis(args.checkpoint_ms),
        dirty_bytes: args.dirty_mib << 20,
    };
    let configs = [
        ("manual".to_string(), Writeback::Manual),
        (
            format!(
                "background {} ms / {} MiB",
                args.checkpoint_ms, args.dirty_mib
            ),
            background,
        ),
    ];
    let mut rows = Vec::new();
    for &shape in &args.shapes {
        eprintln!("vista {} ...", shape.name());
        // Both segments stay open and their cells alternate, so a change in the machine's
        // load hits both alike.
        let banks = configs
            .iter()
            .map(|(_, w)| VistaBank::open(scratch, &default_options().writeback(*w), false))
            .collect::<Result<Vec<_>>>()?;
        let mut samples = vec![vec![Vec::new(); args.threads.len()]; banks.len()];
        let mut committed = vec![0i64; banks.len()];
        let mut last_checkpoint = vec![vec![Vec::new(); args.threads.len()]; banks.len()];
        for r in 0..args.runs {
            for (i, &threads) in args.threads.iter().enumerate() {
                for (b, bank) in banks.iter().enumerate() {
                    let probe = || bank.segment().cache_stats().checkpoints;
                    let (sample, deltas) = run(bank, &plan(args, shape, threads, r), &probe)
                        .with_context(|| format!("vista {} {}", shape.name(), configs[b].0))?;
                    committed[b] = committed[b].wrapping_add(deltas);
                    samples[b][i].push(sample);
                    if let Some(d) = bank.segment().cache_stats().last_checkpoint {
                        last_checkpoint[b][i].push(d.as_secs_f64() * 1e3);
                    }
                }
            }
        }
        for (bank, committed) in banks.iter().zip(&committed) {
            bank.totals()?.check(*committed)?;
        }
        for (i, &threads) in args.threads.iter().enumerate() {
            for (b, (name, _)) in configs.iter().enumerate() {
                rows.push(StallRow {
                    shape: shape.name().into(),
                    threads,
                    writeback: name.clone(),
                    summary: Summary::of(&samples[b][i]),
                    seconds: args.seconds,
                    checkpoint_ms: (!last_checkpoint[b][i].is_empty())
                        .then(|| median(last_checkpoint[b][i].clone())),
                });
            }
        }
    }
    Ok(table::stall(&rows))
}
