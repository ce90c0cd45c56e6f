//! Vista: the project's undo-only transactions on an emulated Rio file cache.
//!
//! One [`::vista::Segment`] of exactly the layout's length per open. A benchmark
//! transaction is `seg.begin()`, `tx.write(off, bytes)` per write (set_range + copy),
//! `tx.read` copied out for reads, and `tx.commit()` (one store); a failed body is undone
//! with `tx.abort()`.
//!
//! Where the files go: the memory image (the "Rio" memory) in `/dev/shm`, the disk image
//! in a fresh directory under the scratch directory. Writeback is
//! [`::vista::Writeback::Manual`]: Rio treats its memory as stable storage and does no
//! periodic write-back, and `rvm-rio-*` (RVM with its files on `/dev/shm`) promises the
//! same durability (a process crash loses nothing, power loss is not covered). The cost of
//! rio-cache's optional background writeback is shown by the separate
//! `vista-none-writeback` configuration, which uses rio-cache's default (a checkpoint every
//! 5 s or 16 MiB dirty). When the adapter is dropped the segment is closed (a final
//! checkpoint to the scratch directory, not timed) and its memory image, journal and disk
//! file are removed, so a suite run leaves nothing in `/dev/shm`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::engine::{Body, Engine, Layout, Txn};

/// Where vista's memory images live: tmpfs, the emulated battery-backed memory.
pub const CACHE_DIR: &str = "/dev/shm";

/// A vista segment holding one benchmark segment.
pub struct Vista {
    /// `None` only while dropping.
    segment: Option<::vista::Segment>,
    path: PathBuf,
    options: ::vista::Options,
    // Dropped after the segment (fields drop in order; `Drop` takes the segment first).
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Vista {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vista")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Vista {
    /// Creates a zeroed segment of `layout.len()` bytes with `protection` and `writeback`;
    /// the disk image goes in a fresh directory under `scratch`, the memory image in
    /// [`CACHE_DIR`].
    ///
    /// # Errors
    /// Vista's error (protection keys unavailable, no space, ...).
    pub fn open(
        layout: &Layout,
        scratch: &Path,
        protection: ::vista::Protection,
        writeback: ::vista::Writeback,
    ) -> Result<Vista> {
        let dir = tempfile::Builder::new()
            .prefix("vista-")
            .tempdir_in(scratch)?;
        let path = dir.path().join("segment.vista");
        let options = ::vista::Options::new()
            .size(layout.len().max(1))
            .protection(protection)
            .writeback(writeback)
            .cache_dir(CACHE_DIR);
        let segment = ::vista::Segment::open(&path, &options)
            .with_context(|| format!("opening vista segment {}", path.display()))?;
        let active = segment.protection();
        anyhow::ensure!(
            matches!(
                (protection, active),
                (::vista::Protection::None, ::vista::ActiveProtection::None)
                    | (
                        ::vista::Protection::Mprotect,
                        ::vista::ActiveProtection::Mprotect
                    )
                    | (
                        ::vista::Protection::Pkey,
                        ::vista::ActiveProtection::Pkey(_)
                    )
                    | (::vista::Protection::Alias, ::vista::ActiveProtection::Alias)
            ),
            "asked for {protection:?} protection, vista runs with {active:?}"
        );
        Ok(Vista {
            segment: Some(segment),
            path,
            options,
            _dir: dir,
        })
    }

    /// The memory image of this segment (in [`CACHE_DIR`]); removed on drop.
    ///
    /// # Errors
    /// The path cannot be resolved.
    pub fn image_path(&self) -> Result<PathBuf> {
        Ok(rio_cache::image_path(&self.path, Path::new(CACHE_DIR))?)
    }

    /// Closes the segment (a final checkpoint) and opens it again: a warm start from the
    /// memory image, with recovery. For tests.
    ///
    /// # Errors
    /// Vista's error.
    pub fn reopen(&mut self) -> Result<()> {
        if let Some(segment) = self.segment.take() {
            segment.close().context("closing the segment")?;
        }
        self.segment = Some(::vista::Segment::open(&self.path, &self.options)?);
        Ok(())
    }

    /// The segment's cache counters.
    pub fn cache_stats(&self) -> rio_cache::Stats {
        self.segment
            .as_ref()
            .expect("the segment lives until drop")
            .cache_stats()
    }

    fn segment(&mut self) -> &mut ::vista::Segment {
        self.segment.as_mut().expect("the segment lives until drop")
    }
}

impl Drop for Vista {
    /// Closes the segment and removes its files. Errors are ignored (Drop never panics); a
    /// failed removal leaves a `rio-segment.vista-*.img` in `/dev/shm`.
    fn drop(&mut self) {
        if let Some(segment) = self.segment.take() {
            let _ = segment.close();
        }
        let _ = rio_cache::remove(
            &self.path,
            &rio_cache::RioOptions::new().cache_dir(CACHE_DIR),
        );
    }
}

struct VistaTxn<'t, 's>(&'t mut ::vista::Transaction<'s>);

impl Txn for VistaTxn<'_, '_> {
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        buf.copy_from_slice(self.0.read(off, buf.len() as u64)?);
        Ok(())
    }

    fn write(&mut self, off: u64, data: &[u8]) -> Result<()> {
        Ok(self.0.write(off, data)?)
    }
}

impl Engine for Vista {
    fn transact(&mut self, body: &mut Body<'_>) -> Result<()> {
        let mut tx = self.segment().begin()?;
        match body(&mut VistaTxn(&mut tx)) {
            Ok(()) => Ok(tx.commit()?),
            Err(e) => {
                tx.abort().context("aborting")?;
                Err(e)
            }
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = self.cache_stats();
        vec![
            ("checkpoints", s.checkpoints),
            ("pages written back", s.pages_written),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_memory_image_is_removed_on_drop() {
        let scratch = tempfile::tempdir().unwrap();
        let layout = Layout::pages(1 << 16, 4096);
        let mut v = Vista::open(
            &layout,
            scratch.path(),
            ::vista::Protection::None,
            ::vista::Writeback::Manual,
        )
        .unwrap();
        v.transact(&mut |t| t.write(10, b"abc")).unwrap();
        let image = v.image_path().unwrap();
        assert!(image.exists(), "{} missing while open", image.display());
        drop(v);
        assert!(!image.exists(), "{} left behind", image.display());
    }
}
