//! Access to the mapped bytes: reads, write windows, and the checkpoint's copy. With
//! `sys`, the only module that creates slices of the mapping.
//!
//! The rules that make those slices sound (see the crate docs):
//! - shared slices (`&[u8]`) come from `&RioCache` or `&Update`;
//! - mutable slices come from `&mut Update`, which exists only while the owner's
//!   `&mut RioCache` is borrowed (so no shared slice of the owner is alive), or, for a
//!   [`crate::SharedCache`], only over ranges the update holds exclusively in the lock
//!   table or, in a claimed region, only by the update that holds the part's claim;
//!   either way only while the update is inside the checkpoint gate (so the
//!   checkpointer is not copying);
//! - shared slices of a shared cache cover only ranges their holder has locked;
//! - the checkpointer copies a page of its snapshot only while it holds the page's latch,
//!   and an update writes such a page only after it has passed that latch (preserving the
//!   page first: `Inner::before_write`), so no mutable slice covers a page being copied.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut, Range};
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::PoisonError;

use crate::cache::RioCache;
use crate::error::{Error, IoContext, Result};
use crate::faults::{IoFile, IoOp};
use crate::gate::Ticket;
use crate::journal::Batch;
use crate::locks::Held;
use crate::protection::Guard;
use crate::shared::{Claim, Sharing};
use crate::state::Inner;
use crate::sys::{self, PAGE};

/// A snapshot taken by [`Inner::take_snapshot`]: its epoch and its pages, ascending.
#[derive(Debug)]
pub(crate) struct SnapshotPages {
    pub(crate) epoch: u32,
    preserved_before: u64,
    pub(crate) pages: Vec<u64>,
}

impl Inner {
    /// Checks that `[offset, offset + len)` lies in the data and converts it.
    #[inline]
    pub(crate) fn check_range(&self, offset: u64, len: u64) -> Result<(usize, usize)> {
        match offset.checked_add(len) {
            Some(end) if end <= self.data_len => Ok((offset as usize, len as usize)),
            _ => Err(Error::OutOfRange {
                offset,
                len,
                size: self.data_len,
            }),
        }
    }

    /// Takes a snapshot of the dirty pages and copies it into a journal batch, while
    /// updates go on (see `crate::snapshot`): the gate is closed only for the instant
    /// that swaps the page maps' roles. (A checkpoint into the other slot copies its
    /// snapshot a piece at a time instead: [`Inner::take_snapshot`], then
    /// [`Inner::copy_snapshot_page`], then [`Inner::end_snapshot`].)
    ///
    /// # Errors
    /// As [`Inner::take_snapshot`].
    pub(crate) fn stage(&self, seq: u64, group: bool) -> Result<Batch> {
        let snap = self.take_snapshot(group)?;
        let mut batch = Batch::new(seq, self.data_len, self.image_id, &snap.pages);
        for (i, &p) in snap.pages.iter().enumerate() {
            self.copy_snapshot_page(p as usize, snap.epoch, batch.page_mut(i));
            crash_point::crash_point!("rio.checkpoint.copying");
        }
        self.end_snapshot(&snap);
        Ok(batch)
    }

    /// Takes a snapshot of the dirty pages (see `crate::snapshot`): closes the gate for
    /// the instant that swaps the page maps' roles and opens a snapshot epoch. Its pages
    /// are then copied with [`Inner::copy_snapshot_page`], each exactly once, and the
    /// snapshot ended with [`Inner::end_snapshot`].
    ///
    /// # Errors
    /// [`Error::CheckpointBusy`] if updates stayed inside the gate for the whole
    /// checkpoint wait (nothing was copied or changed).
    /// [`Error::Fenced`] if the cache is fenced and this is not a group checkpoint
    /// (`group`): judged with the gate closed, so an update that fences the cache before
    /// it ends keeps its changes out of every later checkpoint but a group's.
    pub(crate) fn take_snapshot(&self, group: bool) -> Result<SnapshotPages> {
        let snap = &self.snapshot;
        // The slots writers preserve pages into, mapped before any writer may need
        // them (the first checkpoint; again after a grow). Stages run one at a time
        // (the caller holds the checkpoint lock), so no other thread sets it.
        if snap.arena.get().is_none() {
            let arena = sys::PageArena::new(self.pages)
                .context(|| "map the snapshot's page arena".to_owned())?;
            let _ = snap.arena.set(arena);
        }
        let (epoch, preserved_before) = {
            let Some(_gate) = self.gate.close(self.checkpoint_wait) else {
                return Err(Error::CheckpointBusy {
                    waited: self.checkpoint_wait,
                });
            };
            if !group && self.fenced.load(Ordering::SeqCst) {
                return Err(Error::Fenced);
            }
            // No update is inside: the image is between two updates. The dirty map
            // becomes the snapshot's frozen map; new changes mark the other, empty one
            // (the last checkpoint cleared it after installing it).
            let epoch = crate::snapshot::Snapshot::next_epoch(snap.epoch.load(Ordering::Relaxed));
            snap.epoch.store(epoch, Ordering::Relaxed);
            self.dirty_side.fetch_xor(1, Ordering::Relaxed);
            self.dirty_pages.store(0, Ordering::Relaxed);
            // Pages remembered as open (and so as dirty) by writers are dirty no more.
            self.dirty_gen
                .store(crate::state::fresh_dirty_gen(), Ordering::Relaxed);
            self.kicked.store(false, Ordering::Relaxed);
            snap.active.store(true, Ordering::Release);
            (epoch, snap.preserved.load(Ordering::Relaxed))
            // The gate reopens here: the release pairs with the entering updates.
        };
        let frozen = self.inflight_map();
        let pages: Vec<u64> = (0..self.pages)
            .filter(|&p| frozen[p].load(Ordering::Relaxed) != 0)
            .map(|p| p as u64)
            .collect();
        Ok(SnapshotPages {
            epoch,
            preserved_before,
            pages,
        })
    }

    /// Ends a snapshot once every one of its pages was copied.
    pub(crate) fn end_snapshot(&self, taken: &SnapshotPages) {
        let snap = &self.snapshot;
        snap.active.store(false, Ordering::Release);
        // Only if writers used the arena in this snapshot: the advice walks the whole
        // arena's page tables, which a checkpoint without writers need not pay.
        let used = snap.preserved.load(Ordering::Relaxed) != taken.preserved_before;
        if let Some(arena) = snap.arena.get().filter(|_| used) {
            // SAFETY: the copy is over: every page of the snapshot was copied, so its
            // state is this epoch and no writer latches it (or touches its slot) again
            // before the next snapshot, which this thread starts.
            unsafe { arena.release() };
        }
    }

    /// Copies page `p` of the snapshot `epoch` into `out`: from the page itself, or, if a
    /// writer preserved it first, from the writer's copy. Called once per page of the
    /// snapshot.
    pub(crate) fn copy_snapshot_page(&self, p: usize, epoch: u32, out: &mut [u8]) {
        // The `clean-before-copy` mutant: the page loses its mark before the checkpoint
        // that carries it is installed; a crash then leaves it unmarked.
        if crate::mutant::is("clean-before-copy") {
            self.inflight_map()[p].store(0, Ordering::Relaxed);
        }
        let state = &self.snapshot.state[p];
        let backoff = crossbeam_utils::Backoff::new();
        loop {
            let s = state.load(Ordering::Acquire);
            if s == epoch {
                // A writer preserved the page (this thread has not handled it: it
                // copies each page once).
                let arena = self.snapshot.arena.get().expect("stage maps the arena");
                // SAFETY: p < pages, the arena's size; the acquire load above saw the
                // epoch the preserving writer stored with release after filling the
                // slot, and no one writes the slot again in this snapshot.
                out.copy_from_slice(unsafe { arena.slot(p) });
                return;
            }
            if s != crate::snapshot::LATCH
                && state
                    .compare_exchange(
                        s,
                        crate::snapshot::LATCH,
                        Ordering::Acquire,
                        Ordering::Relaxed,
                    )
                    .is_ok()
            {
                // Page p is latched: no writer changes it until the latch is released (a
                // writer opens a page of the snapshot only after its state is this
                // epoch), and no update opened it before (it is frozen and was not
                // handled this epoch), so no mutable slice of it exists.
                // SAFETY: in the page-rounded mapping; latched (above); shared slices
                // may coexist.
                let src = unsafe { self.data.slice(p * PAGE, PAGE) };
                out.copy_from_slice(src);
                state.store(epoch, Ordering::Release);
                return;
            }
            backoff.snooze();
        }
    }

    /// Before an update changes `pages` (or any byte of them): while a checkpoint copies
    /// its snapshot, the frozen pages among them that it has not copied yet are copied
    /// first (preserved), so the checkpoint sees them as they were at its instant.
    #[inline]
    pub(crate) fn before_write(&self, pages: Range<usize>) {
        if self.snapshot.active.load(Ordering::Acquire) && !crate::mutant::is("copy-without-cow") {
            self.preserve(pages);
        }
    }

    /// Whether page `p` is marked dirty and no checkpoint's snapshot holds pages now
    /// (so a write to it needs no copy-on-write and no mark).
    // Always inlined: on every write's path; out of line it cost about 24 instructions a
    // call (callgrind; docs/benchmarks.md, "Hot path").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn is_dirty_and_unshared(&self, p: usize) -> bool {
        !self.snapshot.active.load(Ordering::Acquire)
            && self.dirty_map()[p].load(Ordering::Relaxed) != 0
    }

    #[cold]
    #[inline(never)]
    fn preserve(&self, pages: Range<usize>) {
        let epoch = self.snapshot.epoch.load(Ordering::Acquire);
        let frozen = self.inflight_map();
        for p in pages {
            if frozen[p].load(Ordering::Relaxed) == 0 {
                continue; // not in the snapshot
            }
            let state = &self.snapshot.state[p];
            let backoff = crossbeam_utils::Backoff::new();
            loop {
                let s = state.load(Ordering::Acquire);
                if s == epoch {
                    break; // copied or preserved already
                }
                if s != crate::snapshot::LATCH
                    && state
                        .compare_exchange(
                            s,
                            crate::snapshot::LATCH,
                            Ordering::Acquire,
                            Ordering::Relaxed,
                        )
                        .is_ok()
                {
                    let arena = self
                        .snapshot
                        .arena
                        .get()
                        .expect("stage maps the arena before it activates the snapshot");
                    // The `publish-before-preserve` mutant hands the slot over before
                    // filling it (and dawdles), so the checkpoint may read a stale slot.
                    if crate::mutant::is("publish-before-preserve") {
                        state.store(epoch, Ordering::Release);
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    // SAFETY: page p is inside the page-rounded data mapping and latched
                    // by this update; no update has changed it since the snapshot's
                    // instant (every writer preserves it first, under this latch), so no
                    // mutable slice of it exists while this shared one lives.
                    let image = unsafe { self.data.slice(p * PAGE, PAGE) };
                    // SAFETY: p < pages, the arena's size; this update holds page p's
                    // latch, and the slot is read only once the release store below
                    // publishes the epoch.
                    unsafe { arena.slot_mut(p) }.copy_from_slice(image);
                    self.snapshot.preserved.fetch_add(1, Ordering::Relaxed);
                    state.store(epoch, Ordering::Release);
                    break;
                }
                backoff.snooze();
            }
        }
    }
}

impl RioCache {
    /// The bytes `[offset, offset + len)` as of now.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] if the range does not lie in the cache;
    /// [`Error::Poisoned`] once the cache is poisoned (after a failed grow its mappings
    /// may no longer be backed by the memory image).
    #[inline]
    pub fn read(&self, offset: u64, len: u64) -> Result<&[u8]> {
        let (off, len) = self.inner.check_range(offset, len)?;
        self.inner.check_poison()?;
        // Not poisoned, so the mapping is backed by the memory image (only a failed grow
        // leaves it unbacked, and it poisons first); `&self` is borrowed for the slice's
        // life, so no `Update` of this handle (which needs `&mut self`) can hand out a
        // mutable slice meanwhile, and a `SharedCache` owns its `RioCache`, so none of
        // its updates can either; the checkpointer only reads.
        // SAFETY: in bounds, backed, and no mutable slice can coexist (above).
        Ok(unsafe { self.inner.data.slice(off, len) })
    }

    /// All the cached bytes.
    ///
    /// # Errors
    /// [`Error::Poisoned`], as for [`RioCache::read`].
    pub fn as_slice(&self) -> Result<&[u8]> {
        self.read(0, self.inner.data_len)
    }

    /// Starts an update: a section in which write windows can be opened. Checkpoints
    /// wait until the update ends, so a checkpoint never captures it half-done; the
    /// windows all close (the memory is protected again) when it is dropped.
    ///
    /// The update must end on the thread that started it (it is `!Send`), because
    /// protection keys are per-thread. For updates from several threads at once, see
    /// [`crate::SharedCache`].
    ///
    /// # Errors
    /// [`Error::Poisoned`] after a failed checkpoint.
    #[inline]
    pub fn update(&mut self) -> Result<Update<'_>> {
        Update::start(&self.inner, &self.guard, Some(&mut self.memo), None)
    }

    /// Opens a single write window over `[offset, offset + len)`; it closes when
    /// dropped. A shorthand for [`RioCache::update`] plus [`Update::window`].
    ///
    /// # Errors
    /// [`Error::OutOfRange`], [`Error::Poisoned`], or an I/O error from `mprotect`.
    pub fn window(&mut self, offset: u64, len: u64) -> Result<WriteWindow<'_>> {
        let mut update = self.update()?;
        let (off, len) = update.open(offset, len)?;
        Ok(WriteWindow { update, off, len })
    }
}

/// Pages an update opened, kept across updates of one writer so that the next update
/// need not mark them dirty again. Valid only while no checkpoint has cleared the dirty
/// marks since (tracked by a generation), and only without protection (with
/// protection, opening a page also changes its protection, which ends with the
/// update). A writer that runs many updates (a transaction lane) keeps one and passes
/// it to [`crate::SharedCache::update_with`]. A memo of another cache, or of a handle of
/// this one from before a reopen or a grow, is ignored: generations are unique in the
/// process.
#[derive(Debug, Clone)]
pub struct PageMemo {
    recent: [Range<usize>; 2],
    gen: u64,
}

impl Default for PageMemo {
    fn default() -> Self {
        PageMemo {
            recent: [0..0, 0..0],
            gen: u64::MAX,
        }
    }
}

/// Range locking of an update of a [`crate::SharedCache`].
#[derive(Debug)]
pub(crate) struct Locking<'a> {
    /// The lock table, the wait, the cache's number (to refuse another cache's claim)
    /// and its claimed region (only the holder of a part touches it).
    pub(crate) sharing: &'a Sharing,
    /// On the heap (see [`Held::boxed`]).
    pub(crate) held: RefCell<Box<Held>>,
    /// The part this update holds, if any.
    pub(crate) claim: Option<Claim>,
}

impl Locking<'_> {
    /// Takes `[offset, offset + len)` (checked, not empty) for this update: nothing to
    /// take inside its own claim; refused inside the claimed region elsewhere.
    // Always inlined, like `Held::acquire` inside it: every `get` and `put` passes here
    // (docs/benchmarks.md, "Hot path").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn take(&self, offset: u64, len: u64, exclusive: bool) -> Result<()> {
        let sh = self.sharing;
        if offset < sh.claimed.end && sh.claimed.start < offset + len {
            return match &self.claim {
                Some(c) if c.covers(offset, len) => Ok(()),
                _ => Err(Error::Claimed { offset, len }),
            };
        }
        let mut held = self.held.borrow_mut();
        if held.acquire(&sh.locks, offset, len, exclusive, sh.wait) {
            Ok(())
        } else if held.refused_by_this_thread() {
            Err(Error::HeldByThisThread { offset, len })
        } else {
            Err(Error::Conflict { offset, len })
        }
    }
}

/// A section of writes that a checkpoint never splits. See [`RioCache::update`] and
/// [`crate::SharedCache::update`].
#[derive(Debug)]
pub struct Update<'a> {
    inner: &'a Inner,
    guard: &'a Guard,
    /// `None` exactly for a reader (see [`crate::SharedCache::reader`]): it changes
    /// nothing, so a checkpoint need not wait for it, and every call that would open
    /// bytes for writing is refused with [`Error::ReadOnly`].
    gate: Option<Ticket<'a>>,
    /// Where `recent` is kept between updates of one writer.
    memo: Option<&'a mut PageMemo>,
    /// For updates of a shared cache: the ranges this update holds.
    locks: Option<Locking<'a>>,
    /// Page ranges opened with `mprotect`, to close on drop.
    opened: Vec<Range<usize>>,
    /// The last two page ranges opened: opening inside one again costs only the range
    /// check (a transaction reopens its log page and data page several times).
    recent: [Range<usize>; 2],
    next_recent: usize,
    /// The checkpoint generation of the dirty map when the update started.
    gen: u64,
    /// Whether this update holds write access to its protection key on this thread
    /// (see [`key_rights`]); given back on drop.
    key_open: bool,
    /// Keep the ranges locked after the update ends (see [`Update::keep_locked`]).
    keep_locked: bool,
    /// Protection keys are per-thread: the update must close where it opened.
    _not_send: PhantomData<*mut ()>,
}

/// [`Update::store_claimed`] through `w` (looked up once by a caller that also makes
/// slices of it).
///
/// # Safety
/// `w` is the cache's writable mapping (`Inner::writable`); `offset` is a multiple of 8
/// inside the calling update's claim, where `Update::claim_writable` (or
/// `claim_writable_all`) said yes; no slice of that update is alive across the call.
#[inline]
unsafe fn store_claimed_in(w: &sys::Mapping, offset: u64, value: u64) {
    let word = w.ptr().wrapping_add(offset as usize);
    #[allow(clippy::cast_ptr_alignment)] // alignment argued in the SAFETY comment
    // `offset` lies in the calling update's claim, inside the data mapping, and is a
    // multiple of 8 on a page-aligned mapping, so the pointer is in bounds and aligned
    // for AtomicU64; only the update holding the claim reaches these bytes, and no slice
    // of that update is alive across this call; `w` is the writable mapping, writable by
    // this thread (the caller's contract).
    // SAFETY: in bounds, aligned, unaliased, writable (above).
    let atomic = unsafe { &*word.cast::<std::sync::atomic::AtomicU64>() };
    atomic.store(value.to_le(), Ordering::Release);
}

impl<'a> Update<'a> {
    #[inline]
    pub(crate) fn start(
        inner: &'a Inner,
        guard: &'a Guard,
        memo: Option<&'a mut PageMemo>,
        locks: Option<Locking<'a>>,
    ) -> Result<Update<'a>> {
        inner.check_poison()?;
        Ok(Update::build(inner, guard, memo, locks))
    }

    /// [`Update::start`] after its poison check. Always inlined, for the reason given at
    /// [`crate::SharedCache::update_holding`].
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn build(
        inner: &'a Inner,
        guard: &'a Guard,
        memo: Option<&'a mut PageMemo>,
        locks: Option<Locking<'a>>,
    ) -> Update<'a> {
        let gate = Some(inner.gate.enter());
        // Read inside the gate: no checkpoint can clear dirty marks until the update
        // ends.
        let gen = inner.dirty_gen.load(Ordering::Relaxed);
        let recent = match (&memo, guard) {
            (Some(m), Guard::None) if m.gen == gen => m.recent.clone(),
            _ => [0..0, 0..0],
        };
        Update {
            inner,
            guard,
            gate,
            memo,
            locks,
            opened: Vec::new(),
            recent,
            gen,
            next_recent: 0,
            key_open: false,
            keep_locked: false,
            _not_send: PhantomData,
        }
    }

    /// A reader of a shared cache: an update that only reads. It takes shared locks as
    /// an update does, but does not enter the checkpoint gate: it opens no byte for
    /// writing (every such call is refused), so a checkpoint's copy cannot see a change
    /// of its in the middle, and need not wait for it.
    #[inline]
    pub(crate) fn start_reader(
        inner: &'a Inner,
        guard: &'a Guard,
        locks: Locking<'a>,
    ) -> Result<Update<'a>> {
        inner.check_poison()?;
        Ok(Update {
            inner,
            guard,
            gate: None,
            memo: None,
            locks: Some(locks),
            opened: Vec::new(),
            recent: [0..0, 0..0],
            gen: 0,
            next_recent: 0,
            key_open: false,
            keep_locked: false,
            _not_send: PhantomData,
        })
    }
}

impl Update<'_> {
    /// Whether this is a reader (see [`crate::SharedCache::reader`]).
    #[inline]
    pub fn is_read_only(&self) -> bool {
        self.gate.is_none()
    }

    /// Starts from a writer's memo (see [`PageMemo`]), if it is still valid.
    #[inline]
    pub(crate) fn seed(&mut self, memo: &PageMemo) {
        if matches!(self.guard, Guard::None) && memo.gen == self.gen {
            self.recent.clone_from(&memo.recent);
        }
    }

    /// Writes [`Update::memo`] into `memo` in place.
    #[inline]
    pub fn memo_into(&self, memo: &mut PageMemo) {
        memo.recent.clone_from(&self.recent);
        memo.gen = self.gen;
    }

    /// The pages this update opened, for the writer's next update (see [`PageMemo`]).
    pub fn memo(&self) -> PageMemo {
        PageMemo {
            recent: self.recent.clone(),
            gen: self.gen,
        }
    }

    /// Takes `claim` for the rest of the update (see [`crate::SharedCache::with_claims`]):
    /// its part is then read and written without locks. Give it back with
    /// [`Update::release_claim`] before the update ends, or it is lost with the update.
    ///
    /// # Errors
    /// The claim back if this is not an update of the claim's cache, the update
    /// already holds one, or it is a reader.
    pub fn hold(&mut self, claim: Claim) -> std::result::Result<(), Claim> {
        match &mut self.locks {
            Some(l)
                if self.gate.is_some() && l.claim.is_none() && l.sharing.id == claim.cache() =>
            {
                l.claim = Some(claim);
                Ok(())
            }
            _ => Err(claim),
        }
    }

    /// The claim this update holds, back (from now on the update cannot touch its part).
    pub fn release_claim(&mut self) -> Option<Claim> {
        self.locks.as_mut().and_then(|l| l.claim.take())
    }

    /// Writes a log record and opens the data it protects, in one step: opens `record`
    /// and `data` (disjoint), lets `fill` write the record from the data's current
    /// bytes, then publishes it with one release-ordered atomic store of `tail` at
    /// `tail_at` (as [`Update::store_u64`]), and returns the data to change. The record
    /// is complete in memory before the store; the data is returned only after it.
    ///
    /// # Errors
    /// As [`Update::window_pair`] and [`Update::store_u64`].
    #[inline]
    pub fn log_and_open(
        &mut self,
        record: Range<u64>,
        data: Range<u64>,
        tail_at: u64,
        tail: u64,
        fill: impl FnOnce(&mut [u8], &[u8]),
    ) -> Result<&mut [u8]> {
        if !tail_at.is_multiple_of(8) {
            return Err(Error::Misaligned { offset: tail_at });
        }
        // Everything that can fail is checked before the store: once the tail is
        // published, this returns the data.
        let (rec_len, data_len) = (range_len(&record)?, range_len(&data)?);
        let (off, len) = self.inner.check_range(data.start, data_len)?;
        if rec_len > 0 && self.claim_writable_all(&[(record.start, rec_len), (tail_at, 8)]) {
            // The fast path: the record and the tail lie in this update's claim, which no
            // other update can touch, and are written through the mapping directly (no
            // lock-table work, no dirty marks: see `SharedCache::with_claims`). The data
            // is opened (locked exclusively) first, so a conflict publishes nothing.
            if self.claim_overlaps(data.start, data_len) {
                return Err(Error::Claimed {
                    offset: data.start,
                    len: data_len,
                });
            }
            // In range (checked above) and not a reader's (a reader holds no claim).
            self.open_checked(data.start, data_len, off, len)?;
            let w = self.inner.writable();
            let rec_at = record.start as usize;
            // SAFETY: the record range lies in this update's claim (checked), which only
            // the update holding the claim may reach, and `&mut self` is borrowed for the
            // slices' lives; the data range is in bounds, opened and locked exclusively by
            // this update (open_checked) and lies outside the claim (checked), so the two
            // slices are disjoint; a checkpoint's snapshot pages were preserved before
            // either was opened (before_write), so it never reads them meanwhile. The
            // mapping is writable by this thread: no mprotect guard, and under pkeys the
            // key's rights are open (claim_writable_all).
            // SAFETY: in bounds, disjoint, exclusively this update's (above).
            let (rec, before) =
                unsafe { (w.slice_mut(rec_at, rec_len as usize), w.slice_mut(off, len)) };
            fill(rec, before);
            // SAFETY: `w` is the cache's writable mapping; `tail_at` is a multiple of 8
            // (checked on entry) in this update's claim, where claim_writable_all said
            // yes; the slices above have ended.
            unsafe { store_claimed_in(w, tail_at, tail) };
            // SAFETY: as above: opened, locked, unaliased (the slices above have ended).
            return Ok(unsafe { w.slice_mut(off, len) });
        }
        let (rec, before) = self.window_pair(record, data)?;
        fill(rec, before);
        self.store_u64(tail_at, tail)?;
        // `window_pair` above opened the data in this update: its pages and (shared
        // cache) its exclusive lock stay until the update ends.
        // SAFETY: in bounds and open for writing; `&mut self` is borrowed for the slice's
        // life, so no other slice of this update is alive; the gate holds off the copy.
        Ok(unsafe { self.inner.writable().slice_mut(off, len) })
    }

    /// Bytes in the cache.
    pub fn len(&self) -> u64 {
        self.inner.data_len
    }

    /// The protection in force.
    pub fn protection(&self) -> crate::ActiveProtection {
        self.inner.protection
    }

    /// Whether the cache holds no bytes (never: a cache has at least one byte).
    pub fn is_empty(&self) -> bool {
        self.inner.data_len == 0
    }

    /// The bytes `[offset, offset + len)`. In an update of a shared cache, the range is
    /// locked shared until the update ends.
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::Conflict`] if another update holds the range
    /// exclusively beyond the lock wait.
    // Always inlined: every vista `get` passes here; out of line it cost about 25
    // instructions a call (callgrind, docs/benchmarks.md "Per swap: SPS").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn read(&self, offset: u64, len: u64) -> Result<&[u8]> {
        let (off, len) = self.inner.check_range(offset, len)?;
        // Mutant `read-unlocked` (crash-sim self-test): reads take no shared lock.
        if let Some(l) = self
            .locks
            .as_ref()
            .filter(|_| len > 0 && !crate::mutant::is("read-unlocked"))
        {
            l.take(offset, len as u64, false)?;
        }
        // Of a shared cache, this update holds the range (shared or exclusively) until it
        // ends, so no other update has or gets a mutable slice of it.
        // SAFETY: in bounds; `&self` is borrowed for the slice's life, so no mutable slice
        // of this update exists meanwhile; the checkpointer only reads.
        Ok(unsafe { self.inner.data.slice(off, len) })
    }

    /// The bytes `[offset, offset + len)`, for an update that will change them: in an
    /// update of a shared cache the range is locked exclusively (as by
    /// [`Update::window`]) until the update ends, but not opened for writing, so nothing
    /// is marked dirty. A later window over the range then takes no lock.
    ///
    /// For a read followed by a write of the same bytes, this saves the upgrade from a
    /// shared lock to an exclusive one; and two updates that read and then change the
    /// same range wait for each other instead of each holding it shared and waiting for
    /// the other to let go (one of which then gives up with a conflict).
    ///
    /// # Errors
    /// [`Error::ReadOnly`] in a reader; [`Error::OutOfRange`]; [`Error::Conflict`] if
    /// another update holds the range beyond the lock wait; [`Error::HeldByThisThread`]
    /// if a read guard of this thread holds it; [`Error::Claimed`] inside another
    /// update's claim.
    #[inline]
    pub fn read_for_update(&self, offset: u64, len: u64) -> Result<&[u8]> {
        if self.is_read_only() {
            return Err(Error::ReadOnly { offset, len });
        }
        let (off, len) = self.inner.check_range(offset, len)?;
        if let Some(l) = self.locks.as_ref().filter(|_| len > 0) {
            l.take(offset, len as u64, true)?;
        }
        // Of a shared cache, this update holds the range exclusively until it ends, so no
        // other update has or gets a slice of it.
        // SAFETY: in bounds; `&self` is borrowed for the slice's life, so no mutable slice
        // of this update exists meanwhile; the checkpointer only reads.
        Ok(unsafe { self.inner.data.slice(off, len) })
    }

    /// Whether this update may hold the byte at `offset` exclusively (may have opened it
    /// for writing, or read it for update). `false` is sure: in an update of a shared
    /// cache, outside the claimed region, the byte's lock stripe is not held exclusively
    /// by this update, so no range it wrote covers the byte. (vista asks before it
    /// searches its recent undo records for one that covers a new range: a range read
    /// shared, or not touched, cannot be covered.) An update of a cache with one owner
    /// holds everything: always `true`.
    #[inline]
    pub fn may_hold_exclusively(&self, offset: u64) -> bool {
        let Some(l) = &self.locks else {
            return true;
        };
        let sh = l.sharing;
        if (sh.claimed.start..sh.claimed.end).contains(&offset) {
            return true;
        }
        l.held.borrow().may_hold_line_exclusively(&sh.locks, offset)
    }

    /// Opens `[offset, offset + len)` for writing until the update ends, marks its pages
    /// dirty, and returns the bytes.
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::Conflict`] (shared cache); an I/O error from
    /// `mprotect`.
    #[inline]
    pub fn window(&mut self, offset: u64, len: u64) -> Result<&mut [u8]> {
        let (off, len) = self.open(offset, len)?;
        // Unaliased: without a shared cache, the owner's `&mut RioCache` is borrowed by
        // this update; with one, this update holds the range exclusively until it ends.
        // SAFETY: in bounds and opened for writing (open); `&mut self` is borrowed for the
        // slice's life; a checkpoint's snapshot pages were preserved by open.
        Ok(unsafe { self.inner.writable().slice_mut(off, len) })
    }

    /// Opens two disjoint ranges at once (for copying from one into the other).
    ///
    /// # Errors
    /// [`Error::Overlap`] if they overlap, else as [`Update::window`].
    #[inline]
    pub fn window_pair(&mut self, a: Range<u64>, b: Range<u64>) -> Result<(&mut [u8], &mut [u8])> {
        let (a_len, b_len) = (range_len(&a)?, range_len(&b)?);
        if a.start < b.end && b.start < a.end && !a.is_empty() && !b.is_empty() {
            return Err(Error::Overlap(a, b));
        }
        // Check both before opening either, so a refused pair opens and dirties nothing.
        self.inner.check_range(a.start, a_len)?;
        self.inner.check_range(b.start, b_len)?;
        let (ao, al) = self.open(a.start, a_len)?;
        let (bo, bl) = self.open(b.start, b_len)?;
        let w = self.inner.writable();
        // SAFETY: both ranges are in bounds and open (open) and disjoint (checked), so
        // the two slices do not alias each other; otherwise as in `window`.
        Ok(unsafe { (w.slice_mut(ao, al), w.slice_mut(bo, bl)) })
    }

    /// Stores `value` (little-endian) at `offset` with one atomic, release-ordered
    /// 8-byte store: every write made before it in program order is in the memory image
    /// before it, and a crash sees either the old or the new value, never a mix. This is
    /// the primitive for commit points.
    ///
    /// # Errors
    /// [`Error::Misaligned`] unless `offset` is a multiple of 8; else as
    /// [`Update::window`].
    // Always inlined, with a store into this update's claim (a vista commit) as the
    // whole inline body; out of line, a commit store cost about 55 instructions
    // (callgrind; docs/benchmarks.md, "Hot path").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn store_u64(&mut self, offset: u64, value: u64) -> Result<()> {
        if offset.is_multiple_of(8) && self.claim_writable(offset, 8) {
            self.store_claimed(offset, value);
            return Ok(());
        }
        self.store_u64_unclaimed(offset, value)
    }

    /// [`Update::store_u64`] outside this update's claim (or misaligned, refused).
    #[inline(never)]
    fn store_u64_unclaimed(&mut self, offset: u64, value: u64) -> Result<()> {
        if !offset.is_multiple_of(8) {
            return Err(Error::Misaligned { offset });
        }
        if self.writes_through(offset, 8)? {
            return self.write_through(offset, &value.to_le_bytes());
        }
        let (off, _) = self.open(offset, 8)?;
        let word = self.inner.writable().ptr().wrapping_add(off);
        // No race with a non-atomic access: `&mut self` means no slice of this update is
        // alive, and of a shared cache no other update holds the range.
        #[allow(clippy::cast_ptr_alignment)] // alignment argued in the SAFETY comment
        // SAFETY: in bounds and open for writing (open); the mapping is page-aligned and
        // `off` a multiple of 8, so the pointer is aligned for AtomicU64.
        let atomic = unsafe { &*word.cast::<std::sync::atomic::AtomicU64>() };
        atomic.store(value.to_le(), Ordering::Release);
        Ok(())
    }

    /// Whether `[offset, offset + len)` lies in the claim this update holds and can be
    /// written through the mapping by this thread without a system call (any guard but
    /// `mprotect`); under protection keys, opens this thread's rights to the key first.
    #[inline]
    fn claim_writable(&mut self, offset: u64, len: u64) -> bool {
        self.claim_writable_all(&[(offset, len)])
    }

    /// [`Update::claim_writable`] of several ranges `(offset, len)` at once (a record and
    /// its tail word): one look at the claim and the guard.
    #[inline]
    fn claim_writable_all(&mut self, ranges: &[(u64, u64)]) -> bool {
        let covered = self
            .locks
            .as_ref()
            .and_then(|l| l.claim.as_ref())
            .is_some_and(|c| ranges.iter().all(|&(offset, len)| c.covers(offset, len)));
        let writable = match self.guard {
            _ if !covered => false,
            Guard::Mprotect { .. } => false,
            Guard::Pkey { key } => {
                if !self.key_open {
                    key_rights::open(*key);
                    self.key_open = true;
                }
                true
            }
            Guard::None | Guard::Alias => true,
        };
        if writable {
            for &(offset, len) in ranges {
                let off = offset as usize;
                self.inner
                    .before_write(off / PAGE..(off + len as usize).div_ceil(PAGE));
            }
        }
        writable
    }

    /// Whether `[offset, offset + len)` touches this update's claim.
    #[inline]
    fn claim_overlaps(&self, offset: u64, len: u64) -> bool {
        self.locks
            .as_ref()
            .and_then(|l| l.claim.as_ref())
            .is_some_and(|c| {
                let r = c.range();
                len > 0 && offset < r.end && r.start < offset.saturating_add(len)
            })
    }

    /// The release-ordered atomic store of `value` at `offset`, a multiple of 8 inside
    /// this update's claim, where [`Update::claim_writable`] (or `claim_writable_all`)
    /// said yes.
    #[inline]
    fn store_claimed(&self, offset: u64, value: u64) {
        // SAFETY: the cache's writable mapping; the offset's contract is this function's
        // (above), and `&self` means no slice of this update is alive.
        unsafe { store_claimed_in(self.inner.writable(), offset, value) };
    }

    /// Writes `bytes` at `offset`, by whatever way is cheapest: a copy through the
    /// mapping where the range is writable anyway (no protection, protection keys, or
    /// pages this update already opened), else, under `mprotect`, a `pwrite` into the
    /// memory image, which leaves the pages read-only to the process and costs about a
    /// tenth of an `mprotect` pair. Either way the pages are marked dirty and the bytes
    /// are in the memory image when this returns.
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::Conflict`] (shared cache); I/O errors from
    /// `mprotect` or `pwrite`.
    pub fn write_bytes(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        if self.writes_through(offset, bytes.len() as u64)? {
            return self.write_through(offset, bytes);
        }
        self.window(offset, bytes.len() as u64)?
            .copy_from_slice(bytes);
        Ok(())
    }

    /// Whether a write of `[offset, offset + len)` is cheaper through the image file:
    /// under `mprotect`, for pages this update has not opened. Takes the range
    /// exclusively (shared cache) when it says yes.
    #[inline]
    fn writes_through(&self, offset: u64, len: u64) -> Result<bool> {
        if self.is_read_only() {
            return Err(Error::ReadOnly { offset, len });
        }
        let Guard::Mprotect { .. } = self.guard else {
            return Ok(false);
        };
        let (off, n) = self.inner.check_range(offset, len)?;
        if n == 0 {
            return Ok(false);
        }
        let pages = off / PAGE..(off + n).div_ceil(PAGE);
        let open = self
            .recent
            .iter()
            .chain(&self.opened)
            .any(|r| r.start <= pages.start && pages.end <= r.end);
        if !open {
            if let Some(l) = &self.locks {
                l.take(offset, len, true)?;
            }
        }
        Ok(!open)
    }

    /// Writes through the memory image file. The caller checked and locked the range.
    ///
    /// Atomicity: a process dies only on its way back to user mode, never inside the
    /// kernel's copy of a write that does not cross a page, so a crash sees such a write
    /// whole or not at all (what `store_u64` needs; larger writes need no atomicity:
    /// their callers publish them afterwards). Ordering: the system call comes after
    /// every store this thread made before it, and before every store after it.
    fn write_through(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let off = offset as usize;
        let pages = off / PAGE..(off + bytes.len()).div_ceil(PAGE);
        self.inner.before_write(pages.clone());
        self.inner.mark_dirty(pages);
        self.inner
            .faults
            .check(IoOp::Write, IoFile::Image)
            .and_then(|()| {
                self.inner
                    .image
                    .write_all_at(bytes, self.inner.image_data_at + offset)
            })
            .context(|| format!("write {}+{} through the memory image", offset, bytes.len()))
    }

    /// Declares the cache's contents inconsistent (for example, a layer above found its
    /// undo log damaged): from now on no checkpoint runs, not even at close, so the
    /// disk image keeps the last consistent checkpoint, and further updates are
    /// refused with [`Error::Poisoned`]. The memory image is left as it is, for a later
    /// open to judge.
    pub fn poison(&self, reason: impl Into<String>) {
        self.inner.set_poison(reason.into());
    }

    /// [`Error::Poisoned`] if the cache has been poisoned since (say, by a checkpoint
    /// that failed while this update ran), for a layer above that must not commit then.
    ///
    /// # Errors
    /// [`Error::Poisoned`].
    #[inline]
    pub fn check_poison(&self) -> Result<()> {
        self.inner.check_poison()
    }

    /// Keeps every range this update holds (of a shared cache) locked after it ends,
    /// for as long as the cache is open: for a writer that could not undo its changes
    /// (the caller poisons the cache too), so that no other update reads or changes the
    /// bytes it left half-restored, or commits over them. Its windows still close.
    pub fn keep_locked(&mut self) {
        self.keep_locked = true;
    }

    /// Ends the update (closing its windows, releasing its ranges and letting
    /// checkpoints in), then takes a checkpoint and returns once everything written so
    /// far is durable on disk.
    ///
    /// # Errors
    /// As [`RioCache::checkpoint`]; [`Error::InUpdate`] if this thread is still inside
    /// another update of the cache (the checkpoint would wait for it forever).
    pub fn checkpoint(self) -> Result<()> {
        let inner = self.inner;
        drop(self);
        if inner.gate.held_by_this_thread() {
            return Err(Error::InUpdate);
        }
        inner.checkpoint()
    }

    /// Opens a range for writing without returning it (the bytes are then reachable
    /// through [`Update::window`] at no further cost). In an update of a shared cache,
    /// the range is locked exclusively until the update ends.
    ///
    /// # Errors
    /// As [`Update::window`].
    #[inline]
    pub fn open(&mut self, offset: u64, len: u64) -> Result<(usize, usize)> {
        if self.is_read_only() {
            return Err(Error::ReadOnly { offset, len });
        }
        let (off, n) = self.inner.check_range(offset, len)?;
        self.open_checked(offset, len, off, n)
    }

    /// [`Update::open`] of `[offset, offset + len)`, which is `[off, off + n)` of the
    /// mapping: in range, and this update is not a reader's (both checked by the caller).
    // Always inlined: on every write's path, where out of line its result went through
    // memory (docs/benchmarks.md, "Hot path").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn open_checked(
        &mut self,
        offset: u64,
        len: u64,
        off: usize,
        n: usize,
    ) -> Result<(usize, usize)> {
        if n == 0 {
            return Ok((off, 0));
        }
        if let Some(l) = &self.locks {
            l.take(offset, len, true)?;
        }
        let pages = off / PAGE..(off + n).div_ceil(PAGE);
        if self
            .recent
            .iter()
            .any(|r| r.start <= pages.start && pages.end <= r.end)
        {
            return Ok((off, n));
        }
        // One page, dirty already, without a guard to open and without a snapshot to
        // preserve it for (none can start while this update is inside the gate):
        // opening it would change nothing.
        if pages.len() == 1
            && matches!(self.guard, Guard::None | Guard::Alias)
            && self.inner.is_dirty_and_unshared(pages.start)
        {
            return Ok((off, n));
        }
        self.open_pages(pages)
            .context(|| format!("mprotect {offset}+{len} writable"))?;
        Ok((off, n))
    }

    /// Opens pages not opened recently: the snapshot's copy-on-write, protection, dirty
    /// marking. (Pages opened recently went through here in this snapshot epoch: the
    /// epoch changes only with the dirty generation, which invalidates every memo.)
    #[inline(never)]
    fn open_pages(&mut self, pages: Range<usize>) -> std::io::Result<()> {
        self.inner.before_write(pages.clone());
        match self.guard {
            // The alias is always writable: nothing to open.
            Guard::None | Guard::Alias => {}
            Guard::Mprotect { refs } => {
                self.inner.faults.check(IoOp::Protect, IoFile::Image)?;
                let mut refs = refs.lock().unwrap_or_else(PoisonError::into_inner);
                open_pages(&self.inner.data, &mut refs, pages.clone())?;
                self.opened.push(pages.clone());
            }
            Guard::Pkey { key } => {
                if !self.key_open {
                    key_rights::open(*key);
                    self.key_open = true;
                }
            }
        }
        self.inner.mark_dirty(pages.clone());
        self.recent[self.next_recent] = pages;
        self.next_recent ^= 1;
        Ok(())
    }
}

impl Drop for Update<'_> {
    /// Closes every window and releases the update's ranges. A failure to re-protect
    /// pages with `mprotect` cannot be reported from here; it leaves those pages
    /// writable (weaker protection, never unsoundness) and is counted in
    /// [`crate::Stats::reprotect_failures`].
    #[inline]
    fn drop(&mut self) {
        if let Some(memo) = self.memo.as_deref_mut() {
            memo.recent.clone_from(&self.recent);
            memo.gen = self.gen;
        }
        if let Guard::Mprotect { refs } = self.guard {
            if !self.opened.is_empty() {
                let mut refs = refs.lock().unwrap_or_else(PoisonError::into_inner);
                for pages in self.opened.drain(..) {
                    if close_pages(&self.inner.data, &mut refs, pages).is_err() {
                        self.inner
                            .reprotect_failures
                            .fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }
        if let (true, Guard::Pkey { key }) = (self.key_open, self.guard) {
            key_rights::close(*key);
            self.key_open = false;
        }
        // The windows are closed: only now may other updates take the ranges.
        if let Some(l) = self.locks.take().filter(|_| !self.keep_locked) {
            let mut held = l.held.into_inner();
            held.release_all(&l.sharing.locks);
            Held::recycle(held);
        }
    }
}

/// The length of `r`, refusing an inverted range (`start > end`).
#[inline]
fn range_len(r: &Range<u64>) -> Result<u64> {
    r.end
        .checked_sub(r.start)
        .ok_or_else(|| Error::InvertedRange(r.clone()))
}

/// This thread's rights to the caches' protection keys.
///
/// The rule: an update changes only the two PKRU bits of its own cache's key, never the
/// whole register. Write access to a key is granted when the first update on this
/// thread that uses the key opens a window, and denied again (access and write
/// disabled, as `pkey_alloc` set it) when the last such update on this thread ends, in
/// whatever order the updates end. Saving PKRU when a window opens and restoring it
/// when the update ends would instead, with two caches on one thread whose updates end
/// out of order, deny the other cache's key under its open windows, or leave it
/// granted for good.
mod key_rights {
    use std::cell::Cell;

    use crate::sys;

    /// x86-64 has 16 keys.
    const KEYS: usize = 16;

    thread_local! {
        /// Per key, how many updates on this thread hold it open.
        static HOLDERS: Cell<[u32; KEYS]> = const { Cell::new([0; KEYS]) };
    }

    /// Grants this thread write access to `key` (if no update on it holds it already).
    pub(super) fn open(key: u32) {
        HOLDERS.with(|h| {
            let mut n = h.get();
            let k = key as usize % KEYS;
            if n[k] == 0 {
                sys::wrpkru(sys::rdpkru() & !sys::pkru_deny_bits(key));
            }
            n[k] += 1;
            h.set(n);
        });
    }

    /// Gives back one update's hold on `key`, denying it when none is left.
    pub(super) fn close(key: u32) {
        HOLDERS.with(|h| {
            let mut n = h.get();
            let k = key as usize % KEYS;
            n[k] = n[k].saturating_sub(1);
            if n[k] == 0 {
                sys::wrpkru(sys::rdpkru() | sys::pkru_deny_bits(key));
            }
            h.set(n);
        });
    }
}

/// Increments the per-page counts of `pages`, making writable the runs that were 0.
fn open_pages(map: &sys::Mapping, refs: &mut [u32], pages: Range<usize>) -> std::io::Result<()> {
    let mut run: Option<usize> = None;
    // One step past the end flushes the last run; the index is the page number.
    #[allow(clippy::needless_range_loop)]
    for p in pages.start..=pages.end {
        let closed = p < pages.end && refs[p] == 0;
        if closed {
            run.get_or_insert(p);
            continue;
        }
        if let Some(start) = run.take() {
            if let Err(e) = map.protect(start * PAGE, (p - start) * PAGE, true) {
                // Give back the counts this call took before the failing run.
                let _ = close_pages(map, refs, pages.start..start);
                return Err(e);
            }
            refs[start..p].fill(1);
        }
        if p < pages.end {
            refs[p] += 1;
        }
    }
    Ok(())
}

/// Decrements the per-page counts of `pages`, making read-only the runs that reach 0.
fn close_pages(map: &sys::Mapping, refs: &mut [u32], pages: Range<usize>) -> std::io::Result<()> {
    let mut result = Ok(());
    let mut run: Option<usize> = None;
    // One step past the end flushes the last run; the index is the page number.
    #[allow(clippy::needless_range_loop)]
    for p in pages.start..=pages.end {
        let reaches_zero = p < pages.end && {
            refs[p] -= 1;
            refs[p] == 0
        };
        if reaches_zero {
            run.get_or_insert(p);
        } else if let Some(start) = run.take() {
            if let Err(e) = map.protect(start * PAGE, (p - start) * PAGE, false) {
                result = Err(e);
            }
        }
    }
    result
}

/// A single open write window; closes on drop. See [`RioCache::window`].
#[derive(Debug)]
pub struct WriteWindow<'a> {
    update: Update<'a>,
    off: usize,
    len: usize,
}

impl Deref for WriteWindow<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the range was checked and opened at construction; `&self` is
        // borrowed, so no mutable slice from `deref_mut` is alive.
        unsafe { self.update.inner.data.slice(self.off, self.len) }
    }
}

impl DerefMut for WriteWindow<'_> {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: the range was checked and opened for writing at construction and
        // stays open until the update drops; `&mut self` makes this the only slice.
        unsafe { self.update.inner.writable().slice_mut(self.off, self.len) }
    }
}
