//! The recovery mode: kill the recovering process itself, at every recovery crash point
//! and hit, then kill the next recovery at every point and hit (depth 2, exhaustive),
//! and a third one at random (depth 3, sampled). After each killed recovery a clean
//! recovery must give exactly the bytes a single clean recovery of the original crash
//! gives: recovery must be idempotent and restartable at every step.

use anyhow::Result;
use rand::{Rng, SeedableRng};

use crate::engines::Engine;
use crate::harness::ctx::Ctx;
use crate::harness::snapshot::Snapshot;
use crate::harness::worker::{run_to_end, Job};
use crate::modes::points::{scenarios, Scenario};
use crate::report::{PointCoverage, RecoveryStats};
use crate::sys::Exit;

/// Kills a recovery at `point:n` from the files as they are. Returns `Some(files after
/// the kill)`, or `None` if the recovery completed without reaching the point.
fn killed_recovery(
    ctx: &mut Ctx,
    sc: &Scenario,
    point: &'static str,
    n: u64,
    at: &str,
    extra: &str,
) -> Result<Option<Snapshot>> {
    let job = Job {
        engine: &*sc.engine,
        workload: &*ctx.workload,
        seed: 0,
        ops: 0,
        arm: Some((point, n)),
        send_state: false,
        recover_only: true,
        wild: None,
    };
    let (exit, out) = run_to_end(&job)?;
    ctx.report.cycles += 1;
    if exit == Exit::Code(0) && out.done {
        return Ok(None);
    }
    if exit != Exit::Signal(libc::SIGKILL) || out.error.is_some() {
        let why = out.error.unwrap_or_else(|| format!("ended with {exit}"));
        ctx.violation(at.into(), format!("recovery failed: {why}"), extra);
        return Ok(None);
    }
    ctx.report.effective_kills += 1;
    Ok(Some(Snapshot::take(&sc.engine.files())?))
}

/// A clean recovery of the files as they are must give `reference`.
fn compare(
    ctx: &mut Ctx,
    engine: &dyn Engine,
    reference: &[u8],
    at: &str,
    extra: &str,
) -> Result<()> {
    if let Some(r) = ctx.report.recovery.as_mut() {
        r.comparisons += 1;
    }
    match engine.open() {
        Ok(store) => {
            let state = store.state()?;
            if **state != *reference {
                let first = state
                    .iter()
                    .zip(reference)
                    .position(|(a, b)| a != b)
                    .unwrap_or(0);
                ctx.violation(
                    at.into(),
                    format!(
                        "after the killed recovery, recovery gives other bytes than a single \
                         clean recovery (first difference at byte {first})"
                    ),
                    extra,
                );
            }
        }
        Err(e) => ctx.violation(
            at.into(),
            format!("recovery after the killed one failed: {e:#}"),
            extra,
        ),
    }
    Ok(())
}

/// Runs the recovery mode.
///
/// # Errors
/// Harness failures.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    ctx.report.recovery = Some(RecoveryStats::default());
    let scenarios = scenarios(ctx, &["pending", "cold"])?;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(ctx.cfg.seed);
    let probe = ctx.engine("probe", ctx.cfg.protection, false);
    let points = probe.recovery_points();
    // A replay names the first recovery's point and hit; the deeper ones run in full.
    let first_points: Vec<&'static str> = points
        .iter()
        .copied()
        .filter(|p| ctx.cfg.point.as_deref().is_none_or(|q| q == *p))
        .collect();

    let mut kills: std::collections::BTreeMap<&'static str, u64> =
        first_points.iter().map(|p| (*p, 0)).collect();
    ctx.report.points_total = first_points.len();
    'all: for sc in &scenarios {
        // The reference: one clean recovery (the scenario's base is exactly that).
        let reference = sc.base.clone();
        for &p1 in &first_points {
            for n1 in 1.. {
                match ctx.cfg.hit {
                    Some(h) if n1 < h => continue,
                    Some(h) if n1 > h => break,
                    _ => {}
                }
                if ctx.stop() || ctx.elapsed().as_secs_f64() > ctx.cfg.seconds {
                    if !ctx.stop() {
                        ctx.report
                            .notes
                            .push("time budget spent before depth 2 was done".into());
                    }
                    break 'all;
                }
                sc.snapshot.restore()?;
                let at1 = format!("{} {p1}:{n1}", sc.name);
                let x1 = format!("--scenario {} --point {p1} --hit {n1}", sc.name);
                let Some(s1) = killed_recovery(ctx, sc, p1, n1, &at1, &x1)? else {
                    break;
                };
                *kills.get_mut(p1).expect("listed") += 1;
                bump(ctx, 1);
                compare(ctx, &*sc.engine, &reference, &at1, &x1)?;
                for &p2 in &points {
                    for n2 in 1.. {
                        s1.restore()?;
                        let at2 = format!("{at1} then {p2}:{n2}");
                        let Some(s2) = killed_recovery(ctx, sc, p2, n2, &at2, &x1)? else {
                            break;
                        };
                        bump(ctx, 2);
                        compare(ctx, &*sc.engine, &reference, &at2, &x1)?;
                        if rng.gen_ratio(1, 3) {
                            let p3 = points[rng.gen_range(0..points.len())];
                            let n3 = rng.gen_range(1..=3);
                            s2.restore()?;
                            let at3 = format!("{at2} then {p3}:{n3}");
                            if killed_recovery(ctx, sc, p3, n3, &at3, &x1)?.is_some() {
                                bump(ctx, 3);
                                compare(ctx, &*sc.engine, &reference, &at3, &x1)?;
                            }
                        }
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
    ctx.report.points = kills
        .into_iter()
        .map(|(p, k)| PointCoverage {
            point: p.into(),
            kills: k,
        })
        .collect();
    Ok(())
}

fn bump(ctx: &mut Ctx, depth: u8) {
    if let Some(r) = ctx.report.recovery.as_mut() {
        match depth {
            1 => r.depth1_kills += 1,
            2 => r.depth2_kills += 1,
            _ => r.depth3_kills += 1,
        }
    }
}
