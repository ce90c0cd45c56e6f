//! Persistent collections on the heap: [`PVec`], [`PBytes`], [`PString`] and
//! [`PHashMap`].
//!
//! Each is an 8-byte handle (the offset of its header block), `Copy` and
//! [`bytemuck::Pod`], so it is stored inside other persistent values: a root holding
//! maps, a map of vectors. A zeroed handle is null; a collection is created with its
//! `new` and stored where the program finds it again. Every operation runs inside the
//! caller's [`Transaction`], and declares (locks and logs) only the bytes it changes:
//! an element, a bucket, a length word, never a whole array. Abort and crash recovery
//! undo a collection's changes like any other write.
//!
//! ```
//! # fn main() -> Result<(), vista::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let opts = vista::Options::default().size(4 << 20).cache_dir(dir.path());
//! use vista::{bytemuck, PHashMap, PString, PVec};
//!
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[bytemuck(crate = "vista::bytemuck")]
//! #[repr(C)]
//! struct Root { tags: PHashMap<PString, PVec<u64>> }   // a map of vectors
//!
//! let seg = vista::Segment::open(dir.path().join("c.vista"), &opts)?;
//! seg.transaction(|tx| {
//!     let root = tx.root_named::<Root>("tags-v1")?;
//!     let tags = PHashMap::new(tx)?;
//!     tx.get_mut(root)?.tags = tags;
//!     let items = PVec::new(tx)?;
//!     items.push(tx, 7)?;
//!     tags.insert(tx, "urgent", items)?;
//!     Ok::<_, vista::Error>(())
//! })?;
//!
//! let root = seg.root_named::<Root>("tags-v1")?.expect("created above");
//! let tx = seg.begin()?;
//! let tags = tx.get_ptr(root)?.tags;
//! let urgent = tags.get(&tx, "urgent")?.expect("inserted above");
//! assert_eq!(urgent.to_vec(&tx)?, [7]);
//! # Ok(())
//! # }
//! ```
//!
//! **Errors.** Operations return vista's [`Error`]. [`Error::OutOfSpace`] and
//! [`Error::AllocTooLarge`] come before a collection changes, so the transaction stays
//! usable and the collection as it was. [`Error::BadHandle`] (a handle that is not a
//! collection of its kind and types) and [`Error::IndexOutOfBounds`] change nothing.
//! After [`Error::UndoLogFull`] or [`Error::Conflict`] in the middle of an operation
//! the collection may be half changed inside the transaction: abort it
//! ([`crate::Segment::transaction`] does).
//!
//! **Ownership.** A collection owns its own blocks and, for a map, its keys (a
//! [`PString`] key is stored by the map). Values are copied in and out: a value that
//! is itself a handle (a [`PVec`], a [`PString`]...) stays the program's to free.
//!
//! **Logging.** Every changed byte of a structure that existed before the
//! transaction is logged, also past a vector's length or a bucket's count (a pop or a
//! remove earlier in the same transaction may have left committed bytes there); only
//! blocks allocated by the operation itself are written without a before-image.

mod bytes;
mod map;
mod vec;

pub use bytes::{PBytes, PString};
pub use map::{HashKey, MapIter, PHashMap, PodKey};
pub use vec::{PVec, VecIter};

use crash_point::crash_point;

use crate::error::{Error, Result};
use crate::heap::{in_data_pages, HandleError};
use crate::pptr::PPtr;
use crate::transaction::Transaction;

/// Bytes of a lock line: collection metadata is aligned to it, so that two
/// collections (or two buckets) never share a line and never conflict.
pub(crate) const LINE: u64 = 64;

/// A zero-filled block, written without a before-image (it was free).
fn alloc_zeroed(tx: &mut Transaction<'_>, size: u64, align: u64) -> Result<u64> {
    let off = tx.alloc_block(size, align)?;
    tx.fill_fresh(off, size)?;
    crash_point!("vista.heap.alloc.written");
    Ok(off)
}

fn free_block(tx: &mut Transaction<'_>, off: u64) -> Result<()> {
    tx.free(PPtr::<[u8]>::from_offset(off))
}

/// Refuses an offset read from a collection that does not lie in the heap's data
/// pages (damage): checked without locks, before any read or write.
fn guard(off: u64, len: u64) -> Result<()> {
    if in_data_pages(off, len) {
        Ok(())
    } else {
        Err(Error::HeapCorrupt(format!(
            "a collection refers to {off:#x}+{len}, outside the heap's blocks"
        )))
    }
}

/// A value at an offset read from a collection.
fn load<T: bytemuck::AnyBitPattern>(tx: &Transaction<'_>, off: u64) -> Result<T> {
    guard(off, std::mem::size_of::<T>() as u64)?;
    tx.get(off)
}

/// The first word of a collection's header: its kind and a hash of its element
/// layout, so that a handle of another kind or element type is refused.
/// Every lookup checks its handle against it, so it is made without allocating: the
/// layout's words, little-endian, in a buffer on the stack.
fn kind_word<const N: usize>(kind: [u8; 4], layout: &[u64; N]) -> u64 {
    let mut bytes = [[0u8; 8]; N];
    for (b, w) in bytes.iter_mut().zip(layout) {
        *b = w.to_le_bytes();
    }
    let hash = xxhash_rust::xxh3::xxh3_64(bytes.as_flattened()) as u32;
    u64::from(u32::from_le_bytes(kind)) | u64::from(hash) << 32
}

/// Checks a collection handle: not null, in the data pages, and its header's first
/// word is `word`. Reads (locks shared) that word only.
fn check(tx: &Transaction<'_>, off: u64, word: u64, kind: &'static str) -> Result<()> {
    let bad = |reason| Error::BadHandle {
        offset: off,
        reason,
    };
    if off == 0 {
        return Err(bad(HandleError::Null));
    }
    if !in_data_pages(off, 8) {
        return Err(bad(HandleError::NotACollection { kind }));
    }
    if tx.get::<u64>(off)? != word {
        return Err(bad(HandleError::NotACollection { kind }));
    }
    Ok(())
}
