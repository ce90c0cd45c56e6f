//! The error type of rio-cache.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in rio-cache.
///
/// Operating-system failures stay [`std::io::Error`]s, wrapped with what was being done.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What rio-cache was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
    /// Another handle, in this process or another, holds the cache for this disk file
    /// (`path` is the disk file), or holds its memory image (`path` is the image: the
    /// disk file was recreated while a cache of it was open).
    #[error("{} is locked by another open cache ({})", path.display(), holder_text(*pid))]
    Locked {
        /// The disk file.
        path: PathBuf,
        /// The process holding the lock, from `/proc/locks`; `None` if it could not be
        /// found (no `/proc`, or the holder let go meanwhile).
        pid: Option<u32>,
    },
    /// The disk file exists but was not created by rio-cache.
    #[error("{} is not a rio-cache disk image: {reason}", path.display())]
    NotRioCache {
        /// The disk file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The disk file was written by a newer, incompatible format version.
    #[error("{} has format version {found}; this build reads version {supported}", path.display())]
    IncompatibleVersion {
        /// The disk file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A rio-cache file is damaged.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The memory image is damaged (its header, its `ready` or `synced` word, or its
    /// length) or of another format version, so it cannot be used; but it may hold
    /// committed data that the disk image lacks, so it is not discarded either. Nothing
    /// was changed. [`crate::RioOptions::discard_image`] opens from the disk image
    /// instead, dropping whatever the image held.
    #[error(
        "memory image {} of {} is damaged ({reason}) and may hold data newer than the \
         disk image; nothing was changed (discard_image starts from the disk image)",
        image.display(),
        path.display()
    )]
    DamagedImage {
        /// The memory image.
        image: PathBuf,
        /// The disk file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A complete memory image of this boot is in the cache directory, but the disk
    /// file does not continue from it: the disk file is missing or empty (truncated, or removed and
    /// created again), or it was replaced by another file (another inode) holding the
    /// checkpoint the image continues. Using the disk file would silently drop
    /// everything the image holds beyond it. Nothing was changed.
    /// [`crate::RioOptions::discard_image`] drops the image and opens the disk file as
    /// it is.
    #[error(
        "memory image {} holds a live cache of {} that cannot be used: {reason}; \
         nothing was changed (discard_image drops the image)",
        image.display(),
        path.display()
    )]
    LiveImage {
        /// The memory image.
        image: PathBuf,
        /// The disk file.
        path: PathBuf,
        /// Why the disk file does not continue from it.
        reason: String,
    },
    /// The disk file holds a cache of a different size than the one requested.
    #[error("{} holds a cache of {found} bytes, but {requested} were requested", path.display())]
    SizeMismatch {
        /// The disk file.
        path: PathBuf,
        /// Its size.
        found: u64,
        /// The size in the options.
        requested: u64,
    },
    /// The cache directory (the memory file system) is missing, not a directory or
    /// not writable.
    #[error("cache directory {}: {reason}", dir.display())]
    CacheDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The memory file system has no room for the memory image.
    #[error("no room for a {len}-byte memory image in {}", dir.display())]
    CacheFull {
        /// The cache directory.
        dir: PathBuf,
        /// The bytes needed.
        len: u64,
    },
    /// [`crate::Protection::Pkey`] was asked for, but this machine cannot give the
    /// process a protection key; the reason says why (no keys in the CPU, not enabled by
    /// the kernel, or all in use).
    #[error("memory protection keys are unavailable: {0}")]
    PkeyUnavailable(#[from] PkeyUnavailable),
    /// An offset range does not lie inside the cache.
    #[error("range {offset}+{len} is outside the cache of {size} bytes")]
    OutOfRange {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
        /// The cache size.
        size: u64,
    },
    /// A checkpoint gave up: updates stayed in progress for the whole checkpoint wait
    /// ([`crate::RioOptions::checkpoint_wait`]). Nothing was written and the cache is
    /// not poisoned; a later checkpoint tries again. An update that never ends (a
    /// transaction leaked with `mem::forget`) makes every checkpoint fail this way.
    #[error("checkpoint gave up after {waited:?}: updates stayed in progress (a leaked or blocked update)")]
    CheckpointBusy {
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// A range is held by this very thread (an update of this thread holds it
    /// exclusively, or only this thread's read guards hold it shared): waiting for it
    /// would be for nothing, so the update gave up at once. Release it first (drop the
    /// read guard, end the other update).
    #[error("range {offset}+{len} is held by this thread (a read guard or another of its updates): waiting would never end")]
    HeldByThisThread {
        /// Start of the range asked for.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A range given as `start..end` ends before it starts. Nothing was written.
    #[error("range {}..{} ends before it starts", .0.start, .0.end)]
    InvertedRange(std::ops::Range<u64>),
    /// An atomic store was asked for at an offset that is not a multiple of 8.
    #[error("offset {offset} is not 8-byte aligned")]
    Misaligned {
        /// The offset.
        offset: u64,
    },
    /// Two windows asked for together overlap.
    #[error("windows {0:?} and {1:?} overlap")]
    Overlap(std::ops::Range<u64>, std::ops::Range<u64>),
    /// The options are invalid.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// An update of a [`crate::SharedCache`] could not lock a range: another update
    /// held it incompatibly for longer than the lock wait. The update keeps what it
    /// holds; end it (and undo what it did) and try again.
    #[error("range {offset}+{len} is locked by another update")]
    Conflict {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// An update of a [`crate::SharedCache`] touched a range inside the claimed region
    /// (see [`crate::SharedCache::with_claims`]) that its own claim does not cover.
    #[error("range {offset}+{len} lies in a claimed region this update does not own")]
    Claimed {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A reader ([`crate::SharedCache::reader`]) was asked to open a range for
    /// writing. Nothing was changed.
    #[error("range {offset}+{len} cannot be changed by a reader")]
    ReadOnly {
        /// Start of the range.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// The journal holds a group member's checkpoint (see [`crate::group`]) and the
    /// coordinator that decides it could not be read: the open refuses rather than
    /// guess, and writes nothing. Make the coordinator readable and open again.
    #[error("{}: a group checkpoint (epoch {epoch}) waits for the decision of coordinator {}, which cannot be read: {reason}", .path.display(), .coordinator.display())]
    GroupUnresolved {
        /// The journal.
        path: PathBuf,
        /// The coordinator it names.
        coordinator: PathBuf,
        /// The group checkpoint's epoch.
        epoch: u64,
        /// Why the coordinator could not be read.
        reason: String,
    },
    /// The cache is *fenced*: it holds changes that must reach the disk together with
    /// other caches' (a group's cross-cache transactions), so it refuses checkpoints of
    /// its own; only a group checkpoint writes it back. Nothing was written.
    #[error("fenced: this cache holds changes that only a group checkpoint may write back")]
    Fenced,
    /// A checkpoint was asked for by a thread that is inside an update of the same
    /// cache: it would wait for that update forever.
    #[error("a checkpoint cannot run while this thread has an update open")]
    InUpdate,
    /// An earlier checkpoint failed to reach the disk. The cache refuses further writes:
    /// after a failed fsync the kernel may have dropped the dirty pages, so retrying
    /// would pretend. Reopen the cache (a warm start writes everything back again).
    #[error("the cache is poisoned by an earlier writeback failure: {0}")]
    Poisoned(String),
    /// [`crate::RioCache::grow`] was asked for a size below the cache's: caches only
    /// grow. Nothing was written.
    #[error("cannot shrink a cache of {len} bytes to {requested}")]
    CannotShrink {
        /// The cache's size.
        len: u64,
        /// The size asked for.
        requested: u64,
    },
    /// [`crate::RioCache::grow`] was asked for more than the largest cache. Nothing was
    /// written.
    #[error("a cache of {requested} bytes is larger than the largest, {max}")]
    TooLarge {
        /// The size asked for.
        requested: u64,
        /// The largest cache.
        max: u64,
    },
}

/// Why memory protection keys cannot be used (see [`crate::pkey_support`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkeyUnavailable {
    /// The CPU has no protection keys (CPUID leaf 7 does not report `PKU`): most AMD
    /// CPUs before Zen 3, Intel client CPUs before Tiger Lake, and virtual CPUs that
    /// hide the feature.
    #[error("this CPU has no memory protection keys (CPUID reports no PKU)")]
    NoCpuSupport,
    /// The CPU has protection keys, but the kernel did not turn them on (CPUID reports
    /// no `OSPKE`): a kernel built without `CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS`, or
    /// booted with `nopku`.
    #[error("this CPU has memory protection keys but the kernel has not enabled them (no OSPKE: built without CONFIG_X86_INTEL_MEMORY_PROTECTION_KEYS, or booted with nopku)")]
    NotEnabledByKernel,
    /// Every protection key is allocated in this process (x86-64 has 15 besides the
    /// default key 0; each open `Pkey` cache holds one).
    #[error("all protection keys of this process are in use (pkey_alloc: no free key)")]
    NoFreeKey,
    /// Protection keys are implemented for x86-64 only.
    #[error("rio-cache uses protection keys on x86-64 only")]
    NotX86_64,
    /// `pkey_alloc` failed for another reason.
    #[error("pkey_alloc failed: {0}")]
    Os(#[source] io::Error),
}

impl Error {
    /// [`Error::Locked`] for `path`, naming the process that holds its lock.
    pub(crate) fn locked(path: &std::path::Path) -> Error {
        Error::Locked {
            path: path.to_owned(),
            pid: crate::inspect::holder(path),
        }
    }
}

/// How a [`Error::Locked`] message names the lock's holder.
pub(crate) fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(p) if p == std::process::id() => format!("held by this process, {p}"),
        Some(p) => format!("held by process {p}"),
        None => "its holder could not be found".into(),
    }
}

/// A `Result` with rio-cache's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    #[inline]
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}
