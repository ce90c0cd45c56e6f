//! Transactions: write-ahead undo in the transaction's lane, the commit store, abort,
//! and the range locks that isolate transactions of different threads.

use std::cell::Cell;
use std::path::Path;

use crash_point::crash_point;
use rio_cache::Update;

use crate::error::{Error, Poison, Result};
use crate::lane::{Lane, LaneGuard, LanePool};
use crate::layout::Layout;

/// What a transaction borrows from its segment.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Context<'s> {
    pub(crate) layout: &'s Layout,
    pub(crate) lanes: &'s LanePool,
    pub(crate) poison: &'s Poison,
    pub(crate) path: &'s Path,
}

/// A transaction. Changes are made in place; [`Transaction::commit`] keeps them,
/// [`Transaction::abort`] (or dropping the transaction, also while unwinding from a
/// panic) undoes them. Either way the transaction's range locks and its undo lane are
/// released when it ends.
///
/// Every range it reads is locked shared (exclusively if read with
/// [`Transaction::read_for_update`]) and every range it changes exclusively, until
/// it ends (strict two-phase locking), so transactions of different threads are
/// serializable and never see each other's uncommitted bytes. A range another
/// transaction holds is waited for up to the lock wait, then refused with
/// [`Error::Conflict`]; the transaction should then be dropped and run again
/// ([`crate::Segment::transaction`] does this).
///
/// A transaction is not `Send`: protection keys are per thread.
#[derive(Debug)]
pub struct Transaction<'s> {
    /// `None` only after `commit_durable` handed it to the checkpoint.
    update: Option<Update<'s>>,
    /// `None` only once returned to the pool.
    lane: Option<LaneGuard<'s>>,
    cx: Context<'s>,
    /// Undo records are assembled in memory and written through the memory image
    /// (under `mprotect`: it keeps the lane read-only and saves an `mprotect` pair).
    write_through: bool,
    finished: bool,
    /// One of its calls failed with [`Error::Conflict`].
    conflicted: Cell<bool>,
    /// Its last call that reads or changes bytes failed with [`Error::Conflict`] (see
    /// [`crate::Segment::transaction`]).
    last_conflicted: Cell<bool>,
}

impl<'s> Transaction<'s> {
    // Always inlined: the transaction value is then built (or consumed) in the
    // caller's frame instead of moved, about 50 instructions a transaction
    // (docs/benchmarks.md, "Hot path").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn new(update: Update<'s>, lane: LaneGuard<'s>, cx: Context<'s>) -> Transaction<'s> {
        let write_through = update.protection() == rio_cache::ActiveProtection::Mprotect;
        Transaction {
            update: Some(update),
            lane: Some(lane),
            cx,
            write_through,
            finished: false,
            conflicted: Cell::new(false),
            last_conflicted: Cell::new(false),
        }
    }

    /// A read-only transaction (see [`crate::Segment::begin_read`]): no lane, nothing to
    /// commit or roll back; `update` is a reader of the cache.
    #[inline]
    pub(crate) fn reader(update: Update<'s>, cx: Context<'s>) -> Transaction<'s> {
        Transaction {
            update: Some(update),
            lane: None,
            cx,
            write_through: false,
            finished: true,
            conflicted: Cell::new(false),
            last_conflicted: Cell::new(false),
        }
    }

    /// The heap blocks this transaction freed (kept in its lane, so that a transaction
    /// value stays small; see `crate::heap`). `None` for a read-only transaction, which
    /// frees nothing.
    pub(crate) fn freed(&self) -> Option<&crate::tx_heap::TxHeap> {
        self.lane.as_deref().map(|l| &l.heap)
    }

    /// As [`Transaction::freed`], to record a block freed.
    pub(crate) fn freed_mut(&mut self) -> Option<&mut crate::tx_heap::TxHeap> {
        self.lane.as_deref_mut().map(|l| &mut l.heap)
    }

    /// Whether this transaction only reads (begun by [`crate::Segment::begin_read`] or
    /// [`crate::Segment::read_transaction`]): every call that would change bytes fails
    /// with [`Error::ReadOnly`].
    pub fn is_read_only(&self) -> bool {
        self.lane.is_none()
    }

    /// The update and the lane, both alive until the transaction ends.
    fn parts(&mut self) -> (&mut Update<'s>, &mut Lane) {
        (
            self.update
                .as_mut()
                .expect("the update lives until the transaction ends"),
            self.lane
                .as_mut()
                .expect("the lane is held until the transaction ends"),
        )
    }

    /// Declares that `[offset, offset + len)` will change: the range is locked, its
    /// before-image is logged and published before this returns. Returns the bytes to
    /// change in place.
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::UndoLogFull`] (the transaction stays usable);
    /// [`Error::Conflict`]; [`Error::HeldByThisThread`] (a read guard or another
    /// transaction of this thread holds part of the range); [`Error::ReadOnly`] in a
    /// read-only transaction.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn set_range(&mut self, offset: u64, len: u64) -> Result<&mut [u8]> {
        let at = self.cx.layout.user_range(offset, len)?;
        let (layout, wt) = (self.cx.layout, self.write_through);
        let (conflicted, last) = (&self.conflicted, &self.last_conflicted);
        let update = self
            .update
            .as_mut()
            .expect("the update lives until the transaction ends");
        let Some(lane) = self.lane.as_mut() else {
            return Err(Error::ReadOnly { offset, len });
        };
        let logged = lane
            .log(update, layout, offset, len, at, wt)
            .map_err(|e| e.at_user_range(offset, len));
        let conflict = matches!(logged, Err(Error::Conflict { .. }));
        last.set(conflict);
        if conflict {
            conflicted.set(true);
        }
        logged
    }

    /// Locks `[offset, offset + len)` exclusively and returns it for writing WITHOUT
    /// logging a before-image: only for bytes whose old contents no committed state
    /// needs (a heap block that was free when this transaction began).
    pub(crate) fn window_unlogged(&mut self, offset: u64, len: u64) -> Result<&mut [u8]> {
        let at = self.to_change(offset, len)?;
        let update = self
            .update
            .as_mut()
            .expect("the update lives until the transaction ends");
        let w = update.window(at, len);
        let conflict = matches!(w, Err(rio_cache::Error::Conflict { .. }));
        self.last_conflicted.set(conflict);
        if conflict {
            self.conflicted.set(true);
        }
        w.map_err(|e| Error::from(e).at_user_range(offset, len))
    }

    /// Where `[offset, offset + len)` of user space is in the cache, for a call that
    /// locks it to change it: out of range, or in a read-only transaction, refused.
    fn to_change(&self, offset: u64, len: u64) -> Result<u64> {
        let at = self.cx.layout.user_range(offset, len)?;
        if self.lane.is_none() {
            return Err(Error::ReadOnly { offset, len });
        }
        Ok(at)
    }

    /// Bytes of user space of the segment (its length now).
    pub(crate) fn segment_len(&self) -> u64 {
        self.cx.layout.user_len
    }

    /// Writes `bytes` at `offset`: [`Transaction::set_range`] plus the copy.
    ///
    /// # Errors
    /// As [`Transaction::set_range`].
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        #[cfg(feature = "mutants")]
        if crate::mutant::is("commit-early") {
            return self.write_commit_early(offset, bytes);
        }
        let dst = self.set_range(offset, bytes.len() as u64)?;
        if crash_point::enabled() {
            // Two halves, so that a crash point can stop the write in the middle.
            let half = bytes.len() / 2;
            dst[..half].copy_from_slice(&bytes[..half]);
            crash_point!("vista.write.partial");
            dst[half..].copy_from_slice(&bytes[half..]);
        } else {
            dst.copy_from_slice(bytes);
        }
        #[cfg(feature = "mutants")]
        if crate::mutant::is("publish-late") {
            // Mutant: the record is published only now, after the data changed.
            let (update, lane) = self.parts();
            lane.store_tail(update, lane.tail())?;
        }
        Ok(())
    }

    /// Mutant `commit-early`: the commit store (an empty log) precedes the data write.
    #[cfg(feature = "mutants")]
    fn write_commit_early(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        let at = self.cx.layout.user_range(offset, len)?;
        let (layout, wt) = (self.cx.layout, self.write_through);
        let (update, lane) = self.parts();
        lane.log(update, layout, offset, len, at, wt)?;
        lane.store_tail(update, 0)?;
        update.window(at, len)?.copy_from_slice(bytes);
        crash_point!("vista.write.partial");
        lane.store_tail(update, lane.tail())?;
        Ok(())
    }

    /// Writes a plain-old-data value at `offset`.
    ///
    /// # Errors
    /// As [`Transaction::set_range`].
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn put<T: bytemuck::NoUninit>(&mut self, offset: u64, value: &T) -> Result<()> {
        self.write(offset, bytemuck::bytes_of(value))
    }

    /// The current bytes `[offset, offset + len)`, including this transaction's
    /// changes. The range is locked shared until the transaction ends.
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::Conflict`]; [`Error::HeldByThisThread`] (another
    /// transaction of this thread holds part of the range exclusively).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn read(&self, offset: u64, len: u64) -> Result<&[u8]> {
        let at = self.cx.layout.user_range(offset, len)?;
        self.noted(self.update().read(at, len), offset, len)
    }

    /// The update, alive until the transaction ends.
    #[inline]
    fn update(&self) -> &Update<'s> {
        self.update
            .as_ref()
            .expect("the update lives until the transaction ends")
    }

    /// The result of a read of `[offset, offset + len)` of user space, noted (a conflict
    /// or not) and in vista's terms.
    #[inline]
    fn noted<'a>(
        &self,
        read: rio_cache::Result<&'a [u8]>,
        offset: u64,
        len: u64,
    ) -> Result<&'a [u8]> {
        self.note(matches!(read, Err(rio_cache::Error::Conflict { .. })));
        read.map_err(|e| Error::from(e).at_user_range(offset, len))
    }

    /// The current bytes `[offset, offset + len)`, for a transaction that will change
    /// them: the range is locked exclusively until the transaction ends (as by
    /// [`Transaction::set_range`]), but nothing is logged until it is changed.
    ///
    /// Use it for a read that a write of the same bytes follows (read-modify-write). A
    /// [`Transaction::read`] locks shared, and the write must then upgrade the lock: that
    /// costs more, and two transactions that both read and then change the same range
    /// each wait for the other to give up its share, until one fails with
    /// [`Error::Conflict`] and runs again. Read for update, the second one waits for the
    /// first to end instead. The price: no other transaction may read the range
    /// meanwhile.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] in a read-only transaction; [`Error::OutOfRange`];
    /// [`Error::Conflict`]; [`Error::HeldByThisThread`] if a read guard or read-only
    /// transaction of this thread holds the range.
    pub fn read_for_update(&self, offset: u64, len: u64) -> Result<&[u8]> {
        let at = self.to_change(offset, len)?;
        self.noted(self.update().read_for_update(at, len), offset, len)
    }

    /// Reads a plain-old-data value at `offset` for a transaction that will change it:
    /// [`Transaction::read_for_update`] of its bytes.
    ///
    /// # Errors
    /// As [`Transaction::read_for_update`].
    pub fn get_for_update<T: bytemuck::AnyBitPattern>(&self, offset: u64) -> Result<T> {
        let b = self.read_for_update(offset, std::mem::size_of::<T>() as u64)?;
        Ok(bytemuck::pod_read_unaligned(b))
    }

    /// Records whether the call just made failed with a conflict.
    #[inline]
    fn note(&self, conflict: bool) {
        self.last_conflicted.set(conflict);
        if conflict {
            self.conflicted.set(true);
        }
    }

    /// Whether the last call that read or changed bytes failed with
    /// [`Error::Conflict`]: the rule by which [`crate::Segment::transaction`] runs its
    /// closure again.
    pub(crate) fn last_call_conflicted(&self) -> bool {
        self.last_conflicted.get()
    }

    /// Whether one of this transaction's calls failed with [`Error::Conflict`] (it
    /// should then be aborted and run again).
    pub fn conflicted(&self) -> bool {
        self.conflicted.get()
    }

    /// Reads a plain-old-data value at `offset`, including this transaction's changes.
    ///
    /// # Errors
    /// As [`Transaction::read`].
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn get<T: bytemuck::AnyBitPattern>(&self, offset: u64) -> Result<T> {
        let b = self.read(offset, std::mem::size_of::<T>() as u64)?;
        Ok(bytemuck::pod_read_unaligned(b))
    }

    /// Bytes of undo log this transaction has used, and the capacity.
    pub fn undo_log_usage(&self) -> (u64, u64) {
        let tail = self.lane.as_deref().map_or(0, Lane::tail);
        (tail, self.cx.layout.lane_capacity())
    }

    /// The undo lane this transaction owns.
    pub fn lane(&self) -> u32 {
        self.lane.as_deref().map_or(0, Lane::index)
    }

    /// Commits: one atomic store empties the undo log. From that store on, the
    /// transaction survives any crash of the process (and power loss once a checkpoint
    /// has followed; see [`Transaction::commit_durable`]). Its locks are released after
    /// the store, so no other transaction sees its changes before they are committed.
    ///
    /// # Errors
    /// An I/O error if the commit store fails (under [`crate::Protection::Mprotect`] it
    /// is a `pwrite` into the memory image). The transaction is then rolled back, as by
    /// [`Transaction::abort`], before this returns; if the roll-back fails too, the
    /// segment is poisoned. Either way none of its changes survive. [`Error::CallPanicked`]
    /// (rolled back the same way) if a heap or collection call of this transaction
    /// panicked part way and the panic was caught.
    // Always inlined: the transaction value is then built (or consumed) in the
    // caller's frame instead of moved, about 50 instructions a transaction
    // (docs/benchmarks.md, "Hot path").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn commit(mut self) -> Result<()> {
        self.commit_point()
    }

    /// Commits, then waits for a checkpoint: on return the transaction survives power
    /// loss.
    ///
    /// # Errors
    /// As [`Transaction::commit`] for the commit itself; I/O errors from the checkpoint
    /// (the commit then stands; the segment is poisoned); [`Error::Cache`] if this thread
    /// has another transaction open (the checkpoint would wait for it forever; the commit
    /// stands).
    pub fn commit_durable(mut self) -> Result<()> {
        self.commit_point()?;
        #[cfg(feature = "mutants")]
        if crate::mutant::is("durable-no-checkpoint") {
            return Ok(()); // Mutant: acknowledged as durable without a checkpoint.
        }
        // `finished` is set: Drop does nothing more. The update ends (its locks are
        // released), then checkpoints.
        let update = self.end_update().expect("the update lives until now");
        match update.checkpoint() {
            Ok(()) => Ok(()),
            Err(
                e @ (rio_cache::Error::InUpdate
                | rio_cache::Error::CheckpointBusy { .. }
                | rio_cache::Error::Fenced),
            ) => Err(Error::from(e)),
            Err(e) => {
                let e = Error::from(e);
                self.cx.poison.set(e.to_string());
                Err(e)
            }
        }
    }

    /// Marks the transaction as part of a transaction across segments (see
    /// `crate::group`): publishes a group record in its lane, after which recovery asks
    /// the coordinator the record names whether to undo the lane or keep it.
    pub(crate) fn tag(&mut self, tag: &crate::undo::GroupTag) -> Result<()> {
        let layout = self.cx.layout;
        let (update, lane) = self.parts();
        lane.tag(update, layout, tag)
    }

    /// The commit store of a member of a transaction across segments whose coordinator
    /// has already decided it committed. Unlike [`Transaction::commit`], a failed store
    /// does not roll back (the decision stands): the segment is poisoned, the lane keeps
    /// its records and the ranges stay locked, and the next open keeps the changes (it
    /// asks the coordinator).
    pub(crate) fn commit_decided(mut self) -> Result<()> {
        self.finished = true;
        let (update, lane) = self.parts();
        let stored = lane.commit(update);
        if let Err(e) = &stored {
            let why = format!("a decided transaction across segments could not commit: {e}");
            let update = self
                .update
                .as_mut()
                .expect("the update lives until the transaction ends");
            update.poison(why.clone());
            update.keep_locked();
            self.cx.poison.set(why);
        }
        stored
    }

    /// Runs `f`, one call of the heap or a collection that may change several ranges,
    /// all or nothing: if `f` fails, every change it made is undone (its records'
    /// before-images copied back and the log cut back to where it began) and the
    /// transaction stays usable, as after a failed `write`. So an `UndoLogFull` in the
    /// middle of an `alloc` leaves no half-changed heap for a commit to keep. Calls
    /// nest. In a read-only transaction `f` just runs (it changes nothing).
    ///
    /// If the undo itself fails (a damaged log), the segment is poisoned and the ranges
    /// stay locked, as for a failed roll-back, and that error is returned.
    #[inline]
    pub(crate) fn all_or_nothing<T>(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let Some(mark) = self.lane.as_mut().map(|l| l.mark()) else {
            return f(self);
        };
        #[cfg(feature = "mutants")]
        if crate::mutant::is("heap-call-half-kept") {
            // Mutant: a failed call keeps whatever it changed before it failed.
            let out = f(self);
            if let Some(lane) = self.lane.as_mut() {
                lane.unmark(mark);
            }
            return out;
        }
        match f(self) {
            Ok(v) => {
                if let Some(lane) = self.lane.as_mut() {
                    lane.unmark(mark);
                }
                Ok(v)
            }
            Err(e) => Err(self.undo_call(mark, e)),
        }
    }

    /// The failure of an all-or-nothing call begun at `mark` with error `e`: undoes
    /// what the call changed and returns the error to report.
    #[cold]
    #[inline(never)]
    fn undo_call(&mut self, mark: crate::lane::Mark, e: Error) -> Error {
        let (layout, path, poison) = (self.cx.layout, self.cx.path, self.cx.poison);
        let (update, lane) = self.parts();
        if let Err(undo) = lane.undo_to(update, layout, path, mark) {
            let why = format!("undoing a failed call's changes failed: {undo}");
            update.poison(why.clone());
            update.keep_locked();
            poison.set(why);
            // Not a conflict to run again: the segment is poisoned.
            self.note(false);
            return undo;
        }
        // The rule of `Segment::transaction` looks at the call's own error.
        self.note(matches!(e, Error::Conflict { .. }));
        e
    }

    /// [`Error::Poisoned`] if the segment or its cache is poisoned (a checkpoint that
    /// failed while this transaction ran poisons the cache only): such a transaction
    /// must not commit.
    #[inline]
    pub(crate) fn check_poisoned(&self) -> Result<()> {
        self.cx.poison.check()?;
        Ok(self.update().check_poison()?)
    }

    /// Whether a heap or collection call of this transaction began and never ended: it
    /// panicked, and the panic was caught. Such a transaction must not commit.
    #[inline]
    pub(crate) fn in_unfinished_call(&self) -> bool {
        self.lane.as_deref().is_some_and(Lane::in_call)
    }

    /// Keeps this transaction's lane out of use once it ends (see `Lane::retire`).
    pub(crate) fn retire_lane(&mut self) {
        if let Some(lane) = self.lane.as_mut() {
            lane.retire();
        }
    }

    /// Undoes every change: the before-images are copied back, newest first, and the
    /// log is emptied last.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the undo log was damaged (by a wild store); nothing is
    /// changed then, the segment is poisoned, and reopening reports the damage.
    pub fn abort(mut self) -> Result<()> {
        self.finished = true;
        self.roll_back()
    }

    #[inline]
    fn commit_point(&mut self) -> Result<()> {
        if self.lane.is_none() {
            // A read-only transaction: nothing to commit; its locks go when it drops.
            self.finished = true;
            return Ok(());
        }
        // A poisoned segment commits nothing more: the transaction is rolled back.
        #[cfg(feature = "mutants")]
        let unchecked = crate::mutant::is("commit-after-poison");
        #[cfg(not(feature = "mutants"))]
        let unchecked = false;
        // The segment's poison, and the cache's: a checkpoint that failed while this
        // transaction ran poisons the cache only.
        let poisoned = if unchecked {
            Ok(())
        } else {
            self.check_poisoned()
        };
        if let Err(e) = poisoned {
            self.finished = true;
            let _ = self.roll_back();
            return Err(e);
        }
        let (update, lane) = self.parts();
        let stored = lane.commit(update);
        // Finished either way: committed, or rolled back here (not again in Drop).
        self.finished = true;
        if let Err(e) = stored {
            // The store did not happen (a failed `pwrite` or `mprotect` changes nothing;
            // `CallPanicked` refuses before it), so the published log still covers every
            // change: undo them now, or the
            // lane would go back to the pool with these changes in it. A roll-back that
            // fails poisons the segment (see `roll_back`) and keeps the lane out of use.
            let _ = self.roll_back();
            return Err(e);
        }
        Ok(())
    }

    fn roll_back(&mut self) -> Result<()> {
        if self.lane.is_none() {
            return Ok(()); // A read-only transaction changed nothing.
        }
        let (layout, path, poison) = (self.cx.layout, self.cx.path, self.cx.poison);
        let (update, lane) = self.parts();
        let result = lane.abort(update, layout, path);
        if let Err(e) = &result {
            // The data may be half restored: no checkpoint may capture it, and no other
            // transaction may touch it or commit over it (the next open's recovery
            // applies this lane's records again). The segment is poisoned first, then
            // the ranges stay locked until the process ends.
            let why = format!("a transaction's roll-back failed: {e}");
            update.poison(why.clone());
            poison.set(why);
            #[cfg(feature = "mutants")]
            let keep = !crate::mutant::is("release-after-failed-undo");
            #[cfg(not(feature = "mutants"))]
            let keep = true;
            if keep {
                update.keep_locked();
            }
        }
        result
    }

    /// Ends the update (closing windows, releasing locks), keeping the lane's memo of
    /// opened pages; returns it for a checkpoint to consume.
    #[inline]
    fn end_update(&mut self) -> Option<Update<'s>> {
        self.hand_back();
        self.update.take()
    }

    /// Gives the lane back its memo of opened pages and its claim from the update.
    #[inline]
    fn hand_back(&mut self) {
        if let (Some(update), Some(lane)) = (self.update.as_mut(), self.lane.as_mut()) {
            update.memo_into(&mut lane.memo);
            lane.claim = update.release_claim();
        }
    }
}

impl Drop for Transaction<'_> {
    /// Aborts an unfinished transaction, then releases its locks and its lane. An abort
    /// that fails (a damaged undo log) poisons the segment instead of panicking;
    /// reopening reports the damage.
    #[inline]
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            let _ = self.roll_back();
        }
        // Ended in place (closing windows, releasing locks): no move of the update.
        self.hand_back();
        self.update = None;
        if let Some(lane) = self.lane.take() {
            self.cx.lanes.give_back(lane);
        }
    }
}

impl crate::retry::Attempt for Transaction<'_> {
    #[inline]
    fn commit(&mut self) -> Result<()> {
        self.commit_point()
    }
    fn abort(self) -> Result<()> {
        Transaction::abort(self)
    }
    fn last_call_conflicted(&self) -> bool {
        Transaction::last_call_conflicted(self)
    }
}

#[cfg(test)]
mod tests {
    use crate::{Error, Options, Protection, Segment, Writeback};

    fn segment(dir: &std::path::Path, guard: Protection) -> Segment {
        let opts = Options::new()
            .protection(guard)
            .writeback(Writeback::Manual)
            .cache_dir(dir)
            .size(1 << 20);
        Segment::open(dir.join("seg"), &opts).unwrap()
    }

    fn guards() -> [Protection; 3] {
        [Protection::None, Protection::Mprotect, Protection::Alias]
    }

    /// A failed call puts back every byte as the call found it: a word the transaction
    /// logged before the call (saved in memory when the call first changes it), a wider
    /// range around it logged inside the call (its before-image holds the call's own
    /// change, so it must be applied before the saved word), and a range the call
    /// logged first; calls nest.
    #[test]
    fn a_failed_call_puts_back_what_it_changed_in_order() {
        for guard in guards() {
            let dir = tempfile::tempdir().unwrap();
            let seg = segment(dir.path(), guard);
            let mut tx = seg.begin().unwrap();
            tx.put(64, &1u64).unwrap();
            let failed = tx.all_or_nothing(|tx| {
                tx.put(64, &2u64)?; // covered by the record before the call
                tx.write(56, &[3u8; 24])?; // a new record: its image holds the 2
                tx.put(512, &4u64)?; // first logged in the call
                Err::<(), _>(Error::ReadOnly { offset: 0, len: 0 })
            });
            assert!(failed.is_err());
            assert_eq!(
                tx.get::<u64>(64).unwrap(),
                1,
                "{guard:?}: the word before the call"
            );
            assert_eq!(tx.get::<u64>(56).unwrap(), 0, "{guard:?}");
            assert_eq!(tx.get::<u64>(72).unwrap(), 0, "{guard:?}");
            assert_eq!(tx.get::<u64>(512).unwrap(), 0, "{guard:?}");
            // Nested: the inner call fails alone, the outer keeps its own change.
            tx.all_or_nothing(|tx| {
                tx.put(64, &5u64)?;
                let inner = tx.all_or_nothing(|tx| {
                    tx.put(64, &6u64)?;
                    tx.put(1024, &7u64)?;
                    Err::<(), _>(Error::ReadOnly { offset: 0, len: 0 })
                });
                assert!(inner.is_err());
                assert_eq!(tx.get::<u64>(64)?, 5);
                assert_eq!(tx.get::<u64>(1024)?, 0);
                Ok(())
            })
            .unwrap();
            // An inner call succeeds, the outer fails: both are undone.
            let outer = tx.all_or_nothing(|tx| {
                tx.all_or_nothing(|tx| tx.put(64, &8u64))?;
                tx.put(2048, &9u64)?;
                Err::<(), _>(Error::ReadOnly { offset: 0, len: 0 })
            });
            assert!(outer.is_err());
            assert_eq!(tx.get::<u64>(64).unwrap(), 5, "{guard:?}");
            assert_eq!(tx.get::<u64>(2048).unwrap(), 0, "{guard:?}");
            tx.commit().unwrap();
            assert_eq!(seg.get::<u64>(64).unwrap(), 5, "{guard:?}");
            // An abort after failed calls restores the state before the transaction.
            let mut tx = seg.begin().unwrap();
            tx.put(64, &10u64).unwrap();
            let _ = tx.all_or_nothing(|tx| {
                tx.put(64, &11u64)?;
                Err::<(), _>(Error::ReadOnly { offset: 0, len: 0 })
            });
            tx.abort().unwrap();
            assert_eq!(seg.get::<u64>(64).unwrap(), 5, "{guard:?}");
        }
    }
}
