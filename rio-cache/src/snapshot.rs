//! The checkpoint's snapshot: copy-on-write of the dirty pages while updates run.
//!
//! A checkpoint closes the gate only for an instant: with no update inside, it swaps the
//! roles of the image's two page maps (the dirty map becomes the snapshot's *frozen*
//! map, the other, empty, takes new dirty marks), bumps the dirty generation (so no
//! writer trusts a memo of opened pages from before), opens a new snapshot epoch and
//! reopens the gate. The pages marked in the frozen map are the snapshot: the memory
//! image at that instant, between two updates, so transaction-consistent.
//!
//! Then it copies those pages while updates go on. A writer about to change a page of
//! the frozen map that the checkpoint has not copied yet copies it first
//! ([`crate::state::Inner::before_write`]): it *preserves* the page's snapshot image,
//! which the checkpoint takes instead of the page. Each page's state says who handled
//! it: `epoch` once copied or preserved in this snapshot, [`LATCH`] while one of them
//! is copying it (the other waits), anything else while untouched. So the checkpoint
//! never reads a page a writer has changed since the instant, and no writer changes a
//! page while the checkpoint reads it.
//!
//! A writer preserves page `p` into slot `p` of the snapshot's [`PageArena`] (mapped
//! by the first checkpoint, before its gate closes): no allocation, no map, no lock.
//! The page's state hands the slot over: the writer copies under the latch and then
//! stores the epoch with release ordering; the checkpoint reads the slot only after it
//! loads that epoch with acquire ordering. Nobody writes the slot again in the same
//! snapshot (the state stays the epoch), and the next snapshot starts only after this
//! one's copy has finished (stages run one at a time, under the checkpoint lock) and
//! only with no update inside the gate, so no writer of an old snapshot is left.
//! (Before, each preserved page was a fresh 4 KiB allocation filed in a
//! `Mutex<HashMap>`; the checkpoint held that mutex while it faulted in and filled its
//! batch page and freed the copy, and writers slept on it: see
//! [docs/rio-cache.md](../../docs/rio-cache.md#checkpoints).)

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
use std::sync::OnceLock;

use crate::sys::PageArena;

/// A page being copied, by the checkpoint or by a writer preserving it.
pub(crate) const LATCH: u32 = u32::MAX;

/// See the module documentation.
#[derive(Debug)]
pub(crate) struct Snapshot {
    /// A checkpoint is copying its snapshot: writers must preserve frozen pages first.
    pub(crate) active: AtomicBool,
    /// The number of the current (or last) snapshot: never 0 or [`LATCH`].
    pub(crate) epoch: AtomicU32,
    /// Per data page: the epoch that handled it, or [`LATCH`].
    pub(crate) state: Box<[AtomicU32]>,
    /// Snapshot images of pages writers changed before the checkpoint copied them,
    /// slot `p` for page `p`: mapped by the first checkpoint (before it activates a
    /// snapshot), so writers find it set whenever `active` is.
    pub(crate) arena: OnceLock<PageArena>,
    /// Pages writers preserved, over the cache's life (a statistic, and a test's
    /// proof that the copy-on-write path ran).
    pub(crate) preserved: AtomicU64,
}

impl Snapshot {
    /// No snapshot, for a cache of `pages` pages.
    pub(crate) fn new(pages: usize) -> Snapshot {
        Snapshot {
            active: AtomicBool::new(false),
            epoch: AtomicU32::new(0),
            state: (0..pages).map(|_| AtomicU32::new(0)).collect(),
            arena: OnceLock::new(),
            preserved: AtomicU64::new(0),
        }
    }

    /// The epoch after `e`: never 0 (a page's untouched state) nor [`LATCH`].
    pub(crate) fn next_epoch(e: u32) -> u32 {
        match e.wrapping_add(1) {
            0 | LATCH => 1,
            n => n,
        }
    }
}
