//! Read-only inspection of a cache's files, for tools (`vista info`, `vista check`,
//! `vista dump`).
//!
//! [`inspect`] reads the disk image, its journal and its memory image and decodes them
//! with the same decoders an open uses, and judges the memory image with the same rule
//! ([`ImageState`] says what an open would do with it). It never writes, never takes a
//! lock and never runs recovery: it opens every file read-only. So it also works on a
//! cache that is open in another process, where what it reads may be changing as it
//! reads it ([`CacheInfo::locked_by`] says so).
//!
//! ```
//! # fn main() -> Result<(), rio_cache::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("data.rio");
//! let opts = rio_cache::RioOptions::new().size(8192).cache_dir(dir.path());
//! rio_cache::RioCache::open(&path, &opts)?.close()?;
//! let info = rio_cache::inspect::inspect(&path, dir.path())?;
//! assert_eq!(info.disk.data_len, 8192);
//! assert_eq!(info.image, rio_cache::inspect::ImageState::Warm);
//! # Ok(())
//! # }
//! ```

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::error::{Error, IoContext, Result};
use crate::format::{self, MemHeader};
use crate::journal::{self, Journal};
use crate::open::read_disk_header;
use crate::start::{judge_image, Verdict};
use crate::sys::PAGE;
use crate::ColdReason;

/// The disk image's header, as decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DiskInfo {
    /// The format version of the current slot's header (2 or 3; others are refused).
    pub version: u32,
    /// Bytes of cached data.
    pub data_len: u64,
    /// The sequence number of the checkpoint the disk image holds (0: none since
    /// creation).
    pub seq: u64,
    /// The id of the memory image that wrote that checkpoint.
    pub writer: u64,
    /// Which of the disk image's two slots holds that checkpoint (0 or 1).
    pub slot: usize,
    /// Bytes on which the other slot may differ from this one, by this slot's header
    /// and the intent record: what the first checkpoint after a cold start copies
    /// besides its own pages. `None`: anywhere (a version 2 header without a map, or a
    /// damaged intent record), and that checkpoint rewrites the whole slot.
    pub other_slot_may_differ: Option<u64>,
    /// The intent record is neither zero nor intact: not an error (it only bounds extra
    /// work), but damage; the next checkpoint writes a new one.
    pub intent_damaged: bool,
}

/// What the journal beside the disk image holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JournalState {
    /// There is no journal file.
    Absent,
    /// Empty or cleared: the last checkpoint completed.
    Empty,
    /// A checkpoint that never reached its commit record: the next open discards it.
    Torn,
    /// A committed checkpoint not yet installed (a crash came during step 4 or 5):
    /// the next open installs it.
    Committed {
        /// Its checkpoint sequence number.
        seq: u64,
        /// Pages it holds.
        pages: u64,
    },
    /// Damaged: the next open refuses the cache.
    Corrupt(String),
}

/// A grow that a crash cut off (see [`crate::RioCache::grow`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum InterruptedGrow {
    /// Cut off before its commit point (the journal holds its uncommitted batch): the
    /// next open undoes it, truncating the file back if it was already extended.
    Uncommitted {
        /// The size it was growing the cache to.
        to: u64,
    },
    /// Cut off after its commit point (the journal holds its committed batch): the
    /// next open finishes it.
    Committed {
        /// The size it grows the cache to.
        to: u64,
    },
}

/// What an open would do with the memory image (`docs/rio-cache.md`, "Warm or cold").
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ImageState {
    /// It is this disk file's live state: an open starts warm from it.
    Warm,
    /// It cannot hold data the disk image lacks: an open drops it and starts cold
    /// ([`ColdReason::NoImage`] if there is none).
    Cold(ColdReason),
    /// It is damaged but may hold data the disk image lacks: an open is refused
    /// ([`Error::DamagedImage`]) unless it discards the image.
    Damaged(String),
    /// It is live but the disk file does not continue from it: an open is refused
    /// ([`Error::LiveImage`]) unless it discards the image.
    Live(String),
}

/// Where [`CacheInfo::read`] reads the data from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The memory image (only when it is [`ImageState::Warm`]): everything written,
    /// checkpointed or not.
    Image,
    /// The disk image, with a committed but uninstalled journal laid over it: the last
    /// checkpoint, what survives power loss.
    Disk,
}

/// Everything [`inspect`] found.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CacheInfo {
    /// The disk image.
    pub path: PathBuf,
    /// Its length in bytes.
    pub file_len: u64,
    /// The length the next open accepts: header page plus page-rounded data of
    /// [`CacheInfo::data_len`] bytes, or the extended length of an uncommitted
    /// [`InterruptedGrow`] (which the open truncates back). A different `file_len` means
    /// the file is truncated or extended (an open refuses it).
    pub expected_len: u64,
    /// Bytes of data as the next open finds them: the header's, or the new size of a
    /// committed [`InterruptedGrow`].
    pub data_len: u64,
    /// A grow a crash cut off, if the journal shows one.
    pub grow: Option<InterruptedGrow>,
    /// When the disk image was last written, by the file system's clock. Only opens
    /// and checkpoints write it (creation, installing a checkpoint, recovering a
    /// committed journal), so this is when the last of those happened; the format
    /// itself records no time.
    pub modified: Option<SystemTime>,
    /// Its header.
    pub disk: DiskInfo,
    /// The journal beside it.
    pub journal_path: PathBuf,
    /// What the journal holds.
    pub journal: JournalState,
    /// Where the memory image is (or would be).
    pub image_path: PathBuf,
    /// What an open would do with it.
    pub image: ImageState,
    /// The checkpoint the memory image last installed or was loaded from (its `synced`
    /// word), when its header is intact.
    pub image_synced: Option<u64>,
    /// Bytes of the memory image file, if there is one.
    pub image_len: Option<u64>,
    /// Where the data starts in the memory image.
    image_data_at: u64,
    /// The process holding the disk file's or the memory image's lock (the cache is
    /// open there), from `/proc/locks`; `Some(0)` if a lock is held but its owner is not
    /// known.
    pub locked_by: Option<u32>,
    committed_journal: Option<Vec<(u64, Vec<u8>)>>,
}

/// Inspects the cache whose disk image is `path`, with its memory image in `cache_dir`.
/// Opens every file read-only; writes nothing and takes no lock.
///
/// # Errors
/// I/O errors (the file is missing, a directory, unreadable), named with the file;
/// [`Error::NotRioCache`] (empty, short or foreign), [`Error::IncompatibleVersion`] or
/// [`Error::Corrupt`] for a disk header an open would refuse. Problems with the file's
/// length, the journal and the memory image are reported in the [`CacheInfo`] instead.
pub fn inspect(path: &Path, cache_dir: &Path) -> Result<CacheInfo> {
    // The files an open would use (see `crate::resolve_path`).
    let resolved = crate::naming::absolute(path)?;
    let path = resolved.as_path();
    let disk = File::open(path).context(|| format!("open {}", path.display()))?;
    let meta = disk
        .metadata()
        .context(|| format!("stat {}", path.display()))?;
    if meta.is_dir() {
        return Err(Error::Io {
            context: format!("open {}", path.display()),
            source: io::Error::from_raw_os_error(libc::EISDIR),
        });
    }
    let file_len = meta.len();
    if file_len == 0 {
        let image = crate::image_path(path, cache_dir)?;
        return Err(Error::NotRioCache {
            path: path.to_owned(),
            reason: if image.exists() {
                format!(
                    "the file is empty, but a memory image of it exists ({}): an open \
                     is refused unless it discards that image",
                    image.display()
                )
            } else {
                "the file is empty".into()
            },
        });
    }
    let (h, slot, other_seq) = read_disk_header(&disk, path, file_len)?;
    let intent = crate::open::read_intent(&disk, path)?;
    // The current header's map, as the next open leaves it: with a committed journal's
    // pages once it installs them.
    let (mut lacks_pages, mut lacks) = (h.data_len.div_ceil(PAGE as u64), h.lacks);
    let mut grow = None;

    let journal_path = crate::journal_path(path);
    let mut committed_journal = None;
    // The disk as the next open will leave it once the journal is dealt with.
    let mut final_disk = (h.seq, h.writer);
    let journal = match File::open(&journal_path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => JournalState::Absent,
        Err(e) => return Err(e).context(|| format!("open {}", journal_path.display())),
        Ok(f) => match journal::read(&f, &journal_path, h.data_len).map(|j| match j {
            // A group member's batch, as its coordinator decides it now (unreadable: as
            // not decided; the open would refuse).
            Journal::Sealed {
                batch,
                epoch,
                coordinator,
            } => {
                let decided =
                    crate::group::Coordinator::open(&coordinator, false, crate::Faults::none())
                        .and_then(|c| c.is_decided(epoch))
                        .unwrap_or(false);
                if decided {
                    Journal::Committed(batch)
                } else {
                    Journal::Torn
                }
            }
            other => other,
        }) {
            Ok(Journal::Empty) => JournalState::Empty,
            Ok(Journal::Torn) => {
                grow = journal::grow_intent(&f, &journal_path, h.data_len, &crate::Faults::none())?
                    .map(|to| InterruptedGrow::Uncommitted { to });
                JournalState::Torn
            }
            Ok(Journal::Committed(b)) if b.seq() != h.seq && b.seq() != h.seq + 1 => {
                JournalState::Corrupt(format!(
                    "journal holds checkpoint {} but the disk image is at {}",
                    b.seq(),
                    h.seq
                ))
            }
            Ok(Journal::Committed(b)) => {
                final_disk = (b.seq(), b.writer());
                lacks = lacks
                    .filter(|l| l.reaches(lacks_pages))
                    .map(|l| crate::checkpoint::batch_lacks(&l, &b, b.data_len()));
                lacks_pages = b.data_len().div_ceil(PAGE as u64);
                if b.data_len() != h.data_len {
                    grow = Some(InterruptedGrow::Committed { to: b.data_len() });
                }
                committed_journal = Some(
                    b.runs()
                        .into_iter()
                        .map(|(first, bytes)| (first * PAGE as u64, bytes.to_vec()))
                        .collect(),
                );
                JournalState::Committed {
                    seq: b.seq(),
                    pages: b.len() as u64,
                }
            }
            Ok(Journal::Sealed { .. }) => unreachable!("resolved above"),
            Err(Error::Corrupt { reason, .. }) => JournalState::Corrupt(reason),
            Err(e) => return Err(e),
        },
    };
    let data_len = match grow {
        Some(InterruptedGrow::Committed { to }) => to,
        _ => h.data_len,
    };
    let map_len = format::round_up_pages(data_len);
    let pages = map_len / PAGE as u64;
    let mut expected_len = format::disk_len_for(map_len);
    if let Some(InterruptedGrow::Uncommitted { to }) = grow {
        let extended = format::disk_len_for(format::round_up_pages(to));
        if file_len == extended {
            expected_len = extended;
        }
    }
    let image_path = crate::image_path(path, cache_dir)?;
    let meta_len = MemHeader::meta_len_for(pages);
    let want = MemHeader {
        data_len,
        dev: meta.dev(),
        ino: meta.ino(),
        boot_id: format::boot_id().context(|| "read the boot id".into())?,
        meta_len,
        id: 0,
        parent: 0,
    };
    let image_file = match File::open(&image_path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).context(|| format!("open {}", image_path.display())),
    };
    let image_len = match &image_file {
        Some(f) => Some(
            f.metadata()
                .context(|| format!("stat {}", image_path.display()))?
                .len(),
        ),
        None => None,
    };
    let image = match judge_image(
        image_file.as_ref(),
        &image_path,
        path,
        &want,
        meta_len + map_len,
        Some(final_disk),
    )? {
        Verdict::Warm(_) => ImageState::Warm,
        Verdict::Cold(reason) => ImageState::Cold(reason),
        Verdict::Refuse(_, Error::LiveImage { reason, .. }) => ImageState::Live(reason),
        Verdict::Refuse(_, Error::DamagedImage { reason, .. }) => ImageState::Damaged(reason),
        Verdict::Refuse(_, e) => ImageState::Damaged(e.to_string()),
    };
    let other_slot_may_differ =
        crate::lacks::cold_differs(lacks_pages, lacks.as_ref(), &intent, |s| {
            if s == slot {
                final_disk.0
            } else {
                other_seq
            }
        })
        .map(|m| m.runs(lacks_pages).map(|r| r.end - r.start).sum::<u64>() * PAGE as u64);
    let image_synced = match &image_file {
        Some(f) => read_synced(f),
        None => None,
    };
    let image_meta = image_file.as_ref().and_then(|f| f.metadata().ok());
    let locked_by = lock_holder(std::iter::once(&meta).chain(image_meta.as_ref()));
    Ok(CacheInfo {
        path: path.to_owned(),
        file_len,
        expected_len,
        data_len,
        grow,
        modified: meta.modified().ok(),
        disk: DiskInfo {
            version: h.version,
            data_len: h.data_len,
            seq: h.seq,
            writer: h.writer,
            slot,
            other_slot_may_differ,
            intent_damaged: intent == crate::lacks::IntentRecord::Damaged,
        },
        journal_path,
        journal,
        image_path,
        image,
        image_synced,
        image_len,
        image_data_at: meta_len,
        locked_by,
        committed_journal,
    })
}

/// The checkpoint number in an image's `synced` word, if its header and word are intact.
fn read_synced(f: &File) -> Option<u64> {
    let mut b = [0u8; MemHeader::READ_LEN];
    f.read_exact_at(&mut b, 0).ok()?;
    MemHeader::decode(&b).ok()?;
    MemHeader::decode_synced(format::get_u64(&b, MemHeader::SYNCED_AT))
}

/// The process holding an `flock` on the file at `path` (a cache open there, for a disk
/// file or a memory image), from `/proc/locks`; `None` if no lock is held, the file is
/// missing, or the holder cannot be found. Takes no lock itself.
pub fn holder(path: &Path) -> Option<u32> {
    let meta = std::fs::metadata(path).ok()?;
    lock_holder(std::iter::once(&meta)).filter(|&p| p != 0)
}

/// The pid holding an `flock` on any of these files, from `/proc/locks` (reading it
/// takes no lock, unlike probing with `flock`, which would make a concurrent open fail).
pub(crate) fn lock_holder<'a>(files: impl Iterator<Item = &'a std::fs::Metadata>) -> Option<u32> {
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let ids: Vec<String> = files
        .map(|m| {
            let dev = m.dev();
            let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
            let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
            format!("{major:02x}:{minor:02x}:{}", m.ino())
        })
        .collect();
    locks.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == "FLOCK")?;
        let id = fields.get(at + 4)?;
        ids.iter()
            .any(|want| want == id)
            .then(|| fields.get(at + 3).and_then(|p| p.parse().ok()).unwrap_or(0))
    })
}

impl CacheInfo {
    /// Reads `len` bytes of data at `offset` from `source`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::InvalidOptions`] for [`Source::Image`] when the
    /// image is not warm (it is not the cache's state); I/O errors.
    pub fn read(&self, source: Source, offset: u64, len: u64) -> Result<Vec<u8>> {
        let end = offset.checked_add(len).filter(|e| *e <= self.data_len);
        if end.is_none() {
            return Err(Error::OutOfRange {
                offset,
                len,
                size: self.data_len,
            });
        }
        let n = usize::try_from(len).map_err(|_| Error::OutOfRange {
            offset,
            len,
            size: self.data_len,
        })?;
        let mut buf = vec![0u8; n];
        match source {
            Source::Image => {
                if self.image != ImageState::Warm {
                    return Err(Error::InvalidOptions(format!(
                        "memory image {} is not the cache's live state",
                        self.image_path.display()
                    )));
                }
                let f = File::open(&self.image_path)
                    .context(|| format!("open {}", self.image_path.display()))?;
                f.read_exact_at(&mut buf, self.image_data_at + offset)
                    .context(|| format!("read {}", self.image_path.display()))?;
            }
            Source::Disk => {
                let f =
                    File::open(&self.path).context(|| format!("open {}", self.path.display()))?;
                // Page by page: the slot's pages are contiguous only within an extent.
                let page = PAGE as u64;
                let mut done = 0;
                while done < n {
                    let at = offset + done as u64;
                    let k = ((page - at % page) as usize).min(n - done);
                    let from = format::slot_offset(self.disk.slot, at / page) + at % page;
                    f.read_exact_at(&mut buf[done..done + k], from)
                        .context(|| format!("read {}", self.path.display()))?;
                    done += k;
                }
                for (at, bytes) in self.committed_journal.iter().flatten() {
                    overlay(&mut buf, offset, *at, bytes);
                }
            }
        }
        Ok(buf)
    }
}

/// Copies the part of `src` (which starts at offset `src_at`) that overlaps `dst`
/// (which starts at offset `dst_at`) into `dst`: how a read is patched with newer (a
/// committed journal's pages) or older (an undo record's before-image) bytes.
pub fn overlay(dst: &mut [u8], dst_at: u64, src_at: u64, src: &[u8]) {
    let start = dst_at.max(src_at);
    let end = (dst_at + dst.len() as u64).min(src_at + src.len() as u64);
    if start < end {
        let (d, s, n) = (
            (start - dst_at) as usize,
            (start - src_at) as usize,
            (end - start) as usize,
        );
        dst[d..d + n].copy_from_slice(&src[s..s + n]);
    }
}

/// What [`crate::Protection::Auto`] would choose on this machine now.
pub fn auto_protection() -> crate::Protection {
    if crate::pkeys_supported() {
        crate::Protection::Pkey
    } else {
        crate::Protection::Alias
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::Batch;
    use crate::{RioCache, RioOptions, Writeback};

    fn files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let b = std::fs::read(&p).unwrap();
                (p, b)
            })
            .collect();
        v.sort();
        v
    }

    /// A committed journal not yet installed (a crash in checkpoint step 4): inspection
    /// reports it, reads the disk with its pages laid over, writes nothing, and the next
    /// open then installs exactly what the read showed.
    #[test]
    fn committed_journal_is_reported_and_laid_over_disk_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c");
        let opts = RioOptions::new()
            .size(4 * PAGE as u64)
            .cache_dir(dir.path())
            .writeback(Writeback::Manual);
        let mut cache = RioCache::open(&path, &opts).unwrap();
        cache
            .window(PAGE as u64, 3)
            .unwrap()
            .copy_from_slice(b"old");
        cache.close().unwrap();
        let before = inspect(&path, dir.path()).unwrap();
        assert_eq!(before.journal, JournalState::Empty);
        assert_eq!(before.image, ImageState::Warm);

        // The close's checkpoint wrote page 1: the other slot lacks it.
        assert_eq!(before.disk.other_slot_may_differ, Some(PAGE as u64));

        // Checkpoint seq+1 of pages 1 and 3, committed in the journal but not installed.
        let mut batch = Batch::new(before.disk.seq + 1, before.disk.data_len, 77, &[1, 3]);
        batch.page_mut(0)[..3].copy_from_slice(b"new");
        let mut j = batch.body().to_vec();
        j.extend_from_slice(&batch.commit_record());
        std::fs::write(&before.journal_path, j).unwrap();

        let snapshot = files(dir.path());
        let info = inspect(&path, dir.path()).unwrap();
        assert_eq!(
            info.journal,
            JournalState::Committed {
                seq: before.disk.seq + 1,
                pages: 2
            }
        );
        assert_eq!(info.read(Source::Disk, PAGE as u64, 3).unwrap(), b"new");
        // Once installed in place, pages 1 and 3 are where the other slot lacks.
        assert_eq!(info.disk.other_slot_may_differ, Some(2 * PAGE as u64));
        // The image was not written by checkpoint seq+1's writer: the disk moves on
        // without it once the journal is installed.
        assert_eq!(info.image, ImageState::Cold(ColdReason::Stale));
        assert!(info.read(Source::Image, 0, 1).is_err());
        assert_eq!(files(dir.path()), snapshot, "inspection wrote");

        let cache = RioCache::open(&path, &opts).unwrap();
        assert_eq!(cache.read(PAGE as u64, 3).unwrap(), b"new");
    }

    #[test]
    fn overlay_copies_only_the_overlap() {
        let mut d = [0u8; 4];
        overlay(&mut d, 10, 8, &[1, 2, 3, 4]);
        assert_eq!(d, [3, 4, 0, 0]);
        overlay(&mut d, 10, 13, &[9, 9]);
        assert_eq!(d, [3, 4, 0, 9]);
        overlay(&mut d, 10, 20, &[7]);
        assert_eq!(d, [3, 4, 0, 9]);
    }
}
