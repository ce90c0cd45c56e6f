//! Growing a cache in place: the disk image, the memory image and the handle's mappings.
//!
//! [`RioCache::grow`] takes `&mut self`, so no update, window or slice of the cache is
//! alive while it runs, and the mappings may be replaced (their addresses change; no
//! borrow can see it). The steps, each with its crash point ([`GROW_CRASH_POINTS`]):
//!
//! 1. a checkpoint: the disk image then holds every byte the memory image does;
//! 2. the memory image's `ready` word is zeroed (`rio.grow.image_unready`): from here on
//!    a crash leads to a cold start, which loses nothing because of step 1, and no open
//!    can find a complete image of the old size beside a disk image of the new one;
//! 3. a journal batch for the new size (no pages) is written and fsynced without its
//!    commit record (`rio.grow.journal_written`): the intent;
//! 4. the disk file is extended with zeros and fsynced (`rio.grow.extended`);
//! 5. the batch's commit record is written (`rio.grow.commit_written`) and fsynced
//!    (`rio.grow.committed`): the commit point;
//! 6. the disk header with the new size is written and fsynced (`rio.grow.installed`),
//!    and the journal cleared (`rio.grow.journal_cleared`);
//! 7. the memory image is rebuilt at the new size from the disk image (its layout
//!    depends on the size: the dirty maps grow), `synced` recorded
//!    (`rio.grow.image_loaded`), `ready` set (`rio.grow.image_ready`), and mapped.
//!
//! Recovery: a crash before step 5's commit record is durable leaves the old header and
//! no committed batch; if step 4 made the file longer, the open finds the intent of
//! step 3 (an intact batch header for exactly that size) and truncates the file back
//! (`rio.recover.grow_undone`); a longer file without it is corruption. A crash after it leaves a committed batch for the new
//! size, which the open installs like any checkpoint's (writing the new header), and
//! [`crate::existing_size`] reports the new size. Either way the image is not ready, so
//! the open starts cold from the disk image. `docs/rio-cache.md` ("Growing") has the
//! argument and the tests that defend each ordering.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crash_point::crash_point;

use crate::cache::RioCache;
use crate::error::{Error, IoContext, Result};
use crate::faults::{IoFile, IoOp};
use crate::format::{self, DiskHeader, MemHeader, MAX_DATA_LEN, MEM_READY, META_AT};
use crate::journal::Batch;
use crate::open::{create_image, load_cold};
use crate::protection::map_data;
use crate::sys::{AtomicMapping, Mapping, PAGE};
use crate::writeback::WritebackThread;

/// The crash points of a grow and of its recovery, in the order they are passed (a
/// grow also passes the points of the checkpoint it starts with and of the cold load it
/// ends with, listed in [`crate::CRASH_POINTS`]).
pub const GROW_CRASH_POINTS: &[&str] = &[
    "rio.grow.image_unready",
    "rio.grow.journal_written",
    "rio.grow.extended",
    "rio.grow.commit_written",
    "rio.grow.committed",
    "rio.grow.installed",
    "rio.grow.journal_cleared",
    "rio.grow.image_loaded",
    "rio.grow.image_ready",
    "rio.recover.grow_undone",
];

impl RioCache {
    /// Grows the cache to `new_len` bytes in place: the disk image, the memory image
    /// and the mappings. The bytes already there keep their offsets and contents; the
    /// new ones read as zero. A `new_len` equal to the size does nothing.
    ///
    /// Crash-atomic: a crash (or power loss) at any point leaves the cache at the old
    /// size or at the new one, with every byte checkpointed before the grow; it ends
    /// with a checkpoint at the new size, so the new size survives power loss once this
    /// returns. The next open after a crash inside a grow starts cold. The steps and
    /// their order are in `docs/rio-cache.md` ("Growing").
    ///
    /// Takes `&mut self`: no slice, update or window of the cache can be alive, so the
    /// mappings can be replaced (a grow remaps; addresses from before it are stale).
    /// Takes time in the size of the cache (the memory image is reloaded from the disk
    /// image, since its layout depends on the size).
    ///
    /// # Errors
    /// [`Error::CannotShrink`] if `new_len` is below the size; [`Error::TooLarge`]
    /// above the largest cache; [`Error::Poisoned`] after an earlier failure (none of
    /// these writes anything); [`Error::Fenced`], [`Error::CheckpointBusy`] from the
    /// checkpoint a grow starts with (nothing is grown and nothing poisoned: try again
    /// once the fence is lifted or the transactions have ended). I/O errors,
    /// [`Error::CacheFull`]: the handle is then poisoned (its mappings may be gone);
    /// reopen it, which finds the cache at the old or the new size.
    pub fn grow(&mut self, new_len: u64) -> Result<()> {
        self.grow_with(new_len, &[])
    }

    /// [`RioCache::grow`], writing `edits` (`(offset, bytes)` pairs, in the new size)
    /// in the same atomic step: after a crash the cache is at the old size without them
    /// or at the new size with all of them. A layer above uses it to change its own
    /// header (which records the size) together with the size.
    ///
    /// # Errors
    /// As [`RioCache::grow`]; [`Error::OutOfRange`] for an edit outside the new size
    /// (nothing written).
    pub fn grow_with(&mut self, new_len: u64, edits: &[(u64, &[u8])]) -> Result<()> {
        let len = self.inner.data_len;
        if new_len < len {
            return Err(Error::CannotShrink {
                len,
                requested: new_len,
            });
        }
        if new_len > MAX_DATA_LEN {
            return Err(Error::TooLarge {
                requested: new_len,
                max: MAX_DATA_LEN,
            });
        }
        for (offset, bytes) in edits {
            let n = bytes.len() as u64;
            if offset.checked_add(n).is_none_or(|end| end > new_len) {
                return Err(Error::OutOfRange {
                    offset: *offset,
                    len: n,
                    size: new_len,
                });
            }
        }
        self.inner.check_poison()?;
        if new_len == len && edits.is_empty() {
            return Ok(());
        }
        let interval = self.writeback.as_ref().map(WritebackThread::interval);
        self.stop_writeback();
        // 1. Everything to the disk image. A refusal here (`Fenced`, `CheckpointBusy`,
        // a handle still shared) changes nothing and does not poison: the grow is
        // refused and the writeback runs on. (A failed write poisons in the checkpoint.)
        let ready = self.inner.checkpoint().and_then(|()| {
            if Arc::get_mut(&mut self.inner).is_some() {
                Ok(())
            } else {
                Err(Error::Io {
                    context: "grow".into(),
                    source: std::io::Error::other("the cache state is still shared"),
                })
            }
        });
        let grown = ready.and_then(|()| {
            self.grow_stopped(new_len, edits).inspect_err(|e| {
                self.inner
                    .set_poison(format!("grow to {new_len} bytes failed: {e}"));
            })
        });
        if let Some(interval) = interval.filter(|_| !self.inner.poisoned.load(Ordering::Acquire)) {
            self.writeback = Some(WritebackThread::spawn(Arc::clone(&self.inner), interval)?);
        }
        grown
    }

    /// [`RioCache::grow`] with the writeback thread stopped, from step 2 (the first
    /// checkpoint taken, the state not shared).
    fn grow_stopped(&mut self, new_len: u64, edits: &[(u64, &[u8])]) -> Result<()> {
        let inner = Arc::get_mut(&mut self.inner)
            .expect("grow checked that the state is not shared, and holds `&mut self` since");
        let map_len = format::round_up_pages(new_len);
        let pages = (map_len / PAGE as u64) as usize;
        let path = inner.path.clone();
        let ipath = inner.image_path.clone();
        let faults = inner.faults.clone();
        let write_image = |bytes: &[u8], at: usize| {
            faults
                .check(IoOp::Write, IoFile::Image)
                .and_then(|()| inner.image.write_all_at(bytes, at as u64))
                .context(|| format!("write {}", ipath.display()))
        };

        // 2. No open may find this image complete from here until it is rebuilt.
        if !crate::mutant::is("grow-image-ready") {
            write_image(&0u32.to_le_bytes(), MemHeader::READY_AT)?;
        }
        crash_point!("rio.grow.image_unready");

        // 3. The intent: a journal batch for the new size, without its commit record, so
        // an open that finds the file extended knows why (and may undo it).
        let seq = *inner
            .disk_seq
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            + 1;
        let batch = edit_batch(inner, seq, new_len, edits)?;
        let (j, jp) = (&inner.journal, &inner.journal_path);
        j.write_all_at(batch.body(), 0)
            .context(|| format!("write {}", jp.display()))?;
        if !crate::mutant::is("grow-intent-no-sync") {
            j.sync_data()
                .context(|| format!("fsync {}", jp.display()))?;
        }
        crash_point!("rio.grow.journal_written");

        // 4. Room for the new pages, durable before the size that needs it.
        let disk = &inner.disk;
        disk.set_len(format::disk_len_for(map_len))
            .context(|| format!("extend {}", path.display()))?;
        if !crate::mutant::is("grow-extend-no-sync") {
            disk.sync_data()
                .context(|| format!("fsync {}", path.display()))?;
        }
        crash_point!("rio.grow.extended");

        // 5. The commit point: the batch's commit record.
        j.write_all_at(&batch.commit_record(), batch.body().len() as u64)
            .context(|| format!("write {}", jp.display()))?;
        crash_point!("rio.grow.commit_written");
        j.sync_data()
            .context(|| format!("fsync {}", jp.display()))?;
        crash_point!("rio.grow.committed");

        // 6. Install it in the current slot: the edited pages and the header, then the
        // cleared journal.
        let slot = inner.disk_slot.load(Ordering::Relaxed);
        for (first, bytes) in batch.runs() {
            crate::checkpoint::write_pages(disk, &path, slot, first, bytes)?;
        }
        // The other slot lacks the edited pages too (the new ones are zero in both).
        let lacks = inner
            .lacks
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .map(|l| crate::checkpoint::batch_lacks(&l, &batch, new_len));
        let header = DiskHeader::new(new_len, seq, inner.image_id, lacks.as_ref());
        disk.write_all_at(&header.encode(slot), META_AT[slot])
            .and_then(|()| disk.sync_data())
            .context(|| format!("write {}", path.display()))?;
        crash_point!("rio.grow.installed");
        *inner
            .lacks
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = lacks;
        crate::checkpoint::clear_journal(j, jp)?;
        crash_point!("rio.grow.journal_cleared");
        *inner
            .disk_seq
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = seq;

        // 7. The memory image at the new size, loaded from the disk image.
        let mut b = [0u8; MemHeader::READ_LEN];
        inner
            .faults
            .check(IoOp::Read, IoFile::Image)
            .and_then(|()| inner.image.read_exact_at(&mut b, 0))
            .context(|| format!("read {}", ipath.display()))?;
        let old = MemHeader::decode(&b).map_err(|e| Error::DamagedImage {
            image: ipath.clone(),
            path: path.clone(),
            reason: format!("its header went bad while open ({e:?})"),
        })?;
        let mem = MemHeader {
            data_len: new_len,
            meta_len: MemHeader::meta_len_for(pages as u64),
            ..old
        };
        let image_len = mem.meta_len + map_len;
        // Where the slots differ carries over (the edited pages now too; the new pages
        // are zero in both).
        let mut differs: Vec<u8> = inner
            .differs_map()
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .collect();
        differs.resize(pages, 0);
        for i in 0..batch.len() {
            differs[batch.index(i) as usize] = 1;
        }
        let dir = ipath.parent().unwrap_or_else(|| Path::new("."));
        // The old mappings stay until replaced below; nothing reads them meanwhile.
        create_image(&inner.image, &ipath, dir, &mem, image_len, &faults)?;
        load_cold(
            disk,
            &path,
            &inner.image,
            &ipath,
            mem.meta_len,
            map_len,
            slot,
            &faults,
        )?;
        write_image(&differs, MemHeader::differs_at(pages as u64) as usize)?;
        write_image(
            &MemHeader::encode_synced(seq).to_le_bytes(),
            MemHeader::SYNCED_AT,
        )?;
        crash_point!("rio.grow.image_loaded");
        write_image(&MEM_READY.to_le_bytes(), MemHeader::READY_AT)?;
        crash_point!("rio.grow.image_ready");

        let ctx = || format!("map {}", ipath.display());
        let meta = AtomicMapping::new(
            faults
                .check(IoOp::Map, IoFile::Image)
                .and_then(|()| Mapping::read_write(&inner.image, 0, mem.meta_len as usize))
                .context(ctx)?,
        );
        let (data, write, guard) = map_data(
            &inner.image,
            &ipath,
            mem.meta_len,
            map_len as usize,
            inner.protection,
            pages,
            &faults,
        )?;
        // The tagged mapping goes before the data mapping it aliases; the key stays.
        inner.write = write;
        inner.data = data;
        inner.meta = meta;
        inner.data_len = new_len;
        inner.pages = pages;
        inner.snapshot = crate::snapshot::Snapshot::new(pages);
        *inner.dirty_side.get_mut() = 0;
        inner.image_data_at = mem.meta_len;
        *inner.dirty_pages.get_mut() = 0;
        *inner.kicked.get_mut() = false;
        // Every page memo from before the grow is stale.
        inner
            .dirty_gen
            .store(crate::state::fresh_dirty_gen(), Ordering::Relaxed);
        inner.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.guard = guard;
        self.memo = crate::PageMemo::default();
        Ok(())
    }
}

/// The grow's journal batch: the pages `edits` touch, as the memory image holds them
/// (equal to the disk image after the grow's checkpoint; zero past the old size), with
/// the edits applied.
fn edit_batch(
    inner: &crate::state::Inner,
    seq: u64,
    new_len: u64,
    edits: &[(u64, &[u8])],
) -> Result<Batch> {
    let page = PAGE as u64;
    let mut indices: Vec<u64> = edits
        .iter()
        .filter(|(_, b)| !b.is_empty())
        .flat_map(|(off, b)| off / page..(off + b.len() as u64).div_ceil(page))
        .collect();
    indices.sort_unstable();
    indices.dedup();
    let mut batch = Batch::new(seq, new_len, inner.image_id, &indices);
    let old_pages = inner.pages as u64;
    for (i, &p) in indices.iter().enumerate() {
        if p < old_pages {
            inner
                .faults
                .check(IoOp::Read, IoFile::Image)
                .and_then(|()| {
                    inner
                        .image
                        .read_exact_at(batch.page_mut(i), inner.image_data_at + p * page)
                })
                .context(|| format!("read {}", inner.image_path.display()))?;
        }
    }
    for (off, bytes) in edits {
        let mut done = 0;
        while done < bytes.len() {
            let at = off + done as u64;
            let i = indices.binary_search(&(at / page)).expect("page indexed");
            let in_page = (at % page) as usize;
            let n = (PAGE - in_page).min(bytes.len() - done);
            batch.page_mut(i)[in_page..in_page + n].copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
    }
    Ok(batch)
}
