//! The background writeback thread.
//!
//! It checkpoints every `interval` while pages are dirty, and sooner when a writer kicks
//! it (`dirty_bytes` of pages dirty), but paced: an early checkpoint starts no sooner
//! than [`PACE`] times the last checkpoint's duration after that checkpoint ended. A
//! workload that dirties pages faster than the disk takes them would otherwise keep a
//! checkpoint running all the time, each one making writers copy the pages of its
//! snapshot before they change them; paced, checkpoints take at most about
//! `1 / (1 + PACE)` of the time, and the dirty set grows past `dirty_bytes` meanwhile
//! (it bounds how much a checkpoint writes only when the disk keeps up). The interval's
//! checkpoints are never delayed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{IoContext, Result};
use crate::state::Inner;

/// Checkpoints on an interval, or when woken because enough pages are dirty.
#[derive(Debug)]
pub(crate) struct WritebackThread {
    handle: JoinHandle<()>,
    interval: Duration,
}

impl WritebackThread {
    pub(crate) fn spawn(inner: Arc<Inner>, interval: Duration) -> Result<WritebackThread> {
        let handle = std::thread::Builder::new()
            .name("rio-writeback".into())
            .spawn(move || run(&inner, interval))
            .context(|| "spawn the writeback thread".into())?;
        Ok(WritebackThread { handle, interval })
    }

    /// The interval it was started with.
    pub(crate) fn interval(&self) -> Duration {
        self.interval
    }

    /// Asks the thread to stop and waits for it.
    pub(crate) fn stop(self, inner: &Inner) {
        inner
            .wake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stop = true;
        inner.wake_cv.notify_all();
        // A panic in the thread has already been reported by the panic hook; the
        // handle stays usable, so there is nothing more to do with it here.
        let _ = self.handle.join();
        // A thread started later (a new policy, or after a grow) must not stop at once.
        inner
            .wake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .stop = false;
    }
}

/// How many times its own duration a checkpoint leaves to the writers before a kick may
/// start the next one. On two cores the checkpoint thread's CPU time and the writers'
/// copies of snapshot pages come straight out of the writers' throughput: with 3,
/// SPS with default writeback ran at 0.87-0.94x of writeback off; with 15 (the thread
/// busy at most about 6% of the time) at 0.97-1.01x (docs/benchmarks.md, "Checkpoints").
pub(crate) const PACE: u32 = 15;

/// When a kicked checkpoint may start, after the last one ended at `ended` having taken
/// `took`: `ended + PACE * took` (at once when there was none).
pub(crate) fn earliest_kicked_start(last: Option<(Instant, Duration)>) -> Option<Instant> {
    last.and_then(|(ended, took)| ended.checked_add(took.saturating_mul(PACE)))
}

fn run(inner: &Inner, interval: Duration) {
    let interval = interval.max(crate::options::SHORTEST_INTERVAL);
    let mut last: Option<(Instant, Duration)> = None;
    let mut due = crate::options::deadline_after(interval);
    loop {
        {
            let mut w = inner
                .wake
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            loop {
                if w.stop {
                    return;
                }
                let now = Instant::now();
                if now >= due {
                    break; // the interval's checkpoint: never delayed
                }
                let until = if w.kick {
                    match earliest_kicked_start(last) {
                        Some(t) if t > now => t.min(due),
                        _ => break,
                    }
                } else {
                    due
                };
                w = inner
                    .wake_cv
                    .wait_timeout(w, until - now)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            w.kick = false;
        }
        if inner.poisoned.load(Ordering::Acquire) {
            return;
        }
        let started = Instant::now();
        if inner.dirty_pages.load(Ordering::Relaxed) > 0 {
            // A failure poisons the cache; writers see it on their next update.
            let _ = inner.checkpoint();
            let ended = Instant::now();
            last = Some((ended, ended - started));
        }
        due = crate::options::deadline_after(interval);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{earliest_kicked_start, PACE};

    #[test]
    fn a_kick_waits_pace_times_the_last_checkpoint() {
        assert_eq!(
            earliest_kicked_start(None),
            None,
            "no checkpoint yet: at once"
        );
        let ended = Instant::now();
        let took = Duration::from_millis(40);
        assert_eq!(
            earliest_kicked_start(Some((ended, took))),
            Some(ended + took * PACE)
        );
        assert_eq!(
            earliest_kicked_start(Some((ended, Duration::ZERO))),
            Some(ended),
            "an empty checkpoint leaves no gap"
        );
    }
}
