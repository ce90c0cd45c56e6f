//! The segment format: where the header, the undo-log lanes and the user space lie in
//! the rio-cache data, and how the header is encoded. Documented in `docs/format.md`.
//!
//! ```text
//! 0          header (64 bytes; the rest of the page is reserved)
//! 4096       lane 0, lane 1, ... (lane_size bytes each, a multiple of 4096)
//! user_off   user space (user_len bytes)
//! ```
//! Header, little-endian:
//! ```text
//! 0  magic "VISTASEG"   8 version u32    12 lanes u32      16 lane_size u64
//! 24 lanes_off u64      32 user_off u64  40 user_len u64   48 reserved (zero)
//! 60 crc32 of bytes 0..60
//! ```

use crate::error::{Error, Result};
use crate::options::Options;

pub(crate) const MAGIC: [u8; 8] = *b"VISTASEG";
/// The segment format version this build writes. It also reads version 1 (whose undo
/// records are all checksummed with XXH3; see `undo`), and an open upgrades such a
/// segment to this version once its recovery has emptied every lane.
pub const FORMAT_VERSION: u32 = 2;
/// The oldest segment format version this build reads.
pub const OLDEST_FORMAT_VERSION: u32 = 1;
pub(crate) const HEADER_LEN: usize = 64;
pub(crate) const PAGE: u64 = 4096;
/// Bytes at the start of each lane before its records: the tail word and reserved
/// space.
pub(crate) const LANE_HEADER: u64 = 64;

/// Where everything is, in rio-cache offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// The format version of the header read (a new layout: [`FORMAT_VERSION`]). It
    /// says how the lanes' records are checksummed (see `undo`).
    pub(crate) version: u32,
    pub(crate) lanes: u32,
    pub(crate) lane_size: u64,
    pub(crate) lanes_off: u64,
    pub(crate) user_off: u64,
    pub(crate) user_len: u64,
}

impl Layout {
    /// The layout of a new segment with these options.
    pub(crate) fn for_options(o: &Options) -> Result<Layout> {
        let bad = |s: &str| Error::InvalidOptions(s.to_owned());
        if o.size == 0 {
            return Err(bad("size must be at least one byte"));
        }
        if o.lanes == 0 || o.lanes > crate::options::MAX_LANES {
            return Err(bad("lanes must be between 1 and 1024"));
        }
        if o.undo_log_size < 64 {
            return Err(bad("undo_log_size must be at least 64 bytes"));
        }
        let lane_size = o
            .undo_log_size
            .checked_add(LANE_HEADER)
            .and_then(|n| n.checked_next_multiple_of(PAGE))
            .ok_or_else(|| bad("undo_log_size too large"))?;
        let user_off = lane_size
            .checked_mul(u64::from(o.lanes))
            .and_then(|l| l.checked_add(PAGE))
            .ok_or_else(|| bad("undo logs too large"))?;
        let layout = Layout {
            version: FORMAT_VERSION,
            lanes: o.lanes,
            lane_size,
            lanes_off: PAGE,
            user_off,
            user_len: o.size,
        };
        // The segment's bytes (undo lanes, then user space) within rio-cache's largest
        // cache, named here so that the error says which option is to blame.
        let max = rio_cache::MAX_DATA_LEN;
        if user_off > max {
            return Err(Error::InvalidOptions(format!(
                "the undo logs (lanes x undo_log_size: {} x {}) need {user_off} bytes, more \
                 than the largest segment ({max} bytes)",
                o.lanes, o.undo_log_size
            )));
        }
        match layout.total() {
            Some(t) if t <= max => Ok(layout),
            _ => Err(Error::InvalidOptions(format!(
                "size {} plus the undo logs ({user_off} bytes: lanes x undo_log_size) is more \
                 than the largest segment ({max} bytes)",
                o.size
            ))),
        }
    }

    /// Bytes of rio-cache data the segment needs.
    pub(crate) fn total(&self) -> Option<u64> {
        self.user_off.checked_add(self.user_len)
    }

    /// The rio-cache offset of lane `i`.
    pub(crate) fn lane_off(&self, i: u32) -> u64 {
        self.lanes_off + u64::from(i) * self.lane_size
    }

    /// Converts a user-space range to a cache offset, refusing anything outside it.
    #[inline]
    pub(crate) fn user_range(&self, offset: u64, len: u64) -> Result<u64> {
        match offset.checked_add(len) {
            Some(end) if end <= self.user_len => Ok(self.user_off + offset),
            _ => Err(Error::OutOfRange {
                offset,
                len,
                size: self.user_len,
            }),
        }
    }

    /// Bytes of records a lane can hold.
    pub(crate) fn lane_capacity(&self) -> u64 {
        self.lane_size - LANE_HEADER
    }

    /// The header of this layout (in its version).
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&self.lanes.to_le_bytes());
        b[16..24].copy_from_slice(&self.lane_size.to_le_bytes());
        b[24..32].copy_from_slice(&self.lanes_off.to_le_bytes());
        b[32..40].copy_from_slice(&self.user_off.to_le_bytes());
        b[40..48].copy_from_slice(&self.user_len.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Whether `b` (a header whose checksum does not match) is one whose upgrade from
    /// version 1 was cut short by a crash: version 1 with the checksum of the same header
    /// in version 2 (the upgrade stores the checksum first, then the version; see
    /// `segment::upgrade`). Its lanes were empty, so it reads as version 1, and the next
    /// open upgrades it again.
    fn upgrade_cut_short(b: &[u8]) -> bool {
        if b[8..12] != OLDEST_FORMAT_VERSION.to_le_bytes() {
            return false;
        }
        let mut v2 = [0u8; 60];
        v2.copy_from_slice(&b[..60]);
        v2[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        crc32fast::hash(&v2) == u32::from_le_bytes(b[60..64].try_into().expect("4 bytes"))
    }

    /// Decodes and validates a header against the cache size `total`. The error is
    /// `Err(Ok(version))` for a version mismatch, `Err(Err(reason))` otherwise.
    pub(crate) fn decode(b: &[u8], total: u64) -> std::result::Result<Layout, Result<u32, String>> {
        let u32_at = |at: usize| u32::from_le_bytes(b[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8"));
        if b.len() < HEADER_LEN || b[0..8] != MAGIC {
            return Err(Err("not a vista segment (bad magic)".into()));
        }
        let version = u32_at(8);
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(Ok(version));
        }
        if crc32fast::hash(&b[..60]) != u32_at(60) && !Layout::upgrade_cut_short(b) {
            return Err(Err("header checksum mismatch".into()));
        }
        let l = Layout {
            version,
            lanes: u32_at(12),
            lane_size: u64_at(16),
            lanes_off: u64_at(24),
            user_off: u64_at(32),
            user_len: u64_at(40),
        };
        // At most `MAX_LANES`, as a new segment: a group numbers its members' lanes in
        // blocks of that many (`group`), so a larger count would share coordinator slots.
        let consistent = (1..=crate::options::MAX_LANES).contains(&l.lanes)
            && l.lane_size >= PAGE
            && l.lane_size.is_multiple_of(PAGE)
            && l.lanes_off == PAGE
            && l.lane_size
                .checked_mul(u64::from(l.lanes))
                .and_then(|x| x.checked_add(PAGE))
                == Some(l.user_off)
            && l.total() == Some(total);
        if !consistent {
            return Err(Err(format!("inconsistent header {l:?} for {total} bytes")));
        }
        Ok(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let l = Layout::for_options(&Options::new().size(1 << 20)).unwrap();
        let total = l.total().unwrap();
        let b = l.encode();
        assert_eq!(Layout::decode(&b, total), Ok(l));
        let mut bad = b;
        bad[44] ^= 1;
        assert!(matches!(Layout::decode(&bad, total), Err(Err(_))));
        assert!(matches!(Layout::decode(&b, total + 1), Err(Err(_))));
        let version = |v: u32| {
            let mut h = b;
            h[8..12].copy_from_slice(&v.to_le_bytes());
            let crc = crc32fast::hash(&h[..60]);
            h[60..64].copy_from_slice(&crc.to_le_bytes());
            Layout::decode(&h, total)
        };
        assert_eq!(version(3), Err(Ok(3)));
        assert_eq!(version(0), Err(Ok(0)));
        // Version 1 is read, and says so.
        let old = version(1).unwrap();
        assert_eq!(old, Layout { version: 1, ..l });
        assert_eq!(Layout::decode(&old.encode(), total), Ok(old));
        // An upgrade cut short between its two stores (version 1, the checksum of
        // version 2) reads as version 1; no other checksum mismatch is forgiven.
        let mut cut = b;
        cut[8..12].copy_from_slice(&1u32.to_le_bytes());
        assert_eq!(Layout::decode(&cut, total), Ok(old));
        let mut other = old.encode();
        other[8..12].copy_from_slice(&2u32.to_le_bytes()); // version 2, version 1's sum
        assert!(matches!(Layout::decode(&other, total), Err(Err(_))));
        cut[44] ^= 1;
        assert!(matches!(Layout::decode(&cut, total), Err(Err(_))));
    }

    #[test]
    fn a_header_with_more_lanes_than_a_segment_may_have_is_refused() {
        let l = Layout::for_options(&Options::new().size(1 << 20)).unwrap();
        let with = |lanes: u32| {
            let m = Layout {
                lanes,
                user_off: PAGE + l.lane_size * u64::from(lanes),
                ..l
            };
            Layout::decode(&m.encode(), m.total().unwrap())
        };
        let max = crate::options::MAX_LANES;
        assert!(with(max).is_ok());
        assert!(matches!(with(max + 1), Err(Err(_))));
        assert!(matches!(with(0), Err(Err(_))));
    }

    #[test]
    fn rejects_bad_options() {
        assert!(Layout::for_options(&Options::new().size(0)).is_err());
        assert!(Layout::for_options(&Options::new().lanes(0)).is_err());
        assert!(Layout::for_options(&Options::new().undo_log_size(u64::MAX)).is_err());
    }
}
