//! `PVec<T>`: a growable array in chunks that never move.
//!
//! ```text
//! header (64 bytes, its own lock line):
//!   0 kind word   8 length   16 chunks in use   24 directory   32 directory capacity
//! directory: the chunks' offsets (u64 each)
//! chunk k: capacity base << min(k, kmax) elements
//! ```
//!
//! Chunks double in size up to the heap's largest block, then stay at that size, so
//! growth never copies an element: a push that fills the last chunk allocates the next
//! one (and, rarely, a larger directory). `base` makes the first chunk about one line.

// The geometry's short names follow the layout above (k a chunk, j an index in it, g the
// geometry; m the map's header, b a bucket, s the slot layout): spelled out they would
// hide the arithmetic.
#![allow(clippy::many_single_char_names)]

use std::marker::PhantomData;

use super::{alloc_zeroed, check, free_block, guard, kind_word, load, LINE};
use crate::error::{Error, Result};
use crate::heap::MAX_ALLOC;
use crate::transaction::Transaction;

const LEN: u64 = 8;
const CHUNKS: u64 = 16;
/// The directory's offset, then its capacity (written together).
const DIR: u64 = 24;

/// A persistent growable array of `T`: an 8-byte handle (the offset of its header),
/// [`bytemuck::Pod`], stored inside other persistent values. Elements live in chunks
/// that double in size and never move, so growth copies nothing; `get_mut`, `set`
/// and `push` declare (lock and log) one element and the length word, not the array.
///
/// ```
/// # fn main() -> Result<(), vista::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let opts = vista::Options::default().size(1 << 20).cache_dir(dir.path());
/// # let seg = vista::Segment::open(dir.path().join("v.vista"), &opts)?;
/// let mut tx = seg.begin()?;
/// let v = vista::PVec::<u64>::new(&mut tx)?;
/// for i in 0..100 {
///     v.push(&mut tx, i)?;
/// }
/// *v.get_mut(&mut tx, 10)? = 1000;
/// v.insert(&mut tx, 0, 7)?;
/// assert_eq!(v.remove(&mut tx, 1)?, 0);
/// assert_eq!(v.pop(&mut tx)?, Some(99));
/// tx.commit()?;
/// let tx = seg.begin()?;
/// assert_eq!(v.len(&tx)?, 99);
/// assert_eq!(v.get(&tx, 10)?, Some(1000));
/// assert_eq!(v.iter(&tx).map(|x| x.unwrap()).sum::<u64>(), 7 + 4950 - 99 - 10 + 1000);
/// # Ok(())
/// # }
/// ```
#[repr(transparent)]
pub struct PVec<T> {
    off: u64,
    _type: PhantomData<fn() -> T>,
}

/// Where the elements of a `PVec<T>` lie.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    /// Element size.
    size: u64,
    /// Elements of chunk 0.
    base: u64,
    /// The last chunk that doubles; later chunks are as large as it.
    kmax: u32,
}

impl Geometry {
    fn of<T>() -> Geometry {
        let size = (std::mem::size_of::<T>() as u64).max(1);
        let base = (LINE / size).max(1);
        let mut kmax = 0;
        while (base << (kmax + 1)) * size <= MAX_ALLOC {
            kmax += 1;
        }
        Geometry { size, base, kmax }
    }

    fn cap(self, k: u64) -> u64 {
        self.base << k.min(u64::from(self.kmax))
    }

    /// Elements before the end of the doubling chunks.
    fn doubling(self) -> u64 {
        self.base * ((1 << (self.kmax + 1)) - 1)
    }

    fn start(self, k: u64) -> u64 {
        let d = u64::from(self.kmax) + 1;
        if k <= d {
            self.base * ((1 << k) - 1)
        } else {
            self.doubling() + (k - d) * self.cap(k)
        }
    }

    /// `(chunk, index in it)` of element `i`.
    fn locate(self, i: u64) -> (u64, u64) {
        if i < self.doubling() {
            let k = u64::from((i / self.base + 1).ilog2());
            (k, i - self.start(k))
        } else {
            let r = i - self.doubling();
            let max = self.cap(u64::from(self.kmax));
            (u64::from(self.kmax) + 1 + r / max, r % max)
        }
    }
}

/// The header's fields.
#[derive(Debug, Clone, Copy)]
struct Header {
    len: u64,
    chunks: u64,
    dir: u64,
    dir_cap: u64,
}

impl<T: bytemuck::Pod> PVec<T> {
    /// The null handle (a zeroed `PVec`).
    pub const NULL: PVec<T> = PVec {
        off: 0,
        _type: PhantomData,
    };

    /// Whether this is the null handle.
    pub const fn is_null(&self) -> bool {
        self.off == 0
    }

    /// The offset of its header block (for diagnostics).
    pub const fn offset(&self) -> u64 {
        self.off
    }

    fn word() -> u64 {
        kind_word(
            *b"PVEC",
            &[
                std::mem::size_of::<T>() as u64,
                std::mem::align_of::<T>() as u64,
            ],
        )
    }

    fn geo() -> Geometry {
        Geometry::of::<T>()
    }

    fn chunk_align() -> u64 {
        (std::mem::align_of::<T>() as u64).max(LINE)
    }

    /// A new empty vector (its header: one line of the heap).
    ///
    /// # Errors
    /// [`Error::OutOfSpace`] (the transaction stays usable); as [`Transaction::alloc`].
    pub fn new(tx: &mut Transaction<'_>) -> Result<PVec<T>> {
        tx.all_or_nothing(|tx| {
            let off = alloc_zeroed(tx, LINE, LINE)?;
            tx.write_fresh(off, &Self::word().to_le_bytes())?;
            Ok(PVec {
                off,
                _type: PhantomData,
            })
        })
    }

    /// The header, read (locked shared) after checking the handle. A directory that
    /// does not lie in the heap (a damaged or crafted header) is `HeapCorrupt`, so every
    /// offset computed from it below stays in range (no overflow).
    fn header(self, tx: &Transaction<'_>) -> Result<Header> {
        check(tx, self.off, Self::word(), "PVec")?;
        let [len, chunks, dir, dir_cap]: [u64; 4] = load(tx, self.off + LEN)?;
        if chunks > dir_cap || (dir_cap > 0 && guard(dir, dir_cap.saturating_mul(8)).is_err()) {
            return Err(Error::HeapCorrupt(format!(
                "PVec {:#x}: {chunks} chunks in a directory of {dir_cap} at {dir:#x}",
                self.off
            )));
        }
        // The elements lie in the chunks (the directory lies in the heap, so `chunks`
        // is small enough for `start` not to overflow): a longer length is damage,
        // and would size copies past every chunk.
        if len > Self::geo().start(chunks) {
            return Err(Error::HeapCorrupt(format!(
                "PVec {:#x}: {len} elements in {chunks} chunks",
                self.off
            )));
        }
        Ok(Header {
            len,
            chunks,
            dir,
            dir_cap,
        })
    }

    /// The header, its line locked exclusively first (a change follows; locking it
    /// shared first would have to be upgraded). Logs the length word.
    fn header_mut(self, tx: &mut Transaction<'_>) -> Result<Header> {
        if self.off != 0 {
            guard(self.off, LINE)?;
            tx.set_range(self.off + LEN, 8)?;
        }
        self.header(tx)
    }

    /// The offset of chunk `k` (< chunks).
    fn chunk(self, tx: &Transaction<'_>, h: &Header, k: u64) -> Result<u64> {
        if k >= h.chunks || h.chunks > h.dir_cap {
            return Err(Error::HeapCorrupt(format!(
                "PVec {:#x}: chunk {k} of {} (directory of {})",
                self.off, h.chunks, h.dir_cap
            )));
        }
        let c: u64 = load(tx, h.dir + 8 * k)?;
        guard(c, Self::geo().cap(k) * Self::geo().size)?;
        Ok(c)
    }

    /// The offset of element `i` (< the chunks' capacity).
    fn at(self, tx: &Transaction<'_>, h: &Header, i: u64) -> Result<u64> {
        let g = Self::geo();
        let (k, j) = g.locate(i);
        Ok(self.chunk(tx, h, k)? + j * g.size)
    }

    /// Its number of elements.
    ///
    /// # Errors
    /// [`Error::BadHandle`]; [`Error::Conflict`].
    pub fn len(&self, tx: &Transaction<'_>) -> Result<u64> {
        Ok(self.header(tx)?.len)
    }

    /// Whether it has no elements.
    ///
    /// # Errors
    /// As [`PVec::len`].
    pub fn is_empty(&self, tx: &Transaction<'_>) -> Result<bool> {
        Ok(self.len(tx)? == 0)
    }

    /// Element `i`, or `None` past the end.
    ///
    /// # Errors
    /// As [`PVec::len`].
    pub fn get(&self, tx: &Transaction<'_>, i: u64) -> Result<Option<T>> {
        let h = self.header(tx)?;
        if i >= h.len {
            return Ok(None);
        }
        let at = self.at(tx, &h, i)?;
        tx.get(at).map(Some)
    }

    /// Element `i`, to change in place: it alone is declared (locked and logged).
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`]; as [`Transaction::get_mut`].
    pub fn get_mut<'a>(&self, tx: &'a mut Transaction<'_>, i: u64) -> Result<&'a mut T> {
        let h = self.header(tx)?;
        if i >= h.len {
            return Err(Error::IndexOutOfBounds {
                index: i,
                len: h.len,
            });
        }
        let at = self.at(tx, &h, i)?;
        let b = tx.set_range(at, std::mem::size_of::<T>() as u64)?;
        bytemuck::try_from_bytes_mut(b)
            .map_err(|e| Error::HeapCorrupt(format!("PVec element at {at:#x}: {e}")))
    }

    /// Sets element `i` to `value`.
    ///
    /// # Errors
    /// As [`PVec::get_mut`].
    pub fn set(&self, tx: &mut Transaction<'_>, i: u64, value: T) -> Result<()> {
        *self.get_mut(tx, i)? = value;
        Ok(())
    }

    /// Appends `value`. When the last chunk is full, the next is allocated first, so
    /// [`Error::OutOfSpace`] leaves the vector (and the transaction) as they were.
    ///
    /// # Errors
    /// [`Error::OutOfSpace`]; [`Error::BadHandle`]; as [`Transaction::alloc`].
    pub fn push(&self, tx: &mut Transaction<'_>, value: T) -> Result<()> {
        tx.all_or_nothing(|tx| {
            let h = self.header_mut(tx)?;
            let at = self.slot_for_push(tx, h)?;
            // Logged even though it lies past the length: a pop earlier in this
            // transaction may have left committed elements there.
            tx.put(at, &value)?;
            tx.put(self.off + LEN, &(h.len + 1))
        })
    }

    /// The offset of element `h.len`, allocating its chunk (and a larger directory)
    /// first if needed. Changes nothing but the chunk count and directory.
    fn slot_for_push(self, tx: &mut Transaction<'_>, h: Header) -> Result<u64> {
        let g = Self::geo();
        let (k, j) = g.locate(h.len);
        if k < h.chunks {
            return Ok(self.chunk(tx, &h, k)? + j * g.size);
        }
        if k != h.chunks {
            return Err(Error::HeapCorrupt(format!(
                "PVec {:#x}: {} elements in {} chunks",
                self.off, h.len, h.chunks
            )));
        }
        // Allocate everything before changing anything.
        let grow_dir = h.chunks == h.dir_cap;
        let new_cap = (h.dir_cap * 2).max(LINE / 8);
        let new_dir = if grow_dir {
            Some(alloc_zeroed(tx, new_cap * 8, LINE)?)
        } else {
            None
        };
        // If this fails, the new directory is given back with the rest of the call
        // (`push` is all or nothing).
        let chunk = alloc_zeroed(tx, g.cap(k) * g.size, Self::chunk_align())?;
        let dir = match new_dir {
            Some(d) => {
                if h.chunks > 0 {
                    let old = tx.read(h.dir, h.chunks * 8)?.to_vec();
                    tx.write_fresh(d, &old)?;
                    free_block(tx, h.dir)?;
                }
                tx.put(self.off + DIR, &[d, new_cap])?;
                d
            }
            None => h.dir,
        };
        tx.put(dir + 8 * k, &chunk)?;
        tx.put(self.off + CHUNKS, &(k + 1))?;
        Ok(chunk + j * g.size)
    }

    /// Removes and returns the last element (`None` if empty). A chunk left empty
    /// behind an empty one is freed.
    ///
    /// # Errors
    /// As [`PVec::push`].
    pub fn pop(&self, tx: &mut Transaction<'_>) -> Result<Option<T>> {
        tx.all_or_nothing(|tx| {
            let h = self.header_mut(tx)?;
            if h.len == 0 {
                return Ok(None);
            }
            let at = self.at(tx, &h, h.len - 1)?;
            let value: T = tx.get(at)?;
            tx.put(self.off + LEN, &(h.len - 1))?;
            self.shrink(tx, h.len - 1, h)?;
            Ok(Some(value))
        })
    }

    /// Frees trailing chunks while the last two are empty at length `len` (one spare
    /// chunk stays, so push and pop at a boundary do not allocate and free each time).
    fn shrink(self, tx: &mut Transaction<'_>, len: u64, h: Header) -> Result<()> {
        let g = Self::geo();
        let mut chunks = h.chunks;
        while chunks >= 2 && len <= g.start(chunks - 2) {
            let c = self.chunk(tx, &h, chunks - 1)?;
            free_block(tx, c)?;
            chunks -= 1;
        }
        if chunks != h.chunks {
            tx.put(self.off + CHUNKS, &chunks)?;
        }
        Ok(())
    }

    /// The bytes of elements `[from, to)`, across chunks.
    fn read_range(self, tx: &Transaction<'_>, h: &Header, from: u64, to: u64) -> Result<Vec<u8>> {
        let g = Self::geo();
        let mut out = Vec::with_capacity(((to - from) * g.size) as usize);
        let mut i = from;
        while i < to {
            let (k, j) = g.locate(i);
            let n = (g.cap(k) - j).min(to - i);
            let c = self.chunk(tx, h, k)?;
            out.extend_from_slice(tx.read(c + j * g.size, n * g.size)?);
            i += n;
        }
        Ok(out)
    }

    /// Writes `bytes` (whole elements) from element `from` on, across chunks, logged.
    fn write_range(
        self,
        tx: &mut Transaction<'_>,
        h: &Header,
        from: u64,
        bytes: &[u8],
    ) -> Result<()> {
        let g = Self::geo();
        let to = from + bytes.len() as u64 / g.size;
        let (mut i, mut done) = (from, 0usize);
        while i < to {
            let (k, j) = g.locate(i);
            let n = (g.cap(k) - j).min(to - i);
            let c = self.chunk(tx, h, k)?;
            let len = (n * g.size) as usize;
            tx.write(c + j * g.size, &bytes[done..done + len])?;
            done += len;
            i += n;
        }
        Ok(())
    }

    /// Inserts `value` at `i`, shifting the elements after it (each shifted element is
    /// logged).
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`] if `i > len`; as [`PVec::push`].
    pub fn insert(&self, tx: &mut Transaction<'_>, i: u64, value: T) -> Result<()> {
        tx.all_or_nothing(|tx| {
            let h = self.header_mut(tx)?;
            if i > h.len {
                return Err(Error::IndexOutOfBounds {
                    index: i,
                    len: h.len,
                });
            }
            self.slot_for_push(tx, h)?;
            let h = self.header(tx)?;
            let tail = self.read_range(tx, &h, i, h.len)?;
            self.write_range(tx, &h, i + 1, &tail)?;
            self.write_range(tx, &h, i, bytemuck::bytes_of(&value))?;
            tx.put(self.off + LEN, &(h.len + 1))
        })
    }

    /// Removes and returns element `i`, shifting the elements after it.
    ///
    /// # Errors
    /// [`Error::IndexOutOfBounds`] if `i >= len`; as [`PVec::push`].
    pub fn remove(&self, tx: &mut Transaction<'_>, i: u64) -> Result<T> {
        tx.all_or_nothing(|tx| {
            let h = self.header_mut(tx)?;
            if i >= h.len {
                return Err(Error::IndexOutOfBounds {
                    index: i,
                    len: h.len,
                });
            }
            let at = self.at(tx, &h, i)?;
            let value: T = tx.get(at)?;
            let tail = self.read_range(tx, &h, i + 1, h.len)?;
            self.write_range(tx, &h, i, &tail)?;
            tx.put(self.off + LEN, &(h.len - 1))?;
            self.shrink(tx, h.len - 1, h)?;
            Ok(value)
        })
    }

    /// Removes every element and frees the chunks.
    ///
    /// # Errors
    /// As [`PVec::push`].
    pub fn clear(&self, tx: &mut Transaction<'_>) -> Result<()> {
        tx.all_or_nothing(|tx| {
            let h = self.header_mut(tx)?;
            for k in 0..h.chunks {
                let c = self.chunk(tx, &h, k)?;
                free_block(tx, c)?;
            }
            tx.put(self.off + LEN, &[0u64, 0])
        })
    }

    /// Frees the vector: its chunks, directory and header (not what its elements
    /// refer to).
    ///
    /// # Errors
    /// As [`PVec::push`].
    pub fn free(self, tx: &mut Transaction<'_>) -> Result<()> {
        tx.all_or_nothing(|tx| {
            self.clear(tx)?;
            let h = self.header(tx)?;
            if h.dir != 0 {
                free_block(tx, h.dir)?;
            }
            free_block(tx, self.off)
        })
    }

    /// Its elements in order, read chunk by chunk (each locked shared).
    pub fn iter<'a, 's>(&self, tx: &'a Transaction<'s>) -> VecIter<'a, 's, T> {
        VecIter {
            tx,
            vec: *self,
            header: None,
            next: 0,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// Its elements, copied out.
    ///
    /// # Errors
    /// As [`PVec::len`].
    pub fn to_vec(&self, tx: &Transaction<'_>) -> Result<Vec<T>> {
        self.iter(tx).collect()
    }
}

/// The elements of a [`PVec`] in order ([`PVec::iter`]); an error ends it.
#[derive(Debug)]
pub struct VecIter<'a, 's, T> {
    tx: &'a Transaction<'s>,
    vec: PVec<T>,
    header: Option<Header>,
    next: u64,
    /// The rest of the current chunk's elements, in reverse order.
    buf: Vec<T>,
    failed: bool,
}

impl<T: bytemuck::Pod> Iterator for VecIter<'_, '_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Result<T>> {
        if let Some(v) = self.buf.pop() {
            return Some(Ok(v));
        }
        if self.failed {
            return None;
        }
        let fill = |it: &mut Self| -> Result<bool> {
            let h = match it.header {
                Some(h) => h,
                None => *it.header.insert(it.vec.header(it.tx)?),
            };
            if it.next >= h.len {
                return Ok(false);
            }
            let g = PVec::<T>::geo();
            let (k, j) = g.locate(it.next);
            let n = (g.cap(k) - j).min(h.len - it.next);
            let bytes = it.vec.read_range(it.tx, &h, it.next, it.next + n)?;
            it.buf = bytes
                .chunks_exact(std::mem::size_of::<T>().max(1))
                .rev()
                .map(bytemuck::pod_read_unaligned)
                .collect();
            it.next += n;
            Ok(true)
        };
        match fill(self) {
            Ok(true) => self.buf.pop().map(Ok),
            Ok(false) => None,
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl<T> Clone for PVec<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T> Copy for PVec<T> {}
impl<T> PartialEq for PVec<T> {
    fn eq(&self, other: &Self) -> bool {
        self.off == other.off
    }
}
impl<T> Eq for PVec<T> {}
impl<T> Default for PVec<T> {
    fn default() -> Self {
        PVec {
            off: 0,
            _type: PhantomData,
        }
    }
}
impl<T> std::fmt::Debug for PVec<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PVec({:#x})", self.off)
    }
}

#[cfg(test)]
mod tests {
    use super::Geometry;
    use crate::heap::MAX_ALLOC;

    #[test]
    fn chunks_tile_the_indices() {
        for g in [
            Geometry::of::<u8>(),
            Geometry::of::<u64>(),
            Geometry::of::<[u64; 3]>(),
            Geometry::of::<[u8; 4096]>(),
            Geometry::of::<[u8; 300_000]>(),
        ] {
            assert!(g.cap(u64::from(g.kmax)) * g.size <= MAX_ALLOC, "{g:?}");
            assert!(g.cap(0) * g.size <= 64 || g.base == 1, "{g:?}");
            for k in 0..40 {
                assert_eq!(g.start(k + 1), g.start(k) + g.cap(k), "{g:?} chunk {k}");
            }
            let probes = (0..5000).chain((0..60).map(|s| (1u64 << s) / g.size.max(1)));
            for i in probes {
                let (k, j) = g.locate(i);
                assert!(j < g.cap(k), "{g:?} index {i}");
                assert_eq!(g.start(k) + j, i, "{g:?} index {i}");
            }
        }
    }
}
