//! The points mode, SQLite's method: for every named crash point of the engine and every
//! hit count `n = 1, 2, ...`, a worker runs a fixed script from a fixed starting state
//! and kills itself at the `n`-th hit, until a run completes without reaching it. After
//! each kill the parent recovers and checks; for vista it also checks a cold start from
//! the disk files alone (the power-loss view of the same instant).
//!
//! Starting states (scenarios), so that recovery's own points are reached too:
//! - `fresh`: a newly reset engine;
//! - `pending`: right after a worker was killed in the middle of a transaction (vista:
//!   undo records to roll back; lrvm: redo records to replay);
//! - `cold` (vista): the memory image gone and a committed checkpoint journal left
//!   uninstalled, so the open installs the journal and loads the image from disk.
//!
//! lrvm runs every scenario twice: with the real page cache, and with
//! `emulate_power_loss`, where a kill also loses every unsynced write.

use std::collections::BTreeMap;

use anyhow::{bail, Result};

use crate::engines::{CrashModel, Engine, EngineKind};
use crate::harness::ctx::Ctx;
use crate::harness::oracle::{verify, Expectation};
use crate::harness::snapshot::Snapshot;
use crate::harness::worker::{run_to_end, Job, Outcome};
use crate::report::PointCoverage;
use crate::sys::Exit;
use crate::txn::OpKind;
use crate::workloads::op_kind;

/// A starting state.
#[derive(Debug)]
pub struct Scenario {
    /// Its name (for `--scenario`).
    pub name: String,
    /// The engine, configured for it.
    pub engine: Box<dyn Engine>,
    /// The files as the scenario leaves them.
    pub snapshot: Snapshot,
    /// The state a clean recovery of them gives.
    pub base: Vec<u8>,
    /// The crash model its checks use.
    pub model: CrashModel,
    /// vista: the state a cold start from its disk files gives (the last checkpoint).
    pub cold_base: Option<Vec<u8>>,
}

/// Operations of the points script: enough for vista to checkpoint, abort and commit
/// durably a few times; for lrvm, enough to wrap its log and truncate in the background.
pub fn script_ops(kind: EngineKind) -> u64 {
    if kind.is_lrvm() {
        200
    } else {
        24
    }
}

/// The first durable operation (a checkpoint) of the script with `seed`.
fn first_durable(seed: u64, ops: u64) -> Option<u64> {
    (1..=ops).find(|&i| matches!(op_kind(seed, i, ops), OpKind::Durable | OpKind::Checkpoint))
}

/// Builds the scenarios of the engine.
///
/// # Errors
/// Harness failures, or a scenario whose preparation does not crash as planned.
pub fn scenarios(ctx: &mut Ctx, kinds: &[&str]) -> Result<Vec<Scenario>> {
    let lrvm = ctx.cfg.engine.is_lrvm();
    let seed = ctx.cfg.seed;
    let ops = script_ops(ctx.cfg.engine);
    let initial = ctx.workload.initial();
    let mut out = Vec::new();
    let passes: &[bool] = if lrvm { &[false, true] } else { &[false] };
    for &emulate in passes {
        for &kind in kinds {
            if kind == "cold" && lrvm {
                continue;
            }
            let name = if emulate {
                format!("{kind}+power")
            } else {
                kind.to_owned()
            };
            if ctx.cfg.scenario.as_deref().is_some_and(|s| s != name) {
                continue;
            }
            let engine = ctx.engine(&name, ctx.cfg.protection, emulate);
            engine.reset(&initial)?;
            let model = if emulate {
                CrashModel::Power
            } else {
                CrashModel::Process
            };
            let prep_seed = seed ^ 0x5eed;
            let arm = match kind {
                "fresh" => None,
                "pending" if lrvm => Some(("lrvm.log.written", 3)),
                "pending" => Some(("vista.write.partial", 5)),
                "cold" => {
                    let Some(d) = first_durable(prep_seed, ops) else {
                        bail!("the cold scenario's script has no checkpoint");
                    };
                    let _ = d;
                    if ctx.cfg.workload == crate::workloads::WorkloadKind::Xseg {
                        // A group checkpoint: decided, the members' sealed batches
                        // not yet installed.
                        Some(("vista.xseg.checkpoint_decided", 1))
                    } else {
                        Some(("rio.checkpoint.meta_synced", 1))
                    }
                }
                other => bail!("unknown scenario {other}"),
            };
            let mut prep_model = model;
            if let Some(arm) = arm {
                let job = Job {
                    engine: &*engine,
                    workload: &*ctx.workload,
                    seed: prep_seed,
                    ops,
                    arm: Some(arm),
                    send_state: false,
                    recover_only: false,
                    wild: None,
                };
                let (exit, prep) = run_to_end(&job)?;
                if exit != Exit::Signal(libc::SIGKILL) {
                    bail!(
                        "scenario {name}: the preparing worker was not killed at {arm:?} ({exit})"
                    );
                }
                if kind == "cold" {
                    engine.power_fail(prep_seed)?;
                    prep_model = CrashModel::Power;
                }
                let snapshot = Snapshot::take(&engine.files())?;
                let base = engine.open()?.state()?.to_vec();
                snapshot.restore()?;
                let e = Expectation {
                    engine: &*engine,
                    workload: &*ctx.workload,
                    model: prep_model,
                    base: &initial,
                    seed: prep_seed,
                    ops,
                    acked: prep.acked,
                };
                if let Err(msg) = verify(&e, &base) {
                    ctx.violation(
                        format!("scenario {name} (killed at {}:{})", arm.0, arm.1),
                        msg,
                        &format!("--scenario {name}"),
                    );
                }
                out_push(&mut out, name, engine, snapshot, base, model);
            } else {
                let snapshot = Snapshot::take(&engine.files())?;
                out_push(&mut out, name, engine, snapshot, initial.clone(), model);
            }
        }
    }
    if ctx.cfg.engine == EngineKind::Vista {
        for sc in &mut out {
            sc.snapshot.restore()?;
            let cold = cold_view(ctx, &*sc.engine)?;
            sc.cold_base = Some(cold.open()?.state()?.to_vec());
        }
    }
    Ok(out)
}

fn out_push(
    out: &mut Vec<Scenario>,
    name: String,
    engine: Box<dyn Engine>,
    snapshot: Snapshot,
    base: Vec<u8>,
    model: CrashModel,
) {
    out.push(Scenario {
        name,
        engine,
        snapshot,
        base,
        model,
        cold_base: None,
    });
}

/// A vista engine over a copy of `engine`'s disk files only, in `ctx`'s `cold-view`
/// directory: opening it is a cold start, as after power loss.
///
/// # Errors
/// I/O errors copying the files.
pub fn cold_view(ctx: &Ctx, engine: &dyn Engine) -> Result<Box<dyn Engine>> {
    let cold = ctx.engine("cold-view", ctx.cfg.protection, false);
    std::fs::create_dir_all(cold.files()[0].parent().expect("in a directory"))?;
    for f in cold.files() {
        crate::engines::remove_if_exists(&f)?;
    }
    Snapshot::take(&engine.durable_files())?.copy_to(&cold.durable_files())?;
    Ok(cold)
}

/// Runs the points mode.
///
/// # Errors
/// Harness failures.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let scenarios = scenarios(ctx, &["fresh", "pending", "cold"])?;
    let mut all = ctx
        .engine("probe", ctx.cfg.protection, false)
        .crash_points();
    if let Some(p) = &ctx.cfg.point {
        // A replay of one point: coverage is about that point alone.
        all.retain(|q| q == p);
    }
    let mut kills: BTreeMap<&'static str, u64> = all.iter().map(|p| (*p, 0)).collect();
    ctx.report.points_total = all.len();
    let ops = script_ops(ctx.cfg.engine);
    let seed = ctx.cfg.seed;
    'all: for sc in &scenarios {
        for &point in &all {
            let hits: Box<dyn Iterator<Item = u64>> = match ctx.cfg.hit {
                Some(h) => Box::new(std::iter::once(h)),
                None => Box::new(1..=100_000),
            };
            for n in hits {
                if ctx.stop() || ctx.elapsed().as_secs_f64() > ctx.cfg.seconds {
                    if !ctx.stop() {
                        ctx.report
                            .notes
                            .push("time budget spent before every point was done".into());
                    }
                    break 'all;
                }
                sc.snapshot.restore()?;
                let job = Job {
                    engine: &*sc.engine,
                    workload: &*ctx.workload,
                    seed,
                    ops,
                    arm: Some((point, n)),
                    send_state: false,
                    recover_only: false,
                    wild: None,
                };
                let (exit, out) = run_to_end(&job)?;
                ctx.report.cycles += 1;
                let at = format!("{} {point}:{n}", sc.name);
                let extra = format!("--scenario {} --point {point} --hit {n}", sc.name);
                if exit == Exit::Code(0) && out.done {
                    break;
                }
                if let Some(e) = &out.error {
                    ctx.violation(at, format!("worker failed: {e}"), &extra);
                    break;
                }
                if exit != Exit::Signal(libc::SIGKILL) {
                    ctx.violation(at, format!("worker ended with {exit}"), &extra);
                    break;
                }
                ctx.report.effective_kills += 1;
                *kills.get_mut(point).expect("listed") += 1;
                check_after_kill(ctx, sc, &out, &at, &extra)?;
                let (c, k) = (
                    ctx.report.cycles,
                    kills.values().filter(|&&k| k > 0).count(),
                );
                ctx.tick(|| format!("{c} runs, {k}/{} points hit", all.len()));
            }
        }
    }
    ctx.report.points = kills
        .into_iter()
        .map(|(p, k)| PointCoverage {
            point: p.into(),
            kills: k,
        })
        .collect();
    Ok(())
}

/// After a killed script: the warm (process-crash) view, and for vista the cold view.
fn check_after_kill(
    ctx: &mut Ctx,
    sc: &Scenario,
    out: &Outcome,
    at: &str,
    extra: &str,
) -> Result<()> {
    let ops = script_ops(ctx.cfg.engine);
    // Copy the disk files before the warm open (whose close checkpoints).
    let cold = if sc.engine.kind() == EngineKind::Vista {
        Some(cold_view(ctx, &*sc.engine)?)
    } else {
        None
    };
    let seed = ctx.cfg.seed;
    let durable_acked =
        (1..=out.acked).any(|i| sc.engine.survives(op_kind(seed, i, ops), CrashModel::Power));
    let views: Vec<(&dyn Engine, CrashModel, &str)> =
        std::iter::once((&*sc.engine, sc.model, "warm"))
            .chain(cold.as_deref().map(|c| (c, CrashModel::Power, "cold")))
            .collect();
    for (engine, model, view) in views {
        let state = match engine.open() {
            Ok(store) => store.state()?.to_vec(),
            Err(e) => {
                ctx.violation(
                    format!("{at} ({view})"),
                    format!("reopen failed: {e:#}"),
                    extra,
                );
                continue;
            }
        };
        let e = Expectation {
            engine,
            workload: &*ctx.workload,
            model,
            base: &sc.base,
            seed: ctx.cfg.seed,
            ops,
            acked: out.acked,
        };
        let inflight = out.acked + 1;
        let result = match verify(&e, &state) {
            // Cold, before the script's first durable operation: the scenario's own last
            // checkpoint, or the durable operation in flight.
            _ if view == "cold" && !durable_acked && sc.cold_base.as_deref() == Some(&state) => {
                Ok(())
            }
            Ok(j) if view == "cold" && !durable_acked && j != inflight => Err(format!(
                "cold start shows op {j}, but no checkpoint of the script completed and the \
                 scenario's own checkpoint is another state"
            )),
            Ok(_) => Ok(()),
            Err(msg) => Err(msg),
        };
        if let Err(msg) = result {
            ctx.violation(format!("{at} ({view})"), msg, extra);
        }
    }
    Ok(())
}
