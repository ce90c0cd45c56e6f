//! Persistent pointers: typed 8-byte handles to heap blocks.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

/// A typed handle to a block of the segment's heap: its offset in user space (never a
/// memory address), 8 bytes, `Copy`, so it can be stored inside other persistent
/// values. Offset 0 is the null handle (the heap's header lies there; no block does).
///
/// A handle is checked every time it is used ([`crate::Transaction::get_mut`],
/// [`crate::Transaction::free`], [`crate::Segment::get_ptr`]...): one that does not
/// designate a live block of its type's size class is refused with
/// [`crate::Error::BadHandle`]. [`PPtr::offset`] gives the raw offset for the byte-level
/// calls (`Transaction::read`, `write`, `get`, `put`).
///
/// `PPtr<T>` is [`bytemuck::Pod`], so persistent structures link to each other:
/// ```
/// use vista::{bytemuck, PPtr};
/// #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
/// #[bytemuck(crate = "vista::bytemuck")]
/// #[repr(C)]
/// struct Node {
///     value: u64,
///     next: PPtr<Node>,
/// }
/// assert_eq!(std::mem::size_of::<Node>(), 16);
/// ```
#[repr(transparent)]
pub struct PPtr<T: ?Sized> {
    off: u64,
    _type: PhantomData<fn() -> *const T>,
}

impl<T: ?Sized> PPtr<T> {
    /// The null handle.
    pub const NULL: PPtr<T> = PPtr::from_offset(0);

    /// A handle of the block at `offset` (checked only when it is used).
    pub const fn from_offset(offset: u64) -> PPtr<T> {
        PPtr {
            off: offset,
            _type: PhantomData,
        }
    }

    /// The null handle.
    pub const fn null() -> PPtr<T> {
        PPtr::NULL
    }

    /// Whether this is the null handle.
    pub const fn is_null(&self) -> bool {
        self.off == 0
    }

    /// The block's offset in user space, for `Transaction::read`/`write`/`get`/`put`.
    pub const fn offset(&self) -> u64 {
        self.off
    }

    /// The same offset as a handle of another type (checked again when used).
    pub const fn cast<U: ?Sized>(self) -> PPtr<U> {
        PPtr::from_offset(self.off)
    }
}

impl<T: ?Sized> Clone for PPtr<T> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T: ?Sized> Copy for PPtr<T> {}
impl<T: ?Sized> PartialEq for PPtr<T> {
    fn eq(&self, other: &Self) -> bool {
        self.off == other.off
    }
}
impl<T: ?Sized> Eq for PPtr<T> {}
impl<T: ?Sized> Hash for PPtr<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.off.hash(state);
    }
}
impl<T: ?Sized> PartialOrd for PPtr<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T: ?Sized> Ord for PPtr<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.off.cmp(&other.off)
    }
}
impl<T: ?Sized> Default for PPtr<T> {
    fn default() -> Self {
        PPtr::NULL
    }
}
impl<T: ?Sized> fmt::Debug for PPtr<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PPtr({:#x})", self.off)
    }
}

#[cfg(test)]
mod tests {
    use super::PPtr;

    #[test]
    fn is_eight_bytes_and_pod() {
        assert_eq!(std::mem::size_of::<PPtr<[u64; 9]>>(), 8);
        assert_eq!(std::mem::size_of::<PPtr<[u8]>>(), 8);
        let p = PPtr::<u32>::from_offset(4096);
        let bytes = bytemuck::bytes_of(&p);
        assert_eq!(bytes, 4096u64.to_ne_bytes());
        let q: PPtr<u32> = bytemuck::pod_read_unaligned(bytes);
        assert_eq!(p, q);
        assert!(PPtr::<u32>::NULL.is_null() && !p.is_null());
        let z: PPtr<u8> = bytemuck::Zeroable::zeroed();
        assert!(z.is_null());
    }
}
