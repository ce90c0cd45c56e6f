//! The threaded workloads: the state's layout (a record line per thread, then the
//! accounts or slots, one lock stripe each) and each thread's deterministic stream of
//! operations, as functions of the cycle seed, the thread and the op number.

use crate::seed::mix;
use crate::txn::OpKind;
use crate::workloads::{op_kind, u64_at, WorkloadKind};

/// The most threads a worker runs (each has a record line in the state).
pub const MAX_THREADS: u32 = 64;
/// One lock stripe (rio-cache locks by 64-byte line): every record, account and slot
/// has its own, so two transactions conflict only where they touch the same item.
pub(super) const LINE: u64 = 64;
pub(super) const RECORDS: u64 = MAX_THREADS as u64 * LINE;
pub(super) const ACCOUNTS: u64 = 16;
const OPENING_BALANCE: u64 = 1000;
pub(super) const SLOTS: u64 = 64;

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
            WorkloadKind::Pages | WorkloadKind::Xseg => None,
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
    pub(super) fn writes(self, seed: u64, t: u32, i: u64) -> u64 {
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

pub(super) fn record_at(t: u32) -> u64 {
    LINE * u64::from(t)
}

pub(super) fn item_at(k: u64) -> u64 {
    RECORDS + LINE * k
}

pub(super) fn put(state: &mut [u8], at: u64, words: &[u64]) {
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

pub(super) fn committing(k: OpKind) -> bool {
    matches!(k, OpKind::Commit | OpKind::Durable)
}

pub(super) struct Transfer {
    pub(super) from: u64,
    pub(super) to: u64,
    pub(super) amount: u64,
}

pub(super) fn transfer(seed: u64, t: u32, i: u64) -> Transfer {
    let r = mix(thread_seed(seed, t) ^ mix(i));
    let from = r % ACCOUNTS;
    Transfer {
        from,
        to: (from + 1 + (r >> 8) % (ACCOUNTS - 1)) % ACCOUNTS,
        amount: 1 + (r >> 16) % 100,
    }
}

/// The 1-4 distinct slots op `i` of thread `t` writes, in the order it writes them.
pub(super) fn kv_slots(seed: u64, t: u32, i: u64) -> Vec<u64> {
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
pub(super) fn kv_tuple(seed: u64, t: u32, i: u64, slot: u64, version: u64) -> [u64; 4] {
    let value = mix(thread_seed(seed, t) ^ mix(i) ^ slot.rotate_left(40));
    [version, u64::from(t) + 1, i, value]
}
