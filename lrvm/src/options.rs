//! Options, modes and region specifications.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// How [`create_log`](crate::create_log) treats an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CreateMode {
    /// Fail with [`Error::LogExists`] if the file exists.
    CreateNew,
    /// Replace whatever is there (any unapplied records in an old log are lost).
    Overwrite,
}

/// Whether a transaction may abort (`begin_transaction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreMode {
    /// Keep an in-memory undo copy of every set range so the transaction can abort.
    Restore,
    /// The caller promises never to abort: no undo copy is made.
    NoRestore,
}

/// How `end_transaction` makes the commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitMode {
    /// Write the redo record (and every buffered one before it) to the log and `fdatasync`
    /// before returning: the commit survives any crash once the call returns.
    Flush,
    /// Leave the redo record in the in-memory log buffer (the window of vulnerability)
    /// until [`Rvm::flush`](crate::Rvm::flush), a later `Flush` commit, or the buffer
    /// filling up. A crash loses a suffix of such commits, never a hole.
    NoFlush,
}

/// The tunable part of the options, returned by `query_options` and taken by `set_options`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tunables {
    /// Fraction of the log's record area in use that starts an epoch truncation in the
    /// background. Default `0.5`, as in CMU RVM. Must be in `(0, 1]`.
    pub truncate_threshold: f64,
    /// Size of the no-flush buffer: when buffered `NoFlush` records reach this many
    /// bytes they are written and synced. Default 64 KiB. Must be between 4 KiB and 1 GiB.
    pub flush_buffer_size: usize,
    /// Read-buffer size for recovery and truncation scans. Default 256 KiB (RVM's
    /// default recovery buffer). Must be between 4 KiB and 1 GiB.
    pub recovery_buffer_size: usize,
    /// Run epoch truncations on a background thread while new transactions commit to the
    /// rest of the log (concurrent forward processing). Default `true`; with `false` an
    /// automatic truncation runs inline in the `end_transaction` that triggered it.
    pub background_truncation: bool,
}

impl Default for Tunables {
    fn default() -> Self {
        Self {
            truncate_threshold: 0.5,
            flush_buffer_size: 64 * 1024,
            recovery_buffer_size: 256 * 1024,
            background_truncation: true,
        }
    }
}

/// The largest flush or recovery buffer: 1 GiB.
const MAX_BUFFER: usize = 1 << 30;

impl Tunables {
    pub(crate) fn validate(&self) -> Result<()> {
        if !(self.truncate_threshold > 0.0 && self.truncate_threshold <= 1.0) {
            return Err(Error::InvalidOption("truncate_threshold must be in (0, 1]"));
        }
        // Both buffers are allocated whole at initialize: a size past memory would abort
        // the process instead of failing.
        if !(4096..=MAX_BUFFER).contains(&self.flush_buffer_size) {
            return Err(Error::InvalidOption(
                "flush_buffer_size must be between 4096 and 1 GiB",
            ));
        }
        if !(4096..=MAX_BUFFER).contains(&self.recovery_buffer_size) {
            return Err(Error::InvalidOption(
                "recovery_buffer_size must be between 4096 and 1 GiB",
            ));
        }
        Ok(())
    }
}

/// Options for [`Rvm::initialize`](crate::Rvm::initialize): the log to use plus the
/// [`Tunables`]. Built with [`Options::new`] and the builder methods.
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) log_path: PathBuf,
    pub(crate) tunables: Tunables,
    pub(crate) emulate_power_loss: bool,
}

impl Options {
    /// Options for the log at `log_path` (made by [`create_log`](crate::create_log)),
    /// with every tunable at its default and `emulate_power_loss` off.
    pub fn new(log_path: impl AsRef<Path>) -> Self {
        Self {
            log_path: log_path.as_ref().to_path_buf(),
            tunables: Tunables::default(),
            emulate_power_loss: false,
        }
    }

    /// Sets [`Tunables::truncate_threshold`].
    #[must_use]
    pub fn truncate_threshold(mut self, fraction: f64) -> Self {
        self.tunables.truncate_threshold = fraction;
        self
    }

    /// Sets [`Tunables::flush_buffer_size`].
    #[must_use]
    pub fn flush_buffer_size(mut self, bytes: usize) -> Self {
        self.tunables.flush_buffer_size = bytes;
        self
    }

    /// Sets [`Tunables::recovery_buffer_size`].
    #[must_use]
    pub fn recovery_buffer_size(mut self, bytes: usize) -> Self {
        self.tunables.recovery_buffer_size = bytes;
        self
    }

    /// Sets [`Tunables::background_truncation`].
    #[must_use]
    pub fn background_truncation(mut self, on: bool) -> Self {
        self.tunables.background_truncation = on;
        self
    }

    /// Replaces all tunables.
    #[must_use]
    pub fn tunables(mut self, tunables: Tunables) -> Self {
        self.tunables = tunables;
        self
    }

    /// For crash testing (default `false`): keep every file write in process memory until
    /// the file is synced, so that a `SIGKILL` loses exactly what a power failure would
    /// lose (the page cache) instead of nothing. Makes a missing `fsync` visible to
    /// process-level crash tests. Slower; never use it in production.
    #[must_use]
    pub fn emulate_power_loss(mut self, on: bool) -> Self {
        self.emulate_power_loss = on;
        self
    }

    /// The log path.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }
}

/// A region to map: `len` bytes at `offset` of the data segment file at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegionSpec {
    pub(crate) path: PathBuf,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl RegionSpec {
    /// `len` bytes starting at byte `offset` of the segment file `path`.
    pub fn new(path: impl AsRef<Path>, offset: u64, len: u64) -> Self {
        Self {
            path: path.as_ref().to_path_buf(),
            offset,
            len,
        }
    }
}

/// How [`Rvm::map`](crate::Rvm::map) treats a missing or short data segment file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MapOptions {
    /// Create the segment file if it does not exist. Default `false`.
    pub create: bool,
    /// Extend the segment file with zeros if it is shorter than `offset + len`. Default
    /// `false`: a short file is [`Error::SegmentTooShort`].
    pub extend: bool,
}

impl MapOptions {
    /// Create a missing file and extend a short one (both on).
    pub fn create_or_extend() -> Self {
        Self {
            create: true,
            extend: true,
        }
    }
}
