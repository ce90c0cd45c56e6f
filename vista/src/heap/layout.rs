//! Where the heap's header, descriptors and pages lie in user space, and how a page
//! descriptor is encoded. Documented in `docs/heap.md`.
//!
//! ```text
//! 0        header page: line 0 identity and extent, line 1 root, line 2 run lists,
//!          256.. arenas (ARENAS x 128 bytes: one slab-list head per size class)
//! 4096     zone 0: META_PAGES pages of descriptors (64 bytes per data page),
//!                  then ZONE_PAGES data pages
//! ...      zone 1, zone 2, ... (the last one may be partial)
//! ```

/// Heap page size (a data page, and the unit of large blocks).
pub(crate) const PAGE: u64 = 4096;
/// Data pages per zone: the largest block is one zone.
pub(crate) const ZONE_PAGES: u64 = 256;
/// Bytes of one page descriptor: one lock line, so neighbours never conflict.
pub(crate) const DESC: u64 = 64;
/// Descriptor pages at the start of each zone.
pub(crate) const META_PAGES: u64 = ZONE_PAGES * DESC / PAGE;
/// Bytes of a full zone.
pub(crate) const ZONE_BYTES: u64 = (META_PAGES + ZONE_PAGES) * PAGE;
/// Where zone 0 starts (after the header page).
pub(crate) const HEAP_BASE: u64 = PAGE;

pub(crate) const MAGIC: [u8; 8] = *b"VISTHEAP";
pub(crate) const VERSION: u32 = 1;
/// Header line 1: the root object (offset, size, align, tag).
pub(crate) const ROOT_OFF: u64 = 64;
/// Header line 2: heads of the free-run lists, one per power-of-two run length.
pub(crate) const RUNLISTS_OFF: u64 = 128;
pub(crate) const RUNLISTS: usize = 9;
/// Arenas: one slab-list head (u32) per size class each.
pub(crate) const ARENAS_OFF: u64 = 256;
pub(crate) const ARENA_STRIDE: u64 = 128;
pub(crate) const ARENAS: u32 = 16;

/// Block sizes of the small size classes (multiples of 16, at most 25% apart up to
/// 2048; then one block per page, so a page-sized block is recycled through its
/// arena's slab list without touching the shared run lists).
pub(crate) const CLASSES: [u64; 25] = [
    16, 32, 48, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384, 448, 512, 640, 768, 896, 1024,
    1280, 1536, 1792, 2048, 4096,
];
/// Largest small block.
pub(crate) const MAX_SMALL: u64 = 4096;

/// Descriptor kinds.
pub(crate) const NONE: u8 = 0;
pub(crate) const FREE: u8 = 1;
pub(crate) const FREE_TAIL: u8 = 2;
pub(crate) const RUN: u8 = 3;
pub(crate) const SLAB: u8 = 4;

/// The smallest size class that holds `size` bytes at alignment `align`.
pub(crate) fn class_for(size: u64, align: u64) -> Option<usize> {
    CLASSES
        .iter()
        .position(|&c| c >= size.max(1) && c % align.max(1) == 0)
}

/// Blocks in a slab of class `c`.
pub(crate) fn slab_cap(c: usize) -> u32 {
    (PAGE / CLASSES[c]) as u32
}

/// Pages of a large block of `len` bytes.
pub(crate) fn pages_for(len: u64) -> u64 {
    len.max(1).div_ceil(PAGE)
}

/// The free-run list of a run of `n` pages: floor(log2(n)).
pub(crate) fn runlist(n: u32) -> usize {
    n.max(1).ilog2() as usize
}

pub(crate) fn runlist_off(l: usize) -> u64 {
    RUNLISTS_OFF + 4 * l as u64
}

pub(crate) fn arena_head_off(arena: u32, class: usize) -> u64 {
    ARENAS_OFF + u64::from(arena) * ARENA_STRIDE + 4 * class as u64
}

/// The user-space offset of page `g`'s descriptor.
pub(crate) fn desc_off(g: u32) -> u64 {
    let g = u64::from(g);
    HEAP_BASE + g / ZONE_PAGES * ZONE_BYTES + g % ZONE_PAGES * DESC
}

/// The user-space offset of page `g`.
pub(crate) fn page_off(g: u32) -> u64 {
    let g = u64::from(g);
    HEAP_BASE + g / ZONE_PAGES * ZONE_BYTES + (META_PAGES + g % ZONE_PAGES) * PAGE
}

/// The first page of `g`'s zone.
pub(crate) fn zone_start(g: u32) -> u32 {
    g - g % ZONE_PAGES as u32
}

/// Where an offset lies.
pub(crate) enum Place {
    /// Before the first zone (the header).
    Header,
    /// In a zone's descriptors.
    Metadata,
    /// In data page `g`, `within` bytes from its start.
    Page { g: u32, within: u64 },
}

pub(crate) fn place(off: u64) -> Place {
    if off < HEAP_BASE {
        return Place::Header;
    }
    let rel = off - HEAP_BASE;
    let (zone, r) = (rel / ZONE_BYTES, rel % ZONE_BYTES);
    if r < META_PAGES * PAGE {
        return Place::Metadata;
    }
    let g = zone * ZONE_PAGES + (r / PAGE - META_PAGES);
    match u32::try_from(g) {
        Ok(g) => Place::Page {
            g,
            within: r % PAGE,
        },
        Err(_) => Place::Metadata,
    }
}

/// Data pages that fit in `len` bytes of user space: whole zones, then as many pages
/// of a last zone as fit after its descriptor pages (none if those do not fit).
/// This is the heap's extent for a segment of that length.
pub(crate) fn pages_fitting(len: u64) -> u32 {
    let Some(rem) = len.checked_sub(HEAP_BASE) else {
        return 0;
    };
    let full = rem / ZONE_BYTES;
    let part = (rem % ZONE_BYTES / PAGE).saturating_sub(META_PAGES);
    u32::try_from(full * ZONE_PAGES + part).unwrap_or(u32::MAX - ZONE_PAGES as u32)
}

/// A page descriptor.
///
/// ```text
/// 0 kind u8   1 class u8   2 arena u16   4 n u32 (run pages, or a slab's used blocks)
/// 8 next u32  12 prev u32 (list links: page + 1, 0 = none)
/// 16 bitmap 4 x u64 (slab: bit set = block in use or past the slab's end)
/// 48 len u64 (large block: bytes requested)
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Desc {
    pub(crate) kind: u8,
    pub(crate) class: u8,
    pub(crate) arena: u16,
    pub(crate) n: u32,
    pub(crate) next: u32,
    pub(crate) prev: u32,
    pub(crate) bits: [u64; 4],
    pub(crate) len: u64,
}

impl Desc {
    /// The descriptor in `b` (its [`DESC`] bytes; a shorter slice reads as zeros past
    /// its end, which no caller passes: each reads exactly one descriptor).
    pub(crate) fn decode(b: &[u8]) -> Desc {
        match b.first_chunk::<{ DESC as usize }>() {
            Some(a) => Desc::decode_array(a),
            None => {
                let mut a = [0u8; DESC as usize];
                a[..b.len()].copy_from_slice(b);
                Desc::decode_array(&a)
            }
        }
    }

    /// [`Desc::decode`] of exactly one descriptor's bytes: field reads without a bounds
    /// check each (a decode from a slice took about 100 instructions, on every heap call
    /// that reads a descriptor).
    #[inline]
    fn decode_array(b: &[u8; DESC as usize]) -> Desc {
        let u32_at = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&b[at..at + 4]);
            u32::from_le_bytes(w)
        };
        let u64_at = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        Desc {
            kind: b[0],
            class: b[1],
            arena: u16::from_le_bytes([b[2], b[3]]),
            n: u32_at(4),
            next: u32_at(8),
            prev: u32_at(12),
            bits: [u64_at(16), u64_at(24), u64_at(32), u64_at(40)],
            len: u64_at(48),
        }
    }

    pub(crate) fn encode(&self) -> [u8; DESC as usize] {
        let mut b = [0u8; DESC as usize];
        b[0] = self.kind;
        b[1] = self.class;
        b[2..4].copy_from_slice(&self.arena.to_le_bytes());
        b[4..8].copy_from_slice(&self.n.to_le_bytes());
        b[8..12].copy_from_slice(&self.next.to_le_bytes());
        b[12..16].copy_from_slice(&self.prev.to_le_bytes());
        for (i, w) in self.bits.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&w.to_le_bytes());
        }
        b[48..56].copy_from_slice(&self.len.to_le_bytes());
        b
    }

    /// A fresh slab of class `c` for `arena`: no block in use; bits past its end set.
    pub(crate) fn slab(c: usize, arena: u32) -> Desc {
        let cap = slab_cap(c);
        let mut bits = [0u64; 4];
        for bit in cap..256 {
            bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
        Desc {
            kind: SLAB,
            class: c as u8,
            arena: arena as u16,
            bits,
            ..Desc::default()
        }
    }

    pub(crate) fn free(n: u32, kind: u8) -> Desc {
        Desc {
            kind,
            n,
            ..Desc::default()
        }
    }

    pub(crate) fn bit(&self, slot: u32) -> bool {
        self.bits[(slot / 64) as usize] >> (slot % 64) & 1 == 1
    }

    pub(crate) fn flip(&mut self, slot: u32) {
        self.bits[(slot / 64) as usize] ^= 1 << (slot % 64);
    }

    /// The first free block of a slab, in constant time (at most four words).
    pub(crate) fn first_free(&self) -> Option<u32> {
        self.bits
            .iter()
            .enumerate()
            .find(|(_, w)| **w != u64::MAX)
            .map(|(i, w)| i as u32 * 64 + (!w).trailing_zeros())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_round_trips() {
        for g in [0u32, 1, 255, 256, 257, 1000] {
            match place(page_off(g) + 17) {
                Place::Page { g: h, within } => assert_eq!((h, within), (g, 17)),
                _ => panic!("page {g} not found"),
            }
            assert!(matches!(place(desc_off(g)), Place::Metadata));
            assert!(desc_off(g) + DESC <= page_off(zone_start(g)));
        }
        assert!(matches!(place(10), Place::Header));
        assert_eq!(pages_fitting(HEAP_BASE + META_PAGES * PAGE), 0);
        assert_eq!(pages_fitting(HEAP_BASE + (META_PAGES + 3) * PAGE + 100), 3);
        assert_eq!(pages_fitting(HEAP_BASE + ZONE_BYTES), 256);
        assert_eq!(pages_fitting(HEAP_BASE + ZONE_BYTES + 4 * PAGE), 256);
        assert_eq!(pages_fitting(100), 0);
    }

    #[test]
    fn classes_and_descriptors() {
        assert_eq!(class_for(1, 1), Some(0));
        assert_eq!(class_for(17, 8), Some(1));
        assert_eq!(class_for(40, 32), Some(3)); // 48 is not a multiple of 32
        assert_eq!(class_for(2049, 1), Some(CLASSES.len() - 1));
        assert_eq!(class_for(4097, 1), None);
        assert_eq!(slab_cap(CLASSES.len() - 1), 1);
        assert_eq!(runlist(1), 0);
        assert_eq!(runlist(3), 1);
        assert_eq!(runlist(256), 8);
        let mut d = Desc::slab(CLASSES.len() - 2, 3);
        assert_eq!(d.first_free(), Some(0));
        d.flip(0);
        d.flip(1);
        assert_eq!(d.first_free(), None, "a 2048-byte slab holds two blocks");
        d.next = 7;
        d.len = 99;
        assert_eq!(Desc::decode(&d.encode()), d);
        let short = Desc::decode(&d.encode()[..16]);
        assert_eq!((short.kind, short.next, short.bits[0]), (d.kind, d.next, 0));
        assert_eq!(short.len, 0, "a short slice reads as zeros past its end");
    }
}
