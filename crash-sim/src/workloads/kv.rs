//! Jepsen-style key-value writes. Every transaction writes 1 to 4 fresh keys (the next
//! numbers of a counter kept in the state) with values derived from the cycle's seed;
//! key `k` lives in slot `k % SLOTS`, so newer keys overwrite older ones. The worker
//! reports each commit to the parent before it starts the next transaction.
//!
//! The oracle works on what is present, not on byte images:
//! - nothing that was never written (or written only by an aborted transaction) may
//!   appear;
//! - a transaction is visible entirely or not at all (no partial transaction);
//! - the visible transactions are a prefix of the ones attempted (no holes);
//! - `lost = acknowledged - present` must be empty for every commit whose durability
//!   the engine promised (checked by the caller with the prefix this returns).
//!
//! Layout: `next_key: u64`, then `SLOTS` slots of `(key: u64, value: u64)`.

use std::ops::RangeInclusive;

use crate::seed::mix;
use crate::txn::{OpKind, Txn};
use crate::workloads::workload::{u64_at, Workload, WorkloadKind};

const SLOTS: u64 = 255;
const SLOT: u64 = 16;

/// The kv workload.
#[derive(Debug, Default)]
pub struct Kv;

fn slot_of(off: u64) -> Option<usize> {
    (off >= 8).then(|| ((off - 8) / SLOT) as usize)
}

fn slot_bytes(state: &[u8], s: usize) -> &[u8] {
    let at = 8 + s * SLOT as usize;
    &state[at..at + SLOT as usize]
}

fn key_of(bytes: &[u8]) -> u64 {
    u64_at(bytes, 0)
}

impl Workload for Kv {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Kv
    }

    fn state_len(&self) -> u64 {
        8 + SLOTS * SLOT
    }

    fn initial(&self) -> Vec<u8> {
        let mut s = vec![0u8; self.state_len() as usize];
        s[..8].copy_from_slice(&1u64.to_le_bytes());
        s
    }

    fn writes(&self, seed: u64, i: u64, state: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let next = u64_at(state, 0);
        let n = 1 + mix(seed ^ mix(i)) % 4;
        let mut w: Vec<(u64, Vec<u8>)> = (next..next + n)
            .map(|k| {
                let mut b = k.to_le_bytes().to_vec();
                b.extend_from_slice(&mix(seed ^ k.rotate_left(17)).to_le_bytes());
                (8 + (k % SLOTS) * SLOT, b)
            })
            .collect();
        w.push((0, (next + n).to_le_bytes().to_vec()));
        w
    }

    fn check(
        &self,
        base: &[u8],
        txns: &[Txn],
        recovered: &[u8],
    ) -> Result<RangeInclusive<usize>, String> {
        let committed = |t: &Txn| matches!(t.kind, OpKind::Commit | OpKind::Durable);
        // Where each slot's content came from: 0 = the cycle's start, i = operation i.
        let mut origin = vec![0usize; SLOTS as usize];
        for (s, slot_origin) in origin.iter_mut().enumerate() {
            let got = slot_bytes(recovered, s);
            if got == slot_bytes(base, s) {
                continue;
            }
            let found = txns.iter().enumerate().rev().find(|(_, t)| {
                committed(t)
                    && t.writes
                        .iter()
                        .any(|(off, b)| slot_of(*off) == Some(s) && b[..] == got[..])
            });
            match found {
                Some((i, _)) => *slot_origin = i + 1,
                None => {
                    return Err(format!(
                        "key {} (slot {s}, value {:#x}) is present but was never written by a \
                         committed transaction",
                        key_of(got),
                        u64_at(got, 8)
                    ))
                }
            }
        }
        // Each transaction: reached (all its slots hold it or something newer), untouched
        // (all hold something older), or partial.
        let mut reached_last = 0usize;
        let mut first_unreached: Option<usize> = None;
        for (i, t) in txns.iter().enumerate().filter(|(_, t)| committed(t)) {
            let op = i + 1;
            let slots: Vec<usize> = t.writes.iter().filter_map(|(o, _)| slot_of(*o)).collect();
            let reached = slots.iter().filter(|&&s| origin[s] >= op).count();
            if reached != 0 && reached != slots.len() {
                let keys: Vec<u64> = t
                    .writes
                    .iter()
                    .filter(|(o, _)| *o >= 8)
                    .map(|(_, b)| key_of(b))
                    .collect();
                return Err(format!(
                    "partial transaction (op {op}): {reached} of its keys {keys:?} present"
                ));
            }
            if reached == 0 {
                first_unreached.get_or_insert(op);
            } else {
                if let Some(hole) = first_unreached {
                    return Err(format!(
                        "op {op} is present but the earlier op {hole} is lost: not a prefix"
                    ));
                }
                reached_last = op;
            }
        }
        // The counter must agree with the prefix.
        let mut model = base.to_vec();
        for t in &txns[..reached_last] {
            t.apply(&mut model);
        }
        if recovered[..8] != model[..8] {
            return Err(format!(
                "next_key is {} but the present transactions (up to op {reached_last}) make it {}",
                u64_at(recovered, 0),
                u64_at(&model, 0)
            ));
        }
        if model != recovered {
            return Err(format!(
                "the state is not the state after op {reached_last} although every key agrees"
            ));
        }
        // Operations after the last present one that change nothing extend the range.
        let end = txns[reached_last..]
            .iter()
            .position(committed)
            .map_or(txns.len(), |p| reached_last + p);
        Ok(reached_last..=end)
    }

    fn describe(&self, txns: &[Txn]) -> String {
        let keys: Vec<u64> = txns
            .iter()
            .filter(|t| matches!(t.kind, OpKind::Commit | OpKind::Durable))
            .flat_map(|t| t.writes.iter().filter(|(o, _)| *o >= 8))
            .map(|(_, b)| key_of(b))
            .collect();
        format!("keys {keys:?}")
    }

    fn records(&self) -> (u64, u64, u64) {
        (8, SLOT, SLOTS)
    }
}
