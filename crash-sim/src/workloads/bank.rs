//! The bank: transfers between accounts. The total never changes, and each transfer is
//! all or nothing: the recovered state must be the state after some number of whole
//! transfers.
//!
//! Layout: a `u64` count of committed transfers, then `ACCOUNTS` balances (`u64`).
//! A transfer writes the debited account, the credited account and the count, in that
//! order (three undo records in vista, three ranges in lrvm).

use std::ops::RangeInclusive;

use crate::seed::mix;
use crate::txn::Txn;
use crate::workloads::workload::{u64_at, Workload, WorkloadKind};

const ACCOUNTS: u64 = 16;
const OPENING_BALANCE: u64 = 1000;

/// The bank workload.
#[derive(Debug, Default)]
pub struct Bank;

fn total(state: &[u8]) -> u64 {
    (0..ACCOUNTS).fold(0u64, |t, a| {
        t.wrapping_add(u64_at(state, 8 + 8 * a as usize))
    })
}

impl Workload for Bank {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Bank
    }

    fn state_len(&self) -> u64 {
        8 + 8 * ACCOUNTS
    }

    fn initial(&self) -> Vec<u8> {
        let mut s = vec![0u8; self.state_len() as usize];
        for a in 0..ACCOUNTS as usize {
            s[8 + 8 * a..16 + 8 * a].copy_from_slice(&OPENING_BALANCE.to_le_bytes());
        }
        s
    }

    fn writes(&self, seed: u64, i: u64, state: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let r = mix(seed ^ mix(i));
        let bal = |a: u64| u64_at(state, 8 + 8 * a as usize);
        // The first account with money, from a random start (there is always one unless
        // the state is corrupt; then move nothing from account 0).
        let start = r % ACCOUNTS;
        let from = (0..ACCOUNTS)
            .map(|k| (start + k) % ACCOUNTS)
            .find(|&a| bal(a) > 0)
            .unwrap_or(0);
        let to = (from + 1 + (r >> 8) % (ACCOUNTS - 1)) % ACCOUNTS;
        let amount = if bal(from) == 0 {
            0
        } else {
            1 + (r >> 16) % bal(from).min(100)
        };
        let count = u64_at(state, 0).wrapping_add(1);
        vec![
            (
                8 + 8 * from,
                bal(from).wrapping_sub(amount).to_le_bytes().to_vec(),
            ),
            (
                8 + 8 * to,
                bal(to).wrapping_add(amount).to_le_bytes().to_vec(),
            ),
            (0, count.to_le_bytes().to_vec()),
        ]
    }

    fn check(
        &self,
        base: &[u8],
        txns: &[Txn],
        recovered: &[u8],
    ) -> Result<RangeInclusive<usize>, String> {
        let expected_total = total(base);
        let got_total = total(recovered);
        if got_total != expected_total {
            return Err(format!(
                "bank total is {got_total}, not {expected_total}: a transfer was applied in part \
                 (transfer count {})",
                u64_at(recovered, 0)
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
                "the accounts (transfer count {}, total intact) are not the state after any \
                 number of whole transfers from the cycle's start (count {}) to op {}",
                u64_at(recovered, 0),
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
        format!("transfers #{}", counts.join(", #"))
    }

    fn records(&self) -> (u64, u64, u64) {
        (8, 8, ACCOUNTS)
    }
}
