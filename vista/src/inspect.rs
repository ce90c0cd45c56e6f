//! Read-only inspection of a segment, for tools (`vista info`, `vista check`,
//! `vista dump`).
//!
//! [`inspect`] reads the segment file, its journal and its memory image through
//! [`rio_cache::inspect`] and decodes the segment header and the undo lanes with the
//! same decoders [`crate::Segment::open`] uses. It never writes, never takes a lock and
//! never runs recovery, so it is safe on a damaged segment and on one open in another
//! process (whose contents may change while they are read: see
//! [`rio_cache::inspect::CacheInfo::locked_by`]).
//!
//! ```
//! # fn main() -> Result<(), vista::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("data.vista");
//! let opts = vista::Options::new().size(4096).cache_dir(dir.path());
//! let seg = vista::Segment::open(&path, &opts)?;
//! seg.transaction(|tx| tx.write(0, b"hi"))?;
//! drop(seg);
//!
//! let info = vista::inspect::inspect(&path, dir.path())?;
//! let view = info.view(info.current_source())?;
//! assert_eq!(view.header.as_ref().unwrap().user_len, 4096);
//! assert_eq!(info.read_committed(&view, 0, 2)?, b"hi");
//! # Ok(())
//! # }
//! ```
//!
//! [`SegmentInfo::heap`] runs the heap's consistency check ([`crate::Segment::check`]'s
//! walk) over a view's committed bytes, so a tool can check a heap without opening the
//! segment.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;

pub use rio_cache::inspect::{CacheInfo, ImageState, InterruptedGrow, JournalState, Source};

use crate::error::{Error, Result};
use crate::heap::{HeapReport, HeapSource as _};
use crate::layout::{Layout, HEADER_LEN, LANE_HEADER};
use crate::undo;

/// The segment's shape, from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Shape {
    /// The segment format version.
    pub version: u32,
    /// Undo-log lanes.
    pub lanes: u32,
    /// Bytes of each lane (its 64-byte header and its records).
    pub lane_size: u64,
    /// Bytes of records each lane holds (a transaction's undo-log capacity).
    pub undo_log_capacity: u64,
    /// Where user space starts in the cache.
    pub user_off: u64,
    /// Bytes of user space.
    pub user_len: u64,
}

/// Why the segment header could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeaderFault {
    /// The header is zero: the segment's creation was interrupted before its header
    /// was written (an open initializes it if nothing else was written either).
    Uninitialized,
    /// Another format version.
    Version(u32),
    /// Damaged or inconsistent.
    Damaged(String),
}

impl std::fmt::Display for HeaderFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeaderFault::Uninitialized => f.write_str("the header is zero (creation interrupted)"),
            HeaderFault::Version(v) => write!(
                f,
                "format version {v}; this build reads versions {} to {}",
                crate::OLDEST_FORMAT_VERSION,
                crate::FORMAT_VERSION
            ),
            HeaderFault::Damaged(why) => f.write_str(why),
        }
    }
}

/// One undo-log lane.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lane {
    /// The lane number.
    pub index: u32,
    /// Bytes of published records (the lane's tail word).
    pub used: u64,
    /// What the lane holds.
    pub state: LaneState,
}

/// What an undo-log lane holds.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LaneState {
    /// No transaction (or a committed one: commit empties the lane).
    Empty,
    /// An unfinished transaction: in progress if the segment is open, else one that a
    /// crash interrupted, which the next open rolls back.
    Unfinished {
        /// Its before-images.
        records: usize,
    },
    /// An unfinished part of a transaction across segments (see [`crate::Group`]): its
    /// lane carries a group record, and the coordinator it names decides its fate. The
    /// next open keeps the changes if the coordinator decided the transaction
    /// committed, else rolls them back (in progress if the segment is open).
    CrossSegment {
        /// Its before-images.
        records: usize,
        /// The coordinator file the record names.
        coordinator: std::path::PathBuf,
        /// The coordinator's verdict now: `Ok(true)` committed (the next open keeps
        /// it), `Ok(false)` not (it rolls it back), `Err` why the coordinator could not
        /// be read (the next open refuses until it can).
        decided: std::result::Result<bool, String>,
    },
    /// A record fails validation: the next open refuses the segment
    /// ([`Error::Corrupt`]).
    Damaged(String),
}

/// The segment as one source (memory image or disk image) holds it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct View {
    /// Where it was read.
    pub source: Source,
    /// The header, decoded.
    pub header: std::result::Result<Shape, HeaderFault>,
    /// The lanes (empty if the header is unusable).
    pub lanes: Vec<Lane>,
    layout: Option<Layout>,
}

/// A segment's files, inspected.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The cache layer's files: disk header, journal, memory image, lock holder.
    pub cache: CacheInfo,
}

/// Inspects the segment at `path`, whose memory image lives in `cache_dir`. Reads only.
///
/// # Errors
/// I/O errors naming the file (missing, a directory, unreadable); [`Error::Corrupt`]
/// (including files that are not segments at all) or [`Error::IncompatibleVersion`] for
/// a disk header an open would refuse.
pub fn inspect(path: &Path, cache_dir: &Path) -> Result<SegmentInfo> {
    Ok(SegmentInfo {
        cache: rio_cache::inspect::inspect(path, cache_dir)?,
    })
}

impl SegmentInfo {
    /// The source the next open would use: the memory image if it is warm, else the
    /// disk image (for a damaged or live image too: it is the only one readable).
    pub fn current_source(&self) -> Source {
        if self.cache.image == ImageState::Warm {
            Source::Image
        } else {
            Source::Disk
        }
    }

    /// Decodes the header and the lanes as `source` holds them.
    ///
    /// # Errors
    /// I/O errors; [`Error::Cache`] for [`Source::Image`] when the image is not warm.
    pub fn view(&self, source: Source) -> Result<View> {
        let total = self.cache.data_len;
        if total < HEADER_LEN as u64 {
            return Ok(View {
                source,
                header: Err(HeaderFault::Damaged(format!(
                    "a cache of {total} bytes cannot hold a segment header"
                ))),
                lanes: Vec::new(),
                layout: None,
            });
        }
        let raw = self.cache.read(source, 0, HEADER_LEN as u64)?;
        let layout = if raw.iter().all(|&b| b == 0) {
            Err(HeaderFault::Uninitialized)
        } else {
            Layout::decode(&raw, total).map_err(|e| match e {
                Ok(v) => HeaderFault::Version(v),
                Err(why) => HeaderFault::Damaged(why),
            })
        };
        let layout = match layout {
            Ok(l) => l,
            Err(fault) => {
                return Ok(View {
                    source,
                    header: Err(fault),
                    lanes: Vec::new(),
                    layout: None,
                })
            }
        };
        let mut lanes = Vec::with_capacity(layout.lanes as usize);
        for index in 0..layout.lanes {
            let off = layout.lane_off(index);
            let tail = u64::from_le_bytes(
                self.cache.read(source, off, 8)?[..]
                    .try_into()
                    .expect("8 bytes"),
            );
            // Only the published part is read; a tail past the capacity is refused by
            // the parser before it reads anything.
            let want = tail.saturating_add(LANE_HEADER).min(layout.lane_size);
            let bytes = self.cache.read(source, off, want)?;
            let state = match undo::parse_tagged(&bytes, tail, &layout) {
                Ok((records, None)) if records.is_empty() && tail == 0 => LaneState::Empty,
                Ok((records, None)) => LaneState::Unfinished {
                    records: records.len(),
                },
                Ok((records, Some(tag))) => LaneState::CrossSegment {
                    records: records.len(),
                    decided: crate::group::decided(&tag, &rio_cache::Faults::none()),
                    coordinator: tag.coordinator,
                },
                Err(why) => LaneState::Damaged(why),
            };
            lanes.push(Lane {
                index,
                used: tail,
                state,
            });
        }
        Ok(View {
            source,
            header: Ok(Shape {
                version: layout.version,
                lanes: layout.lanes,
                lane_size: layout.lane_size,
                undo_log_capacity: layout.lane_capacity(),
                user_off: layout.user_off,
                user_len: layout.user_len,
            }),
            lanes,
            layout: Some(layout),
        })
    }

    /// The committed bytes `[offset, offset + len)` of user space as `view` holds them:
    /// the before-images of any unfinished transaction are laid back over the bytes
    /// (newest first, as recovery and abort do), in memory only; a part of a
    /// transaction across segments that its coordinator decided committed is kept, as
    /// the next open keeps it. So this is exactly what the next open would show after
    /// recovery, with nothing written.
    ///
    /// # Errors
    /// [`Error::OutOfRange`]; [`Error::Corrupt`] if the header or a lane is damaged (the
    /// committed state cannot be known); [`Error::CoordinatorUnavailable`] if a part of
    /// a transaction across segments waits for a coordinator that cannot be read; I/O
    /// errors.
    pub fn read_committed(&self, view: &View, offset: u64, len: u64) -> Result<Vec<u8>> {
        let corrupt = |reason: String| Error::Corrupt {
            path: self.cache.path.clone(),
            reason,
        };
        let Some(layout) = &view.layout else {
            let why = match &view.header {
                Err(fault) => fault.to_string(),
                Ok(_) => String::new(),
            };
            return Err(corrupt(format!("segment header: {why}")));
        };
        let at = layout.user_range(offset, len)?;
        let mut buf = self.cache.read(view.source, at, len)?;
        for lane in &view.lanes {
            match &lane.state {
                // Nothing to undo: no transaction, or a part across segments that its
                // coordinator decided committed (the next open keeps it).
                LaneState::Empty
                | LaneState::CrossSegment {
                    decided: Ok(true), ..
                } => {}
                LaneState::Damaged(why) => {
                    return Err(corrupt(format!("undo lane {}: {why}", lane.index)))
                }
                LaneState::CrossSegment {
                    decided: Err(reason),
                    coordinator,
                    ..
                } => {
                    return Err(Error::CoordinatorUnavailable {
                        path: self.cache.path.clone(),
                        coordinator: coordinator.clone(),
                        reason: reason.clone(),
                    })
                }
                LaneState::Unfinished { .. } | LaneState::CrossSegment { .. } => {
                    let off = layout.lane_off(lane.index);
                    let bytes = self.cache.read(view.source, off, LANE_HEADER + lane.used)?;
                    let records = undo::parse(&bytes, lane.used, layout)
                        .map_err(|why| corrupt(format!("undo lane {}: {why}", lane.index)))?;
                    for r in records.iter().rev() {
                        let before = &bytes[r.data_at as usize..(r.data_at + r.len) as usize];
                        rio_cache::inspect::overlay(&mut buf, offset, r.offset, before);
                    }
                }
            }
        }
        Ok(buf)
    }
}

impl SegmentInfo {
    /// Walks the heap in `view`'s committed bytes (as [`SegmentInfo::read_committed`]
    /// shows them) and reports every inconsistency, with statistics: the check
    /// [`crate::Segment::check`] runs, done on the files, read-only. `None` if user
    /// space does not start with a heap header (no heap was made: a segment used
    /// through offsets only, or a new one; a heap whose header's magic is damaged looks
    /// the same).
    ///
    /// # Errors
    /// As [`SegmentInfo::read_committed`] (a damaged segment header or undo lane: the
    /// committed bytes cannot be known); I/O errors.
    pub fn heap(&self, view: &View) -> Result<Option<HeapReport>> {
        let Some(layout) = &view.layout else {
            return self.read_committed(view, 0, 0).map(|_| None);
        };
        let src = Committed {
            info: self,
            view,
            user_len: layout.user_len,
            chunks: RefCell::new(BTreeMap::new()),
        };
        let head = src.bytes(0, layout.user_len.min(64))?;
        if !crate::heap::starts_with_header(&head) {
            return Ok(None);
        }
        crate::heap::report(&src).map(Some)
    }
}

/// A view's committed user space, read in chunks on demand (the walk reads descriptors
/// and list heads, a small part of a large segment).
struct Committed<'a> {
    info: &'a SegmentInfo,
    view: &'a View,
    user_len: u64,
    chunks: RefCell<BTreeMap<u64, std::rc::Rc<Vec<u8>>>>,
}

impl Committed<'_> {
    const CHUNK: u64 = 256 << 10;

    fn chunk(&self, index: u64) -> Result<std::rc::Rc<Vec<u8>>> {
        if let Some(c) = self.chunks.borrow().get(&index) {
            return Ok(c.clone());
        }
        let at = index * Self::CHUNK;
        let len = Self::CHUNK.min(self.user_len - at);
        let c = std::rc::Rc::new(self.info.read_committed(self.view, at, len)?);
        self.chunks.borrow_mut().insert(index, c.clone());
        Ok(c)
    }
}

impl crate::heap::HeapSource for Committed<'_> {
    fn user_len(&self) -> u64 {
        self.user_len
    }

    fn bytes(&self, offset: u64, len: u64) -> Result<Cow<'_, [u8]>> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.user_len)
            .ok_or(Error::OutOfRange {
                offset,
                len,
                size: self.user_len,
            })?;
        let mut out = Vec::with_capacity(len as usize);
        let mut at = offset;
        while at < end {
            let c = self.chunk(at / Self::CHUNK)?;
            let from = (at % Self::CHUNK) as usize;
            let n = (end - at).min(c.len() as u64 - from as u64) as usize;
            out.extend_from_slice(&c[from..from + n]);
            at += n as u64;
        }
        Ok(Cow::Owned(out))
    }
}
