//! External data segments: the files regions are loaded from and truncation writes to.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use crate::disk::DiskFile;
use crate::error::{Error, Result};
use crate::sys;

/// An open data segment file holding its exclusive `flock`.
#[derive(Debug)]
pub(crate) struct Segment {
    /// Canonical path (what the status block's segment table records).
    pub(crate) path: PathBuf,
    pub(crate) disk: DiskFile,
}

impl Segment {
    /// Opens and locks the segment at `path`, creating it if `create`. The returned path
    /// is canonical.
    pub(crate) fn open(path: &Path, create: bool, emulate_power_loss: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        let path = std::fs::canonicalize(path)?;
        lock(&file, &path)?;
        Ok(Self {
            path,
            disk: DiskFile::new(file, emulate_power_loss),
        })
    }

    /// Extends the file with zeros to `len` bytes and makes the new length durable.
    pub(crate) fn extend(&self, len: u64) -> Result<()> {
        self.disk.sync()?;
        self.disk.file().set_len(len)?;
        self.disk.file().sync_all()?;
        Ok(())
    }
}

fn lock(file: &File, path: &Path) -> Result<()> {
    if sys::try_lock_exclusive(file)? {
        Ok(())
    } else {
        Err(Error::SegmentLocked(path.to_path_buf()))
    }
}
