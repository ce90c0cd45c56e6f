//! Crash-testing a vista application: the user's workload and oracle under the same
//! faults as the built-in workloads.
//!
//! The application implements [`App`]: [`App::run`] performs transactions on a vista
//! [`Segment`](vista::Segment) in a forked child process and acknowledges each completed operation
//! through [`Acks`]; [`App::check`] opens nothing itself: it is handed the recovered
//! segment and the [`History`] of acknowledged operations, and says whether the one is
//! consistent with the other. [`run`] drives it through one [`Mode`]:
//!
//! - **kill**: fork, recover, check the previous crash, run, `SIGKILL` after a seeded
//!   random delay; the state carries over from cycle to cycle;
//! - **power**: the same, then power loss through the vista adapter's
//!   [`Engine::power_fail`](crate::engines::Engine::power_fail) (the built-in power
//!   mode's cut); half the cycles instead die at a random checkpoint crash point;
//! - **points**: every vista and rio-cache crash point, every hit, from three starting
//!   states (`fresh`; `pending`: a transaction cut short; `cold`: a checkpoint cut
//!   short, then power loss); each kill is checked as a process crash and, from the disk
//!   files alone, as a power loss;
//! - **recovery**: recovery itself killed at every recovery point and hit, and again
//!   during the next recovery (depth 2), then checked, from the `pending` and `cold`
//!   states.
//!
//! Reports, `--json` and replay lines are those of `crash-sim run`; [`main`] is a
//! ready-made `main` for a crash-test binary with the same options.
//!
//! ```no_run
//! use crash_sim::app::{self, Acks, App, History};
//! use vista::{Options, Segment};
//!
//! /// A counter that must never lose an acknowledged increment.
//! #[derive(Debug)]
//! struct Counter;
//!
//! impl App for Counter {
//!     fn name(&self) -> &str {
//!         "counter"
//!     }
//!     fn options(&self) -> Options {
//!         Options::new().size(4096).undo_log_size(4096).lanes(1)
//!     }
//!     fn run(&self, seg: &mut Segment, acks: &mut Acks<'_>) -> anyhow::Result<()> {
//!         while acks.more() {
//!             let n = seg.transaction(|tx| {
//!                 let n = tx.get::<u64>(0)? + 1;
//!                 tx.put(0, &n)?;
//!                 Ok::<_, vista::Error>(n)
//!             })?;
//!             acks.ack(&n.to_le_bytes())?;
//!         }
//!         Ok(())
//!     }
//!     fn check(&self, seg: &Segment, history: &History) -> Result<(), String> {
//!         let n = seg.get::<u64>(0).map_err(|e| e.to_string())?;
//!         match history.required().last() {
//!             Some(op) if n < u64::from_le_bytes(op[..8].try_into().unwrap()) => {
//!                 Err(format!("counter {n} lost acknowledged increments"))
//!             }
//!             _ => Ok(()),
//!         }
//!     }
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     // `counter --mode points`, `counter --mode kill --seconds 30 --json`, ...
//!     app::main(&Counter)
//! }
//! ```
//!
//! Call [`run`] (or [`main`]) from a single-threaded process, as the built-in campaigns
//! do (see [`crate::harness::worker`]): it forks. `crash-sim/examples/ledger.rs` and its
//! broken twin `ledger_broken.rs` are complete examples; docs/crash-testing.md explains
//! the contract.

mod application;
mod channel;
pub mod heap;
mod history;
mod kill;
mod points;
mod recovery;
mod worker;

use std::process::ExitCode;

use anyhow::{bail, Result};

use crate::engines::{CrashModel, EngineKind};
use crate::harness::config::{Config, Mode};
use crate::harness::ctx::Ctx;
use crate::report::Report;
use crate::workloads::WorkloadKind;

pub use application::App;
pub use channel::Acks;
pub use history::{History, Ops};
pub use points::SCRIPT_OPS;
use worker::Harness;

/// What a campaign against an [`App`] does.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// The campaign: mode (kill, power, points or recovery; `wild` is for the built-in
    /// engines only), seed, budgets, point/hit/scenario selection, progress bar, with the
    /// defaults of `crash-sim run`. Its `engine` and `workload` are not used: the
    /// engine is vista, the workload the application.
    pub campaign: Config,
    /// The command that reruns this campaign, to which replay lines add their options
    /// (default: this program's name, which suits a binary whose `main` is [`main`]).
    pub command: String,
}

impl AppConfig {
    /// The defaults for `mode`.
    pub fn new(mode: Mode) -> AppConfig {
        AppConfig {
            campaign: Config::new(EngineKind::Vista, WorkloadKind::Bank, mode),
            command: std::env::args()
                .next()
                .unwrap_or_else(|| "crash-test".into()),
        }
    }
}

/// Runs a campaign against `app`.
///
/// # Errors
/// Harness failures (fork, files, an `init` that fails, the `wild` mode); what the
/// application does wrong is reported as violations.
pub fn run(app: &dyn App, cfg: &AppConfig) -> Result<Report> {
    crash_point::disarm();
    if matches!(cfg.campaign.mode, Mode::Wild | Mode::Compound | Mode::Io) {
        bail!(
            "the {} mode is for the built-in engines only",
            cfg.campaign.mode.name()
        );
    }
    let mode = cfg.campaign.mode;
    let mut ctx = Ctx::new(cfg.campaign.clone())?;
    ctx.report.engine = "vista".into();
    ctx.report.workload = app.name().into();
    ctx.report.notes.clear();
    ctx.set_replay(
        format!(
            "{} --mode {} --seed {}",
            cfg.command,
            cfg.campaign.mode.name(),
            cfg.campaign.seed
        ),
        String::new(),
    );
    match mode {
        Mode::Kill => Harness::new(app, &ctx, "kill").kill(&mut ctx, CrashModel::Process)?,
        Mode::Power => Harness::new(app, &ctx, "power").kill(&mut ctx, CrashModel::Power)?,
        Mode::Points => points::run(app, &mut ctx)?,
        Mode::Recovery => recovery::run(app, &mut ctx)?,
        Mode::Wild | Mode::Compound | Mode::Io => unreachable!("refused above"),
    }
    Ok(ctx.finish())
}

/// The options of [`main`]: those of `crash-sim run` without engine and workload.
#[derive(Debug, clap::Parser)]
#[command(about = "Crash-tests a vista application with crash-sim")]
struct Args {
    /// kill, points, recovery or power.
    #[arg(long, default_value = "kill", value_parser = parse_mode)]
    mode: Mode,
    #[command(flatten)]
    campaign: crate::cli::CampaignArgs,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    match Mode::parse(s) {
        Some(Mode::Wild | Mode::Compound | Mode::Io) | None => {
            Err(format!("unknown mode {s}: kill, points, recovery, power"))
        }
        Some(m) => Ok(m),
    }
}

/// A complete `main` for a crash-test binary of `app`: parses the options of
/// `crash-sim run` (`--mode`, `--seconds`, `--seed`, `--cycles`, `--max-delay-us`,
/// `--dir`, `--point`, `--hit`, `--scenario`, `--keep-going`, `--json`, `--quiet`), runs
/// the campaign, prints the summary (or the JSON report) and returns exit code 1 if
/// anything was violated, 2 on errors (clap's usage errors too), 0 otherwise.
pub fn main(app: &dyn App) -> ExitCode {
    use clap::Parser;
    let a = Args::parse();
    let mut cfg = AppConfig::new(a.mode);
    a.campaign.apply(&mut cfg.campaign);
    crate::report::print(run(app, &cfg), a.campaign.json)
}
