//! The RVM instance: mapped regions, transactions, the log buffer, and the epoch
//! truncation driver.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::disk::DiskFile;
use crate::epoch::{self, Epoch};
use crate::error::{Error, Result};
use crate::log::LogDevice;
use crate::options::{
    CommitMode, CreateMode, MapOptions, Options, RegionSpec, RestoreMode, Tunables,
};
use crate::record::{self, RecordWriter};
use crate::recovery::{self, RecoveryReport};
use crate::segment::Segment;
use crate::status::{Copy, SegmentEntry, Status, COPIES, COPY_LEN, RECORD_AREA_START};
use crate::sys;

/// The smallest log `create_log` accepts: the status area plus 16 KiB of records.
pub const MIN_LOG_LEN: u64 = RECORD_AREA_START + 16 * 1024;

/// Identifies a mapped region. Ids are never reused within one [`Rvm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId(u32);

/// Identifies an open transaction. Ids are never reused within one [`Rvm`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tid(u64);

/// Counters for inspection and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Transactions committed (records appended to the log buffer).
    pub commits: u64,
    /// Transactions aborted.
    pub aborts: u64,
    /// Log writes followed by a sync (one per `Flush` commit, `flush()`, or full buffer).
    pub log_forces: u64,
    /// Epoch truncations completed (background or inline).
    pub truncations: u64,
    /// Commits that went to the log while a background epoch was applying an earlier
    /// part of it (concurrent forward processing).
    pub commits_during_epoch: u64,
    /// Bytes between the head and the tail of the log, buffered records included.
    pub log_used: u64,
    /// Bytes of the log's record area.
    pub log_capacity: u64,
}

/// Creates a log file of `len` bytes (status area included) with an empty log.
///
/// The whole file is written (zeros) and synced, so that later `fdatasync` calls on the
/// log never have to allocate blocks.
///
/// # Errors
/// [`Error::LogTooSmall`] below [`MIN_LOG_LEN`], [`Error::LogExists`] for an existing
/// file with [`CreateMode::CreateNew`], [`Error::LogLocked`] if a running instance
/// holds the log (it is left untouched), [`Error::Io`] otherwise.
pub fn create_log(path: impl AsRef<Path>, len: u64, mode: CreateMode) -> Result<()> {
    let path = path.as_ref();
    if len < MIN_LOG_LEN {
        return Err(Error::LogTooSmall {
            len,
            min: MIN_LOG_LEN,
        });
    }
    let mut opts = OpenOptions::new();
    opts.read(true).write(true);
    match mode {
        CreateMode::CreateNew => opts.create_new(true),
        // Not truncated at open: only once the lock is held (below), so that a log a
        // running instance holds is refused untouched.
        CreateMode::Overwrite => opts.create(true).truncate(false),
    };
    let file = opts.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            Error::LogExists(path.to_path_buf())
        } else {
            Error::Io(e)
        }
    })?;
    if !sys::try_lock_exclusive(&file)? {
        return Err(Error::LogLocked(path.to_path_buf()));
    }
    file.set_len(0)?;
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0;
    while at < len {
        let n = (len - at).min(zeros.len() as u64) as usize;
        std::os::unix::fs::FileExt::write_all_at(&file, &zeros[..n], at)?;
        at += n as u64;
    }
    let mut st = Status::new(len);
    for slot in 0..COPIES {
        st.generation = slot as u64;
        let bytes = st.encode()?;
        std::os::unix::fs::FileExt::write_all_at(&file, &bytes, Status::slot_offset(slot))?;
    }
    file.sync_all()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[derive(Debug)]
struct Region {
    segment: u32,
    seg_offset: u64,
    mem: Vec<u8>,
}

#[derive(Debug)]
struct Txn {
    id: u64,
    restore: RestoreMode,
    /// (region, offset, len) in `set_range` order.
    ranges: Vec<(u32, u64, u64)>,
    /// Old values of `ranges`, concatenated in the same order (restore mode only).
    undo: Vec<u8>,
    /// Upper bound of the redo record's size.
    record_bound: u64,
}

#[derive(Debug)]
struct RunningEpoch {
    epoch: Epoch,
    handle: JoinHandle<Result<()>>,
}

/// A Lightweight Recoverable Virtual Memory instance: one log, any number of mapped
/// regions, any number of open transactions.
///
/// Dropping it waits for a running truncation and flushes buffered `NoFlush` commits,
/// ignoring errors (use [`Rvm::close`] to see them). Open transactions are discarded
/// (their in-memory changes are not logged).
#[derive(Debug)]
pub struct Rvm {
    log: Arc<LogDevice>,
    status: Arc<Mutex<Status>>,
    tunables: Tunables,
    emulate_power_loss: bool,
    /// Oldest record not yet applied (as far as this thread knows).
    head: u64,
    head_seq: u64,
    /// End of the records written and synced.
    durable_tail: u64,
    durable_seq: u64,
    /// End of the records including the buffered ones.
    tail: u64,
    next_seq: u64,
    /// Records `[durable_tail, tail)` not yet written to the log file.
    buffer: Vec<u8>,
    running: Option<RunningEpoch>,
    segments: HashMap<u32, Arc<Segment>>,
    regions: Vec<Option<Region>>,
    txns: Vec<Txn>,
    spare_txns: Vec<Txn>,
    scratch: Vec<(u32, u64, u64)>,
    next_tid: u64,
    poisoned: Option<String>,
    recovery: RecoveryReport,
    stats: Stats,
}

impl Rvm {
    /// Opens the log named by `options`, locks it, and recovers: every committed record
    /// in the log is applied to its data segment and the log is reset to empty.
    ///
    /// # Errors
    /// [`Error::LogLocked`], [`Error::BadMagic`], [`Error::StatusBlockDamaged`],
    /// [`Error::LogSizeMismatch`], [`Error::CorruptLog`], [`Error::SegmentLocked`],
    /// [`Error::InvalidOption`], or [`Error::Io`]. Nothing is modified unless recovery
    /// got as far as applying records.
    #[allow(clippy::needless_pass_by_value)] // the RVM call takes its options by value
    pub fn initialize(options: Options) -> Result<Self> {
        options.tunables.validate()?;
        let path = options.log_path.clone();
        let file = OpenOptions::new().read(true).write(true).open(&path)?;
        if !sys::try_lock_exclusive(&file)? {
            return Err(Error::LogLocked(path));
        }
        let actual = file.metadata()?.len();
        let disk = DiskFile::new(file, options.emulate_power_loss);
        let mut copies = [Copy::Foreign, Copy::Foreign];
        for (slot, c) in copies.iter_mut().enumerate() {
            let off = Status::slot_offset(slot);
            if off + COPY_LEN as u64 <= actual {
                let mut b = vec![0u8; COPY_LEN];
                disk.read_at(&mut b, off)?;
                *c = Status::decode(&b)?;
            }
        }
        let (status, _) = Status::choose(copies, &path)?;
        if status.log_len != actual || actual < MIN_LOG_LEN {
            return Err(Error::LogSizeMismatch {
                expected: status.log_len,
                actual,
            });
        }
        if status.head_seq == 0 {
            return Err(Error::CorruptLog {
                offset: status.head,
                reason: "status block has sequence number 0",
            });
        }
        let log = LogDevice::new(disk, actual);
        let (status, recovery, end, next_seq) = recovery::recover(
            &log,
            status,
            options.tunables.recovery_buffer_size,
            options.emulate_power_loss,
        )?;
        let capacity = log.capacity;
        Ok(Self {
            log: Arc::new(log),
            status: Arc::new(Mutex::new(status)),
            tunables: options.tunables,
            emulate_power_loss: options.emulate_power_loss,
            head: end,
            head_seq: next_seq,
            durable_tail: end,
            durable_seq: next_seq,
            tail: end,
            next_seq,
            buffer: Vec::with_capacity(options.tunables.flush_buffer_size),
            running: None,
            segments: HashMap::new(),
            regions: Vec::new(),
            txns: Vec::new(),
            spare_txns: Vec::new(),
            scratch: Vec::new(),
            next_tid: 1,
            poisoned: None,
            recovery,
            stats: Stats {
                log_capacity: capacity,
                ..Stats::default()
            },
        })
    }

    /// What recovery did when this instance was initialized.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.recovery
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        Stats {
            log_used: self.tail - self.head,
            ..self.stats
        }
    }

    /// The current tunables.
    pub fn query_options(&self) -> Tunables {
        self.tunables
    }

    /// Replaces the tunables. A smaller flush buffer takes effect at the next commit.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] if a value is out of range (nothing changes then).
    pub fn set_options(&mut self, tunables: Tunables) -> Result<()> {
        tunables.validate()?;
        self.tunables = tunables;
        Ok(())
    }

    fn check(&self) -> Result<()> {
        match &self.poisoned {
            None => Ok(()),
            Some(why) => Err(Error::Poisoned(why.clone())),
        }
    }

    /// Runs `f`; if it fails, poisons the instance (for failures that leave the log or
    /// a segment in an unknown state).
    fn poison_on_err<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            if self.poisoned.is_none() {
                self.poisoned = Some(e.to_string());
            }
        }
        r
    }

    /// Maps `spec` into a fresh private memory copy loaded from the data segment file.
    ///
    /// The segment file is opened and locked (`flock`) the first time one of its regions
    /// is mapped; a new segment is entered in the status block's segment table (a synced
    /// status write) before any record can name it.
    ///
    /// # Errors
    /// [`Error::SegmentLocked`], [`Error::SegmentTooShort`] (unless `options.extend`),
    /// [`Error::RegionOverlap`], [`Error::InvalidRegion`], [`Error::TooManySegments`],
    /// [`Error::Io`] (e.g. a missing file without `options.create`).
    pub fn map(&mut self, spec: &RegionSpec, options: MapOptions) -> Result<RegionId> {
        self.check()?;
        if spec.len == 0 {
            return Err(Error::InvalidRegion("zero length"));
        }
        let end = spec
            .offset
            .checked_add(spec.len)
            .filter(|e| usize::try_from(*e).is_ok())
            .ok_or(Error::InvalidRegion("offset + len overflows"))?;
        if self.regions.len() >= u32::MAX as usize {
            return Err(Error::InvalidRegion("too many regions mapped over time"));
        }
        if options.create {
            // Create a missing file first so that it has a canonical path; it is opened
            // (and locked) below only if no mapped region already holds it.
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&spec.path)?;
        }
        let canonical = std::fs::canonicalize(&spec.path)?;
        let existing = self
            .segments
            .iter()
            .find(|(_, s)| s.path == canonical)
            .map(|(id, s)| (*id, Arc::clone(s)));
        let (seg_id, seg, fresh) = if let Some((id, seg)) = existing {
            let overlaps = self.regions.iter().flatten().any(|r| {
                r.segment == id
                    && r.seg_offset < end
                    && spec.offset < r.seg_offset + r.mem.len() as u64
            });
            if overlaps {
                return Err(Error::RegionOverlap(seg.path.clone()));
            }
            (id, seg, false)
        } else {
            let seg = Arc::new(Segment::open(&canonical, false, self.emulate_power_loss)?);
            let id = (0..=u32::MAX)
                .find(|i| !self.segments.contains_key(i))
                .expect("fewer than 2^32 segments are open");
            (id, seg, true)
        };
        // The region's memory first: a region larger than this process may allocate is
        // refused before the segment file is extended.
        let too_large = || Error::InvalidRegion("larger than the memory this process can allocate");
        let n = usize::try_from(spec.len).map_err(|_| too_large())?;
        let mut mem = Vec::new();
        mem.try_reserve_exact(n).map_err(|_| too_large())?;
        let len = seg.disk.len()?;
        if len < end {
            if !options.extend {
                return Err(Error::SegmentTooShort {
                    path: seg.path.clone(),
                    len,
                    needed: end,
                });
            }
            seg.extend(end)?;
        }
        mem.resize(n, 0);
        seg.disk.read_at(&mut mem, spec.offset)?;
        if fresh {
            let r = {
                let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                let mut next = st.clone();
                next.segments.push(SegmentEntry {
                    id: seg_id,
                    path: seg.path.clone(),
                });
                match next.encode() {
                    Err(e) => Err(e),
                    Ok(_) => self.log.write_status(&mut next).map(|()| *st = next),
                }
            };
            if let Err(e) = r {
                if matches!(e, Error::TooManySegments) {
                    return Err(e);
                }
                return self.poison_on_err(Err(e));
            }
            self.segments.insert(seg_id, seg);
        }
        let id = self.regions.len() as u32;
        self.regions.push(Some(Region {
            segment: seg_id,
            seg_offset: spec.offset,
            mem,
        }));
        Ok(RegionId(id))
    }

    /// Unmaps a region. Buffered commits are flushed and the log is truncated, so the
    /// segment file holds every committed value of the region (a later `map` of the
    /// same bytes loads them). If it was the last region of its segment, the segment
    /// leaves the status block's table and its lock is released.
    ///
    /// # Errors
    /// [`Error::UnknownRegion`], [`Error::RegionBusy`] if an open transaction has set a
    /// range in it, [`Error::Poisoned`], [`Error::Io`].
    pub fn unmap(&mut self, region: RegionId) -> Result<()> {
        self.check()?;
        self.region_ref(region)?;
        if self
            .txns
            .iter()
            .any(|t| t.ranges.iter().any(|r| r.0 == region.0))
        {
            return Err(Error::RegionBusy(region.0));
        }
        let seg_id = self.regions[region.0 as usize]
            .take()
            .expect("checked above")
            .segment;
        // Apply the log before the region goes: its committed values may still be only in
        // the log, and a later `map` of the same bytes loads them from the segment file.
        self.truncate()?;
        let still_used = self.regions.iter().flatten().any(|r| r.segment == seg_id);
        if !still_used {
            let r = {
                let mut st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
                let mut next = st.clone();
                next.segments.retain(|s| s.id != seg_id);
                self.log.write_status(&mut next).map(|()| *st = next)
            };
            self.poison_on_err(r)?;
            self.segments.remove(&seg_id);
        }
        Ok(())
    }

    fn region_ref(&self, region: RegionId) -> Result<&Region> {
        self.regions
            .get(region.0 as usize)
            .and_then(Option::as_ref)
            .ok_or(Error::UnknownRegion(region.0))
    }

    /// The mapped memory of a region.
    ///
    /// # Errors
    /// [`Error::UnknownRegion`].
    pub fn region(&self, region: RegionId) -> Result<&[u8]> {
        Ok(&self.region_ref(region)?.mem)
    }

    /// Starts a transaction.
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    pub fn begin_transaction(&mut self, restore: RestoreMode) -> Result<Tid> {
        self.check()?;
        let id = self.next_tid;
        self.next_tid += 1;
        let mut t = self.spare_txns.pop().unwrap_or(Txn {
            id,
            restore,
            ranges: Vec::new(),
            undo: Vec::new(),
            record_bound: record::HEADER_LEN as u64,
        });
        t.id = id;
        t.restore = restore;
        self.txns.push(t);
        Ok(Tid(id))
    }

    fn txn_index(&self, tid: Tid) -> Result<usize> {
        self.txns
            .iter()
            .position(|t| t.id == tid.0)
            .ok_or(Error::UnknownTransaction(tid.0))
    }

    /// Declares that the transaction will modify `len` bytes at `offset` of `region`, and
    /// returns them for writing. In restore mode their current value is saved first.
    ///
    /// # Errors
    /// [`Error::UnknownTransaction`], [`Error::UnknownRegion`],
    /// [`Error::RangeOutOfBounds`], [`Error::TransactionTooLarge`] if the transaction's
    /// record could no longer fit in the log (checked here so that `end_transaction`
    /// cannot fail for that reason).
    pub fn set_range(
        &mut self,
        tid: Tid,
        region: RegionId,
        offset: u64,
        len: u64,
    ) -> Result<&mut [u8]> {
        self.check()?;
        let ti = self.txn_index(tid)?;
        let reg = self
            .regions
            .get_mut(region.0 as usize)
            .and_then(Option::as_mut)
            .ok_or(Error::UnknownRegion(region.0))?;
        let region_len = reg.mem.len() as u64;
        let end = offset.checked_add(len).filter(|e| *e <= region_len).ok_or(
            Error::RangeOutOfBounds {
                offset,
                len,
                region_len,
            },
        )?;
        let t = &mut self.txns[ti];
        let bound =
            t.record_bound + record::encoded_len(std::iter::once(len)) - record::HEADER_LEN as u64;
        if bound > self.log.capacity {
            return Err(Error::TransactionTooLarge {
                len: bound,
                capacity: self.log.capacity,
            });
        }
        t.record_bound = bound;
        let range = offset as usize..end as usize;
        if t.restore == RestoreMode::Restore {
            t.undo.extend_from_slice(&reg.mem[range.clone()]);
        }
        t.ranges.push((region.0, offset, len));
        Ok(&mut reg.mem[range])
    }

    fn recycle(&mut self, mut t: Txn) {
        t.ranges.clear();
        t.undo.clear();
        t.record_bound = record::HEADER_LEN as u64;
        if self.spare_txns.len() < 16 {
            self.spare_txns.push(t);
        }
    }

    /// Commits: the new values of every set range become one redo record in the log
    /// buffer; with [`CommitMode::Flush`] the buffer is written and synced before this
    /// returns. The in-memory undo copy is discarded.
    ///
    /// # Errors
    /// [`Error::UnknownTransaction`], [`Error::Poisoned`], or [`Error::Io`] from writing
    /// the log (which poisons the instance: the commit's durability is unknown).
    pub fn end_transaction(&mut self, tid: Tid, mode: CommitMode) -> Result<()> {
        self.check()?;
        let ti = self.txn_index(tid)?;
        self.reap_epoch()?;
        let t = self.txns.swap_remove(ti);
        if t.ranges.is_empty() {
            self.recycle(t);
            if mode == CommitMode::Flush {
                return self.flush();
            }
            return Ok(());
        }
        // Coalesce overlapping and adjacent ranges; a record holds each byte once. (A
        // copy: `t.ranges` must keep `set_range` order, which the undo copy follows.)
        let mut sorted = std::mem::take(&mut self.scratch);
        sorted.clear();
        sorted.extend_from_slice(&t.ranges);
        sorted.sort_unstable();
        let mut n = 0usize;
        for i in 0..sorted.len() {
            let (r, off, len) = sorted[i];
            match n.checked_sub(1).map(|j| &mut sorted[j]) {
                Some(last) if last.0 == r && off <= last.1 + last.2 => {
                    last.2 = last.2.max(off + len - last.1);
                }
                _ => {
                    sorted[n] = (r, off, len);
                    n += 1;
                }
            }
        }
        sorted.truncate(n);
        let merged = sorted;
        let rec_len = record::encoded_len(merged.iter().map(|m| m.2));
        if let Err(e) = self.reserve(rec_len) {
            // The transaction is still intact: put it back so the caller can retry or abort.
            self.txns.push(t);
            self.scratch = merged;
            return Err(e);
        }
        if self.running.is_some() {
            self.stats.commits_during_epoch += 1;
        }
        let mut w = RecordWriter::begin(&mut self.buffer);
        for &(r, off, len) in &merged {
            let reg = self.regions[r as usize]
                .as_ref()
                .expect("ranges name mapped regions");
            let data = &reg.mem[off as usize..(off + len) as usize];
            w.range(&mut self.buffer, reg.segment, reg.seg_offset + off, data);
        }
        let len = w.finish(&mut self.buffer, self.next_seq);
        debug_assert_eq!(len, rec_len);
        self.scratch = merged;
        self.tail += len;
        self.next_seq += 1;
        self.stats.commits += 1;
        self.recycle(t);
        if mode == CommitMode::Flush || self.buffer.len() >= self.tunables.flush_buffer_size {
            self.flush()?;
        }
        self.maybe_truncate()
    }

    /// Aborts: restores the old value of every set range (newest first).
    ///
    /// # Errors
    /// [`Error::UnknownTransaction`]; [`Error::NoRestoreAbort`] for a no-restore
    /// transaction, which stays open (commit it).
    pub fn abort_transaction(&mut self, tid: Tid) -> Result<()> {
        let ti = self.txn_index(tid)?;
        if self.txns[ti].restore == RestoreMode::NoRestore {
            return Err(Error::NoRestoreAbort(tid.0));
        }
        let t = self.txns.swap_remove(ti);
        let mut end = t.undo.len();
        for &(r, off, len) in t.ranges.iter().rev() {
            let reg = self.regions[r as usize]
                .as_mut()
                .expect("busy regions stay mapped");
            let start = end - len as usize;
            reg.mem[off as usize..(off + len) as usize].copy_from_slice(&t.undo[start..end]);
            end = start;
        }
        self.stats.aborts += 1;
        self.recycle(t);
        Ok(())
    }

    /// Writes every buffered commit to the log and syncs it.
    ///
    /// # Errors
    /// [`Error::Poisoned`], or [`Error::Io`] (which poisons the instance).
    pub fn flush(&mut self) -> Result<()> {
        self.check()?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        let r = self.write_buffer();
        self.poison_on_err(r)
    }

    fn write_buffer(&mut self) -> Result<()> {
        // The buffer never exceeds the free space: `reserve` checked every record.
        self.log.write_logical(self.durable_tail, &self.buffer)?;
        crash_point::crash_point!("lrvm.log.written");
        #[cfg(feature = "mutants")]
        let skip_sync = crate::mutant::is("flush-no-sync");
        #[cfg(not(feature = "mutants"))]
        let skip_sync = false;
        if !skip_sync {
            self.log.disk.sync()?; // (Mutant flush-no-sync skips it.)
        }
        crash_point::crash_point!("lrvm.log.synced");
        self.buffer.clear();
        self.durable_tail = self.tail;
        self.durable_seq = self.next_seq;
        self.stats.log_forces += 1;
        Ok(())
    }

    /// Makes room for `len` more bytes of records: if the log would overflow, waits for
    /// the running epoch and, if that is not enough, truncates everything inline.
    fn reserve(&mut self, len: u64) -> Result<()> {
        let cap = self.log.capacity;
        if self.tail + len - self.head <= cap {
            return Ok(());
        }
        self.wait_epoch()?;
        if self.tail + len - self.head <= cap {
            return Ok(());
        }
        self.truncate()?;
        debug_assert!(self.tail + len - self.head <= cap);
        Ok(())
    }

    /// Starts an epoch if the log is past the threshold and none is running.
    fn maybe_truncate(&mut self) -> Result<()> {
        if self.running.is_some() || self.durable_tail == self.head {
            return Ok(());
        }
        let used = (self.tail - self.head) as f64;
        if used <= self.tunables.truncate_threshold * self.log.capacity as f64 {
            return Ok(());
        }
        let epoch = self.next_epoch();
        if self.tunables.background_truncation {
            let log = Arc::clone(&self.log);
            let status = Arc::clone(&self.status);
            let segments = self.segments.clone();
            let buf = self.tunables.recovery_buffer_size;
            let handle = std::thread::Builder::new()
                .name("lrvm-truncate".into())
                .spawn(move || epoch::run(&log, &status, &segments, epoch, buf));
            let handle = self.poison_on_err(handle.map_err(Error::Io))?;
            self.running = Some(RunningEpoch { epoch, handle });
            Ok(())
        } else {
            self.run_epoch_inline(epoch)
        }
    }

    fn next_epoch(&self) -> Epoch {
        Epoch {
            start: self.head,
            start_seq: self.head_seq,
            end: self.durable_tail,
            end_seq: self.durable_seq,
        }
    }

    fn run_epoch_inline(&mut self, epoch: Epoch) -> Result<()> {
        let r = epoch::run(
            &self.log,
            &self.status,
            &self.segments,
            epoch,
            self.tunables.recovery_buffer_size,
        );
        self.poison_on_err(r)?;
        self.epoch_done(epoch);
        Ok(())
    }

    fn epoch_done(&mut self, epoch: Epoch) {
        self.head = epoch.end;
        self.head_seq = epoch.end_seq;
        self.stats.truncations += 1;
    }

    /// Collects a finished background epoch, if any.
    fn reap_epoch(&mut self) -> Result<()> {
        if self
            .running
            .as_ref()
            .is_some_and(|r| r.handle.is_finished())
        {
            self.wait_epoch()?;
        }
        Ok(())
    }

    /// Waits for the running background epoch, if any.
    fn wait_epoch(&mut self) -> Result<()> {
        let Some(run) = self.running.take() else {
            return Ok(());
        };
        let r = match run.handle.join() {
            Ok(r) => r,
            Err(_) => Err(Error::Poisoned("the truncation thread panicked".into())),
        };
        self.poison_on_err(r)?;
        self.epoch_done(run.epoch);
        Ok(())
    }

    /// Flushes buffered commits, waits for a running epoch, then applies the whole log to
    /// the data segments, syncs them and moves the head to the tail: the log is empty
    /// when this returns.
    ///
    /// # Errors
    /// [`Error::Poisoned`], [`Error::CorruptLog`], or [`Error::Io`] (which poisons).
    pub fn truncate(&mut self) -> Result<()> {
        self.check()?;
        self.flush()?;
        self.wait_epoch()?;
        if self.durable_tail > self.head {
            self.run_epoch_inline(self.next_epoch())?;
        }
        Ok(())
    }

    /// Flushes buffered commits and waits for a running truncation, reporting errors
    /// that `Drop` would ignore.
    ///
    /// # Errors
    /// As [`Rvm::flush`].
    pub fn close(mut self) -> Result<()> {
        let r = self.flush();
        let w = self.wait_epoch();
        r.and(w)
    }

    /// Drops the instance the way a crash would: buffered `NoFlush` commits are lost,
    /// and with [`Options::emulate_power_loss`] every unsynced write is forgotten. A
    /// running background truncation is allowed to finish first (a crash right after it
    /// is a state a real crash can produce too). For tests.
    pub fn abandon(mut self) {
        let _ = self.wait_epoch();
        self.buffer.clear();
        self.tail = self.durable_tail;
        self.log.disk.discard_pending();
        for s in self.segments.values() {
            s.disk.discard_pending();
        }
    }

    /// The segment table as the status block holds it (for tests and tools).
    pub fn segment_paths(&self) -> Vec<std::path::PathBuf> {
        let st = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        st.segments.iter().map(|s| s.path.clone()).collect()
    }
}

impl Drop for Rvm {
    /// Waits for a running truncation and flushes buffered commits; errors are ignored
    /// (the records stay in the log or buffer state that recovery handles).
    fn drop(&mut self) {
        let _ = self.wait_epoch();
        if self.poisoned.is_none() && !self.buffer.is_empty() {
            let _ = self.write_buffer();
        }
    }
}
