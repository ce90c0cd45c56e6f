//! Running the suite: every selected engine through every selected workload, one fresh
//! segment per (engine, workload family), and the report that comes out of it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::engine::Engine;
use crate::machine::Machine;
use crate::measure::{measure, Budget, Sample};
use crate::registry::{EngineSpec, OpenOptions, REFERENCE_ORDER};
use crate::workload::{Family, Scale};

/// What to run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// `quick` or `full`.
    pub mode: &'static str,
    /// Workload families, in order.
    pub families: Vec<Family>,
    /// Synthetic transaction sizes in bytes.
    pub sizes: Vec<usize>,
    /// Synthetic segment size in bytes.
    pub segment_len: u64,
    /// Table sizes of debit-credit and order-entry.
    pub scale: Scale,
    /// Time per cell.
    pub budget: Budget,
    /// Where file-backed engines keep their files.
    pub scratch: PathBuf,
}

impl Plan {
    /// `quick`: 8 B, 64 B, 512 B, 4 KiB, 64 KiB; 300 ms per cell (after 100 ms warm-up).
    pub fn quick(scratch: PathBuf) -> Plan {
        Plan {
            mode: "quick",
            families: Family::ALL.to_vec(),
            sizes: vec![8, 64, 512, 4096, 65536],
            segment_len: 64 << 20,
            scale: Scale::Standard,
            budget: Budget::QUICK,
            scratch,
        }
    }

    /// `smoke`: every workload at the quick sizes on a 1 MiB synthetic segment and tiny
    /// tables, a few milliseconds per cell: checks in seconds that every engine runs every
    /// workload and keeps its data (for CI), measures nothing worth reporting.
    pub fn smoke(scratch: PathBuf) -> Plan {
        Plan {
            mode: "smoke",
            segment_len: 1 << 20,
            scale: Scale::Tiny,
            budget: Budget::SMOKE,
            ..Plan::quick(scratch)
        }
    }

    /// `full`: every power of two from 8 B to 64 KiB; 2 s per cell.
    pub fn full(scratch: PathBuf) -> Plan {
        Plan {
            mode: "full",
            sizes: (3..=16).map(|s| 1 << s).collect(),
            budget: Budget::FULL,
            ..Plan::quick(scratch)
        }
    }
}

/// What happened to one (engine, workload) cell.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "lowercase")]
pub enum Outcome {
    /// Measured; the data check passed afterwards.
    Measured(Sample),
    /// The machine cannot run this engine; never measured.
    Skipped {
        /// Why.
        reason: String,
    },
    /// Opening, a transaction, or the data check failed.
    Failed {
        /// The error chain.
        error: String,
    },
}

/// One cell of the results.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The workload case (`synthetic 8B`, `debit-credit`).
    pub workload: String,
    /// Its family.
    pub family: Family,
    /// Bytes written per transaction (synthetic only).
    pub bytes: Option<usize>,
    /// The engine configuration.
    pub engine: String,
    /// The result.
    pub outcome: Outcome,
    /// The engine's [`Engine::counters`] that moved while the cell was measured (warm-up
    /// excluded): truncations, checkpoints, log forces.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub counters: Vec<(String, u64)>,
}

impl Row {
    /// The sample, if measured.
    pub fn sample(&self) -> Option<&Sample> {
        match &self.outcome {
            Outcome::Measured(s) => Some(s),
            _ => None,
        }
    }
}

/// An engine as listed in the report.
#[derive(Debug, Clone, Serialize)]
pub struct EngineInfo {
    /// Name.
    pub name: String,
    /// What it is.
    pub about: String,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command line.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// What was run.
    pub plan: Plan,
    /// The engines, in order.
    pub engines: Vec<EngineInfo>,
    /// Every cell, by family, then engine, then case.
    pub rows: Vec<Row>,
}

/// Runs `plan` over `engines`, calling `progress` with a line per cell.
pub fn run(
    plan: &Plan,
    engines: &[EngineSpec],
    command: String,
    mut progress: impl FnMut(&str),
) -> Report {
    let mut machine = Machine::detect(&plan.scratch);
    let mut rows = Vec::new();
    // What this machine cannot run is said once per reason (say, no protection keys),
    // not once per cell; the report still has a skipped row per cell.
    let mut unsupported: Vec<(String, Vec<&str>)> = Vec::new();
    for spec in engines {
        if let Err(reason) = spec.supported() {
            match unsupported.iter_mut().find(|(r, _)| *r == reason) {
                Some((_, names)) => names.push(spec.name),
                None => unsupported.push((reason, vec![spec.name])),
            }
        }
    }
    for (reason, names) in &unsupported {
        progress(&format!(
            "not run on this machine: {}: {reason}",
            names.join(", ")
        ));
    }
    for &family in &plan.families {
        for spec in engines {
            let mut cases = family.cases(&plan.sizes, plan.segment_len, plan.scale);
            let mut push = |workload: &dyn crate::workload::Workload,
                            (outcome, counters): (Outcome, Vec<(String, u64)>),
                            progress: &mut dyn FnMut(&str)| {
                let row = Row {
                    workload: workload.name(),
                    family,
                    bytes: workload.txn_bytes(),
                    engine: spec.name.to_string(),
                    outcome,
                    counters,
                };
                if !matches!(row.outcome, Outcome::Skipped { .. }) {
                    progress(&describe(&row));
                }
                rows.push(row);
            };
            if let Err(reason) = spec.supported() {
                for w in &cases {
                    push(
                        w.as_ref(),
                        (
                            Outcome::Skipped {
                                reason: reason.clone(),
                            },
                            Vec::new(),
                        ),
                        &mut progress,
                    );
                }
                continue;
            }
            let layout = cases[0].layout();
            let mut engine = match spec.open(OpenOptions {
                layout: &layout,
                scratch: &plan.scratch,
            }) {
                Ok(e) => e,
                Err(e) => {
                    for w in &cases {
                        push(
                            w.as_ref(),
                            (
                                Outcome::Failed {
                                    error: format!("open: {e:#}"),
                                },
                                Vec::new(),
                            ),
                            &mut progress,
                        );
                    }
                    continue;
                }
            };
            for w in &mut cases {
                let outcome = match run_case(w.as_mut(), engine.as_mut(), &plan.budget) {
                    Ok((s, counters)) => (Outcome::Measured(s), counters),
                    Err(e) => (
                        Outcome::Failed {
                            error: format!("{e:#}"),
                        },
                        Vec::new(),
                    ),
                };
                push(w.as_ref(), outcome, &mut progress);
            }
        }
    }
    machine.load_end = crate::machine::load_average();
    Report {
        command,
        machine,
        plan: plan.clone(),
        engines: engines
            .iter()
            .map(|e| EngineInfo {
                name: e.name.into(),
                about: e.about.into(),
            })
            .collect(),
        rows,
    }
}

fn run_case(
    w: &mut dyn crate::workload::Workload,
    e: &mut dyn Engine,
    budget: &Budget,
) -> Result<(Sample, Vec<(String, u64)>)> {
    w.load(e).context("load")?;
    let (sample, before) = measure(w, e, budget)?;
    let counters = e
        .counters()
        .into_iter()
        .zip(before)
        .map(|((name, after), (_, before))| (name.to_string(), after - before))
        .filter(|&(_, moved)| moved > 0)
        .collect();
    w.check(e).context("data check after the run")?;
    Ok((sample, counters))
}

fn describe(row: &Row) -> String {
    match &row.outcome {
        Outcome::Measured(s) => {
            let counters = row.counters.iter().fold(String::new(), |acc, (name, n)| {
                acc + &format!(", {n} {name}")
            });
            format!(
                "{:<18} {:<25} {:>12} ns/txn  ({} batches of {}{counters})",
                row.workload,
                row.engine,
                group(s.median_ns),
                s.batches,
                s.batch
            )
        }
        Outcome::Skipped { reason } => {
            format!("{:<18} {:<25} skipped: {reason}", row.workload, row.engine)
        }
        Outcome::Failed { error } => {
            format!("{:<18} {:<25} FAILED: {error}", row.workload, row.engine)
        }
    }
}

/// `v` rounded, with thousands separators; one decimal below 100.
pub fn group(v: f64) -> String {
    if v < 100.0 {
        return format!("{v:.1}");
    }
    let s = format!("{:.0}", v.round());
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Report {
    /// Workload cases in order of first appearance.
    pub fn workloads(&self) -> Vec<String> {
        let mut v: Vec<String> = Vec::new();
        for r in &self.rows {
            if !v.contains(&r.workload) {
                v.push(r.workload.clone());
            }
        }
        v
    }

    /// The reference engine of `workload`: the first of [`REFERENCE_ORDER`] measured there,
    /// else the first engine measured there.
    pub fn reference(&self, workload: &str) -> Option<&Row> {
        let measured = || {
            self.rows
                .iter()
                .filter(move |r| r.workload == workload && r.sample().is_some())
        };
        REFERENCE_ORDER
            .iter()
            .find_map(|name| measured().find(|r| r.engine == *name))
            .or_else(|| measured().next())
    }

    /// The tables, in Markdown: one per workload case. Ratios are to the reference engine
    /// (see [`Report::reference`]) and, when the reference is a guarded vista and
    /// `vista-none` ran too, also to `vista-none`, so the unguarded comparison is visible.
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        // Writing to a String cannot fail; the results are ignored.
        let mut out = String::new();
        for w in self.workloads() {
            let reference = self.reference(&w);
            let ref_name = reference.map_or("-", |r| r.engine.as_str());
            let unguarded = self
                .rows
                .iter()
                .find(|r| r.workload == w && r.engine == "vista-none" && r.sample().is_some())
                .filter(|_| ref_name != "vista-none");
            let ratio = |s: &Sample, to: Option<&Row>| {
                to.and_then(Row::sample).map_or_else(
                    || "-".into(),
                    |b| format!("{:.2}", s.median_ns / b.median_ns),
                )
            };
            let _ = write!(
                out,
                "#### {w}\n\n| engine | median ns/txn | txn/s | x {ref_name} |"
            );
            if unguarded.is_some() {
                out.push_str(" x vista-none |\n|---|---:|---:|---:|---:|\n");
            } else {
                out.push_str("\n|---|---:|---:|---:|\n");
            }
            let blank = if unguarded.is_some() { " | |" } else { " |" };
            for r in self.rows.iter().filter(|r| r.workload == w) {
                match &r.outcome {
                    Outcome::Measured(s) => {
                        let _ = write!(
                            out,
                            "| {} | {} | {} | {} |",
                            r.engine,
                            group(s.median_ns),
                            group(s.per_second()),
                            ratio(s, reference)
                        );
                        if unguarded.is_some() {
                            let _ = write!(out, " {} |", ratio(s, unguarded));
                        }
                        out.push('\n');
                    }
                    Outcome::Skipped { reason } => {
                        let _ = writeln!(out, "| {} | skipped: {reason} | |{blank}", r.engine);
                    }
                    Outcome::Failed { error } => {
                        let _ = writeln!(out, "| {} | FAILED: {error} | |{blank}", r.engine);
                    }
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(engine: &str, median_ns: f64) -> Row {
        let s = Sample {
            median_ns,
            mean_ns: median_ns,
            min_ns: median_ns,
            max_ns: median_ns,
            batch: 1,
            batches: 1,
            transactions: 1,
        };
        Row {
            workload: "synthetic 8B".into(),
            family: Family::Synthetic,
            bytes: Some(8),
            engine: engine.into(),
            outcome: if median_ns > 0.0 {
                Outcome::Measured(s)
            } else {
                Outcome::Skipped {
                    reason: "no pkeys".into(),
                }
            },
            counters: Vec::new(),
        }
    }

    fn report(rows: Vec<Row>) -> Report {
        Report {
            command: String::new(),
            machine: Machine::detect(&std::env::temp_dir()),
            plan: Plan::smoke(std::env::temp_dir()),
            engines: Vec::new(),
            rows,
        }
    }

    #[test]
    fn what_cannot_run_here_is_said_once_per_reason() {
        let no_keys = || {
            Err(std::io::Error::other(
                "memory protection keys are unavailable: test",
            ))
        };
        let specs = [
            crate::registry::EngineSpec::new("a-pkey", "a", |_| anyhow::bail!("not run"))
                .probe(no_keys),
            crate::registry::EngineSpec::new("b-pkey", "b", |_| anyhow::bail!("not run"))
                .probe(no_keys),
        ];
        let mut lines = Vec::new();
        let r = run(
            &Plan::smoke(std::env::temp_dir()),
            &specs,
            String::new(),
            |l| lines.push(l.to_owned()),
        );
        assert_eq!(
            lines,
            ["not run on this machine: a-pkey, b-pkey: memory protection keys are unavailable: test"]
        );
        assert!(r.rows.len() > 2, "every cell is still in the report");
        assert!(r
            .rows
            .iter()
            .all(|row| matches!(row.outcome, Outcome::Skipped { .. })));
    }

    #[test]
    fn the_ratio_reference_is_the_best_guarded_vista_that_ran() {
        let r = report(vec![
            row("floor-noguard", 50.0),
            row("vista-none", 100.0),
            row("vista-mprotect", 1000.0),
            row("vista-pkey", 0.0),
        ]);
        assert_eq!(
            r.reference("synthetic 8B").unwrap().engine,
            "vista-mprotect"
        );
        let md = r.markdown();
        assert!(md.contains("| x vista-mprotect | x vista-none |"), "{md}");
        assert!(
            md.contains("| floor-noguard | 50.0 | 20,000,000 | 0.05 | 0.50 |"),
            "{md}"
        );
        assert!(
            md.contains("| vista-pkey | skipped: no pkeys | | | |"),
            "{md}"
        );

        let r = report(vec![row("floor-noguard", 50.0), row("vista-none", 100.0)]);
        assert_eq!(r.reference("synthetic 8B").unwrap().engine, "vista-none");
        let md = r.markdown();
        assert!(
            !md.contains("x vista-none |\n|---|---:|---:|---:|---:|"),
            "{md}"
        );
        assert!(
            md.contains("| floor-noguard | 50.0 | 20,000,000 | 0.50 |\n"),
            "{md}"
        );
    }
}
