//! What errors say about heap objects: why a handle was refused ([`HandleError`]) and
//! what identifies a root object ([`RootType`], [`RootId`]).
//!
//! These are plain values that [`crate::Error`] carries and the heap computes; they
//! live apart from both, so that neither the error type nor the heap depends on the
//! other to name them.

use std::fmt;

/// Why a handle was refused ([`crate::Error::BadHandle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HandleError {
    /// The null handle.
    Null,
    /// Beyond the segment's user space.
    OutOfRange,
    /// Inside the heap's header or descriptors, where no block lies.
    Metadata,
    /// Not the start of a block of its slab (inside a small block, or past the slab's
    /// last block).
    NotABlock,
    /// No live block starts there: it was freed, never allocated, or lies inside a
    /// large block.
    NotAllocated,
    /// A live block of `block` bytes, of another size class than the `wanted` bytes of
    /// the handle's type.
    WrongSize {
        /// The block's size (its size class, or a large block's pages).
        block: u64,
        /// The size of the handle's type.
        wanted: u64,
    },
    /// A collection handle ([`crate::PVec`], [`crate::PHashMap`], [`crate::PBytes`],
    /// [`crate::PString`]) that does not designate a collection of its kind and
    /// element types.
    NotACollection {
        /// The kind asked for.
        kind: &'static str,
    },
    /// A [`crate::PPlace`] whose bytes do not lie inside its (live) block.
    OutsideBlock {
        /// The place's offset from the block's start.
        at: u64,
        /// The size of the place's type.
        size: u64,
        /// The block's length.
        block: u64,
    },
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Null => f.write_str("null handle"),
            HandleError::OutOfRange => f.write_str("beyond the segment"),
            HandleError::Metadata => f.write_str("inside heap metadata"),
            HandleError::NotABlock => f.write_str("not the start of a block"),
            HandleError::NotAllocated => f.write_str("no live block there (freed?)"),
            HandleError::WrongSize { block, wanted } => write!(
                f,
                "a {block}-byte block, of another size class than the {wanted}-byte type"
            ),
            HandleError::NotACollection { kind } => {
                write!(f, "no {kind} of this element type starts there")
            }
            HandleError::OutsideBlock { at, size, block } => write!(
                f,
                "{size} bytes at {at} do not lie inside the {block}-byte block"
            ),
        }
    }
}

/// The type recorded with the root object: size, alignment and a tag (a hash of the
/// type's name, `std::any::type_name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RootType {
    /// `size_of`.
    pub size: u64,
    /// `align_of`.
    pub align: u64,
    /// XXH3 of the type's name.
    pub tag: u64,
}

impl RootType {
    pub(crate) fn of<T>() -> RootType {
        RootType {
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
            tag: xxhash_rust::xxh3::xxh3_64(std::any::type_name::<T>().as_bytes()),
        }
    }
}

impl fmt::Display for RootType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "a {}-byte type aligned to {} (tag {:#x})",
            self.size, self.align, self.tag
        )
    }
}

/// Seed of a named root's tag (so it never equals a type-name tag by construction).
const NAMED_SEED: u64 = 0x5649_5354_524f_4f54; // "VISTROOT"
/// What identifies a root object: its name (if it has one), and its type's size and
/// alignment. Shown by [`crate::Error::RootNameMismatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RootId {
    /// The root's name; `None` for a root created by [`crate::Transaction::root`] (identified
    /// by a hash of its type's Rust name, `tag`).
    pub name: Option<String>,
    /// `size_of` its type.
    pub size: u64,
    /// `align_of` its type.
    pub align: u64,
    /// For an unnamed root, the hash of its type's name.
    pub tag: u64,
}

impl RootId {
    pub(crate) fn named<T>(name: &str) -> RootId {
        RootId {
            name: Some(name.to_owned()),
            size: std::mem::size_of::<T>() as u64,
            align: std::mem::align_of::<T>() as u64,
            tag: named_tag(name),
        }
    }

    pub(crate) fn same_layout(&self, other: &RootId) -> bool {
        self.size == other.size && self.align == other.align
    }
}

impl fmt::Display for RootId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            Some(n) => write!(f, "the root named {n:?}"),
            None => write!(
                f,
                "an unnamed root made by root::<T>() (type tag {:#x})",
                self.tag
            ),
        }?;
        write!(f, ", a {}-byte type aligned to {}", self.size, self.align)
    }
}

/// The words of [`crate::Error::RootNameMismatch`]: what was found, what was asked for, and
/// what to do about it.
pub(crate) fn mismatch_text(found: &RootId, wanted: &RootId) -> String {
    let advice = if found.name.is_none() && found.same_layout(wanted) {
        "it was created by root::<T>() with a type of another Rust name (renamed or moved?); \
         if it is this type, name it once with Transaction::claim_root"
    } else if found.name.is_none() {
        "it was created by root::<T>() with a type of another size or alignment; open it with \
         that type"
    } else if found.name == wanted.name {
        "the type's size or alignment changed since the root was created: open it with the \
         type it was created with and copy the data to a root of a new name"
    } else if found.same_layout(wanted) {
        "is this the right segment? Open it with the name it was created with, or rename the \
         root with Transaction::claim_root"
    } else {
        "is this the right segment? Open it with the name and type it was created with"
    };
    format!("this segment holds {found}, but the program asked for {wanted}: {advice}")
}

pub(crate) fn named_tag(name: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(name.as_bytes(), NAMED_SEED)
}
