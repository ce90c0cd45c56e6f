//! Reading committed records out of the log and applying them to data segments: the
//! procedure shared by crash recovery and epoch truncation.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::{LogDevice, LogReader};
use crate::range_tree::RangeTree;
use crate::record::{self, HEADER_LEN};
use crate::segment::Segment;

/// What a scan found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Logical offset just past the last valid record.
    pub(crate) end: u64,
    /// Sequence number the next record must carry.
    pub(crate) next_seq: u64,
    /// Valid records read.
    pub(crate) records: u64,
    /// The scan ended at a record whose header is intact but whose body is not: the
    /// last record was torn by a crash while it was written (it was never acknowledged).
    pub(crate) torn_tail: bool,
    /// Per segment id, the newest committed value of every byte range.
    pub(crate) trees: BTreeMap<u32, RangeTree>,
}

/// How far to scan.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Extent {
    /// Until the first record that is not valid (recovery: the end of the log is found by
    /// scanning).
    UntilInvalid,
    /// Exactly up to this logical offset; every record before it must be valid (epoch
    /// truncation of a synced prefix).
    Exactly(u64),
}

/// Scans records from `head` (whose sequence number is `head_seq`) and builds the trees.
/// `known` says whether a segment id exists.
pub(crate) fn scan(
    log: &LogDevice,
    head: u64,
    head_seq: u64,
    extent: Extent,
    read_buffer: usize,
    known: &dyn Fn(u32) -> bool,
) -> Result<Scan> {
    let mut reader = LogReader::new(log, read_buffer);
    let limit = match extent {
        // A head this close to the end of the offsets is no head a log ever reached.
        Extent::UntilInvalid => head.checked_add(log.capacity).ok_or(Error::CorruptLog {
            offset: head,
            reason: "the status block's head leaves no room for the log",
        })?,
        Extent::Exactly(end) => end,
    };
    let strict = matches!(extent, Extent::Exactly(_));
    let mut s = Scan {
        end: head,
        next_seq: head_seq,
        ..Scan::default()
    };
    let corrupt = |offset, reason| Err(Error::CorruptLog { offset, reason });
    while s.end < limit {
        let pos = s.end;
        if pos + HEADER_LEN as u64 > limit {
            if strict {
                return corrupt(pos, "record header crosses the epoch end");
            }
            break;
        }
        let header = match record::parse_header(reader.get(pos, HEADER_LEN)?) {
            Some(h) if h.seq == s.next_seq && pos + h.total_len <= limit => h,
            _ if strict => return corrupt(pos, "bad record header inside a synced prefix"),
            _ => {
                // The end of the log, or a damaged header hiding the records after it.
                if later_record(&mut reader, pos, limit, s.next_seq)?.is_some() {
                    return corrupt(pos, "damaged record header followed by a valid record");
                }
                break;
            }
        };
        let rec = reader.get(pos, header.total_len as usize)?;
        let Some(ranges) = record::parse_body(&header, &rec[HEADER_LEN..]) else {
            if strict {
                return corrupt(pos, "bad record body inside a synced prefix");
            }
            // A torn tail is expected after a crash; a damaged record followed by a valid
            // one is not (committed data would silently vanish): refuse it.
            if later_record(&mut reader, pos, limit, s.next_seq)?.is_some() {
                return corrupt(pos, "damaged record followed by a valid one");
            }
            s.torn_tail = true;
            break;
        };
        for r in &ranges {
            if !known(r.segment) {
                return corrupt(pos, "record names a segment the status block does not know");
            }
            s.trees
                .entry(r.segment)
                .or_default()
                .insert(r.offset, r.data);
        }
        s.end = pos + header.total_len;
        s.next_seq += 1;
        s.records += 1;
    }
    Ok(s)
}

/// The position of a valid record (header and body) newer than `seq` in `(pos, limit)`,
/// if there is one: the scan stopped at `pos`, at the end of the log or at a damaged
/// record. Records are 8-byte aligned, so every aligned position is tried: a damaged
/// header no longer says where the next record starts. Older records of the log's
/// previous rounds carry smaller sequence numbers and are passed over; so is any
/// position whose bytes only happen to start with the magic. Recovery reads the rest
/// of the log once for this.
fn later_record(reader: &mut LogReader<'_>, pos: u64, limit: u64, seq: u64) -> Result<Option<u64>> {
    let mut at = pos + 8;
    while at + HEADER_LEN as u64 <= limit {
        if let Some(h) = record::parse_header(reader.get(at, HEADER_LEN)?) {
            if h.seq > seq && at + h.total_len <= limit {
                let r = reader.get(at, h.total_len as usize)?;
                if record::parse_body(&h, &r[HEADER_LEN..]).is_some() {
                    return Ok(Some(at));
                }
            }
        }
        at += 8;
    }
    Ok(None)
}

/// Writes every tree to its segment (not synced).
pub(crate) fn apply(
    trees: &BTreeMap<u32, RangeTree>,
    segments: &HashMap<u32, Arc<Segment>>,
    at: u64,
) -> Result<u64> {
    let mut bytes = 0;
    for (id, tree) in trees {
        let seg = segments.get(id).ok_or(Error::CorruptLog {
            offset: at,
            reason: "record names a segment that is not open",
        })?;
        for (offset, data) in tree.iter() {
            seg.disk.write_at(data, offset)?;
        }
        bytes += tree.bytes();
    }
    Ok(bytes)
}

/// Syncs every segment a tree was applied to.
pub(crate) fn sync(
    trees: &BTreeMap<u32, RangeTree>,
    segments: &HashMap<u32, Arc<Segment>>,
) -> Result<()> {
    for id in trees.keys() {
        if let Some(seg) = segments.get(id) {
            seg.disk.sync()?;
        }
    }
    Ok(())
}
