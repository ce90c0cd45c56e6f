//! A campaign: one engine, one workload, one fault mode, until the time or cycle budget
//! is spent (or, for the exhaustive modes, until every point is done).
//!
//! [`run`] picks the mode; the modes stand on `crate::harness` (configuration, shared
//! state, snapshots, workers, oracles), which knows none of them.

use anyhow::Result;

use crate::engines::CrashModel;
use crate::modes::{compound, kill, points, recovery, threads, wild};
use crate::report::Report;
use crate::workloads::WorkloadKind;

// The flat layout's `crash_sim::campaign::{Config, Ctx, Mode, Snapshot, ...}`.
pub use crate::harness::config::{parse_protection, protection_name, Config, Mode};
pub use crate::harness::ctx::Ctx;
pub use crate::harness::snapshot::Snapshot;

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
    anyhow::ensure!(
        cfg.workload != WorkloadKind::Xseg
            || (!cfg.engine.is_lrvm()
                && matches!(
                    cfg.mode,
                    Mode::Kill | Mode::Power | Mode::Points | Mode::Recovery
                )
                && cfg.threads == 1),
        "the xseg workload drives vista's groups of segments, one thread, in the kill, \
         power, points and recovery modes"
    );
    if cfg.threads != 1 || cfg.mode == Mode::Io {
        check_threads(&cfg)?;
        let model = if cfg.mode == Mode::Power {
            CrashModel::Power
        } else {
            CrashModel::Process
        };
        let mut ctx = Ctx::new(cfg)?;
        threads::run(&mut ctx, model)?;
        return Ok(ctx.finish());
    }
    let mut ctx = Ctx::new(cfg)?;
    match ctx.cfg.mode {
        Mode::Kill => kill::run(&mut ctx, CrashModel::Process)?,
        Mode::Power => kill::run(&mut ctx, CrashModel::Power)?,
        Mode::Points => points::run(&mut ctx)?,
        Mode::Recovery => recovery::run(&mut ctx)?,
        Mode::Wild => wild::run(&mut ctx)?,
        Mode::Compound => compound::run(&mut ctx)?,
        Mode::Io => unreachable!("the io mode runs the threaded worker"),
    }
    Ok(ctx.finish())
}

/// What `--threads N` (N > 1) and the io mode support: vista, bank or kv; kill, power
/// or io mode.
fn check_threads(cfg: &Config) -> Result<()> {
    let n = cfg.threads;
    anyhow::ensure!(
        (1..=threads::MAX_THREADS).contains(&n),
        "--threads {n}: between 1 and {}",
        threads::MAX_THREADS
    );
    anyhow::ensure!(
        !cfg.engine.is_lrvm(),
        "--threads {n} needs --engine vista: lrvm runs one transaction at a time (its \
         transactions are not isolated from each other), so it has one thread"
    );
    anyhow::ensure!(
        threads::Shape::of(cfg.workload).is_some(),
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
