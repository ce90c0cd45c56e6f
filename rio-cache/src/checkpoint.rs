//! Checkpoints: copying the dirty pages at a consistent moment and installing them in
//! the disk image through the journal, so the disk image is always exactly one
//! checkpoint.
//!
//! The steps, each with its crash point:
//! 1. take a snapshot of the dirty pages (the gate closed only to swap the page maps),
//!    then copy them while updates run, copy-on-write ([`crate::snapshot`];
//!    `rio.checkpoint.copying` after each page is copied; `rio.checkpoint.staged`);
//! 2. write header, index and pages to the journal (`rio.checkpoint.journal_written`),
//!    fsync (`rio.checkpoint.journal_synced`);
//! 3. write the commit record (`rio.checkpoint.commit_written`), fsync
//!    (`rio.checkpoint.commit_synced`): the checkpoint's commit point;
//! 4. install the pages and the new header in place (`rio.checkpoint.install_partial`,
//!    `rio.checkpoint.installed`), fsync (`rio.checkpoint.disk_synced`);
//! 5. zero the journal's header and fsync it (`rio.checkpoint.journal_cleared`).
//!
//! A crash before 3 completes leaves the old disk image and a journal without a valid
//! commit record, which the next open discards. A crash after 3 leaves a committed
//! journal, which the next open installs (again): installing writes the same bytes to
//! the same places, so it is idempotent.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crash_point::crash_point;

use crate::disk_io::DiskFile;
use crate::error::{IoContext, Result};
use crate::format::{DiskHeader, DISK_DATA_OFFSET};
use crate::journal::Batch;
use crate::state::Inner;
use crate::sys::PAGE;

/// Every crash point in rio-cache, for harnesses that enumerate them.
pub const CRASH_POINTS: &[&str] = &[
    "rio.checkpoint.copying",
    "rio.checkpoint.staged",
    "rio.checkpoint.journal_written",
    "rio.checkpoint.journal_synced",
    "rio.checkpoint.commit_written",
    "rio.checkpoint.commit_synced",
    "rio.checkpoint.install_partial",
    "rio.checkpoint.installed",
    "rio.checkpoint.disk_synced",
    "rio.checkpoint.journal_cleared",
    "rio.recover.install_partial",
    "rio.recover.installed",
    "rio.recover.disk_synced",
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
        let batch = self.stage(*disk_seq + 1, false)?;
        if batch.len() == 0 {
            return Ok(());
        }
        crash_point!("rio.checkpoint.staged");
        if let Err(e) = self.write_batch(&batch) {
            // The pages stay marked (in flight) in the memory image, so a reopen writes
            // them back; this handle refuses further writes.
            self.set_poison(e.to_string());
            return Err(e);
        }
        self.installed(&batch, &mut disk_seq, started);
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
        let done = install(&self.disk, &self.path, batch, self.data_len, false)
            .and_then(|()| clear_journal(&self.journal, &self.journal_path));
        if let Err(e) = done {
            // The journal still holds the sealed batch, which the decided epoch commits:
            // the next open installs it.
            self.set_poison(e.to_string());
            return Err(e);
        }
        crash_point!("rio.checkpoint.journal_cleared");
        self.installed(batch, disk_seq, started);
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

    /// The bookkeeping after `batch` reached the disk image.
    fn installed(&self, batch: &Batch, disk_seq: &mut u64, started: Instant) {
        let inflight = self.inflight_map();
        for i in 0..batch.len() {
            inflight[batch.index(i) as usize].store(0, Ordering::Relaxed);
        }
        // The image now matches checkpoint `seq` plus later writes. (A crash before this
        // store leaves it one behind the disk, which a warm start accepts.)
        self.synced_word().store(batch.seq(), Ordering::Release);
        *disk_seq = batch.seq();
        self.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.pages_written
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.bytes_written.fetch_add(
            (batch.body().len() + crate::journal::COMMIT_LEN + batch.len() * PAGE) as u64,
            Ordering::Relaxed,
        );
        self.last_checkpoint_ns.store(
            u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX - 1),
            Ordering::Relaxed,
        );
    }

    fn write_batch(&self, batch: &Batch) -> Result<()> {
        let jp = &self.journal_path;
        let j = &self.journal;
        let body = batch.body();
        j.write_all_at(body, 0)
            .context(|| format!("write {}", jp.display()))?;
        crash_point!("rio.checkpoint.journal_written");
        j.sync_data()
            .context(|| format!("fsync {}", jp.display()))?;
        crash_point!("rio.checkpoint.journal_synced");
        j.write_all_at(&batch.commit_record(), body.len() as u64)
            .context(|| format!("write {}", jp.display()))?;
        crash_point!("rio.checkpoint.commit_written");
        // The `commit-no-sync` mutant installs without making the commit record durable.
        if !crate::mutant::is("commit-no-sync") {
            j.sync_data()
                .context(|| format!("fsync {}", jp.display()))?;
        }
        crash_point!("rio.checkpoint.commit_synced");
        install(&self.disk, &self.path, batch, self.data_len, false)?;
        clear_journal(j, jp)?;
        crash_point!("rio.checkpoint.journal_cleared");
        Ok(())
    }
}

/// Writes a committed batch's pages and header into the disk image and fsyncs it.
pub(crate) fn install(
    disk: &DiskFile,
    path: &Path,
    batch: &Batch,
    data_len: u64,
    recovering: bool,
) -> Result<()> {
    let runs = batch.runs();
    for (i, (first, bytes)) in runs.iter().enumerate() {
        disk.write_all_at(bytes, DISK_DATA_OFFSET + first * PAGE as u64)
            .context(|| format!("write {}", path.display()))?;
        if i == 0 {
            if recovering {
                crash_point!("rio.recover.install_partial");
            } else {
                crash_point!("rio.checkpoint.install_partial");
            }
        }
    }
    let header = DiskHeader {
        data_len,
        seq: batch.seq(),
        writer: batch.writer(),
    };
    disk.write_all_at(&header.encode(), 0)
        .context(|| format!("write {}", path.display()))?;
    if recovering {
        crash_point!("rio.recover.installed");
    } else {
        crash_point!("rio.checkpoint.installed");
    }
    // The `install-no-sync` mutant clears the journal with the installed pages volatile.
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
