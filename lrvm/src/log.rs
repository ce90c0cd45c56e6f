//! The log device: the status area plus a circular record area addressed by logical
//! offsets.
//!
//! Logical offsets grow forever; byte `l` of the log lives at file offset
//! `RECORD_AREA_START + l % capacity`. A write that crosses the end of the file is split
//! in two and wraps to the start of the record area.

use std::io;

use crate::disk::DiskFile;
use crate::error::Result;
use crate::status::{Status, RECORD_AREA_START};

/// An open, locked log file.
#[derive(Debug)]
pub(crate) struct LogDevice {
    pub(crate) disk: DiskFile,
    /// Bytes in the record area.
    pub(crate) capacity: u64,
}

impl LogDevice {
    pub(crate) fn new(disk: DiskFile, log_len: u64) -> Self {
        Self {
            disk,
            capacity: log_len - RECORD_AREA_START,
        }
    }

    fn phys(&self, logical: u64) -> u64 {
        RECORD_AREA_START + logical % self.capacity
    }

    /// Bytes from `logical` to the physical end of the record area.
    fn until_wrap(&self, logical: u64) -> u64 {
        self.capacity - logical % self.capacity
    }

    /// Writes `bytes` (at most `capacity`) at `logical`, wrapping if needed.
    pub(crate) fn write_logical(&self, logical: u64, bytes: &[u8]) -> io::Result<()> {
        debug_assert!(bytes.len() as u64 <= self.capacity);
        let first = (self.until_wrap(logical) as usize).min(bytes.len());
        self.disk.write_at(&bytes[..first], self.phys(logical))?;
        if first < bytes.len() {
            // A crash here leaves the first part of a record: a torn record.
            crash_point::crash_point!("lrvm.log.wrapped");
            self.disk.write_at(&bytes[first..], RECORD_AREA_START)?;
        }
        Ok(())
    }

    /// Reads `buf.len()` (at most `capacity`) bytes at `logical`, wrapping if needed.
    pub(crate) fn read_logical(&self, logical: u64, buf: &mut [u8]) -> io::Result<()> {
        debug_assert!(buf.len() as u64 <= self.capacity);
        let first = (self.until_wrap(logical) as usize).min(buf.len());
        let (a, b) = buf.split_at_mut(first);
        self.disk.read_at(a, self.phys(logical))?;
        if !b.is_empty() {
            self.disk.read_at(b, RECORD_AREA_START)?;
        }
        Ok(())
    }

    /// Writes `status` as the next generation into the copy the current generation does
    /// not occupy, then syncs. A crash before the sync completes leaves the other copy
    /// (the previous generation) intact.
    pub(crate) fn write_status(&self, status: &mut Status) -> Result<()> {
        let mut next = status.clone();
        next.generation += 1;
        let bytes = next.encode()?;
        self.disk
            .write_at(&bytes, Status::slot_offset(next.slot()))?;
        crash_point::crash_point!("lrvm.status.written");
        self.disk.sync()?;
        crash_point::crash_point!("lrvm.status.synced");
        *status = next;
        Ok(())
    }
}

/// A sequential reader over logical log offsets with a read-ahead buffer (the recovery
/// buffer).
#[derive(Debug)]
pub(crate) struct LogReader<'a> {
    log: &'a LogDevice,
    buf: Vec<u8>,
    start: u64,
    len: usize,
    chunk: usize,
}

impl<'a> LogReader<'a> {
    pub(crate) fn new(log: &'a LogDevice, chunk: usize) -> Self {
        Self {
            log,
            buf: Vec::new(),
            start: 0,
            len: 0,
            chunk,
        }
    }

    /// The `n` bytes at `pos` (`n` at most the log capacity).
    pub(crate) fn get(&mut self, pos: u64, n: usize) -> io::Result<&[u8]> {
        let buffered = pos >= self.start && pos + n as u64 <= self.start + self.len as u64;
        if !buffered {
            let want = n.max(self.chunk).min(self.log.capacity as usize);
            self.buf.resize(want, 0);
            self.log.read_logical(pos, &mut self.buf[..want])?;
            self.start = pos;
            self.len = want;
        }
        let at = (pos - self.start) as usize;
        Ok(&self.buf[at..at + n])
    }
}
