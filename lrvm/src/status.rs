//! The log status block: two alternating, checksummed copies at the start of the log.
//!
//! Each copy is [`COPY_LEN`] bytes and ends in a CRC-32 of everything before it. A status
//! write goes to the copy *not* holding the newest generation, so a torn write damages
//! only the copy being written and the previous generation stays readable.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bytes of one status block copy.
pub(crate) const COPY_LEN: usize = 4096;
/// Number of copies.
pub(crate) const COPIES: usize = 2;
/// First byte of the record area.
pub(crate) const RECORD_AREA_START: u64 = (COPY_LEN * COPIES) as u64;
/// Identifies an LRVM log.
pub(crate) const MAGIC: [u8; 8] = *b"LRVMLOG\0";
/// Format version written by this crate.
pub(crate) const VERSION: u32 = 1;

const TABLE_START: usize = 72;
const CRC_AT: usize = COPY_LEN - 4;

/// A data segment known to the log: records name segments by `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentEntry {
    pub(crate) id: u32,
    pub(crate) path: PathBuf,
}

/// The decoded content of a status block copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    /// Incremented by every status write; the valid copy with the larger one wins.
    pub(crate) generation: u64,
    /// Total log file length, fixed at `create_log`.
    pub(crate) log_len: u64,
    /// Logical offset of the oldest unapplied record.
    pub(crate) head: u64,
    /// Sequence number of the record at `head`.
    pub(crate) head_seq: u64,
    /// Logical end of the log when the status was written (a hint; recovery scans on).
    pub(crate) tail_hint: u64,
    /// Segments that records in the log (or mapped regions) refer to.
    pub(crate) segments: Vec<SegmentEntry>,
}

/// What one copy holds.
#[derive(Debug)]
pub(crate) enum Copy {
    Valid(Status),
    /// The magic is there but the checksum (or the layout) is not.
    Damaged,
    /// No magic at all.
    Foreign,
}

impl Status {
    pub(crate) fn new(log_len: u64) -> Self {
        Self {
            generation: 0,
            log_len,
            head: 0,
            head_seq: 1,
            tail_hint: 0,
            segments: Vec::new(),
        }
    }

    /// Serialises into one copy. Fails if the segment table does not fit.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        let mut b = vec![0u8; COPY_LEN];
        b[0..8].copy_from_slice(&MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[16..24].copy_from_slice(&self.generation.to_le_bytes());
        b[24..32].copy_from_slice(&self.log_len.to_le_bytes());
        b[32..40].copy_from_slice(&self.head.to_le_bytes());
        b[40..48].copy_from_slice(&self.head_seq.to_le_bytes());
        b[48..56].copy_from_slice(&self.tail_hint.to_le_bytes());
        b[64..68].copy_from_slice(&(self.segments.len() as u32).to_le_bytes());
        let mut at = TABLE_START;
        for s in &self.segments {
            let path = s.path.as_os_str().as_bytes();
            if at + 8 + path.len() > CRC_AT {
                return Err(Error::TooManySegments);
            }
            b[at..at + 4].copy_from_slice(&s.id.to_le_bytes());
            b[at + 4..at + 8].copy_from_slice(&(path.len() as u32).to_le_bytes());
            b[at + 8..at + 8 + path.len()].copy_from_slice(path);
            at += 8 + path.len();
        }
        let crc = crc32fast::hash(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        Ok(b)
    }

    /// Decodes one copy.
    pub(crate) fn decode(b: &[u8]) -> Result<Copy> {
        if b.len() != COPY_LEN || b[0..8] != MAGIC {
            return Ok(Copy::Foreign);
        }
        let crc = u32::from_le_bytes(b[CRC_AT..].try_into().expect("4 bytes"));
        if crc != crc32fast::hash(&b[..CRC_AT]) {
            return Ok(Copy::Damaged);
        }
        let version = u32_at(b, 8);
        if version != VERSION {
            return Err(Error::UnsupportedVersion(version));
        }
        let n = u32_at(b, 64) as usize;
        let mut segments = Vec::with_capacity(n.min(512));
        let mut at = TABLE_START;
        for _ in 0..n {
            if at + 8 > CRC_AT {
                return Ok(Copy::Damaged);
            }
            let id = u32_at(b, at);
            let len = u32_at(b, at + 4) as usize;
            if at + 8 + len > CRC_AT {
                return Ok(Copy::Damaged);
            }
            let path = OsStr::from_bytes(&b[at + 8..at + 8 + len]);
            segments.push(SegmentEntry {
                id,
                path: PathBuf::from(path),
            });
            at += 8 + len;
        }
        Ok(Copy::Valid(Status {
            generation: u64_at(b, 16),
            log_len: u64_at(b, 24),
            head: u64_at(b, 32),
            head_seq: u64_at(b, 40),
            tail_hint: u64_at(b, 48),
            segments,
        }))
    }

    /// Picks the newest valid copy. `path` is only for error messages.
    pub(crate) fn choose(copies: [Copy; COPIES], path: &Path) -> Result<(Status, usize)> {
        let mut best: Option<(Status, usize)> = None;
        let mut any_magic = false;
        for (slot, c) in copies.into_iter().enumerate() {
            match c {
                Copy::Valid(s) => {
                    any_magic = true;
                    if best
                        .as_ref()
                        .is_none_or(|(b, _)| s.generation > b.generation)
                    {
                        best = Some((s, slot));
                    }
                }
                Copy::Damaged => any_magic = true,
                Copy::Foreign => {}
            }
        }
        match best {
            Some(b) => Ok(b),
            None if any_magic => Err(Error::StatusBlockDamaged(path.to_path_buf())),
            None => Err(Error::BadMagic(path.to_path_buf())),
        }
    }

    /// The copy a status with this generation is written to.
    pub(crate) fn slot(&self) -> usize {
        (self.generation % COPIES as u64) as usize
    }

    /// File offset of copy `slot`.
    pub(crate) fn slot_offset(slot: usize) -> u64 {
        (slot * COPY_LEN) as u64
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Status {
        Status {
            generation: 7,
            log_len: 1 << 20,
            head: 4096,
            head_seq: 42,
            tail_hint: 9000,
            segments: vec![
                SegmentEntry {
                    id: 0,
                    path: "/a/b".into(),
                },
                SegmentEntry {
                    id: 3,
                    path: "/c".into(),
                },
            ],
        }
    }

    #[test]
    fn round_trips() {
        let s = sample();
        match Status::decode(&s.encode().unwrap()).unwrap() {
            Copy::Valid(d) => assert_eq!(d, s),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn torn_copy_falls_back_to_the_other() {
        let old = sample();
        let mut new = sample();
        new.generation += 1;
        new.head = 5000;
        let mut torn = new.encode().unwrap();
        torn[100..].fill(0);
        let copies = [
            Status::decode(&old.encode().unwrap()).unwrap(),
            Status::decode(&torn).unwrap(),
        ];
        assert!(matches!(copies[1], Copy::Damaged));
        let (chosen, slot) = Status::choose(copies, Path::new("x")).unwrap();
        assert_eq!((chosen, slot), (old, 0));
    }

    #[test]
    fn newest_valid_copy_wins_and_errors_are_typed() {
        let a = sample();
        let mut b = sample();
        b.generation = 8;
        let enc = |s: &Status| Status::decode(&s.encode().unwrap()).unwrap();
        assert_eq!(
            Status::choose([enc(&a), enc(&b)], Path::new("x"))
                .unwrap()
                .1,
            1
        );
        let damaged = || Copy::Damaged;
        assert!(matches!(
            Status::choose([damaged(), damaged()], Path::new("x")),
            Err(Error::StatusBlockDamaged(_))
        ));
        assert!(matches!(
            Status::choose([Copy::Foreign, Copy::Foreign], Path::new("x")),
            Err(Error::BadMagic(_))
        ));
    }

    #[test]
    fn oversized_table_is_an_error() {
        let mut s = sample();
        s.segments = (0..100)
            .map(|id| SegmentEntry {
                id,
                path: "p".repeat(100).into(),
            })
            .collect();
        assert!(matches!(s.encode(), Err(Error::TooManySegments)));
    }
}
