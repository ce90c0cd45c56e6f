//! What a campaign found: counters, coverage, the wild-store table, violations; printed
//! as a table for people or as JSON for machines.

use std::fmt::Write as _;

/// One violation, with the command that replays it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Violation {
    /// Where it was found (cycle, or point and hit).
    pub at: String,
    /// What is wrong.
    pub message: String,
    /// A `crash-sim` command line that replays it.
    pub replay: String,
}

/// How often one crash point killed a worker.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PointCoverage {
    /// The point.
    pub point: String,
    /// Kills at it (0: never reached).
    pub kills: u64,
}

/// Kills of the recovery mode, by depth.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct RecoveryStats {
    /// Recoveries killed with the crashed state as input (every point and hit).
    pub depth1_kills: u64,
    /// Recoveries killed after one killed recovery (every point and hit).
    pub depth2_kills: u64,
    /// Recoveries killed after two killed recoveries (sampled).
    pub depth3_kills: u64,
    /// Clean recoveries compared byte for byte with the reference.
    pub comparisons: u64,
}

/// One row of the wild-store table.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct WildRow {
    /// The guard (vista: none, mprotect, alias, pkey; lrvm: its private copy).
    pub protection: String,
    /// The fault model: `segment` (stores aimed at the engine's public addresses) or
    /// `anywhere` (stores at random mapped addresses).
    pub model: String,
    /// Wild stores performed.
    pub faults: u64,
    /// Stores that went to the engine's public mapping.
    pub hit_segment: u64,
    /// Stores that went to rio-cache's write mapping (the alias, or the pkey mapping).
    pub hit_write_mapping: u64,
    /// Stores that went to rio-cache's metadata mapping (image header, dirty maps).
    pub hit_metadata: u64,
    /// Stores into any of the engine's mappings (segment, write mapping, metadata)
    /// that did not fault: what the protection let through.
    pub landed_in_engine: u64,
    /// Workers that hung or garbled their messages after the store ("anywhere" only);
    /// they were killed and their files judged like the others'.
    pub derailed: u64,
    /// The worker died of `SIGSEGV` at the store.
    pub trapped: u64,
    /// The next open refused the files (a checksum caught the damage).
    pub detected_by_engine: u64,
    /// The engine reopened silently with data that differs from the oracle.
    pub corrupted_undetected: u64,
    /// Nothing visible happened (the byte was overwritten or never read).
    pub harmless: u64,
}

/// The result of a campaign.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Report {
    /// Engine name.
    pub engine: String,
    /// Workload name.
    pub workload: String,
    /// Mode name.
    pub mode: String,
    /// The campaign's seed.
    pub seed: u64,
    /// Wall-clock seconds.
    pub elapsed_s: f64,
    /// Workers run.
    pub cycles: u64,
    /// Workers killed by `SIGKILL` after they reported running (or at a crash point).
    pub effective_kills: u64,
    /// Operations acknowledged by workers, summed over cycles.
    pub acked_ops: u64,
    /// `cycles` per minute.
    pub cycles_per_minute: f64,
    /// `effective_kills` per minute.
    pub kills_per_minute: f64,
    /// Crash points the engine declares (points and recovery modes).
    pub points_total: usize,
    /// Crash points at which at least one worker was killed.
    pub points_hit: usize,
    /// Kills per point.
    pub points: Vec<PointCoverage>,
    /// Recovery-mode kills by depth.
    pub recovery: Option<RecoveryStats>,
    /// The wild-store table.
    pub wild: Vec<WildRow>,
    /// Everything that went wrong.
    pub violations: Vec<Violation>,
    /// Remarks (skipped parts and why).
    pub notes: Vec<String>,
}

impl Report {
    /// Fills in the rates from `elapsed_s`.
    pub fn finish(&mut self, elapsed: std::time::Duration) {
        self.elapsed_s = elapsed.as_secs_f64();
        let min = self.elapsed_s / 60.0;
        if min > 0.0 {
            self.cycles_per_minute = (self.cycles as f64 / min).round();
            self.kills_per_minute = (self.effective_kills as f64 / min).round();
        }
        self.points_hit = self.points.iter().filter(|p| p.kills > 0).count();
    }

    /// The human-readable summary.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "crash-sim {} / {} / {} (seed {})",
            self.engine, self.workload, self.mode, self.seed
        );
        let row = |s: &mut String, k: &str, v: String| {
            let _ = writeln!(s, "  {k:<22} {v}");
        };
        row(&mut s, "elapsed", format!("{:.1} s", self.elapsed_s));
        row(
            &mut s,
            "cycles",
            format!("{} ({:.0}/min)", self.cycles, self.cycles_per_minute),
        );
        row(
            &mut s,
            "effective kills",
            format!(
                "{} ({:.0}/min)",
                self.effective_kills, self.kills_per_minute
            ),
        );
        if self.acked_ops > 0 {
            row(
                &mut s,
                "acknowledged ops",
                format!(
                    "{} ({:.1} per cycle)",
                    self.acked_ops,
                    self.acked_ops as f64 / self.cycles.max(1) as f64
                ),
            );
        }
        if self.points_total > 0 {
            row(
                &mut s,
                "points covered",
                format!("{}/{}", self.points_hit, self.points_total),
            );
            let missed: Vec<&str> = self
                .points
                .iter()
                .filter(|p| p.kills == 0)
                .map(|p| p.point.as_str())
                .collect();
            if !missed.is_empty() {
                row(&mut s, "points never reached", missed.join(", "));
            }
        }
        if let Some(r) = &self.recovery {
            row(
                &mut s,
                "recovery kills",
                format!(
                    "depth 1: {}, depth 2: {}, depth 3: {} ({} comparisons)",
                    r.depth1_kills, r.depth2_kills, r.depth3_kills, r.comparisons
                ),
            );
        }
        if !self.wild.is_empty() {
            let _ = writeln!(
                s,
                "  {:<13} {:<9} {:>6} {:>8} {:>6} {:>5} {:>7} {:>8} {:>9} {:>10} {:>9} {:>9}",
                "protection",
                "model",
                "stores",
                "segment",
                "write",
                "meta",
                "landed",
                "trapped",
                "detected",
                "corrupted",
                "harmless",
                "derailed"
            );
            for w in &self.wild {
                let _ = writeln!(
                    s,
                    "  {:<13} {:<9} {:>6} {:>8} {:>6} {:>5} {:>7} {:>8} {:>9} {:>10} {:>9} {:>9}",
                    w.protection,
                    w.model,
                    w.faults,
                    w.hit_segment,
                    w.hit_write_mapping,
                    w.hit_metadata,
                    w.landed_in_engine,
                    w.trapped,
                    w.detected_by_engine,
                    w.corrupted_undetected,
                    w.harmless,
                    w.derailed
                );
            }
        }
        row(&mut s, "violations", self.violations.len().to_string());
        for v in &self.violations {
            let _ = writeln!(s, "  VIOLATION at {}: {}", v.at, v.message);
            let _ = writeln!(s, "    replay: {}", v.replay);
        }
        for n in &self.notes {
            let _ = writeln!(s, "  note: {n}");
        }
        s
    }
}

/// Prints a campaign's outcome on stdout (the table, or the report as JSON) or its error
/// on stderr, and returns the exit code of the command line: 0 without violations, 1
/// with, 2 on errors.
pub fn print(result: anyhow::Result<Report>, json: bool) -> std::process::ExitCode {
    match result {
        Ok(report) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&report).expect("a report serializes")
                );
            } else {
                print!("{}", report.table());
            }
            if report.violations.is_empty() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("crash-sim: {e:#}");
            std::process::ExitCode::from(2)
        }
    }
}
