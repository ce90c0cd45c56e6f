//! A cache shared by threads: updates from `&self`, each holding the ranges it touches.

use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cache::{RioCache, Stats};
use crate::error::{Error, Result};
use crate::locks::{Held, LockTable};
use crate::protection::ActiveProtection;
use crate::start::StartKind;
use crate::sys::access::{Locking, PageMemo};
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
/// Checkpoints wait for the updates in progress to end and hold new ones back only until
/// then (the pages are copied copy-on-write while updates run), as for a `RioCache`.
#[derive(Debug)]
pub struct SharedCache {
    cache: RioCache,
    sharing: Sharing,
}

/// What the updates of a shared cache consult (one pointer in each update).
#[derive(Debug)]
pub(crate) struct Sharing {
    pub(crate) locks: LockTable,
    pub(crate) wait: Duration,
    /// Tells this cache's claims from other caches'.
    pub(crate) id: u64,
    /// The region split into claims (empty without claims).
    pub(crate) claimed: Range<u64>,
}

/// Numbers shared caches, for their claims.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// One part of a shared cache's claimed region (see [`SharedCache::with_claims`]): the
/// update that holds it reads and writes the part without the lock table, because no
/// other update can touch it. A claim is not `Clone`; each part has exactly one, and it
/// moves into an update ([`Update::hold`]) and back out ([`Update::release_claim`]).
#[derive(Debug)]
pub struct Claim {
    cache: u64,
    range: Range<u64>,
}

impl Claim {
    /// The bytes this claim covers.
    #[inline]
    pub fn range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// Whether `[offset, offset + len)` lies inside the claim.
    #[inline]
    pub(crate) fn covers(&self, offset: u64, len: u64) -> bool {
        offset >= self.range.start && offset.saturating_add(len) <= self.range.end
    }

    pub(crate) fn cache(&self) -> u64 {
        self.cache
    }
}

impl SharedCache {
    /// Shares `cache` between threads.
    pub fn new(cache: RioCache) -> SharedCache {
        let locks = LockTable::new(cache.len());
        SharedCache {
            cache,
            sharing: Sharing {
                locks,
                wait: DEFAULT_LOCK_WAIT,
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                claimed: 0..0,
            },
        }
    }

    /// Shares `cache` between threads, with `region` split into `parts` equal claims:
    /// ranges that belong to whichever update holds their [`Claim`] (a writer's private
    /// log, for example). An update holding a claim reads and writes its part without
    /// locking; no other update may touch the region ([`Error::Claimed`]).
    ///
    /// Stores into a claimed part through [`Update::store_u64`] and
    /// [`Update::log_and_open`] go straight through the mapping (under any guard but
    /// `mprotect`) and do **not** mark its pages dirty: a checkpoint writes a claimed
    /// page back only when something else marked it. This is for state that is
    /// scratch between updates: checkpoints run only while no update is in progress, so
    /// the holder must leave its part, at the end of each update, in a state whose last
    /// written-back copy is as good (vista's undo lanes: the log is empty at the end of
    /// every transaction, and the disk's copy of every lane is an empty log).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if the region does not lie in the cache or does not split
    /// into `parts` equal parts.
    pub fn with_claims(
        cache: RioCache,
        region: Range<u64>,
        parts: u64,
    ) -> Result<(SharedCache, Vec<Claim>)> {
        let len = region.end.saturating_sub(region.start);
        cache.inner.check_range(region.start, len)?;
        if parts == 0 || !len.is_multiple_of(parts) {
            return Err(Error::OutOfRange {
                offset: region.start,
                len,
                size: cache.len(),
            });
        }
        let mut shared = SharedCache::new(cache);
        let part = len / parts;
        let claims = (0..parts)
            .map(|i| Claim {
                cache: shared.sharing.id,
                range: region.start + i * part..region.start + (i + 1) * part,
            })
            .collect();
        shared.sharing.claimed = region;
        Ok((shared, claims))
    }

    /// How long an update waits for a range held by another before
    /// [`Error::Conflict`] (default [`DEFAULT_LOCK_WAIT`]; zero: no wait beyond a short
    /// spin).
    #[must_use]
    pub fn lock_wait(mut self, wait: Duration) -> SharedCache {
        self.sharing.wait = wait;
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

    /// [`SharedCache::update_with`] that holds `claim` from the start, as
    /// [`Update::hold`] would: one step, so that a writer that begins every update with
    /// its claim builds the update once, in place.
    ///
    /// # Errors
    /// The error and the claim back: [`Error::Claimed`] (the claim's range) if the claim
    /// is another cache's; [`Error::Poisoned`] after a failed checkpoint.
    // Always inlined: out of line (LLVM's choice in some callers) the update is built in
    // this function's frame and copied out, a `memcpy` of the whole update per call.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn update_holding(
        &self,
        memo: &PageMemo,
        claim: Claim,
    ) -> std::result::Result<Update<'_>, (Error, Claim)> {
        if claim.cache() != self.sharing.id {
            let r = claim.range();
            return Err((
                Error::Claimed {
                    offset: r.start,
                    len: r.end - r.start,
                },
                claim,
            ));
        }
        if let Err(e) = self.cache.inner.check_poison() {
            return Err((e, claim));
        }
        let locking = self.locking(Held::boxed(None), Some(claim));
        let mut u = Update::build(&self.cache.inner, &self.cache.guard, None, Some(locking));
        u.seed(memo);
        Ok(u)
    }

    #[inline]
    fn start(&self) -> Result<Update<'_>> {
        let locking = self.locking(Held::boxed(None), None);
        Update::start(&self.cache.inner, &self.cache.guard, None, Some(locking))
    }

    /// An update's range locking in this cache: its held set, and the claim it holds.
    #[allow(clippy::inline_always)] // on every update's start (see `update_holding`)
    #[inline(always)]
    fn locking(&self, held: Box<Held>, claim: Option<Claim>) -> Locking<'_> {
        Locking {
            sharing: &self.sharing,
            held: std::cell::RefCell::new(held),
            claim,
        }
    }

    /// Starts a reader: an [`Update`] that only reads. Each range it reads is locked
    /// shared until it ends, as in an update, and counts as a read guard of this thread
    /// (this thread's own updates that want it fail at once with
    /// [`Error::HeldByThisThread`] instead of waiting). It does not enter the checkpoint
    /// gate, so checkpoints never wait for it, and every call that would open bytes for
    /// writing fails with [`Error::ReadOnly`].
    ///
    /// # Errors
    /// [`Error::Poisoned`] after a failed checkpoint.
    #[inline]
    pub fn reader(&self) -> Result<Update<'_>> {
        let locking = self.locking(Held::boxed(Some(&self.sharing.locks)), None);
        Update::start_reader(&self.cache.inner, &self.cache.guard, locking)
    }

    /// The bytes `[offset, offset + len)`, locked shared until the guard drops (no
    /// update can change them meanwhile; updates that hold them exclusively are waited
    /// for up to the lock wait).
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::Conflict`]; [`Error::Poisoned`].
    pub fn read(&self, offset: u64, len: u64) -> Result<Locked<'_>> {
        self.cache.inner.check_range(offset, len)?;
        self.cache.inner.check_poison()?;
        let sh = &self.sharing;
        if len > 0 && offset < sh.claimed.end && sh.claimed.start < offset + len {
            return Err(Error::Claimed { offset, len });
        }
        let mut held = Held::for_read_guard(&sh.locks);
        if !held.acquire(&sh.locks, offset, len, false, sh.wait) {
            let mine = held.refused_by_this_thread();
            held.release_all(&sh.locks);
            return Err(if mine {
                Error::HeldByThisThread { offset, len }
            } else {
                Error::Conflict { offset, len }
            });
        }
        let mut locked = Locked {
            bytes: &[],
            held,
            table: &self.sharing.locks,
            _thread: std::marker::PhantomData,
        };
        // The range is held shared until `Locked` drops (which releases it, also if
        // this read fails: the cache may have been poisoned meanwhile).
        locked.bytes = self.cache.read(offset, len)?;
        Ok(locked)
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
        self.sharing.locks = LockTable::new(self.cache.len());
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

    /// Prepares this cache's part of a group checkpoint for `epoch` of the coordinator
    /// at `coordinator` (see [`crate::group`]): the pages dirtied so far are staged, as by
    /// a checkpoint (the fence does not stop it), and written to the journal sealed for
    /// the epoch. The batch commits when the coordinator decides the epoch; then call
    /// [`crate::group::Prepared::finish`].
    ///
    /// # Errors
    /// As [`SharedCache::checkpoint`].
    pub fn prepare_group(
        &self,
        epoch: u64,
        coordinator: &Path,
    ) -> Result<crate::group::Prepared<'_>> {
        if self.cache.inner.gate.held_by_this_thread() {
            return Err(Error::InUpdate);
        }
        self.cache.inner.prepare_group(epoch, coordinator)
    }

    /// Fences the cache (`true`): from now on every checkpoint but a group's is refused
    /// with [`Error::Fenced`] (and the writeback thread's and the close-time ones are
    /// skipped), until it is unfenced. Fencing is judged when a checkpoint takes its
    /// snapshot, with no update inside: an update that fences the cache before it ends
    /// keeps its changes out of every checkpoint but a group's.
    pub fn set_fenced(&self, fenced: bool) {
        self.cache
            .inner
            .fenced
            .store(fenced, std::sync::atomic::Ordering::SeqCst);
    }

    /// Whether the cache is fenced.
    pub fn is_fenced(&self) -> bool {
        self.cache
            .inner
            .fenced
            .load(std::sync::atomic::Ordering::SeqCst)
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
///
/// Not `Send`: its shared holds are listed in the reading thread's own record (so that
/// a transaction of that thread which wants to change the range fails at once with
/// [`crate::Error::HeldByThisThread`] instead of waiting for itself), and must be
/// unlisted by that thread when the guard is dropped. It is `Sync`: other threads may
/// read through `&Locked`.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// fn guard_is_not_send(l: rio_cache::Locked<'static>) {
///     send(l);
/// }
/// ```
#[derive(Debug)]
pub struct Locked<'a> {
    bytes: &'a [u8],
    held: Held,
    table: &'a LockTable,
    /// `!Send`, `Sync` (see above).
    _thread: std::marker::PhantomData<std::sync::MutexGuard<'static, ()>>,
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

    /// A 1 MiB cache's options in `dir`, manual writeback.
    fn options(dir: &Path, protection: Protection) -> RioOptions {
        RioOptions::new()
            .size(1 << 20)
            .protection(protection)
            .writeback(Writeback::Manual)
            .cache_dir(dir)
    }

    fn shared(dir: &Path, protection: Protection) -> SharedCache {
        let opts = options(dir, protection);
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
            // Another thread's update and reads are refused with a conflict...
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut b = c.update().unwrap();
                    assert!(matches!(b.window(4, 8), Err(Error::Conflict { .. })));
                    assert!(matches!(b.read(0, 1), Err(Error::Conflict { .. })));
                    assert!(matches!(c.read(0, 1), Err(Error::Conflict { .. })));
                });
            });
            // ...this thread's are told at once that this thread holds the range.
            let mut b = c.update().unwrap();
            assert!(matches!(
                b.window(4, 8),
                Err(Error::HeldByThisThread { offset: 4, len: 8 })
            ));
            assert!(matches!(b.read(0, 1), Err(Error::HeldByThisThread { .. })));
            assert!(matches!(c.read(0, 1), Err(Error::HeldByThisThread { .. })));
            b.window(64, 8).unwrap().copy_from_slice(b"bbbbbbbb");
            drop(a);
            assert_eq!(&*c.read(0, 8).unwrap(), b"aaaaaaaa");
            // A reader's guard holds the range shared.
            let r = c.read(64, 8);
            assert!(
                matches!(r, Err(Error::HeldByThisThread { .. })),
                "b holds it"
            );
            drop(b);
            let r = c.read(64, 8).unwrap();
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut d = c.update().unwrap();
                    assert!(matches!(d.store_u64(64, 1), Err(Error::Conflict { .. })));
                });
            });
            let mut d = c.update().unwrap();
            assert!(matches!(
                d.store_u64(64, 1),
                Err(Error::HeldByThisThread { .. })
            ));
            drop(r);
            d.store_u64(64, 1).unwrap();
        }
    }

    #[test]
    #[allow(clippy::many_single_char_names)]
    fn a_claimed_part_is_reached_only_by_the_update_holding_its_claim() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), Protection::None);
        let cache = RioCache::open(dir.path().join("disk"), &opts).unwrap();
        assert!(SharedCache::with_claims(cache, 4096..4096 + 10_000, 3).is_err());
        let cache = RioCache::open(dir.path().join("disk2"), &opts).unwrap();
        let (c, mut claims) = SharedCache::with_claims(cache, 4096..4096 + 2 * 8192, 2).unwrap();
        let c = c.lock_wait(Duration::ZERO);
        assert_eq!(claims[1].range(), 4096 + 8192..4096 + 2 * 8192);
        let (c1, c0) = (claims.pop().unwrap(), claims.pop().unwrap());

        let mut a = c.update().unwrap();
        a.hold(c0).unwrap();
        let mut b = c.update().unwrap();
        // Without its claim, b reaches neither part; a reaches only its own.
        assert!(matches!(b.window(4096, 8), Err(Error::Claimed { .. })));
        assert!(matches!(b.read(4096 + 8192, 8), Err(Error::Claimed { .. })));
        assert!(matches!(a.read(4096 + 8192, 8), Err(Error::Claimed { .. })));
        assert!(
            matches!(a.window(4096 + 8190, 4), Err(Error::Claimed { .. })),
            "straddles"
        );
        assert!(matches!(c.read(4096, 8), Err(Error::Claimed { .. })));
        b.hold(c1).unwrap();
        // Both write their parts at once, and a publishes with one call.
        let data = a
            .log_and_open(4104..4112, 0..8, 4096, 8, |rec, before| {
                rec.copy_from_slice(before);
            })
            .unwrap();
        data.copy_from_slice(b"new data");
        b.store_u64(4096 + 8192, 7).unwrap();
        // A claim cannot be held twice by one update, nor by another cache's update.
        let extra = b.release_claim().unwrap();
        b.hold(extra).unwrap();
        let other_dir = tempfile::tempdir().unwrap();
        let other = shared(other_dir.path(), Protection::None);
        let mut o = other.update().unwrap();
        let back = b.release_claim().unwrap();
        let back = o.hold(back).unwrap_err();
        let c0 = a.release_claim().unwrap();
        drop(a);
        drop(b);
        let r = c.read(0, 8).unwrap();
        assert_eq!(&*r, b"new data");
        drop(r);
        // The claims move on to new updates.
        let mut d = c.update().unwrap();
        d.hold(c0).unwrap();
        assert_eq!(d.read(4096, 16).unwrap()[..8], 8u64.to_le_bytes());
        let mut e = c.update().unwrap();
        e.hold(back).unwrap();
        assert_eq!(e.read(4096 + 8192, 8).unwrap(), 7u64.to_le_bytes());
    }

    #[test]
    fn an_update_holding_a_claim_from_the_start_gives_it_back_when_refused() {
        let dir = tempfile::tempdir().unwrap();
        let opts = options(dir.path(), Protection::None);
        let cache = RioCache::open(dir.path().join("disk"), &opts).unwrap();
        let (c, mut claims) = SharedCache::with_claims(cache, 4096..4096 + 8192, 1).unwrap();
        let c = c.lock_wait(Duration::ZERO);
        let claim = claims.pop().unwrap();
        let memo = PageMemo::default();
        // Another cache's update refuses it and hands it back, range in the error.
        let other_dir = tempfile::tempdir().unwrap();
        let other = shared(other_dir.path(), Protection::None);
        let (e, claim) = other.update_holding(&memo, claim).map(drop).unwrap_err();
        assert!(
            matches!(
                e,
                Error::Claimed {
                    offset: 4096,
                    len: 8192
                }
            ),
            "{e:?}"
        );
        // Its own cache's update holds it: the part is reachable, and nobody else's.
        let mut u = c.update_holding(&memo, claim).unwrap();
        u.store_u64(4096, 5).unwrap();
        assert!(matches!(c.read(4096, 8), Err(Error::Claimed { .. })));
        let claim = u.release_claim().expect("held from the start");
        drop(u);
        // A poisoned cache refuses, and the claim comes back whole.
        c.poison("test");
        let (e, claim) = c.update_holding(&memo, claim).map(drop).unwrap_err();
        assert!(matches!(e, Error::Poisoned { .. }), "{e:?}");
        assert_eq!(claim.range(), 4096..4096 + 8192);
    }

    #[test]
    fn an_inverted_range_is_refused_before_anything_is_published() {
        let dir = tempfile::tempdir().unwrap();
        let c = shared(dir.path(), Protection::None);
        let mut u = c.update().unwrap();
        #[allow(clippy::reversed_empty_ranges)] // inverted on purpose
        let cases = [(4096..4064, 0..8), (4096..4104, 16..8)];
        for (record, data) in cases {
            let r = u.log_and_open(record.clone(), data.clone(), 8192, 32, |_, _| {
                unreachable!("nothing is written for an inverted range")
            });
            assert!(
                matches!(r, Err(Error::InvertedRange(_))),
                "{record:?} {data:?}"
            );
            assert_eq!(
                u.read(8192, 8).unwrap(),
                [0; 8],
                "the tail was not published"
            );
        }
    }

    #[test]
    fn a_reader_reads_locked_refuses_every_write_and_never_holds_a_checkpoint_off() {
        for protection in [Protection::None, Protection::Mprotect, Protection::Alias] {
            let dir = tempfile::tempdir().unwrap();
            let c = shared(dir.path(), protection);
            let mut u = c.update().unwrap();
            u.window(0, 8).unwrap().copy_from_slice(b"aaaaaaaa");
            drop(u);
            let mut r = c.reader().unwrap();
            assert!(r.is_read_only());
            assert_eq!(r.read(0, 8).unwrap(), b"aaaaaaaa");
            let ro = |e: Result<()>| matches!(e, Err(Error::ReadOnly { .. }));
            assert!(ro(r.window(0, 8).map(drop)), "{protection:?}: window");
            assert!(ro(r.open(4096, 8).map(drop)), "{protection:?}: open");
            assert!(ro(r.store_u64(8, 1)), "{protection:?}: store_u64");
            assert!(ro(r.write_bytes(8, b"b")), "{protection:?}: write_bytes");
            assert!(ro(r.window_pair(0..8, 64..72).map(drop)), "{protection:?}");
            assert!(ro(r
                .log_and_open(0..8, 64..72, 128, 8, |_, _| {})
                .map(drop)));
            // It holds what it read shared, as a read guard of this thread...
            let mut w = c.update().unwrap();
            assert!(matches!(
                w.window(0, 8),
                Err(Error::HeldByThisThread { .. })
            ));
            drop(w);
            // ...and is outside the gate: a checkpoint of this thread runs.
            c.checkpoint().unwrap();
            drop(r);
            assert_eq!(c.read(8, 8).unwrap().as_ref(), &[0u8; 8], "nothing written");
        }
    }

    #[test]
    fn a_read_for_update_holds_the_range_exclusively_and_opens_nothing() {
        for protection in [Protection::None, Protection::Mprotect, Protection::Alias] {
            let dir = tempfile::tempdir().unwrap();
            let c = shared(dir.path(), protection);
            let mut u = c.update().unwrap();
            u.window(8, 8).unwrap().copy_from_slice(b"aaaaaaaa");
            drop(u);
            c.checkpoint().unwrap();
            let mut u = c.update().unwrap();
            assert_eq!(u.read_for_update(8, 8).unwrap(), b"aaaaaaaa");
            // Locked as for a change: another thread can neither read nor change it...
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut b = c.update().unwrap();
                    assert!(matches!(b.read(8, 1), Err(Error::Conflict { .. })));
                    assert!(matches!(
                        b.read_for_update(12, 1),
                        Err(Error::Conflict { .. })
                    ));
                    assert!(matches!(b.window(15, 1), Err(Error::Conflict { .. })));
                    assert!(matches!(c.read(8, 1), Err(Error::Conflict { .. })));
                    // ...while the next line is free.
                    assert_eq!(b.read(64, 8).unwrap(), [0; 8]);
                });
            });
            // Nothing was opened: no page is dirty until the update writes.
            assert_eq!(c.stats().dirty_pages, 0, "{protection:?}");
            // The window over it needs no upgrade, and the bytes change as usual.
            u.window(8, 8).unwrap().copy_from_slice(b"bbbbbbbb");
            assert_eq!(c.stats().dirty_pages, 1, "{protection:?}");
            drop(u);
            assert_eq!(&*c.read(8, 8).unwrap(), b"bbbbbbbb", "{protection:?}");
            // Bad input and a reader are refused, and take nothing.
            let u = c.update().unwrap();
            assert!(matches!(
                u.read_for_update(1 << 20, 1),
                Err(Error::OutOfRange { .. })
            ));
            assert_eq!(u.read_for_update(8, 0).unwrap(), b"");
            drop(u);
            let r = c.reader().unwrap();
            assert!(matches!(
                r.read_for_update(8, 8),
                Err(Error::ReadOnly { offset: 8, len: 8 })
            ));
            drop(r);
            let mut w = c.update().unwrap();
            w.window(8, 8).unwrap();
        }
    }

    #[test]
    fn an_update_may_hold_exclusively_only_what_it_wrote_or_read_for_update() {
        for protection in [Protection::None, Protection::Mprotect, Protection::Alias] {
            let dir = tempfile::tempdir().unwrap();
            let c = shared(dir.path(), protection);
            let mut u = c.update().unwrap();
            u.read(0, 8).unwrap();
            u.read_for_update(64, 8).unwrap();
            u.window(128, 8).unwrap();
            // Lines 64 to 67.
            u.window(4096 + 1, 200).unwrap();
            // Held shared, or not at all: surely not.
            assert!(!u.may_hold_exclusively(0), "{protection:?}");
            assert!(!u.may_hold_exclusively(192), "{protection:?}");
            // Held exclusively, on any byte of the line.
            assert!(u.may_hold_exclusively(64 + 63), "{protection:?}");
            assert!(u.may_hold_exclusively(128), "{protection:?}");
            for line in 64..68 {
                assert!(u.may_hold_exclusively(line * 64), "{protection:?}: {line}");
            }
            // A shared line upgraded by a write.
            u.window(0, 1).unwrap();
            assert!(u.may_hold_exclusively(0), "{protection:?}");
            drop(u);
            // Nothing is held once the update ended.
            let u = c.update().unwrap();
            assert!(!u.may_hold_exclusively(128), "{protection:?}");
        }
        // A range long enough to be held by block stripes: the lines under them may be
        // held (the answer errs only towards `true`).
        let dir = tempfile::tempdir().unwrap();
        let c = shared(dir.path(), Protection::None);
        let mut u = c.update().unwrap();
        u.window(0, 256 << 10).unwrap();
        for offset in [0, 4096, 100_000, (256 << 10) - 1] {
            assert!(u.may_hold_exclusively(offset), "{offset}");
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
