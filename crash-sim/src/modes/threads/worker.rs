//! The threaded worker: one forked process opens (recovers) the segment, reports like
//! the serial worker, then runs N threads of transactions on it, each acknowledging its
//! ops on the shared pipe.

use std::fs::File;

use anyhow::{Context, Result};
use vista::{Segment, StartKind};

use crate::engines::vista::VistaEngine;
use crate::engines::Start;
use crate::harness::thread_acks::tag;
use crate::harness::worker::{self, Worker};
use crate::sys;
use crate::txn::OpKind;

use super::shape::{item_at, kind, kv_slots, kv_tuple, record_at, transfer, Shape, ACCOUNTS};

/// Attempts of one transaction that keeps meeting `Conflict` before the worker gives up
/// (a violation: with bounded lock waits and retries nothing should starve this long).
const MAX_ATTEMPTS: u32 = 10_000;
/// The exit code of an io-mode worker that met its injected failure and ended cleanly.
pub(super) const IO_MET: i32 = 5;

/// Forks a threaded worker: it opens (recovers) the segment, reports like the serial
/// worker (ready, recovery, state), then runs `ops` operations on each of `threads`
/// threads, acknowledging each; when all are done it closes the segment.
///
/// # Errors
/// `pipe` or `fork` errors.
pub(super) fn spawn(
    engine: &VistaEngine,
    shape: Shape,
    seed: u64,
    threads: u32,
    ops: u64,
    arm: Option<(&str, u64)>,
    fault: Option<(u64, i32)>,
) -> Result<Worker> {
    worker::spawn_fn(|w| {
        match arm {
            Some((point, n)) => crash_point::arm(point, n),
            None => crash_point::disarm(),
        }
        let faults = match fault {
            Some((n, errno)) => {
                let f = vista::rio_cache::Faults::counting();
                f.fail_at(n, errno);
                f
            }
            None => vista::rio_cache::Faults::none(),
        };
        match child(engine, shape, seed, threads, ops, &w, &faults) {
            // The io mode's worker says whether its injected failure was met.
            Ok(()) if faults.failed().is_some() => IO_MET,
            Ok(()) => 0,
            Err(e) => {
                worker::send_error(&w, &e);
                3
            }
        }
    })
}

/// Whether `e` is the expected consequence of the injected failure: one was injected,
/// and `e` is the typed error it surfaces as (never a conflict or a corruption).
fn injected(faults: &vista::rio_cache::Faults, e: &anyhow::Error) -> bool {
    faults.failed().is_some()
        && e.chain().any(|c| {
            matches!(
                c.downcast_ref::<vista::Error>(),
                Some(
                    vista::Error::Io { .. }
                        | vista::Error::Poisoned(_)
                        | vista::Error::Cache(_)
                        | vista::Error::CheckpointBusy { .. }
                )
            )
        })
}

fn child(
    engine: &VistaEngine,
    shape: Shape,
    seed: u64,
    threads: u32,
    ops: u64,
    w: &File,
    faults: &vista::rio_cache::Faults,
) -> Result<()> {
    let seg = match engine.open_segment_with(faults) {
        Ok(s) => s,
        // The open met the injected failure: it refused, having written nothing that
        // a later open could not recover from. No state to report this cycle.
        Err(e) if injected(faults, &e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let start = match seg.start_kind() {
        StartKind::Created => Start::Created,
        StartKind::Warm => Start::Warm,
        StartKind::Cold(_) => Start::Cold,
    };
    worker::send_ready(w, start)?;
    let r = seg.recovery();
    worker::send_recovery(w, r.lanes_rolled_back, r.records_undone)?;
    worker::send_state(w, &seg.read(0, shape.state_len())?)?;
    let total = bank_total(&seg, shape)?;
    std::thread::scope(|s| {
        for t in 0..threads {
            let seg = &seg;
            s.spawn(move || {
                if let Err(e) = run_thread(seg, shape, seed, t, ops, w, total) {
                    // A thread that met the injected failure stops there: its failed
                    // operation is not acknowledged, and a later one must not commit
                    // (the oracle takes a thread's commits to be in program order).
                    if injected(faults, &e) {
                        return;
                    }
                    // Any other failure ends the worker at once (the others could run
                    // on for thousands of operations).
                    worker::send_error(w, &e);
                    sys::exit_now(3);
                }
            });
        }
    });
    if let Err(e) = seg.close() {
        let e = anyhow::Error::from(e);
        if !injected(faults, &e) {
            return Err(e);
        }
    }
    worker::send_done(w)?;
    Ok(())
}

/// The sum of the bank's balances (wrapping), read in a read-only transaction; `None`
/// for other shapes. Transfers keep it: every read-only transaction must find it again.
fn bank_total(seg: &Segment, shape: Shape) -> Result<Option<u64>> {
    if shape != Shape::Bank {
        return Ok(None);
    }
    let sum = seg.read_transaction(|tx| {
        (0..ACCOUNTS).try_fold(0u64, |sum, k| {
            Ok::<_, vista::Error>(sum.wrapping_add(tx.get::<u64>(item_at(k))?))
        })
    })?;
    Ok(Some(sum))
}

/// Every eighth operation of a bank thread, a read-only transaction reads every balance
/// between the thread's own transactions: it must see the total the worker opened with
/// (no half transfer, no uncommitted one), or the worker fails.
fn audit(seg: &Segment, total: Option<u64>, t: u32, i: u64) -> Result<()> {
    let Some(total) = total.filter(|_| i % 8 == u64::from(t) % 8) else {
        return Ok(());
    };
    let seen = match bank_total(seg, Shape::Bank) {
        Ok(seen) => seen.unwrap_or(total),
        // Writers held the balances past every retry: nothing seen, nothing to judge.
        Err(e) if matches!(e.downcast_ref(), Some(vista::Error::Conflict { .. })) => total,
        Err(e) => return Err(e),
    };
    if seen != total {
        anyhow::bail!(
            "thread {t} op {i}: a read-only transaction saw the balances sum to {seen}, not {total}"
        );
    }
    Ok(())
}

fn run_thread(
    seg: &Segment,
    shape: Shape,
    seed: u64,
    t: u32,
    ops: u64,
    w: &File,
    total: Option<u64>,
) -> Result<()> {
    for i in 1..=ops {
        audit(seg, total, t, i)?;
        let k = kind(seed, t, i);
        if matches!(k, OpKind::Durable | OpKind::Checkpoint) {
            worker::send_frame(w, worker::THREAD_START, tag(t, i))?;
        }
        if k == OpKind::Checkpoint {
            seg.checkpoint()
                .with_context(|| format!("thread {t} op {i}: checkpoint"))?;
        } else {
            run_txn(seg, shape, seed, t, i, k)?;
        }
        worker::send_frame(w, worker::THREAD_ACK, tag(t, i))?;
    }
    Ok(())
}

fn run_txn(seg: &Segment, shape: Shape, seed: u64, t: u32, i: u64, k: OpKind) -> Result<()> {
    let mut attempt = 0u32;
    loop {
        let mut tx = seg.begin()?;
        match body(&mut tx, shape, seed, t, i) {
            Ok(()) => {
                match k {
                    OpKind::Commit => tx.commit()?,
                    OpKind::Durable => tx.commit_durable()?,
                    _ => tx.abort()?,
                }
                return Ok(());
            }
            Err(vista::Error::Conflict { .. }) if attempt < MAX_ATTEMPTS => {
                drop(tx); // aborted: its locks and lane are released
                attempt += 1;
                std::thread::yield_now();
            }
            Err(e) => {
                return Err(e).with_context(|| format!("thread {t} op {i}, attempt {attempt}"))
            }
        }
    }
}

fn body(
    tx: &mut vista::Transaction<'_>,
    shape: Shape,
    seed: u64,
    t: u32,
    i: u64,
) -> vista::Result<()> {
    match shape {
        Shape::Bank => {
            let tr = transfer(seed, t, i);
            let (src, dst) = (item_at(tr.from), item_at(tr.to));
            // Every other transfer reads for update (locked exclusively at the read),
            // the others shared and upgraded by the write: both paths are crashed.
            let (from, to): (u64, u64) = if i.is_multiple_of(2) {
                (tx.get_for_update(src)?, tx.get_for_update(dst)?)
            } else {
                (tx.get(src)?, tx.get(dst)?)
            };
            tx.put(src, &from.wrapping_sub(tr.amount))?;
            tx.put(dst, &to.wrapping_add(tr.amount))?;
        }
        Shape::Kv => {
            for s in kv_slots(seed, t, i) {
                let at = item_at(s);
                let v: u64 = if (i + s).is_multiple_of(2) {
                    tx.get_for_update(at)?
                } else {
                    tx.get(at)?
                };
                tx.put(at, &kv_tuple(seed, t, i, s, v + 1))?;
            }
        }
    }
    tx.put(record_at(t), &[seed, i])
}
