//! What a campaign runs: the engine, the workload, the fault mode, the budgets.

use std::path::PathBuf;

use crate::engines::EngineKind;
use crate::workloads::WorkloadKind;

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
