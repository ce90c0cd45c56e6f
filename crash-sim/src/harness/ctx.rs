//! The shared state of a running campaign: its configuration, work directory, budget,
//! progress bar and the report being filled in.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Result;

use crate::engines::{engine, Engine, EngineConfig};
use crate::harness::config::{protection_name, Config};
use crate::report::{Report, Violation};
use crate::workloads::Workload;

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
        let cfg = EngineConfig {
            dir: self.dir.join(name),
            state_len: self.workload.state_len(),
            protection,
            emulate_power_loss: emulate,
        };
        if self.cfg.workload == crate::workloads::WorkloadKind::Xseg
            && self.cfg.engine == crate::engines::EngineKind::Vista
        {
            // Two segments in a group: the state's halves.
            return Box::new(crate::engines::vista_group::VistaGroupEngine::new(cfg));
        }
        engine(self.cfg.engine, cfg)
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
