//! Injected I/O failures: a test hook that makes one chosen system call of a cache fail.
//!
//! Every write, sync, truncate, preallocation, map, protection change and read a cache
//! makes passes [`Faults::check`] first. A cache opened without a plan (the default) pays one
//! branch on a `None`. With [`RioOptions::faults`](crate::RioOptions::faults), each such
//! operation is numbered in the order the cache makes it, and the one a test chose
//! fails with the error number it chose (`ENOSPC`, `EIO`, `EFBIG`, ...) instead of
//! reaching the kernel, as if the kernel had refused it. A test first runs its scenario
//! with a counting plan to learn how many operations it makes, then runs it once per
//! operation and error, failing only that one: the way SQLite's I/O error tests walk
//! every call.
//!
//! The plan is shared by clones of the options, so it follows a cache through open,
//! checkpoints (also the writeback thread's), grows, recovery and close.
//!
//! A plan can also hold one chosen operation back ([`Faults::pause_at`]): the thread
//! that makes it waits before the call until the test resumes it, so a test can act while
//! a checkpoint is in the middle of its writes (and show, say, that transactions do not
//! wait for them).

use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoOp {
    /// `pwrite`.
    Write,
    /// `fsync` or `fdatasync`.
    Sync,
    /// `ftruncate`: growing or shrinking a file.
    Truncate,
    /// `posix_fallocate`: reserving a memory image's pages.
    Allocate,
    /// `mmap`.
    Map,
    /// `mprotect`.
    Protect,
    /// `pread`, or the read side of a kernel copy (`sendfile`): of a header, a journal,
    /// the other slot, the memory image, a coordinator.
    Read,
}

/// Which file an operation is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoFile {
    /// The disk image (the segment file).
    Disk,
    /// The checkpoint journal.
    Journal,
    /// The memory image.
    Image,
    /// A directory (its `fsync`).
    Directory,
    /// A group's coordinator file (see [`crate::group`]).
    Coordinator,
}

/// One operation a cache made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IoCall {
    /// What it did.
    pub op: IoOp,
    /// On which file.
    pub file: IoFile,
}

impl fmt::Display for IoCall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?}", self.op, self.file)
    }
}

/// A plan of injected failures, shared by every clone (see the module docs).
///
/// ```
/// use rio_cache::{Faults, RioCache, RioOptions, Writeback};
/// let dir = tempfile::tempdir()?;
/// let opts = |faults: &Faults| {
///     RioOptions::new()
///         .size(1 << 16)
///         .writeback(Writeback::Manual)
///         .cache_dir(dir.path())
///         .faults(faults.clone())
/// };
/// // Count the operations of an open and a checkpoint.
/// let counting = Faults::counting();
/// let mut cache = RioCache::open(dir.path().join("a"), &opts(&counting))?;
/// cache.window(0, 1)?[0] = 1;
/// cache.checkpoint()?;
/// let n = counting.count();
/// assert!(n > 0);
/// // Fail the last one (the checkpoint's) with ENOSPC.
/// let faults = Faults::counting();
/// faults.fail_at(n - 1, libc::ENOSPC);
/// let mut cache = RioCache::open(dir.path().join("b"), &opts(&faults))?;
/// cache.window(0, 1)?[0] = 1;
/// assert!(cache.checkpoint().is_err());
/// assert_eq!(faults.failed().map(|(_, e)| e), Some(libc::ENOSPC));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct Faults(Option<Arc<Plan>>);

#[derive(Debug)]
struct Plan {
    /// Operations seen so far.
    seen: AtomicU64,
    /// The number of the operation to fail (`u64::MAX`: none).
    fail_at: AtomicU64,
    /// Fail every operation from `fail_at` on, not only that one.
    sticky: AtomicBool,
    errno: AtomicI32,
    /// Every operation seen, in order.
    calls: Mutex<Vec<IoCall>>,
    /// The operation that failed, with its error number.
    failed: Mutex<Option<(IoCall, i32)>>,
    /// The number of the operation to hold back (`u64::MAX`: none).
    pause_at: AtomicU64,
    pause: Mutex<Pause>,
    /// Signalled when a thread is held, and when the test resumes it.
    paused: Condvar,
}

/// The state of [`Faults::pause_at`]'s hold.
#[derive(Debug, Default)]
struct Pause {
    /// The operation held back, while its thread waits.
    held: Option<IoCall>,
    /// The test has resumed it (or never armed it).
    resumed: bool,
}

impl Faults {
    /// No plan: nothing is counted or failed (the default).
    pub fn none() -> Faults {
        Faults(None)
    }

    /// A plan that counts operations and fails none until told to.
    pub fn counting() -> Faults {
        Faults(Some(Arc::new(Plan {
            seen: AtomicU64::new(0),
            fail_at: AtomicU64::new(u64::MAX),
            sticky: AtomicBool::new(false),
            errno: AtomicI32::new(0),
            calls: Mutex::new(Vec::new()),
            failed: Mutex::new(None),
            pause_at: AtomicU64::new(u64::MAX),
            pause: Mutex::new(Pause::default()),
            paused: Condvar::new(),
        })))
    }

    /// Holds operation number `n` (counting from 0 since the plan was made) back: the
    /// thread that makes it waits, before the call, until [`Faults::resume`]; then the
    /// call is made (or failed, if the plan says so). Does nothing without a plan.
    pub fn pause_at(&self, n: u64) {
        if let Some(p) = &self.0 {
            *p.pause.lock().unwrap_or_else(PoisonError::into_inner) = Pause::default();
            p.pause_at.store(n, Ordering::SeqCst);
        }
    }

    /// Waits up to `timeout` for a thread to be held by [`Faults::pause_at`]; the
    /// operation it holds, if one is.
    pub fn wait_paused(&self, timeout: Duration) -> Option<IoCall> {
        let p = self.0.as_ref()?;
        let deadline = crate::options::deadline_after(timeout);
        let mut st = p.pause.lock().unwrap_or_else(PoisonError::into_inner);
        while st.held.is_none() && !st.resumed {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            st = p
                .paused
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        st.held
    }

    /// Lets the operation held by [`Faults::pause_at`] go on (or, if it has not been
    /// reached yet, lets it pass without waiting).
    pub fn resume(&self) {
        if let Some(p) = &self.0 {
            p.pause
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .resumed = true;
            p.paused.notify_all();
        }
    }

    /// Fails operation number `n` (counting from 0 since the plan was made) with
    /// `errno`; the operations after it succeed. Does nothing without a plan.
    pub fn fail_at(&self, n: u64, errno: i32) {
        self.arm(n, errno, false);
    }

    /// Fails operation number `n` and every operation after it with `errno` (a disk
    /// that stays full). Does nothing without a plan.
    pub fn fail_from(&self, n: u64, errno: i32) {
        self.arm(n, errno, true);
    }

    /// Fails nothing more from now on.
    pub fn disarm(&self) {
        if let Some(p) = &self.0 {
            p.fail_at.store(u64::MAX, Ordering::SeqCst);
        }
    }

    fn arm(&self, n: u64, errno: i32, sticky: bool) {
        if let Some(p) = &self.0 {
            p.errno.store(errno, Ordering::SeqCst);
            p.sticky.store(sticky, Ordering::SeqCst);
            p.fail_at.store(n, Ordering::SeqCst);
        }
    }

    /// Operations seen so far.
    pub fn count(&self) -> u64 {
        self.0.as_ref().map_or(0, |p| p.seen.load(Ordering::SeqCst))
    }

    /// Every operation seen so far, in order.
    pub fn calls(&self) -> Vec<IoCall> {
        self.0.as_ref().map_or_else(Vec::new, |p| {
            p.calls
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .clone()
        })
    }

    /// The first operation that was failed, with its error number.
    pub fn failed(&self) -> Option<(IoCall, i32)> {
        self.0.as_ref().and_then(|p| {
            *p.failed
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
    }

    /// Counts an operation about to be made, and fails it if the plan says so.
    ///
    /// # Errors
    /// The planned error, as the kernel would have returned it.
    #[inline]
    pub(crate) fn check(&self, op: IoOp, file: IoFile) -> io::Result<()> {
        match &self.0 {
            None => Ok(()),
            Some(p) => p.check(IoCall { op, file }),
        }
    }
}

impl Plan {
    #[cold]
    fn check(&self, call: IoCall) -> io::Result<()> {
        let mut calls = self
            .calls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = self.seen.fetch_add(1, Ordering::SeqCst);
        calls.push(call);
        drop(calls);
        if n == self.pause_at.load(Ordering::SeqCst) {
            let mut st = self.pause.lock().unwrap_or_else(PoisonError::into_inner);
            st.held = Some(call);
            self.paused.notify_all();
            while !st.resumed {
                st = self.paused.wait(st).unwrap_or_else(PoisonError::into_inner);
            }
            st.held = None;
        }
        let at = self.fail_at.load(Ordering::SeqCst);
        let hit = n == at || (n > at && self.sticky.load(Ordering::SeqCst));
        if !hit {
            return Ok(());
        }
        let errno = self.errno.load(Ordering::SeqCst);
        let mut failed = self
            .failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failed.is_none() {
            *failed = Some((call, errno));
        }
        Err(io::Error::from_raw_os_error(errno))
    }
}
