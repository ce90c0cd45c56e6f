//! The threaded oracle: the recovered states that a serial order of the committed
//! transactions explains (the rules are in the docs of the threads mode), and the
//! recovery report those transactions allow.

use std::collections::HashMap;

use crate::engines::CrashModel;
use crate::harness::thread_acks::Acks;
use crate::txn::OpKind;
use crate::workloads::u64_at;

use super::shape::{
    committing, item_at, kind, kv_slots, kv_tuple, put, record_at, Shape, ACCOUNTS, LINE, RECORDS,
    SLOTS,
};

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
