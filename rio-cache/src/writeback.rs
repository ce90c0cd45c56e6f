//! The background writeback thread.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

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

fn run(inner: &Inner, interval: Duration) {
    loop {
        {
            let mut w = inner
                .wake
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !w.stop && !w.kick {
                w = inner
                    .wake_cv
                    .wait_timeout(w, interval)
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .0;
            }
            if w.stop {
                return;
            }
            w.kick = false;
        }
        if inner.poisoned.load(Ordering::Acquire) {
            return;
        }
        if inner.dirty_pages.load(Ordering::Relaxed) > 0 {
            // A failure poisons the cache; writers see it on their next update.
            let _ = inner.checkpoint();
        }
    }
}
