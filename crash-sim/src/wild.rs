//! The wild mode, Rio's experiment: a worker performs one stray store, bit flip or
//! off-by-one overrun into the engine's memory, outside any transaction, keeps running
//! transactions for a while (so a corrupted value can be read and committed), and is
//! killed. The parent then reopens and compares with the oracle.
//!
//! vista runs once per protection (none, mprotect, and pkey where the CPU has it); its
//! mapping's address is derived in the worker from a committed read. lrvm's region is a
//! private copy in the worker's memory: a wild store there corrupts data only if a later
//! transaction reads the damaged bytes and commits what it computed from them.

use std::time::Duration;

use anyhow::Result;
use rand::{Rng, SeedableRng};

use crate::campaign::Ctx;
use crate::engine::{CrashModel, Engine, EngineKind};
use crate::kill::OPS;
use crate::oracle::{verify, Expectation};
use crate::report::WildRow;
use crate::sys::{Exit, WildStore};
use crate::worker::{spawn, Job, Msg, Outcome, WildFault, WildTarget};
use crate::workload::cycle_seed;

/// Transactions a worker runs after its wild store before it is killed (at most).
const AFTER: u64 = 8;

fn fault(rng: &mut impl Rng, records: (u64, u64, u64), vista: bool) -> WildFault {
    let (first, size, count) = records;
    let before_op = rng.gen_range(1..=6);
    let kind = rng.gen_range(0..if vista { 4 } else { 3 });
    let (target, store) = match kind {
        // A stray store of a random byte into a random record.
        0 => (
            WildTarget::Data(first + rng.gen_range(0..size * count)),
            WildStore::Write(rng.gen()),
        ),
        // A bit flip.
        1 => (
            WildTarget::Data(first + rng.gen_range(0..size * count)),
            WildStore::FlipBit(rng.gen_range(0..8)),
        ),
        // An off-by-one overrun: the byte just past a record (the next one's first).
        2 => (
            WildTarget::Data(first + size * rng.gen_range(1..count)),
            WildStore::Write(rng.gen_range(1..=255)),
        ),
        // vista metadata: the header's version field, or the undo lane's tail word.
        _ => (
            WildTarget::Meta(if rng.gen_bool(0.5) { 8 } else { 4096 }),
            WildStore::Write(rng.gen_range(1..=255)),
        ),
    };
    WildFault {
        before_op,
        target,
        store,
    }
}

/// Runs the wild mode.
///
/// # Errors
/// Harness failures.
pub fn run(ctx: &mut Ctx) -> Result<()> {
    let rows: Vec<(String, vista::Protection)> = if ctx.cfg.engine == EngineKind::Vista {
        let mut v = vec![
            ("none".to_owned(), vista::Protection::None),
            ("mprotect".to_owned(), vista::Protection::Mprotect),
        ];
        if rio_cache::pkeys_supported() {
            v.push(("pkey".to_owned(), vista::Protection::Pkey));
        } else {
            ctx.report
                .notes
                .push("pkey: not measured, this machine cannot allocate protection keys".into());
        }
        v
    } else {
        vec![("private copy".to_owned(), vista::Protection::None)]
    };
    let share = 1.0 / rows.len() as f64;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(ctx.cfg.seed);
    let mut cycle = 0u64;
    for (k, (label, protection)) in rows.into_iter().enumerate() {
        let engine = ctx.engine(&format!("wild-{label}"), protection, false);
        let initial = ctx.workload.initial();
        engine.reset(&initial)?;
        let mut base = initial.clone();
        let mut row = WildRow {
            protection: label.clone(),
            ..WildRow::default()
        };
        let guarded = protection != vista::Protection::None;
        let per_row = ctx.cfg.cycles.map(|c| c / 3 + 1);
        let mut n = 0u64;
        while ctx.more(cycle, share * (k + 1) as f64) && !matches!(per_row, Some(c) if n >= c) {
            let seed = cycle_seed(ctx.cfg.seed, cycle);
            let f = fault(&mut rng, ctx.workload.records(), !engine.kind().is_lrvm());
            let job = Job {
                engine: &*engine,
                workload: &*ctx.workload,
                seed,
                ops: OPS,
                arm: None,
                send_state: false,
                recover_only: false,
                wild: Some(f),
            };
            let mut w = spawn(&job)?;
            let mut out = Outcome::default();
            let stop_at = f.before_op + rng.gen_range(0..=AFTER);
            while let Some(m) = w.next(Duration::from_secs(60))? {
                let enough = matches!(m, Msg::Ack(i) if i >= stop_at);
                out.absorb([m]);
                if enough {
                    break;
                }
            }
            w.kill()?;
            let exit = w.wait()?;
            out.absorb(w.drain()?);
            cycle += 1;
            n += 1;
            ctx.report.cycles = cycle;
            if exit == Exit::Signal(libc::SIGKILL) && !out.done {
                ctx.report.effective_kills += 1;
            }
            if !out.wild {
                continue;
            }
            row.faults += 1;
            let trapped = exit == Exit::Signal(libc::SIGSEGV);
            let at = format!("{label} cycle {cycle}");
            let extra = format!("--cycles {cycle}");
            let verdict = reopen(ctx, &*engine, &base, seed, out.acked);
            match verdict {
                Verdict::Clean(state) => {
                    if trapped {
                        row.trapped += 1;
                    } else {
                        row.harmless += 1;
                    }
                    base = state;
                }
                Verdict::Refused(e) => {
                    row.detected_by_engine += 1;
                    if trapped {
                        row.trapped += 1;
                    }
                    if guarded {
                        ctx.violation(
                            at,
                            format!("{label}: the wild store damaged the segment: {e}"),
                            &extra,
                        );
                    }
                    engine.reset(&initial)?;
                    base.clone_from(&initial);
                }
                Verdict::Corrupt(msg) => {
                    row.corrupted_undetected += 1;
                    if trapped {
                        row.trapped += 1;
                    }
                    if guarded {
                        ctx.violation(at, format!("{label}: undetected corruption: {msg}"), &extra);
                    }
                    engine.reset(&initial)?;
                    base.clone_from(&initial);
                }
            }
            if ctx.stop() {
                break;
            }
            if cycle % 16 == 0 {
                ctx.tick(|| format!("{label}: {} faults", row.faults));
            }
        }
        ctx.report.wild.push(row);
    }
    Ok(())
}

enum Verdict {
    Clean(Vec<u8>),
    Refused(String),
    Corrupt(String),
}

fn reopen(ctx: &Ctx, engine: &dyn Engine, base: &[u8], seed: u64, acked: u64) -> Verdict {
    let store = match engine.open() {
        Ok(s) => s,
        Err(e) => return Verdict::Refused(format!("{e:#}")),
    };
    let state = match store.state() {
        Ok(s) => s.to_vec(),
        Err(e) => return Verdict::Refused(format!("{e:#}")),
    };
    drop(store);
    let e = Expectation {
        engine,
        workload: &*ctx.workload,
        model: CrashModel::Process,
        base,
        seed,
        ops: OPS,
        acked,
    };
    match verify(&e, &state) {
        Ok(_) => Verdict::Clean(state),
        Err(msg) => Verdict::Corrupt(msg),
    }
}
