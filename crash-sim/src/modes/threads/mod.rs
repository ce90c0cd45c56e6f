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

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use rand::{Rng, SeedableRng};
use vista::{Segment, StartKind};

use crate::engines::vista::VistaEngine;
use crate::engines::{CrashModel, Engine, EngineConfig, Start};
use crate::harness::ctx::Ctx;
use crate::harness::thread_acks::tag;
pub use crate::harness::thread_acks::Acks;
use crate::harness::worker::{self, Outcome, Worker};
use crate::seed::{cycle_seed, mix};
use crate::sys::{self, Exit};
use crate::txn::OpKind;
use crate::workloads::{op_kind, u64_at, WorkloadKind};

/// The most threads a worker runs (each has a record line in the state).
pub const MAX_THREADS: u32 = 64;
/// One lock stripe (rio-cache locks by 64-byte line): every record, account and slot
/// has its own, so two transactions conflict only where they touch the same item.
const LINE: u64 = 64;
const RECORDS: u64 = MAX_THREADS as u64 * LINE;
const ACCOUNTS: u64 = 16;
const OPENING_BALANCE: u64 = 1000;
const SLOTS: u64 = 64;
/// Operations per thread and cycle: more than a thread gets through before the kill.
const OPS: u64 = 5000;
/// Attempts of one transaction that keeps meeting `Conflict` before the worker gives up
/// (a violation: with bounded lock waits and retries nothing should starve this long).
const MAX_ATTEMPTS: u32 = 10_000;

/// A threaded workload: the state's layout and each thread's transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Fixed-amount transfers between 16 accounts.
    Bank,
    /// Versioned writes to 64 shared slots.
    Kv,
}

impl Shape {
    /// The threaded form of `w`, if it has one.
    pub fn of(w: WorkloadKind) -> Option<Shape> {
        match w {
            WorkloadKind::Bank => Some(Shape::Bank),
            WorkloadKind::Kv => Some(Shape::Kv),
            WorkloadKind::Pages => None,
        }
    }

    /// Bytes of state: the thread records, then the items (accounts or slots).
    pub fn state_len(self) -> u64 {
        RECORDS + LINE * self.items()
    }

    fn items(self) -> u64 {
        match self {
            Shape::Bank => ACCOUNTS,
            Shape::Kv => SLOTS,
        }
    }

    /// The state every campaign starts from.
    pub fn initial(self) -> Vec<u8> {
        let mut s = vec![0u8; self.state_len() as usize];
        if self == Shape::Bank {
            for a in 0..ACCOUNTS {
                put(&mut s, item_at(a), &[OPENING_BALANCE]);
            }
        }
        s
    }

    /// Undo records op `i` of thread `t` writes (0 for a checkpoint).
    fn writes(self, seed: u64, t: u32, i: u64) -> u64 {
        match (kind(seed, t, i), self) {
            (OpKind::Checkpoint | OpKind::Close, _) => 0,
            (_, Shape::Bank) => 3,
            (_, Shape::Kv) => kv_slots(seed, t, i).len() as u64 + 1,
        }
    }

    /// Applies op `i` of thread `t` to a model of the state, as a serial execution
    /// would (nothing for aborts and checkpoints).
    pub fn apply(self, state: &mut [u8], seed: u64, t: u32, i: u64) {
        if !committing(kind(seed, t, i)) {
            return;
        }
        match self {
            Shape::Bank => {
                let tr = transfer(seed, t, i);
                let (src, dst) = (item_at(tr.from), item_at(tr.to));
                let from = u64_at(state, src as usize).wrapping_sub(tr.amount);
                put(state, src, &[from]);
                let to = u64_at(state, dst as usize).wrapping_add(tr.amount);
                put(state, dst, &[to]);
            }
            Shape::Kv => {
                for s in kv_slots(seed, t, i) {
                    let at = item_at(s);
                    let v = u64_at(state, at as usize);
                    put(state, at, &kv_tuple(seed, t, i, s, v + 1));
                }
            }
        }
        put(state, record_at(t), &[seed, i]);
    }
}

fn record_at(t: u32) -> u64 {
    LINE * u64::from(t)
}

fn item_at(k: u64) -> u64 {
    RECORDS + LINE * k
}

fn put(state: &mut [u8], at: u64, words: &[u64]) {
    for (k, w) in words.iter().enumerate() {
        let o = at as usize + 8 * k;
        state[o..o + 8].copy_from_slice(&w.to_le_bytes());
    }
}

fn thread_seed(seed: u64, t: u32) -> u64 {
    mix(seed ^ mix(0x7468_7265_6164_0000 | u64::from(t)))
}

/// The kind of op `i` (1-based) of thread `t`: the schedule of the serial worker
/// (commits, about 9 % aborts, 6 % durable commits, 2 % checkpoints), never a close.
pub fn kind(seed: u64, t: u32, i: u64) -> OpKind {
    op_kind(thread_seed(seed, t), i, u64::MAX)
}

fn committing(k: OpKind) -> bool {
    matches!(k, OpKind::Commit | OpKind::Durable)
}

struct Transfer {
    from: u64,
    to: u64,
    amount: u64,
}

fn transfer(seed: u64, t: u32, i: u64) -> Transfer {
    let r = mix(thread_seed(seed, t) ^ mix(i));
    let from = r % ACCOUNTS;
    Transfer {
        from,
        to: (from + 1 + (r >> 8) % (ACCOUNTS - 1)) % ACCOUNTS,
        amount: 1 + (r >> 16) % 100,
    }
}

/// The 1-4 distinct slots op `i` of thread `t` writes, in the order it writes them.
fn kv_slots(seed: u64, t: u32, i: u64) -> Vec<u64> {
    let mut r = mix(thread_seed(seed, t) ^ mix(i) ^ 0x6b76);
    let count = 1 + (r % 4) as usize;
    let mut slots = Vec::with_capacity(count);
    while slots.len() < count {
        r = mix(r);
        let slot = r % SLOTS;
        if !slots.contains(&slot) {
            slots.push(slot);
        }
    }
    slots
}

/// What op `i` of thread `t` writes into `slot` when it finds version `version - 1`.
fn kv_tuple(seed: u64, t: u32, i: u64, slot: u64, version: u64) -> [u64; 4] {
    let value = mix(thread_seed(seed, t) ^ mix(i) ^ slot.rotate_left(40));
    [version, u64::from(t) + 1, i, value]
}

/// What a check of a threaded cycle knows.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// The workload.
    pub shape: Shape,
    /// The state the cycle started from.
    pub base: &'a [u8],
    /// The cycle's seed.
    pub seed: u64,
    /// Threads of the worker.
    pub threads: u32,
    /// What the worker acknowledged.
    pub acks: &'a Acks,
    /// The kind of crash.
    pub model: CrashModel,
}

/// Checks a recovered state of a threaded cycle; returns each thread's last committed
/// op (`c_t`).
///
/// - Each thread's record is the cycle's start or one of its committing ops, at most
///   the one in flight (`acked + 1`): nothing invented, no aborted op;
/// - at least the last committing op the engine promised for this crash (process
///   crash: every acknowledged commit; power loss: every commit acknowledged before an
///   acknowledged durable op began, and that op): nothing lost;
/// - the rest of the state is what a serial order of those committed ops gives
///   (bank: exactly; kv: versions, tuples and an acyclic order; see the module docs).
///
/// # Errors
/// A one-line description of the violation.
pub fn verify(e: &Expect<'_>, recovered: &[u8]) -> Result<Vec<u64>, String> {
    if recovered.len() != e.base.len() {
        return Err(format!(
            "the state has {} bytes, not {}",
            recovered.len(),
            e.base.len()
        ));
    }
    let mut last = Vec::with_capacity(e.threads as usize);
    for t in 0..e.threads {
        let acked = e.acks.acked(t);
        let floor = match e.model {
            CrashModel::Process => acked,
            CrashModel::Power => e.acks.durable(t),
        };
        let required = (1..=floor)
            .rev()
            .find(|&i| committing(kind(e.seed, t, i)))
            .unwrap_or(0);
        let at = record_at(t) as usize;
        let (rs, ri) = (u64_at(recovered, at), u64_at(recovered, at + 8));
        let c = if rs == e.seed && ri > 0 {
            ri
        } else if recovered[at..at + 16] == e.base[at..at + 16] {
            0
        } else {
            return Err(format!(
                "thread {t}'s record holds ({rs:#x}, {ri}): neither the cycle's start nor an op \
                 of this cycle"
            ));
        };
        if c > acked + 1 {
            return Err(format!(
                "thread {t}: op {c} is present, but it had {acked} acknowledged and only op {} in \
                 flight: an op was invented",
                acked + 1
            ));
        }
        if c > 0 && !committing(kind(e.seed, t, c)) {
            return Err(format!(
                "thread {t}: op {c} is present, but it was {:?} (not committed)",
                kind(e.seed, t, c)
            ));
        }
        if c < required {
            return Err(format!(
                "lost acknowledged operations of thread {t}: its ops up to {required} must be \
                 there ({:?} crash, {acked} acknowledged), the state shows its ops up to {c}",
                e.model
            ));
        }
        last.push(c);
    }
    match e.shape {
        Shape::Bank => check_bank(e, &last, recovered)?,
        Shape::Kv => check_kv(e, &last, recovered)?,
    }
    Ok(last)
}

/// The committed ops of `last`, thread by thread in program order.
fn committed(e: &Expect<'_>, last: &[u64]) -> Vec<(u32, u64)> {
    let mut ops = Vec::new();
    for (t, &c) in (0u32..).zip(last) {
        ops.extend(
            (1..=c)
                .filter(|&i| committing(kind(e.seed, t, i)))
                .map(|i| (t, i)),
        );
    }
    ops
}

fn with_records(e: &Expect<'_>, last: &[u64]) -> Vec<u8> {
    let mut s = e.base.to_vec();
    for (t, &c) in (0u32..).zip(last) {
        if c > 0 {
            put(&mut s, record_at(t), &[e.seed, c]);
        }
    }
    s
}

fn check_bank(e: &Expect<'_>, last: &[u64], recovered: &[u8]) -> Result<(), String> {
    let mut model = with_records(e, last);
    let ops = committed(e, last);
    for &(t, i) in &ops {
        e.shape.apply(&mut model, e.seed, t, i);
    }
    if model == recovered {
        return Ok(());
    }
    let total =
        |s: &[u8]| (0..ACCOUNTS).fold(0u64, |x, a| x.wrapping_add(u64_at(s, item_at(a) as usize)));
    let (got, want) = (total(recovered), total(e.base));
    if got != want {
        return Err(format!(
            "bank total is {got}, not {want}: a transfer was applied in part or an update lost (threads' last \
             committed ops {last:?})"
        ));
    }
    match (0..ACCOUNTS).find(|&a| {
        let at = item_at(a) as usize;
        recovered[at..at + 8] != model[at..at + 8]
    }) {
        Some(a) => Err(format!(
            "account {a} holds {}, but the {} committed transfers (threads' last committed ops \
             {last:?}) make it {}: a lost update or a transfer applied twice",
            u64_at(recovered, item_at(a) as usize),
            ops.len(),
            u64_at(&model, item_at(a) as usize)
        )),
        None => {
            let at = recovered
                .iter()
                .zip(&model)
                .position(|(x, y)| x != y)
                .unwrap_or(0);
            Err(format!(
                "byte {at} is {:#x}, but the committed transfers leave it {:#x}",
                recovered[at], model[at]
            ))
        }
    }
}

fn check_kv(e: &Expect<'_>, last: &[u64], recovered: &[u8]) -> Result<(), String> {
    let ops = committed(e, last);
    let index: HashMap<(u32, u64), usize> = ops.iter().enumerate().map(|(n, &o)| (o, n)).collect();
    let mut writers: Vec<Vec<usize>> = vec![Vec::new(); SLOTS as usize];
    for (n, &(t, i)) in ops.iter().enumerate() {
        for s in kv_slots(e.seed, t, i) {
            writers[s as usize].push(n);
        }
    }
    let mut model = with_records(e, last);
    // Edges of the precedence graph: program order, then "precedes the last writer".
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); ops.len()];
    for n in 1..ops.len() {
        if ops[n - 1].0 == ops[n].0 {
            next[n - 1].push(n);
        }
    }
    for s in 0..SLOTS {
        let w = &writers[s as usize];
        let at = item_at(s) as usize;
        let words = |st: &[u8]| -> [u64; 4] { std::array::from_fn(|k| u64_at(st, at + 8 * k)) };
        let (got, base) = (words(recovered), words(e.base));
        if w.is_empty() {
            if got != base {
                return Err(format!(
                    "slot {s} holds version {} by thread {} op {}, but no committed transaction \
                     of the cycle writes it (threads' last committed ops {last:?})",
                    got[0],
                    got[1].wrapping_sub(1),
                    got[2]
                ));
            }
            continue;
        }
        let want_version = base[0] + w.len() as u64;
        if got[0] != want_version {
            return Err(format!(
                "slot {s} has version {}, but {} committed transactions wrote it from version {}: \
                 a lost update or a partial transaction (threads' last committed ops {last:?})",
                got[0],
                w.len(),
                base[0]
            ));
        }
        let writer = got[1]
            .checked_sub(1)
            .and_then(|t| u32::try_from(t).ok())
            .and_then(|t| index.get(&(t, got[2])).copied())
            .filter(|n| w.contains(n));
        let Some(lw) = writer else {
            return Err(format!(
                "slot {s} holds a write of thread {} op {}, which is not a committed transaction \
                 that writes it",
                got[1].wrapping_sub(1),
                got[2]
            ));
        };
        let (t, i) = ops[lw];
        put(
            &mut model,
            at as u64,
            &kv_tuple(e.seed, t, i, s, want_version),
        );
        for &n in w.iter().filter(|&&n| n != lw) {
            next[n].push(lw);
        }
    }
    if model != recovered {
        let at = recovered
            .iter()
            .zip(&model)
            .position(|(x, y)| x != y)
            .unwrap_or(0);
        return Err(format!(
            "byte {at} is {:#x}, but the committed transactions leave it {:#x} (slot {})",
            recovered[at],
            model[at],
            (at as u64).saturating_sub(RECORDS) / LINE
        ));
    }
    // A serial order exists iff the graph is acyclic (Kahn).
    let mut indegree = vec![0usize; ops.len()];
    for v in next.iter().flatten() {
        indegree[*v] += 1;
    }
    let mut ready: Vec<usize> = (0..ops.len()).filter(|&n| indegree[n] == 0).collect();
    let mut done = 0;
    while let Some(n) = ready.pop() {
        done += 1;
        for &m in &next[n] {
            indegree[m] -= 1;
            if indegree[m] == 0 {
                ready.push(m);
            }
        }
    }
    if done != ops.len() {
        let stuck: Vec<String> = (0..ops.len())
            .filter(|&n| indegree[n] > 0)
            .take(4)
            .map(|n| format!("thread {} op {}", ops[n].0, ops[n].1))
            .collect();
        return Err(format!(
            "no serial order of the committed transactions explains the slots' last writers \
             (a cycle through {})",
            stuck.join(", ")
        ));
    }
    Ok(())
}

/// Checks what recovery says it did: no more lanes than threads whose transaction in
/// flight the state does not show committed, no more records than those transactions
/// wrote; nothing after a power loss (checkpoints hold only committed state).
///
/// # Errors
/// A one-line description of the violation.
pub fn check_recovery(
    e: &Expect<'_>,
    last: &[u64],
    (lanes, records): (u32, u64),
) -> Result<(), String> {
    if e.model == CrashModel::Power && (lanes, records) != (0, 0) {
        return Err(format!(
            "after power loss recovery rolled back {lanes} lane(s), {records} record(s), but a \
             checkpoint never holds an unfinished transaction"
        ));
    }
    let (mut max_lanes, mut max_records) = (0u32, 0u64);
    for (t, &c) in (0u32..).zip(last) {
        let f = e.acks.acked(t) + 1;
        let k = kind(e.seed, t, f);
        if matches!(k, OpKind::Commit | OpKind::Abort | OpKind::Durable) && c != f {
            max_lanes += 1;
            max_records += e.shape.writes(e.seed, t, f);
        }
    }
    if lanes > max_lanes {
        return Err(format!(
            "recovery rolled back {lanes} lanes, but only {max_lanes} threads had a transaction \
             in flight that the state does not show committed"
        ));
    }
    if records > max_records {
        return Err(format!(
            "recovery undid {records} records, but the transactions in flight that the state \
             does not show committed wrote at most {max_records}"
        ));
    }
    if records > 0 && lanes == 0 {
        return Err(format!("{records} records undone in no lane"));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The worker.

/// Forks a threaded worker: it opens (recovers) the segment, reports like the serial
/// worker (ready, recovery, state), then runs `ops` operations on each of `threads`
/// threads, acknowledging each; when all are done it closes the segment.
///
/// # Errors
/// `pipe` or `fork` errors.
pub(crate) fn spawn(
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
    std::thread::scope(|s| {
        for t in 0..threads {
            let seg = &seg;
            s.spawn(move || {
                if let Err(e) = run_thread(seg, shape, seed, t, ops, w) {
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

fn run_thread(seg: &Segment, shape: Shape, seed: u64, t: u32, ops: u64, w: &File) -> Result<()> {
    for i in 1..=ops {
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
            Err(vista::Error::Conflict) if attempt < MAX_ATTEMPTS => {
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
            let from: u64 = tx.get(src)?;
            let to: u64 = tx.get(dst)?;
            tx.put(src, &from.wrapping_sub(tr.amount))?;
            tx.put(dst, &to.wrapping_add(tr.amount))?;
        }
        Shape::Kv => {
            for s in kv_slots(seed, t, i) {
                let at = item_at(s);
                let v: u64 = tx.get(at)?;
                tx.put(at, &kv_tuple(seed, t, i, s, v + 1))?;
            }
        }
    }
    tx.put(record_at(t), &[seed, i])
}

// ---------------------------------------------------------------------------------
// The campaign (kill and power modes).

/// What the next recovery must show.
struct Pending {
    base: Vec<u8>,
    seed: u64,
    acks: Acks,
    cycle: u64,
}

/// The io mode fails one of a worker's first this many I/O operations.
const IO_OPS: u64 = 400;
/// The exit code of an io-mode worker that met its injected failure and ended cleanly.
const IO_MET: i32 = 5;

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
        if cycle % 64 == 0 {
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
