//! `crash-sim self-test`: the campaign has teeth. Each mutant is a deliberately broken
//! engine (compiled in only with the `mutants` feature, picked at run time through
//! `VISTA_MUTANT`, `RIO_MUTANT` or `LRVM_MUTANT`); each must make the campaign that targets it report
//! a violation. The same campaigns against the unbroken engines must report none, so a
//! caught mutant means the harness saw the bug, not that it fails on anything.

use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};

/// One deliberately broken engine and the campaign that must catch it.
#[derive(Debug, Clone, Copy)]
pub struct Mutant {
    /// The selector value.
    pub name: &'static str,
    /// The environment variable that selects it.
    pub var: &'static str,
    /// What is broken.
    pub what: &'static str,
    /// The campaign: engine, workload, mode, seconds.
    pub campaign: (&'static str, &'static str, &'static str, &'static str),
    /// Threads per worker of the campaign (`--threads`).
    pub threads: u32,
    /// vista's guard in the campaign (`--protection`).
    pub protection: &'static str,
    /// The longest random delay before a kill (`--max-delay-us`; `None`: the default).
    pub max_delay_us: Option<u64>,
}

/// Every mutant.
pub const MUTANTS: &[Mutant] = &[
    Mutant {
        name: "xseg-members-first",
        var: "VISTA_MUTANT",
        what: "vista's transactions across segments store the members' commits before the \
               coordinator's decision",
        // The points mode reaches it deterministically (2 s in a self-test on a loaded
        // two-core machine).
        campaign: ("vista", "xseg", "points", "20"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "xseg-install-undecided",
        var: "VISTA_MUTANT",
        what: "vista's group checkpoint installs the members' batches without the \
               coordinator's decision (one at a time)",
        campaign: ("vista", "xseg", "power", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "publish-late",
        var: "VISTA_MUTANT",
        what: "vista publishes the undo record (tail store) after the data write",
        campaign: ("vista", "bank", "points", "20"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "commit-early",
        var: "VISTA_MUTANT",
        what: "vista stores the commit (empty log) before the data is written",
        campaign: ("vista", "kv", "kill", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "recover-skip-newest",
        var: "VISTA_MUTANT",
        what: "vista recovery skips the newest undo record",
        campaign: ("vista", "bank", "kill", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "recover-clear-first",
        var: "VISTA_MUTANT",
        what: "vista recovery empties the undo log before copying the before-images back",
        campaign: ("vista", "bank", "recovery", "20"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "durable-no-checkpoint",
        var: "VISTA_MUTANT",
        what: "vista commit_durable returns without taking the checkpoint",
        campaign: ("vista", "kv", "power", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "head-before-sync",
        var: "LRVM_MUTANT",
        what: "lrvm truncation advances the status block's head before fsyncing the data",
        campaign: ("lrvm-flush", "bank", "power", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "flush-no-sync",
        var: "LRVM_MUTANT",
        what: "lrvm Flush commits return without fsyncing the log",
        campaign: ("lrvm-noflush", "kv", "power", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "commit-no-sync",
        var: "RIO_MUTANT",
        what: "rio-cache writes the header that commits a checkpoint before fsyncing the \
               pages it wrote into the other slot",
        // Caught in about 3-5 s on a loaded machine: room to spare (a caught campaign
        // stops at its first violation).
        campaign: ("vista", "kv", "power", "20"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "install-no-sync",
        var: "RIO_MUTANT",
        what: "rio-cache reports a checkpoint done (its pages clean) without fsyncing the \
               header that commits it",
        campaign: ("vista", "bank", "power", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "differs-forgets-batch",
        var: "RIO_MUTANT",
        what: "rio-cache forgets that the slots differ on the pages a checkpoint just wrote, \
               so the next checkpoint leaves them stale in the other slot",
        campaign: ("vista", "pages", "power", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "cold-differs-none",
        var: "RIO_MUTANT",
        what: "rio-cache trusts the other slot after a cold start, though a checkpoint cut \
               off by the power loss may have written part of it",
        campaign: ("vista", "pages", "power", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "lacks-none",
        var: "RIO_MUTANT",
        what: "rio-cache commits a checkpoint with a header that names no page the other \
               slot lacks, so the first checkpoint after a cold start leaves that slot stale",
        // Seen only when a power cut falls between two checkpoints of a cycle and the next
        // cycle runs past its first checkpoint: the default delay (at most 400 us, four
        // times that in a cycle armed at a crash point) kills most workers sooner, and
        // after the first few cycles (whose slots differ on every page) a run could go 500
        // cycles unseen. Up to 10 ms (40 ms armed): one cycle in 7 or 8 shows it.
        campaign: ("vista", "pages", "power", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: Some(10_000),
    },
    Mutant {
        name: "intent-none",
        var: "RIO_MUTANT",
        what: "rio-cache's checkpoint writes pages into the other slot without first \
               recording them in the intent record, so a cold start after a power cut \
               trusts the pages it tore",
        // The compound mode's torn-then-checkpoint scenario: about 4 s here.
        campaign: ("vista", "pages", "compound", "40"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "intent-no-sync",
        var: "RIO_MUTANT",
        what: "rio-cache writes the intent record but does not fsync it before the pages it \
               names, so a power cut can keep the pages and lose the record",
        // Caught only by a cut that drops the record and keeps a page: about 13 s here.
        campaign: ("vista", "pages", "compound", "40"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "clean-before-copy",
        var: "RIO_MUTANT",
        what: "rio-cache's checkpoint clears a page's dirty mark before copying it and marking \
               it in flight",
        campaign: ("vista", "bank", "compound", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "warm-after-rewrite",
        var: "RIO_MUTANT",
        what: "rio-cache starts warm from an image loaded from a writer that has checkpointed \
               since",
        campaign: ("vista", "kv", "compound", "10"),
        threads: 1,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "recover-lane0-only",
        var: "VISTA_MUTANT",
        what: "vista recovery rolls back lane 0 only, leaving other threads' unfinished \
               transactions in place",
        campaign: ("vista", "bank", "kill", "10"),
        threads: 4,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "read-unlocked",
        var: "RIO_MUTANT",
        what: "rio-cache's updates read without taking the shared lock (a transaction's \
               reads are not isolated: lost updates)",
        campaign: ("vista", "kv", "kill", "10"),
        threads: 4,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "copy-without-cow",
        var: "RIO_MUTANT",
        what: "rio-cache's checkpoint copies its snapshot while updates run, but writers do \
               not preserve the pages it has not copied yet (the snapshot mixes states)",
        campaign: ("vista", "kv", "power", "15"),
        threads: 4,
        protection: "auto",
        max_delay_us: None,
    },
    Mutant {
        name: "publish-before-lock",
        var: "VISTA_MUTANT",
        what: "vista publishes a write's undo record before it holds the range exclusively \
               (under mprotect a refused upgrade left the record published: a later recovery \
               undid acknowledged commits, or an ordinary conflict poisoned the segment)",
        campaign: ("vista", "bank", "kill", "10"),
        threads: 4,
        protection: "mprotect",
        max_delay_us: None,
    },
];

/// The outcome of one campaign of the self-test.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Run {
    /// The mutant (`None`: the unbroken engine).
    pub mutant: Option<String>,
    /// The campaign's command line.
    pub command: String,
    /// Violations reported.
    pub violations: usize,
    /// The first violation, if any.
    pub first: Option<String>,
    /// Whether this is what the self-test wants (mutant caught; control clean).
    pub ok: bool,
    /// Seconds it took.
    pub seconds: f64,
}

/// A campaign of the self-test: engine, workload, mode, seconds.
type Campaign<'a> = (&'a str, &'a str, &'a str, &'a str);

/// How a campaign runs beyond its [`Campaign`]: threads per worker, guard and longest
/// delay before a kill, as in [`Mutant`].
type Shape<'a> = (u32, &'a str, Option<u64>);

fn campaign(mutant: Option<&Mutant>, c: Campaign<'_>, shape: Shape<'_>) -> Result<Run> {
    let (engine, workload, mode, seconds) = c;
    let (threads, protection, max_delay_us) = shape;
    let exe = std::env::current_exe().context("find the crash-sim executable")?;
    let threads = threads.to_string();
    let delay = max_delay_us.map(|d| d.to_string());
    let mut args = vec![
        "run",
        "--engine",
        engine,
        "--workload",
        workload,
        "--mode",
        mode,
        "--seconds",
        seconds,
        "--seed",
        "1",
    ];
    if threads != "1" {
        args.extend(["--threads", threads.as_str()]);
    }
    if protection != "auto" {
        args.extend(["--protection", protection]);
    }
    if let Some(d) = &delay {
        args.extend(["--max-delay-us", d.as_str()]);
    }
    args.extend(["--json", "--quiet"]);
    let mut cmd = Command::new(exe);
    cmd.args(&args)
        .env_remove("VISTA_MUTANT")
        .env_remove("LRVM_MUTANT")
        .env_remove("RIO_MUTANT");
    let mut line = String::new();
    if let Some(m) = mutant {
        cmd.env(m.var, m.name);
        line = format!("{}={} ", m.var, m.name);
    }
    line.push_str("crash-sim ");
    line.push_str(&args[..args.len() - 2].join(" "));
    let started = Instant::now();
    let out = cmd.output().context("run a campaign")?;
    let seconds = started.elapsed().as_secs_f64();
    let report: serde_json::Value = match out.status.code() {
        Some(0 | 1) => serde_json::from_slice(&out.stdout).context("read the campaign's report")?,
        _ => bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
    };
    let violations = report["violations"].as_array().map_or(0, Vec::len);
    let first = report["violations"][0]["message"]
        .as_str()
        .map(str::to_owned);
    Ok(Run {
        mutant: mutant.map(|m| m.name.to_owned()),
        command: line,
        violations,
        first,
        ok: (violations > 0) == mutant.is_some(),
        seconds,
    })
}

/// Runs the controls and every mutant. Returns every run; the self-test passes if all
/// are `ok`.
///
/// # Errors
/// When crash-sim was built without the `mutants` feature, or a campaign could not run.
pub fn run() -> Result<Vec<Run>> {
    if !cfg!(feature = "mutants") {
        bail!(
            "this crash-sim was built without the `mutants` feature: \
             cargo run --release -p crash-sim --features mutants -- self-test"
        );
    }
    let mut runs = Vec::new();
    let mut controls: Vec<(Campaign<'_>, Shape<'_>)> = Vec::new();
    for m in MUTANTS {
        let (e, w, mode, _) = m.campaign;
        let shape = (m.threads, m.protection, m.max_delay_us);
        if !controls
            .iter()
            .any(|(c, s)| (c.0, c.1, c.2, *s) == (e, w, mode, shape))
        {
            // The same campaign against the unbroken engine (3 s; the exhaustive modes
            // finish sooner) must report nothing, or a caught mutant proves nothing.
            controls.push(((e, w, mode, "3"), shape));
        }
    }
    for (c, s) in controls {
        runs.push(campaign(None, c, s)?);
    }
    for m in MUTANTS {
        let shape = (m.threads, m.protection, m.max_delay_us);
        runs.push(campaign(Some(m), m.campaign, shape)?);
    }
    Ok(runs)
}
