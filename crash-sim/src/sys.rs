//! The only module with `unsafe`: process control (fork, kill, wait, pipes, `_exit`)
//! and the deliberate wild store of the `wild` mode.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::time::Duration;

/// How a child process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// `_exit(code)`.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Exit::Code(c) => write!(f, "exit code {c}"),
            Exit::Signal(s) => write!(f, "signal {s}"),
        }
    }
}

/// The result of [`fork`].
#[derive(Debug)]
pub enum Fork {
    /// In the parent: the child's pid.
    Parent(libc::pid_t),
    /// In the child.
    Child,
}

/// Forks the process.
///
/// The caller must be the only thread that could be holding a lock the child needs
/// (crash-sim's campaign loop runs on one thread and holds no engine handle while it
/// forks; glibc's allocator re-initialises its locks in the child).
///
/// # Errors
/// The `fork` error.
pub fn fork() -> io::Result<Fork> {
    // SAFETY: fork has no memory-safety preconditions of its own. The child only runs
    // code that is sound after fork in a process whose other threads (if any) hold no
    // lock it takes: crash-sim forks from its single-threaded campaign loop.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Fork::Child),
        pid => Ok(Fork::Parent(pid)),
    }
}

/// A pipe: (read end, write end), both close-on-exec.
///
/// # Errors
/// The `pipe2` error.
pub fn pipe() -> io::Result<(File, File)> {
    let mut fds = [0i32; 2];
    // SAFETY: `fds` is a valid, writable array of two descriptors, as pipe2 requires.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    Ok((File::from(r), File::from(w)))
}

/// Sends `SIGKILL` to `pid`.
///
/// # Errors
/// The `kill` error (`ESRCH` cannot happen for an unreaped child).
pub fn kill(pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: kill only reads its integer arguments. `pid` is our own child that has not
    // been reaped, so the pid cannot have been reused by another process.
    if unsafe { libc::kill(pid, libc::SIGKILL) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Waits for `pid` to end and reaps it.
///
/// # Errors
/// The `waitpid` error.
pub fn wait(pid: libc::pid_t) -> io::Result<Exit> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid out-pointer for the duration of the call.
        let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
        if rc == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    if libc::WIFSIGNALED(status) {
        Ok(Exit::Signal(libc::WTERMSIG(status)))
    } else {
        Ok(Exit::Code(libc::WEXITSTATUS(status)))
    }
}

/// Ends the child at once: no destructors, no atexit handlers, no buffered output, as
/// a crash would leave things (but with an exit code the parent can read).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// Waits until `file` is readable (or its writer is gone), at most `timeout`. Returns
/// `false` on timeout.
///
/// # Errors
/// The `poll` error.
pub fn readable(file: &File, timeout: Duration) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    loop {
        // SAFETY: `pfd` is one valid pollfd, and nfds says one.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sleeps for `micros` microseconds (0: not at all).
pub fn sleep_micros(micros: u64) {
    if micros > 0 {
        std::thread::sleep(Duration::from_micros(micros));
    }
}

/// A wild store: what a buggy program does with a stray pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WildStore {
    /// Store `value` at the address.
    Write(u8),
    /// Flip bit `n` (0..8) of the byte at the address.
    FlipBit(u32),
}

/// Performs a wild store at address `addr`, bypassing every engine API, after checking
/// that `addr` lies in `mapped` (memory the engine mapped or allocated, or, in the
/// "anywhere" fault model, the area of `/proc/self/maps` the address was drawn from).
///
/// Only the `wild` mode's worker calls this, in a disposable child process, between
/// transactions, when it holds no reference to the engine's bytes at `addr` (it took
/// the address from a slice that is dead by now). The store breaks the engine's
/// invariants on purpose: that is the experiment. In the "anywhere" model it may also
/// hit the worker's own heap or statics, which Rust code of the worker may hold
/// references to: the worker's behaviour after that is part of what is measured, and
/// the parent trusts nothing of it but the files it leaves and the messages it sent.
pub(crate) fn wild_store(addr: usize, mapped: std::ops::Range<usize>, what: WildStore) {
    assert!(
        mapped.contains(&addr),
        "wild store outside the engine's memory"
    );
    // An integer-to-pointer cast: no Rust borrow is being written through.
    let p = addr as *mut u8;
    // This deliberately performs a wild store, in a forked worker child that is thrown
    // away afterwards, to test the engine's protection. Volatile, so the compiler neither
    // elides nor moves the store.
    // SAFETY: `p` lies in memory the child has mapped (checked above), so the store
    // either lands or faults with SIGSEGV (the outcome being measured); no live Rust
    // reference covers the engine's bytes: its slices are reborrowed after this
    // returns. A store into the worker's own memory (the "anywhere" model) is
    // deliberate corruption of a throwaway process, as documented above.
    unsafe {
        match what {
            WildStore::Write(v) => std::ptr::write_volatile(p, v),
            WildStore::FlipBit(n) => {
                let old = std::ptr::read_volatile(p);
                std::ptr::write_volatile(p, old ^ (1 << (n % 8)));
            }
        }
    }
}
