//! Naming: where a cache's journal and memory image live, and removing all three files.

use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::options::RioOptions;

/// Removes a cache's disk file, journal and memory image. Missing files are not an
/// error. The cache must not be open.
///
/// # Errors
/// An I/O error other than "not found".
pub fn remove(path: impl AsRef<Path>, opts: &RioOptions) -> Result<()> {
    let path = &absolute(path.as_ref())?;
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

/// Removes a cache's disk file, journal and memory image (in `cache_dir`) like
/// [`remove`], but only if the cache is closed: it takes the disk file's and the memory
/// image's locks first and holds them while it removes, so no open can start meanwhile.
/// Missing files are not an error.
///
/// # Errors
/// [`Error::Locked`] (naming the holder's pid where it can be found) if the cache is
/// open; nothing is removed then. I/O errors other than "not found".
pub fn remove_closed(path: impl AsRef<Path>, cache_dir: &Path) -> Result<()> {
    remove_closed_with(path, cache_dir, &[])
}

/// As [`remove_closed`], and removes the files `also` (a layer's files beside the cache)
/// after the cache's, still under the cache's locks, so an open that starts after the
/// cache's files are gone never meets them. Nothing is removed if the cache is open.
///
/// # Errors
/// As [`remove_closed`].
pub fn remove_closed_with(path: impl AsRef<Path>, cache_dir: &Path, also: &[&Path]) -> Result<()> {
    let path = &absolute(path.as_ref())?;
    let image = image_path(path, cache_dir)?;
    let mut held = Vec::new();
    for p in [path, image.as_path()] {
        match std::fs::OpenOptions::new().read(true).open(p) {
            Ok(f) => {
                if !crate::sys::try_lock_exclusive(&f)
                    .context(|| format!("lock {}", p.display()))?
                {
                    return Err(Error::locked(p));
                }
                held.push(f);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(|| format!("open {}", p.display())),
        }
    }
    let files = [image, journal_path(path), path.to_owned()];
    for p in files
        .iter()
        .map(PathBuf::as_path)
        .chain(also.iter().copied())
    {
        match std::fs::remove_file(p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(e).context(|| format!("remove {}", p.display()))
            }
            _ => {}
        }
    }
    drop(held);
    Ok(())
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
    Ok(cache_dir.join(image_name(&absolute(path)?)))
}

/// A path's 64-bit FNV-1a hash: stable across runs and builds, unlike std's hasher.
/// Names a memory image (with the file name), and a group's member in its coordinator.
pub fn path_hash(path: &Path) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The file name of the memory image of the disk file at the absolute path `abs`.
pub(crate) fn image_name(abs: &Path) -> String {
    let h = path_hash(abs);
    let name: String = abs
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(40)
        .collect();
    format!("rio-{name}-{h:016x}.img")
}

/// The path a cache is known by: absolute, with every symlink resolved, the file's own
/// included, so that every spelling of one disk file (a relative path, a symlinked
/// directory, a symlink to the file) names one memory image and one journal, and a
/// relative path means the same file after a change of working directory. A file that
/// does not exist yet is named by its resolved directory; a symlink to a missing file,
/// by the file it points to.
///
/// # Errors
/// An I/O error if the directory cannot be resolved; [`Error::InvalidOptions`] for a path
/// that names no file.
pub fn resolve_path(path: impl AsRef<Path>) -> Result<PathBuf> {
    absolute(path.as_ref())
}

/// See [`resolve_path`].
pub(crate) fn absolute(path: &Path) -> Result<PathBuf> {
    let given = path;
    let mut path = path.to_path_buf();
    // Absent: a dangling symlink names the file at the end of its chain (which an open
    // creates), however many links lead there, so that resolving a resolved path changes
    // nothing. (A loop of links fails `canonicalize` with ELOOP.)
    loop {
        match path.canonicalize() {
            Ok(p) => return Ok(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).context(|| format!("resolve {}", given.display())),
        }
        match std::fs::read_link(&path) {
            Ok(t) if t.is_absolute() => path = t,
            Ok(t) => path = path.parent().unwrap_or_else(|| Path::new("")).join(t),
            Err(_) => break,
        }
    }
    let path = path.as_path();
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
