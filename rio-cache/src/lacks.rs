//! Where the disk image's two slots may differ, kept on disk, so that a cold start does
//! not have to assume "everywhere".
//!
//! The memory image's differs map knows exactly which pages the other slot lacks, but
//! it is gone after a power loss. Two records on the disk image's header page bound it
//! instead, coarsely, in a [`ChunkMap`] of at most [`CHUNKS`] bits:
//! - each slot header (version 3) carries the map of the pages on which the *other* slot
//!   may differ from it, written with the header that commits the slot: the pages of
//!   that checkpoint, and later the pages installed in place;
//! - the *intent* record ([`Intent`], at [`INTENT_AT`]) names the slot a checkpoint is
//!   about to write, the checkpoint's number and the pages it will write there, synced
//!   before the first of them is written. Until that slot's header names that
//!   checkpoint or a later one, those pages of the slot may hold anything.
//!
//! A cold start marks as differing the current header's map plus, if the intent's
//! checkpoint never committed, the intent's map; a header without a map (version 2) or a
//! damaged intent marks every page (`docs/rio-cache.md`, "Why the other slot ends up
//! whole").

use std::ops::Range;

use crate::format::{get_u32, get_u64, put_u32, put_u64};

/// Bytes of a map on disk.
pub(crate) const MAP_BYTES: usize = 444;

/// Bits of a map: a chunk is the smallest power-of-two number of pages that covers the
/// cache in at most this many.
pub(crate) const CHUNKS: u64 = MAP_BYTES as u64 * 8;

/// Where the intent record is in the disk image: the third sector of the header page.
pub(crate) const INTENT_AT: u64 = 1024;

/// Bytes of the intent record (one sector, written whole or not at all).
pub(crate) const INTENT_LEN: usize = 512;

const INTENT_MAGIC: [u8; 8] = *b"RIOCINTN";

/// A set of pages, one bit per chunk of `1 << shift` pages.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChunkMap {
    shift: u32,
    bits: [u8; MAP_BYTES],
}

impl std::fmt::Debug for ChunkMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkMap")
            .field("shift", &self.shift)
            .field("chunks", &self.count())
            .finish_non_exhaustive()
    }
}

impl ChunkMap {
    /// The chunk shift for a cache of `pages` pages.
    pub(crate) fn shift_for(pages: u64) -> u32 {
        let mut s = 0;
        while pages.div_ceil(1 << s) > CHUNKS {
            s += 1;
        }
        s
    }

    /// No page, for a cache of `pages` pages.
    pub(crate) fn empty(pages: u64) -> ChunkMap {
        ChunkMap {
            shift: Self::shift_for(pages),
            bits: [0; MAP_BYTES],
        }
    }

    /// The map as stored: its shift and bits. `None` if the shift cannot be one.
    pub(crate) fn from_parts(shift: u32, bits: &[u8]) -> Option<ChunkMap> {
        (shift < 64 && bits.len() == MAP_BYTES).then(|| ChunkMap {
            shift,
            bits: bits.try_into().expect("MAP_BYTES"),
        })
    }

    pub(crate) fn shift(&self) -> u32 {
        self.shift
    }

    pub(crate) fn bits(&self) -> &[u8; MAP_BYTES] {
        &self.bits
    }

    /// Adds page `page`. The map must be sized for a cache that holds the page
    /// ([`ChunkMap::shift_for`] of its pages, rounded up); a page beyond its reach marks
    /// the last chunk (and fails a debug assertion).
    pub(crate) fn mark(&mut self, page: u64) {
        debug_assert!(page >> self.shift < CHUNKS, "page {page} beyond the map");
        let c = (page >> self.shift).min(CHUNKS - 1) as usize;
        self.bits[c / 8] |= 1 << (c % 8);
    }

    fn has_chunk(&self, c: u64) -> bool {
        c < CHUNKS && self.bits[c as usize / 8] & (1 << (c % 8)) != 0
    }

    /// Chunks marked.
    pub(crate) fn count(&self) -> u64 {
        self.bits.iter().map(|b| u64::from(b.count_ones())).sum()
    }

    /// The same set (or more) in chunks of `1 << shift` pages, `shift` ≥ this map's.
    pub(crate) fn coarsened(&self, shift: u32) -> ChunkMap {
        let mut out = ChunkMap {
            shift: shift.max(self.shift),
            bits: [0; MAP_BYTES],
        };
        let by = out.shift - self.shift;
        for c in (0..CHUNKS).filter(|&c| self.has_chunk(c)) {
            let d = c >> by;
            out.bits[d as usize / 8] |= 1 << (d % 8);
        }
        out
    }

    /// Both maps' pages, in the coarser of their chunks.
    pub(crate) fn union(&self, other: &ChunkMap) -> ChunkMap {
        let shift = self.shift.max(other.shift);
        let (mut a, b) = (self.coarsened(shift), other.coarsened(shift));
        for (x, y) in a.bits.iter_mut().zip(b.bits) {
            *x |= y;
        }
        a
    }

    /// Whether every page of `other` is in this map.
    pub(crate) fn covers(&self, other: &ChunkMap) -> bool {
        (0..CHUNKS).filter(|&c| other.has_chunk(c)).all(|c| {
            if self.shift >= other.shift {
                self.has_chunk(c >> (self.shift - other.shift))
            } else {
                // Each of this map's chunks inside the other's chunk `c`.
                let d = other.shift - self.shift;
                let lo = c.saturating_mul(1u64.checked_shl(d).unwrap_or(u64::MAX));
                let hi = (c + 1).saturating_mul(1u64.checked_shl(d).unwrap_or(u64::MAX));
                (lo..hi).all(|s| self.has_chunk(s))
            }
        })
    }

    /// Whether the map's chunks cover a cache of `pages` pages (a map read from a file
    /// may be crafted with too small a shift: pages beyond its reach are in no chunk).
    pub(crate) fn reaches(&self, pages: u64) -> bool {
        CHUNKS
            .checked_shl(self.shift)
            .is_some_and(|n| n >> self.shift == CHUNKS && n >= pages)
    }

    /// The map's pages among the first `pages`, as runs.
    pub(crate) fn runs(&self, pages: u64) -> impl Iterator<Item = Range<u64>> + '_ {
        let size = 1u64 << self.shift;
        let mut c = 0;
        std::iter::from_fn(move || {
            while c < CHUNKS && !self.has_chunk(c) {
                c += 1;
            }
            if c >= CHUNKS {
                return None;
            }
            let start = c.checked_mul(size).filter(|&s| s < pages)?;
            while c < CHUNKS && self.has_chunk(c) {
                c += 1;
            }
            Some(start..c.saturating_mul(size).min(pages))
        })
    }
}

/// The intent record: checkpoint `seq`, into slot `slot`, will write (at most) the pages
/// of `pages` there.
///
/// ```text
/// 0 magic "RIOCINTN"   8 slot u32   12 map shift u32   16 checkpoint seq u64
/// 24 reserved (zero)   64 map [444]: bit c set: pages [c << shift, (c + 1) << shift)
/// 508 crc32 of 0..508
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Intent {
    pub(crate) slot: usize,
    pub(crate) seq: u64,
    pub(crate) pages: ChunkMap,
}

/// What the intent sector holds.
// Read once per cold start and `inspect`: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IntentRecord {
    /// Zero: no checkpoint has written an intent (a new file, or one of version 2).
    None,
    Intact(Intent),
    /// Neither zero nor intact: the slots may differ anywhere.
    Damaged,
}

impl Intent {
    pub(crate) fn encode(&self) -> [u8; INTENT_LEN] {
        let mut b = [0u8; INTENT_LEN];
        b[0..8].copy_from_slice(&INTENT_MAGIC);
        put_u32(&mut b, 8, self.slot as u32);
        put_u32(&mut b, 12, self.pages.shift());
        put_u64(&mut b, 16, self.seq);
        b[64..64 + MAP_BYTES].copy_from_slice(self.pages.bits());
        let crc = crc32fast::hash(&b[..508]);
        put_u32(&mut b, 508, crc);
        b
    }

    /// Decodes the intent sector `b` (shorter if the file ends inside it).
    pub(crate) fn decode(b: &[u8]) -> IntentRecord {
        if b.iter().all(|&x| x == 0) {
            return IntentRecord::None;
        }
        if b.len() < INTENT_LEN
            || b[0..8] != INTENT_MAGIC
            || crc32fast::hash(&b[..508]) != get_u32(b, 508)
        {
            return IntentRecord::Damaged;
        }
        let slot = get_u32(b, 8);
        match ChunkMap::from_parts(get_u32(b, 12), &b[64..64 + MAP_BYTES]) {
            Some(pages) if slot < 2 => IntentRecord::Intact(Intent {
                slot: slot as usize,
                seq: get_u64(b, 16),
                pages,
            }),
            _ => IntentRecord::Damaged,
        }
    }
}

/// The pages a cold start of a cache of `pages` pages marks as differing, given the
/// current slot's header's map (`None`: a version 2 header, no map), the intent record
/// and the checkpoint each slot's header names (`seq_of`, 0 for a slot never written):
/// `None` means every page, as it does for a map that does not reach every page (only a
/// crafted file has one). The
/// intent counts until its slot's header names its checkpoint or a later one: a
/// checkpoint into that slot committed since, and left the slot whole. (The current
/// slot's header can name a later checkpoint without one into the other slot, after a
/// group checkpoint or a grow installed in place: the intent still counts then.)
pub(crate) fn cold_differs(
    pages: u64,
    lacks: Option<&ChunkMap>,
    intent: &IntentRecord,
    seq_of: impl Fn(usize) -> u64,
) -> Option<ChunkMap> {
    let lacks = lacks.filter(|l| l.reaches(pages))?;
    match intent {
        IntentRecord::None => Some(*lacks),
        IntentRecord::Intact(i) if seq_of(i.slot) >= i.seq => Some(*lacks),
        IntentRecord::Intact(i) if i.pages.reaches(pages) => Some(lacks.union(&i.pages)),
        IntentRecord::Intact(_) | IntentRecord::Damaged => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pages_of(m: &ChunkMap, pages: u64) -> Vec<u64> {
        m.runs(pages).flatten().collect()
    }

    #[test]
    fn small_caches_map_single_pages() {
        let mut m = ChunkMap::empty(16);
        assert_eq!(m.shift(), 0);
        m.mark(3);
        m.mark(7);
        m.mark(8);
        assert_eq!(pages_of(&m, 16), [3, 7, 8]);
        assert_eq!(m.count(), 3);
    }

    #[test]
    fn large_caches_map_chunks_that_cover_them() {
        for pages in [CHUNKS, CHUNKS + 1, 262_144, (1 << 50) / 4096] {
            let mut m = ChunkMap::empty(pages);
            assert!(pages.div_ceil(1 << m.shift()) <= CHUNKS, "{pages}");
            assert!(m.shift() == 0 || pages.div_ceil(1 << (m.shift() - 1)) > CHUNKS);
            m.mark(pages - 1);
            let got = pages_of(&m, pages);
            assert!(got.contains(&(pages - 1)) && got.len() as u64 <= 1 << m.shift());
        }
    }

    #[test]
    fn union_and_cover_work_across_chunk_sizes() {
        let mut fine = ChunkMap::empty(16);
        fine.mark(5);
        let mut coarse = ChunkMap::empty(16).coarsened(2);
        coarse.mark(9); // pages 8..12
        let u = fine.union(&coarse);
        assert_eq!(u.shift(), 2);
        assert_eq!(pages_of(&u, 16), [4, 5, 6, 7, 8, 9, 10, 11]);
        assert!(u.covers(&fine) && u.covers(&coarse));
        assert!(!fine.covers(&coarse));
        // A fine map does not cover the coarse chunk around its page.
        let mut around = ChunkMap::empty(16).coarsened(2);
        around.mark(5);
        assert!(!fine.covers(&around));
        assert!(around.covers(&fine));
    }

    #[test]
    fn intents_round_trip_and_damage_is_told_apart_from_none() {
        let mut pages = ChunkMap::empty(1000);
        pages.mark(10);
        pages.mark(900);
        let i = Intent {
            slot: 1,
            seq: 5,
            pages,
        };
        let b = i.encode();
        assert_eq!(Intent::decode(&b), IntentRecord::Intact(i));
        assert_eq!(Intent::decode(&[0; INTENT_LEN]), IntentRecord::None);
        for at in [0, 8, 12, 16, 64, 300, 508] {
            let mut d = b;
            d[at] ^= 1;
            assert_eq!(Intent::decode(&d), IntentRecord::Damaged, "byte {at}");
        }
        assert_eq!(Intent::decode(&b[..100]), IntentRecord::Damaged);
    }

    #[test]
    fn a_cold_start_adds_the_intent_until_its_checkpoint_commits() {
        let mut lacks = ChunkMap::empty(16);
        lacks.mark(1);
        let mut pages = ChunkMap::empty(16);
        pages.mark(9);
        // Slot 0 holds checkpoint 4 (current), slot 1 checkpoint 3.
        let seq_of = |slot| [4, 3][slot];
        let intent = |slot, seq| IntentRecord::Intact(Intent { slot, seq, pages });
        let got =
            |i: &IntentRecord| cold_differs(16, Some(&lacks), i, seq_of).map(|m| pages_of(&m, 16));
        assert_eq!(got(&IntentRecord::None), Some(vec![1]));
        // Checkpoint 5 into slot 1, cut off: its pages count.
        assert_eq!(got(&intent(1, 5)), Some(vec![1, 9]));
        // Checkpoint 4 into slot 0 (a later group install may have made slot 0's header
        // 5: the intent of checkpoint 5 into slot 1 still counts).
        assert_eq!(got(&intent(1, 4)), Some(vec![1, 9]));
        // Checkpoints 3 into slot 1 and 4 into slot 0 committed: stale.
        assert_eq!(got(&intent(1, 3)), Some(vec![1]));
        assert_eq!(got(&intent(0, 4)), Some(vec![1]));
        assert_eq!(got(&IntentRecord::Damaged), None);
        assert_eq!(cold_differs(16, None, &IntentRecord::None, seq_of), None);
        // A map whose chunks stop short of the cache's last page: every page.
        assert_eq!(
            cold_differs(CHUNKS + 1, Some(&lacks), &IntentRecord::None, seq_of),
            None
        );
    }

    /// Maps read from a file may hold any shift and any bits: nothing panics or loops,
    /// and the runs stay inside the cache.
    #[test]
    fn crafted_maps_neither_panic_nor_loop() {
        for shift in [0, 1, 7, 31, 50, 63] {
            let m = ChunkMap::from_parts(shift, &[0xff; MAP_BYTES]).unwrap();
            for pages in [1, 16, CHUNKS, CHUNKS + 1, u64::MAX >> 1] {
                let total: u64 = m.runs(pages).map(|r| r.end - r.start).sum();
                assert!(total <= pages);
                assert_eq!(
                    m.reaches(pages),
                    CHUNKS
                        .checked_shl(shift)
                        .is_some_and(|n| n >> shift == CHUNKS && n >= pages)
                );
                let _ = m.union(&ChunkMap::empty(pages)).covers(&m);
                let _ = m.coarsened(63);
            }
        }
        assert!(ChunkMap::from_parts(64, &[0; MAP_BYTES]).is_none());
    }
}
