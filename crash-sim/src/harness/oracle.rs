//! The durability rules on top of a workload's oracle: which prefix of a cycle's
//! operations a recovered state may be, given what was acknowledged, what the engine
//! promised for each acknowledged operation, and the kind of crash.

use crate::engines::{CrashModel, Engine};
use crate::workloads::{plan, Workload};

/// What a check knows about the crashed cycle.
#[derive(Debug, Clone, Copy)]
pub struct Expectation<'a> {
    /// The engine (for its promises).
    pub engine: &'a dyn Engine,
    /// The workload (for its oracle).
    pub workload: &'a dyn Workload,
    /// The kind of crash.
    pub model: CrashModel,
    /// The state the cycle started from.
    pub base: &'a [u8],
    /// The cycle's seed.
    pub seed: u64,
    /// Operations in the cycle.
    pub ops: u64,
    /// The last acknowledged operation (0: none).
    pub acked: u64,
}

/// Checks `recovered`. Returns the number of operations it reflects.
///
/// - The workload's oracle must recognise it as the state after some prefix `j` of the
///   operations (nothing partial, nothing invented).
/// - `j` may not exceed the last acknowledged operation plus the one in flight.
/// - Every acknowledged operation whose durability the engine promised for this kind of
///   crash must be in it (`lost = acknowledged - present` is empty).
/// - Where the engine promises an exact state (vista after power loss: the last
///   completed checkpoint), `j` must be that operation or the durable one in flight.
///
/// # Errors
/// A one-line description of the violation.
pub fn verify(e: &Expectation<'_>, recovered: &[u8]) -> Result<u64, String> {
    let hi = (e.acked + 1).min(e.ops);
    let txns = plan(e.workload, e.base, e.seed, hi, e.ops);
    let survives = |i: u64| e.engine.survives(txns[i as usize - 1].kind, e.model);
    let required = (1..=e.acked.min(hi))
        .rev()
        .find(|&i| survives(i))
        .unwrap_or(0);
    let range = e.workload.check(e.base, &txns, recovered)?;
    let (lo, top) = (*range.start() as u64, *range.end() as u64);
    if top < required {
        return Err(format!(
            "lost acknowledged operations {}..={required} ({:?} crash; the state is after op \
             {lo}..={top} of {} acknowledged): {}",
            top + 1,
            e.model,
            e.acked,
            e.workload.describe(&txns[top as usize..required as usize])
        ));
    }
    if e.engine.exact_durable(e.model) {
        let inflight_durable = hi > e.acked && survives(hi);
        let ok = (lo..=top).contains(&required) || (inflight_durable && (lo..=top).contains(&hi));
        if !ok {
            return Err(format!(
                "after power loss the state is after op {lo}..={top}, but it must be the last \
                 completed checkpoint (op {required}){}",
                if inflight_durable {
                    format!(" or the one in flight (op {hi})")
                } else {
                    String::new()
                }
            ));
        }
    }
    Ok(top.max(required))
}
