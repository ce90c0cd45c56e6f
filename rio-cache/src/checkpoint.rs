//! Checkpoints: copying the dirty pages at a consistent moment and writing them into
//! the disk image's other slot, so that the disk image is always exactly one checkpoint
//! and each page is written once.
//!
//! The disk image has two slots (see `format`): the *current* one holds the last
//! checkpoint, and its header has the higher checkpoint number; the *other* one holds an
//! older state. The memory image's differs map marks every page on which the two slots
//! may differ. The steps of a checkpoint, each with its crash point:
//! 1. take a snapshot of the dirty pages (the gate closed only to swap the page maps),
//!    whose pages are copied while updates run, copy-on-write ([`crate::snapshot`];
//!    `rio.checkpoint.copying` after each page is copied);
//! 2. unless the current slot's header's map already names every page this checkpoint
//!    will write into the other slot (or there is no map), write the intent record (the
//!    other slot, this checkpoint's number, those pages) and fsync it
//!    (`rio.checkpoint.intent_synced`, passed either way; see `lacks`); write the
//!    snapshot's pages into the other slot (`rio.checkpoint.slot_partial` after the first
//!    run; `rio.checkpoint.staged` once the snapshot is copied), then copy there, from
//!    the current slot, each page the slots differ on that the snapshot lacks
//!    (`rio.checkpoint.slot_written`); fsync (`rio.checkpoint.slot_synced`): the other
//!    slot now holds the snapshot, complete;
//! 3. write the other slot's header with the next checkpoint number and the map of the
//!    snapshot's pages (where the slots differ once it is current;
//!    `rio.checkpoint.meta_written`), fsync (`rio.checkpoint.meta_synced`): the
//!    checkpoint's commit point, after which the other slot is the current one;
//! 4. in the memory image: mark each page of the snapshot as differing, then take it out
//!    of flight; mark the copied pages as no longer differing.
//!
//! A crash before 3 is durable leaves the current slot's header the higher one (the
//! other's is its old one: a header is one sector, written whole or not at all): the
//! next open uses the current slot, and the pages still in flight in the memory image
//! (a process crash), or the current header's map and the intent record (a power loss,
//! the memory image gone: a cold start marks their pages as differing), make the next
//! checkpoint write whatever this one had written. A crash after it leaves the new slot
//! current.
//!
//! Group checkpoints (see `group`) and a grow still go through the journal: their batch
//! is made durable there, then installed in place into the current slot (its pages and
//! its header; idempotent, so an open that finds a committed journal installs it again),
//! and the journal is cleared.

use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crash_point::crash_point;

use crate::disk_io::DiskFile;
use crate::error::{IoContext, Result};
use crate::faults::{IoFile, IoOp};
use crate::format::{self, DiskHeader, META_AT};
use crate::journal::Batch;
use crate::lacks::{ChunkMap, Intent};
use crate::state::Inner;
use crate::sys::access::SnapshotPages;
use crate::sys::PAGE;

/// The largest snapshot a checkpoint copies whole into memory before writing it (see
/// `Inner::write_slot`): 16 MiB, the default writeback's early-checkpoint threshold.
const STAGE_ALL: usize = 16 << 20;

/// Every crash point in rio-cache, for harnesses that enumerate them.
pub const CRASH_POINTS: &[&str] = &[
    "rio.checkpoint.copying",
    "rio.checkpoint.intent_synced",
    "rio.checkpoint.slot_partial",
    "rio.checkpoint.staged",
    "rio.checkpoint.slot_written",
    "rio.checkpoint.slot_synced",
    "rio.checkpoint.meta_written",
    "rio.checkpoint.meta_synced",
    "rio.cold_load.half",
    "rio.cold_load.loaded",
];

impl Inner {
    pub(crate) fn checkpoint(&self) -> Result<()> {
        self.check_poison()?;
        let mut disk_seq = self
            .disk_seq
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Another checkpoint may have failed while we waited for the lock.
        self.check_poison()?;
        let started = Instant::now();
        let snap = self.take_snapshot(false)?;
        if snap.pages.is_empty() {
            self.end_snapshot(&snap);
            return Ok(());
        }
        let seq = *disk_seq + 1;
        let copied = match self.write_slot(&snap, seq) {
            Ok(copied) => copied,
            Err(e) => {
                // The pages stay marked (in flight) in the memory image, so a reopen
                // writes them back; this handle refuses further writes.
                self.set_poison(e.to_string());
                return Err(e);
            }
        };
        let to = 1 - self.disk_slot.load(Ordering::Relaxed);
        self.installed(
            seq,
            &snap.pages,
            &mut disk_seq,
            started,
            Some((to, &copied)),
        );
        let copied_pages: usize = copied.iter().map(ExactSizeIterator::len).sum();
        self.bytes_written.fetch_add(
            ((snap.pages.len() + copied_pages) * PAGE + DiskHeader::LEN) as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Stages a group member's checkpoint and writes it to the journal sealed for
    /// `epoch` of `coordinator` (see `group`), synced: prepared, not yet committed.
    pub(crate) fn prepare_group<'a>(
        &'a self,
        epoch: u64,
        coordinator: &Path,
    ) -> Result<crate::group::Prepared<'a>> {
        self.check_poison()?;
        let disk_seq = self
            .disk_seq
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.check_poison()?;
        let started = Instant::now();
        let batch = self.stage(*disk_seq + 1, true)?;
        if batch.len() == 0 {
            return Ok(crate::group::Prepared::new(self, disk_seq, None, started));
        }
        crash_point!("rio.checkpoint.staged");
        let jp = &self.journal_path;
        let j = &self.journal;
        let body = batch.body();
        let sealed = (|| {
            j.write_all_at(body, 0)?;
            crash_point!("rio.group.body_written");
            j.sync_data()?;
            crash_point!("rio.group.body_synced");
            j.write_all_at(
                &batch.group_commit_record(epoch, coordinator),
                body.len() as u64,
            )?;
            crash_point!("rio.group.sealed_written");
            j.sync_data()
        })()
        .context(|| format!("write {}", jp.display()));
        if let Err(e) = sealed {
            self.set_poison(e.to_string());
            return Err(e);
        }
        crash_point!("rio.group.prepared");
        Ok(crate::group::Prepared::new(
            self,
            disk_seq,
            Some(batch),
            started,
        ))
    }

    /// Installs a prepared group batch whose epoch the coordinator has decided.
    pub(crate) fn finish_group(
        &self,
        batch: &Batch,
        disk_seq: &mut u64,
        started: Instant,
    ) -> Result<()> {
        let slot = self.disk_slot.load(Ordering::Relaxed);
        let lacks = self.lacks().map(|l| batch_lacks(&l, batch, self.data_len));
        let done = install(
            &self.disk,
            &self.path,
            batch,
            self.data_len,
            slot,
            lacks.as_ref(),
            false,
        )
        .and_then(|()| clear_journal(&self.journal, &self.journal_path));
        if let Err(e) = done {
            // The journal still holds the sealed batch, which the decided epoch commits:
            // the next open installs it.
            self.set_poison(e.to_string());
            return Err(e);
        }
        crash_point!("rio.checkpoint.journal_cleared");
        *self
            .lacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = lacks;
        let pages: Vec<u64> = (0..batch.len()).map(|i| batch.index(i)).collect();
        self.installed(batch.seq(), &pages, disk_seq, started, None);
        self.bytes_written.fetch_add(
            (batch.body().len() + crate::journal::COMMIT_LEN + batch.len() * PAGE + DiskHeader::LEN)
                as u64,
            Ordering::Relaxed,
        );
        Ok(())
    }

    /// Hands a prepared group batch's pages back to the dirty map and truncates the
    /// journal (see `group::Prepared::abandon`). The caller holds the checkpoint lock.
    pub(crate) fn abandon_group(&self, batch: &Batch) -> Result<()> {
        // Dirty first, then out of flight: a crash in between leaves a page in both maps
        // (written back twice), never in neither.
        for i in 0..batch.len() {
            let p = batch.index(i) as usize;
            self.mark_dirty(p..p + 1);
        }
        let inflight = self.inflight_map();
        for i in 0..batch.len() {
            inflight[batch.index(i) as usize].store(0, Ordering::Relaxed);
        }
        let truncated = self
            .journal
            .set_len(0)
            .and_then(|()| self.journal.sync_data())
            .context(|| format!("truncate {}", self.journal_path.display()));
        if let Err(e) = truncated {
            self.set_poison(e.to_string());
            return Err(e);
        }
        Ok(())
    }

    /// The bookkeeping after checkpoint `seq` of `pages` reached the disk image: into the
    /// other slot, `slot.0`, which is now the current one, with the page ranges `slot.1`
    /// copied there from the old slot; or (`None`) installed in place into the current
    /// slot.
    fn installed(
        &self,
        seq: u64,
        pages: &[u64],
        disk_seq: &mut u64,
        started: Instant,
        slot: Option<(usize, &[Range<usize>])>,
    ) {
        let (inflight, differs) = (self.inflight_map(), self.differs_map());
        if let Some((slot, copied)) = slot {
            // The pages the checkpoint copied from the old slot are the same in both.
            for p in copied.iter().cloned().flatten() {
                differs[p].store(0, Ordering::Relaxed);
            }
            self.disk_slot.store(slot, Ordering::Relaxed);
        }
        // The `differs-forgets-batch` mutant forgets that the slots differ on the pages
        // a checkpoint into the other slot just wrote.
        let forget_batch = slot.is_some() && crate::mutant::is("differs-forgets-batch");
        for &p in pages {
            let p = p as usize;
            // Marked as differing before it leaves flight: a page must be in one of the
            // two maps until the other slot has it too (a crash in between would
            // otherwise leave the next checkpoint into the other slot without it).
            differs[p].store(u8::from(!forget_batch), Ordering::Relaxed);
            inflight[p].store(0, Ordering::Relaxed);
        }
        // The image now matches checkpoint `seq` plus later writes. (A crash before this
        // store leaves it one behind the disk, which a warm start accepts.)
        self.synced_word().store(seq, Ordering::Release);
        *disk_seq = seq;
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.pages_written
            .fetch_add(pages.len() as u64, Ordering::Relaxed);
        self.last_checkpoint_ns.store(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX - 1),
            Ordering::Relaxed,
        );
    }

    /// Steps 2 and 3 of the module documentation: the snapshot `snap` into the other
    /// slot, with the pages the slots differ on, then that slot's header for checkpoint
    /// `seq`. Returns the ranges of pages it copied from the current slot.
    ///
    /// A snapshot of at most [`STAGE_ALL`] bytes is copied whole into memory first, then
    /// written: the snapshot ends, and writers stop preserving pages for it, before any
    /// disk write. A larger one is copied into a buffer of one extent and written from
    /// it, a run at a time (a run ends where the pages stop being consecutive, or where
    /// the extent ends), so that a checkpoint never holds more than [`STAGE_ALL`] bytes
    /// of its snapshot, nor faults that much memory in afresh.
    fn write_slot(&self, snap: &SnapshotPages, seq: u64) -> Result<Vec<Range<usize>>> {
        let path = &self.path;
        let disk = &self.disk;
        let from = self.disk_slot.load(Ordering::Relaxed);
        let to = 1 - from;
        let pages = &snap.pages;
        let staged = (pages.len() * PAGE <= STAGE_ALL).then(|| {
            let mut all = vec![0u8; pages.len() * PAGE];
            for (out, &p) in all.chunks_exact_mut(PAGE).zip(pages) {
                self.copy_snapshot_page(p as usize, snap.epoch, out);
                crash_point!("rio.checkpoint.copying");
            }
            self.end_snapshot(snap);
            all
        });
        let copied = (|| {
            // Inside: a failure here ends the snapshot as one of the page writes does.
            self.write_intent(to, seq, pages)?;
            crash_point!("rio.checkpoint.intent_synced");
            let mut buf = Vec::new();
            let mut i = 0;
            while i < pages.len() {
                let first = pages[i];
                let mut n = 1;
                while i + n < pages.len()
                    && pages[i + n] == first + n as u64
                    && !(first + n as u64).is_multiple_of(format::EXTENT_PAGES)
                {
                    n += 1;
                }
                let run = if let Some(all) = &staged {
                    &all[i * PAGE..(i + n) * PAGE]
                } else {
                    buf.resize(format::EXTENT_PAGES as usize * PAGE, 0);
                    for (k, out) in buf[..n * PAGE].chunks_exact_mut(PAGE).enumerate() {
                        self.copy_snapshot_page(pages[i + k] as usize, snap.epoch, out);
                        crash_point!("rio.checkpoint.copying");
                    }
                    &buf[..n * PAGE]
                };
                disk.write_all_at(run, format::slot_offset(to, first))
                    .context(|| format!("write {}", path.display()))?;
                if i == 0 {
                    crash_point!("rio.checkpoint.slot_partial");
                }
                i += n;
            }
            Ok(())
        })();
        match (copied, staged.is_some()) {
            (Ok(()), true) => {}
            (Ok(()), false) => self.end_snapshot(snap),
            (Err(e), true) => return Err(e),
            (Err(e), false) => {
                // Writers stop preserving pages; the snapshot's uncopied pages stay in
                // flight. (The arena is not released: a writer may still be filling a
                // slot it latched before it saw the snapshot end.)
                self.snapshot.active.store(false, Ordering::Release);
                return Err(e);
            }
        }
        crash_point!("rio.checkpoint.staged");
        let copied = self.copy_differing(from, to)?;
        crash_point!("rio.checkpoint.slot_written");
        // The `commit-no-sync` mutant writes the header that commits the slot before
        // the slot's pages are durable.
        if !crate::mutant::is("commit-no-sync") {
            disk.sync_data()
                .context(|| format!("fsync {}", path.display()))?;
        }
        crash_point!("rio.checkpoint.slot_synced");
        // The other slot, once this one is current, differs from it on the snapshot's
        // pages only: this slot got every page it lacked that the snapshot does not
        // hold. (The `lacks-none` mutant writes an empty map.)
        let mut lacks = ChunkMap::empty(self.pages as u64);
        if !crate::mutant::is("lacks-none") {
            for &p in pages {
                lacks.mark(p);
            }
        }
        let header = DiskHeader::new(self.data_len, seq, self.image_id, Some(&lacks));
        disk.write_all_at(&header.encode(to), META_AT[to])
            .context(|| format!("write {}", path.display()))?;
        crash_point!("rio.checkpoint.meta_written");
        // The `install-no-sync` mutant reports the checkpoint done (and its pages
        // clean) with its header volatile.
        if !crate::mutant::is("install-no-sync") {
            disk.sync_data()
                .context(|| format!("fsync {}", path.display()))?;
        }
        crash_point!("rio.checkpoint.meta_synced");
        *self
            .lacks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(lacks);
        Ok(copied)
    }

    /// Makes durable, before checkpoint `seq` writes into slot `to`, which pages it will
    /// write there: those of the snapshot `pages` and those the slots differ on. Skipped
    /// when the current header's map already names them all (or has no map): a cold start
    /// marks those pages as differing anyway, unless the record was found damaged.
    /// Nothing to do for most checkpoints of a steady load, whose pages are the last
    /// checkpoint's.
    fn write_intent(&self, to: usize, seq: u64, pages: &[u64]) -> Result<()> {
        let mut will = ChunkMap::empty(self.pages as u64);
        for &p in pages {
            will.mark(p);
        }
        for (p, d) in self.differs_map().iter().enumerate() {
            if d.load(Ordering::Relaxed) != 0 {
                will.mark(p as u64);
            }
        }
        let damaged = self.intent_damaged.load(Ordering::Relaxed);
        if (!damaged && self.lacks().is_none_or(|l| l.covers(&will)))
            || crate::mutant::is("intent-none")
        {
            return Ok(());
        }
        let (disk, path) = (&self.disk, &self.path);
        disk.write_all_at(
            &Intent {
                slot: to,
                seq,
                pages: will,
            }
            .encode(),
            crate::lacks::INTENT_AT,
        )
        .context(|| format!("write {}", path.display()))?;
        // The `intent-no-sync` mutant lets the slot's pages reach the disk before it.
        if !crate::mutant::is("intent-no-sync") {
            disk.sync_data()
                .context(|| format!("fsync {}", path.display()))?;
        }
        self.intent_damaged.store(false, Ordering::Relaxed);
        self.intents.fetch_add(1, Ordering::Relaxed);
        self.bytes_written
            .fetch_add(crate::lacks::INTENT_LEN as u64, Ordering::Relaxed);
        Ok(())
    }

    /// Copies, from slot `from` to slot `to`, every page the slots may differ on that is
    /// not in flight (those the batch wrote). Such a page is clean since the snapshot's
    /// last checkpoint, which slot `from` holds, so the disk has its bytes. Returns the
    /// ranges of pages it copied.
    fn copy_differing(&self, from: usize, to: usize) -> Result<Vec<Range<usize>>> {
        let (inflight, differs) = (self.inflight_map(), self.differs_map());
        let wanted = |p: usize| {
            differs[p].load(Ordering::Relaxed) != 0 && inflight[p].load(Ordering::Relaxed) == 0
        };
        let mut buf = Vec::new();
        let mut copied = Vec::new();
        let mut p = 0;
        while p < self.pages {
            if !wanted(p) {
                p += 1;
                continue;
            }
            let start = p;
            while p < self.pages && wanted(p) {
                p += 1;
            }
            for (first, n) in format::extent_runs(start as u64, (p - start) as u64) {
                let bytes = n as usize * PAGE;
                buf.resize(bytes.max(buf.len()), 0);
                let chunk = &mut buf[..bytes];
                self.faults
                    .check(IoOp::Read, IoFile::Disk)
                    .and_then(|()| {
                        self.disk
                            .file()
                            .read_exact_at(chunk, format::slot_offset(from, first))
                    })
                    .context(|| format!("read {}", self.path.display()))?;
                self.disk
                    .write_all_at(chunk, format::slot_offset(to, first))
                    .context(|| format!("write {}", self.path.display()))?;
            }
            copied.push(start..p);
        }
        Ok(copied)
    }
}

/// Writes the images of consecutive pages from `first` into slot `slot` of the disk
/// image, split where the slot's extents end.
pub(crate) fn write_pages(
    disk: &DiskFile,
    path: &Path,
    slot: usize,
    first: u64,
    bytes: &[u8],
) -> Result<()> {
    let mut done = 0;
    for (page, n) in format::extent_runs(first, (bytes.len() / PAGE) as u64) {
        let len = n as usize * PAGE;
        disk.write_all_at(&bytes[done..done + len], format::slot_offset(slot, page))
            .context(|| format!("write {}", path.display()))?;
        done += len;
    }
    Ok(())
}

/// `lacks` (where the other slot may differ from the current one) with the pages of
/// `batch`, which an install writes into the current slot only.
/// `data_len` is the cache's size once the batch is installed (a grow's batch makes it
/// larger, and the map's chunks with it).
pub(crate) fn batch_lacks(lacks: &ChunkMap, batch: &Batch, data_len: u64) -> ChunkMap {
    let mut m = lacks.coarsened(ChunkMap::shift_for(data_len.div_ceil(PAGE as u64)));
    // The `install-lacks-none` mutant leaves the installed pages out.
    if !crate::mutant::is("install-lacks-none") {
        for i in 0..batch.len() {
            m.mark(batch.index(i));
        }
    }
    m
}

/// Writes a committed journal batch's pages and header in place into the disk image's
/// current slot, `slot`, and fsyncs it. The header's map is `lacks`: the current one's
/// with the batch's pages ([`batch_lacks`]).
pub(crate) fn install(
    disk: &DiskFile,
    path: &Path,
    batch: &Batch,
    data_len: u64,
    slot: usize,
    lacks: Option<&ChunkMap>,
    recovering: bool,
) -> Result<()> {
    let runs = batch.runs();
    for (i, (first, bytes)) in runs.iter().enumerate() {
        write_pages(disk, path, slot, *first, bytes)?;
        if i == 0 {
            if recovering {
                crash_point!("rio.recover.install_partial");
            } else {
                crash_point!("rio.checkpoint.install_partial");
            }
        }
    }
    let header = DiskHeader::new(data_len, batch.seq(), batch.writer(), lacks);
    disk.write_all_at(&header.encode(slot), META_AT[slot])
        .context(|| format!("write {}", path.display()))?;
    if recovering {
        crash_point!("rio.recover.installed");
    } else {
        crash_point!("rio.checkpoint.installed");
    }
    // The `install-no-sync` mutant clears the journal with the installed pages volatile
    // (as it reports a checkpoint into the other slot done with its header volatile).
    if recovering || !crate::mutant::is("install-no-sync") {
        disk.sync_data()
            .context(|| format!("fsync {}", path.display()))?;
    }
    if recovering {
        crash_point!("rio.recover.disk_synced");
    } else {
        crash_point!("rio.checkpoint.disk_synced");
    }
    Ok(())
}

/// Empties the journal durably by zeroing its header sector. The file keeps its size
/// and blocks, so this write, and the next checkpoint's journal writes, overwrite
/// allocated blocks and their `fdatasync`s need no file-system metadata commit
/// (truncating and regrowing the journal made every checkpoint pay for one).
pub(crate) fn clear_journal(j: &DiskFile, path: &Path) -> Result<()> {
    j.write_all_at(&[0u8; crate::journal::HEADER_LEN], 0)
        .and_then(|()| j.sync_data())
        .context(|| format!("clear {}", path.display()))
}
