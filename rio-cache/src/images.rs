//! The memory images in a cache directory: which disk file each belongs to, whether
//! that file still exists, and removing the images whose disk file is gone.
//!
//! A memory image stays in the cache directory when its disk file is deleted without
//! [`crate::remove`]. Each image records its disk file's absolute path in its header
//! page (the origin record, `docs/format.md`), so [`images`] can name it; images made
//! before the record existed, or whose record is damaged, have an unknown origin and
//! are never removed by [`remove_orphan`].
//!
//! ```
//! # fn main() -> Result<(), rio_cache::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("data.rio");
//! let opts = rio_cache::RioOptions::new().size(8192).cache_dir(dir.path());
//! rio_cache::RioCache::open(&path, &opts)?.close()?;
//! std::fs::remove_file(&path).unwrap(); // the disk file goes, its image stays
//!
//! let found = rio_cache::images(dir.path())?;
//! assert_eq!(found.len(), 1);
//! assert!(found[0].is_orphan());
//! assert!(rio_cache::remove_orphan(&found[0])?);
//! assert!(rio_cache::images(dir.path())?.is_empty());
//! # Ok(())
//! # }
//! ```

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::format::{self, MemHeader, ORIGIN_AT};
use crate::sys::PAGE;

/// One memory image in a cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ImageInfo {
    /// The image file.
    pub path: PathBuf,
    /// Its length in bytes.
    pub len: u64,
    /// The disk file it belongs to, from its origin record; `None` if the image records
    /// none (made by an older version), its header or record is damaged, or the record
    /// names a file whose image would have another name (the image was renamed or
    /// copied).
    pub origin: Option<PathBuf>,
    /// Whether [`ImageInfo::origin`] exists: `None` if the origin is unknown or could not
    /// be looked up (no permission), `Some(false)` only if it is certainly gone.
    pub origin_exists: Option<bool>,
    /// The process holding the image's lock (a cache open there), from `/proc/locks`;
    /// `Some(0)` if a lock is held but its owner is not known.
    pub locked_by: Option<u32>,
}

impl ImageInfo {
    /// Whether the image is an orphan: its disk file is certainly gone and no process
    /// has it open. Only orphans are removed by [`remove_orphan`].
    pub fn is_orphan(&self) -> bool {
        self.origin_exists == Some(false) && self.locked_by.is_none()
    }
}

/// Lists the memory images (`rio-*.img`) in `cache_dir`, sorted by name. Reads only and
/// takes no lock.
///
/// # Errors
/// [`Error::CacheDir`] if the directory cannot be read. An image that vanishes while it
/// is listed is left out; one that cannot be read is listed with an unknown origin.
pub fn images(cache_dir: &Path) -> Result<Vec<ImageInfo>> {
    let bad = |e: io::Error| Error::CacheDir {
        dir: cache_dir.to_owned(),
        reason: e.to_string(),
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(cache_dir).map_err(bad)? {
        let entry = entry.map_err(bad)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !(name.starts_with("rio-") && name.ends_with(".img")) {
            continue;
        }
        let path = entry.path();
        let Ok(f) = File::open(&path) else { continue };
        let Ok(meta) = f.metadata() else { continue };
        if !meta.is_file() {
            continue;
        }
        out.push(describe(&f, &meta, path));
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// What the open image `f` (at `path`) records and whether its disk file exists.
fn describe(f: &File, meta: &std::fs::Metadata, path: PathBuf) -> ImageInfo {
    let origin = read_origin(f).filter(|o| {
        path.file_name().and_then(|n| n.to_str()) == Some(crate::naming::image_name(o).as_str())
    });
    let origin_exists = origin
        .as_ref()
        .and_then(|o| match std::fs::symlink_metadata(o) {
            Ok(_) => Some(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Some(false),
            Err(_) => None,
        });
    ImageInfo {
        len: meta.len(),
        origin,
        origin_exists,
        locked_by: crate::inspect::lock_holder(std::iter::once(meta)),
        path,
    }
}

/// The origin recorded in the image `f`, if its header is intact and it records one.
fn read_origin(f: &File) -> Option<PathBuf> {
    let mut page = vec![0u8; PAGE];
    f.read_exact_at(&mut page, 0).ok()?;
    MemHeader::decode(&page).ok()?;
    format::decode_origin(&page[ORIGIN_AT..])
}

/// Removes the image `image` if it is (still) an orphan: it takes the image's lock,
/// reads its origin record again and checks that the disk file is gone, all while
/// holding the lock, so an image that an open is using or is about to use is never
/// removed. Returns whether it removed it (`false`: the origin is unknown, or the disk
/// file exists again, or the image is already gone).
///
/// # Errors
/// [`Error::Locked`] (naming the holder's pid where it can be found) if the image is
/// open; I/O errors.
pub fn remove_orphan(image: &ImageInfo) -> Result<bool> {
    let p = &image.path;
    let f = match OpenOptions::new().read(true).open(p) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).context(|| format!("open {}", p.display())),
    };
    if !crate::sys::try_lock_exclusive(&f).context(|| format!("lock {}", p.display()))? {
        return Err(Error::locked(p));
    }
    let meta = f.metadata().context(|| format!("stat {}", p.display()))?;
    // The file at the path may have been replaced since it was listed.
    match std::fs::metadata(p) {
        Ok(m) if m.dev() == meta.dev() && m.ino() == meta.ino() => {}
        _ => return Ok(false),
    }
    let now = describe(&f, &meta, p.clone());
    if now.origin_exists != Some(false) {
        return Ok(false);
    }
    std::fs::remove_file(p).context(|| format!("remove {}", p.display()))?;
    Ok(true)
}
