//! Redo records: the on-log form of one committed transaction.
//!
//! ```text
//! header (32 bytes, little endian)
//!   0  magic      u32  "RVMR"
//!   4  nranges    u32
//!   8  seq        u64  consecutive record sequence number
//!  16  total_len  u32  header + body, a multiple of 8
//!  20  body_crc   u32  CRC-32 of the body
//!  24  reserved   u32  zero
//!  28  header_crc u32  CRC-32 of bytes 0..28
//! body: nranges times
//!   segment u32, len u32, offset u64 (in the segment), new value (len bytes, padded to 8)
//! ```
//!
//! A record is the commit: it counts only if both checksums match and its sequence number
//! is the one expected at its position, so a torn write or a stale record from an earlier
//! lap around the circular log ends the scan instead of being replayed.

/// Bytes of a record header.
pub(crate) const HEADER_LEN: usize = 32;
/// Bytes of a range header inside the body.
pub(crate) const RANGE_HEADER_LEN: usize = 16;
const MAGIC: u32 = u32::from_le_bytes(*b"RVMR");

/// Rounds up to the record alignment.
pub(crate) const fn pad8(n: u64) -> u64 {
    (n + 7) & !7
}

/// Log bytes a record with these range lengths takes.
pub(crate) fn encoded_len(range_lens: impl Iterator<Item = u64>) -> u64 {
    HEADER_LEN as u64
        + range_lens
            .map(|l| RANGE_HEADER_LEN as u64 + pad8(l))
            .sum::<u64>()
}

/// Builds one record at the end of a buffer.
#[derive(Debug)]
pub(crate) struct RecordWriter {
    start: usize,
    nranges: u32,
}

impl RecordWriter {
    /// Reserves the header at the end of `buf`.
    pub(crate) fn begin(buf: &mut Vec<u8>) -> Self {
        let start = buf.len();
        buf.resize(start + HEADER_LEN, 0);
        Self { start, nranges: 0 }
    }

    /// Appends one range with its new value.
    pub(crate) fn range(&mut self, buf: &mut Vec<u8>, segment: u32, offset: u64, data: &[u8]) {
        buf.extend_from_slice(&segment.to_le_bytes());
        buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
        buf.extend_from_slice(&offset.to_le_bytes());
        buf.extend_from_slice(data);
        let pad = pad8(data.len() as u64) as usize - data.len();
        buf.extend_from_slice(&[0u8; 8][..pad]);
        self.nranges += 1;
    }

    /// Fills in the header. Returns the record length.
    pub(crate) fn finish(self, buf: &mut [u8], seq: u64) -> u64 {
        let rec = &mut buf[self.start..];
        let total = rec.len();
        let body_crc = crc32fast::hash(&rec[HEADER_LEN..]);
        rec[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        rec[4..8].copy_from_slice(&self.nranges.to_le_bytes());
        rec[8..16].copy_from_slice(&seq.to_le_bytes());
        rec[16..20].copy_from_slice(&(total as u32).to_le_bytes());
        rec[20..24].copy_from_slice(&body_crc.to_le_bytes());
        rec[24..28].fill(0);
        let header_crc = crc32fast::hash(&rec[..28]);
        rec[28..32].copy_from_slice(&header_crc.to_le_bytes());
        total as u64
    }
}

/// A record header that passed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) nranges: u32,
    pub(crate) seq: u64,
    pub(crate) total_len: u64,
    pub(crate) body_crc: u32,
}

/// One range of a record body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RangeRef<'a> {
    pub(crate) segment: u32,
    pub(crate) offset: u64,
    pub(crate) data: &'a [u8],
}

/// Checks a header: magic, checksum, alignment. The caller checks the sequence number.
pub(crate) fn parse_header(b: &[u8]) -> Option<Header> {
    let b: &[u8; HEADER_LEN] = b.get(..HEADER_LEN)?.try_into().ok()?;
    if u32_at(b, 0) != MAGIC || u32_at(b, 28) != crc32fast::hash(&b[..28]) {
        return None;
    }
    let total_len = u64::from(u32_at(b, 16));
    if total_len < HEADER_LEN as u64 || total_len % 8 != 0 {
        return None;
    }
    Some(Header {
        nranges: u32_at(b, 4),
        seq: u64::from_le_bytes(b[8..16].try_into().ok()?),
        total_len,
        body_crc: u32_at(b, 20),
    })
}

/// Checks a body against its header and splits it into ranges.
pub(crate) fn parse_body<'a>(header: &Header, body: &'a [u8]) -> Option<Vec<RangeRef<'a>>> {
    if body.len() as u64 + HEADER_LEN as u64 != header.total_len
        || crc32fast::hash(body) != header.body_crc
    {
        return None;
    }
    let mut ranges = Vec::with_capacity(header.nranges.min(1024) as usize);
    let mut at = 0usize;
    for _ in 0..header.nranges {
        let h = body.get(at..at + RANGE_HEADER_LEN)?;
        let segment = u32_at(h, 0);
        let len = u32_at(h, 4) as usize;
        let offset = u64::from_le_bytes(h[8..16].try_into().ok()?);
        let data = body.get(at + RANGE_HEADER_LEN..at + RANGE_HEADER_LEN + len)?;
        offset.checked_add(len as u64)?;
        ranges.push(RangeRef {
            segment,
            offset,
            data,
        });
        at += RANGE_HEADER_LEN + pad8(len as u64) as usize;
    }
    (at == body.len()).then_some(ranges)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_detects_damage() {
        let mut buf = vec![0xEEu8; 8]; // records are appended after earlier bytes
        let mut w = RecordWriter::begin(&mut buf);
        w.range(&mut buf, 1, 100, b"hello");
        w.range(&mut buf, 2, 7, &[9u8; 16]);
        let len = w.finish(&mut buf, 55);
        assert_eq!(len, encoded_len([5u64, 16].into_iter()));
        let rec = &buf[8..];
        let h = parse_header(rec).unwrap();
        assert_eq!((h.seq, h.nranges, h.total_len), (55, 2, len));
        let ranges = parse_body(&h, &rec[HEADER_LEN..]).unwrap();
        assert_eq!(
            ranges[0],
            RangeRef {
                segment: 1,
                offset: 100,
                data: b"hello"
            }
        );
        assert_eq!(ranges[1].data, &[9u8; 16]);

        for i in 0..rec.len() {
            let mut bad = rec.to_vec();
            bad[i] ^= 0x10;
            let ok = parse_header(&bad)
                .and_then(|h| parse_body(&h, &bad[HEADER_LEN..]).map(|_| ()))
                .is_some();
            // The reserved word and padding are covered by the checksums too.
            assert!(!ok, "flip at byte {i} went unnoticed");
        }
        assert!(parse_body(&h, &rec[HEADER_LEN..rec.len() - 8]).is_none());
    }
}
