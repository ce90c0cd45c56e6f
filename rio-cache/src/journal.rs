//! The checkpoint journal: a batch of pages staged beside the disk image so that
//! installing them in place is all-or-nothing.
//!
//! ```text
//! header (64 B)   0 magic "RIOCJRNL"  8 version u32  12 page size u32  16 data_len u64
//!                 24 seq u64  32 page count n u64  40 writer u64 (memory image id)
//!                 48 reserved  60 crc32 of 0..60
//! index (8n B)    the data-page number of each page, ascending
//! pages (4096n B) the page images, in index order
//! commit (64 B)   0 magic "RIOCCMIT"  8 seq u64  16 n u64  24 crc32 of header+index+pages
//!                 28 reserved  60 crc32 of 0..60
//! ```
//!
//! A member of a group checkpoint (see `group`) seals its body with a *group commit
//! record* instead, which commits the batch only if the coordinator it names decided its
//! epoch:
//!
//! ```text
//! group commit    0 magic "RIOCGRPC"  8 seq u64  16 n u64  24 crc32 of header+index+pages
//! (64 B + path)   28 path length u32  32 epoch u64  40 crc32 of the path  44 reserved
//!                 60 crc32 of 0..60, then the coordinator's path (its bytes)
//! ```
//!
//! The body (header, index, pages) is written and fsynced before the commit record is
//! written and fsynced. So a commit record that is intact proves the body reached the
//! disk; a body that then fails its checksum is corruption, not a torn write.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::format::{
    get_u32, get_u64, COMMIT_MAGIC, GROUP_COMMIT_MAGIC, JOURNAL_MAGIC, MAX_DATA_LEN, VERSION,
};
use crate::sys::PAGE;

pub(crate) const HEADER_LEN: usize = 64;
pub(crate) const COMMIT_LEN: usize = 64;

/// A staged checkpoint: header, index and pages in one buffer, ready to write.
#[derive(Debug)]
pub(crate) struct Batch {
    buf: Vec<u8>,
    pages: usize,
}

impl Batch {
    /// A batch for `indices` (ascending), with the page images still zero.
    pub(crate) fn new(seq: u64, data_len: u64, writer: u64, indices: &[u64]) -> Batch {
        let n = indices.len();
        let mut buf = vec![0u8; HEADER_LEN + 8 * n + PAGE * n];
        buf[0..8].copy_from_slice(&JOURNAL_MAGIC);
        buf[8..12].copy_from_slice(&VERSION.to_le_bytes());
        buf[12..16].copy_from_slice(&(PAGE as u32).to_le_bytes());
        buf[16..24].copy_from_slice(&data_len.to_le_bytes());
        buf[24..32].copy_from_slice(&seq.to_le_bytes());
        buf[32..40].copy_from_slice(&(n as u64).to_le_bytes());
        buf[40..48].copy_from_slice(&writer.to_le_bytes());
        let crc = crc32fast::hash(&buf[..60]);
        buf[60..64].copy_from_slice(&crc.to_le_bytes());
        for (i, idx) in indices.iter().enumerate() {
            let at = HEADER_LEN + 8 * i;
            buf[at..at + 8].copy_from_slice(&idx.to_le_bytes());
        }
        Batch { buf, pages: n }
    }

    pub(crate) fn len(&self) -> usize {
        self.pages
    }

    pub(crate) fn seq(&self) -> u64 {
        get_u64(&self.buf, 24)
    }

    /// The cache size this batch leaves the disk image at (larger than the disk
    /// header's for a grow).
    pub(crate) fn data_len(&self) -> u64 {
        get_u64(&self.buf, 16)
    }

    /// The id of the memory image that staged this batch.
    pub(crate) fn writer(&self) -> u64 {
        get_u64(&self.buf, 40)
    }

    /// The page number of the `i`-th page.
    pub(crate) fn index(&self, i: usize) -> u64 {
        get_u64(&self.buf, HEADER_LEN + 8 * i)
    }

    fn pages_at(&self) -> usize {
        HEADER_LEN + 8 * self.pages
    }

    /// The image of the `i`-th page, to fill.
    pub(crate) fn page_mut(&mut self, i: usize) -> &mut [u8] {
        let at = self.pages_at() + PAGE * i;
        &mut self.buf[at..at + PAGE]
    }

    /// Header, index and pages: what is written before the commit record.
    pub(crate) fn body(&self) -> &[u8] {
        &self.buf
    }

    /// The commit record that seals this body.
    pub(crate) fn commit_record(&self) -> [u8; COMMIT_LEN] {
        let mut c = [0u8; COMMIT_LEN];
        c[0..8].copy_from_slice(&COMMIT_MAGIC);
        c[8..16].copy_from_slice(&self.seq().to_le_bytes());
        c[16..24].copy_from_slice(&(self.pages as u64).to_le_bytes());
        c[24..28].copy_from_slice(&crc32fast::hash(&self.buf).to_le_bytes());
        let crc = crc32fast::hash(&c[..60]);
        c[60..64].copy_from_slice(&crc.to_le_bytes());
        c
    }

    /// The group commit record that seals this body for `epoch` of the coordinator at
    /// `coordinator` (see the module documentation).
    pub(crate) fn group_commit_record(&self, epoch: u64, coordinator: &Path) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        let path = coordinator.as_os_str().as_bytes();
        let mut c = vec![0u8; COMMIT_LEN + path.len()];
        c[0..8].copy_from_slice(&GROUP_COMMIT_MAGIC);
        c[8..16].copy_from_slice(&self.seq().to_le_bytes());
        c[16..24].copy_from_slice(&(self.pages as u64).to_le_bytes());
        c[24..28].copy_from_slice(&crc32fast::hash(&self.buf).to_le_bytes());
        c[28..32].copy_from_slice(&(path.len() as u32).to_le_bytes());
        c[32..40].copy_from_slice(&epoch.to_le_bytes());
        c[40..44].copy_from_slice(&crc32fast::hash(path).to_le_bytes());
        let crc = crc32fast::hash(&c[..60]);
        c[60..64].copy_from_slice(&crc.to_le_bytes());
        c[COMMIT_LEN..].copy_from_slice(path);
        c
    }

    /// Runs of consecutive pages: `(first page number, page images)`.
    pub(crate) fn runs(&self) -> Vec<(u64, &[u8])> {
        let mut runs = Vec::new();
        let base = self.pages_at();
        let mut i = 0;
        while i < self.pages {
            let start = i;
            while i + 1 < self.pages && self.index(i + 1) == self.index(i) + 1 {
                i += 1;
            }
            i += 1;
            runs.push((
                self.index(start),
                &self.buf[base + PAGE * start..base + PAGE * i],
            ));
        }
        runs
    }
}

/// What a journal file holds.
#[derive(Debug)]
pub(crate) enum Journal {
    /// Nothing: the last checkpoint completed (the file is empty or its header is
    /// zero; bytes after a zero header are leftovers and mean nothing).
    Empty,
    /// A checkpoint that never reached its commit record: discard it.
    Torn,
    /// A committed checkpoint, to install (again: installing is idempotent).
    Committed(Batch),
    /// A group member's checkpoint: committed if and only if the coordinator decided
    /// `epoch`.
    Sealed {
        /// The batch.
        batch: Batch,
        /// The group checkpoint's epoch.
        epoch: u64,
        /// The coordinator that decides it.
        coordinator: std::path::PathBuf,
    },
}

/// Reads and validates the journal beside a disk image whose header says `data_len`.
/// A committed batch is for that size, or for a larger one (a grow, whose new size it
/// commits); its page numbers are bounded by the size it is for.
pub(crate) fn read(file: &File, path: &Path, data_len: u64) -> Result<Journal> {
    let corrupt = |reason: String| Error::Corrupt {
        path: path.to_owned(),
        reason,
    };
    let len = file
        .metadata()
        .context(|| format!("stat {}", path.display()))?
        .len();
    if len == 0 {
        return Ok(Journal::Empty);
    }
    let mut header = [0u8; HEADER_LEN];
    if len < HEADER_LEN as u64 {
        return Ok(Journal::Torn);
    }
    file.read_exact_at(&mut header, 0)
        .context(|| format!("read {}", path.display()))?;
    if header.iter().all(|&b| b == 0) {
        // A cleared journal (its header is zeroed at the end of every checkpoint), or
        // one whose header sector never reached the disk: nothing was committed.
        return Ok(Journal::Empty);
    }
    if header[0..8] != JOURNAL_MAGIC {
        return Err(corrupt("bad journal magic".into()));
    }
    if get_u32(&header, 8) != VERSION || get_u32(&header, 12) as usize != PAGE {
        return Err(corrupt("journal of another format version".into()));
    }
    if crc32fast::hash(&header[..60]) != get_u32(&header, 60) {
        return Err(corrupt("journal header checksum mismatch".into()));
    }
    let batch_len = get_u64(&header, 16);
    let size_ok = batch_len == data_len || (batch_len > data_len && batch_len <= MAX_DATA_LEN);
    let data_pages = if size_ok { batch_len } else { data_len }.div_ceil(PAGE as u64);
    let n = get_u64(&header, 32);
    let Some(body_len) = n
        .checked_mul(8 + PAGE as u64)
        .and_then(|x| x.checked_add(HEADER_LEN as u64))
    else {
        return Err(corrupt(format!("journal claims {n} pages")));
    };
    if n > data_pages {
        return Err(corrupt(format!(
            "journal claims {n} pages; the cache has {data_pages}"
        )));
    }
    if len < body_len + COMMIT_LEN as u64 {
        return Ok(Journal::Torn);
    }
    let mut commit = [0u8; COMMIT_LEN];
    file.read_exact_at(&mut commit, body_len)
        .context(|| format!("read {}", path.display()))?;
    let seq = get_u64(&header, 24);
    let group = commit[0..8] == GROUP_COMMIT_MAGIC;
    if !(commit[0..8] == COMMIT_MAGIC || group)
        || crc32fast::hash(&commit[..60]) != get_u32(&commit, 60)
        || get_u64(&commit, 8) != seq
        || get_u64(&commit, 16) != n
    {
        // The commit record did not (completely) reach the disk.
        return Ok(Journal::Torn);
    }
    let mut sealed = None;
    if group {
        use std::os::unix::ffi::OsStrExt;
        let path_len = u64::from(get_u32(&commit, 28));
        if path_len > 4096 || len < body_len + COMMIT_LEN as u64 + path_len {
            return Ok(Journal::Torn);
        }
        let mut p = vec![0u8; path_len as usize];
        file.read_exact_at(&mut p, body_len + COMMIT_LEN as u64)
            .context(|| format!("read {}", path.display()))?;
        if crc32fast::hash(&p) != get_u32(&commit, 40) {
            // The path (written with the record, synced with it) is torn.
            return Ok(Journal::Torn);
        }
        sealed = Some((
            get_u64(&commit, 32),
            std::path::PathBuf::from(std::ffi::OsStr::from_bytes(&p)),
        ));
    }
    // Committed: from here on every defect is corruption.
    let mut buf = vec![0u8; body_len as usize];
    file.read_exact_at(&mut buf, 0)
        .context(|| format!("read {}", path.display()))?;
    if crc32fast::hash(&buf) != get_u32(&commit, 24) {
        return Err(corrupt("committed journal fails its checksum".into()));
    }
    if !size_ok {
        return Err(corrupt(format!(
            "journal is for a cache of {batch_len} bytes; the disk image holds {data_len}"
        )));
    }
    let batch = Batch {
        buf,
        pages: n as usize,
    };
    let mut prev = None;
    for i in 0..batch.len() {
        let idx = batch.index(i);
        if idx >= data_pages || prev.is_some_and(|p| idx <= p) {
            return Err(corrupt(format!(
                "journal page number {idx} out of order or range"
            )));
        }
        prev = Some(idx);
    }
    Ok(match sealed {
        None => Journal::Committed(batch),
        Some((epoch, coordinator)) => Journal::Sealed {
            batch,
            epoch,
            coordinator,
        },
    })
}

/// The size a grow was taking the cache to, if the journal holds the intact header of
/// an uncommitted batch for a size above `data_len` (a grow writes it, durably, before
/// it extends the disk file; see `grow.rs`). A journal too short for a header holds
/// none.
///
/// # Errors
/// A failed read (as [`read`]'s): not taken for "none", which would leave a grow's
/// longer file behind.
pub(crate) fn grow_intent(
    file: &File,
    path: &Path,
    data_len: u64,
    faults: &crate::Faults,
) -> Result<Option<u64>> {
    let mut h = [0u8; HEADER_LEN];
    let read = faults
        .check(crate::IoOp::Read, crate::IoFile::Journal)
        .and_then(|()| file.read_exact_at(&mut h, 0));
    match read {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e).context(|| format!("read {}", path.display())),
    }
    let intact = h[0..8] == JOURNAL_MAGIC
        && get_u32(&h, 8) == VERSION
        && get_u32(&h, 12) as usize == PAGE
        && crc32fast::hash(&h[..60]) == get_u32(&h, 60);
    let to = get_u64(&h, 16);
    Ok((intact && to > data_len && to <= MAX_DATA_LEN).then_some(to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_group_consecutive_pages() {
        let mut b = Batch::new(1, 10 * PAGE as u64, 9, &[1, 2, 3, 7, 9, 10]);
        for i in 0..b.len() {
            b.page_mut(i).fill(i as u8);
        }
        let runs: Vec<(u64, usize)> = b.runs().iter().map(|(p, d)| (*p, d.len() / PAGE)).collect();
        assert_eq!(runs, vec![(1, 3), (7, 1), (9, 2)]);
        assert_eq!(b.runs()[2].1[PAGE], 5);
    }

    /// An empty journal file in `dir`, open for reading and writing.
    fn scratch_journal(dir: &std::path::Path) -> (std::path::PathBuf, std::fs::File) {
        let path = dir.join("j");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        (path, file)
    }

    #[test]
    fn reads_back_committed_and_rejects_torn_or_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = scratch_journal(dir.path());
        let data_len = 16 * PAGE as u64;
        let mut b = Batch::new(4, data_len, 9, &[0, 5]);
        b.page_mut(1)[7] = 9;
        file.write_all_at(b.body(), 0).unwrap();
        assert!(matches!(
            read(&file, &path, data_len).unwrap(),
            Journal::Torn
        ));
        file.write_all_at(&b.commit_record(), b.body().len() as u64)
            .unwrap();
        match read(&file, &path, data_len).unwrap() {
            Journal::Committed(got) => assert_eq!(got.body(), b.body()),
            other => panic!("expected committed, got {other:?}"),
        }
        // A flipped bit in a committed page is corruption.
        let at = (HEADER_LEN + 16 + PAGE + 7) as u64;
        file.write_all_at(&[8], at).unwrap();
        assert!(matches!(
            read(&file, &path, data_len),
            Err(Error::Corrupt { .. })
        ));
        // A page number beyond the size the batch is for is corruption.
        let small = Batch::new(4, PAGE as u64, 9, &[0, 5]);
        file.write_all_at(small.body(), 0).unwrap();
        file.write_all_at(&small.commit_record(), small.body().len() as u64)
            .unwrap();
        assert!(matches!(
            read(&file, &path, PAGE as u64),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn a_batch_may_grow_the_cache_but_never_shrink_it() {
        let dir = tempfile::tempdir().unwrap();
        let (path, file) = scratch_journal(dir.path());
        let b = Batch::new(3, 8 * PAGE as u64, 9, &[]);
        file.write_all_at(b.body(), 0).unwrap();
        file.write_all_at(&b.commit_record(), b.body().len() as u64)
            .unwrap();
        match read(&file, &path, 2 * PAGE as u64).unwrap() {
            Journal::Committed(got) => assert_eq!(got.data_len(), 8 * PAGE as u64),
            other => panic!("expected committed, got {other:?}"),
        }
        assert!(matches!(
            read(&file, &path, 16 * PAGE as u64),
            Err(Error::Corrupt { .. })
        ));
    }
}
