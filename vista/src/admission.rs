//! Judging an existing segment before it is opened, so that a refused open writes
//! nothing at all.
//!
//! Opening a segment goes through [`rio_cache::RioCache::open`], which makes a memory
//! image (a cold start copies the whole file into it) and a journal before vista gets to
//! read its header and undo lanes. If vista then refused them, that image would stay
//! behind, and a later open, finding it complete and current, would start warm from it
//! and keep failing on its copy of the damage even after the file was repaired.
//!
//! So [`admit`] reads, read-only and through [`crate::inspect`], the copy the open would
//! use (the memory image when it is warm, else the segment file with any committed
//! journal laid over it), and refuses damage there before anything is created or
//! changed, naming which copy is damaged, its path, and the way forward. Whatever it
//! cannot judge (a locked segment, a damaged disk header, journal or memory image) it
//! leaves to the open, which refuses those itself before changing anything. The open's
//! own checks stay as they are, behind this one: a segment changed between the two (by
//! a process that ignored its lock) is still refused, only no longer before the image
//! is made.

use std::path::Path;

use rio_cache::inspect::{ImageState, JournalState, Source};

use crate::error::{Error, Result};
use crate::inspect::{HeaderFault, LaneState, SegmentInfo};
use crate::options::Options;

/// Refuses the existing segment at `path` if the copy an open with `opts` would use has
/// a damaged or foreign segment header or a damaged undo lane. Writes nothing.
///
/// # Errors
/// [`Error::Corrupt`] naming the damaged copy (`path` is the memory image or the segment
/// file); [`Error::IncompatibleVersion`].
pub(crate) fn admit(path: &Path, opts: &Options) -> Result<()> {
    let cache_dir = opts.rio(1).resolved_cache_dir();
    let Ok(info) = crate::inspect::inspect(path, &cache_dir) else {
        return Ok(()); // the open refuses the file (or the disk header) itself
    };
    let c = &info.cache;
    if c.locked_by.is_some() || matches!(c.journal, JournalState::Corrupt(_)) {
        return Ok(()); // the open reports the lock or the journal
    }
    let source = match &c.image {
        ImageState::Warm if !opts.discard_image => Source::Image,
        ImageState::Damaged(_) | ImageState::Live(_) if !opts.discard_image => return Ok(()),
        _ => Source::Disk,
    };
    if source == Source::Disk && c.file_len != c.expected_len {
        return Ok(()); // the open refuses the length
    }
    let Ok(view) = info.view(source) else {
        return Ok(());
    };
    let fault = match &view.header {
        Ok(_) => view.lanes.iter().find_map(|l| match &l.state {
            LaneState::Damaged(why) => Some(format!("undo lane {}: {why}", l.index)),
            _ => None,
        }),
        Err(HeaderFault::Version(found)) => {
            return Err(Error::IncompatibleVersion {
                path: copy_path(&info, source),
                found: *found,
                supported: crate::FORMAT_VERSION,
            })
        }
        Err(HeaderFault::Uninitialized) => {
            // An interrupted creation is initialized by the open, but only if nothing at
            // all was written. From the file (no image yet), that is judged here, so a
            // refusal makes no image; from a warm image the open judges it itself
            // (it then writes nothing either: the image exists already).
            if source == Source::Disk && holds_data(&info)? {
                return Err(Error::Corrupt {
                    path: copy_path(&info, source),
                    reason: damage_text(
                        &info,
                        source,
                        "the segment header is zero but the segment holds data",
                    ),
                });
            }
            return Ok(());
        }
        Err(fault) => Some(format!("segment header: {fault}")),
    };
    match fault {
        None => Ok(()),
        Some(what) => Err(Error::Corrupt {
            path: copy_path(&info, source),
            reason: damage_text(&info, source, &what),
        }),
    }
}

/// Whether any byte of the segment file's data (with any committed journal laid over
/// it) is not zero. Read in extents of 1 MiB.
fn holds_data(info: &SegmentInfo) -> Result<bool> {
    const EXTENT: u64 = 1 << 20;
    let len = info.cache.data_len;
    let mut at = 0;
    while at < len {
        let n = EXTENT.min(len - at);
        if info
            .cache
            .read(Source::Disk, at, n)?
            .iter()
            .any(|&b| b != 0)
        {
            return Ok(true);
        }
        at += n;
    }
    Ok(false)
}

/// The file that holds `source`.
fn copy_path(info: &SegmentInfo, source: Source) -> std::path::PathBuf {
    match source {
        Source::Image => info.cache.image_path.clone(),
        Source::Disk => info.cache.path.clone(),
    }
}

/// Which copy is damaged, what is wrong, and the way forward.
fn damage_text(info: &SegmentInfo, source: Source, what: &str) -> String {
    let c = &info.cache;
    let seg = c.path.display();
    match source {
        Source::Image => {
            let file = match info.view(Source::Disk) {
                Ok(v) if v.header.is_ok() && c.file_len == c.expected_len => format!(
                    "The segment file {seg} holds an intact checkpoint {}",
                    c.disk.seq
                ),
                _ => format!("The segment file {seg} is damaged too"),
            };
            format!(
                "the memory image (the live copy of segment {seg}, which an open starts \
                 from) is damaged: {what}; nothing was changed. {file}: opening with \
                 discard_image starts from it and loses what was committed since, or \
                 Segment::remove deletes the segment"
            )
        }
        Source::Disk => {
            let image = match &c.image {
                ImageState::Cold(rio_cache::ColdReason::NoImage) => "There is no memory image",
                _ => "Its memory image is not a usable newer copy",
            };
            format!(
                "the segment file (checkpoint {}) is damaged: {what}; nothing was changed. \
                 {image}: restore the file from a copy, or Segment::remove deletes the segment",
                c.disk.seq
            )
        }
    }
}
