//! Running a transaction's closure again after a conflict: the rule of
//! [`crate::Segment::transaction`] (and [`crate::Group::transaction`]) in one place.
//!
//! The closure runs again only when it returned `Err` and the last call it made on the
//! transaction that reads or changes bytes failed with a conflict, up to `retries`
//! times; the transaction is aborted before each new run, after a backoff that spins
//! first and then sleeps ([`pause`]).

use crossbeam_utils::Backoff;

use crate::error::{Error, Result};

/// What the loop needs of a transaction.
pub(crate) trait Attempt {
    /// Commits it in place (it ends when it drops: committing through `&mut` spares
    /// moving the transaction on every commit).
    fn commit(&mut self) -> Result<()>;
    /// Aborts it.
    fn abort(self) -> Result<()>;
    /// Whether its last call that read or changed bytes failed with a conflict.
    fn last_call_conflicted(&self) -> bool;
}

/// Runs `f` in transactions from `begin` until it commits, returns an error that is not
/// a conflict, or has run again `retries` times.
///
/// `begin` puts each new transaction into a slot that lives across the attempts (it is
/// empty whenever `begin` is called): the transaction is built where it stays, instead
/// of being returned in a `Result` and moved out of it (a call to `memcpy` of the whole
/// transaction value, about 50 instructions a transaction).
pub(crate) fn run<X: Attempt, T, E: From<Error>>(
    retries: u32,
    mut begin: impl FnMut(&mut Option<X>) -> Result<()>,
    mut f: impl FnMut(&mut X) -> std::result::Result<T, E>,
) -> std::result::Result<T, E> {
    let backoff = Backoff::new();
    let mut attempt = 0;
    let mut slot = None;
    loop {
        begin(&mut slot)?;
        let Some(tx) = slot.as_mut() else {
            unreachable!("`begin` succeeded, so the slot holds its transaction")
        };
        match f(tx) {
            Ok(v) => {
                tx.commit()?;
                return Ok(v);
            }
            Err(e) => {
                let retry = tx.last_call_conflicted() && attempt < retries;
                // `f`'s error is what the caller needs; if the abort fails too, the
                // segment is poisoned and the next `begin` reports why.
                if let Some(tx) = slot.take() {
                    let _ = tx.abort();
                }
                if !retry {
                    return Err(e);
                }
            }
        }
        attempt += 1;
        if backoff.is_completed() {
            std::thread::sleep(pause(attempt));
        } else {
            backoff.snooze();
        }
    }
}

/// The pause before retry `attempt` once spinning is done: random, up to a bound that
/// grows with the attempts to about a millisecond. Random, so that two transactions that
/// keep refusing each other (both read a range, both want to write it) fall out of step;
/// a sleep, so that the retry budget spans real time (about a second by default) even
/// when the transaction holding the range is descheduled.
pub(crate) fn pause(attempt: u32) -> std::time::Duration {
    std::thread_local! {
        // Seeded from an address on this thread's stack: differs between threads.
        static SEED: std::cell::Cell<u64> = {
            let here = 0u8;
            std::cell::Cell::new(std::ptr::from_ref(&here) as u64 ^ 0x9e37_79b9_7f4a_7c15)
        };
    }
    let r = SEED.with(|s| {
        // xorshift64
        let mut x = s.get() | 1;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.set(x);
        x
    });
    let bound = u64::from(attempt.min(50)) * 20 + 1; // microseconds, up to 1 ms
    std::time::Duration::from_micros(r % bound)
}
