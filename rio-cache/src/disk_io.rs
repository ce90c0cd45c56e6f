//! The I/O layer of the disk image and the journal: every write, resize and sync of the
//! two files goes through a [`DiskFile`].
//!
//! In production a `DiskFile` is the file: each call is one branch away from the system
//! call. With [`crate::RioOptions::record_writes`] it also appends every write, resize
//! and sync to a *write log* (a file in the directory the options name) before doing
//! it, together with the bytes the write replaces. The log is an ordinary file, so it
//! survives a `SIGKILL` of the process exactly as the page cache of the two files does,
//! and at any instant it says which writes are not yet durable: those issued after the
//! last sync of their file. [`crate::power::cut`] uses it to rebuild the files as a power
//! loss could leave them.
//!
//! Log format (little-endian): a 16-byte header (`"RIOWLOG1"`, then zero), then records
//!
//! ```text
//! 0  magic u32 "WREC"   4 kind u8 (1 write, 2 sync, 3 resize)   5 file u8 (0 disk, 1 journal)
//! 8  offset u64 (write) or new length (resize)   16 len u64 (bytes written)
//! 24 old_len u64 (the file's length before)      32 old_n u64 (replaced bytes stored)
//! 40 crc32 of 0..40   44 zero
//! 48 the old_n bytes the write or resize replaced, then the len bytes written
//! ```
//!
//! A record is appended before the operation it describes. A process killed between the
//! two leaves a record of a write it was about to issue; a power cut may keep that write
//! or not, which is what a kill just after the write followed by the cut could leave
//! too. A record cut short by the kill ends the log (its header or bytes are missing).
//! Once every file is synced and the log has grown past 4 MiB, the next write starts it
//! afresh; a power cut empties it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::faults::{Faults, IoFile, IoOp};
use crate::format::{get_u32, get_u64};

const LOG_MAGIC: [u8; 8] = *b"RIOWLOG1";
pub(crate) const LOG_HEADER: u64 = 16;
const REC_MAGIC: u32 = u32::from_le_bytes(*b"WREC");
const REC_HEADER: usize = 48;
/// A log past this size starts afresh at the next write after everything is durable.
const RESET_AT: u64 = 4 << 20;

/// Which of the two files an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Target {
    /// The disk image.
    Disk,
    /// The checkpoint journal.
    Journal,
}

impl Target {
    fn code(self) -> u8 {
        match self {
            Target::Disk => 0,
            Target::Journal => 1,
        }
    }

    fn from_code(c: u8) -> Option<Target> {
        match c {
            0 => Some(Target::Disk),
            1 => Some(Target::Journal),
            _ => None,
        }
    }
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Op {
    Write { offset: u64, data: Vec<u8> },
    Resize { len: u64 },
    Sync,
}

/// A recorded operation with what it replaced.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) target: Target,
    pub(crate) op: Op,
    /// The file's length before the operation.
    pub(crate) old_len: u64,
    /// The bytes the operation overwrote (a write: from its offset; a shrinking resize:
    /// from the new length), clipped to the old length.
    pub(crate) old: Vec<u8>,
}

/// The write log of one cache.
#[derive(Debug)]
pub(crate) struct WriteLog {
    file: File,
    path: PathBuf,
    end: u64,
    /// Per target: a write or resize since its last sync.
    pending: [bool; 2],
}

/// The write log of the cache whose memory image is `image_path`, in `dir`.
pub(crate) fn log_path(dir: &Path, image_path: &Path) -> PathBuf {
    let stem = image_path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    dir.join(format!("{stem}.wlog"))
}

impl WriteLog {
    /// Opens (creating if absent) the log at `path` and continues it: writes a killed
    /// process left unsynced are still unsynced.
    pub(crate) fn open(path: &Path) -> io::Result<WriteLog> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let (records, end) = parse(&file)?;
        if end == 0 {
            file.set_len(0)?;
            file.write_all_at(&header(), 0)?;
        } else {
            // Drop a record a kill cut short.
            file.set_len(end)?;
        }
        let mut log = WriteLog {
            file,
            path: path.to_owned(),
            end: end.max(LOG_HEADER),
            pending: [false; 2],
        };
        for r in &records {
            log.pending[r.target.code() as usize] = !matches!(r.op, Op::Sync);
        }
        Ok(log)
    }

    fn append(
        &mut self,
        target: Target,
        kind: u8,
        a: u64,
        data: &[u8],
        old_len: u64,
        old: &[u8],
    ) -> io::Result<()> {
        if kind != 2 && self.pending == [false; 2] && self.end > RESET_AT {
            // Everything recorded so far is durable: start afresh.
            self.file.set_len(LOG_HEADER)?;
            self.end = LOG_HEADER;
        }
        let mut rec = Vec::with_capacity(REC_HEADER + old.len() + data.len());
        rec.extend_from_slice(&REC_MAGIC.to_le_bytes());
        rec.push(kind);
        rec.push(target.code());
        rec.extend_from_slice(&[0, 0]);
        rec.extend_from_slice(&a.to_le_bytes());
        rec.extend_from_slice(&(data.len() as u64).to_le_bytes());
        rec.extend_from_slice(&old_len.to_le_bytes());
        rec.extend_from_slice(&(old.len() as u64).to_le_bytes());
        let crc = crc32fast::hash(&rec[..40]);
        rec.extend_from_slice(&crc.to_le_bytes());
        rec.extend_from_slice(&[0; 4]);
        rec.extend_from_slice(old);
        rec.extend_from_slice(data);
        self.file.write_all_at(&rec, self.end)?;
        self.end += rec.len() as u64;
        self.pending[target.code() as usize] = kind != 2;
        Ok(())
    }

    /// Empties the log: every recorded write is now what the files hold durably.
    pub(crate) fn reset(&mut self) -> io::Result<()> {
        self.file.set_len(LOG_HEADER)?;
        self.end = LOG_HEADER;
        self.pending = [false; 2];
        Ok(())
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn records(&self) -> io::Result<Vec<Record>> {
        Ok(parse(&self.file)?.0)
    }
}

fn header() -> [u8; LOG_HEADER as usize] {
    let mut h = [0u8; LOG_HEADER as usize];
    h[..8].copy_from_slice(&LOG_MAGIC);
    h
}

/// The complete records of a log and where they end (0: no valid log header).
fn parse(file: &File) -> io::Result<(Vec<Record>, u64)> {
    let len = file.metadata()?.len();
    let mut h = [0u8; LOG_HEADER as usize];
    if len < LOG_HEADER || file.read_exact_at(&mut h, 0).is_err() || h != header() {
        return Ok((Vec::new(), 0));
    }
    let mut records = Vec::new();
    let mut at = LOG_HEADER;
    loop {
        let mut rh = [0u8; REC_HEADER];
        if at + REC_HEADER as u64 > len {
            break;
        }
        file.read_exact_at(&mut rh, at)?;
        if get_u32(&rh, 0) != REC_MAGIC || crc32fast::hash(&rh[..40]) != get_u32(&rh, 40) {
            break;
        }
        let (Some(target), kind) = (Target::from_code(rh[5]), rh[4]) else {
            break;
        };
        let (a, n, old_len, old_n) = (
            get_u64(&rh, 8),
            get_u64(&rh, 16),
            get_u64(&rh, 24),
            get_u64(&rh, 32),
        );
        let Some(rec_end) = (REC_HEADER as u64)
            .checked_add(old_n)
            .and_then(|x| x.checked_add(n))
            .and_then(|x| x.checked_add(at))
        else {
            break;
        };
        if rec_end > len {
            break;
        }
        let mut old = vec![0u8; usize::try_from(old_n).map_err(io::Error::other)?];
        file.read_exact_at(&mut old, at + REC_HEADER as u64)?;
        let op = match kind {
            1 => {
                let mut data = vec![0u8; usize::try_from(n).map_err(io::Error::other)?];
                file.read_exact_at(&mut data, at + REC_HEADER as u64 + old_n)?;
                Op::Write { offset: a, data }
            }
            2 => Op::Sync,
            3 => Op::Resize { len: a },
            _ => break,
        };
        records.push(Record {
            target,
            op,
            old_len,
            old,
        });
        at = rec_end;
    }
    Ok((records, at))
}

/// The disk image or the journal, and (when recording) the log every change goes to.
#[derive(Debug)]
pub(crate) struct DiskFile {
    file: File,
    target: Target,
    log: Option<Arc<Mutex<WriteLog>>>,
    faults: Faults,
}

impl DiskFile {
    pub(crate) fn new(
        file: File,
        target: Target,
        log: Option<Arc<Mutex<WriteLog>>>,
        faults: Faults,
    ) -> DiskFile {
        DiskFile {
            file,
            target,
            log,
            faults,
        }
    }

    fn io_file(&self) -> IoFile {
        match self.target {
            Target::Disk => IoFile::Disk,
            Target::Journal => IoFile::Journal,
        }
    }

    /// The file, to read from (reads are neither logged nor failed on purpose).
    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    #[inline]
    pub(crate) fn write_all_at(&self, data: &[u8], offset: u64) -> io::Result<()> {
        self.faults.check(IoOp::Write, self.io_file())?;
        if let Some(log) = &self.log {
            let mut log = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let old_len = self.file.metadata()?.len();
            let old = self.read_clipped(offset, data.len() as u64, old_len)?;
            log.append(self.target, 1, offset, data, old_len, &old)?;
            return self.file.write_all_at(data, offset);
        }
        self.file.write_all_at(data, offset)
    }

    pub(crate) fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.check(IoOp::Truncate, self.io_file())?;
        if let Some(log) = &self.log {
            let mut log = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let old_len = self.file.metadata()?.len();
            let old = self.read_clipped(len, old_len.saturating_sub(len), old_len)?;
            log.append(self.target, 3, len, &[], old_len, &old)?;
            return self.file.set_len(len);
        }
        self.file.set_len(len)
    }

    /// `fdatasync`: every earlier write and resize of this file is durable.
    #[inline]
    pub(crate) fn sync_data(&self) -> io::Result<()> {
        self.faults.check(IoOp::Sync, self.io_file())?;
        self.file.sync_data()?;
        self.record_sync()
    }

    /// `fsync`: as [`DiskFile::sync_data`], and the file's metadata too.
    pub(crate) fn sync_all(&self) -> io::Result<()> {
        self.faults.check(IoOp::Sync, self.io_file())?;
        self.file.sync_all()?;
        self.record_sync()
    }

    fn record_sync(&self) -> io::Result<()> {
        if let Some(log) = &self.log {
            let mut log = log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            log.append(self.target, 2, 0, &[], 0, &[])?;
        }
        Ok(())
    }

    fn read_clipped(&self, offset: u64, len: u64, file_len: u64) -> io::Result<Vec<u8>> {
        let n = file_len.saturating_sub(offset).min(len);
        let mut old = vec![0u8; usize::try_from(n).map_err(io::Error::other)?];
        self.file.read_exact_at(&mut old, offset)?;
        Ok(old)
    }
}
