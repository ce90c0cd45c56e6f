//! PMDK's libpmemobj with the locking a user must add: libpmemobj gives each thread its own
//! undo lane but no isolation, so two transactions that change one balance at once lose an
//! update. `pmdk-global` runs every transaction under one mutex; `pmdk-object` takes a mutex
//! per record (account, teller, branch, and the history slot), in record order, before the
//! transaction begins and releases them after it ends ([`crate::sys::pmemobj::LockedPool`]).
//! The pool is on `/dev/shm` with `PMEM_IS_PMEM_FORCE=1`, as in the single-thread suite
//! ([`crate::pmdk`]).

use std::path::PathBuf;

use anyhow::{Context, Result};

use super::{
    add, history_offset, record_offset, Bank, Op, Teller, Totals, FLAT_LEN, HISTORY_LEN, RECORD,
    RECORDS,
};
use crate::sys::pmemobj::{force_pmem_mode, LockedPool, Pool};

/// How transactions are isolated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// One mutex for the whole pool.
    Global,
    /// A mutex per [`RECORD`] bytes: one per balance record; a history slot shares its
    /// stripe with one neighbour of the same thread's ring.
    PerRecord,
}

/// A pool holding the bank in its root object (the flat layout of [`super`]).
#[derive(Debug)]
pub struct PmdkBank {
    pool: LockedPool,
    path: PathBuf,
}

impl PmdkBank {
    /// Creates a fresh pool on `/dev/shm`.
    ///
    /// # Errors
    /// libpmemobj's error.
    pub fn open(locking: Locking) -> Result<PmdkBank> {
        force_pmem_mode();
        let len = usize::try_from(FLAT_LEN)?;
        let path = PathBuf::from(format!(
            "/dev/shm/vista-threads-{}-{locking:?}.pmemobj",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        // Room for the root object, the allocator's metadata and the lanes' undo logs.
        let pool = Pool::create(&path, len + len / 2 + (64 << 20), len)
            .with_context(|| format!("creating {}", path.display()))?;
        let stripe = match locking {
            Locking::Global => len,
            Locking::PerRecord => usize::try_from(RECORD)?,
        };
        Ok(PmdkBank {
            pool: LockedPool::new(pool, stripe),
            path,
        })
    }
}

impl Drop for PmdkBank {
    fn drop(&mut self) {
        // Unlinking the open pool's file is fine on Linux; a failure leaves a file in
        // /dev/shm and is ignored.
        let _ = std::fs::remove_file(&self.path);
    }
}

struct PmdkTeller<'a>(&'a LockedPool);

fn at(off: u64) -> usize {
    usize::try_from(off).expect("offsets fit in usize")
}

impl Teller for PmdkTeller<'_> {
    fn transfer(&mut self, op: &Op) -> Result<u64> {
        let records = op
            .records()
            .map(|id| at(record_offset(id))..at(record_offset(id) + 8));
        let history = at(history_offset(op.slot));
        let ranges = [
            records[0].clone(),
            records[1].clone(),
            records[2].clone(),
            history..history + at(HISTORY_LEN),
        ];
        self.0.transaction(&ranges, |tx| {
            for r in &records {
                let mut balance = [0u8; 8];
                tx.read(r.start, &mut balance)?;
                add(&mut balance, op.delta);
                tx.write(r.start, &balance)?;
            }
            tx.write(history, &op.history)
        })?;
        Ok(0)
    }
}

impl Bank for PmdkBank {
    fn teller(&self, _thread: u64) -> Result<Box<dyn Teller + '_>> {
        Ok(Box::new(PmdkTeller(&self.pool)))
    }

    fn totals(&self) -> Result<Totals> {
        let mut t = Totals::default();
        let mut b = [0u8; 8];
        for id in 0..RECORDS {
            self.pool.read(at(record_offset(id)), &mut b)?;
            t.add(id, i64::from_le_bytes(b));
        }
        Ok(t)
    }
}
