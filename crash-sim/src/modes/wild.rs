//! The wild mode, Rio's experiment: a worker performs one stray store or bit flip,
//! outside any transaction, keeps running transactions for a while (so a corrupted
//! value can be read and committed), and is killed. The parent then reopens and
//! compares with the oracle.
//!
//! Two fault models, each run for every protection:
//! - **segment**: the store is aimed at the engine's public addresses (a random byte
//!   of a record, a bit flip, an off-by-one overrun into the next record, vista's
//!   header or undo-lane tail): buffer overruns and stale pointers into the data.
//! - **anywhere**: the store goes to a random byte of everything the worker has mapped
//!   (parsed from `/proc/self/maps`, every byte equally likely; code, libraries, heap,
//!   the engine's mappings), except the kernel's vDSO/vvar/vsyscall pages and the
//!   worker's stack (see [`crate::harness::maps::targets`]). A store into a read-only area faults
//!   whatever the protection, and is counted as trapped; a store into the worker's own
//!   heap may derail it (a hang, a garbled message, a panic): the worker is then killed
//!   and the files are judged like any other.
//!
//! vista runs once per protection (none, mprotect, alias, and pkey where the CPU has
//! it); its mapping's address is derived in the worker from a committed read. lrvm's
//! region is a private copy in the worker's memory: a wild store there corrupts data
//! only if a later transaction reads the damaged bytes and commits what it computed
//! from them.

use std::time::Duration;

use anyhow::Result;
use rand::{Rng, SeedableRng};

use crate::engines::{CrashModel, Engine, EngineKind};
use crate::harness::ctx::Ctx;
use crate::harness::maps::Region;
use crate::harness::oracle::{verify, Expectation};
use crate::harness::worker::{spawn, Job, Msg, Outcome, WildFault, WildTarget};
use crate::modes::kill::OPS;
use crate::report::WildRow;
use crate::seed::cycle_seed;
use crate::sys::{Exit, WildStore};

/// Transactions a worker runs after its wild store before it is killed (at most).
const AFTER: u64 = 8;

/// Where the wild stores of a row are aimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    /// At the engine's public addresses.
    Segment,
    /// Anywhere the worker has mapped.
    Anywhere,
}

impl Model {
    fn name(self) -> &'static str {
        match self {
            Model::Segment => "segment",
            Model::Anywhere => "anywhere",
        }
    }
}

fn fault(rng: &mut impl Rng, records: (u64, u64, u64), vista: bool, model: Model) -> WildFault {
    let (first, size, count) = records;
    let before_op = rng.gen_range(1..=6);
    if model == Model::Anywhere {
        let store = if rng.gen_bool(0.5) {
            WildStore::Write(rng.gen_range(1..=255))
        } else {
            WildStore::FlipBit(rng.gen_range(0..8))
        };
        return WildFault {
            before_op,
            target: WildTarget::Anywhere(rng.gen()),
            store,
        };
    }
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
    let guards: Vec<(String, vista::Protection)> = if ctx.cfg.engine == EngineKind::Vista {
        let mut v = vec![
            ("none".to_owned(), vista::Protection::None),
            ("mprotect".to_owned(), vista::Protection::Mprotect),
            ("alias".to_owned(), vista::Protection::Alias),
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
    let rows: Vec<(Model, String, vista::Protection)> = [Model::Segment, Model::Anywhere]
        .into_iter()
        .flat_map(|m| guards.iter().map(move |(l, p)| (m, l.clone(), *p)))
        .collect();
    let share = 1.0 / rows.len() as f64;
    let mut rng = rand::rngs::SmallRng::seed_from_u64(ctx.cfg.seed);
    let mut cycle = 0u64;
    for (k, (model, label, protection)) in rows.iter().cloned().enumerate() {
        let engine = ctx.engine(&format!("wild-{label}-{}", model.name()), protection, false);
        let initial = ctx.workload.initial();
        engine.reset(&initial)?;
        let mut base = initial.clone();
        let mut row = WildRow {
            protection: label.clone(),
            model: model.name().to_owned(),
            ..WildRow::default()
        };
        let guarded = protection != vista::Protection::None;
        let per_row = ctx.cfg.cycles.map(|c| c / rows.len() as u64 + 1);
        let mut n = 0u64;
        while ctx.more(cycle, share * (k + 1) as f64) && !matches!(per_row, Some(c) if n >= c) {
            let seed = cycle_seed(ctx.cfg.seed, cycle);
            let f = fault(
                &mut rng,
                ctx.workload.records(),
                !engine.kind().is_lrvm(),
                model,
            );
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
            // A worker that stored into its own memory may hang or garble its messages:
            // in the "anywhere" model that ends the cycle (it is killed and judged by
            // its files); at the segment it is a harness failure as everywhere else.
            let timeout = match model {
                Model::Segment => Duration::from_secs(60),
                Model::Anywhere => Duration::from_secs(5),
            };
            loop {
                let msg = match w.next(timeout) {
                    Ok(Some(msg)) => msg,
                    Ok(None) => break,
                    Err(_) if model == Model::Anywhere && out.wild => {
                        row.derailed += 1;
                        break;
                    }
                    Err(e) => return Err(e),
                };
                let enough = matches!(msg, Msg::Ack(i) if i >= stop_at);
                out.absorb([msg]);
                if enough {
                    break;
                }
            }
            w.kill()?;
            let exit = w.wait()?;
            match w.drain() {
                Ok(rest) => out.absorb(rest),
                Err(_) if model == Model::Anywhere && out.wild => {}
                Err(e) => return Err(e),
            }
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
            let region = out.wild_region.unwrap_or(Region::Elsewhere);
            match region {
                Region::Segment => row.hit_segment += 1,
                Region::WriteMapping => row.hit_write_mapping += 1,
                Region::Metadata => row.hit_metadata += 1,
                Region::Elsewhere => {}
            }
            let trapped = exit == Exit::Signal(libc::SIGSEGV) && !out.wild_survived;
            if region != Region::Elsewhere && out.wild_survived {
                row.landed_in_engine += 1;
            }
            // Damage the protection must have stopped: a store through the segment's
            // public addresses under a guard. (Stores into the write mapping, rio-cache's
            // metadata, or the worker's own memory are outside what any mode promises.)
            let must_trap = guarded && region == Region::Segment;
            let at = format!("{label} ({} model) cycle {cycle}", model.name());
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
                    if must_trap {
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
                    if must_trap {
                        ctx.violation(at, format!("{label}: undetected corruption: {msg}"), &extra);
                    }
                    engine.reset(&initial)?;
                    base.clone_from(&initial);
                }
            }
            if ctx.stop() {
                break;
            }
            if cycle.is_multiple_of(16) {
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
