//! A segment: opening, recovery, committed reads, checkpoints.

use std::ops::Deref;
use std::path::{Path, PathBuf};

use crash_point::crash_point;
use crossbeam_utils::Backoff;
use rio_cache::{RioCache, SharedCache, StartKind, Writeback};

use crate::error::{Error, Poison, Result};
use crate::lane::{self, LanePool};
use crate::layout::{Layout, FORMAT_VERSION, HEADER_LEN};
use crate::options::Options;
use crate::transaction::{Context, Transaction};

/// What recovery found when the segment was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Recovery {
    /// Lanes that held an unfinished transaction.
    pub lanes_rolled_back: u32,
    /// Before-images copied back.
    pub records_undone: u64,
    /// Lanes of transactions across segments that their coordinator had decided
    /// committed: kept, not rolled back.
    pub lanes_kept: u32,
}

/// A recoverable segment: a byte array whose committed contents survive crashes,
/// changed only through [`Transaction`]s.
///
/// A segment is `Send + Sync`: any number of threads may run transactions on it at
/// once (through `&Segment`, an `Arc<Segment>` or scoped threads). Each running
/// transaction owns one undo lane and locks what it touches; see the crate docs.
#[derive(Debug)]
pub struct Segment {
    cache: SharedCache,
    layout: Layout,
    path: PathBuf,
    lanes: LanePool,
    poison: Poison,
    retries: u32,
    recovery: Recovery,
}

impl Segment {
    /// Opens the segment at `path`, creating it if absent, and recovers it: an
    /// unfinished transaction left by a crash is rolled back before this returns.
    ///
    /// `opts.size`, `undo_log_size` and `lanes` shape a new segment; an existing one
    /// keeps its own shape.
    ///
    /// A refused open writes nothing and creates nothing: the segment file and its
    /// journal are left byte for byte as they were, a memory image keeps everything it
    /// held, and no memory image or journal is made. A `Corrupt` error's path is the
    /// damaged copy (the file, the memory image or the journal).
    ///
    /// # Errors
    /// [`Error::Locked`] if the segment (or its memory image) is open elsewhere;
    /// [`Error::Corrupt`] or [`Error::IncompatibleVersion`] for a damaged or foreign
    /// file or memory image; [`Error::DamagedImage`] or [`Error::LiveImage`] for a memory
    /// image that may hold committed transactions the file lacks but cannot be used
    /// (see [`Options::discard_image`]); [`Error::InvalidOptions`]; [`Error::Cache`]
    /// for the cache directory or protection keys; I/O errors.
    pub fn open(path: impl AsRef<Path>, opts: &Options) -> Result<Segment> {
        // Resolved (absolute, symlinks followed; `rio_cache::resolve_path`): the fence
        // file a group makes beside the segment, and the files the cache names, are then
        // the same whatever the spelling and the working directory. The cache is opened
        // by the path as given (it resolves it the same way, and takes over the files
        // an older build named after a symlink: `RioCache::open`).
        let given = path.as_ref();
        let path = rio_cache::resolve_path(given)?;
        let existed = Existed {
            disk: path.exists(),
            journal: rio_cache::journal_path(&path).exists(),
        };
        let (total, new_layout) = match rio_cache::existing_size(&path)? {
            Some(total) => {
                // Damage the open would refuse is refused before anything is created.
                crate::admission::admit(&path, opts)?;
                (total, None)
            }
            None => {
                let l = Layout::for_options(opts)?;
                (l.total().expect("checked by for_options"), Some(l))
            }
        };
        // Manual writeback until the contents are accepted: no background checkpoint
        // may copy what this open is about to refuse.
        let mut cache = RioCache::open(given, &opts.rio(total).writeback(Writeback::Manual))?;
        let refuse = |cache: RioCache, e: Error| {
            // A refused open writes nothing: not even the close-time checkpoint may
            // carry the refused state (an unfinished transaction, a damaged log) to the
            // disk image or the journal. A new segment's files go (under its lock).
            cache.poison(format!("refused at open: {e}"));
            if new_layout.is_some() {
                existed.put_back(&path, &opts.rio(1).resolved_cache_dir());
            }
            drop(cache);
            e
        };
        // A segment with transactions across segments not yet written back by its
        // group's checkpoint stays fenced (see `crate::group`): before any writeback.
        let fenced = match std::fs::metadata(fence_path(&path)) {
            Ok(_) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => {
                let context = format!("stat {}", fence_path(&path).display());
                return Err(refuse(cache, Error::Io { context, source: e }));
            }
        };
        cache.set_fenced(fenced);
        let (layout, recovery) = match accept(&mut cache, opts, new_layout, total, &path) {
            Ok(v) => v,
            Err(e) => return Err(refuse(cache, e)),
        };
        cache.set_writeback(opts.writeback)?;
        // Each lane's bytes are claimed by the transaction that owns the lane: its
        // records and tail need no range locks.
        let lanes_end = layout.lane_off(layout.lanes);
        let (cache, claims) =
            SharedCache::with_claims(cache, layout.lanes_off..lanes_end, u64::from(layout.lanes))?;
        Ok(Segment {
            cache: cache.lock_wait(opts.lock_wait),
            lanes: LanePool::new(&layout, claims, opts.lane_wait),
            layout,
            path,
            poison: Poison::default(),
            retries: opts.retries,
            recovery,
        })
    }

    /// Deletes a segment's files: the segment file, its journal, its memory image (in
    /// `opts`' cache directory) and its fence, if it has one. Missing files are not an
    /// error. Without this, a memory image stays in the cache directory after the segment
    /// file is deleted.
    ///
    /// It takes the segment's locks first and holds them while it deletes, so a segment
    /// open anywhere (this process included) is refused with [`Error::Locked`] and
    /// nothing is deleted; the fence goes last, so an open that starts once the files are
    /// gone never finds a stale one.
    ///
    /// # Errors
    /// [`Error::Locked`] if the segment is open; I/O errors other than "not found".
    pub fn remove(path: impl AsRef<Path>, opts: &Options) -> Result<()> {
        let path = &rio_cache::resolve_path(path.as_ref())?;
        let cache_dir = opts.rio(1).resolved_cache_dir();
        Ok(rio_cache::remove_closed_with(
            path,
            &cache_dir,
            &[&fence_path(path)],
        )?)
    }

    /// The segment's cache (for `crate::group`).
    pub(crate) fn shared(&self) -> &SharedCache {
        &self.cache
    }

    /// `Options::retries` as the segment was opened with.
    pub(crate) fn retries(&self) -> u32 {
        self.retries
    }

    /// The segment's poison (for `crate::group`).
    pub(crate) fn poison_state(&self) -> &Poison {
        &self.poison
    }

    /// Whether the segment is fenced: it holds transactions across segments that only
    /// its group's checkpoint may write back (see [`crate::Group`]); its own checkpoints
    /// fail with [`Error::GroupCheckpointRequired`] meanwhile.
    pub fn is_fenced(&self) -> bool {
        self.cache.is_fenced()
    }

    /// Starts a transaction in a free undo lane, waiting for one if every lane is in
    /// use (up to `Options::lane_wait`). Any number of threads may begin transactions
    /// at once; each holds its lane and its range locks until it ends.
    ///
    /// # Errors
    /// [`Error::Poisoned`] after a failed checkpoint or abort; [`Error::LanesBusy`].
    // Always inlined: the transaction value is then built (or consumed) in the
    // caller's frame instead of moved, about 50 instructions a transaction
    // (docs/benchmarks.md, "Hot path").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub fn begin(&self) -> Result<Transaction<'_>> {
        self.begin_with(|tx| tx)
    }

    /// [`Segment::begin`] into `slot` (empty): the transaction is built in place, for
    /// [`Segment::transaction`]'s loop (see `retry::run`).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn begin_into<'a>(&'a self, slot: &mut Option<Transaction<'a>>) -> Result<()> {
        self.begin_with(|tx| *slot = Some(tx))
    }

    /// Begins a transaction and hands it to `place` (always inlined with it, so that the
    /// transaction is built where `place` puts it).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn begin_with<'a, R>(&'a self, place: impl FnOnce(Transaction<'a>) -> R) -> Result<R> {
        self.poison.check()?;
        let mut lane = self.lanes.take()?;
        let claim = lane
            .claim
            .take()
            .expect("a lane is handed out with its claim");
        match self.cache.update_holding(&lane.memo, claim) {
            Ok(update) => Ok(place(Transaction::new(update, lane, self.context()))),
            Err((e, claim)) => {
                lane.claim = Some(claim);
                self.lanes.give_back(lane);
                Err(e.into())
            }
        }
    }

    /// Starts a read-only transaction: it reads as a transaction does (each range it
    /// reads is locked shared until it ends, so it sees committed bytes only and a
    /// consistent state across all its reads), but it takes no undo lane and does not
    /// hold checkpoints off, which makes it the cheap way to read: a collection's
    /// lookup (`PHashMap::get`, `PVec::get`, ...) takes `&Transaction`, so it runs in
    /// one. Every call that would change bytes, allocate or free fails with
    /// [`Error::ReadOnly`]. Like [`Segment::read`]'s guard, it counts as a read guard of
    /// this thread: a transaction of this thread that wants to change a range it holds
    /// fails at once with [`Error::HeldByThisThread`].
    ///
    /// # Errors
    /// [`Error::Poisoned`] after a failed checkpoint or abort.
    #[inline]
    pub fn begin_read(&self) -> Result<Transaction<'_>> {
        self.poison.check()?;
        let reader = self.cache.reader()?;
        Ok(Transaction::reader(reader, self.context()))
    }

    /// Runs `f` in a read-only transaction ([`Segment::begin_read`]) and returns its
    /// result. `f` gets `&Transaction`, so it can only read. It runs again on a conflict
    /// by the rule of [`Segment::transaction`].
    ///
    /// # Errors
    /// `f`'s error, or a vista error from [`Segment::begin_read`].
    pub fn read_transaction<T, E>(
        &self,
        mut f: impl FnMut(&Transaction<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        crate::retry::run(
            self.retries,
            |slot| {
                *slot = Some(self.begin_read()?);
                Ok(())
            },
            |tx| f(tx),
        )
    }

    #[inline]
    fn context(&self) -> Context<'_> {
        Context {
            layout: &self.layout,
            lanes: &self.lanes,
            poison: &self.poison,
            path: &self.path,
        }
    }

    /// Runs `f` in a transaction: commits if it returns `Ok`, aborts if it returns
    /// `Err` or panics (the panic then continues).
    ///
    /// **When `f` runs again.** If `f` returns `Err` and the last call it made on the
    /// transaction that reads or changes bytes (`read`, `get`, `write`, `put`,
    /// `set_range`, `get_mut`, `alloc`, `free`, ...) failed with [`Error::Conflict`],
    /// the transaction is aborted and `f` runs again in a new one, after a backoff, up
    /// to `Options::retries` times (default [`crate::DEFAULT_RETRIES`]); after that, its
    /// error is returned. So `f` runs again when it passes a conflict on (with `?`),
    /// and not when it handled the conflict and went on: a conflict followed by a call
    /// that succeeded (the same call tried again, or another range) does not count, and
    /// `f`'s own error is then returned at once. `f` is an `FnMut` because it may run
    /// several times: each run must start from scratch, and nothing it made in an
    /// aborted run may escape it (heap handles allocated there point to freed blocks;
    /// return values only through `Ok`).
    ///
    /// # Errors
    /// `f`'s error, or a vista error from begin or commit.
    pub fn transaction<T, E>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        crate::retry::run(self.retries, |slot| self.begin_into(slot), f)
    }

    /// The committed bytes `[offset, offset + len)` of user space, locked against
    /// change until the returned guard drops (transactions that want to change them
    /// wait meanwhile). It never shows a transaction's uncommitted bytes. A range held
    /// by a running transaction is waited for, with retries as in
    /// [`Segment::transaction`].
    ///
    /// Do not hold the guard while this thread runs a transaction that changes the
    /// range: that transaction's change fails at once with [`Error::HeldByThisThread`]
    /// (waiting for a guard its own thread holds would never end).
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::Conflict`] after the retries;
    /// [`Error::HeldByThisThread`] if a transaction open on this thread holds part of the
    /// range exclusively; [`Error::Poisoned`].
    pub fn read(&self, offset: u64, len: u64) -> Result<Bytes<'_>> {
        self.poison.check()?;
        let at = self.layout.user_range(offset, len)?;
        let backoff = Backoff::new();
        let mut attempt = 0;
        loop {
            match self.cache.read(at, len) {
                Ok(bytes) => return Ok(Bytes(bytes)),
                Err(rio_cache::Error::Conflict { .. }) if attempt < self.retries => {
                    attempt += 1;
                    backoff.snooze();
                }
                Err(e) => return Err(Error::from(e).at_user_range(offset, len)),
            }
        }
    }

    /// Reads a plain-old-data value at `offset`.
    ///
    /// # Errors
    /// As [`Segment::read`].
    pub fn get<T: bytemuck::AnyBitPattern>(&self, offset: u64) -> Result<T> {
        let b = self.read(offset, std::mem::size_of::<T>() as u64)?;
        Ok(bytemuck::pod_read_unaligned(&b))
    }

    /// Bytes of user space; offsets are `0..len`.
    pub fn len(&self) -> u64 {
        self.layout.user_len
    }

    /// Always `false`: a segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.layout.user_len == 0
    }

    /// Grows user space to `new_len` bytes in place: the memory image, the disk image
    /// and the header, in one crash-atomic step. Offsets (and so every handle, which is
    /// an offset) stay valid; the bytes already there keep their contents and the new
    /// ones read as zero. A `new_len` equal to the length does nothing.
    ///
    /// A crash or a power loss at any point leaves the segment at the old length or at
    /// the new one, never in between: the header that records the length is written in
    /// the same rio-cache journal batch that commits the cache's new size
    /// ([`rio_cache::RioCache::grow_with`]). Growing starts with a checkpoint and ends
    /// with the new length durable on disk. After a crash inside a grow the next open
    /// starts cold (from the disk image, which holds everything committed before the
    /// grow). It takes time in the segment's size: the memory image is rebuilt.
    ///
    /// Takes `&mut self`, so no transaction, [`Bytes`] guard or other borrow of the
    /// segment can be alive: growing replaces the mappings, and a slice into the old
    /// ones would dangle. (Reserving address space up front would let a grow run from
    /// `&self`, but the memory image's layout moves its data when its dirty maps grow,
    /// and every running transaction would have to be stopped for the copy anyway; a
    /// program that shares the segment through an `Arc` grows it between phases.)
    ///
    /// # Errors
    /// [`Error::CannotShrink`]; [`Error::TooLarge`]; [`Error::Poisoned`];
    /// [`Error::GroupCheckpointRequired`] for a fenced member of a group;
    /// [`Error::CheckpointBusy`] if its first checkpoint gave up (none of these writes
    /// anything). I/O errors, after which the segment is poisoned: reopen it, and it is
    /// at the old or the new length.
    pub fn grow(&mut self, new_len: u64) -> Result<()> {
        self.poison.check()?;
        let len = self.layout.user_len;
        if new_len < len {
            return Err(Error::CannotShrink {
                len,
                requested: new_len,
            });
        }
        if new_len == len {
            return Ok(());
        }
        let layout = Layout {
            user_len: new_len,
            ..self.layout
        };
        let too_large = |max: u64| Error::TooLarge {
            requested: new_len,
            max: max.saturating_sub(layout.user_off),
        };
        let total = layout
            .total()
            .ok_or_else(|| too_large(rio_cache::MAX_DATA_LEN))?;
        match self.cache.grow_with(total, &[(0, &layout.encode())]) {
            Ok(()) => {}
            Err(rio_cache::Error::TooLarge { max, .. }) => return Err(too_large(max)),
            Err(e) => return Err(e.into()),
        }
        self.layout = layout;
        Ok(())
    }

    /// Makes everything committed so far durable on disk (it survives power loss).
    /// Waits for the transactions running now to end (at most `Options::checkpoint_wait`);
    /// transactions that begin meanwhile wait only for those to end, never for the copy
    /// of the dirty pages (it is copy-on-write) or the disk writes.
    ///
    /// # Errors
    /// I/O errors, after which the segment is poisoned; [`Error::Cache`] if this thread
    /// has a transaction of this segment open (the checkpoint would wait for it
    /// forever); [`Error::CheckpointBusy`] if other threads' transactions stayed open for
    /// the whole checkpoint wait (nothing written); [`Error::GroupCheckpointRequired`]
    /// for a fenced member of a group (nothing written); [`Error::Poisoned`].
    pub fn checkpoint(&self) -> Result<()> {
        self.poison.check()?;
        Ok(self.cache.checkpoint()?)
    }

    /// Undo lanes: at most this many transactions run at once.
    pub fn lanes(&self) -> u32 {
        self.layout.lanes
    }

    /// What recovery did when the segment was opened.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// How the memory image was found (warm: nothing lost; cold: loaded from the last
    /// checkpoint).
    pub fn start_kind(&self) -> StartKind {
        self.cache.start_kind()
    }

    /// The protection in force.
    pub fn protection(&self) -> rio_cache::ActiveProtection {
        self.cache.protection()
    }

    /// Capacity in bytes of a transaction's undo log.
    pub fn undo_log_capacity(&self) -> u64 {
        self.layout.lane_capacity()
    }

    /// The underlying cache's counters.
    pub fn cache_stats(&self) -> rio_cache::Stats {
        self.cache.stats()
    }

    /// The segment file, resolved when it was opened (absolute, symlinks followed; see
    /// `rio_cache::resolve_path`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the segment, taking a final checkpoint and reporting its errors.
    ///
    /// # Errors
    /// As [`Segment::checkpoint`]: in particular
    /// [`Error::GroupCheckpointRequired`] for a fenced segment (it holds transactions
    /// across segments that only its group's checkpoint may write back; close it with
    /// [`crate::Group::close`]): nothing was checkpointed, and its memory image keeps
    /// every commit, so a process crash loses nothing, but a power loss before its
    /// group's checkpoint would.
    pub fn close(self) -> Result<()> {
        Ok(self.cache.close()?)
    }

    /// [`Segment::transaction`], then a checkpoint: on `Ok` the transaction survives
    /// power loss, as with [`Transaction::commit_durable`].
    ///
    /// # Errors
    /// As [`Segment::transaction`]; as [`Segment::checkpoint`] (the commit then
    /// stands, durable only once a later checkpoint succeeds).
    pub fn transaction_durable<T, E>(
        &self,
        f: impl FnMut(&mut Transaction<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        let value = self.transaction(f)?;
        self.checkpoint()?;
        Ok(value)
    }
}

/// Which of a segment's files existed before an open of a new segment (an absent or
/// empty file) began: what [`Existed::put_back`] restores if the open fails after the
/// cache made them.
struct Existed {
    disk: bool,
    journal: bool,
}

impl Existed {
    /// Leaves the files as the open found them: the segment file removed (or emptied,
    /// if it existed empty), the journal removed if it did not exist, the memory image
    /// removed. The caller still holds the cache, and so its locks. Failures are
    /// ignored: the open's own error is the one to report, and an absent or empty file
    /// is what the next open treats as new either way.
    fn put_back(&self, path: &Path, cache_dir: &Path) {
        let _ = if self.disk {
            std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|f| f.set_len(0))
        } else {
            std::fs::remove_file(path)
        };
        if !self.journal {
            let _ = std::fs::remove_file(rio_cache::journal_path(path));
        }
        if let Ok(image) = rio_cache::image_path(path, cache_dir) {
            let _ = std::fs::remove_file(image);
        }
    }
}

/// Reads and checks the segment header (initializing a new segment's), then recovers.
/// Writes only the memory image (and, for a new segment, its first checkpoint).
fn accept(
    cache: &mut RioCache,
    opts: &Options,
    new_layout: Option<Layout>,
    total: u64,
    path: &Path,
) -> Result<(Layout, Recovery)> {
    let header: [u8; HEADER_LEN] = cache
        .read(0, HEADER_LEN as u64)?
        .try_into()
        .expect("HEADER_LEN bytes");
    let layout = if header.iter().all(|&b| b == 0) {
        // A new cache, or one whose creation was interrupted before its header was
        // checkpointed: initialize it, but only if nothing at all was written.
        if cache.start_kind() != StartKind::Created && cache.as_slice()?.iter().any(|&b| b != 0) {
            return Err(Error::Corrupt {
                path: path.to_owned(),
                reason: "the header is zero but the segment holds data".into(),
            });
        }
        let layout = match new_layout {
            Some(l) => l,
            None => {
                // Interrupted creation: recompute the shape from the options.
                let l = Layout::for_options(opts)?;
                if l.total() != Some(total) {
                    return Err(Error::Corrupt {
                        path: path.to_owned(),
                        reason: "uninitialized segment of another size than the options".into(),
                    });
                }
                l
            }
        };
        let mut u = cache.update()?;
        u.window(0, HEADER_LEN as u64)?
            .copy_from_slice(&layout.encode());
        // The header must be on disk before the segment is used, or a power loss
        // would leave a cache that no longer says what it is.
        u.checkpoint()?;
        layout
    } else {
        match Layout::decode(&header, total) {
            Ok(l) => l,
            Err(Ok(found)) => {
                return Err(Error::IncompatibleVersion {
                    path: path.to_owned(),
                    found,
                    supported: FORMAT_VERSION,
                })
            }
            Err(Err(reason)) => {
                return Err(Error::Corrupt {
                    path: path.to_owned(),
                    reason,
                })
            }
        }
    };
    let recovery = recover(cache, &layout, path, &opts.faults)?;
    let layout = upgrade(cache, layout)?;
    Ok((layout, recovery))
}

/// Upgrades a segment of an older format version to [`FORMAT_VERSION`] once recovery has
/// emptied every lane: the header says the new version from now on, and new records are
/// checksummed by its rule (see `crate::undo`). No record of the old rule is left to be
/// read by the new one: every lane is empty here, and a checkpoint (the only way the new
/// header reaches the disk image) copies no record written before it. Until one does, the
/// disk image keeps the old header with its lanes, which read as before. A layout already
/// in the current version, or a lane still holding records (never after a recovery),
/// leaves the segment as it is: its records then keep the rule of its version.
fn upgrade(cache: &mut RioCache, layout: Layout) -> Result<Layout> {
    if layout.version == FORMAT_VERSION {
        return Ok(layout);
    }
    for lane in 0..layout.lanes {
        if cache.read(layout.lane_off(lane), 8)? != [0; 8] {
            return Ok(layout);
        }
    }
    let upgraded = Layout {
        version: FORMAT_VERSION,
        ..layout
    };
    // Only the version (bytes 8..12) and the checksum (60..64) change. Each is written
    // with one atomic 8-byte store, the checksum's word first: a crash between the two
    // leaves version 1 with the version-2 checksum, which `Layout::decode` reads as
    // version 1 (an upgrade cut short, its lanes empty); a copy of the 64 bytes could
    // instead leave a torn checksum that no open would accept.
    let header = upgraded.encode();
    let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
    let mut u = cache.update()?;
    u.store_u64(56, word(56))?;
    crash_point!("vista.upgrade.checksum_stored");
    u.store_u64(8, word(8))?;
    Ok(upgraded)
}

/// The file beside the segment at `path` (`<path>.fence`) whose presence fences it: a
/// member of a [`crate::Group`] holding transactions across segments that only the
/// group's checkpoint may write back. [`Segment::remove`] and `vista remove` delete it
/// with the segment; left behind, it would make a new segment created at `path` start
/// fenced.
pub fn fence_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".fence");
    PathBuf::from(p)
}

/// Committed bytes read from a segment, locked against change until dropped. See
/// [`Segment::read`]; it derefs to `[u8]` and compares with byte slices and arrays.
///
/// Not `Send` (drop it on the thread that read it: its hold is listed in that thread's
/// record, see [`rio_cache::Locked`]); `Sync`.
///
/// ```compile_fail
/// fn send<T: Send>(_: T) {}
/// fn bytes_are_not_send(b: vista::Bytes<'static>) {
///     send(b);
/// }
/// ```
#[derive(Debug)]
pub struct Bytes<'a>(rio_cache::Locked<'a>);

impl Deref for Bytes<'_> {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl PartialEq<[u8]> for Bytes<'_> {
    fn eq(&self, other: &[u8]) -> bool {
        **self == *other
    }
}

impl PartialEq<&[u8]> for Bytes<'_> {
    fn eq(&self, other: &&[u8]) -> bool {
        **self == **other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for Bytes<'_> {
    fn eq(&self, other: &[u8; N]) -> bool {
        **self == other[..]
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for Bytes<'_> {
    fn eq(&self, other: &&[u8; N]) -> bool {
        **self == other[..]
    }
}

impl PartialEq<Vec<u8>> for Bytes<'_> {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == other[..]
    }
}

/// Rolls back every lane that holds an unfinished transaction. Validates all lanes
/// before writing anything, so a damaged log leaves the segment untouched.
fn recover(
    cache: &mut RioCache,
    layout: &Layout,
    path: &Path,
    faults: &rio_cache::Faults,
) -> Result<Recovery> {
    let mut update = cache.update()?;
    let mut pending = Vec::new();
    for lane in 0..layout.lanes {
        let (records, tag) = match lane::records_tagged(&update, layout, lane, path) {
            Ok(r) => r,
            Err(e) => {
                // Keep the close-time checkpoint from writing the damaged state to disk.
                update.poison(e.to_string());
                return Err(e);
            }
        };
        let tail = update.read(layout.lane_off(lane), 8)?;
        if tail != [0; 8] {
            pending.push((lane, records, tag));
        }
    }
    // A lane of a transaction across segments is kept if its coordinator decided the
    // transaction, else undone. Every coordinator is asked before anything is written.
    let mut keep = Vec::with_capacity(pending.len());
    for (_, _, tag) in &pending {
        keep.push(match tag {
            None => false,
            Some(tag) => match crate::group::decided(tag, faults) {
                Ok(k) => k,
                Err(reason) => {
                    let e = Error::CoordinatorUnavailable {
                        path: path.to_owned(),
                        coordinator: tag.coordinator.clone(),
                        reason,
                    };
                    update.poison(e.to_string());
                    return Err(e);
                }
            },
        });
    }
    crash_point!("vista.recover.validated");
    let mut report = Recovery::default();
    for ((lane, records, _), keep) in pending.iter().zip(keep) {
        if keep {
            // Committed: the log is emptied without undoing anything.
            update.store_u64(layout.lane_off(*lane), 0)?;
            report.lanes_kept += 1;
            continue;
        }
        #[cfg(feature = "mutants")]
        if *lane > 0 && crate::mutant::is("recover-lane0-only") {
            continue; // Mutant: the lanes of other threads' transactions stay as they are.
        }
        #[cfg(feature = "mutants")]
        let records = if crate::mutant::is("recover-skip-newest") {
            &records[..records.len().saturating_sub(1)] // Mutant: the newest is not undone.
        } else {
            &records[..]
        };
        lane::roll_back(
            &mut update,
            layout,
            *lane,
            records,
            ("vista.recover.partial", "vista.recover.applied"),
        )?;
        report.lanes_rolled_back += 1;
        report.records_undone += records.len() as u64;
    }
    drop(update);
    if !pending.is_empty() {
        crash_point!("vista.recover.done");
    }
    Ok(report)
}
