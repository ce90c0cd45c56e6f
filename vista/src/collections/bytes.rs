//! `PBytes` and `PString`: length-carrying byte and text buffers.
//!
//! ```text
//! 0  kind word (u64)   8  capacity (u32) | length (u32)   16  bytes ...
//! ```

use std::fmt;

use super::{check, free_block, guard, kind_word, load};
use crate::error::{Error, Result};
use crate::heap::MAX_ALLOC;
use crate::segment::{Bytes, Segment};
use crate::transaction::Transaction;

const HEADER: u64 = 16;
/// The largest buffer: a block of the heap's largest size less the header.
const MAX_LEN: u64 = MAX_ALLOC - HEADER;

fn bytes_word() -> u64 {
    kind_word(*b"PBYT", &[1])
}

/// A persistent byte buffer that carries its length: an 8-byte handle, [`bytemuck::Pod`],
/// stored inside other persistent values. Its contents are read in a transaction
/// ([`PBytes::get`]) or outside one, through the segment ([`PBytes::read`],
/// [`PBytes::to_vec`]). Changing them may move the buffer: [`PBytes::set`] and
/// [`PBytes::append`] return the handle to keep (the same one when the new contents
/// fit the block).
///
/// ```
/// # fn main() -> Result<(), vista::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let opts = vista::Options::default().size(1 << 20).cache_dir(dir.path());
/// # let seg = vista::Segment::open(dir.path().join("b.vista"), &opts)?;
/// let mut tx = seg.begin()?;
/// let b = vista::PBytes::new(&mut tx, b"hello")?;
/// let b = b.append(&mut tx, b", world")?;      // keep the returned handle
/// assert_eq!(b.get(&tx)?, b"hello, world");
/// tx.commit()?;
/// assert_eq!(b.to_vec(&seg)?, b"hello, world"); // outside a transaction
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(transparent)]
pub struct PBytes {
    off: u64,
}

impl PBytes {
    /// The null handle (a zeroed `PBytes`).
    pub const NULL: PBytes = PBytes { off: 0 };

    /// Whether this is the null handle.
    pub const fn is_null(&self) -> bool {
        self.off == 0
    }

    /// The offset of its block (for diagnostics).
    pub const fn offset(&self) -> u64 {
        self.off
    }

    /// A new buffer holding `bytes`, in a block of the heap (freed with
    /// [`PBytes::free`]).
    ///
    /// # Errors
    /// [`Error::OutOfSpace`] (the transaction stays usable), [`Error::AllocTooLarge`]
    /// beyond a MiB; as [`Transaction::alloc`].
    pub fn new(tx: &mut Transaction<'_>, bytes: &[u8]) -> Result<PBytes> {
        Self::new_aligned(tx, bytes, 16)
    }

    /// A new buffer whose block is aligned to `align` (a map's keys are line-aligned,
    /// so that two keys never share a lock line).
    pub(crate) fn new_aligned(
        tx: &mut Transaction<'_>,
        bytes: &[u8],
        align: u64,
    ) -> Result<PBytes> {
        tx.all_or_nothing(|tx| {
            let len = bytes.len() as u64;
            if len > MAX_LEN {
                return Err(Error::AllocTooLarge {
                    requested: len,
                    align,
                    max: MAX_LEN,
                });
            }
            let off = tx.alloc_block(HEADER + len, align)?;
            let block = tx.live_block::<[u8]>(off)?;
            let cap = (block - HEADER).min(MAX_LEN);
            let mut head = Vec::with_capacity((HEADER + len) as usize);
            head.extend_from_slice(&bytes_word().to_le_bytes());
            head.extend_from_slice(&(cap << 32 | len).to_le_bytes());
            head.extend_from_slice(bytes);
            tx.write_fresh(off, &head)?;
            Ok(PBytes { off })
        })
    }

    /// Checks the handle; returns `(capacity, length)`.
    fn shape(self, tx: &Transaction<'_>) -> Result<(u64, u64)> {
        check(tx, self.off, bytes_word(), "PBytes")?;
        let w: u64 = load(tx, self.off + 8)?;
        let (cap, len) = (w >> 32, w & 0xffff_ffff);
        if len > cap {
            return Err(Error::HeapCorrupt(format!(
                "PBytes {:#x}: length {len} beyond its capacity {cap}",
                self.off
            )));
        }
        guard(self.off, HEADER + cap)?;
        Ok((cap, len))
    }

    /// Its length in bytes.
    ///
    /// # Errors
    /// [`Error::BadHandle`]; [`Error::Conflict`].
    pub fn len(&self, tx: &Transaction<'_>) -> Result<u64> {
        Ok(self.shape(tx)?.1)
    }

    /// Whether it holds no bytes.
    ///
    /// # Errors
    /// As [`PBytes::len`].
    pub fn is_empty(&self, tx: &Transaction<'_>) -> Result<bool> {
        Ok(self.len(tx)? == 0)
    }

    /// The bytes it can hold without moving.
    ///
    /// # Errors
    /// As [`PBytes::len`].
    pub fn capacity(&self, tx: &Transaction<'_>) -> Result<u64> {
        Ok(self.shape(tx)?.0)
    }

    /// Its bytes, including this transaction's changes (locked shared until the
    /// transaction ends).
    ///
    /// # Errors
    /// As [`PBytes::len`].
    pub fn get<'a>(&self, tx: &'a Transaction<'_>) -> Result<&'a [u8]> {
        let (_, len) = self.shape(tx)?;
        tx.read(self.off + HEADER, len)
    }

    /// Its committed bytes, read outside a transaction: a guard that keeps them from
    /// changing until it drops (see [`Segment::read`]).
    ///
    /// # Errors
    /// As [`PBytes::len`]; [`Error::LanesBusy`].
    pub fn read<'s>(&self, seg: &'s Segment) -> Result<Bytes<'s>> {
        // The block (checked live: this is not a hot path) and the length are read in
        // a transaction that keeps them locked while the guard locks the bytes.
        let tx = seg.begin()?;
        tx.live_block::<[u8]>(self.off)?;
        let (_, len) = self.shape(&tx)?;
        seg.read(self.off + HEADER, len)
    }

    /// Its committed bytes, copied out, outside a transaction.
    ///
    /// # Errors
    /// As [`PBytes::read`].
    pub fn to_vec(&self, seg: &Segment) -> Result<Vec<u8>> {
        Ok(self.read(seg)?.to_vec())
    }

    /// Replaces its contents with `bytes`: in place if they fit its capacity (the old
    /// bytes are logged), else in a new block (this one is freed). Returns the handle
    /// to keep.
    ///
    /// # Errors
    /// As [`PBytes::new`]; [`Error::BadHandle`].
    #[must_use = "the buffer may have moved: store the returned handle"]
    pub fn set(self, tx: &mut Transaction<'_>, bytes: &[u8]) -> Result<PBytes> {
        tx.all_or_nothing(|tx| {
            let (cap, _) = self.shape(tx)?;
            let new_len = bytes.len() as u64;
            if new_len > cap {
                let moved = PBytes::new(tx, bytes)?;
                free_block(tx, self.off)?;
                return Ok(moved);
            }
            // All logged, past the old length too: an earlier change in this transaction
            // may have left committed bytes there.
            tx.write(self.off + HEADER, bytes)?;
            tx.put(self.off + 8, &(cap << 32 | new_len))?;
            Ok(self)
        })
    }

    /// Appends `bytes`: in place if they fit its capacity, else in a new block (this
    /// one is freed). Returns the handle to keep.
    ///
    /// # Errors
    /// As [`PBytes::set`].
    #[must_use = "the buffer may have moved: store the returned handle"]
    pub fn append(self, tx: &mut Transaction<'_>, bytes: &[u8]) -> Result<PBytes> {
        tx.all_or_nothing(|tx| {
            let (cap, len) = self.shape(tx)?;
            let new_len = len + bytes.len() as u64;
            if new_len > cap {
                let mut all = tx.read(self.off + HEADER, len)?.to_vec();
                all.extend_from_slice(bytes);
                let moved = PBytes::new(tx, &all)?;
                free_block(tx, self.off)?;
                return Ok(moved);
            }
            tx.write(self.off + HEADER + len, bytes)?;
            tx.put(self.off + 8, &(cap << 32 | new_len))?;
            Ok(self)
        })
    }

    /// Frees the buffer (at commit; see [`Transaction::free`]).
    ///
    /// # Errors
    /// [`Error::BadHandle`]; as [`Transaction::free`].
    pub fn free(self, tx: &mut Transaction<'_>) -> Result<()> {
        tx.all_or_nothing(|tx| {
            self.shape(tx)?;
            free_block(tx, self.off)
        })
    }
}

impl fmt::Debug for PBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PBytes({:#x})", self.off)
    }
}

/// A persistent UTF-8 string: a [`PBytes`] whose contents are text (checked when they
/// are read). An 8-byte handle, [`bytemuck::Pod`].
///
/// ```
/// # fn main() -> Result<(), vista::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let opts = vista::Options::default().size(1 << 20).cache_dir(dir.path());
/// # let seg = vista::Segment::open(dir.path().join("s.vista"), &opts)?;
/// let s = seg.transaction(|tx| vista::PString::new(tx, "grüß dich"))?;
/// assert_eq!(s.to_string(&seg)?, "grüß dich");
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(transparent)]
pub struct PString {
    bytes: PBytes,
}

fn not_text(off: u64) -> Error {
    Error::HeapCorrupt(format!("PString {off:#x} does not hold UTF-8 text"))
}

impl PString {
    /// The null handle (a zeroed `PString`).
    pub const NULL: PString = PString {
        bytes: PBytes::NULL,
    };

    /// Whether this is the null handle.
    pub const fn is_null(&self) -> bool {
        self.bytes.is_null()
    }

    /// Its bytes' buffer.
    pub const fn as_bytes(&self) -> PBytes {
        self.bytes
    }

    /// A new string holding `s`.
    ///
    /// # Errors
    /// As [`PBytes::new`].
    pub fn new(tx: &mut Transaction<'_>, s: &str) -> Result<PString> {
        Ok(PString {
            bytes: PBytes::new(tx, s.as_bytes())?,
        })
    }

    pub(crate) fn new_aligned(tx: &mut Transaction<'_>, s: &str, align: u64) -> Result<PString> {
        Ok(PString {
            bytes: PBytes::new_aligned(tx, s.as_bytes(), align)?,
        })
    }

    /// Its length in bytes.
    ///
    /// # Errors
    /// As [`PBytes::len`].
    pub fn len(&self, tx: &Transaction<'_>) -> Result<u64> {
        self.bytes.len(tx)
    }

    /// Whether it is empty.
    ///
    /// # Errors
    /// As [`PBytes::len`].
    pub fn is_empty(&self, tx: &Transaction<'_>) -> Result<bool> {
        self.bytes.is_empty(tx)
    }

    /// Its text, including this transaction's changes.
    ///
    /// # Errors
    /// As [`PBytes::get`]; [`Error::HeapCorrupt`] if the bytes are not UTF-8.
    pub fn get<'a>(&self, tx: &'a Transaction<'_>) -> Result<&'a str> {
        std::str::from_utf8(self.bytes.get(tx)?).map_err(|_| not_text(self.bytes.off))
    }

    /// Its committed text, copied out, outside a transaction.
    ///
    /// # Errors
    /// As [`PBytes::read`]; [`Error::HeapCorrupt`] if the bytes are not UTF-8.
    pub fn to_string(&self, seg: &Segment) -> Result<String> {
        String::from_utf8(self.bytes.to_vec(seg)?).map_err(|_| not_text(self.bytes.off))
    }

    /// Its committed bytes outside a transaction, as a guard (see [`PBytes::read`]).
    ///
    /// # Errors
    /// As [`PBytes::read`].
    pub fn read<'s>(&self, seg: &'s Segment) -> Result<Bytes<'s>> {
        self.bytes.read(seg)
    }

    /// Replaces the text (see [`PBytes::set`]). Returns the handle to keep.
    ///
    /// # Errors
    /// As [`PBytes::set`].
    #[must_use = "the string may have moved: store the returned handle"]
    pub fn set(self, tx: &mut Transaction<'_>, s: &str) -> Result<PString> {
        Ok(PString {
            bytes: self.bytes.set(tx, s.as_bytes())?,
        })
    }

    /// Appends text (see [`PBytes::append`]). Returns the handle to keep.
    ///
    /// # Errors
    /// As [`PBytes::append`].
    #[must_use = "the string may have moved: store the returned handle"]
    pub fn push_str(self, tx: &mut Transaction<'_>, s: &str) -> Result<PString> {
        Ok(PString {
            bytes: self.bytes.append(tx, s.as_bytes())?,
        })
    }

    /// Frees the string.
    ///
    /// # Errors
    /// As [`PBytes::free`].
    pub fn free(self, tx: &mut Transaction<'_>) -> Result<()> {
        self.bytes.free(tx)
    }
}

impl fmt::Debug for PString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PString({:#x})", self.bytes.off)
    }
}
