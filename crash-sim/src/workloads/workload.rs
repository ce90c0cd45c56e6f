//! Workloads: deterministic transaction generators, each with its own oracle.
//!
//! A cycle's operations are a function of a seed and of the state they read, so the
//! worker (reading the engine) and the parent (reading its model) generate the same
//! transactions as long as the engine kept its promises.

use std::ops::RangeInclusive;

use crate::seed::mix;
use crate::txn::{OpKind, Txn};

/// Which workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadKind {
    /// Transfers between accounts.
    Bank,
    /// Jepsen-style key-value writes.
    Kv,
    /// A multi-megabyte state written in page-crossing, overlapping, repeated ranges
    /// (vista).
    Pages,
    /// Transfers between accounts in two segments, in transactions across segments
    /// (vista runs it on a `vista::Group` of two segments).
    Xseg,
}

impl WorkloadKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Bank => "bank",
            WorkloadKind::Kv => "kv",
            WorkloadKind::Pages => "pages",
            WorkloadKind::Xseg => "xseg",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Option<WorkloadKind> {
        match s {
            "bank" => Some(WorkloadKind::Bank),
            "kv" => Some(WorkloadKind::Kv),
            "pages" => Some(WorkloadKind::Pages),
            "xseg" => Some(WorkloadKind::Xseg),
            _ => None,
        }
    }
}

/// A workload and its oracle.
pub trait Workload: std::fmt::Debug {
    /// Which workload.
    fn kind(&self) -> WorkloadKind;
    /// Bytes of state.
    fn state_len(&self) -> u64;
    /// The state every campaign starts from.
    fn initial(&self) -> Vec<u8>;
    /// The writes of operation `i` (1-based) of the cycle with seed `seed`, reading the
    /// current committed `state`.
    fn writes(&self, seed: u64, i: u64, state: &[u8]) -> Vec<(u64, Vec<u8>)>;
    /// The oracle: which prefixes of `txns` (applied to `base`) the `recovered` state
    /// is, as the range of `j` such that `recovered` is the state after the first `j`
    /// operations. `Err` explains why it is no such state.
    ///
    /// # Errors
    /// A description of the violation.
    fn check(
        &self,
        base: &[u8],
        txns: &[Txn],
        recovered: &[u8],
    ) -> Result<RangeInclusive<usize>, String>;
    /// Describes what the operations `txns` wrote (for a report of lost commits).
    fn describe(&self, txns: &[Txn]) -> String;
    /// Where records lie, for wild stores: (offset of the first, size, count).
    fn records(&self) -> (u64, u64, u64);
}

/// The kind of operation `i` (1-based) of a cycle of `ops` operations: the first six
/// are one of each kind (so even short cycles and the points script reach every path),
/// then mostly commits, some aborts, some durable commits, a few checkpoints; the last
/// one closes.
pub fn op_kind(seed: u64, i: u64, ops: u64) -> OpKind {
    const FIRST: [OpKind; 6] = [
        OpKind::Commit,
        OpKind::Abort,
        OpKind::Durable,
        OpKind::Commit,
        OpKind::Checkpoint,
        OpKind::Commit,
    ];
    if i == ops {
        return OpKind::Close;
    }
    if let Some(k) = FIRST.get(i as usize - 1) {
        return *k;
    }
    match mix(seed ^ i.wrapping_mul(0xA24B_AED4_963E_E407)) % 64 {
        0..=5 => OpKind::Abort,
        6..=9 => OpKind::Durable,
        10 => OpKind::Checkpoint,
        _ => OpKind::Commit,
    }
}

/// The operations `1..=n` of a cycle, generated against a model that starts at `base`.
pub fn plan(wl: &dyn Workload, base: &[u8], seed: u64, n: u64, ops: u64) -> Vec<Txn> {
    let mut state = base.to_vec();
    let mut txns = Vec::with_capacity(n as usize);
    for i in 1..=n {
        let kind = op_kind(seed, i, ops);
        let writes = match kind {
            OpKind::Checkpoint | OpKind::Close => Vec::new(),
            _ => wl.writes(seed, i, &state),
        };
        let t = Txn { kind, writes };
        t.apply(&mut state);
        txns.push(t);
    }
    txns
}

/// Reads the little-endian `u64` at `at`.
pub fn u64_at(state: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(state[at..at + 8].try_into().expect("8 bytes"))
}
