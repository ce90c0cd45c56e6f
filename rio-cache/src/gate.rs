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
//!
//! The count of updates inside is striped over cache lines by thread, so that updates
//! of different threads do not write one shared line; the gate is empty when every
//! stripe is zero. The per-thread record of which gates a thread is inside is a
//! thread-local slot for the last gate, with a list for the rare thread inside several.
//! Gates are told apart by a number no other gate of the process ever gets, not by
//! address: a gate made where a dropped one lived (whose ticket was leaked) is never
//! taken for it.
//!
//! A checkpoint waits for the gate to empty for a bounded time ([`Gate::close`]), then
//! gives up and reopens it. So a leaked update (one whose ticket is never dropped) makes
//! checkpoints fail with an error instead of blocking forever, and two threads that
//! each hold one cache's gate while entering the other's, with both caches
//! checkpointing, wait at most that long: the closers give up and both gates reopen.

use std::cell::{Cell, RefCell};
#[cfg(not(feature = "shuttle"))]
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::PoisonError;
#[cfg(not(feature = "shuttle"))]
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

// Under the `shuttle` feature (model-checked tests only) the gate's atomics, lock,
// condition variable and per-thread records are shuttle's, so that its scheduler can
// interleave the threads at every step and give each its own records.
#[cfg(feature = "shuttle")]
use shuttle::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(feature = "shuttle")]
use shuttle::sync::{Condvar, Mutex};
#[cfg(feature = "shuttle")]
use shuttle::thread_local;

use crossbeam_utils::CachePadded;

/// Counters of updates inside, one per cache line: a thread always counts on the same
/// stripe, so threads on different stripes never write a shared line on the hot path.
const STRIPES: usize = 8;

/// Hands out stripes to threads in turn (a hint: any stripe is correct).
static NEXT_STRIPE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// Numbers gates: every gate of the process gets its own (never 0, the empty record).
static NEXT_GATE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

thread_local! {
    /// This thread's stripe (`u32::MAX` until first use).
    static STRIPE: Cell<u32> = const { Cell::new(u32::MAX) };
    /// The gate this thread entered last, by number, with how many tickets it holds
    /// there: one thread nearly always uses one cache, so this is the fast record.
    static LAST: Cell<(u64, usize)> = const { Cell::new((0, 0)) };
    /// Other gates this thread is inside, by number, with how many tickets.
    static OTHERS: RefCell<Vec<(u64, usize)>> = const { RefCell::new(Vec::new()) };
    /// How many gates `OTHERS` lists: while 0 (nearly always), entering and leaving never
    /// look at the list (a plain cell, where the list costs a borrow and a search).
    static OTHERS_LEN: Cell<usize> = const { Cell::new(0) };
}

#[inline]
fn my_stripe() -> usize {
    STRIPE.with(|s| {
        let mut i = s.get();
        if i == u32::MAX {
            i = NEXT_STRIPE.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % STRIPES as u32;
            s.set(i);
        }
        i as usize
    })
}

/// Counts one more ticket of this thread at gate `me`; returns whether it already held
/// one (a re-entry).
#[inline]
fn note_enter(me: u64) -> bool {
    let (g, n) = LAST.with(Cell::get);
    if g == me && n > 0 {
        LAST.with(|l| l.set((g, n + 1)));
        return true;
    }
    if n == 0 {
        // The fast record is free: take it, with the tickets `me` may have in the
        // others (when the record was busy with another gate as `me` was entered).
        let held = if OTHERS_LEN.with(Cell::get) == 0 {
            0
        } else {
            take_other(me)
        };
        LAST.with(|l| l.set((me, held + 1)));
        return held > 0;
    }
    enter_other(me)
}

/// [`note_enter`] while the fast record is busy with another gate.
#[cold]
fn enter_other(me: u64) -> bool {
    OTHERS.with(|o| {
        let mut o = o.borrow_mut();
        if let Some(e) = o.iter_mut().find(|e| e.0 == me) {
            e.1 += 1;
            true
        } else {
            o.push((me, 1));
            OTHERS_LEN.with(|l| l.set(o.len()));
            false
        }
    })
}

/// Removes gate `me` from the other gates this thread is inside; returns its tickets
/// there (0 if it is not listed).
#[cold]
fn take_other(me: u64) -> usize {
    OTHERS.with(|o| {
        let mut o = o.borrow_mut();
        let held = o
            .iter()
            .position(|e| e.0 == me)
            .map_or(0, |i| o.swap_remove(i).1);
        OTHERS_LEN.with(|l| l.set(o.len()));
        held
    })
}

/// Counts one ticket of this thread at gate `me` less.
#[inline]
fn note_leave(me: u64) {
    let (g, n) = LAST.with(Cell::get);
    if g == me && n > 0 {
        LAST.with(|l| l.set((g, n - 1)));
        return;
    }
    if OTHERS_LEN.with(Cell::get) == 0 {
        return; // `me` is not listed: nothing to count down
    }
    leave_other(me);
}

/// [`note_leave`] of a gate in the list of others.
#[cold]
fn leave_other(me: u64) {
    OTHERS.with(|o| {
        let mut o = o.borrow_mut();
        if let Some(i) = o.iter().position(|e| e.0 == me) {
            o[i].1 -= 1;
            if o[i].1 == 0 {
                o.swap_remove(i);
            }
        }
        OTHERS_LEN.with(|l| l.set(o.len()));
    });
}

/// How many tickets this thread holds at gate `me`.
fn held_here(me: u64) -> usize {
    let (g, n) = LAST.with(Cell::get);
    if g == me && n > 0 {
        return n;
    }
    if OTHERS_LEN.with(Cell::get) == 0 {
        return 0;
    }
    OTHERS.with(|o| o.borrow().iter().find(|e| e.0 == me).map_or(0, |e| e.1))
}

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Gate {
    /// This gate's number (see the module documentation).
    id: u64,
    /// Updates inside, striped by thread; the gate is empty when every stripe is 0.
    active: [CachePadded<AtomicU64>; STRIPES],
    /// A checkpoint is closing the gate or copying.
    closing: CachePadded<AtomicBool>,
    lock: Mutex<()>,
    changed: Condvar,
}

impl Default for Gate {
    fn default() -> Gate {
        Gate {
            id: NEXT_GATE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            active: Default::default(),
            closing: CachePadded::default(),
            lock: Mutex::new(()),
            changed: Condvar::new(),
        }
    }
}

impl Gate {
    fn key(&self) -> u64 {
        #[cfg(feature = "mutants")]
        if crate::mutant::is("gate-by-address") {
            // Mutant: gates told apart by address, as a reused allocation can fool.
            return std::ptr::from_ref(self) as u64;
        }
        self.id
    }

    /// Whether this thread is inside the gate.
    pub(crate) fn held_by_this_thread(&self) -> bool {
        held_here(self.key()) > 0
    }

    /// Enters the gate (an update starts). Waits while a checkpoint copies, unless this
    /// thread is already inside.
    #[inline]
    pub(crate) fn enter(&self) -> Ticket<'_> {
        let me = self.key();
        let stripe = &self.active[my_stripe()];
        if note_enter(me) {
            // The count is not zero (our first ticket), so no copy is running.
            stripe.fetch_add(1, Ordering::SeqCst);
            return Ticket { gate: self, stripe };
        }
        loop {
            // SeqCst pairs with `close`: either the checkpoint sees our count, or we
            // see its flag (Dekker's argument; both sides store then load).
            stripe.fetch_add(1, Ordering::SeqCst);
            if !self.closing.load(Ordering::SeqCst) {
                break;
            }
            self.leave_count(stripe);
            let mut g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            while self.closing.load(Ordering::SeqCst) {
                g = self.changed.wait(g).unwrap_or_else(PoisonError::into_inner);
            }
        }
        Ticket { gate: self, stripe }
    }

    fn is_empty(&self) -> bool {
        self.active.iter().all(|a| a.load(Ordering::SeqCst) == 0)
    }

    #[inline]
    fn leave_count(&self, stripe: &AtomicU64) {
        if stripe.fetch_sub(1, Ordering::SeqCst) == 1 && self.closing.load(Ordering::SeqCst) {
            // Take the lock so the notification cannot fall between the closer's check
            // and its wait.
            let _g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
            self.changed.notify_all();
        }
    }

    /// Closes the gate: waits until no update is inside; updates that arrive meanwhile
    /// wait until the returned guard drops. Checkpoints are serialized by the caller.
    ///
    /// Gives up after `wait` if updates are still inside (a leaked update, or a thread
    /// waiting at another gate while inside this one): reopens the gate, wakes the
    /// updates waiting outside, and returns `None`.
    pub(crate) fn close(&self, wait: Duration) -> Option<Closed<'_>> {
        let deadline = Instant::now().checked_add(wait);
        self.closing.store(true, Ordering::SeqCst);
        let mut g = self.lock.lock().unwrap_or_else(PoisonError::into_inner);
        while !self.is_empty() {
            let left = match deadline {
                Some(d) => d.saturating_duration_since(Instant::now()),
                None => Duration::from_secs(3600),
            };
            if left.is_zero() {
                self.closing.store(false, Ordering::SeqCst);
                self.changed.notify_all();
                return None;
            }
            g = self
                .changed
                .wait_timeout(g, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        Some(Closed { gate: self })
    }
}

/// An update's pass through the gate; leaves on drop. It must drop on the thread that
/// entered (the re-entrancy record is per thread): its owner, an update, is not `Send`.
#[derive(Debug)]
pub(crate) struct Ticket<'a> {
    gate: &'a Gate,
    stripe: &'a AtomicU64,
}

impl Drop for Ticket<'_> {
    #[inline]
    fn drop(&mut self) {
        note_leave(self.gate.key());
        self.gate.leave_count(self.stripe);
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

/// Model-checked tests: shuttle interleaves updaters (one re-entering while a checkpoint
/// may be closing) and a closer that closes and reopens the gate twice, at every atomic,
/// lock and condition-variable step. No update is inside while the gate is closed, a
/// re-entry never waits for a closing gate (shuttle reports the deadlock if it does),
/// every waiter is woken when the gate reopens, and the gate ends empty and open.
/// (shuttle's `wait_timeout` never times out: the give-up path is the unit test's.)
#[cfg(all(test, feature = "shuttle"))]
mod shuttle_tests {
    use super::*;
    use shuttle::sync::atomic::AtomicUsize;
    use shuttle::sync::Arc;

    fn gate_excludes_the_copy() {
        let gate = Arc::new(Gate::default());
        let inside = Arc::new(AtomicUsize::new(0));
        let mut threads: Vec<_> = (0..2)
            .map(|t| {
                let (gate, inside) = (Arc::clone(&gate), Arc::clone(&inside));
                shuttle::thread::spawn(move || {
                    for round in 0..2 {
                        let first = gate.enter();
                        inside.fetch_add(1, Ordering::SeqCst);
                        if t == 0 && round == 0 {
                            shuttle::thread::yield_now();
                            let again = gate.enter(); // re-entry: never waits
                            assert!(gate.held_by_this_thread());
                            drop(again);
                        }
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(first);
                        assert!(!gate.held_by_this_thread());
                    }
                })
            })
            .collect();
        let (g, i) = (Arc::clone(&gate), Arc::clone(&inside));
        threads.push(shuttle::thread::spawn(move || {
            for _ in 0..2 {
                let closed = g
                    .close(Duration::from_secs(3600))
                    .expect("no update is leaked: the close never gives up");
                assert_eq!(
                    i.load(Ordering::SeqCst),
                    0,
                    "an update inside a closed gate"
                );
                shuttle::thread::yield_now();
                assert_eq!(
                    i.load(Ordering::SeqCst),
                    0,
                    "an update entered a closed gate"
                );
                drop(closed);
            }
        }));
        for t in threads {
            t.join().unwrap();
        }
        assert!(gate.is_empty());
        assert!(!gate.closing.load(Ordering::SeqCst));
    }

    #[test]
    fn gate_under_random_schedules() {
        shuttle::check_random(gate_excludes_the_copy, 2000);
    }

    #[test]
    fn gate_under_pct_schedules() {
        shuttle::check_pct(gate_excludes_the_copy, 2000, 3);
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn reentry_does_not_wait_for_a_closing_gate() {
        let gate = Gate::default();
        let first = gate.enter();
        std::thread::scope(|s| {
            let closer = s.spawn(|| {
                let _closed = gate.close(Duration::MAX).unwrap();
                assert!(gate.is_empty());
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
    fn a_thread_inside_several_gates_is_counted_per_gate() {
        let (a, b, c) = (Gate::default(), Gate::default(), Gate::default());
        let a1 = a.enter();
        let b1 = b.enter();
        let a2 = a.enter();
        let b2 = b.enter();
        assert!(a.held_by_this_thread() && b.held_by_this_thread());
        assert!(!c.held_by_this_thread());
        drop(a1);
        drop(a2);
        assert!(!a.held_by_this_thread() && b.held_by_this_thread());
        // The fast record is free again while `b` is still in the list: entering `b`
        // must find its tickets there.
        let b3 = b.enter();
        let c1 = c.enter();
        drop(b1);
        drop(b2);
        assert!(b.held_by_this_thread(), "b3 still holds b");
        drop(b3);
        assert!(!b.held_by_this_thread() && c.held_by_this_thread());
        drop(c1);
        assert!(a.is_empty() && b.is_empty() && c.is_empty());
        assert!(!c.held_by_this_thread());
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
                let _c = gate.close(Duration::MAX).unwrap();
                assert_eq!(inside.load(Ordering::SeqCst), 0);
            }
            stop.store(true, Ordering::Relaxed);
        });
    }

    #[test]
    fn a_gate_made_where_a_leaked_one_lived_is_not_taken_for_it() {
        // A ticket leaked (its update forgotten) leaves this thread's record saying it
        // is inside that gate. A new gate at the same address must not inherit it: a
        // thread taken to be inside would skip the closing check and could write while
        // a checkpoint copies.
        let mut reused = false;
        for _ in 0..16 {
            let old = Box::new(Gate::default());
            let at = std::ptr::from_ref::<Gate>(&old) as usize;
            std::mem::forget(old.enter());
            drop(old);
            let new = Box::new(Gate::default());
            reused |= std::ptr::from_ref::<Gate>(&new) as usize == at;
            assert!(
                !new.held_by_this_thread(),
                "a new gate taken for a leaked one"
            );
        }
        assert!(
            reused,
            "the allocator never reused the address: the test proves nothing"
        );
    }

    #[test]
    fn a_close_that_waits_too_long_gives_up_and_reopens() {
        let gate = Gate::default();
        std::mem::forget(gate.enter()); // a leaked update: the gate never empties
        assert!(gate.close(Duration::from_millis(20)).is_none());
        assert!(!gate.closing.load(Ordering::SeqCst), "reopened");
        // Updates of other threads enter at once.
        std::thread::scope(|s| {
            s.spawn(|| drop(gate.enter())).join().unwrap();
        });
    }
}
