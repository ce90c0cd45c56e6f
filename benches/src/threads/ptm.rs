//! The persistent transactional memories' (PTMs') own SPS benchmark, run as the drivers
//! `scripts/ptm-sps` builds from a durabletx checkout (`benches/ptm/sps.cpp`): one
//! process per cell, which prints `sps ... txn_per_s=N` on success. The checkout's
//! benchmark checks the array's sum with an assert after the run, so a changed sum kills
//! the process and fails the cell here.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

/// The PTMs `scripts/ptm-sps` builds, in table order: the driver's suffix and the name
/// shown.
pub const KNOWN: [(&str, &str); 5] = [
    ("oflf", "OneFile"),
    ("quadrafc", "Quadra"),
    ("romlogfc", "RomulusLog"),
    ("trinitytl2", "Trinity (TL2)"),
    ("trinitytl2-clflushopt", "Trinity (TL2), clflushopt"),
];

/// One PTM's driver.
#[derive(Debug, Clone)]
pub struct Ptm {
    /// The driver's suffix (`oflf`), also the engine name on the command line.
    pub name: String,
    /// The name shown in tables.
    pub label: String,
    /// The driver's path.
    pub path: PathBuf,
}

/// The drivers `sps-<name>` of [`KNOWN`] present in `dir`, in table order.
///
/// # Errors
/// `dir` cannot be read.
pub fn find(dir: &Path) -> Result<Vec<Ptm>> {
    anyhow::ensure!(
        dir.is_dir(),
        "{} is not a directory (scripts/ptm-sps builds the drivers)",
        dir.display()
    );
    Ok(KNOWN
        .iter()
        .map(|&(name, label)| Ptm {
            name: name.into(),
            label: label.into(),
            path: dir.join(format!("sps-{name}")),
        })
        .filter(|p| p.path.is_file())
        .collect())
}

impl Ptm {
    /// Whether this build flushes cache lines (the others are built with `PWB_IS_NOP`).
    pub fn flushes(&self) -> bool {
        self.name.ends_with("-clflushopt")
    }

    /// The persistent region's file (the build names it; see `scripts/ptm-sps`).
    pub fn region(&self) -> PathBuf {
        PathBuf::from(format!("/dev/shm/ptm-sps-{}", self.name))
    }

    /// Runs one cell: `threads` threads, `swaps` swaps per transaction, for `seconds`
    /// (whole seconds: the benchmark counts in them), on a fresh region that is removed
    /// afterwards. Returns the committed transactions per second.
    ///
    /// A driver that could not map its region at the PTM's fixed address (address-space
    /// randomisation put something there; it exits before running anything) is run
    /// again, up to three times in all (`MAPPING_TRIES`).
    ///
    /// # Errors
    /// The driver failed (the sum check's assert, among others) or printed no result.
    pub fn run(&self, threads: u64, swaps: u64, seconds: u64) -> Result<f64> {
        let mut tries = 0;
        loop {
            tries += 1;
            match self.run_once(threads, swaps, seconds) {
                Err(Failure::Mapping(why)) if tries < MAPPING_TRIES => {
                    eprintln!("{}: {why}; trying again", self.name);
                }
                Err(Failure::Mapping(why) | Failure::Other(why)) => return Err(why),
                Ok(tps) => return Ok(tps),
            }
        }
    }

    fn run_once(&self, threads: u64, swaps: u64, seconds: u64) -> Result<f64, Failure> {
        let _ = std::fs::remove_file(self.region());
        let out = Command::new(&self.path)
            .args([
                threads.to_string(),
                swaps.to_string(),
                seconds.max(1).to_string(),
            ])
            .output()
            .with_context(|| format!("running {}", self.path.display()));
        let _ = std::fs::remove_file(self.region());
        let out = out.map_err(Failure::Other)?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let tail = || {
            let lines: Vec<&str> = stdout.lines().collect();
            let from = lines.len().saturating_sub(5);
            format!(
                "{}\n{}",
                lines[from..].join("\n"),
                String::from_utf8_lossy(&out.stderr).trim()
            )
        };
        if !out.status.success() || stdout.contains("ERROR") {
            let why = anyhow::anyhow!(
                "{} {threads} {swaps} failed ({}):\n{}",
                self.path.display(),
                out.status,
                tail()
            );
            // The PTMs map their region at a fixed address and give up (before running
            // anything) when address-space randomisation put something else there.
            let stderr = String::from_utf8_lossy(&out.stderr);
            let mapping = (stdout.contains("got_addr") || stderr.contains("got_addr"))
                && !stdout.contains("SPS validation");
            return Err(if mapping {
                Failure::Mapping(why)
            } else {
                Failure::Other(why)
            });
        }
        parse(&stdout)
            .with_context(|| format!("{}: no result in\n{}", self.name, tail()))
            .map_err(Failure::Other)
    }
}

/// Tries of a cell whose driver could not map its region at its fixed address.
const MAPPING_TRIES: u32 = 3;

/// Why a driver failed.
enum Failure {
    /// The region's fixed address was taken: nothing ran, so trying again is sound.
    Mapping(anyhow::Error),
    /// Anything else, the sum check included.
    Other(anyhow::Error),
}

/// The `txn_per_s` of the driver's `sps ...` line.
fn parse(stdout: &str) -> Option<f64> {
    stdout
        .lines()
        .filter(|l| l.starts_with("sps "))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("txn_per_s="))
        })
        .and_then(|v| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_is_found_among_the_benchmarks_own_output() {
        let out = "##### Trinity-TL2 #####\nSwaps/sec = 80\n\
                   sps ptm=Trinity-TL2 threads=2 swaps=4 seconds=1 txn_per_s=20\n\
                   totalAborts=1\n";
        assert_eq!(parse(out), Some(20.0));
        assert_eq!(parse("Swaps/sec = 80\n"), None);
    }
}
