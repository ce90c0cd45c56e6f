//! The pages workload: a multi-megabyte state (768 pages, so a cold load takes several
//! 1 MiB chunks) written in ranges that cross page boundaries, overlap and repeat within
//! one transaction, and change every byte they cover.
//!
//! A transaction writes, in this order:
//! 1. a *main* range of 1 to 2000 bytes, placed so that it crosses a page boundary
//!    whenever it is longer than one byte;
//! 2. an *overlapping* range: a part of the main range, written again;
//! 3. the main range once more (a *repeated* range), with new bytes;
//! 4. the 8-byte stamp at offset 0.
//!
//! Every written byte is the byte it replaces XOR an odd mask, so it always changes: an
//! undo record one byte short, or a before-image taken after the first write of a
//! repeated range, is visible. The oracle is exact: the recovered state must equal the
//! state after some number of whole transactions. It counts mismatching bytes once and
//! updates the count per transaction, so checking a prefix costs the transaction's bytes,
//! not the state's.

use std::ops::RangeInclusive;

use crate::seed::mix;
use crate::txn::{OpKind, Txn};
use crate::workloads::workload::{Workload, WorkloadKind};

const PAGE: u64 = 4096;
const PAGES: u64 = 768;
const MAX_RANGE: u64 = 2000;

/// The pages workload.
#[derive(Debug, Default)]
pub struct Pages;

/// `old` XOR an odd mask per byte drawn from `key`: every byte changes.
fn changed(old: &[u8], key: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(old.len());
    for (c, chunk) in old.chunks(8).enumerate() {
        let mask = mix(key ^ c as u64).to_le_bytes();
        out.extend(chunk.iter().zip(mask).map(|(b, m)| b ^ (m | 1)));
    }
    out
}

/// How many bytes of two equally long slices differ.
fn differing(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).map(|(x, y)| usize::from(x != y)).sum()
}

impl Workload for Pages {
    fn kind(&self) -> WorkloadKind {
        WorkloadKind::Pages
    }

    fn state_len(&self) -> u64 {
        PAGES * PAGE
    }

    fn initial(&self) -> Vec<u8> {
        (0..self.state_len() / 8)
            .flat_map(|c| mix(c).to_le_bytes())
            .collect()
    }

    fn writes(&self, seed: u64, i: u64, state: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let r = mix(seed ^ mix(i ^ 0x9a9e));
        let len = 1 + r % MAX_RANGE;
        // A page boundary (from the second on; the last ranges end before the state does)
        // and a start before it.
        let boundary = (2 + (r >> 16) % (PAGES - 4)) * PAGE;
        // At most len - 2 bytes before the boundary's last byte: at least one after it.
        let start = boundary - 1 - (r >> 32) % (len - 1).clamp(1, PAGE - 8);
        let main = start as usize..(start + len) as usize;
        // The main range as the transaction's own writes leave it (the stamp lies
        // outside it: ranges start after the first page).
        let mut region = state[main.clone()].to_vec();
        let mut w = Vec::new();
        let mut put = |region: &mut Vec<u8>, at: usize, n: usize, key: u64| {
            let rel = at - main.start;
            let bytes = changed(&region[rel..rel + n], key);
            region[rel..rel + n].copy_from_slice(&bytes);
            w.push((at as u64, bytes));
        };
        put(&mut region, main.start, main.len(), r);
        let o_len = 1 + (r >> 40) as usize % main.len();
        let o_at = main.start + (r >> 50) as usize % (main.len() - o_len + 1);
        put(&mut region, o_at, o_len, r ^ 1);
        put(&mut region, main.start, main.len(), r ^ 2);
        w.push((0, changed(&state[..8], r ^ 3)));
        w
    }

    fn check(
        &self,
        base: &[u8],
        txns: &[Txn],
        recovered: &[u8],
    ) -> Result<RangeInclusive<usize>, String> {
        if recovered.len() != base.len() {
            return Err(format!(
                "the state is {} bytes, not {}",
                recovered.len(),
                base.len()
            ));
        }
        let mut state = base.to_vec();
        let mut mismatches = differing(&state, recovered);
        let mut matches = (mismatches == 0).then_some(0..=0);
        for (j, t) in txns.iter().enumerate() {
            if matches!(t.kind, OpKind::Commit | OpKind::Durable) {
                for (off, bytes) in &t.writes {
                    let r = *off as usize..*off as usize + bytes.len();
                    let was = differing(&state[r.clone()], &recovered[r.clone()]);
                    state[r.clone()].copy_from_slice(bytes);
                    mismatches = mismatches + differing(bytes, &recovered[r]) - was;
                }
            }
            if mismatches == 0 {
                matches = Some(match matches {
                    Some(m) => *m.start()..=j + 1,
                    None => j + 1..=j + 1,
                });
            }
        }
        matches.ok_or_else(|| {
            let first = base
                .iter()
                .zip(recovered)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            format!(
                "the pages are not the state after any number of whole transactions of the \
                 cycle (up to op {}; the first byte that differs from the cycle's start is \
                 {first}, page {})",
                txns.len(),
                first as u64 / PAGE
            )
        })
    }

    fn describe(&self, txns: &[Txn]) -> String {
        let ranges: Vec<String> = txns
            .iter()
            .filter(|t| matches!(t.kind, OpKind::Commit | OpKind::Durable))
            .filter_map(|t| t.writes.first())
            .map(|(off, b)| format!("{off}+{}", b.len()))
            .collect();
        format!("transactions with main ranges {}", ranges.join(", "))
    }

    fn records(&self) -> (u64, u64, u64) {
        (0, PAGE, PAGES)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cross_pages_overlap_repeat_and_change_every_byte() {
        let p = Pages;
        let state = p.initial();
        for i in 1..200 {
            let w = p.writes(7, i, &state);
            assert_eq!(w.len(), 4);
            let (m_at, m) = (&w[0].0, &w[0].1);
            if m.len() > 1 {
                assert_ne!(m_at / PAGE, (m_at + m.len() as u64 - 1) / PAGE, "op {i}");
            }
            let (o_at, o) = (&w[1].0, &w[1].1);
            assert!(*o_at >= *m_at && o_at + o.len() as u64 <= m_at + m.len() as u64);
            assert_eq!(w[2].0, *m_at);
            assert_eq!(w[2].1.len(), m.len());
            for (k, b) in m.iter().enumerate() {
                assert_ne!(*b, state[*m_at as usize + k]);
            }
            assert!(m.len() + o.len() + m.len() + 8 <= 6_008);
        }
    }
}
