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
//!   ([`StartKind::Cold`]).
//! - **Protection.** Outside a write window the memory is read-only to the process
//!   ([`Protection::Mprotect`] or, where the CPU has them, memory protection keys
//!   ([`Protection::Pkey`])). A stray store dies with `SIGSEGV` and changes nothing.
//! - **Lazy, consistent writeback.** A checkpoint copies the dirty pages at a moment when
//!   no [`Update`] is in progress and installs them through a journal, so a crash at any
//!   step leaves the disk image at exactly the old or exactly the new checkpoint.
//! - **One owner.** The disk file is locked; a second open gets [`Error::Locked`].
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
//! - the disk file is locked (`flock`), so no other cooperating process maps the same
//!   memory image (a process that writes the image file behind the lock's back is
//!   outside the model, as with any mmap-based store);
//! - mutable slices come only from `&mut` [`Update`]. An update of a [`RioCache`]
//!   borrows `&mut RioCache`, so no shared slice from [`RioCache::read`] is alive. An
//!   update of a [`SharedCache`] (which owns its `RioCache`, so `RioCache::read` cannot
//!   be reached) hands out a mutable slice only over bytes it holds exclusively in the
//!   cache's lock table, and a shared slice only over bytes it holds shared or
//!   exclusively, until it ends; [`SharedCache::read`]'s guard holds its bytes shared.
//!   Within one update two windows are never alive at once (each borrows the update
//!   mutably; [`Update::window_pair`] checks disjointness);
//! - lock words are taken with acquire and released with release ordering, so a holder
//!   sees every write of the previous exclusive holder;
//! - the writeback thread only reads, and only while the checkpoint gate is closed,
//!   which happens only while no update is inside it;
//! - protection changes never remove read access, and only remove write access from
//!   pages with no live mutable slice (windows close when the update drops).
//!
//! Unsafe code lives in two modules: `sys` (system calls and raw views of the mapping)
//! and `access` (where the slices above are created).
//!
//! # Dependencies
//! - `memmap2`: the mappings (creation, unmapping on drop).
//! - `libc`: `mprotect`, `pkey_*`, `flock`, `posix_fallocate`.
//! - `crc32fast`: checksums of headers and journal.
//! - `thiserror`: the [`Error`] enum.
//! - `crash-point`: named crash points at every checkpoint and recovery step (compiled
//!   in only with the `crash-points` feature).
//! - `crossbeam-utils`: `Backoff` while waiting for a range lock.
//! - `shuttle` (optional, feature `shuttle`): model-checked tests of the lock table
//!   (`cargo test -p rio-cache --features shuttle --lib shuttle`; vista's crate docs say
//!   why shuttle rather than loom). The feature replaces the lock words with shuttle's
//!   atomics, which work only inside a shuttle test.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod access;
mod cache;
mod checkpoint;
mod error;
mod format;
mod gate;
mod journal;
mod locks;
mod options;
mod shared;
mod sys;
mod writeback;

pub use access::{PageMemo, Update, WriteWindow};
pub use cache::{
    existing_size, image_path, journal_path, remove, ActiveProtection, ColdReason, RioCache,
    StartKind, Stats,
};
pub use checkpoint::CRASH_POINTS;
pub use error::{Error, Result};
pub use options::{Protection, RioOptions, Writeback, CACHE_DIR_ENV, DEFAULT_CACHE_DIR};
pub use shared::{Locked, SharedCache, DEFAULT_LOCK_WAIT};

/// The page size rio-cache works in (dirty tracking, protection, checkpoints).
pub const PAGE_SIZE: usize = sys::PAGE;

/// Whether memory protection keys can be allocated on this machine right now.
pub fn pkeys_supported() -> bool {
    match sys::pkey_alloc() {
        Ok(k) => {
            sys::pkey_free(k);
            true
        }
        Err(_) => false,
    }
}
