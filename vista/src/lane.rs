//! Undo lanes: each running transaction owns one, with its log, for its whole life.
//!
//! A [`Lane`] is the in-memory side of one undo log of the format (its place, its
//! published tail, the ranges logged so far); the [`LanePool`] hands lanes to
//! transactions and takes them back when they end. A lane is returned only after its
//! log is empty again (committed or rolled back), so a lane taken from the pool always
//! starts from an empty log.

use std::path::Path;
use std::sync::PoisonError;
#[cfg(not(feature = "shuttle"))]
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crash_point::crash_point;
use rio_cache::{PageMemo, Update};

use crate::error::{Error, Result};
use crate::layout::{Layout, LANE_HEADER};
use crate::undo::{self, Record};

// Under the `shuttle` feature (model-checked tests only) the pool's lock is shuttle's, so
// that its scheduler can interleave threads at every lock operation.
#[cfg(feature = "shuttle")]
use shuttle::sync::{Condvar, Mutex};

/// How many recently logged ranges are checked before logging a range again. A range
/// inside one of them is not logged twice; beyond them a second record is harmless
/// (roll-back applies newest first, so the oldest before-image wins).
const DEDUP_WINDOW: usize = 16;

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
    /// Where undo records are assembled when they are written through the memory image
    /// (under `mprotect`; reused to avoid allocating).
    scratch: Vec<u8>,
    /// Pages the lane's last update opened (see `rio_cache::PageMemo`).
    pub(crate) memo: PageMemo,
}

impl Lane {
    fn new(layout: &Layout, index: u32) -> Lane {
        Lane {
            index,
            off: layout.lane_off(index),
            tail: 0,
            logged: Vec::new(),
            scratch: Vec::new(),
            memo: PageMemo::default(),
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
    /// `at`) unless a recent record already covers it, and publishes it: the record is
    /// completely written before the store of the tail that covers it.
    /// `write_through` assembles the record in memory and writes it with one call
    /// (under `mprotect`, where it saves opening the lane's pages).
    pub(crate) fn log(
        &mut self,
        update: &mut Update<'_>,
        layout: &Layout,
        offset: u64,
        len: u64,
        at: u64,
        write_through: bool,
    ) -> Result<()> {
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
        if write_through {
            self.scratch.clear();
            self.scratch.resize(needed as usize, 0);
            undo::encode(&mut self.scratch, offset, update.read(at, len)?);
            update.write_bytes(rec_at, &self.scratch)?;
        } else {
            let (rec, data) = update.window_pair(rec_at..rec_at + needed, at..at + len)?;
            undo::encode(rec, offset, data);
        }
        crash_point!("vista.set_range.record_copied");
        let tail = self.tail + needed;
        #[cfg(feature = "mutants")]
        if crate::mutant::is("publish-late") {
            // Mutant: `write` stores the tail after it has changed the data.
            self.tail = tail;
            self.logged.push((offset, end));
            return Ok(());
        }
        // Publish: the record is complete before the tail covers it (release store).
        update.store_u64(self.off, tail)?;
        self.tail = tail;
        crash_point!("vista.set_range.published");
        self.logged.push((offset, end));
        Ok(())
    }

    /// Stores the published tail again (the `publish-late` mutant's late store).
    #[cfg(feature = "mutants")]
    pub(crate) fn store_tail(&self, update: &mut Update<'_>, value: u64) -> Result<()> {
        Ok(update.store_u64(self.off, value)?)
    }

    /// The commit point: one atomic store empties the log.
    pub(crate) fn commit(&mut self, update: &mut Update<'_>) -> Result<()> {
        if self.tail == 0 {
            return Ok(()); // Nothing was logged: nothing to discard.
        }
        crash_point!("vista.commit.before_store");
        update.store_u64(self.off, 0)?;
        self.tail = 0;
        self.logged.clear();
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
        Ok(())
    }

    /// Whether the lane is ready for the next transaction (its log is empty).
    fn is_clear(&self) -> bool {
        self.tail == 0
    }
}

/// The published records of lane `lane`, validated. Reads only the published part.
pub(crate) fn records(
    update: &Update<'_>,
    layout: &Layout,
    lane: u32,
    path: &Path,
) -> Result<Vec<Record>> {
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
    undo::parse(bytes, tail, layout).map_err(corrupt)
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
        let src = lane_off + r.data_at;
        let dst = layout.user_off + r.offset;
        let (before, target) = update.window_pair(src..src + r.len, dst..dst + r.len)?;
        target.copy_from_slice(before);
        crash_point!(point.0);
    }
    crash_point!(point.1);
    // The log is marked empty last: until this store, a crash repeats the roll-back,
    // which writes the same before-images again (idempotent).
    update.store_u64(lane_off, 0)?;
    Ok(())
}

/// The lanes not in use, and the transactions waiting for one.
#[derive(Debug)]
pub(crate) struct LanePool {
    free: Mutex<Vec<Lane>>,
    returned: Condvar,
    count: u32,
    wait: Duration,
}

impl LanePool {
    /// Every lane of `layout`, all free (recovery has emptied them).
    pub(crate) fn new(layout: &Layout, wait: Duration) -> LanePool {
        LanePool {
            // Popped from the end: lane 0 first, as before lanes were shared.
            free: Mutex::new(
                (0..layout.lanes)
                    .rev()
                    .map(|i| Lane::new(layout, i))
                    .collect(),
            ),
            returned: Condvar::new(),
            count: layout.lanes,
            wait,
        }
    }

    /// Takes a free lane, waiting up to the pool's wait for one.
    ///
    /// # Errors
    /// [`Error::LanesBusy`] if every lane stayed in use for the whole wait.
    pub(crate) fn take(&self) -> Result<Lane> {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(l) = free.pop() {
            return Ok(l);
        }
        let deadline = Instant::now() + self.wait;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::LanesBusy {
                    lanes: self.count,
                    waited: self.wait,
                });
            }
            free = self
                .returned
                .wait_timeout(free, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            if let Some(l) = free.pop() {
                return Ok(l);
            }
        }
    }

    /// Gives a lane back. A lane whose log is not empty (its abort failed: the segment
    /// is poisoned) is kept out of use.
    pub(crate) fn give_back(&self, lane: Lane) {
        if !lane.is_clear() {
            return;
        }
        self.free
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(lane);
        self.returned.notify_one();
    }
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
        let pool = Arc::new(LanePool::new(&layout, Duration::from_secs(3600)));
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
        assert_eq!(pool.free.lock().unwrap().len(), 2);
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
    fn lanes_are_handed_out_once_and_waiters_time_out_with_a_typed_error() {
        let layout = Layout::for_options(&Options::new().size(4096).lanes(2)).unwrap();
        let pool = LanePool::new(&layout, Duration::from_millis(1));
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
    }
}
