//! The compound mode (vista): sequences of faults, each with an exact oracle.
//!
//! - `kill-checkpoint-warm-power`: a worker is killed at a random step (and page) of a
//!   checkpoint; the next one reopens warm, and closes (a checkpoint); then the power is
//!   cut. The cold start must be exactly what the warm reopen saw: the close's
//!   checkpoint made all of it durable, including the pages the killed checkpoint had
//!   copied.
//! - `power-recovery-power`: killed in a checkpoint, power cut; the recovery that
//!   follows is killed at a random recovery step and hit, and the power is cut again.
//!   The result must be exactly what one clean recovery after the first cut gives.
//! - `torn-then-kill-recovery`: killed while a checkpoint's journal or install writes are
//!   unsynced, power cut (tearing them); the recovery is killed at a random step. A clean
//!   recovery must then give exactly what one clean recovery after the cut gives.
//! - `torn-then-checkpoint`: killed while a checkpoint's writes into the other slot are
//!   unsynced, power cut (keeping, tearing or dropping them); the next worker starts
//!   cold, commits a little and closes (a checkpoint into that same slot), and the power
//!   is cut again. The cold start must be that worker's state after its committed
//!   operations: its checkpoint must have rewritten every page the dead one may have
//!   left in the slot (the intent record, `docs/rio-cache.md`, "Why the other slot ends
//!   up whole").
//! - `stale-image`: one segment, two cache directories. An image loaded from the first
//!   directory's checkpoint commits but never checkpoints; the first directory's image
//!   then commits and checkpoints. Opening with the second directory must start cold,
//!   with exactly the disk's checkpoint, not the stale image.
//!
//! Every kill and power cut is drawn from the campaign's seed; a violation names the
//! scenario and the round, which `--scenario` and `--cycles` replay.

use anyhow::{bail, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::engines::vista::VistaEngine;
use crate::engines::{CrashModel, Engine, EngineConfig, EngineKind, Start};
use crate::harness::ctx::Ctx;
use crate::harness::oracle::{verify, Expectation};
use crate::harness::snapshot::Snapshot;
use crate::harness::worker::{run_to_end, Job, Outcome};
use crate::seed::cycle_seed;
use crate::sys::Exit;
use crate::workloads::{plan, Workload};

/// Operations of a worker: a few checkpoints in (ops 3 and 5 are a durable commit and
/// a checkpoint), not so many that a round is slow.
const OPS: u64 = 40;

/// Every scenario, in the order a round runs them.
pub const SCENARIOS: [&str; 5] = [
    "kill-checkpoint-warm-power",
    "power-recovery-power",
    "torn-then-kill-recovery",
    "torn-then-checkpoint",
    "stale-image",
];

/// Runs the compound mode.
///
/// # Errors
/// Harness failures; an engine other than vista.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    if ctx.cfg.engine != EngineKind::Vista {
        bail!("the compound mode drives vista (it uses rio-cache's power-loss model)");
    }
    let names: Vec<&str> = SCENARIOS
        .iter()
        .copied()
        .filter(|s| ctx.cfg.scenario.as_deref().is_none_or(|want| want == *s))
        .collect();
    if names.is_empty() {
        bail!(
            "unknown scenario; the compound mode has {}",
            SCENARIOS.join(", ")
        );
    }
    let mut round = 0;
    while ctx.more(round, 1.0) {
        let seed = cycle_seed(ctx.cfg.seed, round);
        for name in &names {
            let mut rng = SmallRng::seed_from_u64(seed ^ crate::seed::mix(name.len() as u64));
            let at = format!("round {round} {name}");
            let extra = format!("--scenario {name} --cycles {}", round + 1);
            let outcome = match *name {
                "kill-checkpoint-warm-power" => kill_checkpoint_warm_power(ctx, &mut rng)?,
                "power-recovery-power" => power_recovery_power(ctx, &mut rng, false)?,
                "torn-then-kill-recovery" => power_recovery_power(ctx, &mut rng, true)?,
                "torn-then-checkpoint" => torn_then_checkpoint(ctx, &mut rng)?,
                _ => stale_image(ctx, &mut rng)?,
            };
            ctx.report.cycles += 1;
            if let Err(msg) = outcome {
                ctx.violation(at, msg, &extra);
            }
            if ctx.stop() {
                return Ok(());
            }
        }
        round += 1;
        let r = round;
        ctx.tick(|| format!("{r} rounds"));
    }
    Ok(())
}

fn job<'a>(
    engine: &'a dyn Engine,
    workload: &'a dyn Workload,
    seed: u64,
    ops: u64,
    arm: Option<(&'a str, u64)>,
) -> Job<'a> {
    Job {
        engine,
        workload,
        seed,
        ops,
        arm,
        send_state: true,
        recover_only: ops == 0,
        wild: None,
    }
}

/// Runs a worker that should be killed at its armed point; counts the kill.
fn killed(ctx: &mut Ctx, j: &Job<'_>) -> Result<std::result::Result<Outcome, String>> {
    let (exit, out) = run_to_end(j)?;
    if let Some(e) = &out.error {
        return Ok(Err(format!("worker failed: {e}")));
    }
    match exit {
        Exit::Signal(libc::SIGKILL) => {
            ctx.report.effective_kills += 1;
            Ok(Ok(out))
        }
        Exit::Code(0) => Ok(Ok(out)),
        other => Ok(Err(format!("worker ended with {other}"))),
    }
}

fn checkpoint_points(engine: &dyn Engine) -> Vec<&'static str> {
    engine
        .crash_points()
        .into_iter()
        .filter(|p| p.starts_with("rio.checkpoint."))
        .collect()
}

/// The state of a clean open of the files as they are; the files are put back after.
fn clean_state(engine: &dyn Engine) -> Result<std::result::Result<Vec<u8>, String>> {
    let snap = Snapshot::take(&engine.files())?;
    let state = match engine.open() {
        Ok(store) => {
            let s = store.state()?.to_vec();
            drop(store);
            Ok(s)
        }
        Err(e) => Err(format!("open failed: {e:#}")),
    };
    snap.restore()?;
    Ok(state)
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).position(|(x, y)| x != y).unwrap_or(0)
}

type Verdict = std::result::Result<(), String>;

fn kill_checkpoint_warm_power(ctx: &mut Ctx, rng: &mut SmallRng) -> Result<Verdict> {
    let wl = ctx.cfg.workload.build();
    let engine = ctx.engine("compound-a", ctx.cfg.protection, true);
    let initial = ctx.workload.initial();
    engine.reset(&initial)?;
    let points = checkpoint_points(&*engine);
    let point = points[rng.gen_range(0..points.len())];
    let hit = rng.gen_range(1..=3u64);
    let seed_a = rng.gen();
    let a = match killed(ctx, &job(&*engine, &*wl, seed_a, OPS, Some((point, hit))))? {
        Ok(o) => o,
        Err(e) => return Ok(Err(format!("killed at {point}:{hit}: {e}"))),
    };
    // Reopen warm and close: the close is a checkpoint.
    let (exit, b) = run_to_end(&job(&*engine, &*wl, rng.gen(), 1, None))?;
    if exit != Exit::Code(0) || b.error.is_some() {
        return Ok(Err(format!(
            "after a kill at {point}:{hit}, the warm reopen and close failed: {} ({exit})",
            b.error.unwrap_or_default()
        )));
    }
    let Some(seen) = b.state else {
        return Ok(Err("the warm reopen sent no state".into()));
    };
    if b.start != Some(Start::Warm) {
        return Ok(Err(format!(
            "after a kill at {point}:{hit}, the reopen was {:?}, not warm",
            b.start
        )));
    }
    let e = Expectation {
        engine: &*engine,
        workload: &*ctx.workload,
        model: CrashModel::Process,
        base: &initial,
        seed: seed_a,
        ops: OPS,
        acked: a.acked,
    };
    if let Err(msg) = verify(&e, &seen) {
        return Ok(Err(format!("killed at {point}:{hit}, warm reopen: {msg}")));
    }
    engine.power_fail(rng.gen())?;
    Ok(match clean_state(&*engine)? {
        Ok(s) if s == seen => Ok(()),
        Ok(s) => Err(format!(
            "killed at {point}:{hit}, reopened warm and closed, then power loss: the cold \
             start differs from what the warm reopen saw and checkpointed (first difference \
             at byte {})",
            first_difference(&s, &seen)
        )),
        Err(e) => Err(format!("killed at {point}:{hit}, ..., power loss: {e}")),
    })
}

fn power_recovery_power(ctx: &mut Ctx, rng: &mut SmallRng, torn: bool) -> Result<Verdict> {
    let wl = ctx.cfg.workload.build();
    let engine = ctx.engine(
        if torn { "compound-c" } else { "compound-b" },
        ctx.cfg.protection,
        true,
    );
    let initial = ctx.workload.initial();
    engine.reset(&initial)?;
    let points: Vec<&'static str> = if torn {
        // Steps with writes into the other slot, or its header, not yet synced (or, for
        // a group's members, install writes).
        let unsynced = [
            "rio.checkpoint.slot_partial",
            "rio.checkpoint.slot_written",
            "rio.checkpoint.meta_written",
            "rio.checkpoint.install_partial",
            "rio.checkpoint.installed",
        ];
        checkpoint_points(&*engine)
            .into_iter()
            .filter(|p| unsynced.contains(p))
            .collect()
    } else {
        checkpoint_points(&*engine)
    };
    let point = points[rng.gen_range(0..points.len())];
    let hit = rng.gen_range(1..=2u64);
    let seed_a = rng.gen();
    let a = match killed(ctx, &job(&*engine, &*wl, seed_a, OPS, Some((point, hit))))? {
        Ok(o) => o,
        Err(e) => return Ok(Err(format!("killed at {point}:{hit}: {e}"))),
    };
    engine.power_fail(rng.gen())?;
    let reference = match clean_state(&*engine)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("killed at {point}:{hit}, power loss: {e}"))),
    };
    let e = Expectation {
        engine: &*engine,
        workload: &*ctx.workload,
        model: CrashModel::Power,
        base: &initial,
        seed: seed_a,
        ops: OPS,
        acked: a.acked,
    };
    if let Err(msg) = verify(&e, &reference) {
        return Ok(Err(format!("killed at {point}:{hit}, power loss: {msg}")));
    }
    let rec = engine.recovery_points();
    let p2 = rec[rng.gen_range(0..rec.len())];
    let h2 = rng.gen_range(1..=2u64);
    if let Err(e) = killed(ctx, &job(&*engine, &*wl, 0, 0, Some((p2, h2))))? {
        return Ok(Err(format!(
            "killed at {point}:{hit}, power loss, recovery killed at {p2}:{h2}: {e}"
        )));
    }
    let second = if torn {
        String::new()
    } else {
        engine.power_fail(rng.gen())?;
        ", power loss again".into()
    };
    let what = format!(
        "killed at {point}:{hit}, power loss{}, recovery killed at {p2}:{h2}{second}",
        if torn { " (torn writes)" } else { "" }
    );
    Ok(match clean_state(&*engine)? {
        Ok(s) if s == reference => Ok(()),
        Ok(s) => Err(format!(
            "{what}: recovery gives other bytes than one clean recovery after the first power \
             loss (first difference at byte {})",
            first_difference(&s, &reference)
        )),
        Err(e) => Err(format!("{what}: {e}")),
    })
}

fn torn_then_checkpoint(ctx: &mut Ctx, rng: &mut SmallRng) -> Result<Verdict> {
    let wl = ctx.cfg.workload.build();
    let engine = ctx.engine("compound-e", ctx.cfg.protection, true);
    let initial = ctx.workload.initial();
    engine.reset(&initial)?;
    // Steps after some of the checkpoint's pages were written into the other slot,
    // before they are synced.
    let points: Vec<&'static str> = checkpoint_points(&*engine)
        .into_iter()
        .filter(|p| ["rio.checkpoint.slot_partial", "rio.checkpoint.slot_written"].contains(p))
        .collect();
    let point = points[rng.gen_range(0..points.len())];
    let hit = rng.gen_range(1..=3u64);
    let seed_a = rng.gen();
    let a = match killed(ctx, &job(&*engine, &*wl, seed_a, OPS, Some((point, hit))))? {
        Ok(o) => o,
        Err(e) => return Ok(Err(format!("killed at {point}:{hit}: {e}"))),
    };
    engine.power_fail(rng.gen())?;
    let e = Expectation {
        engine: &*engine,
        workload: &*ctx.workload,
        model: CrashModel::Power,
        base: &initial,
        seed: seed_a,
        ops: OPS,
        acked: a.acked,
    };
    let reference = match clean_state(&*engine)? {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("killed at {point}:{hit}, power loss: {e}"))),
    };
    if let Err(msg) = verify(&e, &reference) {
        return Ok(Err(format!("killed at {point}:{hit}, power loss: {msg}")));
    }
    // A cold start, a few operations, and the close's checkpoint into the torn slot.
    let (seed_b, ops_b) = (rng.gen(), 4);
    let (exit, b) = run_to_end(&job(&*engine, &*wl, seed_b, ops_b, None))?;
    if exit != Exit::Code(0) || b.error.is_some() {
        return Ok(Err(format!(
            "killed at {point}:{hit}, power loss: the next worker failed: {} ({exit})",
            b.error.unwrap_or_default()
        )));
    }
    if b.state.as_ref() != Some(&reference) {
        return Ok(Err(format!(
            "killed at {point}:{hit}, power loss: the next worker recovered other bytes \
             than a clean open"
        )));
    }
    engine.power_fail(rng.gen())?;
    let e = Expectation {
        engine: &*engine,
        workload: &*ctx.workload,
        model: CrashModel::Power,
        base: &reference,
        seed: seed_b,
        ops: ops_b,
        acked: b.acked,
    };
    Ok(match clean_state(&*engine)? {
        Ok(s) => verify(&e, &s).map(|_| ()).map_err(|msg| {
            format!(
                "killed at {point}:{hit}, power loss, a cold start that committed and \
                 closed (a checkpoint into the slot the dead one wrote), power loss: {msg}"
            )
        }),
        Err(e) => Err(format!("killed at {point}:{hit}, ..., power loss: {e}")),
    })
}

fn stale_image(ctx: &mut Ctx, rng: &mut SmallRng) -> Result<Verdict> {
    let wl = ctx.cfg.workload.build();
    let cfg = |ctx: &Ctx| EngineConfig {
        dir: ctx.work_dir().join("compound-d"),
        state_len: ctx.workload.state_len(),
        protection: ctx.cfg.protection,
        emulate_power_loss: false,
    };
    let first = VistaEngine::new(cfg(ctx));
    let second = VistaEngine::with_cache_dir(cfg(ctx), ctx.work_dir().join("compound-d/mem2"));
    std::fs::create_dir_all(ctx.work_dir().join("compound-d/mem2"))?;
    for f in second.files() {
        crate::engines::remove_if_exists(&f)?;
    }
    let initial = ctx.workload.initial();
    first.reset(&initial)?;
    // The second cache directory loads the checkpoint, commits, and is killed inside
    // its first checkpoint, before the commit point: the disk is unchanged.
    let s1 = rng.gen();
    if let Err(e) = killed(
        ctx,
        &job(&second, &*wl, s1, OPS, Some(("rio.checkpoint.staged", 1))),
    )? {
        return Ok(Err(format!("second cache directory: {e}")));
    }
    // The first one reopens warm, commits, and is killed right after a checkpoint.
    let s2 = rng.gen();
    let w = match killed(
        ctx,
        &job(
            &first,
            &*wl,
            s2,
            OPS,
            Some(("rio.checkpoint.meta_synced", 1)),
        ),
    )? {
        Ok(o) => o,
        Err(e) => return Ok(Err(format!("first cache directory: {e}"))),
    };
    // Its first checkpoint is op 3 (a durable commit): the disk is ops 1..=3.
    let mut want = initial.clone();
    for t in plan(&*ctx.workload, &initial, s2, 3, OPS) {
        t.apply(&mut want);
    }
    if w.acked != 2 {
        return Ok(Err(format!(
            "the first cache directory's worker acknowledged {} operations before its first \
             checkpoint, not 2",
            w.acked
        )));
    }
    let store = match second.open() {
        Ok(s) => s,
        Err(e) => return Ok(Err(format!("open with the second cache directory: {e:#}"))),
    };
    let start = store.start();
    let got = store.state()?.to_vec();
    drop(store);
    Ok(if got == want && start == Start::Cold {
        Ok(())
    } else {
        Err(format!(
            "the second cache directory's image was loaded from a checkpoint its writer has \
             since replaced: the open started {start:?} and shows {} the disk's checkpoint",
            if got == want { "" } else { "other bytes than" }
        ))
    })
}
