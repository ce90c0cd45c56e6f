//! Projections: a typed place inside a heap block (an element of an array, a field of a
//! struct), so that a change to one element logs and locks that element, not the block.

use std::fmt;
use std::marker::PhantomData;

use crate::error::{Error, Result};
use crate::identity::HandleError;
use crate::pptr::PPtr;
use crate::transaction::Transaction;

/// A typed place inside a heap block: the block's handle and a byte offset into it,
/// made by projecting a [`PPtr`] ([`PPtr::index`], [`PPtr::field`], [`PPtr::project`])
/// and used like one ([`Transaction::get_mut`], [`Transaction::get_ptr`],
/// [`crate::Segment::get_ptr`]). `tx.get_mut(place)` declares (locks and logs) only the
/// place's bytes:
///
/// ```
/// # fn main() -> Result<(), vista::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let opts = vista::Options::default().size(1 << 20).cache_dir(dir.path());
/// # let seg = vista::Segment::open(dir.path().join("p.vista"), &opts)?;
/// use vista::bytemuck;
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[bytemuck(crate = "vista::bytemuck")]
/// #[repr(C)]
/// struct Stats { hits: u64, misses: u64 }
///
/// let mut tx = seg.begin()?;
/// let table = tx.alloc_zeroed::<[u64; 4096]>()?;       // a 32 KiB block
/// *tx.get_mut(table.index(17))? = 5;                   // logs and locks 8 bytes
/// let stats = tx.alloc(Stats { hits: 0, misses: 0 })?;
/// *tx.get_mut(stats.project(|s| &s.misses))? += 1;     // one field
/// tx.commit()?;
/// assert_eq!(seg.get_ptr(table.index(17))?, 5);
/// assert_eq!(seg.get_ptr(stats)?.misses, 1);
/// # Ok(())
/// # }
/// ```
///
/// A place is checked when it is used: its block must be live and hold the place's
/// bytes, else [`Error::BadHandle`]. It is not stored in persistent values (store the
/// block's [`PPtr`] and project again).
pub struct PPlace<T: ?Sized> {
    block: u64,
    at: u64,
    _type: PhantomData<fn() -> *const T>,
}

impl<T: ?Sized> PPlace<T> {
    const fn new(block: u64, at: u64) -> PPlace<T> {
        PPlace {
            block,
            at,
            _type: PhantomData,
        }
    }

    /// The handle of the block the place lies in.
    pub const fn block(&self) -> PPtr<[u8]> {
        PPtr::from_offset(self.block)
    }

    /// The place's offset in user space (for the byte-level calls).
    pub const fn offset(&self) -> u64 {
        self.block + self.at
    }

    /// Its offset from the start of its block.
    pub const fn offset_in_block(&self) -> u64 {
        self.at
    }
}

/// Projections shared by [`PPtr`] and [`PPlace`]: `(block, offset of the value)`.
trait Base<T: bytemuck::Pod>: Copy {
    fn base(self) -> (u64, u64);
}
impl<T: bytemuck::Pod> Base<T> for PPtr<T> {
    fn base(self) -> (u64, u64) {
        (self.offset(), 0)
    }
}
impl<T: bytemuck::Pod> Base<T> for PPlace<T> {
    fn base(self) -> (u64, u64) {
        (self.block, self.at)
    }
}

fn field_of<T: bytemuck::Pod, U: bytemuck::Pod>(base: (u64, u64), offset: usize) -> PPlace<U> {
    let (size, outer) = (std::mem::size_of::<U>(), std::mem::size_of::<T>());
    assert!(
        offset.checked_add(size).is_some_and(|end| end <= outer),
        "a {size}-byte field at offset {offset} does not lie in a {outer}-byte value"
    );
    assert!(
        offset.is_multiple_of(std::mem::align_of::<U>()),
        "offset {offset} is not aligned to the field's {}",
        std::mem::align_of::<U>()
    );
    PPlace::new(base.0, base.1 + offset as u64)
}

fn project_of<T: bytemuck::Pod, U: bytemuck::Pod>(
    base: (u64, u64),
    f: impl FnOnce(&T) -> &U,
) -> PPlace<U> {
    // The field's offset, measured on a zeroed value (every `Pod` type has one).
    let value = T::zeroed();
    let start = std::ptr::from_ref(&value) as usize;
    let field = std::ptr::from_ref(f(&value)) as usize;
    let offset = field
        .checked_sub(start)
        .expect("the projection returns a part of its argument");
    field_of::<T, U>(base, offset)
}

fn index_of<T: bytemuck::Pod, const N: usize>(base: (u64, u64), i: usize) -> PPlace<T> {
    assert!(i < N, "index {i} out of bounds of a {N}-element array");
    PPlace::new(base.0, base.1 + (i * std::mem::size_of::<T>()) as u64)
}

impl<T: bytemuck::Pod> PPtr<T> {
    /// The whole value as a place (offset 0 of its block).
    pub fn place(self) -> PPlace<T> {
        PPlace::new(self.offset(), 0)
    }

    /// The `U` at byte `offset` of the value, typically `std::mem::offset_of!(T, f)`.
    ///
    /// # Panics
    /// If the `U` does not lie inside a `T` or `offset` is not aligned for `U`: a
    /// programming error, found without touching the segment.
    pub fn field<U: bytemuck::Pod>(self, offset: usize) -> PPlace<U> {
        field_of::<T, U>(self.base(), offset)
    }

    /// The field that `f` picks from the value: `ptr.project(|r| &r.count)`. The offset
    /// is measured on a zeroed `T` (on the stack: for very large types prefer
    /// [`PPtr::field`] with `offset_of!`).
    ///
    /// # Panics
    /// If `f` returns a reference that is not inside its argument.
    pub fn project<U: bytemuck::Pod>(self, f: impl FnOnce(&T) -> &U) -> PPlace<U> {
        project_of::<T, U>(self.base(), f)
    }
}

impl<T: bytemuck::Pod, const N: usize> PPtr<[T; N]> {
    /// Element `i` of the array.
    ///
    /// # Panics
    /// If `i >= N`.
    pub fn index(self, i: usize) -> PPlace<T> {
        index_of::<T, N>(self.base(), i)
    }
}

impl<T: bytemuck::Pod> PPlace<T> {
    /// The `U` at byte `offset` of this value (see [`PPtr::field`]).
    ///
    /// # Panics
    /// As [`PPtr::field`].
    pub fn field<U: bytemuck::Pod>(self, offset: usize) -> PPlace<U> {
        field_of::<T, U>(self.base(), offset)
    }

    /// The field that `f` picks from this value (see [`PPtr::project`]).
    ///
    /// # Panics
    /// As [`PPtr::project`].
    pub fn project<U: bytemuck::Pod>(self, f: impl FnOnce(&T) -> &U) -> PPlace<U> {
        project_of::<T, U>(self.base(), f)
    }
}

impl<T: bytemuck::Pod, const N: usize> PPlace<[T; N]> {
    /// Element `i` of the array.
    ///
    /// # Panics
    /// If `i >= N`.
    pub fn index(self, i: usize) -> PPlace<T> {
        index_of::<T, N>(self.base(), i)
    }
}

impl<T: ?Sized> Clone for PPlace<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for PPlace<T> {}
impl<T: ?Sized> PartialEq for PPlace<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.block, self.at) == (other.block, other.at)
    }
}
impl<T: ?Sized> Eq for PPlace<T> {}
impl<T: ?Sized> fmt::Debug for PPlace<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PPlace({:#x}+{})", self.block, self.at)
    }
}

/// What [`Transaction::get_mut`], [`Transaction::get_ptr`] and
/// [`crate::Segment::get_ptr`] accept: a [`PPtr`] to a block of `Target`'s size class,
/// or a [`PPlace`] inside a live block. Sealed.
pub trait Handle: Copy + sealed::Sealed {
    /// The type of the value.
    type Target: bytemuck::Pod;
    /// Checks the handle in `tx` and returns the value's offset.
    #[doc(hidden)]
    fn locate(self, tx: &Transaction<'_>) -> Result<u64>;
}

impl<T: bytemuck::Pod> Handle for PPtr<T> {
    type Target = T;
    fn locate(self, tx: &Transaction<'_>) -> Result<u64> {
        tx.live_block::<T>(self.offset())?;
        Ok(self.offset())
    }
}

impl<T: bytemuck::Pod> Handle for PPlace<T> {
    type Target = T;
    fn locate(self, tx: &Transaction<'_>) -> Result<u64> {
        let len = tx.live_block::<[u8]>(self.block)?;
        let size = std::mem::size_of::<T>() as u64;
        if self.at.checked_add(size).is_none_or(|end| end > len) {
            return Err(Error::BadHandle {
                offset: self.block,
                reason: HandleError::OutsideBlock {
                    at: self.at,
                    size,
                    block: len,
                },
            });
        }
        Ok(self.block + self.at)
    }
}

mod sealed {
    pub trait Sealed {}
    impl<T: bytemuck::Pod> Sealed for crate::PPtr<T> {}
    impl<T: bytemuck::Pod> Sealed for super::PPlace<T> {}
}
