//! SPS, the standard microbenchmark of the persistent transactional memory literature
//! (Correia, Ramalhete and Felber's Romulus, OneFile, Trinity and Quadra papers): an
//! array of `u64` entries, entry `i` holding `i` at the start; each transaction swaps
//! S random pairs of entries. Swaps only permute the array, so its sum stays
//! `n (n - 1) / 2`: [`Workload::check`] reads the whole array back and fails if the sum
//! changed (or, stricter, if the entries are no longer a permutation of `0..n`).
//!
//! Sizes: [`Scale::Standard`] is the literature's 10,000,000 entries (80 MB);
//! [`Scale::Tiny`] 10,000. The array is stored as [`ENTRIES_PER_RECORD`] entries per
//! record (800 bytes), so record engines (LMDB, SQLite) hold 100,000 records at the
//! standard size rather than ten million keys (which would take them a minute to load);
//! each swap then costs them a read-modify-write of two 800-byte records, as it would a
//! user who keeps an array in such a store. Segment engines see a flat array.
//!
//! A 64-byte header in front of the array records that it was loaded, so the four cases
//! of the family (S = 1, 4, 16, 64), which the suite runs one after the other on one
//! engine, load the 80 MB once.

use anyhow::{ensure, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{get_u64, load_table, put_u64, Scale, Workload};
use crate::engine::{Engine, Layout, Table};

/// Entries of the literature's array.
pub const STANDARD_ENTRIES: u64 = 10_000_000;
/// Entries of the array at [`Scale::Tiny`].
pub const TINY_ENTRIES: u64 = 10_000;
/// Swaps per transaction the suite runs.
pub const SWAPS: [u64; 4] = [1, 4, 16, 64];
/// Array entries in one record of the layout (for record engines).
pub const ENTRIES_PER_RECORD: u64 = 100;

const HEADER: usize = 0;
const ARRAY: usize = 1;
/// Written into the header once the array holds `0..n`.
const LOADED: u64 = 0x5350_535f_6c6f_6164;
/// Entries read per transaction by the check (64 KiB).
const CHECK_CHUNK: u64 = 8192;

/// The SPS workload for one number of swaps per transaction.
#[derive(Debug)]
pub struct Sps {
    entries: u64,
    swaps: u64,
    layout: Layout,
    rng: SmallRng,
    pairs: Vec<(u64, u64)>,
    committed: u64,
}

impl Sps {
    /// `swaps` swaps per transaction on an array of `entries` entries (a multiple of
    /// [`ENTRIES_PER_RECORD`]).
    pub fn new(entries: u64, swaps: u64) -> Sps {
        assert!(entries > 0 && entries.is_multiple_of(ENTRIES_PER_RECORD) && swaps > 0);
        let layout = Layout::new(vec![
            Table {
                name: "header",
                record_len: 64,
                records: 1,
            },
            Table {
                name: "array",
                record_len: (ENTRIES_PER_RECORD * 8) as usize,
                records: entries / ENTRIES_PER_RECORD,
            },
        ]);
        Sps {
            entries,
            swaps,
            layout,
            rng: SmallRng::seed_from_u64(0x5e5_0000 ^ swaps),
            pairs: Vec::with_capacity(swaps as usize),
            committed: 0,
        }
    }

    /// The suite's cases at `scale`: one per entry of [`SWAPS`].
    pub fn cases(scale: Scale) -> Vec<Sps> {
        let entries = match scale {
            Scale::Standard => STANDARD_ENTRIES,
            Scale::Tiny => TINY_ENTRIES,
        };
        SWAPS.iter().map(|&s| Sps::new(entries, s)).collect()
    }

    /// Byte offset of entry `i`.
    pub fn offset(&self, i: u64) -> u64 {
        self.layout.offset_of(ARRAY, 0) + i * 8
    }
}

impl Workload for Sps {
    fn name(&self) -> String {
        format!("sps {}", self.swaps)
    }

    fn layout(&self) -> Layout {
        self.layout.clone()
    }

    fn load(&mut self, engine: &mut dyn Engine) -> Result<()> {
        let mut head = [0u8; 16];
        let at = self.layout.offset_of(HEADER, 0);
        engine.transact(&mut |tx| tx.read(at, &mut head))?;
        if get_u64(&head, 0) == LOADED && get_u64(&head, 8) == self.entries {
            return Ok(());
        }
        load_table(engine, &self.layout, ARRAY, |r, rec| {
            for (j, e) in rec.chunks_exact_mut(8).enumerate() {
                e.copy_from_slice(&(r * ENTRIES_PER_RECORD + j as u64).to_le_bytes());
            }
        })?;
        put_u64(&mut head, 0, LOADED);
        put_u64(&mut head, 8, self.entries);
        engine.transact(&mut |tx| tx.write(at, &head))
    }

    fn run_one(&mut self, engine: &mut dyn Engine) -> Result<()> {
        self.pairs.clear();
        for _ in 0..self.swaps {
            let a = self.rng.gen_range(0..self.entries);
            let b = self.rng.gen_range(0..self.entries);
            self.pairs.push((self.offset(a), self.offset(b)));
        }
        let pairs = &self.pairs;
        engine.transact(&mut |tx| {
            for &(a, b) in pairs {
                let va = tx.read_u64(a)?;
                let vb = tx.read_u64(b)?;
                tx.write_u64(a, vb)?;
                tx.write_u64(b, va)?;
            }
            Ok(())
        })?;
        self.committed += 1;
        Ok(())
    }

    fn committed(&self) -> u64 {
        self.committed
    }

    fn check(&mut self, engine: &mut dyn Engine) -> Result<()> {
        let mut check = SumCheck::new(self.entries);
        let mut buf = vec![0u8; (CHECK_CHUNK * 8) as usize];
        let mut first = 0;
        while first < self.entries {
            let n = CHECK_CHUNK.min(self.entries - first);
            let chunk = &mut buf[..(n * 8) as usize];
            let at = self.offset(first);
            engine.transact(&mut |tx| tx.read(at, chunk))?;
            check.add_bytes(chunk);
            first += n;
        }
        check.finish()
    }
}

/// The end-of-run check of an SPS array: fed every entry once, in any order, it
/// checks that they sum to `n (n - 1) / 2` and form a permutation of `0..n`.
#[derive(Debug)]
pub struct SumCheck {
    entries: u64,
    sum: u128,
    seen: Vec<u64>,
    /// The first entry out of range or seen twice.
    bad: Option<(u64, u64)>,
    count: u64,
}

impl SumCheck {
    /// A check of an array of `entries` entries.
    pub fn new(entries: u64) -> SumCheck {
        SumCheck {
            entries,
            sum: 0,
            seen: vec![0; entries.div_ceil(64) as usize],
            bad: None,
            count: 0,
        }
    }

    /// Adds one entry.
    pub fn add(&mut self, value: u64) {
        let at = self.count;
        self.count += 1;
        self.sum += u128::from(value);
        if value >= self.entries {
            self.bad.get_or_insert((at, value));
            return;
        }
        let (word, bit) = ((value / 64) as usize, 1u64 << (value % 64));
        if self.seen[word] & bit != 0 {
            self.bad.get_or_insert((at, value));
        }
        self.seen[word] |= bit;
    }

    /// Adds the little-endian entries of `bytes` (a multiple of 8 bytes).
    pub fn add_bytes(&mut self, bytes: &[u8]) {
        for e in bytes.chunks_exact(8) {
            self.add(u64::from_le_bytes(e.try_into().expect("8 bytes")));
        }
    }

    /// The verdict.
    ///
    /// # Errors
    /// The sum changed, an entry was out of range or seen twice, or the count is wrong.
    pub fn finish(&self) -> Result<()> {
        let n = u128::from(self.entries);
        let want = n * n.saturating_sub(1) / 2;
        ensure!(
            self.count == self.entries,
            "SPS check read {} entries, the array has {}",
            self.count,
            self.entries
        );
        ensure!(
            self.sum == want,
            "SPS array sum changed: {} instead of {want}",
            self.sum
        );
        if let Some((at, value)) = self.bad {
            anyhow::bail!("SPS array is no longer a permutation: entry {at} holds {value}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_sees_a_changed_sum_and_a_duplicate() {
        let check = |entries: [u64; 4]| {
            let mut c = SumCheck::new(4);
            for v in entries {
                c.add(v);
            }
            c.finish()
        };
        check([2, 0, 3, 1]).unwrap();
        let err = check([2, 0, 3, 3]).unwrap_err().to_string();
        assert!(err.contains("sum changed"), "{err}");
        // Same sum, not a permutation: 1 + 1 + 2 + 2 = 0 + 1 + 2 + 3.
        let err = check([1, 1, 2, 2]).unwrap_err().to_string();
        assert!(err.contains("permutation"), "{err}");
    }

    #[test]
    fn a_lost_swap_fails_the_run() {
        let mut w = Sps::new(1000, 4);
        let mut e = crate::floor::Floor::open(&w.layout(), crate::floor::Guard::None).unwrap();
        w.load(&mut e).unwrap();
        for _ in 0..50 {
            w.run_one(&mut e).unwrap();
        }
        w.check(&mut e).unwrap();
        // A second case on the same engine finds the array loaded and keeps it.
        let mut again = Sps::new(1000, 16);
        again.load(&mut e).unwrap();
        again.run_one(&mut e).unwrap();
        again.check(&mut e).unwrap();
        // Half a swap: entry 3's value copied over entry 5's, entry 5's value lost.
        let (from, to) = (w.offset(3), w.offset(5));
        e.transact(&mut |tx| {
            let v = tx.read_u64(from)?;
            tx.write_u64(to, v)
        })
        .unwrap();
        assert!(w.check(&mut e).is_err());
    }
}
