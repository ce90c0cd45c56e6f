//! Vista: undo-only transactions on persistent memory.
//!
//! Lowell and Chen's observation (SOSP 1997): when the memory itself survives crashes
//! (Rio's battery-backed file cache; here, [`rio_cache`]), a transaction needs no redo
//! log, no system call and no log truncation. [`Transaction::set_range`] copies the
//! before-image into a persistent undo log; the program writes the data in place;
//! [`Transaction::commit`] throws the undo log away with one atomic store; abort and
//! crash recovery copy the before-images back.
//!
//! ```
//! # fn main() -> Result<(), vista::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("data.vista");
//! let opts = vista::Options::default()
//!     .size(1 << 20)
//!     .protection(vista::Protection::Auto)
//! #   .cache_dir(dir.path())
//!     ;
//! let mut seg = vista::Segment::open(&path, &opts)?;   // creates, or recovers
//!
//! let mut tx = seg.begin()?;
//! tx.write(0, b"hello")?;                               // set_range + copy
//! let buf = tx.set_range(100, 8)?;                      // log, then change in place
//! buf.copy_from_slice(&42u64.to_le_bytes());
//! tx.commit()?;                                         // one store: committed
//!
//! let mut tx = seg.begin()?;
//! tx.write(0, b"HELLO")?;
//! drop(tx);                                             // not committed: undone
//! assert_eq!(seg.read(0, 5)?, b"hello");
//!
//! // Commit on Ok, abort on Err or panic:
//! let n: u64 = seg.transaction(|tx| {
//!     let n = tx.get::<u64>(100)? + 1;
//!     tx.put(100, &n)?;
//!     Ok::<_, vista::Error>(n)
//! })?;
//! assert_eq!(n, 43);
//! seg.checkpoint()?;                                    // durable on disk too
//! # Ok(())
//! # }
//! ```
//!
//! # Durability
//! A committed transaction survives any crash of the process at once (the memory image
//! survives). It survives an OS crash or power loss once a checkpoint has followed:
//! [`Transaction::commit_durable`] or [`Segment::checkpoint`], or the background
//! writeback. A checkpoint never captures a transaction half-done.
//!
//! # Correctness
//! The orderings recovery depends on, and their crash points (feature `crash-points`):
//! - the before-image is completely written (`vista.set_range.record_copied`) before
//!   the atomic store that publishes it (`vista.set_range.published`), which precedes
//!   any change to the data (`vista.write.partial`);
//! - commit is one atomic store of an empty log (`vista.commit.before_store`,
//!   `vista.commit.after_store`);
//! - abort and recovery copy before-images back newest first (`vista.abort.partial`,
//!   `vista.recover.partial`) and empty the log last (`vista.abort.applied`,
//!   `vista.recover.applied`), so repeating them is harmless;
//! - recovery validates every record's bounds and checksum before writing anything
//!   (`vista.recover.validated`).
//!
//! See `docs/design.md` and `docs/format.md`.
//!
//! # Safety
//! The public API is safe Rust; vista itself has no `unsafe` code. The slices it hands
//! out borrow the segment (`&self` for committed reads, the transaction for writes), so
//! they cannot change underneath their holder; rio-cache documents why its mapping
//! can be sliced soundly.
//!
//! # Dependencies
//! - `rio-cache`: the crash-surviving memory, protection and checkpoints.
//! - `crc32fast`: the header checksum.
//! - `xxhash-rust`: undo-record checksums (XXH3 is fast on the small records of the
//!   commit path).
//! - `bytemuck`: typed reads and writes of plain-old-data values.
//! - `thiserror`: the [`Error`] enum.
//! - `crash-point`: crash points for crash testing (compiled in only with the feature).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod lane;
mod layout;
mod options;
mod segment;
mod transaction;
mod undo;

#[cfg(feature = "mutants")]
mod mutant {
    //! Deliberately broken orderings for `crash-sim self-test` (feature `mutants`, off in
    //! every normal build). `VISTA_MUTANT` names the one in force; it is read once.
    pub(crate) fn is(name: &str) -> bool {
        static SELECTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        SELECTED.get_or_init(|| std::env::var("VISTA_MUTANT").unwrap_or_default()) == name
    }
}

pub use error::{Error, Result};
pub use layout::FORMAT_VERSION;
pub use options::{
    Options, Protection, Writeback, DEFAULT_LANES, DEFAULT_LANE_WAIT, DEFAULT_LOCK_WAIT,
    DEFAULT_RETRIES, DEFAULT_SIZE, DEFAULT_UNDO_LOG_SIZE, MAX_LANES,
};
/// The cache layer, re-exported so its types in vista's API (`Error::Cache`, the stats of
/// `Segment::cache_stats`) can be named without a separate dependency.
pub use rio_cache;
pub use rio_cache::{ActiveProtection, ColdReason, StartKind};
pub use segment::{Bytes, Recovery, Segment};
pub use transaction::Transaction;

/// Every crash point in vista (rio-cache's checkpoint points are in
/// [`rio_cache::CRASH_POINTS`]).
pub const CRASH_POINTS: &[&str] = &[
    "vista.set_range.record_copied",
    "vista.set_range.published",
    "vista.write.partial",
    "vista.commit.before_store",
    "vista.commit.after_store",
    "vista.abort.partial",
    "vista.abort.applied",
    "vista.recover.validated",
    "vista.recover.partial",
    "vista.recover.applied",
    "vista.recover.done",
];
