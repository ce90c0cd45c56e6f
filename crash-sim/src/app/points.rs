//! The points mode against an application, and the starting states it shares with the
//! recovery mode: every vista and rio-cache crash point, every hit, from each starting
//! state; each kill checked as a process crash and, from the disk files alone, as a
//! power loss.

use anyhow::Result;

use crate::engines::vista::VistaEngine;
use crate::engines::{CrashModel, Engine, EngineConfig};
use crate::harness::ctx::Ctx;
use crate::harness::snapshot::Snapshot;
use crate::report::PointCoverage;
use crate::seed::cycle_seed;
use crate::sys::Exit;

use super::application::App;
use super::history::History;
use super::worker::{judge, Harness, Job, NOTHING};

/// Operations of the points and recovery modes' script.
pub const SCRIPT_OPS: u64 = 24;

/// A starting state of the points and recovery modes: its segment, its files and the
/// history that led to it.
pub(super) struct Scenario<'a> {
    pub(super) name: &'static str,
    pub(super) h: Harness<'a>,
    pub(super) snapshot: Snapshot,
    pub(super) history: History,
}

/// Builds the starting states `names` (those `--scenario` selects):
/// - `fresh`: the initialised segment;
/// - `pending`: killed in the middle of a transaction (undo records to roll back);
/// - `cold`: killed once a checkpoint's journal is committed but not installed, then
///   power loss (the open installs the journal and loads the image from disk).
pub(super) fn scenarios<'a>(
    app: &'a dyn App,
    ctx: &mut Ctx,
    names: &[&'static str],
) -> Result<Vec<Scenario<'a>>> {
    let mut out = Vec::new();
    for &name in names {
        if ctx.cfg.scenario.as_deref().is_some_and(|s| s != name) {
            continue;
        }
        let h = Harness::new(app, ctx, name);
        h.reset()?;
        let mut history = History::default();
        let arm = match name {
            "pending" => ("vista.write.partial", 5),
            "cold" => ("rio.checkpoint.meta_synced", 1),
            _ => {
                let snapshot = Snapshot::take(&h.engine.files())?;
                out.push(Scenario {
                    name,
                    h,
                    snapshot,
                    history,
                });
                continue;
            }
        };
        let job = Job {
            arm: Some(arm),
            run: Some((ctx.cfg.seed ^ 0x5eed, SCRIPT_OPS)),
            ..NOTHING
        };
        let (exit, prep) = h.run_to_end(&job)?;
        if exit != Exit::Signal(libc::SIGKILL) {
            ctx.report.notes.push(format!(
                "scenario {name} skipped: the script never reached {}:{} ({exit})",
                arm.0, arm.1
            ));
            continue;
        }
        history.extend(&prep.history);
        history.crash = Some(CrashModel::Process);
        if name == "cold" {
            h.engine.power_fail(ctx.cfg.seed ^ 0xc01d)?;
            history.crash = Some(CrashModel::Power);
        }
        let snapshot = Snapshot::take(&h.engine.files())?;
        let at = format!("scenario {name} (killed at {}:{})", arm.0, arm.1);
        h.verify(ctx, &history, &at, &format!("--scenario {name}"))?;
        snapshot.restore()?;
        history.settle();
        out.push(Scenario {
            name,
            h,
            snapshot,
            history,
        });
    }
    Ok(out)
}

/// The points mode.
pub(super) fn run(app: &dyn App, ctx: &mut Ctx) -> Result<()> {
    let scenarios = scenarios(app, ctx, &["fresh", "pending", "cold"])?;
    let mut all = VistaEngine::new(EngineConfig {
        dir: ctx.dir().to_owned(),
        state_len: 1,
        protection: vista::Protection::Auto,
        emulate_power_loss: true,
    })
    .crash_points();
    if let Some(p) = &ctx.cfg.point {
        all.retain(|q| q == p);
    }
    let mut kills: Vec<u64> = vec![0; all.len()];
    ctx.report.points_total = all.len();
    let seed = ctx.cfg.seed;
    'all: for sc in &scenarios {
        let (name, h) = (sc.name, &sc.h);
        for (k, &point) in all.iter().enumerate() {
            for n in ctx.hits() {
                if ctx.exhausted("every point") {
                    break 'all;
                }
                sc.snapshot.restore()?;
                let job = Job {
                    arm: Some((point, n)),
                    run: Some((seed, SCRIPT_OPS)),
                    ..NOTHING
                };
                let (exit, out) = h.run_to_end(&job)?;
                ctx.report.cycles += 1;
                let at = format!("{name} {point}:{n}");
                let extra = format!("--scenario {name} --point {point} --hit {n}");
                if exit != Exit::Signal(libc::SIGKILL) {
                    // Not reached: the script ran to its end (or failed).
                    judge(ctx, &out, exit, &at, &extra);
                    break;
                }
                kills[k] += 1;
                ctx.report.effective_kills += 1;
                ctx.report.acked_ops += out.history.acked().len() as u64;
                let mut history = sc.history.clone();
                history.extend(&out.history);
                let crashed = Snapshot::take(&h.engine.files())?;
                history.crash = Some(CrashModel::Process);
                h.verify(ctx, &history, &at, &extra)?;
                // The same instant as a power loss: the disk files alone.
                crashed.restore()?;
                h.engine.power_fail(cycle_seed(seed, ctx.report.cycles))?;
                history.crash = Some(CrashModel::Power);
                h.verify(ctx, &history, &format!("{at} + power loss"), &extra)?;
                let c = ctx.report.cycles;
                ctx.tick(|| format!("{c} kills at crash points"));
            }
        }
    }
    ctx.report.points = coverage(&all, &kills);
    Ok(())
}

pub(super) fn coverage(points: &[&str], kills: &[u64]) -> Vec<PointCoverage> {
    points
        .iter()
        .zip(kills)
        .map(|(p, k)| PointCoverage {
            point: (*p).into(),
            kills: *k,
        })
        .collect()
}
