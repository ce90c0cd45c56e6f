//! Running the suite: every selected engine through every selected workload, one fresh
//! segment per (engine, workload family), and the report that comes out of it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::engine::Engine;
use crate::machine::Machine;
use crate::measure::{measure, Budget, Sample};
use crate::registry::{EngineSpec, OpenOptions, REFERENCE_FALLBACK};
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
            Outcome::Failed { .. } => None,
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

/// An engine of the selection that this machine cannot run (its probe failed): it has no
/// rows, and the report says so once.
#[derive(Debug, Clone, Serialize)]
pub struct Unavailable {
    /// The engine's name.
    pub engine: String,
    /// Why it cannot run here.
    pub reason: String,
}

/// Everything a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The command line.
    pub command: String,
    /// The machine.
    pub machine: Machine,
    /// The vista configuration `Protection::Auto` resolved to on the machine that ran the
    /// suite ([`crate::registry::default_engine`]): the tables' ratio reference and the
    /// Vista of every comparison and headline factor.
    pub default_engine: String,
    /// What was run.
    pub plan: Plan,
    /// The engines, in order.
    pub engines: Vec<EngineInfo>,
    /// Every cell, by family, then engine, then case.
    pub rows: Vec<Row>,
    /// Selected engines this machine cannot run, in engine order (never measured, no rows).
    pub unavailable: Vec<Unavailable>,
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
    // An engine the machine cannot run is reported once, not as a row per workload, and
    // the console says once per reason (say, no protection keys) which engines that is.
    let mut unavailable: Vec<Unavailable> = Vec::new();
    let runnable: Vec<&EngineSpec> = engines
        .iter()
        .filter(|spec| match spec.supported() {
            Ok(()) => true,
            Err(reason) => {
                unavailable.push(Unavailable {
                    engine: spec.name.to_string(),
                    reason,
                });
                false
            }
        })
        .collect();
    let mut reasons: Vec<&str> = Vec::new();
    for u in &unavailable {
        if !reasons.contains(&u.reason.as_str()) {
            reasons.push(&u.reason);
        }
    }
    for reason in reasons {
        let names: Vec<&str> = unavailable
            .iter()
            .filter(|u| u.reason == reason)
            .map(|u| u.engine.as_str())
            .collect();
        progress(&format!(
            "not run on this machine: {}: {reason}",
            names.join(", ")
        ));
    }
    for &family in &plan.families {
        for &spec in &runnable {
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
                progress(&describe(&row));
                rows.push(row);
            };
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
        default_engine: crate::registry::default_engine().to_string(),
        plan: plan.clone(),
        engines: engines
            .iter()
            .map(|e| EngineInfo {
                name: e.name.into(),
                about: e.about.into(),
            })
            .collect(),
        rows,
        unavailable,
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

    /// The reference engine of `workload`: the default engine ([`Report::default_engine`])
    /// if it was measured there, else [`REFERENCE_FALLBACK`], else the first engine measured
    /// there.
    pub fn reference(&self, workload: &str) -> Option<&Row> {
        let measured = || {
            self.rows
                .iter()
                .filter(move |r| r.workload == workload && r.sample().is_some())
        };
        [self.default_engine.as_str(), REFERENCE_FALLBACK]
            .iter()
            .find_map(|name| measured().find(|r| r.engine == *name))
            .or_else(|| measured().next())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(r.rows.is_empty(), "no row for an engine that cannot run");
        // The default engine is what Auto resolves to here, asked as rio-cache asks.
        let auto = if rio_cache::pkeys_supported() {
            "vista-pkey"
        } else {
            "vista-alias"
        };
        assert_eq!(r.default_engine, auto);
        let names: Vec<&str> = r.unavailable.iter().map(|u| u.engine.as_str()).collect();
        assert_eq!(names, ["a-pkey", "b-pkey"]);
    }
}
