//! Transfers across segments (`--workload xseg`): accounts live in two vista segments,
//! and every transfer moves money from an account of one to an account of the other,
//! in one transaction of a `vista::Group`. The total across both segments never
//! changes, and each transfer is all or nothing in both: the recovered pair of segments
//! must be the state after some number of whole transfers.
//!
//! Layout: two halves of [`HALF`] bytes, one per segment (the vista engine puts bytes
//! `[0, HALF)` in the first segment and `[HALF, 2 HALF)` in the second). Each half holds
//! a `u64` count of committed transfers, then `ACCOUNTS` balances. A transfer writes the
//! debited account, the credited account and both counts.

use std::ops::RangeInclusive;

use crate::seed::mix;
use crate::txn::Txn;
use crate::workloads::workload::{u64_at, Workload, WorkloadKind};

/// Bytes of each segment's half of the state.
pub const HALF: u64 = 4096;
const ACCOUNTS: u64 = 8;
const OPENING_BALANCE: u64 = 1000;

/// The two-segment bank.
#[derive(Debug, Default)]
pub struct Xseg;

/// Where account `a` of segment `m` lies in the state.
fn at(m: u64, a: u64) -> u64 {
    m * HALF + 8 + 8 * a
}

fn total(state: &[u8]) -> u64 {
    (0..2).fold(0u64, |t, m| {
        (0..ACCOUNTS).fold(t, |t, a| t.wrapping_add(u64_at(state, at(m, a) as usize)))
    })
}

impl Workload for Xseg {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Xseg
    }

    fn state_len(&self) -> u64 {
        2 * HALF
    }

    fn initial(&self) -> Vec<u8> {
        let mut s = vec![0u8; self.state_len() as usize];
        for m in 0..2 {
            for a in 0..ACCOUNTS {
                let o = at(m, a) as usize;
                s[o..o + 8].copy_from_slice(&OPENING_BALANCE.to_le_bytes());
            }
        }
        s
    }

    fn writes(&self, seed: u64, i: u64, state: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let r = mix(seed ^ mix(i) ^ 0x5e9);
        let bal = |m: u64, a: u64| u64_at(state, at(m, a) as usize);
        let from_m = r & 1;
        let to_m = 1 - from_m;
        let start = (r >> 1) % ACCOUNTS;
        let from = (0..ACCOUNTS)
            .map(|k| (start + k) % ACCOUNTS)
            .find(|&a| bal(from_m, a) > 0)
            .unwrap_or(0);
        let to = (r >> 8) % ACCOUNTS;
        let amount = if bal(from_m, from) == 0 {
            0
        } else {
            1 + (r >> 16) % bal(from_m, from).min(100)
        };
        let count = |m: u64| u64_at(state, (m * HALF) as usize).wrapping_add(1);
        vec![
            (
                at(from_m, from),
                bal(from_m, from)
                    .wrapping_sub(amount)
                    .to_le_bytes()
                    .to_vec(),
            ),
            (
                at(to_m, to),
                bal(to_m, to).wrapping_add(amount).to_le_bytes().to_vec(),
            ),
            (0, count(0).to_le_bytes().to_vec()),
            (HALF, count(1).to_le_bytes().to_vec()),
        ]
    }

    fn check(
        &self,
        base: &[u8],
        txns: &[Txn],
        recovered: &[u8],
    ) -> Result<RangeInclusive<usize>, String> {
        let counts = (u64_at(recovered, 0), u64_at(recovered, HALF as usize));
        let expected_total = total(base);
        let got_total = total(recovered);
        if got_total != expected_total {
            return Err(format!(
                "total across both segments is {got_total}, not {expected_total}: a transfer \
                 was applied in one segment only (transfer counts {} and {})",
                counts.0, counts.1
            ));
        }
        if counts.0 != counts.1 {
            return Err(format!(
                "the segments disagree on the transfers committed: {} in the first, {} in \
                 the second",
                counts.0, counts.1
            ));
        }
        let mut state = base.to_vec();
        let mut matches = (state == recovered).then_some(0..=0);
        for (j, t) in txns.iter().enumerate() {
            t.apply(&mut state);
            if state == recovered {
                matches = Some(match matches {
                    Some(m) => *m.start()..=j + 1,
                    None => j + 1..=j + 1,
                });
            }
        }
        matches.ok_or_else(|| {
            format!(
                "the segments (transfer count {}, total intact) are not the state after any \
                 number of whole transfers from the cycle's start (count {}) to op {}",
                counts.0,
                u64_at(base, 0),
                txns.len()
            )
        })
    }

    fn describe(&self, txns: &[Txn]) -> String {
        let counts: Vec<String> = txns
            .iter()
            .filter(|t| !t.writes.is_empty() && t.kind != crate::txn::OpKind::Abort)
            .map(|t| {
                let c = &t.writes[2].1;
                u64::from_le_bytes(c[..8].try_into().expect("8 bytes")).to_string()
            })
            .collect();
        format!("cross-segment transfers #{}", counts.join(", #"))
    }

    fn records(&self) -> (u64, u64, u64) {
        (8, 8, ACCOUNTS)
    }
}
