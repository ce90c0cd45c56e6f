//! Opening a cache: validating the disk image and the journal, judging the memory
//! image, recovering an interrupted checkpoint, loading a cold image, and mapping it.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use crash_point::crash_point;

use crate::cache::{kick_pages, RioCache};
use crate::disk_io::{DiskFile, Target, WriteLog};
use crate::error::{Error, IoContext, Result};
use crate::faults::{Faults, IoFile, IoOp};
use crate::format::{self, DiskHeader, HeaderError, MemHeader, DISK_VERSION, MEM_READY};
use crate::gate::Gate;
use crate::journal::{self, Journal};
use crate::lacks::{cold_differs, ChunkMap, Intent, IntentRecord, INTENT_AT, INTENT_LEN};
use crate::naming::{image_path, journal_path};
use crate::options::{RioOptions, Writeback};
use crate::protection::{map_data, resolve_protection, ActiveProtection, KeyGuard};
use crate::start::{judge_image, ColdReason, StartKind, Verdict};
use crate::state::{Inner, Wake};
use crate::sys::{self, AtomicMapping, Mapping, PAGE};
use crate::writeback::WritebackThread;

/// The data size of the cache whose disk image is at `path`, or `None` if there is no
/// file (or it is empty, which [`RioCache::open`] treats as new unless a live memory
/// image of it exists). Reads only the header and, for a grow a crash interrupted after
/// its commit point, the journal (the size is then the grown one, which the open will
/// finish installing); takes no lock.
///
/// # Errors
/// As [`RioCache::open`] for a file that is not a valid disk image.
pub fn existing_size(path: impl AsRef<Path>) -> Result<Option<u64>> {
    let resolved = crate::naming::absolute(path.as_ref())?;
    let path = resolved.as_path();
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context(|| format!("open {}", path.display())),
    };
    let len = f
        .metadata()
        .context(|| format!("stat {}", path.display()))?
        .len();
    if len == 0 {
        return Ok(None);
    }
    let (h, _, _) = read_disk_header(&f, path, len)?;
    // A journal that cannot be read is reported by the open; the header's size stands.
    let jpath = journal_path(path);
    if let Ok(Journal::Committed(b)) = File::open(&jpath).map_or(Ok(Journal::Empty), |j| {
        journal::read(&j, &jpath, h.data_len)
    }) {
        if b.seq() == h.seq + 1 {
            return Ok(Some(b.data_len()));
        }
    }
    Ok(Some(h.data_len))
}

impl RioCache {
    /// Opens (creating if absent) the cache for the disk file at `path`.
    ///
    /// Finds the memory image and starts warm if it survived; otherwise loads the disk
    /// image (cold start). A checkpoint interrupted by a crash is finished or discarded
    /// first, so the disk image is exactly one checkpoint.
    ///
    /// A memory image that cannot be used but may hold committed data the disk image
    /// lacks refuses the open, unless [`RioOptions::discard_image`] is set; one that
    /// cannot hold such data is replaced by a cold start (see [`ColdReason`]).
    ///
    /// # Errors
    /// [`Error::Locked`] if the file (or its memory image) is open elsewhere;
    /// [`Error::NotRioCache`], [`Error::IncompatibleVersion`], [`Error::Corrupt`],
    /// [`Error::SizeMismatch`] for bad files; [`Error::DamagedImage`] and
    /// [`Error::LiveImage`] for a memory image that must not be silently dropped (no
    /// file is changed after any of these); [`Error::CacheDir`] and
    /// [`Error::CacheFull`] for the cache directory; [`Error::PkeyUnavailable`] if
    /// [`Protection::Pkey`](crate::Protection::Pkey) was asked for and is not available; I/O errors.
    pub fn open(path: impl AsRef<Path>, opts: &RioOptions) -> Result<RioCache> {
        // Every file is named from the resolved path (see `naming::resolve_path`): the
        // journal and the memory image of a segment opened through a symlink, or by a
        // relative path, are the ones of the file itself.
        let given = path.as_ref();
        let resolved = crate::naming::absolute(given)?;
        let path = resolved.as_path();
        if opts.size == 0 || opts.size > format::MAX_DATA_LEN {
            return Err(Error::InvalidOptions(format!(
                "size must be between 1 and {} bytes",
                format::MAX_DATA_LEN
            )));
        }
        if sys::system_page_size() != PAGE {
            return Err(Error::InvalidOptions(format!(
                "rio-cache needs {PAGE}-byte pages; this system uses {}",
                sys::system_page_size()
            )));
        }
        let map_len = format::round_up_pages(opts.size);
        let pages = (map_len / PAGE as u64) as usize;
        let cache_dir = opts.resolved_cache_dir();
        check_cache_dir(&cache_dir)?;
        // Before the disk file is created: a refused protection mode leaves nothing behind.
        let protection = resolve_protection(opts.protection)?;
        let key_guard = KeyGuard(match protection {
            ActiveProtection::Pkey(k) => Some(k),
            _ => None,
        });

        // The disk image, locked.
        let existed = path.exists();
        let disk = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .context(|| format!("open {}", path.display()))?;
        if !sys::try_lock_exclusive(&disk).context(|| format!("lock {}", path.display()))? {
            return Err(Error::locked(path));
        }
        adopt_legacy_names(given, path, &cache_dir)?;
        // A refused open leaves no file behind: the one created just now is removed
        // (under its lock) unless the open gets past validation.
        let mut created = CreatedFile {
            path,
            armed: !existed,
        };
        let disk_len = disk
            .metadata()
            .context(|| format!("stat {}", path.display()))?
            .len();
        let fresh = disk_len == 0;
        // A new file: both slots are zero, so the other slot lacks nothing.
        let mut disk_header = DiskHeader::new(
            opts.size,
            0,
            0,
            Some(&ChunkMap::empty(opts.size.div_ceil(PAGE as u64))),
        );
        // The slot that holds the disk image's checkpoint (a new file starts in slot 0).
        let mut disk_slot = 0;
        // The checkpoint the other slot's header names (0: none yet).
        let mut other_seq = 0;
        if !fresh {
            opts.faults
                .check(IoOp::Read, IoFile::Disk)
                .context(|| format!("read {}", path.display()))?;
            (disk_header, disk_slot, other_seq) = read_disk_header(&disk, path, disk_len)
                .map_err(|e| note_intact_image(e, &disk, path, &cache_dir))?;
            // A map that does not reach the last page (only a crafted file has one) says
            // nothing of the pages beyond it: no map.
            let pages = disk_header.data_len.div_ceil(PAGE as u64);
            disk_header.lacks = disk_header.lacks.filter(|l| l.reaches(pages));
        }
        let mut disk_seq = disk_header.seq;

        // The journal: read and judge it now, act on it only once everything passed.
        let jpath = journal_path(path);
        // A sealed batch whose epoch was never decided: its record must not outlive it
        // (a later batch of the same number and length, torn, would meet it).
        let mut stale_seal = false;
        let (journal_state, grow_intent) = match File::open(&jpath) {
            Ok(f) => {
                opts.faults
                    .check(IoOp::Read, IoFile::Journal)
                    .context(|| format!("read {}", jpath.display()))?;
                let state = match journal::read(&f, &jpath, disk_header.data_len)? {
                    // A group member's batch: the coordinator decides, and an open that
                    // cannot ask it refuses before it writes anything.
                    Journal::Sealed {
                        batch,
                        epoch,
                        coordinator,
                    } => match crate::group::resolve(&coordinator, epoch, &opts.faults) {
                        Ok(true) => Journal::Committed(batch),
                        Ok(false) => {
                            stale_seal = true;
                            Journal::Torn
                        }
                        Err(e) => {
                            return Err(Error::GroupUnresolved {
                                path: jpath,
                                coordinator,
                                epoch,
                                reason: e.to_string(),
                            })
                        }
                    },
                    other => other,
                };
                let intent = if matches!(state, Journal::Torn) {
                    journal::grow_intent(&f, &jpath, disk_header.data_len, &opts.faults)?
                } else {
                    None
                };
                (state, intent)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => (Journal::Empty, None),
            Err(e) => return Err(e).context(|| format!("open {}", jpath.display())),
        };
        if let Journal::Committed(b) = &journal_state {
            let seq_ok = b.seq() == disk_seq + 1
                || b.seq() == disk_seq && b.data_len() == disk_header.data_len;
            if fresh || !seq_ok {
                return Err(Error::Corrupt {
                    path: jpath,
                    reason: format!(
                        "journal holds checkpoint {} but the disk image is at {disk_seq}",
                        b.seq()
                    ),
                });
            }
        }
        // A committed grow (a batch for a larger size) is finished below; a grow cut
        // off before its commit point may have left the file longer, which is undone.
        let truncate_to = if fresh {
            None
        } else {
            let size = match &journal_state {
                Journal::Committed(b) => b.data_len(),
                _ => disk_header.data_len,
            };
            validate_disk(path, disk_len, size, opts.size, map_len, grow_intent)?
        };

        // The memory image: warm if it is ours and complete. It is locked too: the disk
        // file's lock is on its inode, and a disk file recreated while its cache is open
        // gets a new inode, so only the image's own lock keeps a second opener from
        // replacing the image under the first one's mapping.
        let ipath = image_path(path, &cache_dir)?;
        let image_file = lock_image(&ipath)?;
        let dmeta = disk
            .metadata()
            .context(|| format!("stat {}", path.display()))?;
        let mut header = MemHeader {
            data_len: opts.size,
            dev: dmeta.dev(),
            ino: dmeta.ino(),
            boot_id: format::boot_id().context(|| "read the boot id".into())?,
            meta_len: MemHeader::meta_len_for(pages as u64),
            id: format::new_image_id(),
            parent: 0,
        };
        let image_len = header.meta_len + map_len;
        // The disk as it will be once the journal is dealt with.
        let (final_seq, final_writer) = match &journal_state {
            Journal::Committed(b) => (b.seq(), b.writer()),
            _ => (disk_header.seq, disk_header.writer),
        };
        // A new image is loaded from the disk as it will be: remember whose it was.
        header.parent = final_writer;
        if image_file.is_some() {
            opts.faults
                .check(IoOp::Read, IoFile::Image)
                .context(|| format!("read {}", ipath.display()))?;
        }
        let verdict = judge_image(
            image_file.as_ref(),
            &ipath,
            path,
            &header,
            image_len,
            (!fresh).then_some((final_seq, final_writer)),
        )?;
        let start = match verdict {
            Verdict::Warm(_) if opts.discard_image => StartKind::Cold(ColdReason::Discarded),
            Verdict::Warm(id) => {
                header.id = id;
                StartKind::Warm
            }
            Verdict::Refuse(_, e) if !opts.discard_image => return Err(e),
            Verdict::Cold(_) | Verdict::Refuse(..) if fresh => StartKind::Created,
            Verdict::Cold(reason) | Verdict::Refuse(reason, _) => StartKind::Cold(reason),
        };
        let image_file = match image_file {
            Some(f) => f,
            None => create_locked_image(&ipath)?,
        };

        // Everything is validated: from here on the open changes files.
        created.armed = false;
        let log = open_write_log(opts, &ipath)?;
        let faults = &opts.faults;
        let disk = DiskFile::new(disk, Target::Disk, log.clone(), faults.clone());
        // A new cache whose open fails from here on leaves the files as it found them
        // (see `NewFiles`): a refused create creates nothing, and the next open, at any
        // size, starts afresh.
        let mut new_files = NewFiles {
            path,
            journal: jpath.clone(),
            image: ipath.clone(),
            disk_existed: existed,
            journal_existed: jpath.exists(),
            armed: fresh,
        };
        if fresh {
            let h = DiskHeader {
                writer: header.id,
                ..disk_header
            };
            disk.write_all_at(&h.encode(0), format::META_AT[0])
                .and_then(|()| disk.set_len(format::disk_len_for(map_len)))
                .and_then(|()| disk.sync_all())
                .context(|| format!("initialize {}", path.display()))?;
            if !existed {
                sync_dir(path, faults)?;
            }
        }
        let image = image_file;
        if start != StartKind::Warm {
            create_image(&image, &ipath, &cache_dir, &header, image_len, faults)?;
        }
        // Which disk file this image belongs to, for `images` (an older image gets it
        // at its first open by this version).
        let origin = format::encode_origin(&crate::naming::absolute(path)?);
        faults
            .check(IoOp::Write, IoFile::Image)
            .and_then(|()| image.write_all_at(&origin, format::ORIGIN_AT as u64))
            .context(|| format!("write {}", ipath.display()))?;
        let journal = DiskFile::new(
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&jpath)
                .context(|| format!("open {}", jpath.display()))?,
            Target::Journal,
            log,
            faults.clone(),
        );
        if let Some(want) = truncate_to {
            disk.set_len(want)
                .and_then(|()| disk.sync_data())
                .context(|| format!("truncate {}", path.display()))?;
            crash_point!("rio.recover.grow_undone");
        }
        let mut installed = 0;
        match journal_state {
            Journal::Empty => {}
            Journal::Torn if stale_seal => journal
                .set_len(0)
                .and_then(|()| journal.sync_data())
                .context(|| format!("truncate {}", jpath.display()))?,
            Journal::Torn => crate::checkpoint::clear_journal(&journal, &jpath)?,
            Journal::Committed(batch) => {
                let lacks = disk_header
                    .lacks
                    .map(|l| crate::checkpoint::batch_lacks(&l, &batch, opts.size));
                crate::checkpoint::install(
                    &disk,
                    path,
                    &batch,
                    opts.size,
                    disk_slot,
                    lacks.as_ref(),
                    true,
                )?;
                crate::checkpoint::clear_journal(&journal, &jpath)?;
                disk_header.lacks = lacks;
                disk_seq = batch.seq();
                installed = 1;
            }
            Journal::Sealed { .. } => unreachable!("a sealed journal is resolved when read"),
        }
        if !existed || fresh {
            sync_dir(&jpath, faults)?;
        }
        // A damaged intent record is replaced by the next checkpoint's (see
        // `Inner::write_intent`); until then every cold start marks every page.
        faults
            .check(IoOp::Read, IoFile::Disk)
            .context(|| format!("read {}", path.display()))?;
        let intent = read_intent(disk.file(), path)?;
        if let StartKind::Cold(_) = start {
            load_cold(
                &disk,
                path,
                &image,
                &ipath,
                header.meta_len,
                map_len,
                disk_slot,
                faults,
            )?;
            // Where the other slot may differ from this one: where the current slot's
            // header says, and where the intent record says a checkpoint into the other
            // slot, perhaps cut off by the power loss that made this start cold, wrote;
            // every page if either is not known. (The `cold-differs-none` mutant trusts
            // the other slot as it stands.)
            let differs = cold_differs(pages as u64, disk_header.lacks.as_ref(), &intent, |slot| {
                if slot == disk_slot {
                    disk_seq
                } else {
                    other_seq
                }
            });
            let mut marks = vec![u8::from(differs.is_none()); pages];
            for r in differs.iter().flat_map(|m| m.runs(pages as u64)) {
                marks[r.start as usize..r.end as usize].fill(1);
            }
            if crate::mutant::is("cold-differs-none") {
                marks.fill(0);
            }
            faults
                .check(IoOp::Write, IoFile::Image)
                .and_then(|()| image.write_all_at(&marks, MemHeader::differs_at(pages as u64)))
                .context(|| format!("write {}", ipath.display()))?;
        }
        faults
            .check(IoOp::Write, IoFile::Image)
            .and_then(|()| {
                image.write_all_at(
                    &MemHeader::encode_synced(disk_seq).to_le_bytes(),
                    MemHeader::SYNCED_AT as u64,
                )
            })
            .context(|| format!("write {}", ipath.display()))?;
        if start != StartKind::Warm {
            faults
                .check(IoOp::Write, IoFile::Image)
                .and_then(|()| {
                    image.write_all_at(&MEM_READY.to_le_bytes(), MemHeader::READY_AT as u64)
                })
                .context(|| format!("write {}", ipath.display()))?;
        }

        // Map it.
        let meta = AtomicMapping::new(
            faults
                .check(IoOp::Map, IoFile::Image)
                .and_then(|()| Mapping::read_write(&image, 0, header.meta_len as usize))
                .context(|| format!("map {}", ipath.display()))?,
        );
        let (data, write, guard) = map_data(
            &image,
            &ipath,
            header.meta_len,
            map_len as usize,
            protection,
            pages,
            faults,
        )?;
        let mut key_guard = key_guard;
        let pkey = key_guard.0.take();

        // Built: from here on nothing fails before the cache exists (a failure to spawn
        // the writeback thread leaves a complete new cache, which the next open uses).
        new_files.armed = false;
        let inner = Inner {
            path: path.to_owned(),
            journal_path: jpath,
            image_path: ipath,
            disk,
            journal,
            data_len: opts.size,
            pages,
            meta,
            data,
            write,
            pkey,
            gate: Gate::default(),
            disk_seq: Mutex::new(disk_seq),
            disk_slot: std::sync::atomic::AtomicUsize::new(disk_slot),
            lacks: Mutex::new(disk_header.lacks),
            intent_damaged: AtomicBool::new(intent == IntentRecord::Damaged),
            image_id: header.id,
            dirty_pages: AtomicU64::new(0),
            dirty_side: std::sync::atomic::AtomicUsize::new(0),
            snapshot: crate::snapshot::Snapshot::new(pages),
            dirty_gen: AtomicU64::new(crate::state::fresh_dirty_gen()),
            kick_pages: AtomicU64::new(kick_pages(opts.writeback)),
            kicked: AtomicBool::new(false),
            wake: Mutex::new(Wake::default()),
            wake_cv: Condvar::new(),
            poison: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            checkpoints: AtomicU64::new(installed),
            pages_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            intents: AtomicU64::new(0),
            last_checkpoint_ns: AtomicU64::new(u64::MAX),
            reprotect_failures: AtomicU64::new(0),
            fenced: AtomicBool::new(false),
            start,
            protection,
            image,
            image_data_at: header.meta_len,
            faults: faults.clone(),
            checkpoint_wait: opts.checkpoint_wait,
        };
        // A crash may have left pages in flight (copied but not installed) or dirty:
        // all of them still need writing back.
        let (dirty, inflight) = (inner.dirty_map(), inner.inflight_map());
        let mut count = 0;
        for p in 0..pages {
            if inflight[p].load(Ordering::Relaxed) != 0 {
                dirty[p].store(1, Ordering::Relaxed);
                inflight[p].store(0, Ordering::Relaxed);
            }
            if dirty[p].load(Ordering::Relaxed) != 0 {
                count += 1;
            }
        }
        inner.dirty_pages.store(count, Ordering::Relaxed);

        let inner = Arc::new(inner);
        let writeback = match opts.writeback {
            Writeback::Manual => None,
            Writeback::Background { interval, .. } => {
                Some(WritebackThread::spawn(Arc::clone(&inner), interval)?)
            }
        };
        Ok(RioCache {
            inner,
            guard,
            memo: crate::PageMemo::default(),
            writeback,
            checkpoint_on_close: opts.checkpoint_on_close,
        })
    }
}

/// A disk file this open created, removed on drop unless the open got past validation
/// (`armed` is cleared). Dropped before the file's handle, so while its lock is held.
struct CreatedFile<'a> {
    path: &'a Path,
    armed: bool,
}

impl Drop for CreatedFile<'_> {
    /// Ignores a failure to remove: the refusal being returned is the error that
    /// matters, and an empty file is what an open treats as new anyway.
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(self.path);
        }
    }
}

/// Takes over the memory image and journal that builds before symlinks of the file itself
/// were resolved (see `naming::resolve_path`) named after `given`, a symlink to the disk
/// file (its directory resolved, its own name kept): renamed to the names of `resolved`
/// if those do not exist yet, so that the commits such an image holds (a crash of the
/// previous build) are not silently left behind by a cold start. The image is renamed
/// under its lock (`Locked` if a process of the previous build has it open); the caller
/// holds the disk file's lock. Renaming changes no byte, so a refused open that did it
/// has still written nothing.
///
/// # Errors
/// [`Error::Locked`]; I/O errors.
fn adopt_legacy_names(given: &Path, resolved: &Path, cache_dir: &Path) -> Result<()> {
    let is_link = std::fs::symlink_metadata(given).is_ok_and(|m| m.file_type().is_symlink());
    let (Some(dir), Some(name)) = (given.parent(), given.file_name()) else {
        return Ok(());
    };
    if !is_link {
        return Ok(());
    }
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(dir) = dir.canonicalize() else {
        return Ok(());
    };
    let legacy = dir.join(name);
    if legacy == resolved {
        return Ok(());
    }
    let old_image = cache_dir.join(crate::naming::image_name(&legacy));
    let new_image = cache_dir.join(crate::naming::image_name(resolved));
    if old_image.exists() && !new_image.exists() {
        if let Some(held) = lock_image(&old_image)? {
            std::fs::rename(&old_image, &new_image)
                .context(|| format!("rename {} to {}", old_image.display(), new_image.display()))?;
            drop(held);
        }
    }
    let (old_journal, new_journal) = (journal_path(&legacy), journal_path(resolved));
    let len = |p: &Path| std::fs::metadata(p).map_or(0, |m| m.len());
    if len(&old_journal) > 0 && len(&new_journal) == 0 {
        // Across file systems (a symlink to another one) by a synced copy instead.
        let moved = std::fs::rename(&old_journal, &new_journal).or_else(|e| {
            if e.raw_os_error() != Some(libc::EXDEV) {
                return Err(e);
            }
            std::fs::copy(&old_journal, &new_journal)?;
            File::open(&new_journal)?.sync_all()?;
            std::fs::remove_file(&old_journal)
        });
        moved.context(|| {
            format!(
                "move {} to {}",
                old_journal.display(),
                new_journal.display()
            )
        })?;
        for d in [Some(dir.as_path()), resolved.parent()]
            .into_iter()
            .flatten()
        {
            File::open(d)
                .and_then(|f| f.sync_all())
                .context(|| format!("fsync directory {}", d.display()))?;
        }
    }
    Ok(())
}

/// The files an open of a new cache (an absent or empty disk file) made or changed,
/// put back as it found them if the open fails after it began writing: the disk file
/// removed (or emptied, if it existed empty), the journal removed if it did not exist,
/// the memory image removed. Dropped while the open still holds the disk file's lock
/// (it is declared after the file's handle), so no other open is looking at them.
struct NewFiles<'a> {
    path: &'a Path,
    journal: PathBuf,
    image: PathBuf,
    disk_existed: bool,
    journal_existed: bool,
    armed: bool,
}

impl Drop for NewFiles<'_> {
    /// Ignores failures: the open's own error is the one that matters, and an empty or
    /// absent disk file is what the next open treats as new either way.
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let _ = if self.disk_existed {
            OpenOptions::new()
                .write(true)
                .open(self.path)
                .and_then(|f| f.set_len(0))
        } else {
            std::fs::remove_file(self.path)
        };
        if !self.journal_existed {
            let _ = std::fs::remove_file(&self.journal);
        }
        let _ = std::fs::remove_file(&self.image);
    }
}

/// Adds to a refusal of the disk file's header what its memory image holds, when the
/// image is complete, of this boot and of this very file: then it may hold everything
/// committed, and restoring the file's header (say, from a copy) lets an open continue
/// from it. Other errors pass unchanged.
pub(crate) fn note_intact_image(err: Error, disk: &File, path: &Path, cache_dir: &Path) -> Error {
    let Error::Corrupt { path: bad, reason } = err else {
        return err;
    };
    let intact = (|| {
        let ipath = image_path(path, cache_dir).ok()?;
        let image = File::open(&ipath).ok()?;
        let mut head = [0u8; MemHeader::READ_LEN];
        image.read_exact_at(&mut head, 0).ok()?;
        let h = MemHeader::decode(&head).ok()?;
        let meta = disk.metadata().ok()?;
        let synced = MemHeader::decode_synced(format::get_u64(&head, MemHeader::SYNCED_AT))?;
        let ours = format::get_u32(&head, MemHeader::READY_AT) == MEM_READY
            && h.boot_id == format::boot_id().ok()?
            && (h.dev, h.ino) == (meta.dev(), meta.ino());
        ours.then_some((ipath, synced))
    })();
    let reason = match intact {
        Some((ipath, synced)) => format!(
            "{reason}; its memory image {} is intact (at or after checkpoint {synced}) and \
             may hold everything committed: keep it, and restore the file (e.g. from a \
             copy of this checkpoint) so that an open continues from the image",
            ipath.display()
        ),
        None => reason,
    };
    Error::Corrupt { path: bad, reason }
}

/// Reads and decodes the two slot headers of the `len`-byte disk image `disk` and
/// returns the disk image's checkpoint: the slot header with the higher checkpoint
/// number, and its slot. Slot 1's header is all zero until the first checkpoint writes
/// it. Any other defect, in either header, becomes the error a user should see: a
/// header is one sector, written whole or not at all, so one that fails its checksum was
/// damaged, not torn, and the open refuses rather than fall back to the other slot's
/// older checkpoint. Also returns the checkpoint number the other slot's header names (0
/// if it was never written).
pub(crate) fn read_disk_header(
    disk: &File,
    path: &Path,
    len: u64,
) -> Result<(DiskHeader, usize, u64)> {
    let not_ours = |reason: &str| Error::NotRioCache {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        reason,
    };
    if len < 64 {
        return Err(not_ours("shorter than a header"));
    }
    let mut b = [0u8; format::META_AT[1] as usize + DiskHeader::LEN];
    let n = b.len().min(usize::try_from(len).unwrap_or(usize::MAX));
    disk.read_exact_at(&mut b[..n], 0)
        .context(|| format!("read {}", path.display()))?;
    // Shorter than its two slots' headers: truncated (if it starts as one), not damaged.
    let need = b.len();
    if n < need {
        let at = format::META_AT[0] as usize;
        return Err(match DiskHeader::decode(&b[at..at + DiskHeader::LEN], 0) {
            Err(HeaderError::Magic) => not_ours("bad magic"),
            _ => corrupt(format!(
                "truncated: {len} bytes, shorter than its header ({need} bytes)"
            )),
        });
    }
    let header = |slot: usize| -> Result<DiskHeader> {
        let at = format::META_AT[slot] as usize;
        let h = DiskHeader::decode(&b[at..at + DiskHeader::LEN], slot).map_err(|e| match e {
            HeaderError::Magic if slot == 0 => not_ours("bad magic"),
            HeaderError::Magic => corrupt("slot 1's header has a bad magic".into()),
            HeaderError::Version(found) => Error::IncompatibleVersion {
                path: path.to_owned(),
                found,
                supported: DISK_VERSION,
            },
            HeaderError::Map(shift) => {
                corrupt(format!("slot {slot}'s header has map shift {shift}"))
            }
            HeaderError::Checksum => corrupt(format!("slot {slot}'s header checksum mismatch")),
            HeaderError::PageSize(p) => corrupt(format!("page size {p}")),
            HeaderError::Slot(s) => corrupt(format!("slot {s}'s header at slot {slot}'s place")),
        })?;
        // An intact header can still claim any size (a crafted file).
        if h.data_len == 0 || h.data_len > format::MAX_DATA_LEN {
            return Err(corrupt(format!(
                "slot {slot}'s header claims {} bytes of data",
                h.data_len
            )));
        }
        Ok(h)
    };
    let at = format::META_AT[1] as usize;
    let second_written = b[at..at + DiskHeader::LEN].iter().any(|&x| x != 0);
    let first = match header(0) {
        // Not a rio-cache by its first bytes, but slot 1's header is intact: a damaged
        // disk image, not someone else's file.
        Err(Error::NotRioCache { .. }) if second_written && header(1).is_ok() => {
            return Err(corrupt(
                "slot 0's header has a bad magic (slot 1's is intact)".into(),
            ))
        }
        other => other?,
    };
    if !second_written {
        return Ok((first, 0, 0)); // slot 1 not written yet
    }
    let second = header(1)?;
    match first.seq.cmp(&second.seq) {
        std::cmp::Ordering::Greater => Ok((first, 0, second.seq)),
        std::cmp::Ordering::Less => Ok((second, 1, first.seq)),
        std::cmp::Ordering::Equal => Err(corrupt(format!(
            "both slots claim checkpoint {}",
            first.seq
        ))),
    }
}

/// The disk image's intent record (`lacks`). A file too short to hold it holds none.
pub(crate) fn read_intent(disk: &impl FileExt, path: &Path) -> Result<IntentRecord> {
    let mut b = [0u8; INTENT_LEN];
    let mut n = 0;
    while n < b.len() {
        match disk.read_at(&mut b[n..], INTENT_AT + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context(|| format!("read {}", path.display())),
        }
    }
    Ok(Intent::decode(&b[..n]))
}

/// Validates the `len`-byte disk image, whose size once its journal is dealt with is
/// `found`, against the `requested` size (`map_len` bytes of pages). Returns the length
/// to truncate the file to if a grow to `grow_intent` bytes, cut off before its commit
/// point, left it extended (see `grow.rs`: the journal then holds the uncommitted
/// batch's header, written durably before the file was extended). Any other length is
/// corruption.
fn validate_disk(
    path: &Path,
    len: u64,
    found: u64,
    requested: u64,
    map_len: u64,
    grow_intent: Option<u64>,
) -> Result<Option<u64>> {
    if found != requested {
        return Err(Error::SizeMismatch {
            path: path.to_owned(),
            found,
            requested,
        });
    }
    let want = format::disk_len_for(map_len);
    if len == want {
        Ok(None)
    } else if grow_intent.is_some_and(|to| len == format::disk_len_for(format::round_up_pages(to)))
    {
        Ok(Some(want))
    } else {
        Err(Error::Corrupt {
            path: path.to_owned(),
            reason: format!("file is {len} bytes; a {requested}-byte cache needs {want}"),
        })
    }
}

/// Numbers the writability probes of this process (see `check_cache_dir`).
static PROBES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn check_cache_dir(dir: &Path) -> Result<()> {
    let bad = |reason: String| Error::CacheDir {
        dir: dir.to_owned(),
        reason,
    };
    let md = std::fs::metadata(dir).map_err(|e| bad(e.to_string()))?;
    if !md.is_dir() {
        return Err(bad("not a directory".into()));
    }
    // Probe writability for real: permission bits do not tell root the truth about a
    // read-only mount. The name is unique per open in this process too: threads opening
    // caches in one directory at once must not meet on one probe file.
    let n = PROBES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let probe = dir.join(format!(".rio-probe-{}-{n}", std::process::id()));
    match OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(bad(format!("not writable: {e}"))),
    }
}

/// The write log, if the options ask for write recording (see `disk_io`).
fn open_write_log(opts: &RioOptions, ipath: &Path) -> Result<Option<Arc<Mutex<WriteLog>>>> {
    let Some(dir) = &opts.record_writes else {
        return Ok(None);
    };
    std::fs::create_dir_all(dir).context(|| format!("create {}", dir.display()))?;
    let lp = crate::disk_io::log_path(dir, ipath);
    let log = WriteLog::open(&lp).context(|| format!("open {}", lp.display()))?;
    Ok(Some(Arc::new(Mutex::new(log))))
}

fn sync_dir(path: &Path, faults: &Faults) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    faults
        .check(IoOp::Sync, IoFile::Directory)
        .and_then(|()| File::open(dir))
        .and_then(|d| d.sync_all())
        .context(|| format!("fsync directory {}", dir.display()))
}

/// Opens and locks the existing memory image at `ipath`; `None` if there is none.
///
/// # Errors
/// [`Error::Locked`] (naming the image) if another open cache holds it.
fn lock_image(ipath: &Path) -> Result<Option<File>> {
    // A file replaced between our open and our lock is not the one at the path: retry.
    for _ in 0..8 {
        let f = match OpenOptions::new().read(true).write(true).open(ipath) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).context(|| format!("open {}", ipath.display())),
        };
        if !sys::try_lock_exclusive(&f).context(|| format!("lock {}", ipath.display()))? {
            return Err(Error::locked(ipath));
        }
        if is_at(&f, ipath)? {
            return Ok(Some(f));
        }
    }
    Err(Error::locked(ipath))
}

/// Creates the memory image file at `ipath` (empty) and locks it. Never replaces a
/// file: one that appeared since [`lock_image`] looked belongs to another opener.
fn create_locked_image(ipath: &Path) -> Result<File> {
    let f = match OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(ipath)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Err(Error::locked(ipath)),
        Err(e) => return Err(e).context(|| format!("create {}", ipath.display())),
    };
    if !sys::try_lock_exclusive(&f).context(|| format!("lock {}", ipath.display()))?
        || !is_at(&f, ipath)?
    {
        return Err(Error::locked(ipath));
    }
    Ok(f)
}

/// Whether the open file `f` is still the file at `p`.
fn is_at(f: &File, p: &Path) -> Result<bool> {
    let ours = f.metadata().context(|| format!("stat {}", p.display()))?;
    Ok(match std::fs::metadata(p) {
        Ok(m) => m.dev() == ours.dev() && m.ino() == ours.ino(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).context(|| format!("stat {}", p.display())),
    })
}

/// Empties the (locked) memory image `f`, preallocates it and writes its header; the
/// `ready` word stays 0 until the data is loaded.
pub(crate) fn create_image(
    f: &File,
    ipath: &Path,
    dir: &Path,
    header: &MemHeader,
    len: u64,
    faults: &Faults,
) -> Result<()> {
    // The origin record outlives the rebuild (a grow rebuilds the image in place).
    let mut origin = vec![0u8; PAGE - format::ORIGIN_AT];
    if f.read_exact_at(&mut origin, format::ORIGIN_AT as u64)
        .is_err()
    {
        origin.fill(0);
    }
    faults
        .check(IoOp::Truncate, IoFile::Image)
        .and_then(|()| f.set_len(0))
        .context(|| format!("truncate {}", ipath.display()))?;
    let allocated = faults
        .check(IoOp::Allocate, IoFile::Image)
        .and_then(|()| sys::preallocate(f, len));
    if let Err(e) = allocated {
        let _ = std::fs::remove_file(ipath);
        return Err(if e.raw_os_error() == Some(libc::ENOSPC) {
            Error::CacheFull {
                dir: dir.to_owned(),
                len,
            }
        } else {
            Error::Io {
                context: format!("preallocate {}", ipath.display()),
                source: e,
            }
        });
    }
    faults
        .check(IoOp::Write, IoFile::Image)
        .and_then(|()| f.write_all_at(&header.encode(), 0))
        .and_then(|()| {
            if origin.iter().any(|&b| b != 0) {
                faults.check(IoOp::Write, IoFile::Image)?;
                f.write_all_at(&origin, format::ORIGIN_AT as u64)
            } else {
                Ok(())
            }
        })
        .context(|| format!("write {}", ipath.display()))
}

/// Copies the data of the disk image's slot `slot` into a new memory image.
///
/// The kernel copies it (`sendfile`, one extent of 1 MiB a call): the disk image's cached
/// pages go straight into the memory image's, one copy where a `pread` into a buffer and
/// a `pwrite` from it made two. Where the kernel refuses (`EINVAL`, `ENOSYS`), that
/// extent and the rest go through a buffer. Most of a cold open's time is still the
/// memory file system allocating the image's pages (docs/rio-cache.md, "Warm or cold").
#[allow(clippy::too_many_arguments)]
pub(crate) fn load_cold(
    disk: &DiskFile,
    path: &Path,
    image: &File,
    ipath: &Path,
    meta_len: u64,
    len: u64,
    slot: usize,
    faults: &Faults,
) -> Result<()> {
    let page = PAGE as u64;
    let pages = len / page;
    // At most one extent a call, and at least two calls, so `rio.cold_load.half` falls
    // between two of them.
    let chunk = format::EXTENT_PAGES.min(pages.div_ceil(2)).max(1);
    let mut buffered = false;
    let mut at = 0;
    let mut half_passed = false;
    while at < pages {
        let n_pages = chunk.min(pages - at);
        for (first, n) in format::extent_runs(at, n_pages) {
            faults
                .check(IoOp::Read, IoFile::Disk)
                .context(|| format!("read {}", path.display()))?;
            faults
                .check(IoOp::Write, IoFile::Image)
                .context(|| format!("write {}", ipath.display()))?;
            let (from, to, bytes) = (
                format::slot_offset(slot, first),
                meta_len + first * page,
                n * page,
            );
            if !buffered {
                match copy_in_kernel(disk.file(), from, image, to, bytes) {
                    Ok(()) => {}
                    Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
                        buffered = true;
                    }
                    Err(e) => {
                        return Err(e).context(|| {
                            format!("copy {} into {}", path.display(), ipath.display())
                        })
                    }
                }
            }
            if buffered {
                copy_buffered(disk.file(), from, image, to, bytes)
                    .context(|| format!("copy {} into {}", path.display(), ipath.display()))?;
            }
        }
        at += n_pages;
        if !half_passed && at >= pages / 2 {
            half_passed = true;
            crash_point!("rio.cold_load.half");
        }
    }
    crash_point!("rio.cold_load.loaded");
    Ok(())
}

/// Copies `[from, from + n)` of `src` to `to` in `dst` with `sendfile`; a short source is
/// `UnexpectedEof`. On an error, part of the range may be copied (the buffered copy
/// that follows a refusal writes the whole range again).
fn copy_in_kernel(src: &File, from: u64, dst: &File, to: u64, n: u64) -> io::Result<()> {
    let mut done = 0;
    while done < n {
        let want = usize::try_from(n - done).map_err(io::Error::other)?;
        match sys::copy_range(src, from + done, dst, to + done, want) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(k) => done += k as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies `[from, from + n)` of `src` to `to` in `dst` through a buffer of 1 MiB.
fn copy_buffered(src: &File, from: u64, dst: &File, to: u64, n: u64) -> io::Result<()> {
    const BUF: u64 = 1 << 20;
    let mut buf = vec![0u8; BUF.min(n) as usize];
    let mut done = 0;
    while done < n {
        let k = BUF.min(n - done) as usize;
        src.read_exact_at(&mut buf[..k], from + done)?;
        dst.write_all_at(&buf[..k], to + done)?;
        done += k as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both ways of loading an image copy exactly the range asked for, across chunk
    /// boundaries and at odd offsets, and both refuse a source that ends early.
    #[test]
    fn the_kernel_copy_and_the_buffered_copy_move_the_same_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let data: Vec<u8> = (0..3_000_000u32)
            .map(|i| (i * 7 + i / 4096) as u8)
            .collect();
        std::fs::write(&src_path, &data).unwrap();
        let src = File::open(&src_path).unwrap();
        for (name, copy) in [
            (
                "sendfile",
                copy_in_kernel as fn(&File, u64, &File, u64, u64) -> io::Result<()>,
            ),
            ("buffered", copy_buffered),
        ] {
            let dst_path = dir.path().join(name);
            let dst = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(true)
                .open(&dst_path)
                .unwrap();
            copy(&src, 4093, &dst, 100, 2_500_000).unwrap();
            let got = std::fs::read(&dst_path).unwrap();
            assert_eq!(got.len(), 100 + 2_500_000, "{name}");
            assert!(got[..100].iter().all(|&b| b == 0), "{name}");
            assert!(got[100..] == data[4093..4093 + 2_500_000], "{name}");
            let short = copy(&src, 2_000_000, &dst, 0, 1_500_000).unwrap_err();
            assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof, "{name}");
        }
    }
}
