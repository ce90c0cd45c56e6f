//! The benchmark suite binary: `cargo run --release -p benches -- quick`.
//!
//! Runs the selected engines through the synthetic, debit-credit and order-entry workloads,
//! prints the report (engine legend, the paper's comparison, one Markdown table per workload:
//! median ns per transaction, transactions per second, ratio to the reference engine), and
//! writes `<mode>.json`, `<mode>.md` (the report with its figures) and the figures as SVG
//! and PNG into the results directory.
//!
//! `quick` and `full` first wait up to [`benches::machine::QUIET_WAIT`] for the 1-minute load average to fall
//! below the number of cores (the build that usually precedes them leaves it high); if it
//! does not, the run goes ahead, and says so on stderr and in the report.

use std::path::PathBuf;

use anyhow::{Context, Result};
use benches::machine::settle;
use benches::registry::engines;
use benches::suite::{run, Plan};
use benches::workload::Family;
use clap::{Parser, ValueEnum};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Mode {
    /// Five transaction sizes, 300 ms per cell (after 100 ms warm-up): under two minutes on two cores.
    Quick,
    /// Every power of two from 8 B to 64 KiB, 2 s per cell.
    Full,
    /// Every engine and workload with tiny tables, a 1 MiB segment and ~10 ms per cell:
    /// seconds, for CI (checks the adapters; the numbers mean little).
    Smoke,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum WorkloadArg {
    Synthetic,
    DebitCredit,
    OrderEntry,
    Sps,
}

/// Vista-rs benchmark suite: transaction overhead and throughput across engines.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// `quick`, `full` or `smoke`.
    #[arg(value_enum, default_value = "quick")]
    mode: Mode,
    /// Comma-separated engine names (default: all of this build). `--list` shows them.
    #[arg(long, value_delimiter = ',')]
    engines: Vec<String>,
    /// Comma-separated workloads (default: all).
    #[arg(long, value_delimiter = ',', value_enum)]
    workloads: Vec<WorkloadArg>,
    /// Synthetic segment size in MiB (default 64; 1 in `smoke`).
    #[arg(long)]
    segment_mib: Option<u64>,
    /// Where the JSON, Markdown and figures (SVG, PNG) go.
    #[arg(long, default_value = "results")]
    results: PathBuf,
    /// Directory on a real file system for LMDB's and SQLite's files (their sync
    /// configurations fsync here).
    #[arg(long, default_value_os_t = std::env::temp_dir())]
    scratch: PathBuf,
    /// List the engines of this build and exit.
    #[arg(long)]
    list: bool,
}

fn main() -> Result<()> {
    let args = Args::parse();
    if args.list {
        for e in engines(&[])? {
            let note = e
                .supported()
                .err()
                .map(|r| format!("  [unsupported here: {r}]"))
                .unwrap_or_default();
            println!("{:<16} {}{note}", e.name, e.about);
        }
        return Ok(());
    }
    let selected = engines(&args.engines)?;
    let mut plan = match args.mode {
        Mode::Quick => Plan::quick(args.scratch.clone()),
        Mode::Full => Plan::full(args.scratch.clone()),
        Mode::Smoke => Plan::smoke(args.scratch.clone()),
    };
    if let Some(mib) = args.segment_mib {
        anyhow::ensure!(mib >= 1, "--segment-mib must be at least 1");
        plan.segment_len = mib << 20;
    }
    if !args.workloads.is_empty() {
        plan.families = args
            .workloads
            .iter()
            .map(|w| match w {
                WorkloadArg::Synthetic => Family::Synthetic,
                WorkloadArg::DebitCredit => Family::DebitCredit,
                WorkloadArg::OrderEntry => Family::OrderEntry,
                WorkloadArg::Sps => Family::Sps,
            })
            .collect();
    }
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let load_warning = match args.mode {
        // Smoke numbers mean nothing; CI should not wait.
        Mode::Smoke => None,
        Mode::Quick | Mode::Full => settle(),
    };
    eprintln!("running {} on {} engines", plan.mode, selected.len());
    let mut report = run(&plan, &selected, command, |line| eprintln!("  {line}"));
    report.machine.load_warning = load_warning;

    std::fs::create_dir_all(&args.results)
        .with_context(|| format!("creating {}", args.results.display()))?;
    let figures = benches::plot::write_plots(&report, &args.results, plan.mode)?;
    println!("\n{}", report.document(&[]));
    let json = args.results.join(format!("{}.json", plan.mode));
    std::fs::write(&json, serde_json::to_string_pretty(&report)?)?;
    let md = args.results.join(format!("{}.md", plan.mode));
    let mut doc = report.document(&figures.figures);
    if let Some(why) = &figures.not_drawn {
        doc.push_str("\nNo figures: ");
        doc.push_str(why);
        doc.push_str(".\n");
        eprintln!("no figures drawn: {why}");
    }
    std::fs::write(&md, doc)?;
    let mut written = vec![json, md];
    for f in figures.figures {
        written.extend([f.svg, f.png]);
    }
    for p in written {
        println!("wrote {}", p.display());
    }
    let failed = report
        .rows
        .iter()
        .filter(|r| matches!(r.outcome, benches::suite::Outcome::Failed { .. }))
        .count();
    anyhow::ensure!(failed == 0, "{failed} cells failed; see the tables above");
    Ok(())
}
