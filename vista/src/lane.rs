//! Undo lanes: each running transaction owns one, with its log, for its whole life.
//!
//! A [`Lane`] is the in-memory side of one undo log of the format (its place, its
//! published tail, the ranges logged so far); the [`LanePool`] hands lanes to
//! transactions and takes them back when they end. A lane is returned only after its
//! log is empty again (committed or rolled back), so a lane taken from the pool always
//! starts from an empty log.

use std::cell::Cell;
use std::path::Path;
#[cfg(not(feature = "shuttle"))]
use std::sync::atomic::{AtomicU32, Ordering};
#[cfg(not(feature = "shuttle"))]
use std::sync::{Condvar, Mutex, MutexGuard};
use std::sync::{PoisonError, TryLockError};
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use crash_point::crash_point;
use rio_cache::{Claim, PageMemo, Update};

use crate::error::{Error, Result};
use crate::layout::{Layout, LANE_HEADER};
use crate::undo::{self, Record};

// Under the `shuttle` feature (model-checked tests only) the pool's lock is shuttle's, so
// that its scheduler can interleave threads at every lock operation.
#[cfg(feature = "shuttle")]
use shuttle::sync::atomic::{AtomicU32, Ordering};
#[cfg(feature = "shuttle")]
use shuttle::sync::{Condvar, Mutex, MutexGuard};

/// How many recently logged ranges are checked before logging a range again. A range
/// inside one of them is not logged twice; beyond them a second record is harmless
/// (roll-back applies newest first, so the oldest before-image wins).
const DEDUP_WINDOW: usize = 16;

/// The bit of `offset`'s 64-byte line in [`Lane`]'s filter of logged lines.
fn line_bit(offset: u64) -> u64 {
    1 << (offset / 64 % 64)
}

/// One undo log and the state of the transaction that owns it.
#[derive(Debug)]
pub(crate) struct Lane {
    index: u32,
    /// Cache offset of the lane (its tail word).
    off: u64,
    /// Published bytes of undo records.
    tail: u64,
    /// Ranges logged by the transaction in progress (reused to avoid allocating).
    logged: Vec<(u64, u64)>,
    /// All-or-nothing calls in progress (see [`Lane::mark`]): while one is, a range
    /// whose only covering record predates the innermost call's mark (`logged[..floor]`)
    /// has its bytes saved in `saved` before the call changes them.
    calls: u32,
    floor: usize,
    /// Bytes as they were when the innermost call in progress first changed them, for
    /// undoing a failed call: in memory only, as a crash rolls back the whole
    /// transaction from the log anyway. Each with the published tail when it was taken,
    /// which orders it among the records.
    saved: Vec<Saved>,
    /// Bit `l mod 64` is set for every 64-byte line `l` of user space that a range in
    /// `logged` touches: a range whose first line's bit is clear lies in none of them,
    /// without a search.
    logged_lines: u64,
    /// Where undo records are assembled when they are written through the memory image
    /// (under `mprotect`; reused to avoid allocating).
    scratch: Vec<u8>,
    /// Pages the lane's last update opened (see `rio_cache::PageMemo`).
    pub(crate) memo: PageMemo,
    /// The lane's bytes in the cache: the transaction that owns the lane moves it into
    /// its update, which then reads and writes the lane without range locks.
    pub(crate) claim: Option<Claim>,
    /// The heap blocks freed by the transaction in progress (cleared when the lane is
    /// given back).
    pub(crate) heap: crate::tx_heap::TxHeap,
    /// Never handed out again by this handle (see [`Lane::retire`]).
    retired: bool,
}

impl Lane {
    fn new(layout: &Layout, index: u32, claim: Option<Claim>) -> Lane {
        Lane {
            index,
            off: layout.lane_off(index),
            tail: 0,
            logged: Vec::new(),
            calls: 0,
            floor: 0,
            saved: Vec::new(),
            logged_lines: 0,
            scratch: Vec::new(),
            memo: PageMemo::default(),
            claim,
            heap: crate::tx_heap::TxHeap::default(),
            retired: false,
        }
    }

    /// The lane's number in the format.
    pub(crate) fn index(&self) -> u32 {
        self.index
    }

    /// Bytes of records published by the transaction in progress.
    pub(crate) fn tail(&self) -> u64 {
        self.tail
    }

    /// Logs the before-image of user range `[offset, offset + len)` (at cache offset
    /// `at`) unless a recent record already covers it, publishes it (the record is
    /// completely written before the store of the tail that covers it), and returns
    /// the range's bytes to change. `write_through` assembles the record in memory and
    /// writes it with one call (under `mprotect`, where it saves opening the lane's
    /// pages).
    // Inline: in a `put` the range's length is a constant, and the record's copy and
    // checksum are specialised for it (about 150 instructions less a `put`;
    // docs/benchmarks.md, "Hot path").
    #[inline]
    pub(crate) fn log<'u>(
        &mut self,
        update: &'u mut Update<'_>,
        layout: &Layout,
        offset: u64,
        len: u64,
        at: u64,
        write_through: bool,
    ) -> Result<&'u mut [u8]> {
        let end = offset + len;
        // The search of recent ranges, only where both filters say a range may cover
        // this one's first line: the lane's filter of logged lines, and the lock (a
        // logged range was locked exclusively before it was published, so a line whose
        // stripe this transaction holds shared, or not at all, is in no logged range).
        if len == 0 {
            return Ok(update.window(at, len)?);
        }
        if self.logged_lines & line_bit(offset) != 0 && update.may_hold_exclusively(at) {
            if let Some(back) = self
                .logged
                .iter()
                .rev()
                .take(DEDUP_WINDOW)
                .position(|&(s, e)| s <= offset && end <= e)
            {
                if self.calls > 0 && self.logged.len() - 1 - back < self.floor {
                    // Covered by a record older than the call in progress: its bytes as
                    // they are now, in case the call fails.
                    self.save(update, offset, at, len)?;
                }
                return Ok(update.window(at, len)?);
            }
        }
        let capacity = layout.lane_capacity();
        let needed = undo::record_len(len).unwrap_or(u64::MAX);
        if needed > capacity - self.tail {
            return Err(Error::UndoLogFull {
                needed,
                free: capacity - self.tail,
                capacity,
            });
        }
        let rec_at = self.off + LANE_HEADER + self.tail;
        let tail = self.tail + needed;
        #[cfg(feature = "mutants")]
        if crate::mutant::is("publish-late") {
            // Mutant: `write` stores the tail after it has changed the data.
            let (rec, data) = update.window_pair(rec_at..rec_at + needed, at..at + len)?;
            undo::encode(rec, offset, data, layout.version);
            self.tail = tail;
            self.note_logged(offset, end);
            return Ok(update.window(at, len)?);
        }
        // The data range is locked exclusively before the record that covers it is
        // published: a record is published only for a range this transaction holds, so
        // a conflict leaves nothing in the log, and the roll-back of every published
        // record finds its range still held (docs/design.md, "Concurrency").
        if write_through {
            #[cfg(feature = "mutants")]
            let lock_first = !crate::mutant::is("publish-before-lock");
            #[cfg(not(feature = "mutants"))]
            let lock_first = true;
            if lock_first {
                update.open(at, len)?;
            }
            self.scratch.clear();
            self.scratch.resize(needed as usize, 0);
            undo::encode(
                &mut self.scratch,
                offset,
                update.read(at, len)?,
                layout.version,
            );
            update.write_bytes(rec_at, &self.scratch)?;
            crash_point!("vista.set_range.record_copied");
            // Publish: the record is complete before the tail covers it.
            update.store_u64(self.off, tail)?;
            // From the store on, the published tail and `self.tail` agree, whatever
            // fails after it: an abort then undoes this record too.
            self.tail = tail;
            self.note_logged(offset, end);
            crash_point!("vista.set_range.published");
            return Ok(update.window(at, len)?);
        }
        // One call: the data opened (locked exclusively), the record written from it,
        // published by the release store of the tail. On an error nothing is published.
        let version = layout.version;
        let data = update.log_and_open(
            rec_at..rec_at + needed,
            at..at + len,
            self.off,
            tail,
            // Inlined, with `log` into `put`: the record's length is then a constant and
            // its copy and checksum are specialised (docs/benchmarks.md, "Hot path").
            #[inline(always)]
            |rec, data| {
                undo::encode(rec, offset, data, version);
                crash_point!("vista.set_range.record_copied");
            },
        )?;
        self.tail = tail;
        self.note_logged(offset, end);
        crash_point!("vista.set_range.published");
        Ok(data)
    }

    /// Records that `[offset, end)` (not empty) is logged.
    #[inline]
    fn note_logged(&mut self, offset: u64, end: u64) {
        self.logged.push((offset, end));
        let lines = (end - 1) / 64 - offset / 64 + 1;
        self.logged_lines |= if lines >= 64 {
            u64::MAX
        } else {
            ((1u64 << lines) - 1).rotate_left((offset / 64 % 64) as u32)
        };
    }

    /// Appends the group record `tag` and publishes it (see `undo`): from this store on,
    /// recovery asks the coordinator whether the lane's records are undone or kept.
    pub(crate) fn tag(
        &mut self,
        update: &mut Update<'_>,
        layout: &Layout,
        tag: &undo::GroupTag,
    ) -> Result<()> {
        let capacity = layout.lane_capacity();
        let needed = undo::group_record_len(&tag.coordinator).ok_or_else(|| {
            Error::InvalidOptions("the coordinator's path is longer than 4096 bytes".into())
        })?;
        if needed > capacity - self.tail {
            return Err(Error::UndoLogFull {
                needed,
                free: capacity - self.tail,
                capacity,
            });
        }
        let rec_at = self.off + LANE_HEADER + self.tail;
        self.scratch.clear();
        self.scratch.resize(needed as usize, 0);
        undo::encode_group(&mut self.scratch, tag, layout.version);
        update.write_bytes(rec_at, &self.scratch)?;
        crash_point!("vista.xseg.tag_written");
        let tail = self.tail + needed;
        update.store_u64(self.off, tail)?;
        self.tail = tail;
        crash_point!("vista.xseg.tagged");
        Ok(())
    }

    /// Stores the published tail again (the `publish-late` mutant's late store).
    #[cfg(feature = "mutants")]
    pub(crate) fn store_tail(&self, update: &mut Update<'_>, value: u64) -> Result<()> {
        Ok(update.store_u64(self.off, value)?)
    }

    /// The commit point: one atomic store empties the log.
    #[inline]
    pub(crate) fn commit(&mut self, update: &mut Update<'_>) -> Result<()> {
        if self.calls != 0 {
            // A heap or collection call began and never ended (it panicked, and the
            // panic was caught): what it changed is not told apart from the rest, so
            // nothing commits; the caller rolls back, which resets the calls.
            return Err(Error::CallPanicked);
        }
        if self.tail == 0 {
            return Ok(()); // Nothing was logged: nothing to discard.
        }
        crash_point!("vista.commit.before_store");
        update.store_u64(self.off, 0)?;
        self.tail = 0;
        self.logged.clear();
        self.logged_lines = 0;
        crash_point!("vista.commit.after_store");
        Ok(())
    }

    /// Undoes the transaction in progress: before-images back, newest first, the log
    /// emptied last.
    pub(crate) fn abort(
        &mut self,
        update: &mut Update<'_>,
        layout: &Layout,
        path: &Path,
    ) -> Result<()> {
        // Calls still in progress only after a panic inside one (which ends without
        // unmarking); the whole transaction is undone, so they are forgotten.
        self.calls = 0;
        self.floor = 0;
        self.saved.clear();
        if self.tail == 0 {
            return Ok(());
        }
        let records = records(update, layout, self.index, path)?;
        roll_back(
            update,
            layout,
            self.index,
            &records,
            ("vista.abort.partial", "vista.abort.applied"),
        )?;
        self.tail = 0;
        self.logged.clear();
        self.logged_lines = 0;
        Ok(())
    }

    /// Whether an all-or-nothing call began and never ended (it panicked).
    pub(crate) fn in_call(&self) -> bool {
        self.calls != 0
    }

    /// Saves `[offset, offset + len)` (at cache offset `at`, locked exclusively by this
    /// transaction) as it is now, for [`Lane::undo_to`].
    #[cold]
    #[inline(never)]
    fn save(&mut self, update: &Update<'_>, offset: u64, at: u64, len: u64) -> Result<()> {
        let bytes = update.read(at, len)?.to_vec();
        self.saved.push(Saved {
            tail: self.tail,
            offset,
            bytes,
        });
        Ok(())
    }

    /// Marks the log where an all-or-nothing call begins (see
    /// `Transaction::all_or_nothing`): until [`Lane::unmark`] or [`Lane::undo_to`], the
    /// records published after the mark and the bytes saved after it (see `saved`) hold
    /// everything needed to put back what the call changes.
    #[inline]
    pub(crate) fn mark(&mut self) -> Mark {
        let mark = Mark {
            tail: self.tail,
            logged: self.logged.len(),
            saved: self.saved.len(),
            floor: self.floor,
        };
        self.calls += 1;
        self.floor = self.logged.len();
        mark
    }

    /// The call that began at `mark` succeeded: its records stay. Its saved bytes stay
    /// too while an outer call is in progress (they are older than anything that call
    /// changes later, so undoing it newest first still ends on its own start).
    #[inline]
    pub(crate) fn unmark(&mut self, mark: Mark) {
        self.calls -= 1;
        self.floor = mark.floor;
        if self.calls == 0 && !self.saved.is_empty() {
            self.saved.clear();
        }
    }

    /// Undoes what the call that began at `mark` changed: newest first, each record
    /// published since the mark (its before-image copied back) and each range saved
    /// since it; then the tail is stored back to the mark (until that store, a crash
    /// rolls back every record of the transaction: the whole transaction is undone,
    /// which the lost saved bytes do not change). The ranges stay locked, as the
    /// transaction's other ranges do.
    ///
    /// # Errors
    /// As [`Lane::abort`]: [`Error::Corrupt`] if the records were damaged (nothing is
    /// changed then), or an I/O error of a window or the store.
    pub(crate) fn undo_to(
        &mut self,
        update: &mut Update<'_>,
        layout: &Layout,
        path: &Path,
        mark: Mark,
    ) -> Result<()> {
        // Only the records the call published: the log before the mark stays as it is.
        let later = if self.tail == mark.tail {
            Vec::new()
        } else {
            records_from(update, layout, self.index, path, mark.tail)?.0
        };
        let lane_off = layout.lane_off(self.index);
        let mut saved = self.saved[mark.saved..].iter().rev().peekable();
        let mut newer = later.iter().rev().peekable();
        // A record ends where the next begins (the last at the tail); it is newer than
        // a saved range iff it was published after that range was taken.
        let mut end = self.tail;
        loop {
            let record_first = match (newer.peek(), saved.peek()) {
                (Some(_), Some(s)) => end > s.tail,
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if record_first {
                let r = newer.next().expect("peeked");
                restore(update, layout, lane_off, r)?;
                end = r.data_at - LANE_HEADER - undo::RECORD_HEADER;
            } else {
                let s = saved.next().expect("peeked");
                let dst = layout.user_off + s.offset;
                update
                    .window(dst, s.bytes.len() as u64)?
                    .copy_from_slice(&s.bytes);
            }
            crash_point!("vista.abort.partial");
        }
        if self.tail != mark.tail {
            update.store_u64(lane_off, mark.tail)?;
            self.tail = mark.tail;
        }
        self.logged.truncate(mark.logged);
        self.saved.truncate(mark.saved);
        self.calls -= 1;
        self.floor = mark.floor;
        Ok(())
    }

    /// Keeps the lane out of use for the rest of this handle's life: a transaction
    /// across segments whose decision lives in the coordinator slot this lane names
    /// retires it when another member could not store its commit (that member's
    /// recovery still needs the slot, and a later transaction in this lane would write
    /// its own id there; see `crate::group`).
    pub(crate) fn retire(&mut self) {
        self.retired = true;
    }

    /// Whether the lane is ready for the next transaction (its log is empty, its claim
    /// is back, and it is not retired).
    fn is_clear(&self) -> bool {
        self.tail == 0 && self.claim.is_some() && !self.retired
    }
}

/// The published records of lane `lane`, validated. Reads only the published part.
pub(crate) fn records(
    update: &Update<'_>,
    layout: &Layout,
    lane: u32,
    path: &Path,
) -> Result<Vec<Record>> {
    records_tagged(update, layout, lane, path).map(|(r, _)| r)
}

/// As [`records`], with the lane's group record if it has one.
pub(crate) fn records_tagged(
    update: &Update<'_>,
    layout: &Layout,
    lane: u32,
    path: &Path,
) -> Result<(Vec<Record>, Option<undo::GroupTag>)> {
    records_from(update, layout, lane, path, 0)
}

/// As [`records_tagged`], of the records published from log offset `from` on (a tail
/// the lane had).
fn records_from(
    update: &Update<'_>,
    layout: &Layout,
    lane: u32,
    path: &Path,
    from: u64,
) -> Result<(Vec<Record>, Option<undo::GroupTag>)> {
    let off = layout.lane_off(lane);
    let tail = u64::from_le_bytes(update.read(off, 8)?.try_into().expect("8 bytes"));
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        reason: format!("undo lane {lane}: {reason}"),
    };
    if tail > layout.lane_capacity() {
        return Err(corrupt(format!(
            "undo log tail {tail} exceeds the lane capacity {}",
            layout.lane_capacity()
        )));
    }
    let bytes = update.read(off, LANE_HEADER + tail)?;
    undo::parse_from(bytes, from, tail, layout).map_err(corrupt)
}

/// Copies a lane's before-images back, newest first, then empties the lane with one
/// atomic store. `point` names the crash points (`<point>.partial` after each record,
/// `<point>.applied` before the store).
pub(crate) fn roll_back(
    update: &mut Update<'_>,
    layout: &Layout,
    lane: u32,
    records: &[Record],
    point: (&'static str, &'static str),
) -> Result<()> {
    let lane_off = layout.lane_off(lane);
    #[cfg(feature = "mutants")]
    if point.0 == "vista.recover.partial" && crate::mutant::is("recover-clear-first") {
        update.store_u64(lane_off, 0)?; // Mutant: the log is emptied before the undo.
    }
    for r in records.iter().rev() {
        restore(update, layout, lane_off, r)?;
        crash_point!(point.0);
    }
    crash_point!(point.1);
    // The log is marked empty last: until this store, a crash repeats the roll-back,
    // which writes the same before-images again (idempotent).
    update.store_u64(lane_off, 0)?;
    Ok(())
}

/// Copies record `r`'s before-image (in the lane at cache offset `lane_off`) back over
/// the range it covers.
fn restore(update: &mut Update<'_>, layout: &Layout, lane_off: u64, r: &Record) -> Result<()> {
    let src = lane_off + r.data_at;
    let dst = layout.user_off + r.offset;
    let (before, target) = update.window_pair(src..src + r.len, dst..dst + r.len)?;
    target.copy_from_slice(before);
    Ok(())
}

/// Where a lane's log stood when an all-or-nothing call began (see [`Lane::mark`]).
#[derive(Debug, Clone, Copy)]
#[must_use]
pub(crate) struct Mark {
    tail: u64,
    logged: usize,
    saved: usize,
    floor: usize,
}

/// A range's bytes saved for undoing a failed call (see `Lane::saved`).
#[derive(Debug)]
struct Saved {
    /// The published tail when they were saved.
    tail: u64,
    /// User-space offset.
    offset: u64,
    bytes: Vec<u8>,
}

/// The lanes, each behind its own lock, and the transactions waiting for one.
///
/// A transaction takes a lane by locking it (`try_lock`: one compare-and-swap on the
/// lane's own cache line) and holds the guard until it ends. A thread starts with the
/// lane it used last, so on the uncontended path a lane's line stays in its thread's
/// cache and no shared word is written. Only when every lane is held does a
/// transaction wait, on a condition variable, rescanning at least every
/// [`RESCAN`] (a release that races with a waiter going to sleep costs that waiter at
/// most one rescan period, never a lost lane).
#[derive(Debug)]
pub(crate) struct LanePool {
    lanes: Box<[CachePadded<Mutex<Lane>>]>,
    /// Transactions waiting for a lane: releases notify only when this is not zero.
    waiting: AtomicU32,
    wait_lock: Mutex<()>,
    returned: Condvar,
    wait: Duration,
}

/// The longest a waiter for a lane sleeps before it looks again.
const RESCAN: Duration = Duration::from_millis(1);

std::thread_local! {
    /// The lane this thread used last (a hint: any lane is correct).
    static PREFERRED: Cell<u32> = const { Cell::new(u32::MAX) };
}

/// A taken lane: its state, locked until the transaction ends.
pub(crate) type LaneGuard<'p> = MutexGuard<'p, Lane>;

impl LanePool {
    /// Every lane of `layout`, all free (recovery has emptied them), with their claims
    /// in lane order.
    pub(crate) fn new(layout: &Layout, claims: Vec<Claim>, wait: Duration) -> LanePool {
        LanePool {
            lanes: claims
                .into_iter()
                .map(Some)
                .chain(std::iter::repeat_with(|| None))
                .zip(0..layout.lanes)
                .map(|(c, i)| CachePadded::new(Mutex::new(Lane::new(layout, i, c))))
                .collect(),
            waiting: AtomicU32::new(0),
            wait_lock: Mutex::new(()),
            returned: Condvar::new(),
            wait,
        }
    }

    /// A free lane with an empty log, if there is one now: this thread's last lane
    /// first. A lane left with records (its abort failed: the segment is poisoned) is
    /// never handed out again.
    #[inline]
    fn try_take(&self) -> Option<LaneGuard<'_>> {
        let n = self.lanes.len();
        // A thread's first transaction starts at lane 0 (a single-threaded program
        // always uses lane 0); threads that meet there move on and keep the lane they
        // found.
        let preferred = PREFERRED.with(Cell::get) as usize;
        let start = if preferred < n { preferred } else { 0 };
        // Lanes `start..n`, then `0..start`: no division per lane looked at.
        for i in (start..n).chain(0..start) {
            let guard = match self.lanes[i].try_lock() {
                Ok(g) => g,
                // A transaction that panicked: its Drop rolled it back first.
                Err(TryLockError::Poisoned(p)) => p.into_inner(),
                Err(TryLockError::WouldBlock) => continue,
            };
            if guard.is_clear() {
                if i != preferred {
                    PREFERRED.with(|p| p.set(i as u32));
                }
                return Some(guard);
            }
        }
        None
    }

    /// Takes a free lane, waiting up to the pool's wait for one.
    ///
    /// # Errors
    /// [`Error::LanesBusy`] if every lane stayed in use for the whole wait.
    #[inline]
    pub(crate) fn take(&self) -> Result<LaneGuard<'_>> {
        if let Some(g) = self.try_take() {
            return Ok(g);
        }
        self.take_slow()
    }

    #[inline(never)]
    fn take_slow(&self) -> Result<LaneGuard<'_>> {
        let deadline = rio_cache::deadline_after(self.wait);
        self.waiting.fetch_add(1, Ordering::SeqCst);
        let result = loop {
            let guard = self
                .wait_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(g) = self.try_take() {
                break Ok(g);
            }
            let now = Instant::now();
            if now >= deadline {
                break Err(Error::LanesBusy {
                    lanes: self.lanes.len() as u32,
                    waited: self.wait,
                });
            }
            drop(
                self.returned
                    .wait_timeout(guard, RESCAN.min(deadline - now))
                    .unwrap_or_else(PoisonError::into_inner),
            );
        };
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        result
    }

    /// Gives a lane back (the guard is dropped) and wakes a waiter if there is one.
    // Always inlined into the transaction's end, the wake-up out of line (about 20
    // instructions a transaction; docs/benchmarks.md, "Hot path").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn give_back(&self, mut lane: LaneGuard<'_>) {
        lane.heap.clear();
        drop(lane);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            self.wake_one();
        }
    }

    /// Wakes one transaction waiting for a lane.
    #[cold]
    #[inline(never)]
    fn wake_one(&self) {
        let _g = self
            .wait_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.returned.notify_one();
    }
}

/// A real shared cache shaped by `layout`, and its lane claims, for pool tests.
#[cfg(test)]
fn test_claims(layout: &Layout) -> (tempfile::TempDir, rio_cache::SharedCache, Vec<Claim>) {
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::options::Options::new()
        .writeback(rio_cache::Writeback::Manual)
        .cache_dir(dir.path())
        .rio(layout.total().unwrap());
    let cache = rio_cache::RioCache::open(dir.path().join("seg"), &opts).unwrap();
    let (shared, claims) = rio_cache::SharedCache::with_claims(
        cache,
        layout.lanes_off..layout.lane_off(layout.lanes),
        u64::from(layout.lanes),
    )
    .unwrap();
    (dir, shared, claims)
}

/// Model-checked test: threads take and give back lanes under shuttle's randomized and
/// PCT schedulers; no lane is ever held twice, every thread gets one, and all return.
/// (shuttle's `wait_timeout` never times out, so the pool's wait is tested for
/// progress, not for its timeout, which the plain unit test covers.)
#[cfg(all(test, feature = "shuttle"))]
mod shuttle_tests {
    use super::*;
    use crate::options::Options;
    use shuttle::sync::atomic::{AtomicBool, Ordering};
    use shuttle::sync::Arc;

    fn lanes_are_exclusive() {
        let layout = Layout::for_options(&Options::new().size(4096).lanes(2)).unwrap();
        let (_dir, _cache, claims) = test_claims(&layout);
        let pool = Arc::new(LanePool::new(&layout, claims, Duration::from_secs(3600)));
        let in_use: Arc<Vec<AtomicBool>> =
            Arc::new((0..2).map(|_| AtomicBool::new(false)).collect());
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let (pool, in_use) = (Arc::clone(&pool), Arc::clone(&in_use));
                shuttle::thread::spawn(move || {
                    for _ in 0..2 {
                        let lane = pool.take().unwrap();
                        let i = lane.index() as usize;
                        assert!(
                            !in_use[i].swap(true, Ordering::SeqCst),
                            "lane {i} held twice"
                        );
                        shuttle::thread::yield_now();
                        in_use[i].store(false, Ordering::SeqCst);
                        pool.give_back(lane);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        for l in &*pool.lanes {
            assert!(l.try_lock().is_ok(), "every lane is free again");
        }
    }

    #[test]
    fn lane_pool_under_random_schedules() {
        shuttle::check_random(lanes_are_exclusive, 1000);
    }

    #[test]
    fn lane_pool_under_pct_schedules() {
        shuttle::check_pct(lanes_are_exclusive, 1000, 3);
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use super::*;
    use crate::options::Options;

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn lanes_are_handed_out_once_and_waiters_time_out_with_a_typed_error() {
        let layout = Layout::for_options(&Options::new().size(4096).lanes(2)).unwrap();
        let (_dir, _cache, claims) = test_claims(&layout);
        let pool = LanePool::new(&layout, claims, Duration::from_millis(1));
        let a = pool.take().unwrap();
        let b = pool.take().unwrap();
        assert_ne!(a.index(), b.index());
        assert!(matches!(
            pool.take(),
            Err(Error::LanesBusy { lanes: 2, .. })
        ));
        pool.give_back(a);
        let c = pool.take().unwrap();
        assert_ne!(c.index(), b.index());
        drop(c);
        // A lane without its claim (its transaction's update kept it) is not handed out.
        let mut d = pool.take().unwrap();
        let lost = d.claim.take();
        assert!(lost.is_some());
        drop(d);
        drop(b);
        let e = pool.take().unwrap();
        assert!(
            matches!(pool.take(), Err(Error::LanesBusy { .. })),
            "{}",
            e.index()
        );
    }
}
