//! The recovery mode against an application: recovery itself killed at every recovery
//! point and hit, and again during the next recovery (depth 2), then checked, from the
//! `pending` and `cold` starting states.

use anyhow::Result;

use crate::engines::{CrashModel, Engine};
use crate::harness::ctx::Ctx;
use crate::harness::snapshot::Snapshot;
use crate::report::RecoveryStats;
use crate::sys::Exit;

use super::application::App;
use super::points::{coverage, scenarios};
use super::worker::{judge, Harness, Job, NOTHING};

/// The recovery mode.
pub(super) fn run(app: &dyn App, ctx: &mut Ctx) -> Result<()> {
    let scenarios = scenarios(app, ctx, &["pending", "cold"])?;
    let Some(first) = scenarios.first() else {
        return Ok(());
    };
    let mut points = first.h.engine.recovery_points();
    let firsts: Vec<&str> = points
        .iter()
        .copied()
        .filter(|p| ctx.cfg.point.as_deref().is_none_or(|q| q == *p))
        .collect();
    let mut kills = vec![0u64; firsts.len()];
    ctx.report.points_total = firsts.len();
    ctx.report.recovery = Some(RecoveryStats::default());
    points.sort_unstable();
    'all: for sc in &scenarios {
        let (name, h, history) = (sc.name, &sc.h, &sc.history);
        let mut history = history.clone();
        // A crash in recovery is a crash of the same kind as the one that needed it.
        history.crash = Some(if name == "cold" {
            CrashModel::Power
        } else {
            CrashModel::Process
        });
        for (k, &p1) in firsts.iter().enumerate() {
            for n1 in ctx.hits() {
                if ctx.exhausted("depth 2") {
                    break 'all;
                }
                sc.snapshot.restore()?;
                let at1 = format!("{name} {p1}:{n1}");
                let extra = format!("--scenario {name} --point {p1} --hit {n1}");
                if !h.killed_recovery(ctx, p1, n1, &at1, &extra)? {
                    break;
                }
                kills[k] += 1;
                bump(ctx, 1);
                let s1 = Snapshot::take(&h.engine.files())?;
                h.verify(ctx, &history, &at1, &extra)?;
                for &p2 in &points {
                    for n2 in 1.. {
                        s1.restore()?;
                        let at2 = format!("{at1} then {p2}:{n2}");
                        if !h.killed_recovery(ctx, p2, n2, &at2, &extra)? {
                            break;
                        }
                        bump(ctx, 2);
                        h.verify(ctx, &history, &at2, &extra)?;
                        if ctx.stop() {
                            break 'all;
                        }
                    }
                }
                let c = ctx.report.cycles;
                ctx.tick(|| format!("{c} recoveries"));
            }
        }
    }
    ctx.report.points = coverage(&firsts, &kills);
    Ok(())
}

fn bump(ctx: &mut Ctx, depth: u8) {
    if let Some(r) = ctx.report.recovery.as_mut() {
        match depth {
            1 => r.depth1_kills += 1,
            _ => r.depth2_kills += 1,
        }
    }
}

impl Harness<'_> {
    /// Opens the segment in a child armed to die at `point`'s `n`-th hit. Returns
    /// whether it died there (false: recovery finished without reaching it).
    fn killed_recovery(
        &self,
        ctx: &mut Ctx,
        point: &str,
        n: u64,
        at: &str,
        extra: &str,
    ) -> Result<bool> {
        let job = Job {
            arm: Some((point, n)),
            ..NOTHING
        };
        let (exit, out) = self.run_to_end(&job)?;
        ctx.report.cycles += 1;
        if exit == Exit::Signal(libc::SIGKILL) {
            ctx.report.effective_kills += 1;
            return Ok(true);
        }
        judge(ctx, &out, exit, at, extra);
        Ok(false)
    }
}
