//! On-disk and in-memory headers. All integers are little-endian. The layouts are
//! documented in `docs/rio-cache.md`.

use crate::lacks::{ChunkMap, MAP_BYTES};
use crate::sys::PAGE;

/// The format version of the memory image and the journal (the disk image's slot
/// headers have their own, [`DISK_VERSION`]). Version 2 came with the disk image's two
/// slots (version 1 held one copy of the data and installed each checkpoint through the
/// journal).
pub(crate) const VERSION: u32 = 2;

pub(crate) const DISK_MAGIC: [u8; 8] = *b"RIOCDISK";
pub(crate) const MEM_MAGIC: [u8; 8] = *b"RIOCMEMI";
pub(crate) const JOURNAL_MAGIC: [u8; 8] = *b"RIOCJRNL";
pub(crate) const COMMIT_MAGIC: [u8; 8] = *b"RIOCCMIT";
pub(crate) const GROUP_COMMIT_MAGIC: [u8; 8] = *b"RIOCGRPC";

/// The largest cache (2^50 bytes, 1 PiB): far beyond any memory file system, and small
/// enough that no offset or length computed from it overflows.
pub const MAX_DATA_LEN: u64 = 1 << 50;

/// The disk image starts with one header page, which holds the two slots' headers
/// (see [`META_AT`]); the data follows.
pub(crate) const DISK_DATA_OFFSET: u64 = PAGE as u64;

/// Where each slot's header is in the disk image: slot 0's at byte 0, slot 1's at byte
/// 512. Each lies inside one 512-byte sector, so a write of one never tears the other.
pub(crate) const META_AT: [u64; 2] = [0, 512];

/// Pages per extent: the disk image's data alternates between the two slots every this
/// many pages (1 MiB), so that each slot is read and written in 1 MiB pieces and a grow
/// only appends extents.
pub(crate) const EXTENT_PAGES: u64 = 256;

/// Where page `page` of slot `slot` is in the disk image.
pub(crate) fn slot_offset(slot: usize, page: u64) -> u64 {
    let (extent, within) = (page / EXTENT_PAGES, page % EXTENT_PAGES);
    DISK_DATA_OFFSET + ((2 * extent + slot as u64) * EXTENT_PAGES + within) * PAGE as u64
}

/// The length of the disk image of a cache of `map_len` bytes (whole pages): up to the
/// end of slot 1's last page. (Slot 0's part of the last extent is a hole past its last
/// page; the file is sparse wherever no checkpoint wrote.) It grows with every page a
/// grow adds, so a grow cut off before its commit point is seen, and undone, by length.
pub(crate) fn disk_len_for(map_len: u64) -> u64 {
    match map_len / PAGE as u64 {
        0 => DISK_DATA_OFFSET,
        pages => slot_offset(1, pages - 1) + PAGE as u64,
    }
}

/// The pieces of `pages` consecutive pages from `first` that are contiguous in a slot
/// (a run is split where it crosses into the next extent): `(first page, pages)`.
pub(crate) fn extent_runs(first: u64, pages: u64) -> impl Iterator<Item = (u64, u64)> {
    let end = first + pages;
    let mut at = first;
    std::iter::from_fn(move || {
        (at < end).then(|| {
            let n = (EXTENT_PAGES - at % EXTENT_PAGES).min(end - at);
            at += n;
            (at - n, n)
        })
    })
}

/// The value of the memory image's `ready` word once it holds a complete image.
pub(crate) const MEM_READY: u32 = 0x5245_4459; // "READY"

/// Rounds `n` up to a whole number of pages.
pub(crate) fn round_up_pages(n: u64) -> u64 {
    n.div_ceil(PAGE as u64) * PAGE as u64
}

pub(crate) fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_le_bytes());
}
pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(buf[at..at + 4].try_into().expect("4 bytes"))
}
pub(crate) fn get_u64(buf: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(buf[at..at + 8].try_into().expect("8 bytes"))
}

/// The version of the disk image's slot headers: 3 adds the map of where the other slot
/// may differ ([`crate::lacks`]). Version 2 headers (no map) are read, and a cold start
/// from one marks every page as differing; the next header written is version 3.
pub(crate) const DISK_VERSION: u32 = 3;

/// The header of one slot of the disk image (one 512-byte sector at [`META_AT`]`[slot]`):
/// the checkpoint that slot holds, and where the other slot may differ from it. The slot
/// whose header is intact and has the higher checkpoint number is the disk image's
/// checkpoint.
///
/// ```text
/// 0  magic "RIOCDISK"   8  version u32 (3)   12 page size u32   16 data_len u64
/// 24 checkpoint seq u64  32 writer u64: the id of the memory image that wrote it
/// 40 slot u32 (0 or 1: where the header is)
/// 44 map shift u32: the other slot may differ only on the pages of the map at 64, in
///    chunks of 2^shift pages (u32::MAX: no map, anywhere)   48 reserved (zero)
/// 64 map [444]   508 crc32 of 0..508
/// ```
///
/// Version 2 ended at 64, with its crc32 of 0..60 at 60 and bytes 44..60 zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DiskHeader {
    pub(crate) data_len: u64,
    pub(crate) seq: u64,
    pub(crate) writer: u64,
    /// Where the other slot may differ from this one; `None`: anywhere.
    pub(crate) lacks: Option<ChunkMap>,
    /// The version it was read as (what [`DiskHeader::encode`] writes: [`DISK_VERSION`]).
    pub(crate) version: u32,
}

/// The map shift of a header without a map.
const NO_MAP: u32 = u32::MAX;

/// Why a disk header was rejected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeaderError {
    Magic,
    Version(u32),
    PageSize(u32),
    Checksum,
    /// An intact header at the other slot's place (a copied or shifted sector).
    Slot(u32),
    /// An intact header whose map cannot be one (a crafted file).
    Map(u32),
}

impl DiskHeader {
    /// Bytes of a version 3 header (a sector).
    pub(crate) const LEN: usize = 512;

    /// A version 3 header.
    pub(crate) fn new(
        data_len: u64,
        seq: u64,
        writer: u64,
        lacks: Option<&ChunkMap>,
    ) -> DiskHeader {
        DiskHeader {
            data_len,
            seq,
            writer,
            lacks: lacks.copied(),
            version: DISK_VERSION,
        }
    }

    /// The header as written at slot `slot`'s place (always version 3).
    pub(crate) fn encode(&self, slot: usize) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[0..8].copy_from_slice(&DISK_MAGIC);
        put_u32(&mut b, 8, DISK_VERSION);
        put_u32(&mut b, 12, PAGE as u32);
        put_u64(&mut b, 16, self.data_len);
        put_u64(&mut b, 24, self.seq);
        put_u64(&mut b, 32, self.writer);
        put_u32(&mut b, 40, slot as u32);
        match &self.lacks {
            Some(m) => {
                put_u32(&mut b, 44, m.shift());
                b[64..64 + MAP_BYTES].copy_from_slice(m.bits());
            }
            None => put_u32(&mut b, 44, NO_MAP),
        }
        let crc = crc32fast::hash(&b[..508]);
        put_u32(&mut b, 508, crc);
        b
    }

    /// Decodes the header found at slot `slot`'s place (`b` holds its sector, or at
    /// least the 64 bytes of a version 2 header).
    pub(crate) fn decode(b: &[u8], slot: usize) -> Result<DiskHeader, HeaderError> {
        if b.len() < 64 || b[0..8] != DISK_MAGIC {
            return Err(HeaderError::Magic);
        }
        let version = get_u32(b, 8);
        let intact = match version {
            2 => crc32fast::hash(&b[..60]) == get_u32(b, 60),
            DISK_VERSION => b.len() >= Self::LEN && crc32fast::hash(&b[..508]) == get_u32(b, 508),
            _ => return Err(HeaderError::Version(version)),
        };
        if !intact {
            return Err(HeaderError::Checksum);
        }
        let page = get_u32(b, 12);
        if page as usize != PAGE {
            return Err(HeaderError::PageSize(page));
        }
        if get_u32(b, 40) != slot as u32 {
            return Err(HeaderError::Slot(get_u32(b, 40)));
        }
        let lacks = match (version, get_u32(b, 44)) {
            (2, _) | (_, NO_MAP) => None,
            (_, shift) => Some(
                ChunkMap::from_parts(shift, &b[64..64 + MAP_BYTES])
                    .ok_or(HeaderError::Map(shift))?,
            ),
        };
        Ok(DiskHeader {
            data_len: get_u64(b, 16),
            seq: get_u64(b, 24),
            writer: get_u64(b, 32),
            lacks,
            version,
        })
    }
}

/// The header of the memory image (its first page).
///
/// ```text
/// 0  magic "RIOCMEMI"  8  version u32  12 page size u32  16 data_len u64
/// 24 disk st_dev u64   32 disk st_ino u64                40 boot id [36]
/// 76 meta_len u64 (offset of the data)   84 id u64 (random, chosen when the image is made)
/// 92 parent u64: the writer id of the disk image this image was loaded from
/// 100 reserved            120 crc32 of 0..120
/// 124 ready u32: MEM_READY once the image is complete (written last, atomically)
/// 128 synced u64: the checkpoint sequence number this image last installed on the
///     disk (or loaded from it), 48 bits, with 16 check bits on top
///     (`encode_synced`); updated atomically after each checkpoint
/// ```
/// 136 origin: the disk file's absolute path, so that a memory image whose disk file is
///     gone can be named and found (`rio_cache::images`): length u32 (0: not
///     recorded), crc32 of the length and the path bytes u32, then the path bytes
///     (at most [`ORIGIN_MAX`]); written when the image is made and at every open
/// After the header page come the two page maps (one byte per data page each: which is
/// the dirty map and which the in-flight map alternates, see `snapshot`) and the map of
/// pages where the disk image's two slots may differ (one byte per page), padded to a
/// page; then the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MemHeader {
    pub(crate) data_len: u64,
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    pub(crate) boot_id: [u8; 36],
    pub(crate) meta_len: u64,
    pub(crate) id: u64,
    pub(crate) parent: u64,
}

impl MemHeader {
    pub(crate) const LEN: usize = 120;
    pub(crate) const READY_AT: usize = 124;
    pub(crate) const SYNCED_AT: usize = 128;

    pub(crate) fn encode(&self) -> [u8; 124] {
        let mut b = [0u8; 124];
        b[0..8].copy_from_slice(&MEM_MAGIC);
        put_u32(&mut b, 8, VERSION);
        put_u32(&mut b, 12, PAGE as u32);
        put_u64(&mut b, 16, self.data_len);
        put_u64(&mut b, 24, self.dev);
        put_u64(&mut b, 32, self.ino);
        b[40..76].copy_from_slice(&self.boot_id);
        put_u64(&mut b, 76, self.meta_len);
        put_u64(&mut b, 84, self.id);
        put_u64(&mut b, 92, self.parent);
        let crc = crc32fast::hash(&b[..Self::LEN]);
        put_u32(&mut b, Self::LEN, crc);
        b
    }

    /// Bytes of the header page an open reads: the checksummed part, `ready`, `synced`.
    pub(crate) const READ_LEN: usize = Self::SYNCED_AT + 8;

    /// Decodes a header, saying why it is not a complete, intact rio-cache memory image
    /// header of this version.
    pub(crate) fn decode(b: &[u8]) -> Result<MemHeader, HeaderError> {
        if b.len() < 124 || b[0..8] != MEM_MAGIC {
            return Err(HeaderError::Magic);
        }
        let version = get_u32(b, 8);
        if version != VERSION {
            return Err(HeaderError::Version(version));
        }
        if crc32fast::hash(&b[..Self::LEN]) != get_u32(b, 120) {
            return Err(HeaderError::Checksum);
        }
        let page = get_u32(b, 12);
        if page as usize != PAGE {
            return Err(HeaderError::PageSize(page));
        }
        Ok(MemHeader {
            data_len: get_u64(b, 16),
            dev: get_u64(b, 24),
            ino: get_u64(b, 32),
            boot_id: b[40..76].try_into().expect("36 bytes"),
            meta_len: get_u64(b, 76),
            id: get_u64(b, 84),
            parent: get_u64(b, 92),
        })
    }

    /// The `synced` word for checkpoint `seq`: its low 48 bits, and in the top 16 bits a
    /// check of them, so a damaged word is told apart from an old one. One atomic 8-byte
    /// store writes both. (2^48 checkpoints is about 9,000 years at 1,000 a second.)
    pub(crate) fn encode_synced(seq: u64) -> u64 {
        let seq = seq & SEQ_MASK;
        seq | (synced_check(seq) << 48)
    }

    /// The checkpoint number in a `synced` word, or `None` if its check fails.
    pub(crate) fn decode_synced(word: u64) -> Option<u64> {
        let seq = word & SEQ_MASK;
        (word >> 48 == synced_check(seq)).then_some(seq)
    }

    /// Bytes of metadata before the data: header page plus three maps, page-aligned.
    pub(crate) fn meta_len_for(pages: u64) -> u64 {
        PAGE as u64 + round_up_pages(3 * pages)
    }

    /// Where the map of pages the two slots may differ on starts.
    pub(crate) fn differs_at(pages: u64) -> u64 {
        PAGE as u64 + 2 * pages
    }
}

const SEQ_MASK: u64 = (1 << 48) - 1;

/// Where the memory image's origin record (the disk file's absolute path) starts.
pub(crate) const ORIGIN_AT: usize = MemHeader::READ_LEN;

/// The longest disk file path the origin record holds; a longer one is not recorded.
pub(crate) const ORIGIN_MAX: usize = PAGE - ORIGIN_AT - 8;

/// The origin record for the disk file at the absolute path `abs` (a zero length, "not
/// recorded", if the path does not fit).
pub(crate) fn encode_origin(abs: &std::path::Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let bytes = abs.as_os_str().as_bytes();
    let bytes = if bytes.len() > ORIGIN_MAX {
        &[][..]
    } else {
        bytes
    };
    let mut b = vec![0u8; 8 + bytes.len()];
    put_u32(&mut b, 0, bytes.len() as u32);
    b[8..].copy_from_slice(bytes);
    let crc = origin_check(&b);
    put_u32(&mut b, 4, crc);
    b
}

/// The disk file path in an origin record (`rec`: the header page from [`ORIGIN_AT`] on),
/// or `None` if none is recorded or the record fails its check.
pub(crate) fn decode_origin(rec: &[u8]) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if rec.len() < 8 {
        return None;
    }
    let n = get_u32(rec, 0) as usize;
    if n == 0
        || n > ORIGIN_MAX
        || rec.len() < 8 + n
        || origin_check(&rec[..8 + n]) != get_u32(rec, 4)
    {
        return None;
    }
    Some(std::ffi::OsStr::from_bytes(&rec[8..8 + n]).into())
}

/// The check of an origin record: crc32 of its length word and path bytes, never 0 (so a
/// zeroed record fails it).
fn origin_check(rec: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&rec[0..4]);
    h.update(&rec[8..]);
    h.finalize().max(1)
}

/// 16 check bits for a 48-bit checkpoint number (never all zero for 0, so a zeroed word
/// fails it).
fn synced_check(seq: u64) -> u64 {
    u64::from(crc32fast::hash(&seq.to_le_bytes()[..6]) & 0xffff)
}

/// A random id for a new memory image: the OS-seeded keys of std's `RandomState`,
/// mixed with the time and the process id. Never 0 (0 marks "no writer yet").
pub(crate) fn new_image_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.write_u32(std::process::id());
    h.finish().max(1)
}

/// This boot's id, from `/proc/sys/kernel/random/boot_id`: a memory image written
/// under another boot id did not survive a restart.
pub(crate) fn boot_id() -> std::io::Result<[u8; 36]> {
    let s = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?;
    let s = s.trim().as_bytes();
    let mut id = [b'0'; 36];
    let n = s.len().min(36);
    id[..n].copy_from_slice(&s[..n]);
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_header_round_trips_and_detects_damage() {
        let mut lacks = ChunkMap::empty(256);
        lacks.mark(200);
        for h in [
            DiskHeader::new(1 << 20, 7, 0xfeed, Some(&lacks)),
            DiskHeader::new(1 << 20, 7, 0xfeed, None),
        ] {
            let mut b = h.encode(1);
            assert_eq!(DiskHeader::decode(&b, 1), Ok(h));
            assert_eq!(DiskHeader::decode(&b, 0), Err(HeaderError::Slot(1)));
            // The map is under the checksum too.
            for at in [20, 70, 500] {
                b[at] ^= 1;
                assert_eq!(DiskHeader::decode(&b, 1), Err(HeaderError::Checksum));
                b[at] ^= 1;
            }
            let mut b = h.encode(0);
            b[0] = b'X';
            assert_eq!(DiskHeader::decode(&b, 0), Err(HeaderError::Magic));
        }
    }

    /// A version 2 header (64 bytes, its checksum at 60) still opens, without a map.
    #[test]
    fn version_2_headers_are_read_without_a_map() {
        let mut b = [0u8; 64];
        b[0..8].copy_from_slice(&DISK_MAGIC);
        put_u32(&mut b, 8, 2);
        put_u32(&mut b, 12, PAGE as u32);
        put_u64(&mut b, 16, 1 << 20);
        put_u64(&mut b, 24, 9);
        put_u64(&mut b, 32, 0xbeef);
        put_u32(&mut b, 40, 1);
        let crc = crc32fast::hash(&b[..60]);
        put_u32(&mut b, 60, crc);
        let h = DiskHeader::decode(&b, 1).unwrap();
        assert_eq!(
            (h.data_len, h.seq, h.writer, h.lacks, h.version),
            (1 << 20, 9, 0xbeef, None, 2)
        );
        b[30] ^= 1;
        assert_eq!(DiskHeader::decode(&b, 1), Err(HeaderError::Checksum));
        put_u32(&mut b, 8, 4);
        assert_eq!(DiskHeader::decode(&b, 1), Err(HeaderError::Version(4)));
    }

    /// An intact header whose map shift is impossible is refused, not trusted.
    #[test]
    fn a_crafted_map_shift_is_refused() {
        let mut b = DiskHeader::new(1 << 20, 1, 1, Some(&ChunkMap::empty(256))).encode(0);
        put_u32(&mut b, 44, 64);
        let crc = crc32fast::hash(&b[..508]);
        put_u32(&mut b, 508, crc);
        assert_eq!(DiskHeader::decode(&b, 0), Err(HeaderError::Map(64)));
    }

    /// The slots alternate by extent, never overlap, and fit in the file.
    #[test]
    fn slots_interleave_by_extent_inside_the_file() {
        let page = PAGE as u64;
        assert_eq!(slot_offset(0, 0), DISK_DATA_OFFSET);
        assert_eq!(slot_offset(1, 0), DISK_DATA_OFFSET + EXTENT_PAGES * page);
        assert_eq!(
            slot_offset(0, EXTENT_PAGES),
            DISK_DATA_OFFSET + 2 * EXTENT_PAGES * page
        );
        assert_eq!(slot_offset(0, 3) + page, slot_offset(0, 4));
        for pages in [1, 2, EXTENT_PAGES - 1, EXTENT_PAGES, EXTENT_PAGES + 1, 1000] {
            let len = disk_len_for(pages * page);
            let mut seen = std::collections::BTreeSet::new();
            assert!(disk_len_for((pages + 1) * page) > len);
            for slot in 0..2 {
                for p in 0..pages {
                    let at = slot_offset(slot, p);
                    assert!(
                        at >= DISK_DATA_OFFSET && at + page <= len,
                        "{pages} {slot} {p}"
                    );
                    assert!(seen.insert(at), "{pages} {slot} {p}");
                }
            }
        }
        let runs: Vec<_> = extent_runs(EXTENT_PAGES - 2, EXTENT_PAGES + 5).collect();
        assert_eq!(
            runs,
            vec![
                (EXTENT_PAGES - 2, 2),
                (EXTENT_PAGES, EXTENT_PAGES),
                (2 * EXTENT_PAGES, 3)
            ]
        );
        assert_eq!(extent_runs(5, 0).count(), 0);
    }

    #[test]
    fn mem_header_round_trips_and_detects_damage() {
        let h = MemHeader {
            data_len: 8192,
            dev: 1,
            ino: 2,
            boot_id: [b'a'; 36],
            meta_len: MemHeader::meta_len_for(2),
            id: 42,
            parent: 7,
        };
        let mut b = h.encode();
        assert_eq!(MemHeader::decode(&b), Ok(h));
        b[50] ^= 4;
        assert_eq!(MemHeader::decode(&b), Err(HeaderError::Checksum));
    }

    #[test]
    fn origin_round_trips_and_detects_damage() {
        let p = std::path::Path::new("/data/segments/a.vista");
        let mut rec = encode_origin(p);
        rec.resize(PAGE - ORIGIN_AT, 0);
        assert_eq!(decode_origin(&rec).as_deref(), Some(p));
        for at in [0, 4, 8, 20] {
            let mut bad = rec.clone();
            bad[at] ^= 1;
            assert_eq!(decode_origin(&bad), None, "flip at {at}");
        }
        assert_eq!(decode_origin(&vec![0u8; PAGE - ORIGIN_AT]), None);
        let long = std::path::PathBuf::from("/".repeat(ORIGIN_MAX + 1));
        assert_eq!(decode_origin(&encode_origin(&long)), None);
    }

    #[test]
    fn synced_word_round_trips_and_detects_damage() {
        for seq in [0, 1, 2, 1000, SEQ_MASK] {
            let w = MemHeader::encode_synced(seq);
            assert_eq!(MemHeader::decode_synced(w), Some(seq));
            for bit in 0..64 {
                assert_eq!(
                    MemHeader::decode_synced(w ^ (1 << bit)),
                    None,
                    "{seq} {bit}"
                );
            }
        }
        assert_eq!(MemHeader::decode_synced(0), None);
    }
}
