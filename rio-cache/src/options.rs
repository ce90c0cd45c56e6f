//! Options for opening a cache.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// The environment variable that overrides the default cache directory (`/dev/shm`).
/// An explicit [`RioOptions::cache_dir`] wins over it.
pub const CACHE_DIR_ENV: &str = "RIO_CACHE_DIR";

/// The default cache directory: Linux's memory file system.
pub const DEFAULT_CACHE_DIR: &str = "/dev/shm";

/// How the mapped memory is guarded against wild stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protection {
    /// No guard: the mapping is always writable. Fastest; a wild store corrupts data.
    None,
    /// `mprotect`: the mapping is read-only; a write window makes its pages writable
    /// (reference-counted per page) and read-only again when it closes. Several
    /// microseconds per window. While a window is open its pages are writable through
    /// every pointer, not just the window's.
    Mprotect,
    /// Memory protection keys: reads go through a read-only mapping; the writable
    /// mapping is tagged with a key that the thread's PKRU register denies; a write
    /// window flips PKRU (tens of nanoseconds). Needs a CPU with `pku` and a kernel
    /// with `ospke`. The strongest mode: the write mapping is writable only to the
    /// thread with an update open, only while it is open.
    Pkey,
    /// A W^X dual mapping, as JIT compilers use: the mapping the program reads (every
    /// address [`crate::RioCache::read`] and [`crate::RioCache::as_slice`] hand out) is
    /// read-only, and writes go through a second, writable mapping of the same memory
    /// image placed at a random address (about 34 bits of entropy, independent of
    /// where the public mapping is). No system call per window: a transaction costs
    /// about what it costs without protection.
    ///
    /// What it stops: a stray store through any address derived from the public
    /// mapping (a buffer overrun, a stale pointer into the data) faults with
    /// `SIGSEGV`, whether or not a window is open. What it does not stop: a stray store
    /// that happens to land in the private alias, which is writable at all times (a
    /// store to a random address hits it as often as the public mapping, since both
    /// have the same size), or code that reads the alias's address from
    /// `/proc/self/maps` or from the cache's own heap state. That is weaker than Rio,
    /// whose memory was writable only for the instant of a legitimate write.
    Alias,
    /// The strongest mode that is cheap on this machine: `Pkey` where the CPU and
    /// kernel support it (`pkey_alloc` succeeds), else `Alias`. `Mprotect` is never
    /// chosen automatically: it costs several microseconds per transaction.
    #[default]
    Auto,
}

/// When dirty pages are written back to the disk image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writeback {
    /// Only when [`crate::RioCache::checkpoint`] is called (and at close).
    Manual,
    /// A background thread checkpoints every `interval`, or sooner when `dirty_bytes`
    /// of pages are dirty, but paced: such an early checkpoint starts no sooner after
    /// the last one ended than fifteen times that one's duration, so checkpoints take at
    /// most about a sixteenth of the time however fast pages are dirtied (the dirty set
    /// grows past `dirty_bytes` meanwhile).
    Background {
        /// The longest time between checkpoints while pages are dirty (never delayed by
        /// the pacing). At most [`LONGEST_WAIT`]: longer, up to `Duration::MAX`, is
        /// taken as that. At least [`SHORTEST_INTERVAL`]: shorter, down to zero, is
        /// taken as that (zero would keep the thread spinning).
        interval: Duration,
        /// Dirty bytes that trigger an early (paced) checkpoint.
        dirty_bytes: u64,
    },
}

impl Default for Writeback {
    /// A checkpoint every 5 seconds, or as soon as 16 MiB are dirty (paced).
    fn default() -> Self {
        Writeback::Background {
            interval: Duration::from_secs(5),
            dirty_bytes: 16 << 20,
        }
    }
}

/// The shortest writeback interval (see [`Writeback::Background`]): 1 ms.
pub const SHORTEST_INTERVAL: Duration = Duration::from_millis(1);

/// The longest wait any option stands for (a century): a longer one, up to
/// `Duration::MAX`, means "no limit" and is taken as this (an `Instant` cannot hold
/// `now + Duration::MAX`). It applies to the lock, lane and checkpoint waits and to the
/// writeback interval.
pub const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// The instant `wait` from now, a wait longer than [`LONGEST_WAIT`] taken as that.
pub fn deadline_after(wait: Duration) -> std::time::Instant {
    std::time::Instant::now() + wait.min(LONGEST_WAIT)
}

/// How long a checkpoint waits, by default, for the updates in progress to end (see
/// [`RioOptions::checkpoint_wait`]).
pub const DEFAULT_CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Options for [`crate::RioCache::open`].
#[derive(Debug, Clone)]
pub struct RioOptions {
    pub(crate) size: u64,
    pub(crate) cache_dir: Option<PathBuf>,
    pub(crate) protection: Protection,
    pub(crate) writeback: Writeback,
    pub(crate) checkpoint_on_close: bool,
    pub(crate) discard_image: bool,
    pub(crate) record_writes: Option<PathBuf>,
    pub(crate) faults: crate::Faults,
    pub(crate) checkpoint_wait: std::time::Duration,
}

impl Default for RioOptions {
    /// 64 MiB, cache directory from `RIO_CACHE_DIR` or `/dev/shm`, [`Protection::Auto`],
    /// [`Writeback::default`], checkpoint on close, memory image not discarded, no write recording.
    fn default() -> Self {
        RioOptions {
            size: 64 << 20,
            cache_dir: None,
            protection: Protection::Auto,
            writeback: Writeback::default(),
            checkpoint_on_close: true,
            discard_image: false,
            record_writes: None,
            faults: crate::Faults::none(),
            checkpoint_wait: DEFAULT_CHECKPOINT_WAIT,
        }
    }
}

impl RioOptions {
    /// The default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes of cached data (default 64 MiB). An existing cache must have this size.
    #[must_use]
    pub fn size(mut self, bytes: u64) -> Self {
        self.size = bytes;
        self
    }

    /// The directory of the memory image: it must be on a memory file system for the
    /// image to be memory (default: `$RIO_CACHE_DIR`, else `/dev/shm`).
    #[must_use]
    pub fn cache_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.cache_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// The guard against wild stores (default [`Protection::Auto`]).
    #[must_use]
    pub fn protection(mut self, protection: Protection) -> Self {
        self.protection = protection;
        self
    }

    /// How long a checkpoint waits for the updates in progress to end before it gives
    /// up with [`crate::Error::CheckpointBusy`] (default [`DEFAULT_CHECKPOINT_WAIT`]).
    /// Updates normally last microseconds; one that is still running after this long
    /// was leaked (`mem::forget`) or waits for something the checkpoint holds up.
    #[must_use]
    pub fn checkpoint_wait(mut self, wait: std::time::Duration) -> Self {
        self.checkpoint_wait = wait;
        self
    }

    /// Injected I/O failures, for tests (default: none). See [`crate::Faults`].
    #[must_use]
    pub fn faults(mut self, faults: crate::Faults) -> Self {
        self.faults = faults;
        self
    }

    /// The writeback policy (default [`Writeback::default`]).
    #[must_use]
    pub fn writeback(mut self, writeback: Writeback) -> Self {
        self.writeback = writeback;
        self
    }

    /// Whether dropping or closing the cache takes a final checkpoint (default `true`).
    /// Without it, data written since the last checkpoint lives only in the memory
    /// image until the next open.
    #[must_use]
    pub fn checkpoint_on_close(mut self, yes: bool) -> Self {
        self.checkpoint_on_close = yes;
        self
    }

    /// Whether the open discards the memory image and starts from the disk image
    /// (default `false`). Without it, an image that may hold committed data the disk
    /// image lacks but cannot be used (a damaged one, or one whose disk file is empty
    /// or was replaced) refuses the open with [`crate::Error::DamagedImage`] or
    /// [`crate::Error::LiveImage`]. With it, the open never uses the image, not even a
    /// usable one ([`crate::ColdReason::Discarded`]): it starts cold from the disk image
    /// (or, for an empty disk file, creates a new cache), and everything written since
    /// the disk image's last checkpoint is lost. This is the explicit way to proceed
    /// after such a refusal (a recovery tool's `--discard-image`); the image is replaced
    /// only once the open has validated everything else.
    #[must_use]
    pub fn discard_image(mut self, yes: bool) -> Self {
        self.discard_image = yes;
        self
    }

    /// For crash tests: record every write and sync of the disk image and the journal in
    /// a write log in `dir` (created by the open if absent; best on a memory file
    /// system, beside the memory image), so that [`crate::power::cut`] can later rebuild
    /// the two files as a power loss could leave them. Off by default: each write then
    /// costs a read of the bytes it replaces and an append to the log. Reopening with
    /// the same directory continues the log, so writes a killed process left unsynced
    /// stay unsynced until a sync or a cut.
    #[must_use]
    pub fn record_writes(mut self, dir: impl AsRef<Path>) -> Self {
        self.record_writes = Some(dir.as_ref().to_owned());
        self
    }

    /// The cache directory these options resolve to.
    pub fn resolved_cache_dir(&self) -> PathBuf {
        if let Some(dir) = &self.cache_dir {
            return dir.clone();
        }
        match std::env::var_os(CACHE_DIR_ENV) {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(DEFAULT_CACHE_DIR),
        }
    }

    /// The configured size in bytes.
    pub fn get_size(&self) -> u64 {
        self.size
    }

    /// The configured protection.
    pub fn get_protection(&self) -> Protection {
        self.protection
    }
}
