//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in LRVM.
///
/// OS errors stay [`std::io::Error`] inside [`Error::Io`]; everything the library itself
/// detects (a damaged log, a bad argument, a misuse of a transaction) has its own variant.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call failed.
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),

    /// `create_log` with [`CreateMode::CreateNew`](crate::CreateMode::CreateNew) found a file.
    #[error("log file {0} already exists")]
    LogExists(PathBuf),

    /// The requested log length cannot hold the status area and one page of records.
    #[error("log length {len} is too small (minimum {min} bytes)")]
    LogTooSmall {
        /// Requested length.
        len: u64,
        /// Smallest accepted length.
        min: u64,
    },

    /// Neither status block copy starts with the LRVM magic: this is not an LRVM log.
    #[error("{0} is not an LRVM log (wrong magic)")]
    BadMagic(PathBuf),

    /// The log was written by an incompatible format version.
    #[error("unsupported log format version {0}")]
    UnsupportedVersion(u32),

    /// Both status block copies carry the magic but neither passes its checksum.
    #[error("both status block copies of {0} are damaged")]
    StatusBlockDamaged(PathBuf),

    /// The log file's length differs from the length recorded in its status block.
    #[error("log file is {actual} bytes but its status block says {expected}")]
    LogSizeMismatch {
        /// Length recorded at `create_log` time.
        expected: u64,
        /// Length of the file now.
        actual: u64,
    },

    /// A record inside the committed part of the log is damaged (not a torn tail: a valid
    /// record follows it), or refers to a segment the status block does not know.
    #[error("log corrupt at logical offset {offset}: {reason}")]
    CorruptLog {
        /// Logical log offset of the bad record.
        offset: u64,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// Another handle (in this or another process) holds the log's exclusive lock.
    #[error("log {0} is locked by another LRVM instance")]
    LogLocked(PathBuf),

    /// Another handle holds the data segment's exclusive lock.
    #[error("data segment {0} is locked by another LRVM instance")]
    SegmentLocked(PathBuf),

    /// The data segment file is shorter than the region and the map options do not allow
    /// extending it.
    #[error("data segment {path} is {len} bytes, region needs {needed}")]
    SegmentTooShort {
        /// The segment file.
        path: PathBuf,
        /// Its length.
        len: u64,
        /// The length the region needs (`offset + len`).
        needed: u64,
    },

    /// The region overlaps a region that is already mapped from the same segment.
    #[error("region overlaps an already mapped region of {0}")]
    RegionOverlap(PathBuf),

    /// A region of zero length, one whose end overflows, or one larger than the memory
    /// this process can allocate.
    #[error("invalid region: {0}")]
    InvalidRegion(&'static str),

    /// The segment table does not fit in the status block.
    #[error("too many data segments (their paths no longer fit in the status block)")]
    TooManySegments,

    /// The region id is not (or no longer) mapped.
    #[error("region {0} is not mapped")]
    UnknownRegion(u32),

    /// The transaction id is not open.
    #[error("transaction {0} is not open")]
    UnknownTransaction(u64),

    /// `set_range` outside the region.
    #[error("range {offset}+{len} is outside the region of {region_len} bytes")]
    RangeOutOfBounds {
        /// Requested offset.
        offset: u64,
        /// Requested length.
        len: u64,
        /// Region length.
        region_len: u64,
    },

    /// `abort_transaction` on a transaction begun with
    /// [`RestoreMode::NoRestore`](crate::RestoreMode::NoRestore). The transaction stays open.
    #[error("transaction {0} was begun in no-restore mode and cannot abort")]
    NoRestoreAbort(u64),

    /// `unmap` of a region that an open transaction has set a range in.
    #[error("region {0} has ranges in open transactions")]
    RegionBusy(u32),

    /// One transaction's redo record is larger than the whole log.
    #[error("transaction record of {len} bytes exceeds the log capacity of {capacity} bytes")]
    TransactionTooLarge {
        /// Record length.
        len: u64,
        /// Record area of the log.
        capacity: u64,
    },

    /// An option value is out of range.
    #[error("invalid option: {0}")]
    InvalidOption(&'static str),

    /// An earlier write or sync failed, or the background truncation failed; the handle
    /// refuses further work instead of pretending the log is intact. Reopen to recover.
    #[error("the instance is poisoned by an earlier failure: {0}")]
    Poisoned(String),
}

/// Shorthand for `Result<T, lrvm::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;
