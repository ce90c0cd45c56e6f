//! A campaign: one engine, one workload, one fault mode, until the time or cycle budget
//! is spent (or, for the exhaustive modes, until every point is done).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::engines::{engine, Engine, EngineConfig, EngineKind};
use crate::report::{Report, Violation};
use crate::workloads::{Workload, WorkloadKind};

/// The fault mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// `SIGKILL` after a random delay.
    Kill,
    /// Every crash point, every hit.
    Points,
    /// Kills during recovery, nested.
    Recovery,
    /// Power loss: kills plus the loss of everything not synced.
    Power,
    /// Wild stores into the engine's memory.
    Wild,
    /// Sequences of kills and power cuts (vista), each with an exact oracle.
    Compound,
    /// Injected I/O failures (vista, through the threaded worker): one random write,
    /// sync, truncate, preallocation, map or protection change of each worker fails
    /// with ENOSPC, EIO or EFBIG; the worker goes on until it stops or is killed.
    Io,
}

impl Mode {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Kill => "kill",
            Mode::Points => "points",
            Mode::Recovery => "recovery",
            Mode::Power => "power",
            Mode::Wild => "wild",
            Mode::Compound => "compound",
            Mode::Io => "io",
        }
    }

    /// Every mode.
    pub const ALL: [Mode; 7] = [
        Mode::Kill,
        Mode::Points,
        Mode::Recovery,
        Mode::Power,
        Mode::Wild,
        Mode::Compound,
        Mode::Io,
    ];

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == s)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The engine.
    pub engine: EngineKind,
    /// The workload.
    pub workload: WorkloadKind,
    /// The fault mode.
    pub mode: Mode,
    /// Seed of everything random.
    pub seed: u64,
    /// Time budget.
    pub seconds: f64,
    /// Cycle budget (kill, power, wild), if any.
    pub cycles: Option<u64>,
    /// Longest random delay before a kill, in microseconds.
    pub max_delay_us: u64,
    /// Where the engine's files go (default: a fresh directory in `/dev/shm`).
    pub dir: Option<PathBuf>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Points mode: run only this point...
    pub point: Option<String>,
    /// ...at this hit...
    pub hit: Option<u64>,
    /// ...in this scenario.
    pub scenario: Option<String>,
    /// Go on after the first violation.
    pub keep_going: bool,
    /// Threads per worker (1: the serial worker). More than one: vista, bank or kv,
    /// kill or power mode ([`crate::modes::threads`]).
    pub threads: u32,
    /// vista's guard against wild stores in every mode but `wild` (which runs each
    /// guard itself). Default [`vista::Protection::Auto`].
    pub protection: vista::Protection,
}

impl Config {
    /// A configuration with the defaults of the command line.
    pub fn new(engine: EngineKind, workload: WorkloadKind, mode: Mode) -> Config {
        Config {
            engine,
            workload,
            mode,
            seed: 1,
            seconds: 10.0,
            cycles: None,
            max_delay_us: 400,
            dir: None,
            progress: false,
            point: None,
            hit: None,
            scenario: None,
            keep_going: false,
            threads: 1,
            protection: vista::Protection::Auto,
        }
    }

    /// The command line that reruns this campaign, plus `extra` arguments.
    pub fn replay(&self, extra: &str) -> String {
        let mut s = format!(
            "crash-sim run --engine {} --workload {} --mode {} --seed {}",
            self.engine.name(),
            self.workload.name(),
            self.mode.name(),
            self.seed
        );
        if self.threads != 1 && !extra.contains("--threads") {
            s.push_str(" --threads ");
            s.push_str(&self.threads.to_string());
        }
        if self.protection != vista::Protection::Auto && !extra.contains("--protection") {
            s.push_str(" --protection ");
            s.push_str(protection_name(self.protection));
        }
        if !extra.is_empty() {
            s.push(' ');
            s.push_str(extra);
        }
        s
    }
}

/// Shared state of a running campaign.
#[derive(Debug)]
pub struct Ctx {
    /// The configuration.
    pub cfg: Config,
    /// The workload.
    pub workload: Box<dyn Workload>,
    /// The report being filled in.
    pub report: Report,
    started: Instant,
    _tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    bar: indicatif::ProgressBar,
    /// The replay command of harnesses other than `crash-sim run`: (before, after) the
    /// per-violation arguments.
    replay_around: Option<(String, String)>,
}

impl Ctx {
    /// Prepares the work directory and the report.
    ///
    /// # Errors
    /// I/O errors creating the directory.
    pub fn new(cfg: Config) -> Result<Ctx> {
        let (tmp, dir) = match &cfg.dir {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.clone())
            }
            None => {
                let shm = Path::new("/dev/shm");
                let t = if shm.is_dir() {
                    tempfile::Builder::new()
                        .prefix("crash-sim-")
                        .tempdir_in(shm)?
                } else {
                    tempfile::Builder::new().prefix("crash-sim-").tempdir()?
                };
                let d = t.path().to_owned();
                (Some(t), d)
            }
        };
        let workload = cfg.workload.build();
        let mut report = Report {
            engine: cfg.engine.name().into(),
            workload: cfg.workload.name().into(),
            mode: cfg.mode.name().into(),
            seed: cfg.seed,
            ..Report::default()
        };
        if cfg.engine.name() == "vista" && cfg.mode.name() != "wild" {
            // The wild mode reports per protection itself; the others run with one.
            let note = if cfg.protection == vista::Protection::Auto {
                // Auto picks protection keys where the CPU has them, else the alias.
                let resolved = if vista::rio_cache::pkeys_supported() {
                    "pkey"
                } else {
                    "alias"
                };
                format!("vista protection: auto, which is {resolved} on this machine")
            } else {
                format!("vista protection: {}", protection_name(cfg.protection))
            };
            report.notes.push(note);
        }
        let bar = if cfg.progress {
            let b = indicatif::ProgressBar::with_draw_target(
                Some(1000),
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            b.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} [{wide_bar}] {msg}",
                )
                .expect("valid template"),
            );
            b
        } else {
            indicatif::ProgressBar::hidden()
        };
        Ok(Ctx {
            cfg,
            workload,
            report,
            started: Instant::now(),
            _tmp: tmp,
            dir,
            bar,
            replay_around: None,
        })
    }

    /// The work directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the replay command of each violation `before EXTRA after` instead of a
    /// `crash-sim run` line (for the app harness and `crash-sim exec`).
    pub fn set_replay(&mut self, before: String, after: String) {
        self.replay_around = Some((before, after));
    }

    /// An engine whose files live in the subdirectory `name` of the work directory.
    pub fn engine(
        &self,
        name: &str,
        protection: vista::Protection,
        emulate: bool,
    ) -> Box<dyn Engine> {
        engine(
            self.cfg.engine,
            EngineConfig {
                dir: self.dir.join(name),
                state_len: self.workload.state_len(),
                protection,
                emulate_power_loss: emulate,
            },
        )
    }

    /// The work directory.
    pub fn work_dir(&self) -> &Path {
        &self.dir
    }

    /// Time since the campaign started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Whether the budget allows another cycle.
    pub fn more(&self, cycles_done: u64, budget_share: f64) -> bool {
        let time_ok = self.elapsed().as_secs_f64() < self.cfg.seconds * budget_share;
        let cycles_ok = !matches!(self.cfg.cycles, Some(c) if cycles_done >= c);
        time_ok && cycles_ok && (self.cfg.keep_going || self.report.violations.is_empty())
    }

    /// Whether to stop after a violation.
    pub fn stop(&self) -> bool {
        !self.cfg.keep_going && !self.report.violations.is_empty()
    }

    /// The hits of a crash point an exhaustive mode tries: `--hit` alone, or 1, 2, ...
    /// (the mode stops at the first one the run does not reach).
    pub fn hits(&self) -> std::ops::RangeInclusive<u64> {
        match self.cfg.hit {
            Some(h) => h..=h,
            None => 1..=u64::MAX,
        }
    }

    /// Whether an exhaustive mode must stop: after a violation (without `keep_going`),
    /// or once the time is spent, noting that `undone` was left undone.
    pub fn exhausted(&mut self, undone: &str) -> bool {
        if self.stop() {
            return true;
        }
        if self.elapsed().as_secs_f64() > self.cfg.seconds {
            self.report
                .notes
                .push(format!("time budget spent before {undone} was done"));
            return true;
        }
        false
    }

    /// Updates the progress bar.
    pub fn tick(&self, msg: impl FnOnce() -> String) {
        if self.bar.is_hidden() {
            return;
        }
        let frac = self.elapsed().as_secs_f64() / self.cfg.seconds.max(0.001);
        self.bar.set_position((frac * 1000.0).min(1000.0) as u64);
        self.bar.set_message(msg());
    }

    /// Records a violation.
    pub fn violation(&mut self, at: String, message: String, replay_extra: &str) {
        let replay = match &self.replay_around {
            Some((before, after)) => [before.as_str(), replay_extra, after.as_str()]
                .into_iter()
                .filter(|p| !p.is_empty())
                .collect::<Vec<_>>()
                .join(" "),
            None => self.cfg.replay(replay_extra),
        };
        if !self.bar.is_hidden() {
            self.bar
                .suspend(|| eprintln!("VIOLATION at {at}: {message}\n  replay: {replay}"));
        }
        self.report.violations.push(Violation {
            at,
            message,
            replay,
        });
    }

    /// Ends the campaign.
    pub fn finish(mut self) -> Report {
        self.bar.finish_and_clear();
        let elapsed = self.elapsed();
        self.report.finish(elapsed);
        self.report
    }
}

/// The bytes of a set of files (`None`: absent), to put back later.
#[derive(Debug, Clone)]
pub struct Snapshot(Vec<(PathBuf, Option<Vec<u8>>)>);

impl Snapshot {
    /// Reads `files`.
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn take(files: &[PathBuf]) -> Result<Snapshot> {
        let mut v = Vec::new();
        for f in files {
            let b = match std::fs::read(f) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("read {}", f.display())),
            };
            v.push((f.clone(), b));
        }
        Ok(Snapshot(v))
    }

    /// Puts the files back as they were (in place, so paths and inodes stay).
    ///
    /// # Errors
    /// I/O errors.
    pub fn restore(&self) -> Result<()> {
        for (f, b) in &self.0 {
            match b {
                Some(b) => {
                    use std::io::Write;
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(f)
                        .with_context(|| format!("restore {}", f.display()))?;
                    file.write_all(b)?;
                    file.set_len(b.len() as u64)?;
                }
                None => crate::engines::remove_if_exists(f)?,
            }
        }
        Ok(())
    }

    /// Writes the files under other names: `map` turns each path into its copy's.
    ///
    /// # Errors
    /// I/O errors.
    pub fn copy_to(&self, targets: &[PathBuf]) -> Result<()> {
        for ((_, b), t) in self.0.iter().zip(targets) {
            match b {
                Some(b) => std::fs::write(t, b)?,
                None => crate::engines::remove_if_exists(t)?,
            }
        }
        Ok(())
    }
}

/// Runs the campaign `cfg`.
///
/// # Errors
/// Harness failures (fork, files); engine misbehaviour is reported as violations.
pub fn run(cfg: Config) -> Result<Report> {
    crash_point::disarm();
    anyhow::ensure!(
        !(cfg.workload == WorkloadKind::Pages && cfg.engine.is_lrvm()),
        "the pages workload drives vista (its transactions outgrow lrvm's minimum log)"
    );
    if cfg.threads != 1 || cfg.mode == Mode::Io {
        check_threads(&cfg)?;
        let model = if cfg.mode == Mode::Power {
            crate::engines::CrashModel::Power
        } else {
            crate::engines::CrashModel::Process
        };
        let mut ctx = Ctx::new(cfg)?;
        crate::modes::threads::run(&mut ctx, model)?;
        return Ok(ctx.finish());
    }
    let mut ctx = Ctx::new(cfg)?;
    match ctx.cfg.mode {
        Mode::Kill => crate::modes::kill::run(&mut ctx, crate::engines::CrashModel::Process)?,
        Mode::Power => crate::modes::kill::run(&mut ctx, crate::engines::CrashModel::Power)?,
        Mode::Points => crate::modes::points::run(&mut ctx)?,
        Mode::Recovery => crate::modes::recovery::run(&mut ctx)?,
        Mode::Wild => crate::modes::wild::run(&mut ctx)?,
        Mode::Compound => crate::modes::compound::run(&mut ctx)?,
        Mode::Io => unreachable!("the io mode runs the threaded worker"),
    }
    Ok(ctx.finish())
}

/// What `--threads N` (N > 1) and the io mode support: vista, bank or kv; kill, power
/// or io mode.
fn check_threads(cfg: &Config) -> Result<()> {
    let n = cfg.threads;
    anyhow::ensure!(
        (1..=crate::modes::threads::MAX_THREADS).contains(&n),
        "--threads {n}: between 1 and {}",
        crate::modes::threads::MAX_THREADS
    );
    anyhow::ensure!(
        !cfg.engine.is_lrvm(),
        "--threads {n} needs --engine vista: lrvm runs one transaction at a time (its \
         transactions are not isolated from each other), so it has one thread"
    );
    anyhow::ensure!(
        crate::modes::threads::Shape::of(cfg.workload).is_some(),
        "--threads {n} runs the bank and kv workloads, not {}",
        cfg.workload.name()
    );
    anyhow::ensure!(
        matches!(cfg.mode, Mode::Kill | Mode::Power | Mode::Io),
        "--threads {n} runs the kill, power and io modes (the kill mode also arms crash \
         points, recovery's included, at random hits counted across threads); the {} mode \
         runs one thread",
        cfg.mode.name()
    );
    Ok(())
}

/// The command-line name of a protection (`--protection`).
pub fn protection_name(p: vista::Protection) -> &'static str {
    match p {
        vista::Protection::None => "none",
        vista::Protection::Mprotect => "mprotect",
        vista::Protection::Alias => "alias",
        vista::Protection::Pkey => "pkey",
        vista::Protection::Auto => "auto",
    }
}

/// The protection named `s` on the command line.
///
/// # Errors
/// An unknown name.
pub fn parse_protection(s: &str) -> std::result::Result<vista::Protection, String> {
    Ok(match s {
        "auto" => vista::Protection::Auto,
        "none" => vista::Protection::None,
        "mprotect" => vista::Protection::Mprotect,
        "alias" => vista::Protection::Alias,
        "pkey" => vista::Protection::Pkey,
        _ => {
            return Err(format!(
                "unknown protection {s}: auto, none, mprotect, alias, pkey"
            ))
        }
    })
}
