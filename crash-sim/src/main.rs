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
    /// Crash-tests any program: starts it, SIGKILLs it (with its process group) after a
    /// seeded random delay, runs CHECK_CMD through `sh -c` (exit 0: consistent), repeats
    /// until the time is up. Exits with 1 if a check failed, 2 on usage or harness errors.
    Exec(ExecArgs),
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
    /// bank, kv, pages (vista) or xseg (vista: transactions across two segments).
    #[arg(long, default_value = "bank", value_parser = parse_workload)]
    workload: WorkloadKind,
    /// kill, points, recovery, power, wild, compound or io.
    #[arg(long, value_parser = parse_mode)]
    mode: Mode,
    /// Threads per worker, each running transactions on the one segment (vista; bank and
    /// kv; kill, power and io modes; at most 64). 1: the serial worker.
    #[arg(long, default_value_t = 1)]
    threads: u32,
    #[command(flatten)]
    campaign: crash_sim::cli::CampaignArgs,
}

#[derive(Debug, clap::Args)]
struct ExecArgs {
    /// Time budget in seconds.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Seed of the kill delays.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// The consistency check, run through `sh -c` in the working directory after each
    /// kill: exit 0 means consistent; anything else is a violation (its output is shown).
    #[arg(long, value_name = "CHECK_CMD")]
    check: String,
    /// Stop after this many cycles.
    #[arg(long)]
    cycles: Option<u64>,
    /// Shortest delay before the kill, in milliseconds.
    #[arg(long, default_value_t = 0.0)]
    min_delay_ms: f64,
    /// Longest delay before the kill, in milliseconds.
    #[arg(long, default_value_t = 100.0)]
    max_delay_ms: f64,
    /// Start the kill clock when the program prints a line containing this on stdout.
    #[arg(long, value_name = "TEXT")]
    ready: Option<String>,
    /// Seconds to wait for the ready line (not coming up in time is a violation).
    #[arg(long, default_value_t = 30.0)]
    ready_timeout: f64,
    /// Run once through `sh -c` in the working directory before the first cycle.
    #[arg(long, value_name = "CMD")]
    setup: Option<String>,
    /// Power loss for vista programs: RIO_CACHE_DIR is private to this run and wiped
    /// after each kill, before the check.
    #[arg(long)]
    power_loss: bool,
    /// The run's directory (default: a fresh one in /dev/shm, removed afterwards);
    /// DIR/work is the working directory of the program, the check and the setup.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Go on after a violation (the working directory is emptied and set up again).
    #[arg(long)]
    keep_going: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// The program and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    program: Vec<String>,
}

fn parse_engine(s: &str) -> Result<EngineKind, String> {
    EngineKind::parse(s)
        .ok_or_else(|| format!("unknown engine {s}: vista, lrvm, lrvm-flush, lrvm-noflush"))
}

fn parse_workload(s: &str) -> Result<WorkloadKind, String> {
    WorkloadKind::parse(s).ok_or_else(|| format!("unknown workload {s}: bank, kv, pages, xseg"))
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    Mode::parse(s).ok_or_else(|| {
        format!("unknown mode {s}: kill, points, recovery, power, wild, compound, io")
    })
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
        Command::Run(a) => run(&a),
        Command::Exec(a) => exec(a),
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

fn secs(s: f64, what: &str) -> Result<std::time::Duration, String> {
    std::time::Duration::try_from_secs_f64(s).map_err(|e| format!("{what}: {e}"))
}

fn exec(a: ExecArgs) -> ExitCode {
    let mut cfg = crash_sim::exec::ExecConfig::new(a.program, a.check);
    let delays = (|| {
        Ok::<_, String>((
            secs(a.min_delay_ms / 1e3, "--min-delay-ms")?,
            secs(a.max_delay_ms / 1e3, "--max-delay-ms")?,
            secs(a.ready_timeout, "--ready-timeout")?,
        ))
    })();
    match delays {
        Ok((min, max, ready)) => {
            cfg.min_delay = min;
            cfg.max_delay = max;
            cfg.ready_timeout = ready;
        }
        Err(e) => {
            eprintln!("crash-sim: {e}");
            return ExitCode::from(2);
        }
    }
    cfg.seconds = a.seconds;
    cfg.seed = a.seed;
    cfg.cycles = a.cycles;
    cfg.ready = a.ready;
    cfg.setup = a.setup;
    cfg.power_loss = a.power_loss;
    cfg.dir = a.dir;
    cfg.keep_going = a.keep_going;
    cfg.progress = !a.quiet && !a.json && std::io::stderr().is_terminal();
    crash_sim::report::print(crash_sim::exec::run(&cfg), a.json)
}

fn run(a: &RunArgs) -> ExitCode {
    let mut cfg = campaign::Config::new(a.engine, a.workload, a.mode);
    a.campaign.apply(&mut cfg);
    cfg.threads = a.threads;
    crash_sim::report::print(campaign::run(cfg), a.campaign.json)
}
