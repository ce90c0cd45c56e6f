//! The floor: the least work any undo-logging engine on persistent memory must do.
//!
//! A write appends the range's before-image (with its offset and length) to a log area,
//! then copies the new bytes into the segment; commit is one store (the log length back to
//! zero). Nothing is flushed: like Rio, the memory is assumed to survive. A failed body is
//! rolled back from the log, newest record first. Guards add the cost of protecting the
//! segment against wild stores around each write:
//!
//! - [`Guard::None`]: no protection.
//! - [`Guard::Mprotect`]: the segment is read-only; each write makes its pages writable with
//!   `mprotect`, copies, and makes them read-only again (two system calls per write).
//! - [`Guard::Pkey`]: the segment is tagged with a protection key; each write opens and closes
//!   it with `pkey_set` (a WRPKRU each). Only where `pkey_alloc` works.

use anyhow::{Context, Result};

use crate::engine::{Body, Engine, Layout, Txn};
use crate::sys::{Access, Mapping, Pkey};

/// How the floor protects its segment around writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guard {
    /// No protection.
    None,
    /// `mprotect` the written pages RW before and RO after each write.
    Mprotect,
    /// A protection key switched writable and back around each write.
    Pkey,
}

enum ActiveGuard {
    None,
    Mprotect,
    Pkey(Pkey),
}

/// Bytes of each undo record's header: offset and length.
const HEADER: usize = 16;

/// The floor engine: a segment, a log area, and a guard.
pub struct Floor {
    segment: Mapping,
    len: usize,
    log: Vec<u8>,
    guard: ActiveGuard,
}

impl std::fmt::Debug for Floor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Floor")
            .field("len", &self.len)
            .field("log_len", &self.log.len())
            .finish_non_exhaustive()
    }
}

impl Floor {
    /// Maps a zeroed segment for `layout` and arms `guard`.
    ///
    /// # Errors
    /// Mapping or protection failure, or `pkey_alloc` failure for [`Guard::Pkey`].
    pub fn open(layout: &Layout, guard: Guard) -> Result<Floor> {
        let len = usize::try_from(layout.len())?;
        let segment = Mapping::anonymous(len).context("mapping the floor segment")?;
        let guard = match guard {
            Guard::None => ActiveGuard::None,
            Guard::Mprotect => {
                segment.protect(0..segment.len(), Access::ReadOnly)?;
                ActiveGuard::Mprotect
            }
            Guard::Pkey => {
                let key = Pkey::allocate().context("pkey_alloc")?;
                segment.assign_pkey(&key).context("pkey_mprotect")?;
                ActiveGuard::Pkey(key)
            }
        };
        Ok(Floor {
            segment,
            len,
            log: Vec::with_capacity(1 << 20),
            guard,
        })
    }

    fn write(&mut self, off: u64, data: &[u8]) -> Result<()> {
        let start = usize::try_from(off)?;
        let end = start
            .checked_add(data.len())
            .filter(|&e| e <= self.len)
            .context("write outside the segment")?;
        self.log.extend_from_slice(&off.to_le_bytes());
        self.log
            .extend_from_slice(&(data.len() as u64).to_le_bytes());
        self.log
            .extend_from_slice(&self.segment.as_slice()[start..end]);
        self.store(start, data)
    }

    /// Copies `data` into the segment under the guard.
    fn store(&mut self, start: usize, data: &[u8]) -> Result<()> {
        let end = start + data.len();
        match &self.guard {
            ActiveGuard::None => self.segment.as_mut_slice()[start..end].copy_from_slice(data),
            ActiveGuard::Mprotect => {
                self.segment.protect(start..end, Access::ReadWrite)?;
                self.segment.as_mut_slice()[start..end].copy_from_slice(data);
                self.segment.protect(start..end, Access::ReadOnly)?;
            }
            ActiveGuard::Pkey(key) => {
                key.set_writable(true)?;
                self.segment.as_mut_slice()[start..end].copy_from_slice(data);
                key.set_writable(false)?;
            }
        }
        Ok(())
    }

    /// Applies the undo log newest-first and discards it.
    fn roll_back(&mut self) -> Result<()> {
        let log = std::mem::take(&mut self.log);
        let mut records = Vec::new();
        let mut pos = 0;
        while pos < log.len() {
            let off = u64::from_le_bytes(log[pos..pos + 8].try_into()?) as usize;
            let len = u64::from_le_bytes(log[pos + 8..pos + HEADER].try_into()?) as usize;
            records.push((off, pos + HEADER, len));
            pos += HEADER + len;
        }
        let result = records
            .iter()
            .rev()
            .try_for_each(|&(off, at, len)| self.store(off, &log[at..at + len]));
        self.log = log;
        self.log.clear();
        result
    }
}

struct FloorTxn<'a>(&'a mut Floor);

impl Txn for FloorTxn<'_> {
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        let start = usize::try_from(off)?;
        let end = start
            .checked_add(buf.len())
            .filter(|&e| e <= self.0.len)
            .context("read outside the segment")?;
        buf.copy_from_slice(&self.0.segment.as_slice()[start..end]);
        Ok(())
    }

    fn write(&mut self, off: u64, data: &[u8]) -> Result<()> {
        self.0.write(off, data)
    }
}

impl Engine for Floor {
    fn transact(&mut self, body: &mut Body<'_>) -> Result<()> {
        match body(&mut FloorTxn(self)) {
            Ok(()) => {
                // Commit: the one store that discards the undo log.
                self.log.clear();
                Ok(())
            }
            Err(e) => {
                self.roll_back().context("rolling back")?;
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_body_rolls_back_every_write() {
        for guard in [Guard::None, Guard::Mprotect] {
            let mut f = Floor::open(&Layout::pages(1 << 16, 4096), guard).unwrap();
            f.transact(&mut |t| t.write(100, &[1; 10])).unwrap();
            let err = f.transact(&mut |t| {
                t.write(100, &[2; 10])?;
                t.write(105, &[3; 10])?;
                anyhow::bail!("abort")
            });
            assert!(err.is_err());
            let mut buf = [0u8; 20];
            f.transact(&mut |t| t.read(100, &mut buf)).unwrap();
            assert_eq!(buf[..10], [1; 10]);
            assert_eq!(buf[10..], [0; 10]);
        }
    }
}
