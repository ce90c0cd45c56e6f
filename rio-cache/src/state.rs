//! The state of an open cache that its handle, its updates and the writeback thread
//! share: the files, the mappings, the dirty map, counters and the poison flag.

use std::fs::File;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use crate::disk_io::DiskFile;
use crate::error::{Error, Result};
use crate::format::MemHeader;
use crate::gate::Gate;
use crate::protection::ActiveProtection;
use crate::start::StartKind;
use crate::sys::{self, AtomicMapping, Mapping, PAGE};

#[derive(Debug, Default)]
pub(crate) struct Wake {
    pub(crate) stop: bool,
    pub(crate) kick: bool,
}

/// State shared with the writeback thread.
#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) path: PathBuf,
    pub(crate) journal_path: PathBuf,
    pub(crate) image_path: PathBuf,
    pub(crate) disk: DiskFile,
    pub(crate) journal: DiskFile,
    pub(crate) data_len: u64,
    pub(crate) pages: usize,
    pub(crate) meta: AtomicMapping,
    /// The data, for reading (and for writing under `None` and `Mprotect`).
    pub(crate) data: Mapping,
    /// With a protection key: a second mapping of the data, tagged with the key. With
    /// `Alias`: a second, writable mapping of the data at a random address.
    pub(crate) write: Option<Mapping>,
    pub(crate) pkey: Option<u32>,
    /// Updates pass it; the checkpoint's copy closes it.
    pub(crate) gate: Gate,
    /// Serializes checkpoints; holds the disk image's checkpoint sequence number.
    pub(crate) disk_seq: Mutex<u64>,
    /// The disk image's slot that holds that checkpoint (0 or 1; the next checkpoint
    /// goes to the other). Changed only under the `disk_seq` lock.
    pub(crate) disk_slot: std::sync::atomic::AtomicUsize,
    /// The map in that slot's header: where the other slot may differ from it (`None`:
    /// anywhere; see `lacks`). Changed only under the `disk_seq` lock.
    pub(crate) lacks: Mutex<Option<crate::lacks::ChunkMap>>,
    /// The intent record was damaged at the open: the next checkpoint writes one even if
    /// the current header's map names its pages (a damaged record makes every cold start
    /// mark every page).
    pub(crate) intent_damaged: AtomicBool,
    /// This memory image's id, recorded as the writer of every checkpoint it installs.
    pub(crate) image_id: u64,
    pub(crate) dirty_pages: AtomicU64,
    /// Which of the image's two page maps is the dirty map (0: the first); the other is
    /// the in-flight map, frozen as a checkpoint's snapshot (see `snapshot`).
    pub(crate) dirty_side: std::sync::atomic::AtomicUsize,
    /// The checkpoint's copy-on-write snapshot.
    pub(crate) snapshot: crate::snapshot::Snapshot,
    /// Replaced by a fresh generation ([`fresh_dirty_gen`]; under the exclusive gate)
    /// whenever a checkpoint clears dirty marks.
    pub(crate) dirty_gen: AtomicU64,
    /// Dirty pages that wake the writeback thread (`u64::MAX` without one).
    pub(crate) kick_pages: AtomicU64,
    pub(crate) kicked: AtomicBool,
    pub(crate) wake: Mutex<Wake>,
    pub(crate) wake_cv: Condvar,
    pub(crate) poison: Mutex<Option<String>>,
    pub(crate) poisoned: AtomicBool,
    pub(crate) checkpoints: AtomicU64,
    pub(crate) pages_written: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    /// Intent records written (see `Stats::intents_written`).
    pub(crate) intents: AtomicU64,
    pub(crate) last_checkpoint_ns: AtomicU64,
    pub(crate) reprotect_failures: AtomicU64,
    /// Only group checkpoints may write the cache back (see `group`).
    pub(crate) fenced: AtomicBool,
    pub(crate) start: StartKind,
    pub(crate) protection: ActiveProtection,
    /// The memory image file, for writes that go through it rather than a window.
    pub(crate) image: File,
    /// Where the data starts in the memory image.
    pub(crate) image_data_at: u64,
    /// How long a checkpoint waits for the updates inside the gate.
    pub(crate) checkpoint_wait: std::time::Duration,
    /// Injected I/O failures (tests; see [`crate::Faults`]).
    pub(crate) faults: crate::Faults,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Unmap the tagged mapping before giving the key back, so a later owner of the
        // key never governs our pages.
        drop(self.write.take());
        if let Some(key) = self.pkey {
            sys::pkey_free(key);
        }
    }
}

impl Inner {
    /// The image's record of the last checkpoint it installed (see `MemHeader`).
    pub(crate) fn synced_word(&self) -> SyncedWord<'_> {
        SyncedWord(self.meta.word(MemHeader::SYNCED_AT))
    }

    #[inline]
    pub(crate) fn writable(&self) -> &Mapping {
        self.write.as_ref().unwrap_or(&self.data)
    }

    /// One of the two page maps of the image's metadata.
    #[inline]
    fn page_map(&self, side: usize) -> &[std::sync::atomic::AtomicU8] {
        self.meta.bytes(PAGE + side * self.pages, self.pages)
    }

    /// The map of pages changed since the last checkpoint's snapshot. (The two maps
    /// swap roles at each snapshot; an open treats a mark in either as dirty.)
    #[inline]
    pub(crate) fn dirty_map(&self) -> &[std::sync::atomic::AtomicU8] {
        self.page_map(self.dirty_side.load(Ordering::Relaxed))
    }

    /// The map of pages a checkpoint has taken into its snapshot and not yet installed.
    pub(crate) fn inflight_map(&self) -> &[std::sync::atomic::AtomicU8] {
        self.page_map(1 - self.dirty_side.load(Ordering::Relaxed))
    }

    /// The map in the current slot's header (see `Inner::lacks`, the field).
    pub(crate) fn lacks(&self) -> Option<crate::lacks::ChunkMap> {
        *self
            .lacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The map of pages on which the disk image's two slots may differ: a checkpoint
    /// into the other slot writes these pages too (copied from the current slot, if
    /// they are not in its snapshot). See `checkpoint`.
    pub(crate) fn differs_map(&self) -> &[std::sync::atomic::AtomicU8] {
        self.meta.bytes(
            MemHeader::differs_at(self.pages as u64) as usize,
            self.pages,
        )
    }

    #[inline]
    pub(crate) fn mark_dirty(&self, pages: Range<usize>) {
        let dirty = self.dirty_map();
        let mut newly = 0;
        for p in pages {
            // The swap keeps two threads marking one page from counting it twice.
            if dirty[p].load(Ordering::Relaxed) == 0 && dirty[p].swap(1, Ordering::Relaxed) == 0 {
                newly += 1;
            }
        }
        if newly > 0 {
            let total = self.dirty_pages.fetch_add(newly, Ordering::Relaxed) + newly;
            if total >= self.kick_pages.load(Ordering::Relaxed)
                && !self.kicked.swap(true, Ordering::Relaxed)
            {
                let mut w = self
                    .wake
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                w.kick = true;
                self.wake_cv.notify_all();
            }
        }
    }

    #[inline]
    pub(crate) fn check_poison(&self) -> Result<()> {
        if self.poisoned.load(Ordering::Acquire) {
            return Err(self.poison_error());
        }
        Ok(())
    }

    #[cold]
    fn poison_error(&self) -> Error {
        let why = self
            .poison
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        Error::Poisoned(why)
    }

    pub(crate) fn set_poison(&self, why: String) {
        *self
            .poison
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(why);
        self.poisoned.store(true, Ordering::Release);
    }
}

/// The memory image's `synced` word: stores go through its check-bit encoding.
pub(crate) struct SyncedWord<'a>(&'a AtomicU64);

impl SyncedWord<'_> {
    /// Records that the image has installed checkpoint `seq`, with one atomic store.
    pub(crate) fn store(&self, seq: u64, order: Ordering) {
        self.0.store(MemHeader::encode_synced(seq), order);
    }
}

/// The next dirty generation (see [`Inner::dirty_gen`]), never handed out before in this
/// process and never 0 (a reader's) or `u64::MAX` (an empty memo's): a
/// [`crate::PageMemo`] names pages of one cache in one generation, so a memo of another
/// cache, or of a handle from before a reopen, never matches and never keeps a write from
/// being marked dirty (and so out of the next checkpoint).
pub(crate) fn fresh_dirty_gen() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
