//! The only module with `unsafe`: process control (fork, kill, wait, pipes, poll,
//! `_exit`) and the deliberate wild store of the `wild` mode.
//!
//! Process control goes through `nix`, whose wrappers are safe, except for the two
//! calls nix has no safe form of: `fork` (unsafe in nix too, see [`fork`]) and `_exit`
//! (absent from nix). The wild store is unsafe by nature.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::time::Duration;

use nix::sys::signal::{self, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;

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
    // nix keeps `fork` unsafe: after a fork in a multi-threaded process the child may
    // only call async-signal-safe functions, which no type can express.
    // crash-sim forks only from its single-threaded campaign loop, which holds no engine
    // handle while it forks; the exec mode starts programs with `std::process::Command`
    // and never forks itself. A caller in a multi-threaded process (a doctest harness,
    // a user's test binary) must uphold the same: its other threads must not be in the
    // middle of an allocation or hold an engine open when a campaign starts.
    // SAFETY: no other thread of this process holds a lock (allocator, stdio, an
    // engine's) the child will take, as the function's contract requires (above).
    match unsafe { nix::unistd::fork() }.map_err(io::Error::from)? {
        nix::unistd::ForkResult::Child => Ok(Fork::Child),
        nix::unistd::ForkResult::Parent { child } => Ok(Fork::Parent(child.as_raw())),
    }
}

/// A pipe: (read end, write end), both close-on-exec.
///
/// # Errors
/// The `pipe2` error.
pub fn pipe() -> io::Result<(File, File)> {
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    Ok((File::from(r), File::from(w)))
}

/// Sends `SIGKILL` to `pid`.
///
/// # Errors
/// The `kill` error (`ESRCH` cannot happen for an unreaped child).
pub fn kill(pid: libc::pid_t) -> io::Result<()> {
    // `pid` is our own child that has not been reaped, so it cannot have been reused.
    Ok(signal::kill(Pid::from_raw(pid), Signal::SIGKILL)?)
}

/// Sends `SIGKILL` to every process of the process group `pgid` (a child started as the
/// leader of its own group, and whatever it started).
///
/// # Errors
/// The `kill` error; `ESRCH` (the group is gone) is not one.
pub fn kill_group(pgid: libc::pid_t) -> io::Result<()> {
    match signal::killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Waits for `pid` to end and reaps it.
///
/// # Errors
/// The `waitpid` error.
pub fn wait(pid: libc::pid_t) -> io::Result<Exit> {
    loop {
        match waitpid(Pid::from_raw(pid), None) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Exit::Code(code)),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Exit::Signal(sig as i32)),
            // Stops and continues are not ends (no flags ask for them; be safe anyway).
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reaps `pid` if it has ended; `None` if it is still running.
///
/// # Errors
/// The `waitpid` error.
pub fn try_wait(pid: libc::pid_t) -> io::Result<Option<Exit>> {
    use nix::sys::wait::WaitPidFlag;
    loop {
        match waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(Some(Exit::Code(code))),
            Ok(WaitStatus::Signaled(_, sig, _)) => return Ok(Some(Exit::Signal(sig as i32))),
            Ok(WaitStatus::StillAlive) => return Ok(None),
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Ends the child at once: no destructors, no atexit handlers, no buffered output, as
/// a crash would leave things (but with an exit code the parent can read).
pub fn exit_now(code: i32) -> ! {
    // nix has no `_exit`, and `std::process::exit` runs atexit handlers and flushes
    // stdio, which a crashing child must not do; libc declares every function unsafe.
    // SAFETY: _exit has no preconditions and does not return.
    unsafe { libc::_exit(code) }
}

/// Waits until `file` is readable (or its writer is gone), at most `timeout`. Returns
/// `false` on timeout.
///
/// # Errors
/// The `poll` error.
pub fn readable(file: &File, timeout: Duration) -> io::Result<bool> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let ms = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
    loop {
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, ms) {
            Ok(n) => return Ok(n > 0),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
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
    // elides nor moves the store. No live Rust reference covers the engine's bytes: its
    // slices are reborrowed after this returns. A store into the worker's own memory (the
    // "anywhere" model) is deliberate corruption of a throwaway process (see above).
    // SAFETY: `p` lies in memory the child has mapped (checked above), so the store
    // either lands or faults with SIGSEGV, the outcome being measured.
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
