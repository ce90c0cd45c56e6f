//! YCSB's core workloads A, B and C on vista's persistent hash map and on the stores a
//! user would pick instead (`benches::ycsb` describes the workload and the engines).
//!
//! ```sh
//! cargo run --release -p benches --features pmdk --bin ycsb                  # every engine
//! cargo run --release -p benches --bin ycsb -- --engines vista-none,lmdb     # without PMDK
//! cargo run --release -p benches --features pmdk --bin ycsb -- --smoke       # seconds, for CI
//! ```
//!
//! Every engine is loaded with `--records` records before anything is timed; then every
//! cell (threads, mix, key distribution, engine) runs `--runs` times, interleaved: run 1
//! of every cell, then run 2 of every cell, ..., so a change in the machine's load hits
//! every engine alike. Each run measures `--seconds` after a quarter of that as warm-up;
//! after it the 1-minute load average is read. The tables show per cell the median
//! operations per second, the ratio of each vista configuration to the best other engine
//! in the same row, and the median p50 / p99 latency of one operation.
//!
//! A measured run (not `--smoke`) first waits up to 30 s for the 1-minute load average
//! to fall below the number of cores, and writes a warning under its machine line if it
//! did not ([`benches::machine::settle`]). At the end every engine's records are read
//! back: every key present once, every value its own with a checksum that recomputes
//! ([`benches::ycsb::verify`]); a failed check fails the command.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use benches::machine::{load_average, settle, Machine};
use benches::threads::run::{median, Sample, Summary};
use benches::threads::table::{micros, rate, thousands};
use benches::ycsb::run::{run, Cell, Plan};
use benches::ycsb::{verify, Dist, Engine, Keys, Mix, Store, DEFAULT_RECORDS, MAX_THREADS};
use clap::Parser;

/// YCSB A, B and C on vista's PHashMap, LMDB, SQLite, PMDK, redb and sled.
#[derive(Debug, Parser)]
struct Args {
    /// Records loaded into every engine before timing.
    #[arg(long, default_value_t = DEFAULT_RECORDS)]
    records: u64,
    /// Seconds measured per cell and run (after a quarter of it as warm-up).
    #[arg(long, default_value = "1")]
    seconds: f64,
    /// Runs of every cell (interleaved); the tables show medians.
    #[arg(long, default_value = "3")]
    runs: usize,
    /// Thread counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<u64>,
    /// Mixes: a (50% updates), b (5%), c (reads only).
    #[arg(long, value_delimiter = ',', value_enum, default_value = "a,b,c")]
    mixes: Vec<Mix>,
    /// Key distributions.
    #[arg(
        long,
        value_delimiter = ',',
        value_enum,
        default_value = "uniform,zipfian"
    )]
    dists: Vec<Dist>,
    /// Engines, in table order (default: every engine of this build; PMDK needs
    /// `--features pmdk`).
    #[arg(long, value_delimiter = ',', value_enum)]
    engines: Vec<Engine>,
    /// Seed of the threads' generators and of the Zipfian key order.
    #[arg(long, default_value = "42")]
    seed: u64,
    /// Where LMDB, SQLite and vista's disk image go (default: the system temp dir);
    /// vista's memory image goes to `$RIO_CACHE_DIR` or `/dev/shm`, PMDK's pool to
    /// `/dev/shm`.
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Also write the report to `DIR/ycsb.md` and every run to `DIR/ycsb.tsv`.
    #[arg(long)]
    results: Option<PathBuf>,
    /// A bounded run for CI: every engine, mix and distribution at 1 and 2 threads,
    /// 2,000 records, 20 ms per cell, one run (overrides those options).
    #[arg(long)]
    smoke: bool,
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.records = 2000;
        args.threads = vec![1, 2];
        args.seconds = 0.02;
        args.runs = 1;
    }
    if args.runs == 0 || !args.seconds.is_finite() || args.seconds <= 0.0 || args.records == 0 {
        bail!("--runs, --seconds and --records must be positive");
    }
    if args.threads.iter().any(|&t| t == 0 || t > MAX_THREADS) {
        bail!("thread counts must be 1 to {MAX_THREADS}");
    }
    if args.engines.is_empty() {
        args.engines = Engine::all();
    }
    let scratch = args.scratch.clone().unwrap_or_else(std::env::temp_dir);
    // Smoke numbers mean nothing, so CI does not wait; a measured run first waits for
    // the machine to quiet down, and says so next to its numbers if it did not.
    let load_warning = if args.smoke { None } else { settle() };
    let mut machine = Machine::detect(&scratch);
    machine.load_warning = load_warning;

    let mut stores: Vec<Box<dyn Store>> = Vec::new();
    for &e in &args.engines {
        eprintln!("{}: loading {} records ...", e.name(), args.records);
        stores.push(
            e.open(&scratch, args.records)
                .with_context(|| format!("{}: loading", e.name()))?,
        );
    }
    let keys = Keys::new(args.records, args.seed);

    // samples[threads][mix][dist][engine] = (sample, load) per run.
    let cells = |n: usize| vec![Vec::<(Cell, f64)>::new(); n];
    let mut samples = vec![
        vec![vec![cells(stores.len()); args.dists.len()]; args.mixes.len()];
        args.threads.len()
    ];
    let mut tsv = String::from(
        "engine\tthreads\tmix\tdist\trun\tops_per_s\tretries_per_op\tp50_us\tp99_us\tread_p50_us\tread_p99_us\tupdate_p50_us\tupdate_p99_us\tload1\n",
    );
    let measure = Duration::from_secs_f64(args.seconds);
    for r in 0..args.runs {
        for (ti, &threads) in args.threads.iter().enumerate() {
            for (mi, &mix) in args.mixes.iter().enumerate() {
                for (di, &dist) in args.dists.iter().enumerate() {
                    for (ei, store) in stores.iter().enumerate() {
                        let plan = Plan {
                            threads,
                            mix,
                            dist,
                            warm_up: measure / 4,
                            measure,
                            seed: args.seed.wrapping_add(1000 * r as u64 + 100 * ti as u64),
                        };
                        let name = args.engines[ei].name();
                        let cell = run(store.as_ref(), &keys, &plan).with_context(|| {
                            format!(
                                "{name}, {threads} thread(s), {} {}",
                                mix.name(),
                                dist.name()
                            )
                        })?;
                        let load = load_average();
                        let (s, rd, up) = (&cell.all, &cell.reads, &cell.updates);
                        eprintln!(
                            "run {} threads {threads} {} {:<8} {name:<14} {:>10} ops/s  p50 {:>6} µs  p99 {:>7} µs  retries/op {:>7}  load {load:.2}",
                            r + 1,
                            mix.name(),
                            dist.name(),
                            thousands(s.tps()),
                            micros(s.percentile_us(0.5)),
                            micros(s.percentile_us(0.99)),
                            rate(s.retry_rate()),
                        );
                        let _ = writeln!(
                            tsv,
                            "{name}\t{threads}\t{}\t{}\t{}\t{:.0}\t{:.6}\t{:.3}\t{:.3}\t{:.3}\t{:.3}\t{:.3}\t{:.3}\t{load:.2}",
                            mix.name(),
                            dist.name(),
                            r + 1,
                            s.tps(),
                            s.retry_rate(),
                            s.percentile_us(0.5),
                            s.percentile_us(0.99),
                            rd.percentile_us(0.5),
                            rd.percentile_us(0.99),
                            up.percentile_us(0.5),
                            up.percentile_us(0.99),
                        );
                        samples[ti][mi][di][ei].push((cell, load));
                    }
                }
            }
        }
    }
    for (e, store) in args.engines.iter().zip(&stores) {
        verify(args.records, store.as_ref())
            .with_context(|| format!("{}: the check after the runs", e.name()))?;
        eprintln!(
            "{}: all {} records present and whole",
            e.name(),
            args.records
        );
    }
    machine.load_end = load_average();

    let described: Vec<String> = args
        .engines
        .iter()
        .zip(&stores)
        .filter_map(|(e, s)| s.describe().map(|d| format!("{}: {d}.", e.name())))
        .collect();
    let doc = report(&args, &machine, &described, &samples);
    print!("{doc}");
    if let Some(dir) = &args.results {
        std::fs::create_dir_all(dir)?;
        for (file, text) in [("ycsb.md", &doc), ("ycsb.tsv", &tsv)] {
            let path = dir.join(file);
            std::fs::write(&path, text).with_context(|| path.display().to_string())?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

type Samples = Vec<Vec<Vec<Vec<Vec<(Cell, f64)>>>>>;

/// The Markdown report: the command, the machine, what the stores say of themselves, and
/// per thread count a throughput table (with the ratio columns and the load) and the
/// latency tables of reads and of updates.
fn report(args: &Args, machine: &Machine, described: &[String], samples: &Samples) -> String {
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut doc = String::new();
    let _ = writeln!(doc, "Command: `{command}`\n");
    let _ = writeln!(doc, "Machine: {}\n", machine.summary());
    if let Some(w) = &machine.load_warning {
        let _ = writeln!(doc, "**Warning: {w}.**\n");
    }
    for line in described {
        let _ = writeln!(doc, "{line}\n");
    }
    let _ = writeln!(
        doc,
        "{} records of a u64 key and a 100-byte value. Median of {} run(s) of {} s per \
         cell (after {} s of warm-up), interleaved; \"load\" is the median 1-minute load \
         average read after the row's runs; \"/ best other\" divides a vista column by the \
         fastest non-vista engine of the row.\n",
        args.records,
        args.runs,
        args.seconds,
        args.seconds / 4.0
    );
    let engines = &args.engines;
    let vistas: Vec<usize> = (0..engines.len())
        .filter(|&e| engines[e].is_vista())
        .collect();
    let peers: Vec<usize> = (0..engines.len())
        .filter(|&e| !engines[e].is_vista())
        .collect();
    let ratios = if peers.is_empty() {
        &[][..]
    } else {
        &vistas[..]
    };
    for (ti, &threads) in args.threads.iter().enumerate() {
        let plural = if threads == 1 { "" } else { "s" };
        let _ = writeln!(doc, "{threads} thread{plural}, operations per second:\n");
        doc.push_str("| mix | keys |");
        for e in engines {
            let _ = write!(doc, " {} |", e.name());
        }
        for &v in ratios {
            let _ = write!(doc, " {} / best other |", engines[v].name());
        }
        doc.push_str(" load |\n|---|---|");
        doc.push_str(&"---:|".repeat(engines.len() + ratios.len() + 1));
        doc.push('\n');
        for (mi, mix) in args.mixes.iter().enumerate() {
            for (di, dist) in args.dists.iter().enumerate() {
                let cell = &samples[ti][mi][di];
                let summaries: Vec<Summary> =
                    cell.iter().map(|runs| summary(runs, |c| &c.all)).collect();
                let _ = write!(doc, "| {} | {} |", mix.name(), dist.name());
                for s in &summaries {
                    let _ = write!(doc, " {} |", thousands(s.tps));
                }
                let best = peers.iter().map(|&p| summaries[p].tps).fold(0.0, f64::max);
                for &v in ratios {
                    let _ = write!(doc, " {:.2}x |", summaries[v].tps / best);
                }
                let load = median(cell.iter().flatten().map(|r| r.1).collect());
                let _ = writeln!(doc, " {load:.2} |");
            }
        }
        for (what, part) in [("reads", Part::Reads), ("updates", Part::Updates)] {
            let _ = writeln!(
                doc,
                "\n{threads} thread{plural}, latency of {what}, p50 / p99 µs (median of the runs' percentiles):\n"
            );
            doc.push_str("| mix | keys |");
            for e in engines {
                let _ = write!(doc, " {} |", e.name());
            }
            doc.push_str("\n|---|---|");
            doc.push_str(&"---:|".repeat(engines.len()));
            doc.push('\n');
            for (mi, mix) in args.mixes.iter().enumerate() {
                if part == Part::Updates && *mix == Mix::C {
                    continue;
                }
                for (di, dist) in args.dists.iter().enumerate() {
                    let _ = write!(doc, "| {} | {} |", mix.name(), dist.name());
                    for runs in &samples[ti][mi][di] {
                        let s = summary(runs, |c| part.of(c));
                        let _ = write!(doc, " {} / {} |", micros(s.p50), micros(s.p99));
                    }
                    doc.push('\n');
                }
            }
        }
        doc.push('\n');
    }
    doc
}

/// Which operations a latency table shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Reads,
    Updates,
}

impl Part {
    fn of(self, c: &Cell) -> &Sample {
        match self {
            Part::Reads => &c.reads,
            Part::Updates => &c.updates,
        }
    }
}

/// The medians over the runs of one part of a cell.
fn summary(runs: &[(Cell, f64)], part: impl Fn(&Cell) -> &Sample) -> Summary {
    Summary::of(&runs.iter().map(|r| part(&r.0).clone()).collect::<Vec<_>>())
}
