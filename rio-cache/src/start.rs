//! Warm or cold: how an open found the memory image, and the rule that decides
//! whether a surviving image may be used.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::format::{self, HeaderError, MemHeader, MEM_READY, VERSION};

/// How an open found the memory image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartKind {
    /// The disk file did not exist (or was empty) and no live memory image of it did
    /// (or [`RioOptions::discard_image`](crate::RioOptions::discard_image) dropped it): a new, zeroed cache.
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
/// [`RioOptions::discard_image`](crate::RioOptions::discard_image) is set, and the start then names the reason here.
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
    /// [`RioOptions::discard_image`](crate::RioOptions::discard_image); otherwise [`Error::DamagedImage`]).
    Damaged,
    /// A cold load was interrupted before the image was complete.
    Incomplete,
    /// The image was usable, but [`RioOptions::discard_image`](crate::RioOptions::discard_image) asked not to use it.
    Discarded,
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
        // A memory image's header has no slot nor map; the decoder never says these.
        Err(HeaderError::Slot(s)) => return Ok(damaged(format!("slot {s}"))),
        Err(HeaderError::Map(s)) => return Ok(damaged(format!("map shift {s}"))),
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
                reason: "the disk file is missing or empty".into(),
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
