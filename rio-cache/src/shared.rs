//! A cache shared by threads: updates from `&self`, each holding the ranges it touches.

use std::ops::Deref;
use std::path::Path;
use std::time::Duration;

use crate::access::{Locking, PageMemo};
use crate::cache::{RioCache, Stats};
use crate::error::{Error, Result};
use crate::locks::{Held, LockTable};
use crate::protection::ActiveProtection;
use crate::start::StartKind;
use crate::Update;

/// How long an update waits for a range another update holds, by default, before
/// [`Error::Conflict`].
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_millis(2);

/// A [`RioCache`] that many threads update at once (it is `Send + Sync`).
///
/// Every byte an update reads or writes is locked in a striped table keyed by 64-byte
/// line: shared for [`Update::read`], exclusively for windows and stores, held until the
/// update ends (strict two-phase locking). A range held incompatibly by another update
/// is waited for up to the lock wait, then refused with [`Error::Conflict`], so no set
/// of updates can deadlock. Reads outside an update go through [`SharedCache::read`],
/// whose guard holds the range shared.
///
/// Checkpoints wait for the updates in progress to end and hold new ones back only for
/// the copy of the dirty pages, as for a `RioCache`.
#[derive(Debug)]
pub struct SharedCache {
    cache: RioCache,
    locks: LockTable,
    wait: Duration,
}

impl SharedCache {
    /// Shares `cache` between threads.
    pub fn new(cache: RioCache) -> SharedCache {
        let locks = LockTable::new(cache.len());
        SharedCache {
            cache,
            locks,
            wait: DEFAULT_LOCK_WAIT,
        }
    }

    /// How long an update waits for a range held by another before
    /// [`Error::Conflict`] (default [`DEFAULT_LOCK_WAIT`]; zero: no wait beyond a short
    /// spin).
    #[must_use]
    pub fn lock_wait(mut self, wait: Duration) -> SharedCache {
        self.wait = wait;
        self
    }

    /// The cache back, for single-threaded use.
    pub fn into_inner(self) -> RioCache {
        self.cache
    }

    /// Starts an update (see [`RioCache::update`]) that locks what it touches.
    ///
    /// # Errors
    /// [`Error::Poisoned`] after a failed checkpoint.
    pub fn update(&self) -> Result<Update<'_>> {
        self.start()
    }

    /// As [`SharedCache::update`], starting from the pages a writer's previous update
    /// opened (its [`Update::memo`]), so they need not be marked dirty again.
    ///
    /// # Errors
    /// As [`SharedCache::update`].
    #[inline]
    pub fn update_with(&self, memo: &PageMemo) -> Result<Update<'_>> {
        let mut u = self.start()?;
        u.seed(memo);
        Ok(u)
    }

    #[inline]
    fn start(&self) -> Result<Update<'_>> {
        let locking = Locking {
            table: &self.locks,
            held: std::cell::RefCell::new(Held::default()),
            wait: self.wait,
        };
        Update::start(&self.cache.inner, &self.cache.guard, None, Some(locking))
    }

    /// The bytes `[offset, offset + len)`, locked shared until the guard drops (no
    /// update can change them meanwhile; updates that hold them exclusively are waited
    /// for up to the lock wait).
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::Conflict`].
    pub fn read(&self, offset: u64, len: u64) -> Result<Locked<'_>> {
        self.cache.inner.check_range(offset, len)?;
        let mut held = Held::default();
        if !held.acquire(&self.locks, offset, len, false, self.wait) {
            held.release_all(&self.locks);
            return Err(Error::Conflict { offset, len });
        }
        Ok(Locked {
            // The range is held shared until `Locked` drops.
            bytes: self.cache.read(offset, len)?,
            held,
            table: &self.locks,
        })
    }

    /// Bytes of data in the cache.
    pub fn len(&self) -> u64 {
        self.cache.len()
    }

    /// Grows the cache in place to `new_len` bytes (see [`RioCache::grow`]). Takes
    /// `&mut self`: no update or read guard is alive, so the mappings may move.
    ///
    /// # Errors
    /// As [`RioCache::grow`].
    pub fn grow(&mut self, new_len: u64) -> Result<()> {
        self.grow_with(new_len, &[])
    }

    /// [`SharedCache::grow`] with edits in the same atomic step (see
    /// [`RioCache::grow_with`]).
    ///
    /// # Errors
    /// As [`RioCache::grow_with`].
    pub fn grow_with(&mut self, new_len: u64, edits: &[(u64, &[u8])]) -> Result<()> {
        self.cache.grow_with(new_len, edits)?;
        self.locks = LockTable::new(self.cache.len());
        Ok(())
    }

    /// Always `false`: a cache holds at least one byte.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// How the cache was opened.
    pub fn start_kind(&self) -> StartKind {
        self.cache.start_kind()
    }

    /// The protection in force.
    pub fn protection(&self) -> ActiveProtection {
        self.cache.protection()
    }

    /// The disk file.
    pub fn path(&self) -> &Path {
        self.cache.path()
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        self.cache.stats()
    }

    /// As [`RioCache::checkpoint`]; waits for the updates in progress to end.
    ///
    /// # Errors
    /// As [`RioCache::checkpoint`]; [`Error::InUpdate`] if this thread has an update of
    /// this cache open.
    pub fn checkpoint(&self) -> Result<()> {
        if self.cache.inner.gate.held_by_this_thread() {
            return Err(Error::InUpdate);
        }
        self.cache.checkpoint()
    }

    /// Declares the contents inconsistent (see [`Update::poison`]).
    pub fn poison(&self, reason: impl Into<String>) {
        self.cache.inner.set_poison(reason.into());
    }

    /// As [`RioCache::close`].
    ///
    /// # Errors
    /// As [`RioCache::close`].
    pub fn close(self) -> Result<()> {
        self.cache.close()
    }
}

/// Bytes read from a [`SharedCache`], locked shared until dropped.
#[derive(Debug)]
pub struct Locked<'a> {
    bytes: &'a [u8],
    held: Held,
    table: &'a LockTable,
}

impl Deref for Locked<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.held.release_all(self.table);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Protection, RioOptions, Writeback};

    fn shared(dir: &Path, protection: Protection) -> SharedCache {
        let opts = RioOptions::new()
            .size(1 << 20)
            .protection(protection)
            .writeback(Writeback::Manual)
            .cache_dir(dir);
        SharedCache::new(RioCache::open(dir.join("disk"), &opts).unwrap()).lock_wait(Duration::ZERO)
    }

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn updates_exclude_each_other_per_range_and_release_at_the_end() {
        assert_send_sync::<SharedCache>();
        for protection in [Protection::None, Protection::Mprotect, Protection::Alias] {
            let dir = tempfile::tempdir().unwrap();
            let c = shared(dir.path(), protection);
            let mut a = c.update().unwrap();
            a.window(0, 8).unwrap().copy_from_slice(b"aaaaaaaa");
            let mut b = c.update().unwrap();
            assert!(matches!(b.window(4, 8), Err(Error::Conflict { .. })));
            assert!(matches!(b.read(0, 1), Err(Error::Conflict { .. })));
            assert!(matches!(c.read(0, 1), Err(Error::Conflict { .. })));
            b.window(64, 8).unwrap().copy_from_slice(b"bbbbbbbb");
            drop(a);
            assert_eq!(&*c.read(0, 8).unwrap(), b"aaaaaaaa");
            // A reader's guard holds the range shared.
            let r = c.read(64, 8);
            assert!(matches!(r, Err(Error::Conflict { .. })), "b holds it");
            drop(b);
            let r = c.read(64, 8).unwrap();
            let mut d = c.update().unwrap();
            assert!(matches!(d.store_u64(64, 1), Err(Error::Conflict { .. })));
            drop(r);
            d.store_u64(64, 1).unwrap();
        }
    }

    #[test]
    fn checkpoint_inside_an_update_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let c = shared(dir.path(), Protection::None);
        let u = c.update().unwrap();
        assert!(matches!(c.checkpoint(), Err(Error::InUpdate)));
        drop(u);
        c.checkpoint().unwrap();
    }

    #[test]
    fn threads_update_disjoint_ranges_at_once() {
        for protection in [
            Protection::None,
            Protection::Mprotect,
            Protection::Alias,
            Protection::Auto,
        ] {
            let dir = tempfile::tempdir().unwrap();
            let c = shared(dir.path(), protection).lock_wait(Duration::from_secs(10));
            std::thread::scope(|s| {
                for t in 0..4u64 {
                    let c = &c;
                    s.spawn(move || {
                        let mut memo = PageMemo::default();
                        for i in 0..500u64 {
                            let mut u = c.update_with(&memo).unwrap();
                            // Thread t owns every 4th line; all threads share pages.
                            let at = ((i % 64) * 4 + t) * 64;
                            let old =
                                u64::from_le_bytes(u.read(at, 8).unwrap().try_into().unwrap());
                            u.store_u64(at, old + 1).unwrap();
                            memo = u.memo();
                            if i % 100 == 0 {
                                drop(u);
                                c.checkpoint().unwrap();
                            }
                        }
                    });
                }
            });
            let mut total = 0;
            for line in 0..256 {
                total += u64::from_le_bytes(c.read(line * 64, 8).unwrap()[..].try_into().unwrap());
            }
            assert_eq!(total, 4 * 500, "{protection:?}");
        }
    }
}
