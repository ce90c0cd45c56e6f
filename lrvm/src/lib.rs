//! Lightweight Recoverable Virtual Memory (Satyanarayanan et al., SOSP 1993): the
//! redo-log baseline that Vista is measured against.
//!
//! Regions of external data segment files are mapped into private memory copies.
//! Transactions declare the ranges they will modify with `set_range`, write the memory
//! directly, and commit with `end_transaction`, which appends a *new-value* redo record
//! to the log (no-undo/redo value logging: the undo copy lives only in memory, for
//! aborts). A `Flush` commit writes and syncs the log before returning; a `NoFlush`
//! commit stays in a buffer until the next flush. Committed records are applied to the
//! data segments by epoch truncation, which runs on a background thread over a synced
//! prefix of the log while new transactions commit to the rest of it, and by recovery
//! when the log is opened after a crash. `docs/lrvm.md` describes the log format, the
//! write orderings and why recovery is correct.
//!
//! ```
//! # fn main() -> Result<(), lrvm::Error> {
//! let dir = tempfile::tempdir()?;
//! let (log, data) = (dir.path().join("log"), dir.path().join("data"));
//! lrvm::create_log(&log, 1 << 20, lrvm::CreateMode::CreateNew)?;
//!
//! let mut rvm = lrvm::Rvm::initialize(lrvm::Options::new(&log))?;
//! let region = rvm.map(&lrvm::RegionSpec::new(&data, 0, 4096), lrvm::MapOptions::create_or_extend())?;
//! let tid = rvm.begin_transaction(lrvm::RestoreMode::Restore)?;
//! rvm.set_range(tid, region, 100, 5)?.copy_from_slice(b"hello");
//! rvm.end_transaction(tid, lrvm::CommitMode::Flush)?; // durable now
//!
//! let tid = rvm.begin_transaction(lrvm::RestoreMode::Restore)?;
//! rvm.set_range(tid, region, 100, 5)?.copy_from_slice(b"WORLD");
//! rvm.abort_transaction(tid)?; // the undo copy goes back
//! assert_eq!(&rvm.region(region)?[100..105], b"hello");
//! drop(rvm); // as good as a crash: the next initialize recovers from the log
//!
//! let mut rvm = lrvm::Rvm::initialize(lrvm::Options::new(&log))?;
//! let region = rvm.map(&lrvm::RegionSpec::new(&data, 0, 4096), lrvm::MapOptions::default())?;
//! assert_eq!(&rvm.region(region)?[100..105], b"hello");
//! # Ok(()) }
//! ```
//!
//! # Soundness of the memory we hand out
//!
//! Region memory is an ordinary `Vec<u8>` owned by the [`Rvm`], loaded from the segment
//! file at map time as the original loads a private copy; there is no `mmap` of the
//! data file. `set_range` returns `&mut [u8]` borrowed from `&mut Rvm` and
//! [`Rvm::region`] returns `&[u8]` borrowed from `&Rvm`, so the borrow checker rules
//! out aliasing. The truncation thread never touches region memory: it reads the log
//! file and writes the segment files. Exclusive `flock`s on the log and on each data
//! segment stop a second instance (in this or another process) from writing them.
//!
//! # Dependencies
//!
//! - `crash-point`: the shared named crash points (empty unless the `crash-points`
//!   feature is on).
//! - `crc32fast`: checksums of status block copies and redo records (SIMD CRC-32).
//! - `libc`: the `flock` call in the `sys` module (std's `File::try_lock`, stable since
//!   Rust 1.89 and so within the workspace's minimum of 1.90, would serve as well).
//! - `thiserror`: the typed, `#[non_exhaustive]` [`Error`] enum.
//!
//! Development only: `crash-point` again with `enabled` (so every test build has the
//! points and the SIGKILL tests run under plain `cargo test`), `proptest` (model test),
//! `tempfile` (scratch logs and segments), `libc` (the `SIGKILL` constant the crash tests
//! compare exit signals with), `criterion` (benchmarks).
#![deny(unsafe_code)]

mod disk;
mod epoch;
mod error;
mod log;
mod options;
mod range_tree;
mod record;
mod recovery;
mod replay;
mod rvm;
mod segment;
mod status;
mod sys;

#[cfg(feature = "mutants")]
mod mutant {
    //! Deliberately broken orderings for `crash-sim self-test` (feature `mutants`, off in
    //! every normal build). `LRVM_MUTANT` names the one in force; it is read once.
    pub(crate) fn is(name: &str) -> bool {
        static SELECTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        SELECTED.get_or_init(|| std::env::var("LRVM_MUTANT").unwrap_or_default()) == name
    }
}

pub use error::{Error, Result};
pub use options::{CommitMode, CreateMode, MapOptions, Options, RegionSpec, RestoreMode, Tunables};
pub use recovery::RecoveryReport;
pub use rvm::{create_log, RegionId, Rvm, Stats, Tid, MIN_LOG_LEN};

/// Every crash point this crate declares, for harnesses that enumerate them
/// (`CRASH_POINT=name:N`, see the `crash-point` crate).
///
/// - `lrvm.log.wrapped`: the first part of a log write that wraps around the end of the
///   record area is written, the rest is not (a torn record).
/// - `lrvm.log.written`: buffered records are written to the log file, not yet synced.
/// - `lrvm.log.synced`: the log is synced; the commit is not yet acknowledged.
/// - `lrvm.status.written`: a status block copy is written, not yet synced.
/// - `lrvm.status.synced`: the status block copy is synced.
/// - `lrvm.truncate.applied`: an epoch's values are written to the data segments, not
///   yet synced.
/// - `lrvm.truncate.data_synced`: the data segments are synced; the head has not moved.
/// - `lrvm.truncate.head_moved`: the status block with the new head is synced.
/// - `lrvm.recover.scanned`: recovery has read the log, nothing written yet.
/// - `lrvm.recover.applied`: recovered values are written to the segments, not synced.
/// - `lrvm.recover.data_synced`: the segments are synced; the status is not yet reset.
/// - `lrvm.recover.reset`: the status block saying "empty log" is synced.
pub const CRASH_POINTS: &[&str] = &[
    "lrvm.log.wrapped",
    "lrvm.log.written",
    "lrvm.log.synced",
    "lrvm.status.written",
    "lrvm.status.synced",
    "lrvm.truncate.applied",
    "lrvm.truncate.data_synced",
    "lrvm.truncate.head_moved",
    "lrvm.recover.scanned",
    "lrvm.recover.applied",
    "lrvm.recover.data_synced",
    "lrvm.recover.reset",
];

#[cfg(test)]
mod tests {
    /// `CRASH_POINTS` lists exactly the points the sources declare.
    #[test]
    fn crash_points_list_is_complete() {
        let sources = [
            include_str!("disk.rs"),
            include_str!("epoch.rs"),
            include_str!("log.rs"),
            include_str!("recovery.rs"),
            include_str!("replay.rs"),
            include_str!("rvm.rs"),
            include_str!("segment.rs"),
            include_str!("status.rs"),
        ];
        let needle = concat!("crash_point", "!(\"");
        let mut found: Vec<&str> = sources
            .iter()
            .flat_map(|s| {
                s.match_indices(needle)
                    .map(move |(i, _)| &s[i + needle.len()..])
            })
            .map(|rest| &rest[..rest.find('"').expect("closing quote")])
            .collect();
        found.sort_unstable();
        found.dedup();
        let mut listed = super::CRASH_POINTS.to_vec();
        listed.sort_unstable();
        assert_eq!(found, listed);
    }
}
