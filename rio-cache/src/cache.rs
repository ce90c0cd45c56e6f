//! Opening a cache: the two images, warm and cold start, the lock, and the handle.

use std::fs::{File, OpenOptions};
use std::io;
use std::ops::Range;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crash_point::crash_point;

use crate::disk_io::{DiskFile, Target, WriteLog};
use crate::error::{Error, IoContext, Result};
use crate::format::{
    self, DiskHeader, HeaderError, MemHeader, DISK_DATA_OFFSET, MEM_READY, VERSION,
};
use crate::gate::Gate;
use crate::journal::{self, Journal};
use crate::options::{Protection, RioOptions, Writeback};
use crate::sys::{self, AtomicMapping, Mapping, PAGE};
use crate::writeback::WritebackThread;

/// How an open found the memory image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    /// The disk file did not exist (or was empty) and no live memory image of it did
    /// (or [`RioOptions::discard_image`] dropped it): a new, zeroed cache.
    Created,
    /// The memory image survived (a process crash or a clean close): nothing lost.
    Warm,
    /// The memory image was unusable, so the cache was loaded from the disk image,
    /// which holds the last completed checkpoint.
    Cold(ColdReason),
}

/// Why an open started cold.
///
/// Only reasons that cannot hide committed data newer than the disk image start cold
/// silently; an image that might hold such data refuses the open instead
/// ([`Error::DamagedImage`], [`Error::LiveImage`]) unless
/// [`RioOptions::discard_image`] is set, and the start then names the reason here.
/// `docs/rio-cache.md` ("Warm or cold") gives the rule for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ColdReason {
    /// There was no memory image (first open since a restart, or it was removed).
    NoImage,
    /// The image was written under another boot: the machine restarted.
    BootChanged,
    /// The disk image was checkpointed by another memory image since this one last
    /// wrote it (the file was renamed and used under another name, used with another
    /// cache directory, or restored from a copy): this image is not its latest state.
    Stale,
    /// The image belongs to another disk file (another device or inode).
    OtherFile,
    /// The image is of another size or layout.
    SizeChanged,
    /// The image's header is damaged or of another version (only with
    /// [`RioOptions::discard_image`]; otherwise [`Error::DamagedImage`]).
    Damaged,
    /// A cold load was interrupted before the image was complete.
    Incomplete,
    /// The image was usable, but [`RioOptions::discard_image`] asked not to use it.
    Discarded,
}

/// The protection actually in force (what [`Protection::Auto`] resolved to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveProtection {
    /// No guard.
    None,
    /// `mprotect` windows.
    Mprotect,
    /// Memory protection key windows, with this key.
    Pkey(u32),
    /// A read-only public mapping and a writable alias at a random address
    /// ([`Protection::Alias`]).
    Alias,
}

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
    /// How long the last checkpoint took, from the copy to the cleared journal.
    pub last_checkpoint: Option<Duration>,
    /// Failed attempts to make pages read-only again after a window.
    pub reprotect_failures: u64,
    /// The sequence number of the checkpoint the disk image holds.
    pub disk_seq: u64,
}

/// The per-handle protection state, owned by the [`RioCache`] and shared by its
/// updates (one at a time for a `RioCache`, any number for a [`crate::SharedCache`]).
#[derive(Debug)]
pub(crate) enum Guard {
    /// Without protection, opening a page only marks it dirty, which stays true until a
    /// checkpoint's copy clears the dirty map; see [`crate::PageMemo`].
    None,
    /// Open-window count per data page. The lock makes a count's change and the
    /// `mprotect` it calls for one step, so two threads' windows on a page never leave
    /// it read-only while one of them is open.
    Mprotect {
        refs: Mutex<Vec<u32>>,
    },
    Pkey {
        key: u32,
    },
    /// Writes go through the alias mapping, which is always writable: opening a page
    /// only marks it dirty. No state.
    Alias,
}

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
    /// This memory image's id, recorded as the writer of every checkpoint it installs.
    pub(crate) image_id: u64,
    pub(crate) dirty_pages: AtomicU64,
    /// Bumped (under the exclusive gate) whenever a checkpoint clears dirty marks.
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
    pub(crate) last_checkpoint_ns: AtomicU64,
    pub(crate) reprotect_failures: AtomicU64,
    pub(crate) start: StartKind,
    pub(crate) protection: ActiveProtection,
    /// The memory image file, for writes that go through it rather than a window.
    pub(crate) image: File,
    /// Where the data starts in the memory image.
    pub(crate) image_data_at: u64,
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

    pub(crate) fn writable(&self) -> &Mapping {
        self.write.as_ref().unwrap_or(&self.data)
    }

    pub(crate) fn dirty_map(&self) -> &[std::sync::atomic::AtomicU8] {
        self.meta.bytes(PAGE, self.pages)
    }

    pub(crate) fn inflight_map(&self) -> &[std::sync::atomic::AtomicU8] {
        self.meta.bytes(PAGE + self.pages, self.pages)
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
    writeback: Option<WritebackThread>,
    checkpoint_on_close: bool,
}

/// Removes a cache's disk file, journal and memory image. Missing files are not an
/// error. The cache must not be open.
///
/// # Errors
/// An I/O error other than "not found".
pub fn remove(path: impl AsRef<Path>, opts: &RioOptions) -> Result<()> {
    let path = path.as_ref();
    let image = image_path(path, &opts.resolved_cache_dir())?;
    for p in [image, journal_path(path), path.to_owned()] {
        match std::fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(e).context(|| format!("remove {}", p.display()))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The data size of the cache whose disk image is at `path`, or `None` if there is no
/// file (or it is empty, which [`RioCache::open`] treats as new unless a live memory
/// image of it exists). Reads only the header; takes no lock.
///
/// # Errors
/// As [`RioCache::open`] for a file that is not a valid disk image.
pub fn existing_size(path: impl AsRef<Path>) -> Result<Option<u64>> {
    let path = path.as_ref();
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
    Ok(Some(read_disk_header(&f, path, len)?.data_len))
}

/// The journal beside a disk file: `<path>.journal`.
pub fn journal_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".journal");
    PathBuf::from(s)
}

/// The memory image of a disk file: `<cache dir>/rio-<name>-<hash of absolute path>.img`.
///
/// # Errors
/// An I/O error if the absolute path cannot be determined.
pub fn image_path(path: &Path, cache_dir: &Path) -> Result<PathBuf> {
    let abs = absolute(path)?;
    // FNV-1a: stable across runs and builds, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in abs.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    let name: String = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(40)
        .collect();
    Ok(cache_dir.join(format!("rio-{name}-{h:016x}.img")))
}

/// The absolute path of `path`, resolving symlinks in its directory so two spellings of
/// one file share one image.
fn absolute(path: &Path) -> Result<PathBuf> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let dir = parent
        .canonicalize()
        .context(|| format!("resolve directory of {}", path.display()))?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::InvalidOptions(format!("{} names no file", path.display())))?;
    Ok(dir.join(name))
}

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
    // read-only mount.
    let probe = dir.join(format!(".rio-probe-{}", std::process::id()));
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

fn sync_dir(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .context(|| format!("fsync directory {}", dir.display()))
}

/// Resolves the protection mode, allocating a key if one is used.
fn resolve_protection(p: Protection) -> Result<ActiveProtection> {
    match p {
        Protection::None => Ok(ActiveProtection::None),
        Protection::Mprotect => Ok(ActiveProtection::Mprotect),
        Protection::Pkey => Ok(ActiveProtection::Pkey(sys::pkey_alloc()?)),
        Protection::Alias => Ok(ActiveProtection::Alias),
        Protection::Auto => {
            Ok(sys::pkey_alloc().map_or(ActiveProtection::Alias, ActiveProtection::Pkey))
        }
    }
}

/// Frees an allocated key unless disarmed: keeps failed opens from leaking keys.
struct KeyGuard(Option<u32>);
impl Drop for KeyGuard {
    fn drop(&mut self) {
        if let Some(k) = self.0 {
            sys::pkey_free(k);
        }
    }
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
    /// [`Protection::Pkey`] was asked for and is not available; I/O errors.
    pub fn open(path: impl AsRef<Path>, opts: &RioOptions) -> Result<RioCache> {
        let path = path.as_ref();
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
            return Err(Error::Locked {
                path: path.to_owned(),
            });
        }
        let disk_len = disk
            .metadata()
            .context(|| format!("stat {}", path.display()))?
            .len();
        let fresh = disk_len == 0;
        let mut disk_header = DiskHeader {
            data_len: opts.size,
            seq: 0,
            writer: 0,
        };
        if !fresh {
            disk_header = validate_disk(&disk, path, disk_len, opts.size, map_len)?;
        }
        let mut disk_seq = disk_header.seq;

        // The journal: read and judge it now, act on it only once everything passed.
        let jpath = journal_path(path);
        let journal_state = match File::open(&jpath) {
            Ok(f) => journal::read(&f, &jpath, opts.size, pages as u64)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Journal::Empty,
            Err(e) => return Err(e).context(|| format!("open {}", jpath.display())),
        };
        if let Journal::Committed(b) = &journal_state {
            if fresh || (b.seq() != disk_seq + 1 && b.seq() != disk_seq) {
                return Err(Error::Corrupt {
                    path: jpath,
                    reason: format!(
                        "journal holds checkpoint {} but the disk image is at {disk_seq}",
                        b.seq()
                    ),
                });
            }
        }

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
        let log = open_write_log(opts, &ipath)?;
        let disk = DiskFile::new(disk, Target::Disk, log.clone());
        if fresh {
            let h = DiskHeader {
                data_len: opts.size,
                seq: 0,
                writer: header.id,
            };
            disk.write_all_at(&h.encode(), 0)
                .and_then(|()| disk.set_len(DISK_DATA_OFFSET + map_len))
                .and_then(|()| disk.sync_all())
                .context(|| format!("initialize {}", path.display()))?;
            if !existed {
                sync_dir(path)?;
            }
        }
        let image = image_file;
        if start != StartKind::Warm {
            create_image(&image, &ipath, &cache_dir, &header, image_len)?;
        }
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
        );
        let mut installed = 0;
        match journal_state {
            Journal::Empty => {}
            Journal::Torn => crate::checkpoint::clear_journal(&journal, &jpath)?,
            Journal::Committed(batch) => {
                crate::checkpoint::install(&disk, path, &batch, opts.size, true)?;
                crate::checkpoint::clear_journal(&journal, &jpath)?;
                disk_seq = batch.seq();
                installed = 1;
            }
        }
        if !existed || fresh {
            sync_dir(&jpath)?;
        }
        if let StartKind::Cold(_) = start {
            load_cold(&disk, path, &image, &ipath, header.meta_len, map_len)?;
        }
        image
            .write_all_at(
                &MemHeader::encode_synced(disk_seq).to_le_bytes(),
                MemHeader::SYNCED_AT as u64,
            )
            .context(|| format!("write {}", ipath.display()))?;
        if start != StartKind::Warm {
            image
                .write_all_at(&MEM_READY.to_le_bytes(), MemHeader::READY_AT as u64)
                .context(|| format!("write {}", ipath.display()))?;
        }

        // Map it.
        let meta = AtomicMapping::new(
            Mapping::read_write(&image, 0, header.meta_len as usize)
                .context(|| format!("map {}", ipath.display()))?,
        );
        let (data, write, guard) = map_data(
            &image,
            &ipath,
            header.meta_len,
            map_len as usize,
            protection,
            pages,
        )?;
        let mut key_guard = key_guard;
        let pkey = key_guard.0.take();

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
            image_id: header.id,
            dirty_pages: AtomicU64::new(0),
            dirty_gen: AtomicU64::new(0),
            kick_pages: AtomicU64::new(kick_pages(opts.writeback)),
            kicked: AtomicBool::new(false),
            wake: Mutex::new(Wake::default()),
            wake_cv: Condvar::new(),
            poison: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            checkpoints: AtomicU64::new(installed),
            pages_written: AtomicU64::new(0),
            bytes_written: AtomicU64::new(0),
            last_checkpoint_ns: AtomicU64::new(u64::MAX),
            reprotect_failures: AtomicU64::new(0),
            start,
            protection,
            image,
            image_data_at: header.meta_len,
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
    /// end (the copy needs a consistent moment) but never blocks updates for the disk
    /// I/O itself.
    ///
    /// # Errors
    /// [`Error::Poisoned`] after an earlier failure; an I/O error, which poisons the
    /// cache.
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.checkpoint()
    }

    /// Closes the cache, taking a final checkpoint if the options ask for one (the
    /// default), and reports its errors (which `Drop` cannot).
    ///
    /// # Errors
    /// As [`RioCache::checkpoint`].
    pub fn close(mut self) -> Result<()> {
        self.stop_writeback();
        if self.checkpoint_on_close {
            self.checkpoint_on_close = false;
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

    /// Declares the cache's contents unfit for the disk (for example, a layer above
    /// refused them at open): from now on no checkpoint runs, not even at close, so the
    /// disk image and the journal are never written again by this handle, and updates
    /// are refused with [`Error::Poisoned`]. The memory image is left as it is, for a
    /// later open to judge. The same as [`Update::poison`](crate::Update::poison).
    pub fn poison(&self, reason: impl Into<String>) {
        self.inner.set_poison(reason.into());
    }

    fn stop_writeback(&mut self) {
        if let Some(t) = self.writeback.take() {
            t.stop(&self.inner);
        }
    }
}

/// The dirty-page count that wakes the writeback thread early.
fn kick_pages(writeback: Writeback) -> u64 {
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

/// Reads and decodes the header of the `len`-byte disk image `disk`, turning each defect
/// into the error a user should see.
pub(crate) fn read_disk_header(disk: &File, path: &Path, len: u64) -> Result<DiskHeader> {
    let not_ours = |reason: &str| Error::NotRioCache {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        reason,
    };
    if len < DiskHeader::LEN as u64 {
        return Err(not_ours("shorter than a header"));
    }
    let mut b = [0u8; DiskHeader::LEN];
    disk.read_exact_at(&mut b, 0)
        .context(|| format!("read {}", path.display()))?;
    let h = DiskHeader::decode(&b).map_err(|e| match e {
        HeaderError::Magic => not_ours("bad magic"),
        HeaderError::Version(found) => Error::IncompatibleVersion {
            path: path.to_owned(),
            found,
            supported: VERSION,
        },
        HeaderError::Checksum => corrupt("header checksum mismatch".into()),
        HeaderError::PageSize(p) => corrupt(format!("page size {p}")),
    })?;
    // An intact header can still claim any size (a crafted file).
    if h.data_len == 0 || h.data_len > format::MAX_DATA_LEN {
        return Err(corrupt(format!(
            "the header claims {} bytes of data",
            h.data_len
        )));
    }
    Ok(h)
}

/// Validates an existing disk image against the requested size; returns its header.
fn validate_disk(
    disk: &File,
    path: &Path,
    len: u64,
    size: u64,
    map_len: u64,
) -> Result<DiskHeader> {
    let h = read_disk_header(disk, path, len)?;
    if h.data_len != size {
        return Err(Error::SizeMismatch {
            path: path.to_owned(),
            found: h.data_len,
            requested: size,
        });
    }
    let want = DISK_DATA_OFFSET + map_len;
    if len != want {
        return Err(Error::Corrupt {
            path: path.to_owned(),
            reason: format!("file is {len} bytes; a {size}-byte cache needs {want}"),
        });
    }
    Ok(h)
}

/// What an open does with the memory image.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Use it (a warm start), with its id.
    Warm(u64),
    /// It holds nothing the disk image lacks: start cold.
    Cold(ColdReason),
    /// It may hold committed data the disk image lacks, but cannot be used: the open
    /// is refused with this error, unless the options discard the image (then a cold
    /// start for this reason).
    Refuse(ColdReason, Error),
}

/// Judges the memory image `image` (at `ipath`, locked by the caller) against `want`,
/// for a disk image that will hold checkpoint `disk = (seq, writer)` once the journal
/// is dealt with, or for an empty disk file (`disk` is `None`). The rule for each case
/// is in `docs/rio-cache.md` ("Warm or cold").
pub(crate) fn judge_image(
    image: Option<&File>,
    ipath: &Path,
    path: &Path,
    want: &MemHeader,
    image_len: u64,
    disk: Option<(u64, u64)>,
) -> Result<Verdict> {
    let Some(f) = image else {
        return Ok(Verdict::Cold(ColdReason::NoImage));
    };
    let refuse = |reason: ColdReason, why: String| {
        Verdict::Refuse(
            reason,
            Error::DamagedImage {
                image: ipath.to_owned(),
                path: path.to_owned(),
                reason: why,
            },
        )
    };
    let damaged = |why: String| refuse(ColdReason::Damaged, why);
    let len = f
        .metadata()
        .context(|| format!("stat {}", ipath.display()))?
        .len();
    let mut b = [0u8; MemHeader::READ_LEN];
    let n = len.min(b.len() as u64) as usize;
    f.read_exact_at(&mut b[..n], 0)
        .context(|| format!("read {}", ipath.display()))?;
    // Created (empty, then preallocated with zeros) but its header not yet written:
    // nothing was ever loaded into it, let alone committed.
    if b[..MemHeader::SYNCED_AT].iter().all(|&x| x == 0) {
        return Ok(Verdict::Cold(ColdReason::Incomplete));
    }
    if n < b.len() {
        return Ok(damaged(format!("{len} bytes, shorter than its header")));
    }
    let h = match MemHeader::decode(&b) {
        Ok(h) => h,
        Err(HeaderError::Magic) => {
            return Ok(damaged("bad magic: not a rio-cache memory image".into()))
        }
        Err(HeaderError::Version(v)) => {
            return Ok(damaged(format!(
                "format version {v}; this build reads version {VERSION}"
            )))
        }
        Err(HeaderError::Checksum) => return Ok(damaged("header checksum mismatch".into())),
        Err(HeaderError::PageSize(p)) => return Ok(damaged(format!("page size {p}"))),
    };
    match format::get_u32(&b, MemHeader::READY_AT) {
        0 => return Ok(Verdict::Cold(ColdReason::Incomplete)),
        MEM_READY => {}
        other => return Ok(damaged(format!("ready word {other:#x}"))),
    }
    if h.boot_id != want.boot_id {
        // The machine restarted: by the model, memory did not survive it.
        return Ok(Verdict::Cold(ColdReason::BootChanged));
    }
    let Some(synced) = MemHeader::decode_synced(format::get_u64(&b, MemHeader::SYNCED_AT)) else {
        return Ok(damaged("its synced word fails its check".into()));
    };
    let Some((disk_seq, disk_writer)) = disk else {
        // A complete image of this boot, for a disk file that is empty (truncated, or
        // removed and created again): it may be the only copy of everything. An empty
        // file names no checkpoint, so nothing proves the image belongs to it.
        return Ok(Verdict::Refuse(
            ColdReason::Discarded,
            Error::LiveImage {
                image: ipath.to_owned(),
                path: path.to_owned(),
                reason: "the disk file is empty".into(),
            },
        ));
    };
    // Ours if the disk's last checkpoint is one this image installed (`synced`, or the
    // next one if a crash came between its disk fsync and this image recording it),
    // or, for an image that has installed none yet, still the very checkpoint it was
    // loaded from.
    let continues = h.id == disk_writer && (disk_seq == synced || disk_seq == synced + 1)
        || h.parent == disk_writer && (disk_seq == synced || loaded_any_seq());
    if h.dev != want.dev || h.ino != want.ino {
        return Ok(if continues {
            Verdict::Refuse(
                ColdReason::OtherFile,
                Error::LiveImage {
                    image: ipath.to_owned(),
                    path: path.to_owned(),
                    reason: "the disk file was replaced (another inode) by a copy of the \
                             checkpoint this image continues"
                        .into(),
                },
            )
        } else {
            Verdict::Cold(ColdReason::OtherFile)
        });
    }
    if h.data_len != want.data_len || h.meta_len != want.meta_len || len != image_len {
        return Ok(if continues {
            refuse(
                ColdReason::SizeChanged,
                format!(
                    "{len} bytes for {} bytes of data (metadata {}); this disk image needs \
                     {image_len} for {} (metadata {})",
                    h.data_len, h.meta_len, want.data_len, want.meta_len
                ),
            )
        } else {
            Verdict::Cold(ColdReason::SizeChanged)
        });
    }
    if !continues {
        // The disk moved on without this image: it is the newer state.
        return Ok(Verdict::Cold(ColdReason::Stale));
    }
    Ok(Verdict::Warm(h.id))
}

/// The `warm-after-rewrite` mutant: an image loaded from a writer is accepted whatever
/// that writer checkpointed since.
fn loaded_any_seq() -> bool {
    crate::mutant::is("warm-after-rewrite")
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
            return Err(Error::Locked {
                path: ipath.to_owned(),
            });
        }
        if is_at(&f, ipath)? {
            return Ok(Some(f));
        }
    }
    Err(Error::Locked {
        path: ipath.to_owned(),
    })
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
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Error::Locked {
                path: ipath.to_owned(),
            })
        }
        Err(e) => return Err(e).context(|| format!("create {}", ipath.display())),
    };
    if !sys::try_lock_exclusive(&f).context(|| format!("lock {}", ipath.display()))?
        || !is_at(&f, ipath)?
    {
        return Err(Error::Locked {
            path: ipath.to_owned(),
        });
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
fn create_image(f: &File, ipath: &Path, dir: &Path, header: &MemHeader, len: u64) -> Result<()> {
    f.set_len(0)
        .context(|| format!("truncate {}", ipath.display()))?;
    if let Err(e) = sys::preallocate(f, len) {
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
    f.write_all_at(&header.encode(), 0)
        .context(|| format!("write {}", ipath.display()))
}

/// Copies the disk image's data into a new memory image.
fn load_cold(
    disk: &DiskFile,
    path: &Path,
    image: &File,
    ipath: &Path,
    meta_len: u64,
    len: u64,
) -> Result<()> {
    const CHUNK: u64 = 1 << 20;
    let mut buf = vec![0u8; CHUNK as usize];
    let mut off = 0;
    while off < len {
        let n = CHUNK.min(len - off) as usize;
        disk.read_exact_at(&mut buf[..n], DISK_DATA_OFFSET + off)
            .context(|| format!("read {}", path.display()))?;
        image
            .write_all_at(&buf[..n], meta_len + off)
            .context(|| format!("write {}", ipath.display()))?;
        off += n as u64;
        if off >= len / 2 && off - (n as u64) < len / 2 {
            crash_point!("rio.cold_load.half");
        }
    }
    crash_point!("rio.cold_load.loaded");
    Ok(())
}

type DataMaps = (Mapping, Option<Mapping>, Guard);

/// Maps the data area according to the protection mode.
fn map_data(
    image: &File,
    ipath: &Path,
    at: u64,
    len: usize,
    protection: ActiveProtection,
    pages: usize,
) -> Result<DataMaps> {
    let ctx = || format!("map {}", ipath.display());
    Ok(match protection {
        ActiveProtection::None => (
            Mapping::read_write(image, at, len).context(ctx)?,
            None,
            Guard::None,
        ),
        ActiveProtection::Mprotect => {
            let m = Mapping::read_write(image, at, len).context(ctx)?;
            m.protect(0, len, false).context(ctx)?;
            (
                m,
                None,
                Guard::Mprotect {
                    refs: Mutex::new(vec![0; pages]),
                },
            )
        }
        ActiveProtection::Pkey(key) => {
            let r = Mapping::read_only(image, at, len).context(ctx)?;
            // Populated like the alias, so a first write to a page takes no fault.
            let w = Mapping::read_write_populated(image, at, len).context(ctx)?;
            w.tag_with_pkey(key).context(ctx)?;
            // This thread's rights for the key were set to "no access" by pkey_alloc;
            // other threads start from the kernel's default, which also denies it.
            (r, Some(w), Guard::Pkey { key })
        }
        ActiveProtection::Alias => {
            let r = Mapping::read_only(image, at, len).context(ctx)?;
            let w = Mapping::read_write_hidden(image, at, len)
                .context(|| format!("map {} at a random address", ipath.display()))?;
            (r, Some(w), Guard::Alias)
        }
    })
}
