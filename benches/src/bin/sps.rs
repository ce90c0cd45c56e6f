//! SPS, the persistent transactional memory literature's benchmark, on vista beside the
//! PTMs themselves (`benches::threads::sps` and `benches::threads::ptm` describe both).
//!
//! ```sh
//! scripts/ptm-sps CHECKOUT                               # build the PTMs, run everything
//! cargo run --release -p benches --bin sps               # vista and the floor (no PTMs)
//! cargo run --release -p benches --bin sps -- --smoke    # seconds, for CI
//! ```
//!
//! A measured run (not `--smoke`) first waits up to 30 s for the 1-minute load average
//! to fall below the number of cores, and writes a warning under its machine line if it
//! did not ([`benches::machine::settle`]).
//!
//! Every cell (engine, threads, S) runs `--runs` times, interleaved: run 1 of every cell,
//! then run 2 of every cell, ..., so a change in the machine's load hits every engine
//! alike. After each run the 1-minute load average is read; the table shows per cell the
//! median transactions per second and, beside it, the median load of its runs. At the
//! end every vista array is read back and must still be a permutation of `0..n` (its sum
//! unchanged); the PTMs' benchmark asserts its own sum at the end of each run. A failed
//! check fails the command.
//!
//! Engines: `vista-none` (`Protection::None`, `Writeback::Manual`), `vista-default`
//! (`Options::default()`: `Protection::Auto`, background writeback), `vista-none-mutex`
//! (as `vista-none`, every transaction under one global mutex; not run unless named),
//! `vista-none-writeback` (as `vista-none` with the default background writeback: its
//! ratio to `vista-none` is what writeback costs; not run unless named), `floor` (the
//! least an undo log does, [`benches::threads::sps::FloorArray`]: what memory and a log
//! append cost per swap on this machine), and the PTM drivers found in `--ptm-dir`
//! (`oflf`, `quadrafc`, `romlogfc`, `trinitytl2`, `trinitytl2-clflushopt`).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use benches::machine::{load_average, settle, Machine};
use benches::threads::ptm::{self, Ptm};
use benches::threads::run::median;
use benches::threads::sps::{FloorArray, VistaArray};
use benches::workload::sps::{STANDARD_ENTRIES, SWAPS};
use clap::Parser;
use vista::{Options, Protection, Writeback};

/// SPS on vista and on the persistent transactional memories.
#[derive(Debug, Parser)]
struct Args {
    /// Engines, in table order (default: every PTM in --ptm-dir, then floor, vista-none
    /// and vista-default).
    #[arg(long, value_delimiter = ',')]
    engines: Vec<String>,
    /// Where `scripts/ptm-sps` put the PTM drivers (`sps-<name>`).
    #[arg(long)]
    ptm_dir: Option<PathBuf>,
    /// The durabletx commit the drivers were built from, for the report.
    #[arg(long)]
    ptm_commit: Option<String>,
    /// Thread counts.
    #[arg(long, value_delimiter = ',', default_value = "1,2")]
    threads: Vec<u64>,
    /// Swaps per transaction.
    #[arg(long, value_delimiter = ',', default_values_t = SWAPS)]
    swaps: Vec<u64>,
    /// Runs of every cell (interleaved); the table shows medians.
    #[arg(long, default_value = "5")]
    runs: usize,
    /// Seconds per run (whole seconds for the PTMs, whose benchmark counts in them).
    #[arg(long, default_value = "1")]
    seconds: f64,
    /// Entries of vista's and the floor's arrays (the PTMs' benchmark always has 10,000,000).
    #[arg(long, default_value_t = STANDARD_ENTRIES)]
    entries: u64,
    /// Where vista's segment files go (default: the system temp dir); the memory image
    /// goes to `$RIO_CACHE_DIR` or `/dev/shm`.
    #[arg(long)]
    scratch: Option<PathBuf>,
    /// Also write the report to `DIR/sps.md` and every run to `DIR/sps.tsv`.
    #[arg(long)]
    results: Option<PathBuf>,
    /// A bounded run for CI: vista and the floor only (no PTMs), 10,000 entries, 1 and 2
    /// threads, 20 ms per cell, one run (overrides those options).
    #[arg(long)]
    smoke: bool,
}

/// An engine of the run.
enum Engine {
    Vista {
        name: &'static str,
        array: Box<VistaArray>,
    },
    Floor(Box<FloorArray>),
    Ptm(Ptm),
}

/// The floor's name ([`FloorArray`]).
const FLOOR: &str = "floor";

impl Engine {
    fn name(&self) -> String {
        match self {
            Engine::Vista { name, .. } => (*name).into(),
            Engine::Floor(_) => FLOOR.into(),
            Engine::Ptm(p) => p.label.clone(),
        }
    }
}

const VISTA: [&str; 4] = [
    "vista-none",
    "vista-default",
    "vista-none-mutex",
    "vista-none-writeback",
];

fn open_vista(name: &'static str, args: &Args, scratch: &std::path::Path) -> Result<Engine> {
    let none = Options::new()
        .protection(Protection::None)
        .writeback(Writeback::Manual);
    let (opts, mutex) = match name {
        "vista-none" => (none, false),
        "vista-none-mutex" => (none, true),
        "vista-none-writeback" => (
            Options::new()
                .protection(Protection::None)
                .writeback(Writeback::default()),
            false,
        ),
        _ => (Options::default(), false),
    };
    let array = VistaArray::open(scratch, &opts, args.entries, mutex)
        .with_context(|| format!("{name}: loading {} entries", args.entries))?;
    Ok(Engine::Vista {
        name,
        array: Box::new(array),
    })
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    if args.smoke {
        args.entries = 10_000;
        args.threads = vec![1, 2];
        args.seconds = 0.02;
        args.runs = 1;
        args.ptm_dir = None;
    }
    if args.runs == 0 || !args.seconds.is_finite() || args.seconds <= 0.0 {
        bail!("--runs and --seconds must be positive");
    }
    if args.threads.iter().any(|&t| t == 0 || t > 64) || args.swaps.contains(&0) {
        bail!("thread counts must be 1 to 64 and swaps at least 1");
    }
    if args.entries == 0 {
        bail!("--entries must be at least 1");
    }
    let ptms = match &args.ptm_dir {
        Some(dir) => ptm::find(dir)?,
        None => Vec::new(),
    };
    if args.engines.is_empty() {
        args.engines = ptms.iter().map(|p| p.name.clone()).collect();
        args.engines
            .extend([FLOOR.into(), "vista-none".into(), "vista-default".into()]);
    }
    let scratch = args.scratch.clone().unwrap_or_else(std::env::temp_dir);
    // Smoke numbers mean nothing, so CI does not wait; a measured run first waits for
    // the machine to quiet down, and says so next to its numbers if it did not.
    let load_warning = if args.smoke { None } else { settle() };
    let mut machine = Machine::detect(&scratch);
    machine.load_warning = load_warning;
    let mut engines = Vec::new();
    for name in &args.engines {
        if let Some(&v) = VISTA.iter().find(|v| *v == name) {
            eprintln!("{v}: loading {} entries ...", args.entries);
            engines.push(open_vista(v, &args, &scratch)?);
        } else if name == FLOOR {
            eprintln!("{FLOOR}: loading {} entries ...", args.entries);
            let floor = FloorArray::open(args.entries)
                .with_context(|| format!("{FLOOR}: loading {} entries", args.entries))?;
            engines.push(Engine::Floor(Box::new(floor)));
        } else if let Some(p) = ptms.iter().find(|p| &p.name == name) {
            engines.push(Engine::Ptm(p.clone()));
        } else {
            let found: Vec<&str> = ptms.iter().map(|p| p.name.as_str()).collect();
            bail!(
                "unknown engine {name:?}: vista-none, vista-default, vista-none-mutex, \
                 vista-none-writeback, floor, or a \
                 PTM driver in --ptm-dir (found: {})",
                if found.is_empty() {
                    "none".into()
                } else {
                    found.join(", ")
                }
            );
        }
    }

    // samples[engine][threads][swaps] = (txn/s, load) per run.
    let mut samples =
        vec![vec![vec![Vec::new(); args.swaps.len()]; args.threads.len()]; engines.len()];
    let mut tsv = String::from("engine\tthreads\tswaps\trun\ttxn_per_s\tretries_per_txn\tload1\n");
    let window = Duration::from_secs_f64(args.seconds);
    for run in 0..args.runs {
        for (ti, &threads) in args.threads.iter().enumerate() {
            for (si, &swaps) in args.swaps.iter().enumerate() {
                for (ei, engine) in engines.iter().enumerate() {
                    // Retries per committed transaction: vista's only (the PTMs' benchmark
                    // does not report its aborts in a form read here).
                    let (tps, retries) = match engine {
                        Engine::Vista { array, .. } => {
                            let cell =
                                array.run(threads, swaps, window, 1000 * run as u64 + swaps)?;
                            (
                                cell.tps(),
                                format!("{:.4}", cell.retries as f64 / cell.commits.max(1) as f64),
                            )
                        }
                        Engine::Floor(floor) => (
                            floor
                                .run(threads, swaps, window, 1000 * run as u64 + swaps)?
                                .tps(),
                            "-".into(),
                        ),
                        Engine::Ptm(p) => (
                            p.run(threads, swaps, args.seconds.ceil() as u64)?,
                            "-".into(),
                        ),
                    };
                    let load = load_average();
                    eprintln!(
                        "run {} threads {threads} S={swaps} {:<26} {:>12.0} txn/s  retries/txn {retries:>6}  load {load:.2}",
                        run + 1,
                        engine.name(),
                        tps
                    );
                    let _ = writeln!(
                        tsv,
                        "{}\t{threads}\t{swaps}\t{}\t{tps:.0}\t{retries}\t{load:.2}",
                        engine.name(),
                        run + 1
                    );
                    samples[ei][ti][si].push((tps, load));
                }
            }
        }
    }
    for engine in &engines {
        match engine {
            Engine::Vista { name, array } => array
                .check()
                .with_context(|| format!("{name}: the SPS check after the runs"))?,
            Engine::Floor(floor) => floor
                .check()
                .with_context(|| format!("{FLOOR}: the SPS check after the runs"))?,
            Engine::Ptm(_) => {}
        }
    }
    machine.load_end = load_average();

    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let mut doc = String::new();
    let _ = writeln!(doc, "Command: `{command}`\n");
    let _ = writeln!(doc, "Machine: {}\n", machine.summary());
    if let Some(w) = &machine.load_warning {
        let _ = writeln!(doc, "**Warning: {w}.**\n");
    }
    if let Some(commit) = &args.ptm_commit {
        let _ = writeln!(doc, "PTMs: durabletx {commit}, built by scripts/ptm-sps.\n");
    }
    for engine in &engines {
        if let Engine::Vista { name, array } = engine {
            let _ = writeln!(
                doc,
                "{name}: {} entries, active protection {:?}.\n",
                array.segment().len() / 8,
                array.segment().protection()
            );
        }
    }
    let _ = writeln!(
        doc,
        "Median transactions per second of {} run(s) of {} s per cell, interleaved; in \
         brackets the median 1-minute load average read after each run; \"best PTM\" is the \
         fastest PTM without cache-line flushes in the same row.\n",
        args.runs, args.seconds
    );
    let tps =
        |ei: usize, ti: usize, si: usize| median(samples[ei][ti][si].iter().map(|r| r.0).collect());
    if engines.iter().any(|e| matches!(e, Engine::Floor(_))) {
        let _ = writeln!(
            doc,
            "{FLOOR}: the least an undo log does: before each store the word's offset and \
             old value are appended to a log, and a commit empties it; plain loads and \
             stores, no locks, checksums, page marks or guard. With t threads, thread k \
             swaps the entries whose index is k modulo t.\n"
        );
    }
    // The ratio columns: each vista engine and the floor against the best PTM that does
    // not flush.
    let vistas: Vec<usize> = (0..engines.len())
        .filter(|&e| matches!(engines[e], Engine::Vista { .. } | Engine::Floor(_)))
        .collect();
    let peers: Vec<usize> = (0..engines.len())
        .filter(|&e| matches!(&engines[e], Engine::Ptm(p) if !p.flushes()))
        .collect();
    let ratios = if peers.is_empty() {
        &[][..]
    } else {
        &vistas[..]
    };
    for (ti, &threads) in args.threads.iter().enumerate() {
        let _ = writeln!(
            doc,
            "{threads} thread{}:\n",
            if threads == 1 { "" } else { "s" }
        );
        doc.push_str("| S |");
        for e in &engines {
            let _ = write!(doc, " {} |", e.name());
        }
        for &v in ratios {
            let _ = write!(doc, " {} / best PTM |", engines[v].name());
        }
        doc.push_str("\n|---:|");
        doc.push_str(&"---:|".repeat(engines.len() + ratios.len()));
        doc.push('\n');
        for (si, &swaps) in args.swaps.iter().enumerate() {
            let _ = write!(doc, "| {swaps} |");
            for (ei, per_engine) in samples.iter().enumerate() {
                let load = median(per_engine[ti][si].iter().map(|r| r.1).collect());
                let _ = write!(doc, " {} ({load:.1}) |", short(tps(ei, ti, si)));
            }
            let best = peers.iter().map(|&p| tps(p, ti, si)).fold(0.0, f64::max);
            for &v in ratios {
                let _ = write!(doc, " {:.2}x |", tps(v, ti, si) / best);
            }
            doc.push('\n');
        }
        doc.push('\n');
    }
    print!("{doc}");
    if let Some(dir) = &args.results {
        std::fs::create_dir_all(dir)?;
        for (file, text) in [("sps.md", &doc), ("sps.tsv", &tsv)] {
            let path = dir.join(file);
            std::fs::write(&path, text).with_context(|| path.display().to_string())?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// Three significant digits with a k or M suffix: `4.33M`, `942k`, `72.7k`, `812`.
fn short(v: f64) -> String {
    let (x, suffix) = if v >= 1e6 {
        (v / 1e6, "M")
    } else if v >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    if x >= 100.0 || suffix.is_empty() {
        format!("{x:.0}{suffix}")
    } else if x >= 10.0 {
        format!("{x:.1}{suffix}")
    } else {
        format!("{x:.2}{suffix}")
    }
}
