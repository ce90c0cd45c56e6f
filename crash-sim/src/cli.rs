//! The command-line options every campaign shares: those of `crash-sim run` after
//! `--engine`, `--workload` and `--mode`, and of a crash-test binary built on
//! [`crate::app::main`].

use std::path::PathBuf;

use crate::harness::config::Config;

/// Budget, seed, selection and output options of a campaign.
#[derive(Debug, Clone, clap::Args)]
pub struct CampaignArgs {
    /// Time budget in seconds (the exhaustive modes stop early when done).
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Seed of everything random.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Stop after this many cycles (the kill and power modes; `crash-sim run`'s wild
    /// mode too).
    #[arg(long)]
    pub cycles: Option<u64>,
    /// Longest random delay before a kill, in microseconds.
    #[arg(long, default_value_t = 400)]
    pub max_delay_us: u64,
    /// Work directory (default: a fresh one in /dev/shm, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Points and recovery modes: only this crash point.
    #[arg(long)]
    pub point: Option<String>,
    /// Points and recovery modes: only this hit of the point.
    #[arg(long)]
    pub hit: Option<u64>,
    /// Points and recovery modes: only this starting state (built-in engines: fresh,
    /// pending, cold, fresh+power, pending+power; applications: fresh, pending, cold);
    /// `crash-sim run`'s compound mode: only this scenario.
    #[arg(long)]
    pub scenario: Option<String>,
    /// vista's guard in every mode but `wild` (which runs each itself): auto, none,
    /// mprotect, alias or pkey.
    #[arg(long, default_value = "auto", value_parser = crate::harness::config::parse_protection)]
    pub protection: vista::Protection,
    /// Go on after the first violation.
    #[arg(long)]
    pub keep_going: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl CampaignArgs {
    /// Sets these options in `cfg` (the progress bar only on a terminal, and not with
    /// `--json` or `--quiet`).
    pub fn apply(&self, cfg: &mut Config) {
        use std::io::IsTerminal;
        cfg.seconds = self.seconds;
        cfg.seed = self.seed;
        cfg.cycles = self.cycles;
        cfg.max_delay_us = self.max_delay_us;
        cfg.dir.clone_from(&self.dir);
        cfg.point.clone_from(&self.point);
        cfg.hit = self.hit;
        cfg.scenario.clone_from(&self.scenario);
        cfg.keep_going = self.keep_going;
        cfg.protection = self.protection;
        cfg.progress = !self.quiet && !self.json && std::io::stderr().is_terminal();
    }
}
