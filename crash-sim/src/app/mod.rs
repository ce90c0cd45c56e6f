//! Crash-testing a vista application: the user's workload and oracle under the same
//! faults as the built-in workloads.
//!
//! The application implements [`App`]: [`App::run`] performs transactions on a vista
//! [`Segment`] in a forked child process and acknowledges each completed operation
//! through [`Acks`]; [`App::check`] opens nothing itself: it is handed the recovered
//! segment and the [`History`] of acknowledged operations, and says whether the one is
//! consistent with the other. [`run`] drives it through one [`Mode`]:
//!
//! - **kill**: fork, recover, check the previous crash, run, `SIGKILL` after a seeded
//!   random delay; the state carries over from cycle to cycle;
//! - **power**: the same, then power loss through the vista adapter's
//!   [`Engine::power_fail`] (the built-in power mode's cut); half the cycles instead die
//!   at a random checkpoint crash point;
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
//! do (see [`crate::harness::worker`]): it forks. `crash-sim/examples/ledger.rs` and its broken
//! twin `ledger_broken.rs` are complete examples; docs/crash-testing.md explains the
//! contract.

pub mod heap;

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};
use vista::{Options, Segment, StartKind};

use crate::engines::vista::VistaEngine;
use crate::engines::{CrashModel, Engine, EngineConfig, EngineKind};
use crate::harness::config::{Config, Mode};
use crate::harness::ctx::Ctx;
use crate::harness::snapshot::Snapshot;
use crate::report::{PointCoverage, RecoveryStats, Report};
use crate::seed::cycle_seed;
use crate::sys::{self, Exit, Fork};
use crate::workloads::WorkloadKind;

/// A vista application under test.
///
/// Every method but [`App::name`] runs in a forked child process (so a panic, an error
/// or a kill there cannot disturb the campaign), and may be killed at any moment.
pub trait App: std::fmt::Debug {
    /// A short name for reports.
    fn name(&self) -> &str;

    /// The segment's options: size, undo log, lanes, protection, writeback. The harness
    /// chooses the segment's path and its cache directory (in the campaign's work
    /// directory, so power loss can take the memory image).
    fn options(&self) -> Options;

    /// Puts the initial state into a new, empty segment. The harness checkpoints it and
    /// closes the segment afterwards, so the initial state is durable. Default: nothing.
    ///
    /// # Errors
    /// Whatever goes wrong; reported as a harness error.
    fn init(&self, seg: &mut Segment) -> Result<()> {
        let _ = seg;
        Ok(())
    }

    /// The workload: performs operations on the recovered segment, acknowledging each
    /// completed one with [`Acks::ack`] (or [`Acks::ack_durable`] after
    /// `commit_durable`, [`Acks::checkpointed`] after `Segment::checkpoint`), until
    /// [`Acks::more`] says to stop. Use [`Acks::seed`] for any randomness, so a replay
    /// does the same. The harness closes the segment after a normal return.
    ///
    /// # Errors
    /// An engine error; reported as a violation (the state could not be worked on).
    fn run(&self, seg: &mut Segment, acks: &mut Acks<'_>) -> Result<()>;

    /// The oracle: is `seg`, just recovered after a crash, consistent with `history`?
    /// Must accept operations that were in flight (started, not acknowledged) being
    /// present or absent. A panic counts as a violation too, so `assert!` works.
    ///
    /// # Errors
    /// A one-line description of the violation.
    fn check(&self, seg: &Segment, history: &History) -> Result<(), String>;
}

/// What a crashed run acknowledged, seen by the oracle.
///
/// Kept compactly (one buffer for all operations' bytes, one offset each): a long kill
/// campaign acknowledges millions of operations.
#[derive(Debug, Clone, Default)]
pub struct History {
    bytes: Vec<u8>,
    /// Where each operation's bytes end in `bytes`.
    ends: Vec<usize>,
    /// Acknowledged operations `[..durable]` survive power loss.
    durable: usize,
    crash: Option<CrashModel>,
}

/// A run of acknowledged operations, oldest first: a view of a [`History`].
#[derive(Debug, Clone, Copy)]
pub struct Ops<'a> {
    bytes: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Ops<'a> {
    /// How many.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Operation `i` (0 = the oldest), as the workload acknowledged it.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.bytes[start..end])
    }

    /// The newest.
    pub fn last(&self) -> Option<&'a [u8]> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// Every operation, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &'a [u8]> + ExactSizeIterator + 'a {
        let (bytes, ends) = (self.bytes, self.ends);
        (0..ends.len()).map(move |i| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            &bytes[start..ends[i]]
        })
    }
}

impl History {
    /// The kind of crash the segment was recovered from.
    pub fn crash(&self) -> CrashModel {
        self.crash.unwrap_or(CrashModel::Process)
    }

    /// Every operation acknowledged since the segment was initialised, oldest first,
    /// as the workload passed it to [`Acks::ack`]. After a power loss that the oracle
    /// accepted, the operations it took (those after the last durable one) are dropped
    /// from the history.
    pub fn acked(&self) -> Ops<'_> {
        Ops {
            bytes: &self.bytes,
            ends: &self.ends,
        }
    }

    /// The acknowledged operations vista promises survive this crash, a prefix of
    /// [`History::acked`]: all of them after a process crash; after power loss, those up
    /// to the last one acknowledged durable (vista restores exactly that checkpoint, or
    /// the durable commit that was in flight).
    pub fn required(&self) -> Ops<'_> {
        let n = match self.crash() {
            CrashModel::Process => self.ends.len(),
            CrashModel::Power => self.durable,
        };
        Ops {
            bytes: &self.bytes,
            ends: &self.ends[..n],
        }
    }

    fn push(&mut self, m: Msg) {
        match m {
            Msg::Ack(op) => self.add(&op),
            Msg::AckDurable(op) => {
                self.add(&op);
                self.durable = self.ends.len();
            }
            Msg::Checkpointed => self.durable = self.ends.len(),
            _ => {}
        }
    }

    fn add(&mut self, op: &[u8]) {
        self.bytes.extend_from_slice(op);
        self.ends.push(self.bytes.len());
    }

    /// Appends what a later run acknowledged.
    fn extend(&mut self, later: &History) {
        if later.durable > 0 {
            self.durable = self.ends.len() + later.durable;
        }
        for op in later.acked().iter() {
            self.add(op);
        }
    }

    /// After an accepted check: what the crash took is gone.
    fn settle(&mut self) {
        if self.crash() == CrashModel::Power {
            self.ends.truncate(self.durable);
            self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
        }
        self.crash = None;
    }
}

/// The workload's side of the acknowledgement channel (a pipe to the harness).
#[derive(Debug)]
pub struct Acks<'a> {
    w: &'a mut File,
    seed: u64,
    left: u64,
}

impl Acks<'_> {
    /// The cycle's seed: derive the workload's choices from it.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether to go on: false once the cycle's operation budget is acknowledged (the
    /// kill and power modes give more than a worker gets through before its kill; the
    /// points and recovery modes a fixed script of 24).
    pub fn more(&self) -> bool {
        self.left > 0
    }

    /// Operation `op` completed (committed): vista promises it survives a process crash.
    ///
    /// # Errors
    /// The harness is gone.
    pub fn ack(&mut self, op: &[u8]) -> std::io::Result<()> {
        self.left = self.left.saturating_sub(1);
        send(self.w, ACK, op)
    }

    /// Operation `op` completed with `commit_durable`: it and every operation before it
    /// survive power loss too.
    ///
    /// # Errors
    /// The harness is gone.
    pub fn ack_durable(&mut self, op: &[u8]) -> std::io::Result<()> {
        self.left = self.left.saturating_sub(1);
        send(self.w, ACK_DURABLE, op)
    }

    /// A `Segment::checkpoint` returned: every operation acknowledged so far survives
    /// power loss.
    ///
    /// # Errors
    /// The harness is gone.
    pub fn checkpointed(&mut self) -> std::io::Result<()> {
        send(self.w, CHECKPOINTED, &[])
    }
}

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

/// Operations of the points and recovery modes' script.
pub const SCRIPT_OPS: u64 = 24;
/// Operations per cycle of the kill and power modes: more than a worker gets through.
const CYCLE_OPS: u64 = 1 << 40;

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
        Mode::Points => points(app, &mut ctx)?,
        Mode::Recovery => recovery(app, &mut ctx)?,
        Mode::Wild | Mode::Compound | Mode::Io => unreachable!("refused above"),
    }
    Ok(ctx.finish())
}

/// The segment, its files and the vista adapter that knows them.
struct Harness<'a> {
    app: &'a dyn App,
    engine: VistaEngine,
    seg: PathBuf,
    opts: Options,
}

/// What a child does.
#[derive(Clone, Copy)]
struct Job<'a> {
    /// Arm this crash point at this hit.
    arm: Option<(&'a str, u64)>,
    /// Check the recovered segment against this history first.
    check: Option<&'a History>,
    /// Initialise the new segment.
    init: bool,
    /// Run the workload with this seed and budget.
    run: Option<(u64, u64)>,
}

const NOTHING: Job<'static> = Job {
    arm: None,
    check: None,
    init: false,
    run: None,
};

impl<'a> Harness<'a> {
    /// The segment in the subdirectory `name` of the work directory. Each starting state
    /// has its own: rio-cache ties a memory image to its disk file's inode, so the files
    /// of one state cannot be restored over those of another.
    fn new(app: &'a dyn App, ctx: &Ctx, name: &str) -> Harness<'a> {
        let engine = VistaEngine::new(EngineConfig {
            dir: ctx.dir().join(name),
            state_len: 1,
            protection: vista::Protection::Auto,
            emulate_power_loss: true,
        });
        // The disk writes are recorded, so that a power cut can drop or tear the unsynced
        // ones (rio-cache's power model), as in the built-in power mode.
        let opts = app
            .options()
            .cache_dir(engine.cache_dir())
            .record_writes(engine.cache_dir());
        Harness {
            app,
            seg: engine.seg_path(),
            engine,
            opts,
        }
    }

    /// Deletes the segment and creates it afresh, initialised and durable.
    fn reset(&self) -> Result<()> {
        std::fs::create_dir_all(self.engine.cache_dir())?;
        for f in self.engine.files() {
            crate::engines::remove_if_exists(&f)?;
        }
        let job = Job {
            init: true,
            ..NOTHING
        };
        let (exit, out) = self.run_to_end(&job)?;
        if exit != Exit::Code(0) || !out.ready {
            bail!(
                "initialising the segment failed ({exit}): {}",
                out.error.as_deref().unwrap_or("no message")
            );
        }
        Ok(())
    }

    fn spawn(&self, job: &Job<'_>) -> Result<Child> {
        let (r, w) = sys::pipe().context("pipe")?;
        match sys::fork().context("fork")? {
            Fork::Child => {
                drop(r);
                self.child_main(job, w)
            }
            Fork::Parent(pid) => {
                drop(w);
                Ok(Child {
                    pid,
                    r: BufReader::new(r),
                    reaped: false,
                })
            }
        }
    }

    fn child_main(&self, job: &Job<'_>, mut w: File) -> ! {
        match job.arm {
            Some((point, n)) => crash_point::arm(point, n),
            None => crash_point::disarm(),
        }
        let body = catch_unwind(AssertUnwindSafe(|| self.child_body(job, &mut w)));
        let code = match body {
            Ok(Ok(())) => 0,
            Ok(Err(e)) => {
                let _ = send(&mut w, ERROR, format!("{e:#}").as_bytes());
                3
            }
            Err(panic) => {
                let msg = format!("panicked: {}", panic_text(&*panic));
                let _ = send(&mut w, ERROR, msg.as_bytes());
                101
            }
        };
        sys::exit_now(code)
    }

    fn child_body(&self, job: &Job<'_>, w: &mut File) -> Result<()> {
        let mut seg = Segment::open(&self.seg, &self.opts).context("open (recover)")?;
        if let Some(h) = job.check {
            let verdict = catch_unwind(AssertUnwindSafe(|| self.app.check(&seg, h)))
                .unwrap_or_else(|p| Err(format!("the oracle panicked: {}", panic_text(&*p))));
            match verdict {
                Ok(()) => send(w, VERDICT, &[])?,
                Err(msg) => {
                    send(w, VIOLATION, msg.as_bytes())?;
                    return Ok(());
                }
            }
        }
        if job.init {
            self.app.init(&mut seg).context("init")?;
            seg.checkpoint()?;
        }
        let cold = matches!(seg.start_kind(), StartKind::Cold(_));
        send(w, READY, &[u8::from(cold)])?;
        if let Some((seed, ops)) = job.run {
            let mut acks = Acks {
                w: &mut *w,
                seed,
                left: ops,
            };
            self.app.run(&mut seg, &mut acks).context("workload")?;
        }
        seg.close()?;
        send(w, DONE, &[])?;
        Ok(())
    }

    fn run_to_end(&self, job: &Job<'_>) -> Result<(Exit, Outcome)> {
        let mut c = self.spawn(job)?;
        let mut out = Outcome::default();
        while let Some(m) = c.next(Duration::from_secs(60))? {
            out.absorb(m);
        }
        Ok((c.wait()?, out))
    }

    /// Recovers the segment and checks it against `history` in a child; records what is
    /// wrong. Returns whether it was consistent.
    fn verify(&self, ctx: &mut Ctx, history: &History, at: &str, extra: &str) -> Result<bool> {
        let job = Job {
            check: Some(history),
            ..NOTHING
        };
        let (exit, out) = self.run_to_end(&job)?;
        Ok(judge(ctx, &out, exit, at, extra))
    }

    /// The kill and power modes.
    fn kill(&self, ctx: &mut Ctx, model: CrashModel) -> Result<()> {
        let power = model == CrashModel::Power;
        self.reset()?;
        let points: Vec<&str> = if power {
            self.engine
                .crash_points()
                .into_iter()
                .filter(|p| p.starts_with("rio.checkpoint."))
                .collect()
        } else {
            Vec::new()
        };
        let mut rng = rand::rngs::SmallRng::seed_from_u64(ctx.cfg.seed);
        let mut history = History::default();
        let mut checked = true;
        let mut cycle = 0u64;
        while ctx.more(cycle, 1.0) {
            let at = format!("cycle {cycle}");
            let extra = format!("--cycles {}", cycle + 1);
            let arm = (power && !points.is_empty() && rng.gen_bool(0.5)).then(|| {
                (
                    points[rng.gen_range(0..points.len())],
                    rng.gen_range(1..=3u64),
                )
            });
            let delay = rng.gen_range(0..=ctx.cfg.max_delay_us);
            let job = Job {
                arm,
                check: (!checked).then_some(&history),
                run: Some((cycle_seed(ctx.cfg.seed, cycle), CYCLE_OPS)),
                ..NOTHING
            };
            let mut c = self.spawn(&job)?;
            let mut out = Outcome::default();
            while !out.ready && out.error.is_none() && out.violation.is_none() {
                match c.next(Duration::from_secs(60))? {
                    Some(m) => out.absorb(m),
                    None => break,
                }
            }
            if out.ready {
                sys::sleep_micros(delay);
            }
            c.kill()?;
            let exit = c.wait()?;
            let mut acks = Vec::new();
            while let Some(m) = c.next(Duration::from_secs(60))? {
                if matches!(m, Msg::Ack(_) | Msg::AckDurable(_) | Msg::Checkpointed) {
                    acks.push(m);
                } else {
                    out.absorb(m);
                }
            }
            // Until the oracle accepted the recovered state, what goes wrong is the
            // previous crash's doing.
            let prev = format!("cycle {} (recovered in cycle {cycle})", cycle.max(1) - 1);
            let ok = if checked || out.verdict {
                judge(ctx, &out, exit, &at, &extra)
            } else {
                judge(ctx, &out, exit, &prev, &extra)
            };
            if ok && power && out.ready && !out.cold && !checked {
                ctx.violation(
                    prev,
                    "expected a cold start after power loss, got a warm one".into(),
                    &extra,
                );
            }
            cycle += 1;
            ctx.report.cycles = cycle;
            if !ok {
                if ctx.stop() {
                    return Ok(());
                }
                self.reset()?;
                history = History::default();
                checked = true;
                continue;
            }
            if !checked {
                history.settle();
            }
            ctx.report.acked_ops += acks
                .iter()
                .filter(|m| !matches!(m, Msg::Checkpointed))
                .count() as u64;
            for m in acks {
                history.push(m);
            }
            if out.ready && exit == Exit::Signal(libc::SIGKILL) && !out.done {
                ctx.report.effective_kills += 1;
            }
            if power {
                self.engine.power_fail(cycle_seed(ctx.cfg.seed, cycle))?;
            }
            history.crash = Some(model);
            checked = false;
            if cycle % 16 == 0 {
                let (c, k) = (cycle, ctx.report.effective_kills);
                ctx.tick(|| format!("{c} cycles, {k} effective kills"));
            }
        }
        if !checked && !ctx.stop() {
            let at = format!("cycle {} (final check)", cycle.max(1) - 1);
            self.verify(ctx, &history, &at, &format!("--cycles {cycle}"))?;
        }
        Ok(())
    }

    /// Opens the segment in a child armed to die at `point`'s `n`-th hit. Returns
    /// whether it died there (false: recovery finished without reaching it).
    fn killed_recovery(
        &self,
        ctx: &mut Ctx,
        point: &str,
        n: u64,
        at: &str,
        extra: &str,
    ) -> Result<bool> {
        let job = Job {
            arm: Some((point, n)),
            ..NOTHING
        };
        let (exit, out) = self.run_to_end(&job)?;
        ctx.report.cycles += 1;
        if exit == Exit::Signal(libc::SIGKILL) {
            ctx.report.effective_kills += 1;
            return Ok(true);
        }
        judge(ctx, &out, exit, at, extra);
        Ok(false)
    }
}

/// A starting state of the points and recovery modes: its segment, its files and the
/// history that led to it.
struct Scenario<'a> {
    name: &'static str,
    h: Harness<'a>,
    snapshot: Snapshot,
    history: History,
}

/// Builds the starting states `names` (those `--scenario` selects):
/// - `fresh`: the initialised segment;
/// - `pending`: killed in the middle of a transaction (undo records to roll back);
/// - `cold`: killed once a checkpoint's journal is committed but not installed, then
///   power loss (the open installs the journal and loads the image from disk).
fn scenarios<'a>(
    app: &'a dyn App,
    ctx: &mut Ctx,
    names: &[&'static str],
) -> Result<Vec<Scenario<'a>>> {
    let mut out = Vec::new();
    for &name in names {
        if ctx.cfg.scenario.as_deref().is_some_and(|s| s != name) {
            continue;
        }
        let h = Harness::new(app, ctx, name);
        h.reset()?;
        let mut history = History::default();
        let arm = match name {
            "pending" => ("vista.write.partial", 5),
            "cold" => ("rio.checkpoint.commit_synced", 1),
            _ => {
                let snapshot = Snapshot::take(&h.engine.files())?;
                out.push(Scenario {
                    name,
                    h,
                    snapshot,
                    history,
                });
                continue;
            }
        };
        let job = Job {
            arm: Some(arm),
            run: Some((ctx.cfg.seed ^ 0x5eed, SCRIPT_OPS)),
            ..NOTHING
        };
        let (exit, prep) = h.run_to_end(&job)?;
        if exit != Exit::Signal(libc::SIGKILL) {
            ctx.report.notes.push(format!(
                "scenario {name} skipped: the script never reached {}:{} ({exit})",
                arm.0, arm.1
            ));
            continue;
        }
        history.extend(&prep.history);
        history.crash = Some(CrashModel::Process);
        if name == "cold" {
            h.engine.power_fail(ctx.cfg.seed ^ 0xc01d)?;
            history.crash = Some(CrashModel::Power);
        }
        let snapshot = Snapshot::take(&h.engine.files())?;
        let at = format!("scenario {name} (killed at {}:{})", arm.0, arm.1);
        h.verify(ctx, &history, &at, &format!("--scenario {name}"))?;
        snapshot.restore()?;
        history.settle();
        out.push(Scenario {
            name,
            h,
            snapshot,
            history,
        });
    }
    Ok(out)
}

/// The points mode.
fn points(app: &dyn App, ctx: &mut Ctx) -> Result<()> {
    let scenarios = scenarios(app, ctx, &["fresh", "pending", "cold"])?;
    let mut all = VistaEngine::new(EngineConfig {
        dir: ctx.dir().to_owned(),
        state_len: 1,
        protection: vista::Protection::Auto,
        emulate_power_loss: true,
    })
    .crash_points();
    if let Some(p) = &ctx.cfg.point {
        all.retain(|q| q == p);
    }
    let mut kills: Vec<u64> = vec![0; all.len()];
    ctx.report.points_total = all.len();
    let seed = ctx.cfg.seed;
    'all: for sc in &scenarios {
        let (name, h) = (sc.name, &sc.h);
        for (k, &point) in all.iter().enumerate() {
            for n in ctx.hits() {
                if ctx.exhausted("every point") {
                    break 'all;
                }
                sc.snapshot.restore()?;
                let job = Job {
                    arm: Some((point, n)),
                    run: Some((seed, SCRIPT_OPS)),
                    ..NOTHING
                };
                let (exit, out) = h.run_to_end(&job)?;
                ctx.report.cycles += 1;
                let at = format!("{name} {point}:{n}");
                let extra = format!("--scenario {name} --point {point} --hit {n}");
                if exit != Exit::Signal(libc::SIGKILL) {
                    // Not reached: the script ran to its end (or failed).
                    judge(ctx, &out, exit, &at, &extra);
                    break;
                }
                kills[k] += 1;
                ctx.report.effective_kills += 1;
                ctx.report.acked_ops += out.history.acked().len() as u64;
                let mut history = sc.history.clone();
                history.extend(&out.history);
                let crashed = Snapshot::take(&h.engine.files())?;
                history.crash = Some(CrashModel::Process);
                h.verify(ctx, &history, &at, &extra)?;
                // The same instant as a power loss: the disk files alone.
                crashed.restore()?;
                h.engine.power_fail(cycle_seed(seed, ctx.report.cycles))?;
                history.crash = Some(CrashModel::Power);
                h.verify(ctx, &history, &format!("{at} + power loss"), &extra)?;
                let c = ctx.report.cycles;
                ctx.tick(|| format!("{c} kills at crash points"));
            }
        }
    }
    ctx.report.points = coverage(&all, &kills);
    Ok(())
}

/// The recovery mode.
fn recovery(app: &dyn App, ctx: &mut Ctx) -> Result<()> {
    let scenarios = scenarios(app, ctx, &["pending", "cold"])?;
    let Some(first) = scenarios.first() else {
        return Ok(());
    };
    let mut points = first.h.engine.recovery_points();
    let firsts: Vec<&str> = points
        .iter()
        .copied()
        .filter(|p| ctx.cfg.point.as_deref().map_or(true, |q| q == *p))
        .collect();
    let mut kills = vec![0u64; firsts.len()];
    ctx.report.points_total = firsts.len();
    ctx.report.recovery = Some(RecoveryStats::default());
    points.sort_unstable();
    'all: for sc in &scenarios {
        let (name, h, history) = (sc.name, &sc.h, &sc.history);
        let mut history = history.clone();
        // A crash in recovery is a crash of the same kind as the one that needed it.
        history.crash = Some(if name == "cold" {
            CrashModel::Power
        } else {
            CrashModel::Process
        });
        for (k, &p1) in firsts.iter().enumerate() {
            for n1 in ctx.hits() {
                if ctx.exhausted("depth 2") {
                    break 'all;
                }
                sc.snapshot.restore()?;
                let at1 = format!("{name} {p1}:{n1}");
                let extra = format!("--scenario {name} --point {p1} --hit {n1}");
                if !h.killed_recovery(ctx, p1, n1, &at1, &extra)? {
                    break;
                }
                kills[k] += 1;
                bump(ctx, 1);
                let s1 = Snapshot::take(&h.engine.files())?;
                h.verify(ctx, &history, &at1, &extra)?;
                for &p2 in &points {
                    for n2 in 1.. {
                        s1.restore()?;
                        let at2 = format!("{at1} then {p2}:{n2}");
                        if !h.killed_recovery(ctx, p2, n2, &at2, &extra)? {
                            break;
                        }
                        bump(ctx, 2);
                        h.verify(ctx, &history, &at2, &extra)?;
                        if ctx.stop() {
                            break 'all;
                        }
                    }
                }
                let c = ctx.report.cycles;
                ctx.tick(|| format!("{c} recoveries"));
            }
        }
    }
    ctx.report.points = coverage(&firsts, &kills);
    Ok(())
}

fn bump(ctx: &mut Ctx, depth: u8) {
    if let Some(r) = ctx.report.recovery.as_mut() {
        match depth {
            1 => r.depth1_kills += 1,
            _ => r.depth2_kills += 1,
        }
    }
}

fn coverage(points: &[&str], kills: &[u64]) -> Vec<PointCoverage> {
    points
        .iter()
        .zip(kills)
        .map(|(p, k)| PointCoverage {
            point: (*p).into(),
            kills: *k,
        })
        .collect()
}

/// Records the violation a child reported or died of, if any; returns whether it was
/// consistent and sound.
fn judge(ctx: &mut Ctx, out: &Outcome, exit: Exit, at: &str, extra: &str) -> bool {
    let msg = if let Some(v) = &out.violation {
        v.clone()
    } else if let Some(e) = &out.error {
        format!("the application failed: {e}")
    } else if !matches!(exit, Exit::Signal(libc::SIGKILL) | Exit::Code(0)) {
        format!("the worker ended with {exit}")
    } else {
        return true;
    };
    ctx.violation(at.to_owned(), msg, extra);
    false
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

const READY: u8 = 1;
const VERDICT: u8 = 2;
const VIOLATION: u8 = 3;
const ACK: u8 = 4;
const ACK_DURABLE: u8 = 5;
const CHECKPOINTED: u8 = 6;
const DONE: u8 = 7;
const ERROR: u8 = 8;

/// One frame: tag, payload length (u32, little-endian), payload; one `write` call.
fn send(w: &mut File, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::other("acknowledgement larger than 4 GiB"))?;
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(tag);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)
}

/// A message from a child.
#[derive(Debug)]
enum Msg {
    Ready { cold: bool },
    Verdict,
    Violation(String),
    Ack(Vec<u8>),
    AckDurable(Vec<u8>),
    Checkpointed,
    Done,
    Error(String),
}

/// A forked child, seen from the parent.
struct Child {
    pid: libc::pid_t,
    r: BufReader<File>,
    reaped: bool,
}

impl Child {
    /// The next message; `None` once the child is gone and everything it sent is read.
    fn next(&mut self, timeout: Duration) -> Result<Option<Msg>> {
        if self.r.buffer().is_empty() && !sys::readable(self.r.get_ref(), timeout)? {
            bail!("worker {} sent nothing for {timeout:?}", self.pid);
        }
        let mut head = [0u8; 5];
        match self.r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes"));
        let mut p = vec![0u8; len as usize];
        if self.r.read_exact(&mut p).is_err() {
            // Killed in the middle of a frame (a write larger than the pipe buffer):
            // the operation was not acknowledged.
            return Ok(None);
        }
        let text = |p: Vec<u8>| String::from_utf8_lossy(&p).into_owned();
        Ok(Some(match head[0] {
            READY => Msg::Ready {
                cold: p.first() == Some(&1),
            },
            VERDICT => Msg::Verdict,
            VIOLATION => Msg::Violation(text(p)),
            ACK => Msg::Ack(p),
            ACK_DURABLE => Msg::AckDurable(p),
            CHECKPOINTED => Msg::Checkpointed,
            DONE => Msg::Done,
            ERROR => Msg::Error(text(p)),
            other => bail!("unknown message tag {other} from worker {}", self.pid),
        }))
    }

    fn kill(&self) -> Result<()> {
        Ok(sys::kill(self.pid)?)
    }

    fn wait(&mut self) -> Result<Exit> {
        let e = sys::wait(self.pid)?;
        self.reaped = true;
        Ok(e)
    }
}

impl Drop for Child {
    /// Kills and reaps a child nobody waited for; errors are ignored (it is gone).
    fn drop(&mut self) {
        if !self.reaped {
            let _ = sys::kill(self.pid);
            let _ = sys::wait(self.pid);
        }
    }
}

/// What a finished child said.
#[derive(Debug, Default)]
struct Outcome {
    ready: bool,
    cold: bool,
    done: bool,
    /// The oracle accepted the recovered state.
    verdict: bool,
    violation: Option<String>,
    error: Option<String>,
    history: History,
}

impl Outcome {
    fn absorb(&mut self, m: Msg) {
        match m {
            Msg::Ready { cold } => {
                self.ready = true;
                self.cold = cold;
            }
            Msg::Verdict => self.verdict = true,
            Msg::Violation(v) => self.violation = Some(v),
            Msg::Done => self.done = true,
            Msg::Error(e) => self.error = Some(e),
            ack => self.history.push(ack),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(o: Ops<'_>) -> Vec<Vec<u8>> {
        o.iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn history_keeps_the_durable_prefix_across_power_loss() {
        let mut h = History::default();
        h.push(Msg::Ack(vec![1]));
        h.push(Msg::AckDurable(vec![2, 2]));
        h.push(Msg::Ack(vec![3]));
        h.push(Msg::Checkpointed);
        h.push(Msg::Ack(vec![]));
        h.push(Msg::Ack(vec![5]));
        assert_eq!(h.acked().len(), 5);
        assert_eq!(h.acked().get(1), Some(&[2u8, 2][..]));
        assert_eq!(h.acked().get(3), Some(&[][..]));
        h.crash = Some(CrashModel::Process);
        assert_eq!(h.required().len(), 5);
        h.crash = Some(CrashModel::Power);
        assert_eq!(ops(h.required()), [vec![1], vec![2, 2], vec![3]]);
        assert_eq!(h.required().last(), Some(&[3u8][..]));
        h.settle();
        assert_eq!(ops(h.acked()), [vec![1], vec![2, 2], vec![3]]);
        // A later run's acknowledgements append; its durable mark moves with them.
        let mut later = History::default();
        later.push(Msg::AckDurable(vec![6]));
        later.push(Msg::Ack(vec![7]));
        h.extend(&later);
        h.crash = Some(CrashModel::Power);
        assert_eq!(ops(h.required()), [vec![1], vec![2, 2], vec![3], vec![6]]);
        assert_eq!(h.acked().last(), Some(&[7u8][..]));
    }
}
