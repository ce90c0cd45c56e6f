//! The report a person reads: which engines the charts show and in what role, the paper's
//! central comparison (RVM on disk -> RVM on Rio -> Vista) with its factors next to
//! Lowell and Chen's, and the Markdown document `<mode>.md` (engine legend, figures, tables).
//!
//! The charts never name engines themselves: they draw [`Report::picks`] and
//! [`Report::paper`], whose choices are the data in [`roles`] and [`PAPER_ENGINES`]. An engine
//! added to the registry appears in every table and in the legend at once; it appears in the
//! charts when a role lists it.
//!
//! "Vista" in the comparisons is the default engine, [`Report::default_engine`]: the vista
//! configuration `Protection::Auto` resolved to on the machine that ran the suite
//! (`vista-pkey` with protection keys, else `vista-alias`). Every factor of the report, its
//! table and its central figure comes from [`PaperCase`]'s methods, and the headline (the
//! default engine against RVM on disk and on Rio) is computed once, by [`Report::headline`].

use std::fmt::Write;

use crate::figure::{Figure, FigureKind};
use crate::measure::Sample;
use crate::suite::{group, Outcome, Report, Row};

/// A part a reader compares in the charts, and the engines that can play it: the first of
/// `candidates` measured in a workload is charted.
#[derive(Debug, Clone)]
pub struct Role {
    /// What the reader sees (`RVM on disk`).
    pub label: &'static str,
    /// Engine names, in order of preference.
    pub candidates: Vec<String>,
}

/// The label of the role the default engine plays.
pub const DEFAULT_ROLE: &str = "Vista, default guard (Auto)";

/// The roles of the charts, in legend order (each keeps its colour in every chart).
/// `default_engine` plays [`DEFAULT_ROLE`] (see [`Report::default_engine`]).
pub fn roles(default_engine: &str) -> Vec<Role> {
    let one = |label, name: &str| Role {
        label,
        candidates: vec![name.to_string()],
    };
    vec![
        one(DEFAULT_ROLE, default_engine),
        one("Vista, unprotected", "vista-none"),
        one(
            "Vista, mprotect guard (never the default)",
            "vista-mprotect",
        ),
        one("RVM on Rio", PAPER_ENGINES.rio),
        one("RVM on disk", PAPER_ENGINES.disk),
        one("PMDK", "pmdk"),
        one("LMDB, no sync", "lmdb-nosync"),
        one("SQLite, no sync", "sqlite-off"),
        one("floor", "floor-noguard"),
    ]
}

/// One engine in a chart of one workload.
#[derive(Debug, Clone, Copy)]
pub struct Pick<'r> {
    /// Index into [`roles`] (the colour).
    pub role: usize,
    /// The role's label.
    pub label: &'static str,
    /// The engine that plays it.
    pub engine: &'r str,
    /// Its result.
    pub sample: &'r Sample,
}

/// The RVM engines of the paper's central figure; its Vista is the report's default engine
/// ([`Report::default_engine`]).
#[derive(Debug, Clone, Copy)]
pub struct PaperEngines {
    /// RVM with its log and data on disk, synchronous commits (RVM's defaults).
    pub disk: &'static str,
    /// The same RVM with its files in the (emulated) Rio cache.
    pub rio: &'static str,
}

/// `rvm-restore-flush`, `rvm-rio-restore-flush`.
pub const PAPER_ENGINES: PaperEngines = PaperEngines {
    disk: "rvm-restore-flush",
    rio: "rvm-rio-restore-flush",
};

/// The unguarded vista, shown beside the default engine in the paper's table.
pub const UNGUARDED: &str = "vista-none";

/// What Lowell and Chen reported for one case (SOSP 1997): RVM on disk over RVM on Rio,
/// RVM on Rio over Vista, and RVM on disk over Vista.
#[derive(Debug, Clone, Copy)]
pub struct PaperFactors {
    /// RVM on disk / RVM on Rio.
    pub rio: Option<f64>,
    /// RVM on Rio / Vista.
    pub vista: Option<f64>,
    /// RVM on disk / Vista, as the paper states it.
    pub total: &'static str,
}

/// One case of the central comparison, measured.
#[derive(Debug, Clone)]
pub struct PaperCase {
    /// The workload case (`synthetic 8B`, `debit-credit`).
    pub workload: String,
    /// Median ns per transaction of RVM on disk.
    pub disk: f64,
    /// ... of RVM on Rio.
    pub rio: f64,
    /// ... of Vista with its default guard.
    pub vista: f64,
    /// The engine that measured `vista`: the report's default engine.
    pub vista_engine: String,
    /// ... of Vista without any guard ([`UNGUARDED`]), when it ran.
    pub unguarded: Option<f64>,
    /// The paper's factors for this case.
    pub paper: PaperFactors,
}

impl PaperCase {
    /// RVM on disk / RVM on Rio, measured.
    pub fn rio_factor(&self) -> f64 {
        self.disk / self.rio
    }
    /// RVM on Rio / Vista, measured.
    pub fn vista_factor(&self) -> f64 {
        self.rio / self.vista
    }
    /// RVM on disk / Vista, measured.
    pub fn total_factor(&self) -> f64 {
        self.disk / self.vista
    }
    /// RVM on disk / unguarded Vista, measured, when it ran.
    pub fn unguarded_factor(&self) -> Option<f64> {
        self.unguarded.map(|u| self.disk / u)
    }
}

/// The headline comparison: Vista with its default guard against RVM on disk and RVM on
/// Rio, each as the range of its factor over the cases of [`Report::paper`]. Computed once
/// ([`Report::headline`]) from [`PaperCase::total_factor`] and [`PaperCase::vista_factor`],
/// the same numbers the table and the central figure print per case.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline {
    /// The Vista engine compared (the default engine).
    pub vista: String,
    /// The cases the ranges cover.
    pub cases: Vec<String>,
    /// RVM on disk / Vista: (smallest, largest).
    pub over_disk: (f64, f64),
    /// RVM on Rio / Vista: (smallest, largest).
    pub over_rio: (f64, f64),
}

/// `lo`-`hi` as factors: `68-243x`, or one factor when they print the same.
pub fn factor_range((lo, hi): (f64, f64)) -> String {
    let (a, b) = (factor(lo), factor(hi));
    if a == b {
        a
    } else {
        format!("{}-{b}", a.trim_end_matches('x'))
    }
}

impl Headline {
    /// One sentence for the report.
    pub fn sentence(&self) -> String {
        format!(
            "Vista with its default guard (`{}`, what `Protection::Auto` picks on this machine) \
             is {} faster per transaction than RVM on disk (`{}`) and {} faster than RVM on the \
             Rio cache (`{}`): medians, over {}.",
            self.vista,
            factor_range(self.over_disk),
            PAPER_ENGINES.disk,
            factor_range(self.over_rio),
            PAPER_ENGINES.rio,
            self.cases.join(", ")
        )
    }

    /// A short line for figures.
    pub fn short(&self) -> String {
        format!(
            "{} (default guard) vs {}: {}; vs {}: {}",
            self.vista,
            PAPER_ENGINES.disk,
            factor_range(self.over_disk),
            PAPER_ENGINES.rio,
            factor_range(self.over_rio)
        )
    }
}

/// The paper's small-transaction factors: Rio removes 20x, Vista another 100x, 2000x in all.
const SMALL: PaperFactors = PaperFactors {
    rio: Some(20.0),
    vista: Some(100.0),
    total: "2000x",
};
/// The paper's TPC-B- and TPC-C-like figures: Vista 150-556x faster than RVM on disk (the
/// range covers both workloads; the paper gives no split for them).
const TABLES: PaperFactors = PaperFactors {
    rio: None,
    vista: None,
    total: "150-556x",
};

/// `v` ns as a time with three significant digits (`279 ns`, `9.13 µs`, `1.38 ms`).
pub fn human_ns(v: f64) -> String {
    let (x, unit) = if v < 1e3 {
        (v, "ns")
    } else if v < 1e6 {
        (v / 1e3, "µs")
    } else if v < 1e9 {
        (v / 1e6, "ms")
    } else {
        (v / 1e9, "s")
    };
    if x >= 100.0 {
        format!("{x:.0} {unit}")
    } else if x >= 10.0 {
        format!("{x:.1} {unit}")
    } else {
        format!("{x:.2} {unit}")
    }
}

/// A ratio as a factor (`347x`, `4.4x`, `0.13x`).
pub fn factor(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.0}x")
    } else if x >= 1.0 {
        format!("{x:.1}x")
    } else {
        format!("{x:.2}x")
    }
}

impl Report {
    fn measured(&self, workload: &str, engine: &str) -> Option<&Sample> {
        self.rows
            .iter()
            .find(|r| r.workload == workload && r.engine == engine)
            .and_then(Row::sample)
    }

    /// The roles of this report's charts ([`roles`] with its default engine).
    pub fn roles(&self) -> Vec<Role> {
        roles(&self.default_engine)
    }

    /// The charted engines of `workload`: for each of [`roles`] the first candidate measured
    /// there, in role order.
    pub fn picks(&self, workload: &str) -> Vec<Pick<'_>> {
        self.roles()
            .into_iter()
            .enumerate()
            .filter_map(|(role, r)| {
                r.candidates.iter().find_map(|name| {
                    let row = self
                        .rows
                        .iter()
                        .find(|row| row.workload == workload && &row.engine == name)?;
                    Some(Pick {
                        role,
                        label: r.label,
                        engine: &row.engine,
                        sample: row.sample()?,
                    })
                })
            })
            .collect()
    }

    /// Synthetic cases as (bytes, workload name), by size.
    pub fn sizes(&self) -> Vec<(usize, String)> {
        let mut v: Vec<(usize, String)> = Vec::new();
        for r in &self.rows {
            if let Some(b) = r.bytes {
                if !v.iter().any(|(n, _)| *n == b) {
                    v.push((b, r.workload.clone()));
                }
            }
        }
        v.sort_unstable();
        v
    }

    /// The paper's central comparison: the smallest synthetic transaction, debit-credit and
    /// order-entry, each where both of [`PAPER_ENGINES`] and the default engine were
    /// measured.
    pub fn paper(&self) -> Vec<PaperCase> {
        let mut cases: Vec<(String, PaperFactors)> = Vec::new();
        if let Some((_, w)) = self.sizes().into_iter().next() {
            cases.push((w, SMALL));
        }
        for w in self.workloads() {
            if w == "debit-credit" || w == "order-entry" {
                cases.push((w, TABLES));
            }
        }
        cases
            .into_iter()
            .filter_map(|(w, paper)| {
                let t = |e| self.measured(&w, e).map(|s| s.median_ns);
                Some(PaperCase {
                    disk: t(PAPER_ENGINES.disk)?,
                    rio: t(PAPER_ENGINES.rio)?,
                    vista: t(&self.default_engine)?,
                    vista_engine: self.default_engine.clone(),
                    unguarded: t(UNGUARDED),
                    paper,
                    workload: w,
                })
            })
            .collect()
    }

    /// The headline comparison over [`Report::paper`]'s cases, `None` without any.
    pub fn headline(&self) -> Option<Headline> {
        let cases = self.paper();
        let range = |f: &dyn Fn(&PaperCase) -> f64| {
            cases
                .iter()
                .map(f)
                .fold((f64::MAX, 0.0f64), |(lo, hi), x| (lo.min(x), hi.max(x)))
        };
        (!cases.is_empty()).then(|| Headline {
            vista: self.default_engine.clone(),
            cases: cases.iter().map(|c| c.workload.clone()).collect(),
            over_disk: range(&PaperCase::total_factor),
            over_rio: range(&PaperCase::vista_factor),
        })
    }

    /// The engine legend: every engine of the run with what it is and its role in the
    /// charts, then one line per reason for the engines this machine cannot run.
    pub fn legend(&self) -> String {
        let mut charted: Vec<(&str, &str)> = Vec::new();
        for w in self.workloads() {
            for p in self.picks(&w) {
                if !charted.iter().any(|c| c.0 == p.engine) {
                    charted.push((p.engine, p.label));
                }
            }
        }
        let mut out = String::from("| engine | what it is | in the charts as |\n|---|---|---|\n");
        for e in &self.engines {
            let charted = charted.iter().find(|c| c.0 == e.name).map_or("", |c| c.1);
            let not_here = if self.unavailable.iter().any(|u| u.engine == e.name) {
                " (cannot run here)"
            } else {
                ""
            };
            let _ = writeln!(out, "| `{}`{not_here} | {} | {charted} |", e.name, e.about);
        }
        let mut reasons: Vec<(&str, Vec<&str>)> = Vec::new();
        for u in &self.unavailable {
            match reasons.iter_mut().find(|(r, _)| *r == u.reason) {
                Some((_, names)) => names.push(&u.engine),
                None => reasons.push((&u.reason, vec![&u.engine])),
            }
        }
        for (reason, names) in reasons {
            let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
            let _ = writeln!(
                out,
                "\nNot run on this machine: {} ({reason}).",
                names.join(", ")
            );
        }
        out
    }

    /// The central comparison as a Markdown table, measured factors next to the paper's.
    pub fn paper_table(&self) -> String {
        let cases = self.paper();
        if cases.is_empty() {
            return String::new();
        }
        let unguarded = cases.iter().any(|c| c.unguarded.is_some());
        let mut out = format!(
            "| case | RVM on disk | RVM on Rio | Vista (`{}`) | disk / Rio (paper) | Rio / Vista (paper) | disk / Vista (paper) |{}\n|---|---:|---:|---:|---:|---:|---:|{}\n",
            self.default_engine,
            if unguarded {
                format!(" disk / `{UNGUARDED}` |")
            } else {
                String::new()
            },
            if unguarded { "---:|" } else { "" }
        );
        let paper = |x: Option<f64>| x.map_or_else(|| "-".to_string(), factor);
        for c in &cases {
            let _ = write!(
                out,
                "| {} | {} | {} | {} | {} ({}) | {} ({}) | {} ({}) |",
                c.workload,
                human_ns(c.disk),
                human_ns(c.rio),
                human_ns(c.vista),
                factor(c.rio_factor()),
                paper(c.paper.rio),
                factor(c.vista_factor()),
                paper(c.paper.vista),
                factor(c.total_factor()),
                c.paper.total
            );
            if unguarded {
                let _ = write!(out, " {} |", paper(c.unguarded_factor()));
            }
            out.push('\n');
        }
        let _ = write!(
            out,
            "\nRVM on disk is `{}`, RVM on Rio `{}` (the same LRVM with its log and data on \
             /dev/shm), Vista `{}`, the default engine: what `Protection::Auto` picks on this \
             machine (like the paper's Vista, it switches no page protection per write). \
             The paper's table-workload figure covers TPC-B and TPC-C together; it gives no \
             split between Rio and Vista for them.\n",
            PAPER_ENGINES.disk, PAPER_ENGINES.rio, self.default_engine
        );
        out
    }

    /// The whole report as a Markdown document: run, machine and load, engine legend, the
    /// paper's comparison, then per workload its chart and table, and the size sweep.
    /// `figures` are linked by file name (the document sits beside them).
    pub fn document(&self, figures: &[Figure]) -> String {
        let fig = |kind: &FigureKind, alt: &str| {
            figures
                .iter()
                .find(|f| &f.kind == kind)
                .map_or(String::new(), |f| {
                    let name = |p: &std::path::Path| {
                        p.file_name()
                            .map_or(String::new(), |n| n.to_string_lossy().into_owned())
                    };
                    format!("![{alt}]({}) ([SVG]({}))\n\n", name(&f.png), name(&f.svg))
                })
        };
        let warning = self
            .machine
            .load_warning
            .as_ref()
            .map_or(String::new(), |w| format!("**Warning: {w}.**\n\n"));
        let headline = self
            .headline()
            .map_or(String::new(), |h| format!("{}\n\n", h.sentence()));
        let mut out = format!(
            "# Benchmark report: {} run\n\nCommand: `{}`\n\nMachine: {}\n\n{warning}\
             The load average counts every process on the machine: on a shared machine, other \
             work shows up in the numbers. Times are medians of per-batch means, in \
             nanoseconds per transaction (lower is better).\n\n{headline}## Engines\n\n\
             The default engine is `{}`: the vista configuration `Protection::Auto` resolves \
             to on this machine (`vista-pkey` where protection keys can be allocated, else \
             `vista-alias`). It is the tables' ratio reference and Vista in the comparisons.\n\n{}\n",
            self.plan.mode,
            self.command,
            self.machine.summary(),
            self.default_engine,
            self.legend()
        );
        let paper = self.paper_table();
        if !paper.is_empty() {
            let _ = write!(
                out,
                "## RVM on disk → RVM on Rio → Vista (the paper's central comparison)\n\n{}{paper}\n",
                fig(&FigureKind::Paper, "RVM on disk, RVM on Rio and Vista")
            );
        }
        out.push_str("## Per workload\n\n");
        for w in self.workloads() {
            let _ = write!(
                out,
                "### {w}\n\n{}{}",
                fig(&FigureKind::Workload(w.clone()), &w),
                self.table(&w)
            );
        }
        let sizes = fig(&FigureKind::Sizes, "time per transaction against its size");
        if !sizes.is_empty() {
            let _ = write!(out, "## Transaction size\n\n{sizes}");
        }
        out
    }

    /// The tables, in Markdown: one per workload case. Ratios are to the reference engine
    /// (see [`Report::reference`]) and, when the reference is a guarded vista and
    /// `vista-none` ran too, also to `vista-none`, so the unguarded comparison is visible.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        for w in self.workloads() {
            let _ = write!(out, "#### {w}\n\n{}", self.table(&w));
        }
        out
    }

    fn table(&self, w: &str) -> String {
        let mut out = String::new();
        let reference = self.reference(w);
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
        let _ = write!(out, "| engine | median ns/txn | txn/s | x {ref_name} |");
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
                Outcome::Failed { error } => {
                    let _ = writeln!(out, "| {} | FAILED: {error} | |{blank}", r.engine);
                }
            }
        }
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::Machine;
    use crate::suite::{EngineInfo, Plan, Unavailable};
    use crate::workload::Family;

    fn row(workload: &str, engine: &str, median_ns: f64) -> Row {
        let s = Sample {
            median_ns,
            mean_ns: median_ns,
            min_ns: median_ns,
            max_ns: median_ns,
            batch: 1,
            batches: 1,
            transactions: 1,
        };
        let bytes = workload
            .strip_prefix("synthetic ")
            .and_then(|b| b.trim_end_matches('B').parse().ok());
        Row {
            workload: workload.into(),
            family: if bytes.is_some() {
                Family::Synthetic
            } else {
                Family::DebitCredit
            },
            bytes,
            engine: engine.into(),
            outcome: Outcome::Measured(s),
            counters: Vec::new(),
        }
    }

    fn report(rows: Vec<Row>, unavailable: &[(&str, &str)]) -> Report {
        let mut names: Vec<String> = Vec::new();
        for n in rows
            .iter()
            .map(|r| r.engine.as_str())
            .chain(unavailable.iter().map(|u| u.0))
        {
            if !names.iter().any(|x| x == n) {
                names.push(n.to_string());
            }
        }
        Report {
            command: String::new(),
            machine: Machine::detect(&std::env::temp_dir()),
            // A machine without protection keys; tests that need the other set it.
            default_engine: "vista-alias".into(),
            plan: Plan::smoke(std::env::temp_dir()),
            engines: names
                .into_iter()
                .map(|name| EngineInfo {
                    about: format!("about {name}"),
                    name,
                })
                .collect(),
            rows,
            unavailable: unavailable
                .iter()
                .map(|&(engine, reason)| Unavailable {
                    engine: engine.into(),
                    reason: reason.into(),
                })
                .collect(),
        }
    }

    #[test]
    fn the_ratio_reference_is_the_default_engine_never_mprotect() {
        let r = report(
            vec![
                row("synthetic 8B", "floor-noguard", 50.0),
                row("synthetic 8B", "vista-none", 100.0),
                row("synthetic 8B", "vista-mprotect", 1000.0),
                row("synthetic 8B", "vista-alias", 125.0),
            ],
            &[("vista-pkey", "no pkeys")],
        );
        assert_eq!(r.reference("synthetic 8B").unwrap().engine, "vista-alias");
        let md = r.markdown();
        assert!(md.contains("| x vista-alias | x vista-none |"), "{md}");
        assert!(
            md.contains("| floor-noguard | 50.0 | 20,000,000 | 0.40 | 0.50 |"),
            "{md}"
        );
        assert!(!md.contains("vista-pkey"), "{md}");

        // The default engine did not run (a machine with keys whose run left out
        // vista-pkey): the unguarded engine is the reference, not the mprotect one.
        let mut r = report(
            vec![
                row("synthetic 8B", "floor-noguard", 50.0),
                row("synthetic 8B", "vista-mprotect", 1000.0),
                row("synthetic 8B", "vista-none", 100.0),
            ],
            &[],
        );
        r.default_engine = "vista-pkey".into();
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

    #[test]
    fn an_engine_that_cannot_run_is_one_line_of_the_legend() {
        let r = report(
            vec![
                row("synthetic 8B", "vista-none", 100.0),
                row("synthetic 64B", "vista-none", 110.0),
                row("debit-credit", "vista-none", 300.0),
            ],
            &[("vista-pkey", "no pkeys"), ("floor-pkey", "no pkeys")],
        );
        let doc = r.document(&[]);
        assert_eq!(doc.matches("no pkeys").count(), 1, "{doc}");
        assert!(
            doc.contains("Not run on this machine: `vista-pkey`, `floor-pkey` (no pkeys)."),
            "{doc}"
        );
        assert!(
            doc.contains("| `vista-none` | about vista-none | Vista, unprotected |"),
            "{doc}"
        );
        assert!(doc.contains("| `vista-pkey` (cannot run here) |"), "{doc}");
    }

    #[test]
    fn picks_follow_the_roles_and_the_default_is_what_auto_picks() {
        let rows = vec![
            row("debit-credit", "sqlite-off", 9000.0),
            row("debit-credit", "vista-mprotect", 900.0),
            row("debit-credit", "vista-none", 100.0),
            row("debit-credit", "vista-alias", 110.0),
            row("debit-credit", "vista-pkey", 120.0),
            row("debit-credit", "lmdb-sync", 1e6),
        ];
        let mut r = report(rows, &[]);
        let got = |r: &Report| -> Vec<(usize, &'static str, String)> {
            r.picks("debit-credit")
                .iter()
                .map(|p| (p.role, p.label, p.engine.to_string()))
                .collect()
        };
        assert_eq!(
            got(&r),
            vec![
                (0, DEFAULT_ROLE, "vista-alias".into()),
                (1, "Vista, unprotected", "vista-none".into()),
                (
                    2,
                    "Vista, mprotect guard (never the default)",
                    "vista-mprotect".into()
                ),
                (7, "SQLite, no sync", "sqlite-off".into()),
            ]
        );
        r.default_engine = "vista-pkey".into();
        assert_eq!(got(&r)[0], (0, DEFAULT_ROLE, "vista-pkey".into()));
        let legend = r.legend();
        assert!(
            legend.contains("| `vista-mprotect` | about vista-mprotect | Vista, mprotect guard (never the default) |"),
            "{legend}"
        );
        assert!(
            legend.contains("| `vista-pkey` | about vista-pkey | Vista, default guard (Auto) |"),
            "{legend}"
        );
        assert!(
            legend.contains("| `vista-alias` | about vista-alias |  |"),
            "{legend}"
        );
    }

    #[test]
    fn the_paper_comparison_and_the_headline_divide_the_right_engines() {
        let mut rows = Vec::new();
        for (w, disk, rio, alias, none) in [
            ("synthetic 64B", 1e5, 2e3, 400.0, 300.0),
            ("synthetic 8B", 1e5, 1e3, 250.0, 200.0),
            ("debit-credit", 2e5, 4e3, 400.0, 320.0),
        ] {
            rows.push(row(w, "rvm-restore-flush", disk));
            rows.push(row(w, "rvm-rio-restore-flush", rio));
            rows.push(row(w, "vista-alias", alias));
            rows.push(row(w, "vista-none", none));
        }
        rows.push(row("synthetic 8B", "vista-mprotect", 1e4));
        let r = report(rows, &[]);
        let cases = r.paper();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].workload, "synthetic 8B");
        assert_eq!(cases[0].vista_engine, "vista-alias");
        assert!((cases[0].rio_factor() - 100.0).abs() < 1e-9);
        assert!((cases[0].vista_factor() - 4.0).abs() < 1e-9);
        assert!((cases[0].total_factor() - 400.0).abs() < 1e-9);
        assert!((cases[0].unguarded_factor().unwrap() - 500.0).abs() < 1e-9);
        assert_eq!(cases[1].workload, "debit-credit");
        assert!((cases[1].total_factor() - 500.0).abs() < 1e-9);

        // The headline is the range of the same factors, default engine against RVM.
        let h = r.headline().unwrap();
        assert_eq!(h.vista, "vista-alias");
        assert_eq!(h.cases, ["synthetic 8B", "debit-credit"]);
        assert_eq!(h.over_disk, (400.0, 500.0));
        assert_eq!(h.over_rio, (4.0, 10.0));
        assert_eq!(factor_range(h.over_disk), "400-500x");
        assert_eq!(factor_range(h.over_rio), "4.0-10x");
        assert_eq!(factor_range((3.0, 3.01)), "3.0x");

        let table = r.paper_table();
        assert!(
            table.contains("| Vista (`vista-alias`) |")
                && table.contains("| disk / `vista-none` |"),
            "{table}"
        );
        assert!(
            table.contains(
                "| synthetic 8B | 100 µs | 1.00 µs | 250 ns | 100x (20x) | 4.0x (100x) | 400x (2000x) | 500x |"
            ),
            "{table}"
        );
        assert!(
            table.contains("| debit-credit | 200 µs | 4.00 µs | 400 ns | 50x (-) | 10x (-) | 500x (150-556x) | 625x |"),
            "{table}"
        );
        assert!(!table.contains("mprotect"), "{table}");
        let doc = r.document(&[]);
        assert!(
            doc.contains(
                "Vista with its default guard (`vista-alias`, what `Protection::Auto` picks on this machine) \
                 is 400-500x faster per transaction than RVM on disk (`rvm-restore-flush`) and 4.0-10x \
                 faster than RVM on the Rio cache (`rvm-rio-restore-flush`): medians, over synthetic 8B, \
                 debit-credit."
            ),
            "{doc}"
        );
        assert!(doc.contains("The default engine is `vista-alias`"), "{doc}");

        // No default engine measured: no comparison and no headline, rather than another
        // engine's numbers under its name.
        let mut r = r;
        r.default_engine = "vista-pkey".into();
        assert!(r.paper().is_empty() && r.headline().is_none());
    }

    #[test]
    fn a_busy_machine_is_a_warning_in_the_report() {
        let mut r = report(vec![row("synthetic 8B", "vista-alias", 100.0)], &[]);
        assert!(!r.document(&[]).contains("Warning"));
        r.machine.load_warning = Some("the 1-minute load average was still 3.36".into());
        let doc = r.document(&[]);
        assert!(
            doc.contains("**Warning: the 1-minute load average was still 3.36.**"),
            "{doc}"
        );
    }

    #[test]
    fn every_figure_is_drawn_as_svg_and_png() {
        let mut rows = Vec::new();
        for (w, k) in [
            ("synthetic 8B", 1.0),
            ("synthetic 64B", 1.3),
            ("debit-credit", 2.0),
        ] {
            for (e, ns) in [
                ("floor-noguard", 90.0),
                ("vista-none", 250.0),
                ("vista-alias", 300.0),
                ("vista-mprotect", 9e3),
                ("rvm-rio-restore-flush", 1e3),
                ("rvm-restore-flush", 1e5),
                ("sqlite-off", 1.4e4),
            ] {
                rows.push(row(w, e, ns * k));
            }
        }
        let r = report(rows, &[("vista-pkey", "no pkeys")]);
        let dir = tempfile::tempdir().unwrap();
        let figures = crate::plot::write_plots(&r, dir.path(), "t").unwrap();
        if let Some(why) = figures.not_drawn {
            // Only a machine without any TrueType font gets here; the report says so.
            assert!(why.contains("no TrueType font"), "{why}");
            eprintln!("figures not drawn: {why}");
            return;
        }
        let kinds: Vec<FigureKind> = figures.figures.iter().map(|f| f.kind.clone()).collect();
        assert_eq!(
            kinds,
            vec![
                FigureKind::Paper,
                FigureKind::Workload("synthetic 8B".into()),
                FigureKind::Workload("synthetic 64B".into()),
                FigureKind::Workload("debit-credit".into()),
                FigureKind::Sizes,
            ]
        );
        for f in &figures.figures {
            let svg = std::fs::read_to_string(&f.svg).unwrap();
            assert!(svg.starts_with("<svg"), "{}", f.svg.display());
            let png = std::fs::read(&f.png).unwrap();
            assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "{}", f.png.display());
        }
        // The bar chart prints every charted value and names the engine playing each role.
        let bars = std::fs::read_to_string(&figures.figures[1].svg).unwrap();
        for text in [
            "250 ns",
            "300 ns",
            "9.00 µs",
            "100 µs",
            "Vista, default guard (Auto) (vista-alias)",
            "Vista, mprotect guard (never the default) (vista-mprotect)",
        ] {
            assert!(bars.contains(text), "{text} missing from the bar chart");
        }
        assert!(!bars.contains("default guard (Auto) (vista-mprotect)"));
        // The central figure names the default engine and prints the headline.
        let paper = std::fs::read_to_string(&figures.figures[0].svg).unwrap();
        let headline = r.headline().unwrap().short();
        assert!(
            paper.contains(&headline),
            "{headline} missing from the paper figure"
        );
        assert!(
            paper.contains("Vista = vista-alias"),
            "the paper figure names its Vista"
        );
        let doc = r.document(&figures.figures);
        assert!(doc.contains("![synthetic 8B](t-synthetic-8B.png)"), "{doc}");
    }

    #[test]
    fn times_and_factors_read_as_people_write_them() {
        assert_eq!(human_ns(90.46), "90.5 ns");
        assert_eq!(human_ns(279.2), "279 ns");
        assert_eq!(human_ns(9129.0), "9.13 µs");
        assert_eq!(human_ns(97_057.0), "97.1 µs");
        assert_eq!(human_ns(1_375_322.0), "1.38 ms");
        assert_eq!(factor(347.4), "347x");
        assert_eq!(factor(4.4), "4.4x");
        assert_eq!(factor(0.131), "0.13x");
    }
}
