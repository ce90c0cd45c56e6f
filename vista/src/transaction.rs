//! Transactions: write-ahead undo, the commit store, abort.

use std::path::Path;

use crash_point::crash_point;
use rio_cache::Update;

use crate::error::{Error, Result};
use crate::layout::{Layout, LANE_HEADER};
use crate::segment::{check_range, lane_records, roll_back};
use crate::undo;

/// The lane transactions use today (the format has room for more).
const LANE: u32 = 0;

/// How many recently logged ranges are checked before logging a range again. A range
/// inside one of them is not logged twice; beyond them a second record is harmless
/// (roll-back applies newest first, so the oldest before-image wins).
const DEDUP_WINDOW: usize = 16;

/// A transaction. Changes are made in place; [`Transaction::commit`] keeps them,
/// [`Transaction::abort`] (or dropping the transaction) undoes them.
#[derive(Debug)]
pub struct Transaction<'s> {
    /// `None` only after `commit_durable` handed it to the checkpoint.
    update: Option<Update<'s>>,
    layout: &'s Layout,
    logged: &'s mut Vec<(u64, u64)>,
    scratch: &'s mut Vec<u8>,
    poisoned: &'s mut Option<String>,
    path: &'s Path,
    /// Published bytes of undo records in the lane.
    tail: u64,
    /// Undo records are assembled in `scratch` and written through the memory image
    /// (under `mprotect`: it keeps the lane read-only and saves an `mprotect` pair).
    write_through: bool,
    finished: bool,
}

impl<'s> Transaction<'s> {
    pub(crate) fn new(
        update: Update<'s>,
        layout: &'s Layout,
        logged: &'s mut Vec<(u64, u64)>,
        scratch: &'s mut Vec<u8>,
        poisoned: &'s mut Option<String>,
        path: &'s Path,
    ) -> Transaction<'s> {
        let write_through = update.protection() == rio_cache::ActiveProtection::Mprotect;
        Transaction {
            update: Some(update),
            layout,
            logged,
            scratch,
            poisoned,
            path,
            tail: 0,
            write_through,
            finished: false,
        }
    }

    fn update(&mut self) -> &mut Update<'s> {
        self.update
            .as_mut()
            .expect("the update lives until the transaction ends")
    }

    /// Declares that `[offset, offset + len)` will change: its before-image is logged
    /// and published before this returns. Returns the bytes to change in place.
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::UndoLogFull`] (the transaction stays usable).
    pub fn set_range(&mut self, offset: u64, len: u64) -> Result<&mut [u8]> {
        let at = check_range(self.layout, offset, len)?;
        self.log(offset, len, at)?;
        Ok(self.update().window(at, len)?)
    }

    /// Writes `bytes` at `offset`: [`Transaction::set_range`] plus the copy.
    ///
    /// # Errors
    /// As [`Transaction::set_range`].
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
            let (lane, tail) = (self.layout.lane_off(LANE), self.tail);
            self.update().store_u64(lane, tail)?;
        }
        Ok(())
    }

    /// Mutant `commit-early`: the commit store (an empty log) precedes the data write.
    #[cfg(feature = "mutants")]
    fn write_commit_early(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        let at = check_range(self.layout, offset, len)?;
        self.log(offset, len, at)?;
        let lane = self.layout.lane_off(LANE);
        self.update().store_u64(lane, 0)?;
        let dst = self.update().window(at, len)?;
        dst.copy_from_slice(bytes);
        crash_point!("vista.write.partial");
        let tail = self.tail;
        self.update().store_u64(lane, tail)?;
        Ok(())
    }

    /// Writes a plain-old-data value at `offset`.
    ///
    /// # Errors
    /// As [`Transaction::set_range`].
    pub fn put<T: bytemuck::NoUninit>(&mut self, offset: u64, value: &T) -> Result<()> {
        self.write(offset, bytemuck::bytes_of(value))
    }

    /// The current bytes `[offset, offset + len)`, including this transaction's
    /// changes.
    ///
    /// # Errors
    /// [`Error::OutOfRange`].
    pub fn read(&self, offset: u64, len: u64) -> Result<&[u8]> {
        let at = check_range(self.layout, offset, len)?;
        Ok(self
            .update
            .as_ref()
            .expect("the update lives until the transaction ends")
            .read(at, len)?)
    }

    /// Reads a plain-old-data value at `offset`, including this transaction's changes.
    ///
    /// # Errors
    /// [`Error::OutOfRange`].
    pub fn get<T: bytemuck::AnyBitPattern>(&self, offset: u64) -> Result<T> {
        let b = self.read(offset, std::mem::size_of::<T>() as u64)?;
        Ok(bytemuck::pod_read_unaligned(b))
    }

    /// Bytes of undo log this transaction has used, and the capacity.
    pub fn undo_log_usage(&self) -> (u64, u64) {
        (self.tail, self.layout.lane_capacity())
    }

    /// Commits: one atomic store empties the undo log. From that store on, the
    /// transaction survives any crash of the process (and power loss once a checkpoint
    /// has followed; see [`Transaction::commit_durable`]).
    ///
    /// # Errors
    /// An I/O error if the commit store fails (under [`crate::Protection::Mprotect`] it
    /// is a `pwrite` into the memory image). The transaction is then rolled back, as by
    /// [`Transaction::abort`], before this returns; if the roll-back fails too, the
    /// segment is poisoned. Either way none of its changes survive.
    pub fn commit(mut self) -> Result<()> {
        self.commit_point()?;
        Ok(())
    }

    /// Commits, then waits for a checkpoint: on return the transaction survives power
    /// loss.
    ///
    /// # Errors
    /// As [`Transaction::commit`] for the commit itself; I/O errors from the checkpoint
    /// (the commit then stands; the segment is poisoned).
    pub fn commit_durable(mut self) -> Result<()> {
        self.commit_point()?;
        #[cfg(feature = "mutants")]
        if crate::mutant::is("durable-no-checkpoint") {
            return Ok(()); // Mutant: acknowledged as durable without a checkpoint.
        }
        // `finished` is set: Drop does nothing more. The update ends, then checkpoints.
        let update = self
            .update
            .take()
            .expect("the update lives until the transaction ends");
        match update.checkpoint() {
            Ok(()) => Ok(()),
            Err(e) => {
                let e = Error::from(e);
                *self.poisoned = Some(e.to_string());
                Err(e)
            }
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

    fn commit_point(&mut self) -> Result<()> {
        if self.tail == 0 {
            self.finished = true;
            return Ok(()); // Nothing was logged: nothing to discard.
        }
        crash_point!("vista.commit.before_store");
        let lane = self.layout.lane_off(LANE);
        let stored = self.update().store_u64(lane, 0);
        // Finished either way: committed, or rolled back here (not again in Drop).
        self.finished = true;
        if let Err(e) = stored {
            // The store did not happen (a failed `pwrite` or `mprotect` changes nothing),
            // so the published log still covers every change: undo them now, or the
            // next transaction would reuse the lane and make these changes permanent.
            // A roll-back that fails poisons the segment (see `roll_back`).
            let _ = self.roll_back();
            return Err(e.into());
        }
        crash_point!("vista.commit.after_store");
        Ok(())
    }

    fn roll_back(&mut self) -> Result<()> {
        if self.tail == 0 {
            return Ok(());
        }
        let (layout, path) = (self.layout, self.path);
        let update = self
            .update
            .as_mut()
            .expect("the update lives until the transaction ends");
        let result = lane_records(update, layout, LANE, path).and_then(|records| {
            roll_back(
                update,
                layout,
                LANE,
                &records,
                ("vista.abort.partial", "vista.abort.applied"),
            )
        });
        if let Err(e) = &result {
            // The data may be half restored: no checkpoint may capture it.
            update.poison(e.to_string());
            *self.poisoned = Some(e.to_string());
        }
        result
    }

    /// Logs the before-image of `[offset, offset + len)` (at cache offset `at`) unless a
    /// recent record already covers it, and publishes it.
    fn log(&mut self, offset: u64, len: u64, at: u64) -> Result<()> {
        let end = offset + len;
        if len == 0
            || self
                .logged
                .iter()
                .rev()
                .take(DEDUP_WINDOW)
                .any(|&(s, e)| s <= offset && end <= e)
        {
            return Ok(());
        }
        let capacity = self.layout.lane_capacity();
        let needed = undo::record_len(len).unwrap_or(u64::MAX);
        if needed > capacity - self.tail {
            return Err(Error::UndoLogFull {
                needed,
                free: capacity - self.tail,
                capacity,
            });
        }
        let lane = self.layout.lane_off(LANE);
        let rec_at = lane + LANE_HEADER + self.tail;
        if self.write_through {
            let update = self
                .update
                .as_mut()
                .expect("the update lives until the transaction ends");
            self.scratch.clear();
            self.scratch.resize(needed as usize, 0);
            undo::encode(self.scratch, offset, update.read(at, len)?);
            update.write_bytes(rec_at, self.scratch)?;
        } else {
            let (rec, data) = self
                .update()
                .window_pair(rec_at..rec_at + needed, at..at + len)?;
            undo::encode(rec, offset, data);
        }
        crash_point!("vista.set_range.record_copied");
        // Publish: the record is complete before the tail covers it (release store).
        self.tail += needed;
        let tail = self.tail;
        #[cfg(feature = "mutants")]
        if crate::mutant::is("publish-late") {
            // Mutant: `write` stores the tail after it has changed the data.
            self.logged.push((offset, end));
            return Ok(());
        }
        self.update().store_u64(lane, tail)?;
        crash_point!("vista.set_range.published");
        self.logged.push((offset, end));
        Ok(())
    }
}

impl Drop for Transaction<'_> {
    /// Aborts an unfinished transaction. An abort that fails (a damaged undo log)
    /// poisons the segment instead of panicking; reopening reports the damage.
    fn drop(&mut self) {
        if !self.finished {
            self.finished = true;
            let _ = self.roll_back();
        }
    }
}
