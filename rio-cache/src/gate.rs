//! The checkpoint gate: updates pass it shared, a checkpoint's copy closes it.
//!
//! An update *enters* the gate when it starts and *leaves* when it ends; a checkpoint
//! *closes* it, waits until no update is inside, copies, and reopens it. Updates that
//! arrive while it is closing wait outside, so a steady stream of updates cannot starve
//! the checkpoint, and the copy never sees an update half-done.
//!
//! Unlike a reader-writer lock, the gate is re-entrant per thread: a thread already
//! inside (one update open) enters again without waiting even while a checkpoint is
//! closing the gate. Waiting there would deadlock, because the checkpoint waits for
//! that thread's first update to end. This is safe: while the thread is inside, the
//! count is not zero, so the copy has not started and cannot start until every one of
//! its updates has left.

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, PoisonError};

thread_local! {
    /// The gates this thread is inside, by address, with how many times.
    static INSIDE: RefCell<Vec<(usize, usize)>> = const { RefCell::new(Vec::new()) };
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// Updates inside.
    active: AtomicU64,
    /// A checkpoint is closing the gate or copying.
    closing: AtomicBool,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Gate {
    fn addr(&self) -> usize {
        std::ptr::from_ref(self) as usize
    }

    /// Whether this thread is inside the gate.
    pub(crate) fn held_by_this_thread(&self) -> bool {
        let me = self.addr();
        INSIDE.with(|v| v.borrow().iter().any(|&(g, _)| g == me))
    }

    /// Enters the gate (an update starts). Waits while a checkpoint copies, unless this
    /// thread is already inside.
    pub(crate) fn enter(&self) -> Ticket<'_> {
        let me = self.addr();
        let reentry = INSIDE.with(|v| {
            let mut v = v.borrow_mut();
            if let Some(e) = v.iter_mut().find(|e| e.0 == me) {
                e.1 += 1;
                true
            } else {
                false
            }
        });
        if reentry {
            // The count is not zero (our first ticket), so no copy is running.
            self.active.fetch_add(1, Ordering::SeqCst);
            return Ticket { gate: self };
        }
        loop {
            // SeqCst pairs with `close`: either the checkpoint sees our count, or we
            // see its flag (Dekker's argument; both sides store then load).
            self.active.fetch_add(1, Ordering::SeqCst);
            if !self.closing.load(Ordering::SeqCst) {
                break;
            }
            self.leave_count();
            let mut g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            while self.closing.load(Ordering::SeqCst) {
                g = self.changed.wait(g).unwrap_or_else(PoisonError::into_inner);
            }
        }
        INSIDE.with(|v| v.borrow_mut().push((me, 1)));
        Ticket { gate: self }
    }

    fn leave_count(&self) {
        if self.active.fetch_sub(1, Ordering::SeqCst) == 1 && self.closing.load(Ordering::SeqCst) {
            // Take the lock so the notification cannot fall between the closer's check
            // and its wait.
            let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.changed.notify_all();
        }
    }

    /// Closes the gate: waits until no update is inside; updates that arrive meanwhile
    /// wait until the returned guard drops. Checkpoints are serialized by the caller.
    pub(crate) fn close(&self) -> Closed<'_> {
        self.closing.store(true, Ordering::SeqCst);
        let mut g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while self.active.load(Ordering::SeqCst) != 0 {
            g = self.changed.wait(g).unwrap_or_else(PoisonError::into_inner);
        }
        Closed { gate: self }
    }
}

/// An update's pass through the gate; leaves on drop. Not `Send`: the re-entrancy
/// record is per thread.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    gate: &'a Gate,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let me = self.gate.addr();
        INSIDE.with(|v| {
            let mut v = v.borrow_mut();
            if let Some(i) = v.iter().position(|e| e.0 == me) {
                v[i].1 -= 1;
                if v[i].1 == 0 {
                    v.swap_remove(i);
                }
            }
        });
        self.gate.leave_count();
    }
}

/// The closed gate; reopens on drop.
#[derive(Debug)]
pub(crate) struct Closed<'a> {
    gate: &'a Gate,
}

impl Drop for Closed<'_> {
    fn drop(&mut self) {
        self.gate.closing.store(false, Ordering::SeqCst);
        let _g = self
            .gate
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.gate.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn reentry_does_not_wait_for_a_closing_gate() {
        let gate = Gate::default();
        let first = gate.enter();
        std::thread::scope(|s| {
            let closer = s.spawn(|| {
                let _closed = gate.close();
                assert_eq!(gate.active.load(Ordering::SeqCst), 0);
            });
            // Wait until the closer has raised the flag, then enter again: it must not
            // block (it would deadlock: the closer waits for `first`).
            while !gate.closing.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let second = gate.enter();
            assert!(gate.held_by_this_thread());
            drop(first);
            drop(second);
            closer.join().unwrap();
        });
        assert!(!gate.held_by_this_thread());
    }

    #[test]
    fn no_update_is_inside_while_closed() {
        let gate = Gate::default();
        let inside = AtomicUsize::new(0);
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        let _t = gate.enter();
                        inside.fetch_add(1, Ordering::SeqCst);
                        std::hint::spin_loop();
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                });
            }
            for _ in 0..200 {
                let _c = gate.close();
                assert_eq!(inside.load(Ordering::SeqCst), 0);
            }
            stop.store(true, Ordering::Relaxed);
        });
    }
}
