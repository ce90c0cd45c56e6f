//! PMDK's libpmemobj: undo-logged transactions on a pool file (here on `/dev/shm`).
//!
//! The segment is the pool's root object. A write is `pmemobj_tx_add_range` on the root
//! (libpmemobj snapshots the range into its undo log and flushes it) followed by a plain copy;
//! commit is `pmemobj_tx_commit` + `pmemobj_tx_end`, which flushes the written ranges and
//! discards the log. `/dev/shm` is DRAM, not PMEM, so the adapter sets
//! `PMEM_IS_PMEM_FORCE=1` (unless the user set it): libpmem then persists with cache-line
//! write-backs as on real persistent memory instead of `msync`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

use crate::engine::{Body, Engine, Layout, Txn};
use crate::sys::pmemobj::{force_pmem_mode, Pool};

/// A libpmemobj pool whose root object is the segment.
#[derive(Debug)]
pub struct Pmdk {
    pool: Pool,
    path: PathBuf,
}

impl Pmdk {
    /// Creates a fresh pool on `/dev/shm` with a zeroed root object of the layout's length.
    ///
    /// # Errors
    /// libpmemobj's error.
    pub fn open(layout: &Layout) -> Result<Pmdk> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        force_pmem_mode();
        let len = usize::try_from(layout.len())?;
        let path = PathBuf::from(format!(
            "/dev/shm/vista-bench-{}-{}.pmemobj",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        // Room for the root object, the allocator's metadata, and undo logs.
        let pool_size = len + len / 2 + (64 << 20);
        let pool = Pool::create(&path, pool_size, len)
            .with_context(|| format!("creating {}", path.display()))?;
        Ok(Pmdk { pool, path })
    }
}

impl Drop for Pmdk {
    fn drop(&mut self) {
        // The pool is closed after this body runs; unlinking an open file is fine on Linux.
        // A failure leaves a file in /dev/shm and is ignored.
        let _ = std::fs::remove_file(&self.path);
    }
}

struct PmdkTxn<'a>(&'a mut Pool);

impl Txn for PmdkTxn<'_> {
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(off)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| self.0.root().get(start..end));
        buf.copy_from_slice(src.context("read outside the segment")?);
        Ok(())
    }

    fn write(&mut self, off: u64, data: &[u8]) -> Result<()> {
        let start = usize::try_from(off)?;
        anyhow::ensure!(
            start
                .checked_add(data.len())
                .is_some_and(|end| end <= self.0.len()),
            "write outside the segment"
        );
        Ok(self.0.tx_write(start, data)?)
    }
}

impl Engine for Pmdk {
    fn transact(&mut self, body: &mut Body<'_>) -> Result<()> {
        self.pool.tx_begin()?;
        match body(&mut PmdkTxn(&mut self.pool)) {
            Ok(()) => Ok(self.pool.tx_commit()?),
            Err(e) => {
                self.pool.tx_abort();
                Err(e)
            }
        }
    }
}
