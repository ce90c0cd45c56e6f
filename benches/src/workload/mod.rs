//! The workloads of Lowell and Chen's evaluation, written against [`Engine`].
//!
//! - [`synthetic`]: one write of N bytes at a random offset per transaction (the paper's
//!   overhead-versus-size figure).
//! - [`debit_credit`]: TPC-B's shape (account, teller, branch, history append).
//! - [`order_entry`]: a TPC-C-like New-Order/Payment mix on fixed-size record tables.
//! - [`sps`]: the persistent transactional memory literature's SPS (S random swaps in an
//!   array of `u64` per transaction; the array's sum checked at the end).
//!
//! A workload owns its random generator (fixed seed, so every engine sees the same sequence)
//! and a model of what it has committed, so [`Workload::check`] can verify afterwards that
//! the engine really holds the data.

pub mod debit_credit;
pub mod order_entry;
pub mod sps;
pub mod synthetic;

use anyhow::Result;

use crate::engine::{Engine, Layout};

/// One measured case: a segment layout, an untimed load, a timed transaction, and a check.
pub trait Workload {
    /// The case's name in reports (`synthetic 8B`, `debit-credit`).
    fn name(&self) -> String;

    /// Bytes written per transaction, for the overhead-versus-size plot; `None` for the
    /// table workloads.
    fn txn_bytes(&self) -> Option<usize> {
        None
    }

    /// The tables of the segment this case runs on.
    fn layout(&self) -> Layout;

    /// Puts the initial table contents in place (not timed). The segment starts zeroed.
    ///
    /// # Errors
    /// The engine's error.
    fn load(&mut self, engine: &mut dyn Engine) -> Result<()>;

    /// Runs one transaction.
    ///
    /// # Errors
    /// The engine's error.
    fn run_one(&mut self, engine: &mut dyn Engine) -> Result<()>;

    /// Transactions committed so far.
    fn committed(&self) -> u64;

    /// Reads the data back and checks it against what was committed.
    ///
    /// # Errors
    /// The first mismatch found, or the engine's error.
    fn check(&mut self, engine: &mut dyn Engine) -> Result<()>;
}

/// The workload families, in report order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Family {
    /// [`synthetic`].
    Synthetic,
    /// [`debit_credit`].
    DebitCredit,
    /// [`order_entry`].
    OrderEntry,
    /// [`sps`].
    Sps,
}

impl Family {
    /// All families.
    pub const ALL: [Family; 4] = [
        Family::Synthetic,
        Family::DebitCredit,
        Family::OrderEntry,
        Family::Sps,
    ];

    /// The family's name (`synthetic`, `debit-credit`, `order-entry`, `sps`).
    pub fn name(self) -> &'static str {
        match self {
            Family::Synthetic => "synthetic",
            Family::DebitCredit => "debit-credit",
            Family::OrderEntry => "order-entry",
            Family::Sps => "sps",
        }
    }

    /// The cases of this family for `sizes` (synthetic only) and `scale`.
    pub fn cases(self, sizes: &[usize], segment_len: u64, scale: Scale) -> Vec<Box<dyn Workload>> {
        match self {
            Family::Synthetic => sizes
                .iter()
                .map(|&n| Box::new(synthetic::Synthetic::new(segment_len, n)) as Box<dyn Workload>)
                .collect(),
            Family::DebitCredit => vec![Box::new(debit_credit::DebitCredit::new(scale))],
            Family::OrderEntry => vec![Box::new(order_entry::OrderEntry::new(scale))],
            Family::Sps => sps::Sps::cases(scale)
                .into_iter()
                .map(|w| Box::new(w) as Box<dyn Workload>)
                .collect(),
        }
    }
}

/// Table sizes of the table workloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Scale {
    /// The benchmark's sizes (100,000 accounts; 100,000 stock items; SPS's 10,000,000
    /// entries).
    Standard,
    /// About a hundredth, for tests.
    Tiny,
}

/// Reads the little-endian `u64` at byte `at` of `b`.
pub(crate) fn get_u64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Writes `v` little-endian at byte `at` of `b`.
pub(crate) fn put_u64(b: &mut [u8], at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

/// Fills table `table` of `layout` record by record with `init(record, bytes)`, writing
/// whole records (so record engines store them without a read-modify-write) in
/// transactions of four ~64 KiB writes: 256 KiB fits vista's default 1 MiB undo log and
/// leaves LRVM's 4 MiB log room to truncate.
///
/// # Errors
/// The engine's error.
pub(crate) fn load_table(
    engine: &mut dyn Engine,
    layout: &Layout,
    table: usize,
    mut init: impl FnMut(u64, &mut [u8]),
) -> Result<()> {
    let t = &layout.tables()[table];
    let per_chunk = ((64 << 10) / t.record_len).max(1) as u64;
    let per_txn = 4 * per_chunk;
    let mut buf = vec![0u8; per_chunk as usize * t.record_len];
    let mut first = 0;
    while first < t.records {
        let end = (first + per_txn).min(t.records);
        engine.transact(&mut |tx| {
            let mut r = first;
            while r < end {
                let n = per_chunk.min(end - r);
                let chunk = &mut buf[..n as usize * t.record_len];
                for (i, rec) in chunk.chunks_exact_mut(t.record_len).enumerate() {
                    init(r + i as u64, rec);
                }
                tx.write(layout.offset_of(table, r), chunk)?;
                r += n;
            }
            Ok(())
        })?;
        first = end;
    }
    Ok(())
}
