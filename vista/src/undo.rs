//! Undo records: the before-images of a transaction, in its lane.
//!
//! A lane is `[tail u64][reserved 56 bytes][records...]`. `tail` counts the bytes of
//! *published* records; records past it are ignored, so a record is published by the
//! one atomic store that advances `tail`, after it has been completely written. A
//! record, little-endian:
//!
//! ```text
//! 0 magic u32 "UNDO"   4 checksum u32   8 offset u64 (user space)
//! 16 len u64           24 before-image [len], padded to a multiple of 8
//! ```
//!
//! The checksum covers bytes `8..24+len` and detects a record damaged by a wild store.
//! (Tearing is not its job: a record is published only after it is complete.) It is
//! the low 32 bits of XXH3-64 for a before-image of at most [`XXH3_MAX`] bytes, and
//! CRC-32 (`crc32fast`, which folds with carry-less multiplication where the CPU has
//! it) for a longer one: on the test machine XXH3 takes 2-3 ns for a word's record where
//! CRC-32 takes 6, and CRC-32 takes 50 ns for a 4 KiB before-image where XXH3 takes 165
//! (docs/benchmarks.md, "Record checksums"). In format version 1 every record used
//! XXH3; a version-1 lane is checked by that rule (see `crate::layout`).

//!
//! A lane that belongs to a transaction across segments also holds one *group record*
//! (magic "XSEG"), which restores nothing: it names the coordinator that decides the
//! transaction. Same header (the offset field holds the transaction's id, the length
//! field the bytes after the header), then the coordinator's slot u64 and its path:
//!
//! ```text
//! 0 magic u32 "XSEG"   4 checksum u32   8 txn u64   16 len u64 (8 + path bytes)
//! 24 slot u64          32 coordinator path [len - 8], padded to a multiple of 8
//! ```

use std::path::PathBuf;

use crate::layout::{Layout, LANE_HEADER};

pub(crate) const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"UNDO");
pub(crate) const GROUP_MAGIC: u32 = u32::from_le_bytes(*b"XSEG");
/// The longest coordinator path a group record holds.
pub(crate) const MAX_COORDINATOR_PATH: usize = 4096;

/// What a group record says: the transaction `txn` committed if and only if slot `slot`
/// of the coordinator at `coordinator` holds `txn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct GroupTag {
    pub(crate) coordinator: PathBuf,
    pub(crate) slot: u64,
    pub(crate) txn: u64,
}

/// Bytes of a group record for `tag` (`None` if its path is too long).
pub(crate) fn group_record_len(coordinator: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let n = coordinator.as_os_str().as_bytes().len();
    (n <= MAX_COORDINATOR_PATH).then(|| record_len(8 + n as u64).expect("small"))
}

/// Fills `rec` (exactly `group_record_len` bytes) with a group record.
pub(crate) fn encode_group(rec: &mut [u8], tag: &GroupTag, version: u32) {
    use std::os::unix::ffi::OsStrExt;
    let path = tag.coordinator.as_os_str().as_bytes();
    let len = 8 + path.len();
    rec[8..16].copy_from_slice(&tag.txn.to_le_bytes());
    rec[16..24].copy_from_slice(&(len as u64).to_le_bytes());
    rec[24..32].copy_from_slice(&tag.slot.to_le_bytes());
    rec[32..32 + path.len()].copy_from_slice(path);
    let sum = checksum(&rec[8..24 + len], version);
    rec[4..8].copy_from_slice(&sum.to_le_bytes());
    rec[0..4].copy_from_slice(&GROUP_MAGIC.to_le_bytes());
}
pub(crate) const RECORD_HEADER: u64 = 24;

/// The longest before-image whose record is checksummed with XXH3 (format version 2).
pub(crate) const XXH3_MAX: usize = 128;

/// The checksum of a record whose checked bytes (`8..24+len`) are `bytes`, by the rule of
/// format `version`: the low half of XXH3-64, or (version 2, a before-image longer than
/// [`XXH3_MAX`]) CRC-32.
// Always inlined: in a `put` the length is a constant, so the rule folds away.
#[allow(clippy::inline_always)]
#[inline(always)]
fn checksum(bytes: &[u8], version: u32) -> u32 {
    if bytes.len() > 16 + XXH3_MAX && version >= 2 {
        crc32fast::hash(bytes)
    } else {
        xxhash_rust::xxh3::xxh3_64(bytes) as u32
    }
}

/// Bytes a record for `len` bytes of before-image occupies.
pub(crate) fn record_len(len: u64) -> Option<u64> {
    len.checked_next_multiple_of(8)?.checked_add(RECORD_HEADER)
}

/// Fills `rec` (exactly `record_len(before.len())` bytes, or at least header + data)
/// with a record for `offset`.
// Always inlined: in a `put`, the before-image's length is then a constant, and the copy
// and the checksum are specialised for it (docs/benchmarks.md, "Hot path").
#[allow(clippy::inline_always)]
#[inline(always)]
pub(crate) fn encode(rec: &mut [u8], offset: u64, before: &[u8], version: u32) {
    let len = before.len();
    rec[8..16].copy_from_slice(&offset.to_le_bytes());
    rec[16..24].copy_from_slice(&(len as u64).to_le_bytes());
    if let Ok(word) = <[u8; 8]>::try_from(before) {
        // A word (the common `put`): one store instead of a call to copy.
        rec[24..32].copy_from_slice(&word);
    } else {
        rec[24..24 + len].copy_from_slice(before);
    }
    let sum = checksum(&rec[8..24 + len], version);
    rec[4..8].copy_from_slice(&sum.to_le_bytes());
    rec[0..4].copy_from_slice(&RECORD_MAGIC.to_le_bytes());
}

/// A validated record: where its before-image is (lane-relative) and where it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Record {
    /// Lane-relative offset of the before-image.
    pub(crate) data_at: u64,
    /// User-space offset it restores.
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

/// Parses and validates every published record of a lane (`lane` is the whole lane,
/// `tail` its published length). Nothing is trusted: bounds, magic and checksum are
/// checked for every record before anything is applied.
pub(crate) fn parse(lane: &[u8], tail: u64, layout: &Layout) -> Result<Vec<Record>, String> {
    parse_tagged(lane, tail, layout).map(|(records, _)| records)
}

/// As [`parse`], also returning the lane's group record if it has one.
pub(crate) fn parse_tagged(
    lane: &[u8],
    tail: u64,
    layout: &Layout,
) -> Result<(Vec<Record>, Option<GroupTag>), String> {
    parse_from(lane, 0, tail, layout)
}

/// As [`parse_tagged`], of the records from log offset `from` (where a record begins:
/// a tail this lane had) to `tail` only: the records of a call that failed, whose
/// undo then costs what the call logged, not the whole log (see `Lane::undo_to`).
pub(crate) fn parse_from(
    lane: &[u8],
    from: u64,
    tail: u64,
    layout: &Layout,
) -> Result<(Vec<Record>, Option<GroupTag>), String> {
    let mut tag = None;
    if tail > layout.lane_capacity() {
        return Err(format!(
            "undo log tail {tail} exceeds the lane capacity {}",
            layout.lane_capacity()
        ));
    }
    if from > tail {
        return Err(format!("undo log tail {tail} is before {from}"));
    }
    let end = LANE_HEADER + tail;
    let mut at = LANE_HEADER + from;
    let mut out = Vec::new();
    while at < end {
        if end - at < RECORD_HEADER {
            return Err(format!("truncated undo record at lane offset {at}"));
        }
        let a = at as usize;
        let u32_at = |o: usize| u32::from_le_bytes(lane[o..o + 4].try_into().expect("4"));
        let u64_at = |o: usize| u64::from_le_bytes(lane[o..o + 8].try_into().expect("8"));
        let group = u32_at(a) == GROUP_MAGIC;
        if u32_at(a) != RECORD_MAGIC && !group {
            return Err(format!("bad undo record magic at lane offset {at}"));
        }
        let offset = u64_at(a + 8);
        let len = u64_at(a + 16);
        if group {
            use std::os::unix::ffi::OsStrExt;
            let Some(rlen) = record_len(len)
                .filter(|r| *r <= end - at && (8..=8 + MAX_COORDINATOR_PATH as u64).contains(&len))
            else {
                return Err(format!("group record at lane offset {at} overruns the log"));
            };
            let data_end = a + 24 + len as usize;
            if checksum(&lane[a + 8..data_end], layout.version) != u32_at(a + 4) {
                return Err(format!(
                    "group record at lane offset {at} fails its checksum"
                ));
            }
            if tag.is_some() {
                return Err(format!("second group record at lane offset {at}"));
            }
            tag = Some(GroupTag {
                coordinator: PathBuf::from(std::ffi::OsStr::from_bytes(&lane[a + 32..data_end])),
                slot: u64_at(a + 24),
                txn: offset,
            });
            at += rlen;
            continue;
        }
        let fits_user = offset
            .checked_add(len)
            .is_some_and(|e| e <= layout.user_len);
        let Some(rlen) = record_len(len).filter(|r| *r <= end - at) else {
            return Err(format!("undo record at lane offset {at} overruns the log"));
        };
        if !fits_user {
            return Err(format!(
                "undo record at lane offset {at} points outside the segment ({offset}+{len})"
            ));
        }
        let data_end = a + 24 + len as usize;
        if checksum(&lane[a + 8..data_end], layout.version) != u32_at(a + 4) {
            return Err(format!(
                "undo record at lane offset {at} fails its checksum"
            ));
        }
        out.push(Record {
            data_at: at + RECORD_HEADER,
            offset,
            len,
        });
        at += rlen;
    }
    Ok((out, tag))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Options;

    fn layout() -> Layout {
        Layout::for_options(&Options::new().size(4096).undo_log_size(4000)).unwrap()
    }

    fn lane_with(records: &[(u64, &[u8])]) -> (Vec<u8>, u64) {
        let l = layout();
        let mut lane = vec![0u8; l.lane_size as usize];
        let mut at = LANE_HEADER;
        for (off, before) in records {
            let n = record_len(before.len() as u64).unwrap();
            encode(
                &mut lane[at as usize..(at + n) as usize],
                *off,
                before,
                l.version,
            );
            at += n;
        }
        (lane, at - LANE_HEADER)
    }

    #[test]
    fn parses_what_it_encodes() {
        let (lane, tail) = lane_with(&[(8, b"abc"), (100, &[7; 16])]);
        let recs = parse(&lane, tail, &layout()).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].offset, recs[0].len), (8, 3));
        assert_eq!((recs[1].offset, recs[1].len), (100, 16));
        assert_eq!(&lane[recs[0].data_at as usize..][..3], b"abc");
        // Unpublished records are invisible.
        assert_eq!(parse(&lane, 0, &layout()).unwrap(), vec![]);
    }

    #[test]
    fn parses_the_records_from_a_tail_it_had_only() {
        let (mut lane, tail) = lane_with(&[(8, b"abc"), (100, &[7; 16]), (200, b"xy")]);
        let first = record_len(3).unwrap();
        let (recs, _) = parse_from(&lane, first, tail, &layout()).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!((recs[0].offset, recs[0].len), (100, 16));
        assert_eq!(recs[0].data_at, LANE_HEADER + first + RECORD_HEADER);
        assert_eq!((recs[1].offset, recs[1].len), (200, 2));
        assert_eq!(parse_from(&lane, tail, tail, &layout()).unwrap().0, vec![]);
        // Records after `from` are still checked; `from` must be a record's start and
        // not past the tail.
        lane[recs[1].data_at as usize] ^= 1;
        assert!(parse_from(&lane, first, tail, &layout())
            .unwrap_err()
            .contains("checksum"));
        assert!(parse_from(&lane, first + 8, tail, &layout()).is_err());
        assert!(parse_from(&lane, tail + 8, tail, &layout()).is_err());
    }

    #[test]
    fn a_group_record_names_its_coordinator_and_restores_nothing() {
        let l = layout();
        let (mut lane, tail) = lane_with(&[(8, b"abc")]);
        let tag = GroupTag {
            coordinator: "/tmp/some/group.coord".into(),
            slot: 1025,
            txn: 77,
        };
        let n = group_record_len(&tag.coordinator).unwrap();
        let at = (LANE_HEADER + tail) as usize;
        encode_group(&mut lane[at..at + n as usize], &tag, l.version);
        let (recs, got) = parse_tagged(&lane, tail + n, &l).unwrap();
        assert_eq!(recs.len(), 1);
        assert_eq!(got, Some(tag));
        lane[at + 40] ^= 1;
        assert!(parse_tagged(&lane, tail + n, &l)
            .unwrap_err()
            .contains("checksum"));
    }

    #[test]
    fn a_long_before_image_is_checked_by_crc32_and_version_1_by_xxh3_alone() {
        let v2 = layout();
        assert_eq!(v2.version, crate::layout::FORMAT_VERSION);
        let v1 = Layout { version: 1, ..v2 };
        for len in [1, 8, XXH3_MAX, XXH3_MAX + 1, 1000] {
            let before: Vec<u8> = (0..len).map(|i| (i * 31) as u8).collect();
            let rec_len = record_len(len as u64).unwrap();
            for (l, other) in [(v2, v1), (v1, v2)] {
                let mut lane = vec![0u8; l.lane_size as usize];
                let at = LANE_HEADER as usize;
                encode(&mut lane[at..at + rec_len as usize], 8, &before, l.version);
                let bytes = &lane[at + 8..at + 24 + len];
                let sum = u32::from_le_bytes(lane[at + 4..at + 8].try_into().unwrap());
                let xxh3 = xxhash_rust::xxh3::xxh3_64(bytes) as u32;
                let crc = crc32fast::hash(bytes);
                if l.version >= 2 && len > XXH3_MAX {
                    assert_eq!(sum, crc, "{len}");
                } else {
                    assert_eq!(sum, xxh3, "{len} v{}", l.version);
                }
                assert_eq!(parse(&lane, rec_len, &l).unwrap().len(), 1);
                // The rules differ only for a long before-image: a lane read by the
                // other version's rule fails its checksum exactly then.
                let by_other = parse(&lane, rec_len, &other);
                if len > XXH3_MAX {
                    assert!(by_other.unwrap_err().contains("checksum"), "{len}");
                } else {
                    assert!(by_other.is_ok(), "{len}");
                }
                // Damage to a long before-image is found by either rule.
                lane[at + 24 + len - 1] ^= 0x40;
                assert!(parse(&lane, rec_len, &l).unwrap_err().contains("checksum"));
            }
        }
    }

    #[test]
    fn rejects_damage_and_out_of_bounds() {
        let (lane, tail) = lane_with(&[(8, b"abc")]);
        let l = layout();
        let mut flipped = lane.clone();
        flipped[LANE_HEADER as usize + 24] ^= 1;
        assert!(parse(&flipped, tail, &l).unwrap_err().contains("checksum"));
        let (outside, tail2) = lane_with(&[(4090, b"0123456789")]);
        assert!(parse(&outside, tail2, &l).unwrap_err().contains("outside"));
        assert!(parse(&lane, tail - 1, &l).is_err());
        assert!(parse(&lane, l.lane_capacity() + 8, &l).is_err());
    }
}
