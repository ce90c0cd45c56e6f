//! The handle: an open cache, its counters, checkpoints, writeback policy and close.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::error::Result;
use crate::options::Writeback;
use crate::protection::{ActiveProtection, Guard};
use crate::start::StartKind;
use crate::state::Inner;
use crate::sys::PAGE;
use crate::writeback::WritebackThread;

/// Counters describing a cache.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// How the cache was opened.
    pub start: StartKind,
    /// The protection in force.
    pub protection: ActiveProtection,
    /// Pages written since the last checkpoint's copy.
    pub dirty_pages: u64,
    /// Checkpoints completed by this handle (including the one a recovery installed).
    pub checkpoints: u64,
    /// Pages installed in the disk image by this handle.
    pub pages_written: u64,
    /// Bytes written to the journal and the disk image by this handle.
    pub bytes_written: u64,
    /// Pages that writers copied for a running checkpoint before changing them (its
    /// snapshot's copy-on-write), by this handle.
    pub pages_preserved: u64,
    /// How long the last checkpoint took, from the copy to the cleared journal.
    pub last_checkpoint: Option<Duration>,
    /// Failed attempts to make pages read-only again after a window.
    pub reprotect_failures: u64,
    /// The sequence number of the checkpoint the disk image holds.
    pub disk_seq: u64,
    /// Checkpoints by this handle that first made durable which pages of the other slot
    /// they would write (their intent record: one more sector and fsync), because the
    /// current slot's header did not already name them all (docs/rio-cache.md,
    /// "Checkpoints").
    pub intents_written: u64,
}

/// An emulated Rio file cache: memory that survives the process, guarded against wild
/// stores, written back to its disk file in consistent checkpoints.
///
/// See the [crate documentation](crate) for the model and an example.
#[derive(Debug)]
pub struct RioCache {
    pub(crate) inner: Arc<Inner>,
    pub(crate) guard: Guard,
    /// The pages the last update opened (see [`crate::PageMemo`]).
    pub(crate) memo: crate::PageMemo,
    pub(crate) writeback: Option<WritebackThread>,
    pub(crate) checkpoint_on_close: bool,
}

impl RioCache {
    /// Bytes of data in the cache.
    pub fn len(&self) -> u64 {
        self.inner.data_len
    }

    /// Always `false`: a cache holds at least one byte.
    pub fn is_empty(&self) -> bool {
        self.inner.data_len == 0
    }

    /// How this open started.
    pub fn start_kind(&self) -> StartKind {
        self.inner.start
    }

    /// The protection in force.
    pub fn protection(&self) -> ActiveProtection {
        self.inner.protection
    }

    /// The disk file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The memory image file.
    pub fn image_path(&self) -> &Path {
        &self.inner.image_path
    }

    /// The journal file.
    pub fn journal_path(&self) -> &Path {
        &self.inner.journal_path
    }

    /// Current counters.
    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        let ns = i.last_checkpoint_ns.load(Ordering::Relaxed);
        Stats {
            start: i.start,
            protection: i.protection,
            dirty_pages: i.dirty_pages.load(Ordering::Relaxed),
            checkpoints: i.checkpoints.load(Ordering::Relaxed),
            pages_written: i.pages_written.load(Ordering::Relaxed),
            bytes_written: i.bytes_written.load(Ordering::Relaxed),
            intents_written: i.intents.load(Ordering::Relaxed),
            pages_preserved: i.snapshot.preserved.load(Ordering::Relaxed),
            last_checkpoint: (ns != u64::MAX).then(|| Duration::from_nanos(ns)),
            reprotect_failures: i.reprotect_failures.load(Ordering::Relaxed),
            disk_seq: *i
                .disk_seq
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        }
    }

    /// Writes every page dirtied so far to the disk image, as one all-or-nothing
    /// checkpoint, and returns once it is durable. Waits for an update in progress to
    /// end (the snapshot needs a consistent moment, at most the checkpoint wait) but
    /// never blocks updates for the copy (copy-on-write) or the disk I/O.
    ///
    /// # Errors
    /// [`Error::Poisoned`](crate::Error::Poisoned) after an earlier failure; an I/O error, which poisons the
    /// cache.
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    /// Closes the cache, taking a final checkpoint if the options ask for one (the
    /// default), and reports its errors (which `Drop` cannot).
    ///
    /// # Errors
    /// As [`RioCache::checkpoint`]; [`Error::Fenced`](crate::Error::Fenced) if the cache
    /// is fenced (only its group's checkpoint may write it back): nothing was
    /// checkpointed, and the memory image keeps everything, as after a crash.
    pub fn close(mut self) -> Result<()> {
        self.stop_writeback();
        if self.checkpoint_on_close {
            self.checkpoint_on_close = false;
            if self.inner.fenced.load(Ordering::SeqCst) {
                return Err(crate::Error::Fenced);
            }
            self.inner.checkpoint()?;
        }
        Ok(())
    }

    /// Changes the writeback policy of the open cache: stops the background thread, if
    /// any, and starts the one `writeback` asks for. A layer above that must validate
    /// the contents before any of them may reach the disk opens with
    /// [`Writeback::Manual`] and calls this once it has accepted them.
    ///
    /// # Errors
    /// An I/O error if the thread cannot be spawned (the cache is then manual).
    pub fn set_writeback(&mut self, writeback: Writeback) -> Result<()> {
        self.stop_writeback();
        self.inner
            .kick_pages
            .store(kick_pages(writeback), Ordering::Relaxed);
        if let Writeback::Background { interval, .. } = writeback {
            self.writeback = Some(WritebackThread::spawn(Arc::clone(&self.inner), interval)?);
        }
        Ok(())
    }

    /// Fences the cache, or lifts the fence: see [`crate::SharedCache::set_fenced`].
    pub fn set_fenced(&self, fenced: bool) {
        self.inner.fenced.store(fenced, Ordering::SeqCst);
    }

    /// Declares the cache's contents unfit for the disk (for example, a layer above
    /// refused them at open): from now on no checkpoint runs, not even at close, so the
    /// disk image and the journal are never written again by this handle, and updates
    /// are refused with [`Error::Poisoned`](crate::Error::Poisoned). The memory image is left as it is, for a
    /// later open to judge. The same as [`Update::poison`](crate::Update::poison).
    pub fn poison(&self, reason: impl Into<String>) {
        self.inner.set_poison(reason.into());
    }

    pub(crate) fn stop_writeback(&mut self) {
        if let Some(t) = self.writeback.take() {
            t.stop(&self.inner);
        }
    }
}

/// The dirty-page count that wakes the writeback thread early.
pub(crate) fn kick_pages(writeback: Writeback) -> u64 {
    match writeback {
        Writeback::Background { dirty_bytes, .. } => (dirty_bytes / PAGE as u64).max(1),
        Writeback::Manual => u64::MAX,
    }
}

impl Drop for RioCache {
    /// Stops the writeback thread and, if the options ask for it, takes a final
    /// checkpoint, ignoring its error (the data stays in the memory image; use
    /// [`RioCache::close`] to see errors).
    fn drop(&mut self) {
        self.stop_writeback();
        if self.checkpoint_on_close && !self.inner.poisoned.load(Ordering::Acquire) {
            let _ = self.inner.checkpoint();
        }
    }
}
