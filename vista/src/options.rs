//! Options for opening a segment.

use std::path::{Path, PathBuf};
use std::time::Duration;

pub use rio_cache::{Protection, Writeback};

/// The default user space: 64 MiB.
pub const DEFAULT_SIZE: u64 = 64 << 20;
/// The default undo log capacity per lane: 1 MiB.
pub const DEFAULT_UNDO_LOG_SIZE: u64 = 1 << 20;
/// The fewest undo-log lanes a new segment gets by default: 4, or the number of CPUs
/// if that is more (see [`Options::lanes`]).
pub const DEFAULT_LANES: u32 = 4;
/// The most lanes the format allows.
pub const MAX_LANES: u32 = 1024;
/// How long a transaction waits, by default, for a range another transaction holds
/// before [`crate::Error::Conflict`]: 2 ms.
pub const DEFAULT_LOCK_WAIT: Duration = rio_cache::DEFAULT_LOCK_WAIT;
/// How long `begin` waits, by default, for a free undo lane before
/// [`crate::Error::LanesBusy`]: 1 s.
pub const DEFAULT_LANE_WAIT: Duration = Duration::from_secs(1);
/// How many times, by default, [`crate::Segment::transaction`] runs a transaction again
/// after a conflict: 1000.
pub const DEFAULT_RETRIES: u32 = 1000;

/// Options for [`crate::Segment::open`].
///
/// `size`, `undo_log_size` and `lanes` shape a *new* segment; an existing segment keeps
/// the shape it was created with (see [`crate::Segment::undo_log_capacity`]).
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) size: u64,
    pub(crate) undo_log_size: u64,
    pub(crate) lanes: u32,
    pub(crate) lock_wait: Duration,
    pub(crate) lane_wait: Duration,
    pub(crate) retries: u32,
    pub(crate) protection: Protection,
    pub(crate) writeback: Writeback,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) discard_image: bool,
    pub(crate) record_writes: Option<PathBuf>,
    pub(crate) checkpoint_wait: Duration,
    pub(crate) faults: rio_cache::Faults,
}

impl Default for Options {
    /// 64 MiB of user space, a 1 MiB undo log per lane, as many lanes as CPUs but at
    /// least [`DEFAULT_LANES`], [`DEFAULT_LOCK_WAIT`], [`DEFAULT_LANE_WAIT`],
    /// [`DEFAULT_RETRIES`], [`Protection::Auto`], rio-cache's default writeback (every
    /// 5 s or 16 MiB dirty), memory image in `$RIO_CACHE_DIR` or `/dev/shm`, memory image
    /// not discarded.
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        Options {
            size: DEFAULT_SIZE,
            undo_log_size: DEFAULT_UNDO_LOG_SIZE,
            lanes: u32::try_from(cpus)
                .unwrap_or(MAX_LANES)
                .clamp(DEFAULT_LANES, MAX_LANES),
            lock_wait: DEFAULT_LOCK_WAIT,
            lane_wait: DEFAULT_LANE_WAIT,
            retries: DEFAULT_RETRIES,
            protection: Protection::Auto,
            writeback: Writeback::default(),
            cache_dir: None,
            discard_image: false,
            record_writes: None,
            checkpoint_wait: rio_cache::DEFAULT_CHECKPOINT_WAIT,
            faults: rio_cache::Faults::none(),
        }
    }
}

impl Options {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of user space in a new segment (default 64 MiB).
    #[must_use]
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = bytes;
        self
    }

    /// Undo log capacity of each lane in a new segment (default 1 MiB). A transaction's
    /// before-images, each with a 24-byte record header and padded to 8 bytes, must fit
    /// in it. Lanes are whole pages, so the capacity is rounded up: the lane is this
    /// plus its 64-byte header, rounded up to 4096 bytes (the default gives 1,052,608
    /// bytes; see [`crate::Segment::undo_log_capacity`]).
    #[must_use]
    pub fn undo_log_size(mut self, bytes: u64) -> Self {
        self.undo_log_size = bytes;
        self
    }

    /// Undo-log lanes in a new segment, between 1 and [`MAX_LANES`] (default: the
    /// number of CPUs, at least [`DEFAULT_LANES`]). Each running transaction owns a
    /// lane, so this bounds how many run at once; more wait in `begin`.
    #[must_use]
    pub fn lanes(mut self, lanes: u32) -> Self {
        self.lanes = lanes;
        self
    }

    /// How long a transaction waits for a range that another transaction holds before
    /// the call fails with [`crate::Error::Conflict`] (default [`DEFAULT_LOCK_WAIT`]).
    /// Zero: only a short spin. Upgrading a range the transaction read to a write waits
    /// the same way for the other readers to end; two transactions that would wait for
    /// each other (two upgraders of one range) are found at once, and one of them fails
    /// with [`crate::Error::Conflict`] instead of waiting. `Duration::MAX`: no limit (a
    /// century, [`rio_cache::LONGEST_WAIT`]).
    #[must_use]
    pub fn lock_wait(mut self, wait: Duration) -> Self {
        self.lock_wait = wait;
        self
    }

    /// How long `begin` waits for a free undo lane before [`crate::Error::LanesBusy`]
    /// (default [`DEFAULT_LANE_WAIT`]; `Duration::MAX`: no limit).
    #[must_use]
    pub fn lane_wait(mut self, wait: Duration) -> Self {
        self.lane_wait = wait;
        self
    }

    /// How many times [`crate::Segment::transaction`] runs a transaction again after a
    /// conflict, and [`crate::Segment::read`] retries a locked range (default
    /// [`DEFAULT_RETRIES`]). A transaction's retries spin briefly, then sleep a random
    /// pause that grows to about a millisecond, so the default budget spans about a
    /// second of contention.
    #[must_use]
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The guard against wild stores (default [`Protection::Auto`]).
    #[must_use]
    pub fn protection(mut self, protection: Protection) -> Self {
        self.protection = protection;
        self
    }

    /// When committed data is written back to disk (default [`Writeback::default`]).
    #[must_use]
    pub fn writeback(mut self, writeback: Writeback) -> Self {
        self.writeback = writeback;
        self
    }

    /// Where the memory image lives (default `$RIO_CACHE_DIR`, else `/dev/shm`).
    #[must_use]
    pub fn cache_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cache_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Whether the open discards the memory image and starts from the segment file
    /// (default `false`): everything committed since the last checkpoint is lost.
    ///
    /// Without it, an image that cannot be used but may hold committed transactions
    /// the file lacks refuses the open ([`crate::Error::DamagedImage`],
    /// [`crate::Error::LiveImage`]). With it, the image is never used, not even a
    /// usable one: the segment opens cold from its file (an empty file makes a new
    /// segment). This is how to proceed after such a refusal, or after an undo log in
    /// the image was reported damaged ([`crate::Error::Corrupt`]), once what the image
    /// held is known to be expendable (`vista recover --discard-image`).
    #[must_use]
    pub fn discard_image(mut self, yes: bool) -> Self {
        self.discard_image = yes;
        self
    }

    /// For crash tests: record the disk image's and journal's writes in `dir`, so that
    /// `rio_cache::power::cut` can emulate a power loss (see
    /// [`rio_cache::RioOptions::record_writes`]; pass the cut `RioOptions` with the same
    /// cache directory and this directory). Off by default.
    #[must_use]
    pub fn record_writes(mut self, dir: impl AsRef<Path>) -> Self {
        self.record_writes = Some(dir.as_ref().to_owned());
        self
    }

    /// How long a checkpoint (also the one at close, and a background one) waits for
    /// the transactions in progress to end before it gives up with
    /// [`crate::Error::CheckpointBusy`] (default
    /// [`rio_cache::DEFAULT_CHECKPOINT_WAIT`], 10 s).
    #[must_use]
    pub fn checkpoint_wait(mut self, wait: Duration) -> Self {
        self.checkpoint_wait = wait;
        self
    }

    /// For tests: make chosen I/O operations of the segment fail (see
    /// [`rio_cache::Faults`]). Off by default.
    #[must_use]
    pub fn faults(mut self, faults: rio_cache::Faults) -> Self {
        self.faults = faults;
        self
    }

    pub(crate) fn rio(&self, total: u64) -> rio_cache::RioOptions {
        let mut o = rio_cache::RioOptions::new()
            .size(total)
            .checkpoint_wait(self.checkpoint_wait)
            .faults(self.faults.clone())
            .discard_image(self.discard_image)
            .protection(self.protection)
            .writeback(self.writeback);
        if let Some(dir) = &self.cache_dir {
            o = o.cache_dir(dir);
        }
        if let Some(dir) = &self.record_writes {
            o = o.record_writes(dir);
        }
        o
    }
}
