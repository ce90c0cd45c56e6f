//! The error type of vista.

use std::path::PathBuf;

/// Everything that can go wrong in vista.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A range does not lie in the segment's user space.
    #[error("range {offset}+{len} is outside the segment's {size} bytes")]
    OutOfRange {
        /// Start of the range (user-space offset).
        offset: u64,
        /// Its length.
        len: u64,
        /// Bytes of user space.
        size: u64,
    },
    /// The transaction's undo log has no room for another before-image. The
    /// transaction is still usable: commit or abort what it has.
    #[error(
        "undo log full: a {needed}-byte record does not fit in the {free} bytes left of {capacity}"
    )]
    UndoLogFull {
        /// Bytes the record needs.
        needed: u64,
        /// Bytes left.
        free: u64,
        /// The log's capacity.
        capacity: u64,
    },
    /// The segment file is damaged or is not a vista segment. Nothing was changed.
    #[error("{} is corrupt: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The segment is open elsewhere (this process or another). `path` is the segment
    /// file, or its memory image if the file was recreated while a segment of it was
    /// open.
    #[error("{} is locked by another open segment or group ({})", path.display(), holder_text(*pid))]
    Locked {
        /// The file.
        path: PathBuf,
        /// The process holding the lock (from `/proc/locks`); `None` if it could not be
        /// found.
        pid: Option<u32>,
    },
    /// The segment was written by an incompatible format version.
    #[error("{} has format version {found}, which this build does not read (it writes version {supported})", path.display())]
    IncompatibleVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
        /// The version this build writes (it reads some older ones too: a vista segment
        /// of version 1 is read and upgraded, docs/format.md, "Compatibility").
        supported: u32,
    },
    /// The options are invalid.
    #[error("invalid options: {0}")]
    InvalidOptions(String),
    /// The segment refuses work after an earlier failure (a failed checkpoint, or an
    /// abort that found a damaged undo log); reopen it to recover.
    #[error("segment is poisoned: {0}")]
    Poisoned(String),
    /// A transaction could not lock a range it reads or writes: another transaction
    /// held it for longer than the lock wait (see `Options::lock_wait`). Abort the
    /// transaction (dropping it does) and run it again; [`crate::Segment::transaction`]
    /// does this itself.
    #[error("range {offset}+{len} is locked by another transaction (waited the lock wait; abort and run again)")]
    Conflict {
        /// Start of the range the call asked for (a user-space offset).
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A checkpoint gave up: transactions stayed open for the whole checkpoint wait
    /// (see `Options::checkpoint_wait`). Nothing was written; the segment is not
    /// poisoned, and everything committed is still in the memory image (it survives a
    /// crash of the process) and reaches the disk with a later checkpoint. A transaction
    /// leaked with `mem::forget` makes every checkpoint, and so `close`, fail this way.
    #[error("checkpoint gave up after {waited:?}: transactions stayed open (a leaked or blocked transaction)")]
    CheckpointBusy {
        /// How long it waited.
        waited: std::time::Duration,
    },
    /// The range is held by this very thread: a [`crate::Bytes`] read guard of this
    /// thread covers it, or another transaction open on this thread holds it
    /// exclusively. Waiting would never end (the thread cannot release it while it
    /// waits), so the call fails at once, and `Segment::transaction` does not run the
    /// closure again. Drop the guard or end the other transaction first.
    #[error("range {offset}+{len} is held by this thread (a read guard, or another transaction open on it): waiting would never end; drop the guard or end that transaction first")]
    HeldByThisThread {
        /// Start of the range the call asked for (a user-space offset).
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// A read-only transaction ([`crate::Segment::begin_read`]) was asked to change
    /// `[offset, offset + len)` (or to allocate or free). Nothing was changed; the
    /// transaction stays usable for reading. Use [`crate::Segment::begin`] to change
    /// bytes.
    #[error("range {offset}+{len} cannot be changed in a read-only transaction (begin one with Segment::begin to write)")]
    ReadOnly {
        /// Start of the range (a user-space offset).
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// Every undo lane stayed in use by other transactions for the whole lane wait
    /// (see `Options::lane_wait`).
    #[error("all {lanes} undo lanes stayed busy for {waited:?}")]
    LanesBusy {
        /// Lanes in the segment.
        lanes: u32,
        /// How long the transaction waited.
        waited: std::time::Duration,
    },
    /// The segment's memory image is damaged or of another version, and may hold
    /// committed transactions that the segment file lacks; nothing was changed. Open
    /// with [`crate::Options::discard_image`] to start from the segment file instead.
    #[error(
        "memory image {} of {} is damaged ({reason}) and may hold transactions newer \
         than the segment file; nothing was changed (discard_image starts from the file)",
        image.display(),
        path.display()
    )]
    DamagedImage {
        /// The memory image.
        image: PathBuf,
        /// The segment file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A live memory image holds transactions of the segment that its file does not
    /// continue from (the file is empty, or was replaced by another file); nothing was
    /// changed. [`crate::Options::discard_image`] drops the image.
    #[error(
        "memory image {} holds a live copy of {} that cannot be used: {reason}; nothing \
         was changed (discard_image drops the image)",
        image.display(),
        path.display()
    )]
    LiveImage {
        /// The memory image.
        image: PathBuf,
        /// The segment file.
        path: PathBuf,
        /// Why the file does not continue from it.
        reason: String,
    },
    /// The heap has no free block of the requested size, and the segment has no room
    /// left to extend it. The transaction is still usable: free something, grow the
    /// segment, and retry, or commit or abort what it has.
    #[error("out of heap space: no free block of {requested} bytes")]
    OutOfSpace {
        /// Bytes requested.
        requested: u64,
    },
    /// An allocation larger than the heap's largest block, or aligned more strictly
    /// than a page. The transaction is still usable.
    #[error("cannot allocate {requested} bytes aligned to {align}: the limit is {max} bytes aligned to at most 4096")]
    AllocTooLarge {
        /// Bytes requested.
        requested: u64,
        /// Alignment requested.
        align: u64,
        /// The largest block the heap hands out.
        max: u64,
    },
    /// A heap handle that does not designate a live block of its type. Nothing was
    /// changed; the transaction is still usable.
    #[error("bad heap handle {offset:#x}: {reason}")]
    BadHandle {
        /// The handle's offset.
        offset: u64,
        /// What is wrong with it.
        reason: crate::identity::HandleError,
    },
    /// The root object exists with another type than the one asked for.
    #[error("the root object is {found}, not {wanted}")]
    RootMismatch {
        /// The root's recorded type.
        found: crate::identity::RootType,
        /// The type asked for.
        wanted: crate::identity::RootType,
    },
    /// The root object exists under another name, or with another size or alignment,
    /// than [`crate::Transaction::root_named`] or [`crate::Segment::root_named`] asked
    /// for. The message says what was found, what was asked for and what to do.
    #[error("{}", crate::identity::mismatch_text(found, wanted))]
    RootNameMismatch {
        /// The root the segment holds.
        found: Box<crate::identity::RootId>,
        /// The root asked for.
        wanted: Box<crate::identity::RootId>,
    },
    /// An index past the end of a [`crate::PVec`]. Nothing was changed.
    #[error("index {index} is out of bounds of a vector of {len} elements")]
    IndexOutOfBounds {
        /// The index asked for.
        index: u64,
        /// The vector's length.
        len: u64,
    },
    /// The heap's metadata is damaged (or user space holds data that is not a heap),
    /// found during an operation; [`crate::Segment::check`] reports the details.
    /// Nothing was changed by the refused operation.
    #[error("heap metadata is damaged: {0}")]
    HeapCorrupt(String),
    /// A heap or collection call of this transaction panicked part way, the panic was
    /// caught, and the transaction was then committed: what the call changed before it
    /// panicked cannot be told from the rest, so the commit rolled the whole transaction
    /// back instead.
    #[error(
        "a heap or collection call of this transaction panicked part way; \
         the transaction was rolled back, not committed"
    )]
    CallPanicked,
    /// An I/O error.
    #[error("{context}: {source}")]
    Io {
        /// What vista was doing.
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// [`crate::Segment::grow`] was asked for a length below the segment's: segments
    /// only grow. Nothing was written.
    #[error("cannot shrink a segment of {len} bytes to {requested}")]
    CannotShrink {
        /// The segment's length.
        len: u64,
        /// The length asked for.
        requested: u64,
    },
    /// [`crate::Segment::grow`] was asked for more than the largest segment with this
    /// segment's undo lanes. Nothing was written.
    #[error("a segment of {requested} bytes is larger than the largest, {max}")]
    TooLarge {
        /// The length asked for.
        requested: u64,
        /// The largest length.
        max: u64,
    },
    /// The segment holds an unfinished transaction across segments (or a group
    /// checkpoint) whose outcome its coordinator decides, and the coordinator cannot be
    /// read (moved, deleted, damaged, unreadable). The open refuses rather than guess,
    /// and wrote nothing. Put the coordinator back (or open the segment in its group)
    /// and open again.
    #[error("{}: an unfinished transaction across segments waits for the decision of coordinator {}, which cannot be read: {reason}", .path.display(), .coordinator.display())]
    CoordinatorUnavailable {
        /// The segment (or its journal).
        path: PathBuf,
        /// The coordinator its record names.
        coordinator: PathBuf,
        /// Why it could not be read.
        reason: String,
    },
    /// The segment holds transactions across segments that have not reached the disk
    /// with the rest of their group: only the group's checkpoint
    /// ([`crate::Group::checkpoint`]) may write it back, so that a power loss never
    /// shows half of one. Nothing was written; the commits stand in the memory image.
    #[error("this segment holds transactions across segments: only its group's checkpoint may write it back (open it in its group and call Group::checkpoint)")]
    GroupCheckpointRequired,
    /// The group was asked for a member it does not have.
    #[error("the group has {members} segments; there is no segment {index}")]
    NoSuchMember {
        /// The index asked for.
        index: usize,
        /// Segments in the group.
        members: usize,
    },
    /// Another error from the cache layer (cache directory, memory protection keys...).
    #[error(transparent)]
    Cache(rio_cache::Error),
}

/// How an [`Error::Locked`] message names the lock's holder.
fn holder_text(pid: Option<u32>) -> String {
    match pid {
        Some(p) if p == std::process::id() => format!("held by this process, {p}"),
        Some(p) => format!("held by process {p}"),
        None => "its holder could not be found".into(),
    }
}

/// A `Result` with vista's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<rio_cache::Error> for Error {
    fn from(e: rio_cache::Error) -> Self {
        use rio_cache::Error as R;
        match e {
            R::Locked { path, pid } => Error::Locked { path, pid },
            R::IncompatibleVersion {
                path,
                found,
                supported,
            } => Error::IncompatibleVersion {
                path,
                found,
                supported,
            },
            R::Corrupt { path, reason } => Error::Corrupt { path, reason },
            R::NotRioCache { path, reason } => Error::Corrupt {
                path,
                reason: format!("not a vista segment ({reason})"),
            },
            R::SizeMismatch {
                path,
                found,
                requested,
            } => Error::Corrupt {
                path,
                reason: format!("cache of {found} bytes where the header implies {requested}"),
            },
            R::DamagedImage {
                image,
                path,
                reason,
            } => Error::DamagedImage {
                image,
                path,
                reason,
            },
            R::LiveImage {
                image,
                path,
                reason,
            } => Error::LiveImage {
                image,
                path,
                reason,
            },
            R::Fenced => Error::GroupCheckpointRequired,
            R::GroupUnresolved {
                path,
                coordinator,
                epoch,
                reason,
            } => Error::CoordinatorUnavailable {
                path,
                coordinator,
                reason: format!("group checkpoint {epoch}: {reason}"),
            },
            R::Poisoned(why) => Error::Poisoned(why),
            R::CheckpointBusy { waited } => Error::CheckpointBusy { waited },
            R::Conflict { offset, len } => Error::Conflict { offset, len },
            R::HeldByThisThread { offset, len } => Error::HeldByThisThread { offset, len },
            R::ReadOnly { offset, len } => Error::ReadOnly { offset, len },
            R::Io { context, source } => Error::Io { context, source },
            other => Error::Cache(other),
        }
    }
}

impl Error {
    /// The error with the user range of the call that met it, where it names a range
    /// (the cache reports its own offsets).
    #[must_use]
    pub(crate) fn at_user_range(self, offset: u64, len: u64) -> Error {
        match self {
            Error::HeldByThisThread { .. } => Error::HeldByThisThread { offset, len },
            Error::Conflict { .. } => Error::Conflict { offset, len },
            Error::ReadOnly { .. } => Error::ReadOnly { offset, len },
            other => other,
        }
    }
}

/// Why the segment refuses work, once something has failed (shared by its
/// transactions).
#[derive(Debug, Default)]
pub(crate) struct Poison {
    why: std::sync::Mutex<Option<String>>,
    set: std::sync::atomic::AtomicBool,
}

impl Poison {
    /// `Err(Poisoned)` once poisoned.
    #[inline]
    pub(crate) fn check(&self) -> Result<()> {
        if self.set.load(std::sync::atomic::Ordering::Acquire) {
            return Err(self.error());
        }
        Ok(())
    }

    /// The error a poisoned segment returns (off the hot path).
    #[cold]
    #[inline(never)]
    fn error(&self) -> Error {
        let why = self
            .why
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_default();
        Error::Poisoned(why)
    }

    /// Poisons the segment (the first reason is kept).
    pub(crate) fn set(&self, why: String) {
        let mut w = self
            .why
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if w.is_none() {
            *w = Some(why);
        }
        self.set.store(true, std::sync::atomic::Ordering::Release);
    }
}
