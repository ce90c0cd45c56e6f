//! The `crash-sim` command line.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use crash_sim::{campaign, EngineKind, Mode, WorkloadKind};

#[derive(Debug, Parser)]
#[command(
    name = "crash-sim",
    version,
    about = "Crash injection for vista and lrvm"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs one campaign; exits with 1 if anything was violated.
    Run(RunArgs),
    /// Runs campaigns against deliberately broken engines (build with `--features
    /// mutants`); exits with 1 if a mutant survives or a control fails.
    SelfTest {
        /// Print the runs as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Lists an engine's crash points.
    Points {
        /// vista, lrvm (= lrvm-flush), lrvm-flush, lrvm-noflush.
        #[arg(long, default_value = "vista", value_parser = parse_engine)]
        engine: EngineKind,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// vista, lrvm (= lrvm-flush), lrvm-flush, lrvm-noflush.
    #[arg(long, value_parser = parse_engine)]
    engine: EngineKind,
    /// bank, kv or pages (vista).
    #[arg(long, default_value = "bank", value_parser = parse_workload)]
    workload: WorkloadKind,
    /// kill, points, recovery, power, wild or compound.
    #[arg(long, value_parser = parse_mode)]
    mode: Mode,
    /// Time budget in seconds (the exhaustive modes stop early when done).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seed of everything random.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many cycles (kill, power, wild).
    #[arg(long)]
    cycles: Option<u64>,
    /// Longest random delay before a kill, in microseconds.
    #[arg(long, default_value_t = 400)]
    max_delay_us: u64,
    /// Work directory (default: a fresh one in /dev/shm, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Points and recovery modes: only this crash point.
    #[arg(long)]
    point: Option<String>,
    /// Points mode: only this hit of the point.
    #[arg(long)]
    hit: Option<u64>,
    /// Points and recovery modes: only this starting state (fresh, pending, cold,
    /// fresh+power, pending+power); compound mode: only this scenario.
    #[arg(long)]
    scenario: Option<String>,
    /// Go on after the first violation.
    #[arg(long)]
    keep_going: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    EngineKind::parse(s)
        .ok_or_else(|| format!("unknown engine {s}: vista, lrvm, lrvm-flush, lrvm-noflush"))
}

fn parse_workload(s: &str) -> Result<WorkloadKind, String> {
    WorkloadKind::parse(s).ok_or_else(|| format!("unknown workload {s}: bank, kv, pages"))
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s)
        .ok_or_else(|| format!("unknown mode {s}: kill, points, recovery, power, wild, compound"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Points { engine } => {
            let dir = std::env::temp_dir();
            let e = crash_sim::engine::engine(
                engine,
                crash_sim::engine::EngineConfig {
                    dir,
                    state_len: 8,
                    protection: vista::Protection::Auto,
                    emulate_power_loss: false,
                },
            );
            let rec = e.recovery_points();
            for p in e.crash_points() {
                let tag = if rec.contains(&p) { " (recovery)" } else { "" };
                println!("{p}{tag}");
            }
            ExitCode::SUCCESS
        }
        Command::Run(a) => run(a),
        Command::SelfTest { json } => self_test(json),
    }
}

fn self_test(json: bool) -> ExitCode {
    let runs = match crash_sim::selftest::run() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("crash-sim: {e:#}");
            return ExitCode::from(2);
        }
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&runs).expect("runs serialize")
        );
    } else {
        println!(
            "{:<24} {:<6} {:>10} {:>7}  command / first violation",
            "mutant", "result", "violations", "secs"
        );
        for r in &runs {
            let (name, verdict) = match (&r.mutant, r.ok) {
                (Some(m), true) => (m.as_str(), "caught"),
                (Some(m), false) => (m.as_str(), "SURVIVED"),
                (None, true) => ("(control)", "clean"),
                (None, false) => ("(control)", "FAILED"),
            };
            println!(
                "{name:<24} {verdict:<6} {:>10} {:>7.1}  {}",
                r.violations, r.seconds, r.command
            );
            if let Some(first) = &r.first {
                println!("{:<24} {:<6} {:>10} {:>7}  {first}", "", "", "", "");
            }
        }
    }
    if runs.iter().all(|r| r.ok) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn run(a: RunArgs) -> ExitCode {
    let mut cfg = campaign::Config::new(a.engine, a.workload, a.mode);
    cfg.seconds = a.seconds;
    cfg.seed = a.seed;
    cfg.cycles = a.cycles;
    cfg.max_delay_us = a.max_delay_us;
    cfg.dir = a.dir;
    cfg.point = a.point;
    cfg.hit = a.hit;
    cfg.scenario = a.scenario;
    cfg.keep_going = a.keep_going;
    cfg.progress = !a.quiet && !a.json && std::io::stderr().is_terminal();
    match campaign::run(cfg) {
        Ok(report) => {
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("a report serializes")
                );
            } else {
                print!("{}", report.table());
            }
            if report.violations.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("crash-sim: {e:#}");
            ExitCode::from(2)
        }
    }
}
