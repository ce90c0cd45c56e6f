//! A segment: opening, recovery, committed reads, checkpoints.

use std::path::{Path, PathBuf};

use crash_point::crash_point;
use rio_cache::{RioCache, StartKind, Update, Writeback};

use crate::error::{Error, Result};
use crate::layout::{Layout, FORMAT_VERSION, HEADER_LEN};
use crate::options::Options;
use crate::transaction::Transaction;
use crate::undo::{self, Record};

/// What recovery found when the segment was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Recovery {
    /// Lanes that held an unfinished transaction.
    pub lanes_rolled_back: u32,
    /// Before-images copied back.
    pub records_undone: u64,
}

/// A recoverable segment: a byte array whose committed contents survive crashes,
/// changed only through [`Transaction`]s.
#[derive(Debug)]
pub struct Segment {
    pub(crate) cache: RioCache,
    pub(crate) layout: Layout,
    path: PathBuf,
    /// Ranges logged by the transaction in progress (reused to avoid allocating).
    pub(crate) logged: Vec<(u64, u64)>,
    /// Where undo records are assembled when they are written through the memory image
    /// (under `mprotect`; reused to avoid allocating).
    pub(crate) scratch: Vec<u8>,
    pub(crate) poisoned: Option<String>,
    recovery: Recovery,
}

impl Segment {
    /// Opens the segment at `path`, creating it if absent, and recovers it: an
    /// unfinished transaction left by a crash is rolled back before this returns.
    ///
    /// `opts.size`, `undo_log_size` and `lanes` shape a new segment; an existing one
    /// keeps its own shape.
    ///
    /// A refused open writes nothing: the segment file and its journal are left byte
    /// for byte as they were, and a memory image keeps everything it held.
    ///
    /// # Errors
    /// [`Error::Locked`] if the segment (or its memory image) is open elsewhere;
    /// [`Error::Corrupt`] or [`Error::IncompatibleVersion`] for a damaged or foreign
    /// file or memory image; [`Error::DamagedImage`] or [`Error::LiveImage`] for a memory
    /// image that may hold committed transactions the file lacks but cannot be used
    /// (see [`Options::discard_image`]); [`Error::InvalidOptions`]; [`Error::Cache`]
    /// for the cache directory or protection keys; I/O errors.
    pub fn open(path: impl AsRef<Path>, opts: &Options) -> Result<Segment> {
        let path = path.as_ref().to_owned();
        let (total, new_layout) = match rio_cache::existing_size(&path)? {
            Some(total) => (total, None),
            None => {
                let l = Layout::for_options(opts)?;
                (l.total().expect("checked by for_options"), Some(l))
            }
        };
        // Manual writeback until the contents are accepted: no background checkpoint
        // may copy what this open is about to refuse.
        let mut cache = RioCache::open(&path, &opts.rio(total).writeback(Writeback::Manual))?;
        let (layout, recovery) = match accept(&mut cache, opts, new_layout, total, &path) {
            Ok(v) => v,
            Err(e) => {
                // A refused open writes nothing: not even the close-time checkpoint may
                // carry the refused state (an unfinished transaction, a damaged log)
                // to the disk image or the journal.
                cache.poison(format!("refused at open: {e}"));
                return Err(e);
            }
        };
        cache.set_writeback(opts.writeback)?;
        Ok(Segment {
            cache,
            layout,
            path,
            logged: Vec::new(),
            scratch: Vec::new(),
            poisoned: None,
            recovery,
        })
    }

    /// Deletes a segment's files: the segment file, its checkpoint journal and its memory
    /// image (in `opts`' cache directory). Missing files are not an error. The segment
    /// must not be open. Without this, a memory image stays in the cache directory after
    /// the segment file is deleted.
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn remove(path: impl AsRef<Path>, opts: &Options) -> Result<()> {
        Ok(rio_cache::remove(path, &opts.rio(1))?)
    }

    /// Starts a transaction. Only one runs at a time (it borrows the segment).
    ///
    /// # Errors
    /// [`Error::Poisoned`] after a failed checkpoint or abort.
    pub fn begin(&mut self) -> Result<Transaction<'_>> {
        if let Some(why) = &self.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        self.logged.clear();
        let update = self.cache.update()?;
        Ok(Transaction::new(
            update,
            &self.layout,
            &mut self.logged,
            &mut self.scratch,
            &mut self.poisoned,
            &self.path,
        ))
    }

    /// Runs `f` in a transaction: commits if it returns `Ok`, aborts if it returns
    /// `Err` or panics (the panic then continues).
    ///
    /// # Errors
    /// `f`'s error, or a vista error from begin or commit.
    pub fn transaction<T, E>(
        &mut self,
        f: impl FnOnce(&mut Transaction<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        let mut tx = self.begin()?;
        match f(&mut tx) {
            Ok(v) => {
                tx.commit()?;
                Ok(v)
            }
            Err(e) => {
                // `f`'s error is what the caller needs; if the abort fails too, the
                // segment is poisoned and the next `begin` reports why.
                let _ = tx.abort();
                Err(e)
            }
        }
    }

    /// The committed bytes `[offset, offset + len)` of user space.
    ///
    /// # Errors
    /// [`Error::OutOfRange`].
    pub fn read(&self, offset: u64, len: u64) -> Result<&[u8]> {
        let at = check_range(&self.layout, offset, len)?;
        Ok(self.cache.read(at, len)?)
    }

    /// Reads a plain-old-data value at `offset`.
    ///
    /// # Errors
    /// [`Error::OutOfRange`].
    pub fn get<T: bytemuck::AnyBitPattern>(&self, offset: u64) -> Result<T> {
        let b = self.read(offset, std::mem::size_of::<T>() as u64)?;
        Ok(bytemuck::pod_read_unaligned(b))
    }

    /// Bytes of user space; offsets are `0..len`.
    pub fn len(&self) -> u64 {
        self.layout.user_len
    }

    /// Always `false`: a segment has at least one byte.
    pub fn is_empty(&self) -> bool {
        self.layout.user_len == 0
    }

    /// Makes everything committed so far durable on disk (it survives power loss).
    ///
    /// # Errors
    /// I/O errors, after which the segment is poisoned.
    pub fn checkpoint(&self) -> Result<()> {
        Ok(self.cache.checkpoint()?)
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

    /// The segment file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the segment, taking a final checkpoint and reporting its errors.
    ///
    /// # Errors
    /// As [`Segment::checkpoint`].
    pub fn close(self) -> Result<()> {
        Ok(self.cache.close()?)
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
        if cache.start_kind() != StartKind::Created && cache.as_slice().iter().any(|&b| b != 0) {
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
    let recovery = recover(cache, &layout, path)?;
    Ok((layout, recovery))
}

/// Converts a user-space range to a cache offset, refusing anything outside it.
pub(crate) fn check_range(layout: &Layout, offset: u64, len: u64) -> Result<u64> {
    match offset.checked_add(len) {
        Some(end) if end <= layout.user_len => Ok(layout.user_off + offset),
        _ => Err(Error::OutOfRange {
            offset,
            len,
            size: layout.user_len,
        }),
    }
}

/// The published records of lane `i`, validated.
pub(crate) fn lane_records(
    update: &Update<'_>,
    layout: &Layout,
    lane: u32,
    path: &Path,
) -> Result<Vec<Record>> {
    let bytes = update.read(layout.lane_off(lane), layout.lane_size)?;
    let tail = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    undo::parse(bytes, tail, layout).map_err(|reason| Error::Corrupt {
        path: path.to_owned(),
        reason: format!("undo lane {lane}: {reason}"),
    })
}

/// Copies a lane's before-images back, newest first, then empties the lane with one
/// atomic store. `point` names the crash points (`<point>.partial` after each record,
/// `<point>.applied` before the store).
pub(crate) fn roll_back(
    update: &mut Update<'_>,
    layout: &Layout,
    lane: u32,
    records: &[Record],
    point: (&'static str, &'static str),
) -> Result<()> {
    let lane_off = layout.lane_off(lane);
    #[cfg(feature = "mutants")]
    if point.0 == "vista.recover.partial" && crate::mutant::is("recover-clear-first") {
        update.store_u64(lane_off, 0)?; // Mutant: the log is emptied before the undo.
    }
    for r in records.iter().rev() {
        let src = lane_off + r.data_at;
        let dst = layout.user_off + r.offset;
        let (before, target) = update.window_pair(src..src + r.len, dst..dst + r.len)?;
        target.copy_from_slice(before);
        crash_point!(point.0);
    }
    crash_point!(point.1);
    // The log is marked empty last: until this store, a crash repeats the roll-back,
    // which writes the same before-images again (idempotent).
    update.store_u64(lane_off, 0)?;
    Ok(())
}

/// Rolls back every lane that holds an unfinished transaction. Validates all lanes
/// before writing anything, so a damaged log leaves the segment untouched.
fn recover(cache: &mut RioCache, layout: &Layout, path: &Path) -> Result<Recovery> {
    let mut update = cache.update()?;
    let mut pending = Vec::new();
    for lane in 0..layout.lanes {
        let records = match lane_records(&update, layout, lane, path) {
            Ok(r) => r,
            Err(e) => {
                // Keep the close-time checkpoint from writing the damaged state to disk.
                update.poison(e.to_string());
                return Err(e);
            }
        };
        let tail = update.read(layout.lane_off(lane), 8)?;
        if tail != [0; 8] {
            pending.push((lane, records));
        }
    }
    crash_point!("vista.recover.validated");
    let mut report = Recovery::default();
    for (lane, records) in &pending {
        #[cfg(feature = "mutants")]
        let records = if crate::mutant::is("recover-skip-newest") {
            &records[..records.len().saturating_sub(1)] // Mutant: the newest is not undone.
        } else {
            &records[..]
        };
        roll_back(
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
