//! The only module with `unsafe`: the `flock` system call (std's `File::try_lock`, stable
//! since Rust 1.89, takes the same lock).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::unix::io::AsRawFd;

/// Takes a non-blocking exclusive `flock` on `file`. Returns `Ok(false)` if another open
/// file description holds it. The lock lives as long as the open file description, so it
/// is released when `file` (and every clone of it) is closed.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: `flock` only reads its integer arguments; the descriptor is valid because
    // `file` is borrowed for the duration of the call.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}
