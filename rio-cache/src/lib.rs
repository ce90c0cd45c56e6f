//! rio-cache: an emulated Rio file cache.
//!
//! Rio (Chen et al., ASPLOS 1996) kept the file cache in battery-backed memory, guarded
//! it from wild stores with the MMU, and wrote it back to disk whenever it liked, so a
//! store to a mapped file was as durable as a disk write the moment it retired. This
//! crate emulates that on stock Linux:
//!
//! - **Two images.** The *memory image* is a file on a memory file system (default
//!   `/dev/shm`), mapped `MAP_SHARED`: every store survives the death of the process.
//!   The *disk image* is the file you name; it always holds one complete checkpoint.
//! - **Warm and cold start.** Reopening after a process crash finds the memory image and
//!   uses it ([`StartKind::Warm`]). If the machine restarted (the boot id changed), or
//!   the image is missing or not this file's, the cache is loaded from the disk image
//!   ([`StartKind::Cold`]). An image that may hold committed data the disk image lacks
//!   is never dropped silently: if it cannot be used, the open is refused
//!   ([`Error::DamagedImage`], [`Error::LiveImage`]) unless
//!   [`RioOptions::discard_image`] says to drop it.
//! - **Protection.** The addresses the program reads the data through are read-only to
//!   it outside a write window: memory protection keys where the CPU has them
//!   ([`Protection::Pkey`]), else a second, writable mapping at a random address that
//!   only windows write through ([`Protection::Alias`], no system call per window), or
//!   ([`Protection::Mprotect`]) `mprotect` around every window. A stray store through
//!   those addresses dies with `SIGSEGV` and changes nothing. What each mode does not
//!   stop is listed at [`Protection`]. [`RioCache::protection`] says which one
//!   [`Protection::Auto`] picked.
//! - **Lazy, consistent writeback.** A checkpoint copies the dirty pages at a moment when
//!   no [`Update`] is in progress and writes them, once, into the one of the disk image's
//!   two slots that does not hold the last checkpoint, then commits that slot with its
//!   header, so a crash at any step leaves the disk image at exactly the old or exactly
//!   the new checkpoint ([`disk_image_len`] is the file's length).
//! - **One owner.** The disk file and its memory image are locked; a second open gets
//!   [`Error::Locked`].
//! - **Group checkpoints.** Several caches' checkpoints become durable together: each is
//!   sealed in its journal for an epoch, and one synced write to a coordinator file
//!   decides them all ([`group`]). A *fenced* cache
//!   ([`SharedCache::set_fenced`]) takes no checkpoint of its own meanwhile.
//! - **Growth in place.** [`RioCache::grow`] enlarges the cache crash-atomically: after a
//!   crash it is at the old size or the new one (`docs/rio-cache.md`, "Growing").
//!
//! ```
//! use rio_cache::{RioCache, RioOptions, StartKind, Writeback};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("data.rio");
//! let opts = RioOptions::new()
//!     .size(1 << 20)
//!     .cache_dir(dir.path())            // normally a memory file system: /dev/shm
//!     .writeback(Writeback::Manual);
//!
//! let mut cache = RioCache::open(&path, &opts)?;
//! assert_eq!(cache.start_kind(), StartKind::Created);
//! {
//!     let mut w = cache.window(4096, 5)?;  // the bytes are writable only in here
//!     w.copy_from_slice(b"hello");
//! }                                         // closed: read-only again
//! assert_eq!(cache.read(4096, 5)?, b"hello");
//! drop(cache);                              // (a SIGKILL here would lose nothing)
//!
//! let cache = RioCache::open(&path, &opts)?;
//! assert_eq!(cache.start_kind(), StartKind::Warm);
//! assert_eq!(cache.read(4096, 5)?, b"hello");
//! # Ok(())
//! # }
//! ```
//!
//! # Durability
//!
//! | event                                   | what survives                         |
//! |-----------------------------------------|---------------------------------------|
//! | process crash (any signal, any point)   | every store (warm start)              |
//! | OS crash or power loss                  | the last completed checkpoint         |
//! | ... after [`RioCache::checkpoint`] returned | everything written before the call |
//!
//! # Why the slices are sound
//!
//! The crate hands out `&[u8]` and `&mut [u8]` views of a `MAP_SHARED` mapping. They
//! cannot change underneath their holder because:
//! - the disk file and the memory image are locked (`flock`), so no other cooperating
//!   process maps the same memory image, even one that opens a disk file recreated
//!   under the same path (a process that writes the image file behind the lock's back
//!   is outside the model, as with any mmap-based store);
//! - mutable slices come only from `&mut` [`Update`]. An update of a [`RioCache`]
//!   borrows `&mut RioCache`, so no shared slice from [`RioCache::read`] is alive. An
//!   update of a [`SharedCache`] (which owns its `RioCache`, so `RioCache::read` cannot
//!   be reached) hands out a mutable slice only over bytes it holds exclusively in the
//!   cache's lock table, and a shared slice only over bytes it holds shared or
//!   exclusively, until it ends; [`SharedCache::read`]'s guard holds its bytes shared.
//!   Bytes in a claimed region ([`SharedCache::with_claims`]) are instead reached only by
//!   the one update holding that part's [`Claim`] (a token that is not `Clone`, moved
//!   into the update and back out); every other access to the region is refused
//!   ([`Error::Claimed`]).
//!   Within one update two windows are never alive at once (each borrows the update
//!   mutably; [`Update::window_pair`] checks disjointness);
//! - lock words are taken with acquire and released with release ordering, so a holder
//!   sees every write of the previous exclusive holder;
//! - a checkpoint (also the writeback thread's) only reads: it freezes its snapshot while
//!   the gate is closed (no update inside), then reads each snapshot page only under
//!   that page's latch, which every writer passes, preserving the page, before it opens
//!   the page; so no mutable slice covers a page while it is read (`snapshot.rs`);
//! - [`RioCache::grow`] and [`SharedCache::grow`], which replace the mappings, take
//!   `&mut self`, so no slice, update or read guard is alive while they run;
//! - protection changes never remove read access, and only remove write access from
//!   pages with no live mutable slice (windows close when the update drops);
//! - under `Pkey` and `Alias` the same bytes are reachable through two mappings, one
//!   read-only: a `&mut [u8]` into the write mapping and a `&[u8]` into the read one
//!   over the same bytes are never alive together, by the same borrows as above (the
//!   write mapping's address is never handed out except inside such a `&mut`).
//!
//! Unsafe code lives only in the `sys` module: system calls and raw views of the
//! mapping in `sys` itself, and in its child `sys::access` the updates and reads where
//! the slices above are created.
//!
//! # Dependencies
//! - `memmap2`: the mappings (creation, unmapping on drop).
//! - `libc`: `mprotect`, `mmap`/`munmap` (the alias), `getrandom`, `pkey_*`, `flock`,
//!   `posix_fallocate`.
//! - `crc32fast`: checksums of headers and journal.
//! - `thiserror`: the [`Error`] enum.
//! - `crash-point`: named crash points at every checkpoint and recovery step (compiled
//!   in only with the `crash-points` feature).
//! - `crossbeam-utils`: `Backoff` while waiting for a range lock, and `CachePadded` for
//!   the checkpoint gate's per-thread counters (no line shared between threads).
//! - `shuttle` (optional, feature `shuttle`): model-checked tests of the lock table
//!   (`cargo test -p rio-cache --features shuttle --lib shuttle`; vista's crate docs say
//!   why shuttle rather than loom). The feature replaces the lock words with shuttle's
//!   atomics, which work only inside a shuttle test.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod cache;
mod checkpoint;
mod disk_io;
mod error;
mod faults;
mod format;
mod gate;
pub mod group;
mod grow;
mod images;
pub mod inspect;
mod journal;
mod lacks;
mod locks;
mod naming;
mod open;
mod options;
pub mod power;
mod protection;
mod shared;
mod snapshot;
mod start;
mod state;
mod sys;
mod writeback;

#[cfg(feature = "mutants")]
mod mutant {
    //! Deliberately broken orderings for tests and `crash-sim self-test` (feature
    //! `mutants`, off in every normal build). `RIO_MUTANT` names the one in force; it is
    //! read once per process.
    pub(crate) fn is(name: &str) -> bool {
        static SELECTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        SELECTED.get_or_init(|| std::env::var("RIO_MUTANT").unwrap_or_default()) == name
    }
}

#[cfg(not(feature = "mutants"))]
mod mutant {
    //! Without the `mutants` feature no mutant is ever in force; the checks compile away.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn is(_name: &str) -> bool {
        false
    }
}

/// The mutant environment variable: with the `mutants` feature, names the deliberately
/// broken ordering in force (`commit-no-sync`, `install-no-sync`, `clean-before-copy`,
/// `warm-after-rewrite`, `grow-image-ready`, `grow-intent-no-sync`,
/// `grow-extend-no-sync`, `copy-without-cow`, `publish-before-preserve`,
/// `gate-by-address`, `no-deadlock-detection`, `upgrade-never-waits`,
/// `line-ignores-block`, `block-ignores-lines`, `differs-forgets-batch`,
/// `cold-differs-none`, `lacks-none`, `install-lacks-none`, `intent-none`,
/// `intent-no-sync`).
pub const MUTANT_ENV: &str = "RIO_MUTANT";

pub use cache::{RioCache, Stats};
pub use checkpoint::CRASH_POINTS;
pub use error::{Error, PkeyUnavailable, Result};
pub use faults::{Faults, IoCall, IoFile, IoOp};
pub use format::MAX_DATA_LEN;
pub use group::GROUP_CRASH_POINTS;
pub use grow::GROW_CRASH_POINTS;
pub use images::{images, remove_orphan, ImageInfo};
pub use naming::{
    image_path, journal_path, path_hash, remove, remove_closed, remove_closed_with, resolve_path,
};
pub use open::existing_size;
pub use options::{
    deadline_after, Protection, RioOptions, Writeback, CACHE_DIR_ENV, DEFAULT_CACHE_DIR,
    DEFAULT_CHECKPOINT_WAIT, LONGEST_WAIT, SHORTEST_INTERVAL,
};
pub use protection::ActiveProtection;
pub use shared::{Claim, Locked, SharedCache, DEFAULT_LOCK_WAIT};
pub use start::{ColdReason, StartKind};
pub use sys::access::{PageMemo, Update, WriteWindow};

/// The page size rio-cache works in (dirty tracking, protection, checkpoints).
pub const PAGE_SIZE: usize = sys::PAGE;

/// Whether memory protection keys can be allocated on this machine right now.
pub fn pkeys_supported() -> bool {
    pkey_support().is_ok()
}

/// Whether memory protection keys can be allocated on this machine right now, and if
/// not, why (the reason [`Protection::Pkey`] would be refused with).
///
/// # Errors
/// The [`PkeyUnavailable`] reason.
pub fn pkey_support() -> std::result::Result<(), PkeyUnavailable> {
    sys::pkey_alloc().map(sys::pkey_free)
}

/// The length of the disk image of a cache of `size` bytes: a header page and two slots,
/// one copy of the data each, interleaved in extents of 1 MiB (the file is sparse where
/// no checkpoint wrote). The format is in `docs/rio-cache.md`.
pub fn disk_image_len(size: u64) -> u64 {
    format::disk_len_for(format::round_up_pages(size))
}
