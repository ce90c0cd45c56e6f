//! Threaded workers (`--threads N`, vista; bank and kv): N threads of one worker process
//! run transactions on one segment at once, and the oracle accepts exactly the states
//! that a serial order of the committed transactions explains.
//!
//! Each thread `t` runs its own deterministic stream of operations (`kind`, `transfer`,
//! `kv_slots`: functions of the cycle seed, `t` and the op number `i`). The operations
//! carry their identity into the state:
//! - every transaction also writes its thread's **record** `[cycle seed, i]` (one cache
//!   line per thread, so threads never share a lock stripe for it). A thread's
//!   transactions commit in program order, so the record of the recovered state names
//!   exactly the last committed operation of each thread, `c_t`, and with it the set
//!   `C` of committed operations: every committing op `i <= c_t` of every thread;
//! - **bank**: a transfer moves a fixed amount (not a function of the balances), read
//!   and written inside the transaction (`get`, then `put`, wrapping arithmetic).
//!   Transfers commute, so every serial order of `C` gives the same balances:
//!   the opening balances plus the sum of `C`'s transfers. The state must be that
//!   image exactly (a lost update, a partial transfer or a roll-back left undone
//!   shows);
//! - **kv**: a transaction writes 1-4 of 64 shared slots; each write reads the slot's
//!   version and writes `[version + 1, t + 1, i, value(t, i, slot)]`. A slot written by
//!   the `n` ops of `C` must hold version `base + n` (a lost update leaves it lower)
//!   and the tuple of one of them; the last writers of all slots, together with each
//!   thread's program order, must admit a serial order (the graph "every other writer
//!   of a slot precedes its last writer" plus "op i of a thread precedes its op j > i"
//!   is acyclic). Then that order, replayed, gives exactly the recovered slots.
//!
//! The acknowledgements: a thread sends `THREAD_ACK (t, i)` after op `i` returned and
//! before op `i + 1` begins, so an acknowledged op is committed (an ack cannot be
//! invented) and at most one op per thread is in flight at the kill; every frame is
//! one `write` of 16 bytes to the shared pipe (atomic under `PIPE_BUF`), so a frame
//! written before the kill is read whole by the parent (an ack cannot be lost). Before
//! a durable operation (`commit_durable`, `checkpoint`) the thread sends
//! `THREAD_START (t, i)`: the acks the parent read before that frame were sent before
//! the operation began, so once it is acknowledged their commits survive power loss.

mod oracle;
mod shape;
mod worker;

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, Result};
use rand::{Rng, SeedableRng};
use vista::StartKind;

use crate::engines::vista::VistaEngine;
use crate::engines::{CrashModel, Engine, EngineConfig, Start};
use crate::harness::ctx::Ctx;
use crate::harness::worker::Outcome;
use crate::seed::cycle_seed;
use crate::sys::{self, Exit};

pub use crate::harness::thread_acks::Acks;
pub use oracle::{check_recovery, verify, Expect};
pub use shape::{kind, Shape, MAX_THREADS};
use worker::{spawn, IO_MET};

/// Operations per thread and cycle: more than a thread gets through before the kill.
const OPS: u64 = 5000;

/// What the next recovery must show.
struct Pending {
    base: Vec<u8>,
    seed: u64,
    acks: Acks,
    cycle: u64,
}

/// The io mode fails one of a worker's first this many I/O operations.
const IO_OPS: u64 = 400;

/// Crash points that fire often (per write or per page): armed at a hit in `1..=200`;
/// the others at a hit in `1..=3`.
fn frequent(point: &str) -> bool {
    point.starts_with("vista.write.")
        || point.starts_with("vista.set_range.")
        || point.starts_with("vista.commit.")
        || point.starts_with("vista.abort.")
        || point == "rio.checkpoint.copying"
}

/// Runs the kill (`Process`) or power (`Power`) mode with `ctx.cfg.threads` threads.
/// Half the cycles also arm a crash point (kill: any of vista's and rio-cache's, also
/// recovery's; power: a checkpoint's), counted across all threads.
///
/// # Errors
/// Harness failures.
pub fn run(ctx: &mut Ctx, model: CrashModel) -> Result<()> {
    let threads = ctx.cfg.threads;
    let shape = Shape::of(ctx.cfg.workload)
        .ok_or_else(|| anyhow!("no threaded form of {}", ctx.cfg.workload.name()))?;
    let power = model == CrashModel::Power;
    let io = ctx.cfg.mode == crate::harness::config::Mode::Io;
    let engine = VistaEngine::new(EngineConfig {
        dir: ctx.work_dir().join("threads"),
        state_len: shape.state_len(),
        protection: ctx.cfg.protection,
        emulate_power_loss: power,
    })
    .with_lanes(threads);
    let initial = shape.initial();
    engine.reset(&initial)?;
    let points: Vec<&'static str> = engine
        .crash_points()
        .into_iter()
        .filter(|p| !power || p.starts_with("rio.checkpoint."))
        .collect();
    let recovery_points = engine.recovery_points();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(ctx.cfg.seed);
    let mut pending: Option<Pending> = None;
    let mut cycle = 0u64;
    let (mut rollbacks, mut undone, mut most_lanes) = (0u64, 0u64, 0u32);
    let (mut armed, mut at_point, mut in_recovery) = (0u64, 0u64, 0u64);
    let mut points_hit: BTreeSet<&'static str> = BTreeSet::new();
    let mut io_met = 0u64;
    while ctx.more(cycle, 1.0) {
        let seed = cycle_seed(ctx.cfg.seed, cycle);
        let violations_before = ctx.report.violations.len();
        let arm = (!io && !points.is_empty() && rng.gen_bool(0.5)).then(|| {
            let p = points[rng.gen_range(0..points.len())];
            let most = if frequent(p) { 200 } else { 3 };
            (p, rng.gen_range(1..=most))
        });
        // The io mode: one operation of the worker fails (the open's ~15, then a few per
        // transaction under mprotect and a dozen per checkpoint).
        let fault = io.then(|| {
            let errno = [libc::ENOSPC, libc::EIO, libc::EFBIG][rng.gen_range(0..3)];
            (rng.gen_range(0..IO_OPS), errno)
        });
        let delay =
            rng.gen_range(0..=ctx.cfg.max_delay_us) * if arm.is_some() || io { 4 } else { 1 };
        let mut w = spawn(&engine, shape, seed, threads, OPS, arm, fault)?;
        let mut out = Outcome::default();
        while out.state.is_none() && out.error.is_none() {
            match w.next(Duration::from_secs(60))? {
                Some(m) => out.absorb([m]),
                None => break,
            }
        }
        let running = out.state.is_some();
        if running {
            sys::sleep_micros(delay);
        }
        // A worker that is gone already died at its armed point (or failed).
        let ended = w.try_wait()?;
        let exit = match ended {
            Some(e) => e,
            None => {
                w.kill()?;
                w.wait()?
            }
        };
        out.absorb(w.drain()?);
        if let (Some((p, _)), Some(Exit::Signal(libc::SIGKILL))) = (arm, ended) {
            armed += 1;
            if running {
                at_point += 1;
            } else {
                in_recovery += 1;
            }
            points_hit.insert(p);
        } else if arm.is_some() {
            armed += 1;
        }
        if let Some(state) = &out.state {
            check(
                ctx,
                shape,
                model,
                pending.as_ref(),
                out.start,
                out.recovery,
                state,
            );
            if let Some((lanes, records)) = out.recovery {
                rollbacks += u64::from(lanes > 0);
                undone += records;
                most_lanes = most_lanes.max(lanes);
            }
            pending = Some(Pending {
                base: state.clone(),
                seed,
                acks: Acks::default(),
                cycle,
            });
        }
        let at = format!("cycle {cycle}");
        let extra = format!("--threads {threads} --cycles {}", cycle + 1);
        if exit == Exit::Code(IO_MET) {
            io_met += 1;
        }
        if let Some(e) = &out.error {
            ctx.violation(at, format!("worker failed: {e}"), &extra);
        } else if !(matches!(exit, Exit::Signal(libc::SIGKILL) | Exit::Code(0))
            || io && exit == Exit::Code(IO_MET))
        {
            ctx.violation(at, format!("worker ended with {exit}"), &extra);
        }
        if let (true, Some(p)) = (running, pending.as_mut()) {
            p.acks = out.threads.clone();
        }
        ctx.report.acked_ops += out.threads.total();
        if running && exit == Exit::Signal(libc::SIGKILL) && !out.done {
            ctx.report.effective_kills += 1;
        }
        if power {
            engine.power_fail(seed)?;
        }
        if ctx.report.violations.len() > violations_before {
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
    if !ctx.stop() {
        match engine.open_segment() {
            Ok(seg) => {
                let start = match seg.start_kind() {
                    StartKind::Created => Start::Created,
                    StartKind::Warm => Start::Warm,
                    StartKind::Cold(_) => Start::Cold,
                };
                let state = seg.read(0, shape.state_len())?.to_vec();
                let r = seg.recovery();
                drop(seg);
                let report = Some((r.lanes_rolled_back, r.records_undone));
                check(
                    ctx,
                    shape,
                    model,
                    pending.as_ref(),
                    Some(start),
                    report,
                    &state,
                );
            }
            Err(e) => {
                let extra = format!("--threads {threads} --cycles {cycle}");
                ctx.violation("final open".into(), format!("{e:#}"), &extra);
            }
        }
    }
    let recovery_armed = points
        .iter()
        .filter(|p| recovery_points.contains(p))
        .count();
    ctx.report.notes.push(format!(
        "{threads} threads per worker ({threads} undo lanes); crash points armed in {armed} \
         cycles: the worker died at the point in {at_point} while running and in {in_recovery} \
         during recovery, at {} distinct points of {} ({recovery_armed} of them recovery's)",
        points_hit.len(),
        points.len()
    ));
    ctx.report.notes.push(format!(
        "recovery reports checked: {rollbacks} recoveries rolled back lanes (at most \
         {most_lanes} at once), undoing {undone} records in total"
    ));
    if io {
        ctx.report.notes.push(format!(
            "injected I/O failures (one of each worker's first {IO_OPS} operations): \
             {io_met} workers met theirs and stopped cleanly; the others were killed first"
        ));
    }
    if let Some(s) = engine.power_summary() {
        ctx.report.notes.push(s);
    }
    Ok(())
}

fn check(
    ctx: &mut Ctx,
    shape: Shape,
    model: CrashModel,
    pending: Option<&Pending>,
    start: Option<Start>,
    report: Option<(u32, u64)>,
    state: &[u8],
) {
    let Some(p) = pending else {
        return;
    };
    let threads = ctx.cfg.threads;
    let at = format!("cycle {}", p.cycle);
    let extra = format!("--threads {threads} --cycles {}", p.cycle + 1);
    if model == CrashModel::Power && start != Some(Start::Cold) {
        ctx.violation(
            at,
            format!("expected a cold start after power loss, got {start:?}"),
            &extra,
        );
        return;
    }
    let e = Expect {
        shape,
        base: &p.base,
        seed: p.seed,
        threads,
        acks: &p.acks,
        model,
    };
    let result = verify(&e, state).and_then(|last| match report {
        Some(r) => check_recovery(&e, &last, r).map_err(|m| format!("recovery report: {m}")),
        None => Ok(()),
    });
    if let Err(msg) = result {
        ctx.violation(at, msg, &extra);
    }
}
