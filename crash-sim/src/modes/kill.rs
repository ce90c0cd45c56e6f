//! The kill and power modes: cycles of fork, recover, run, `SIGKILL` after a random
//! delay (power: then lose everything not synced).
//!
//! Each worker first reports the state its recovery produced; the parent checks it
//! against the previous cycle's oracle once the worker is killed, so every cycle costs
//! one fork and one open, and the check's duration does not lengthen the cycle's work. A kill counts as effective only if the worker had
//! reported that it was running and had not finished.

use std::time::Duration;

use anyhow::Result;
use rand::{Rng, SeedableRng};

use crate::engines::{CrashModel, Engine, Start};
use crate::harness::ctx::Ctx;
use crate::harness::oracle::{verify, Expectation};
use crate::harness::worker::{spawn, Job, Outcome};
use crate::seed::cycle_seed;
use crate::sys::Exit;
use crate::txn::OpKind;
use crate::workloads::plan;

/// Operations per cycle: more than a worker gets through before its kill.
pub const OPS: u64 = 5000;

/// What the next recovery must show.
struct Pending {
    base: Vec<u8>,
    seed: u64,
    acked: u64,
    cycle: u64,
}

/// Crash points at which a power cycle may cut the power instead of the timer: inside
/// checkpoints (vista); between a write and its sync, and around the head move of a
/// truncation (lrvm).
fn power_points(engine: &dyn Engine) -> Vec<&'static str> {
    engine
        .crash_points()
        .into_iter()
        .filter(|p| {
            p.starts_with("rio.checkpoint.")
                || matches!(
                    *p,
                    "lrvm.log.wrapped"
                        | "lrvm.log.written"
                        | "lrvm.status.written"
                        | "lrvm.status.synced"
                        | "lrvm.truncate.applied"
                        | "lrvm.truncate.data_synced"
                        | "lrvm.truncate.head_moved"
                )
        })
        .collect()
}

/// Runs the kill (`Process`) or power (`Power`) mode.
///
/// # Errors
/// Harness failures.
pub fn run(ctx: &mut Ctx, model: CrashModel) -> Result<()> {
    let power = model == CrashModel::Power;
    let engine = ctx.engine("kill", ctx.cfg.protection, power);
    let initial = ctx.workload.initial();
    engine.reset(&initial)?;
    let points = if power {
        power_points(&*engine)
    } else {
        Vec::new()
    };
    let mut rng = rand::rngs::SmallRng::seed_from_u64(ctx.cfg.seed);
    let mut pending: Option<Pending> = None;
    let mut cycle = 0u64;
    // Recoveries that rolled a transaction back, and the records they undid.
    let (mut rollbacks, mut undone) = (0u64, 0u64);
    while ctx.more(cycle, 1.0) {
        let seed = cycle_seed(ctx.cfg.seed, cycle);
        let violations_before = ctx.report.violations.len();
        let arm = (power && !points.is_empty() && rng.gen_bool(0.5)).then(|| {
            (
                points[rng.gen_range(0..points.len())],
                rng.gen_range(1..=3u64),
            )
        });
        let delay = rng.gen_range(0..=ctx.cfg.max_delay_us) * if arm.is_some() { 4 } else { 1 };
        let job = Job {
            engine: &*engine,
            workload: &*ctx.workload,
            seed,
            ops: OPS,
            arm,
            send_state: true,
            recover_only: false,
            wild: None,
        };
        let mut w = spawn(&job)?;
        let mut out = Outcome::default();
        // Recovery's result, checked against the previous cycle.
        while out.state.is_none() && out.error.is_none() {
            match w.next(Duration::from_secs(60))? {
                Some(m) => out.absorb([m]),
                None => break,
            }
        }
        let running = out.state.is_some();
        if running {
            crate::sys::sleep_micros(delay);
        }
        w.kill()?;
        let exit = w.wait()?;
        out.absorb(w.drain()?);
        // Recovery's result, checked against the previous cycle once this worker is dead
        // (checking first would let it run on for as long as the check takes).
        if let Some(state) = &out.state {
            check(ctx, &*engine, model, pending.as_ref(), out.start, state);
            check_recovery(ctx, model, pending.as_ref(), out.recovery, state);
            if let Some((lanes, records)) = out.recovery {
                rollbacks += u64::from(lanes);
                undone += records;
            }
            pending = Some(Pending {
                base: state.clone(),
                seed,
                acked: 0,
                cycle,
            });
        }
        if let Some(e) = &out.error {
            let at = format!("cycle {cycle}");
            let extra = format!("--cycles {}", cycle + 1);
            ctx.violation(at, format!("worker failed: {e}"), &extra);
        } else if !matches!(exit, Exit::Signal(libc::SIGKILL) | Exit::Code(0)) {
            let at = format!("cycle {cycle}");
            let extra = format!("--cycles {}", cycle + 1);
            ctx.violation(at, format!("worker ended with {exit}"), &extra);
        }
        if let (true, Some(p)) = (running, pending.as_mut()) {
            p.acked = out.acked;
        }
        ctx.report.acked_ops += out.acked;
        if running && exit == Exit::Signal(libc::SIGKILL) && !out.done {
            ctx.report.effective_kills += 1;
        }
        if power {
            engine.power_fail(seed)?;
        }
        if ctx.report.violations.len() > violations_before {
            // --keep-going: start over from a known state.
            engine.reset(&initial)?;
            pending = None;
        }
        cycle += 1;
        ctx.report.cycles = cycle;
        if cycle.is_multiple_of(64) {
            let (c, k) = (cycle, ctx.report.effective_kills);
            ctx.tick(|| format!("{c} cycles, {k} effective kills"));
        }
    }
    // The last crash is checked by the parent itself.
    if !ctx.stop() {
        match engine.open() {
            Ok(store) => {
                let start = store.start();
                let state = store.state()?.to_vec();
                let report = store.recovery_report();
                drop(store);
                check(ctx, &*engine, model, pending.as_ref(), Some(start), &state);
                check_recovery(ctx, model, pending.as_ref(), report, &state);
            }
            Err(e) => {
                let extra = format!("--cycles {cycle}");
                ctx.violation("final open".into(), format!("{e:#}"), &extra);
            }
        }
    }
    if !ctx.cfg.engine.is_lrvm() {
        ctx.report.notes.push(format!(
            "recovery reports checked: {rollbacks} roll-backs undoing {undone} records in total"
        ));
    }
    if let Some(s) = engine.power_summary() {
        ctx.report.notes.push(s);
    }
    if power && ctx.cfg.engine.is_lrvm() {
        ctx.report.notes.push(
            "lrvm power loss: workers run with emulate_power_loss, so unsynced writes die with \
             them; torn (partially persisted) unsynced pages are not simulated"
                .into(),
        );
    }
    Ok(())
}

fn check(
    ctx: &mut Ctx,
    engine: &dyn Engine,
    model: CrashModel,
    pending: Option<&Pending>,
    start: Option<Start>,
    state: &[u8],
) {
    let Some(p) = pending else {
        return;
    };
    let at = format!("cycle {}", p.cycle);
    let extra = format!("--cycles {}", p.cycle + 1);
    if model == CrashModel::Power && !engine.kind().is_lrvm() && start != Some(Start::Cold) {
        ctx.violation(
            at,
            format!("expected a cold start after power loss, got {start:?}"),
            &extra,
        );
        return;
    }
    let e = Expectation {
        engine,
        workload: &*ctx.workload,
        model,
        base: &p.base,
        seed: p.seed,
        ops: OPS,
        acked: p.acked,
    };
    if let Err(msg) = verify(&e, state) {
        ctx.violation(at, msg, &extra);
    }
}

/// Checks what recovery says it did against what the killed worker was doing: one lane
/// (crash-sim's segments have one) holding at most the operation in flight's records;
/// nothing undone if the state shows that operation committed; nothing at all after a
/// power loss (vista's checkpoints are taken between transactions, so the disk image
/// never holds an unfinished one).
fn check_recovery(
    ctx: &mut Ctx,
    model: CrashModel,
    pending: Option<&Pending>,
    report: Option<(u32, u64)>,
    state: &[u8],
) {
    let (Some(p), Some((lanes, records))) = (pending, report) else {
        return;
    };
    let f = p.acked + 1;
    let txns = plan(&*ctx.workload, &p.base, p.seed, f.min(OPS), OPS);
    let inflight = (f <= OPS).then(|| &txns[f as usize - 1]);
    let writes = inflight
        .filter(|t| matches!(t.kind, OpKind::Commit | OpKind::Abort | OpKind::Durable))
        .map_or(0, |t| t.writes.len() as u64);
    let committed = inflight.is_some()
        && ctx
            .workload
            .check(&p.base, &txns, state)
            .is_ok_and(|r| *r.start() as u64 == f);
    let why = if lanes > 1 {
        Some(format!("{lanes} lanes rolled back; the segment has one"))
    } else if records > 0 && lanes == 0 {
        Some(format!("{records} records undone in no lane"))
    } else if model == CrashModel::Power && (lanes, records) != (0, 0) {
        Some(format!(
            "after power loss recovery rolled back {lanes} lane(s), {records} record(s), but a \
             checkpoint never holds an unfinished transaction"
        ))
    } else if records > writes {
        Some(format!(
            "recovery undid {records} records, but the operation in flight (op {f}) wrote {writes} \
             ranges"
        ))
    } else if committed && records > 0 {
        Some(format!(
            "the state shows op {f} committed, yet recovery undid {records} of its records"
        ))
    } else {
        None
    };
    if let Some(msg) = why {
        let at = format!("cycle {}", p.cycle);
        let extra = format!("--cycles {}", p.cycle + 1);
        ctx.violation(at, format!("recovery report: {msg}"), &extra);
    }
}
