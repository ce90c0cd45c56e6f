//! Named roots: the root object identified by a name the program chooses (like PMDK's
//! layout string) plus its type's size and alignment, never by the type's Rust name.
//!
//! The root record (header line 1) is `[offset, size, align, tag, name]` (u64 each):
//! `name` is the offset of a block holding the name (`[len u64][bytes]`), 0 for a root
//! created by [`Transaction::root`], whose `tag` is the XXH3 of `std::any::type_name`.
//! A named root's `tag` is the XXH3 of its name with `NAMED_SEED` (in `identity`), so the old
//! `root::<T>()` never mistakes a named root for its own (it reports a mismatch).
//!
//! Migration: [`Transaction::root_named`] adopts a root made by `root::<T>()` for the
//! same `T` (same type name, size and alignment) by writing the name into it, once;
//! [`Transaction::claim_root`] names any existing root of the right size and alignment
//! (the way out after a type was renamed or moved, and the way to rename a root).

use super::layout::ROOT_OFF;
use crate::error::{Error, Result};
use crate::identity::{named_tag, RootId, RootType};
use crate::pptr::PPtr;
use crate::segment::Segment;
use crate::transaction::Transaction;

/// Where the tag and the name's offset lie in the root record.
const TAG_OFF: u64 = ROOT_OFF + 24;

/// The root record as stored.
#[derive(Debug, Clone, Copy)]
struct Record {
    off: u64,
    size: u64,
    align: u64,
    tag: u64,
    name: u64,
}

fn read_record(tx: &Transaction<'_>) -> Result<Record> {
    let [off, size, align, tag, name]: [u64; 5] = tx.get(ROOT_OFF)?;
    Ok(Record {
        off,
        size,
        align,
        tag,
        name,
    })
}

/// The stored root's identity (reading its name block).
fn found_id(tx: &Transaction<'_>, r: &Record) -> Result<RootId> {
    let name = if r.name == 0 {
        None
    } else {
        // A handle that names no block is damage; anything else (a lock conflict, a
        // poisoned segment) is what it is.
        let bytes = tx.bytes(PPtr::from_offset(r.name)).map_err(|e| match e {
            Error::BadHandle { .. } => {
                Error::HeapCorrupt(format!("the root's name block {:#x}: {e}", r.name))
            }
            e => e,
        })?;
        let len = u64::from_le_bytes(bytes[..8].try_into().expect("a block has 16 bytes"));
        let text = usize::try_from(len)
            .ok()
            .and_then(|len| bytes.get(8..8usize.checked_add(len)?))
            .and_then(|b| std::str::from_utf8(b).ok())
            .ok_or_else(|| Error::HeapCorrupt(format!("the root's name block {:#x}", r.name)))?;
        Some(text.to_owned())
    };
    Ok(RootId {
        name,
        size: r.size,
        align: r.align,
        tag: r.tag,
    })
}

impl Transaction<'_> {
    /// The root object named `name`: created zero-filled on first use (in this
    /// transaction), found again after a restart with [`Segment::root_named`]. The
    /// root is identified by `name` and by `T`'s size and alignment, not by `T`'s Rust
    /// name, so renaming the type, moving it to another module or renaming the crate
    /// keeps the data reachable. Choose a name per layout (`"todo-v1"`): a program
    /// that changes the root's layout gives it a new name and migrates.
    ///
    /// A root made by [`Transaction::root`] with this very `T` (same Rust name, size
    /// and alignment) is adopted: it is named `name` in this transaction.
    ///
    /// ```
    /// # fn main() -> Result<(), vista::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let opts = vista::Options::default().size(1 << 20).cache_dir(dir.path());
    /// let seg = vista::Segment::open(dir.path().join("todo.vista"), &opts)?;
    /// let mut tx = seg.begin()?;
    /// let root = tx.root_named::<[u64; 4]>("todo-v1")?;
    /// tx.get_mut(root)?[0] = 7;
    /// tx.commit()?;
    /// assert_eq!(seg.root_named::<[u64; 4]>("todo-v1")?, Some(root));
    /// assert!(matches!(
    ///     seg.root_named::<[u64; 4]>("todo-v2"),
    ///     Err(vista::Error::RootNameMismatch { .. })
    /// ));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::RootNameMismatch`] if the root exists under another name or with
    /// another size or alignment (its message says which, and what to do); as
    /// [`Transaction::alloc`].
    pub fn root_named<T: bytemuck::Pod>(&mut self, name: &str) -> Result<PPtr<T>> {
        self.all_or_nothing(|tx| {
            tx.header()?;
            let wanted = RootId::named::<T>(name);
            let r = read_record(tx)?;
            if r.off == 0 {
                let off = tx.alloc_block(wanted.size, wanted.align)?;
                tx.fill_fresh(off, wanted.size)?;
                // If this fails, the root block is given back with the rest of the call.
                let name_off = tx.name_block(name)?;
                tx.put(
                    ROOT_OFF,
                    &[off, wanted.size, wanted.align, wanted.tag, name_off],
                )?;
                return Ok(PPtr::from_offset(off));
            }
            let found = found_id(tx, &r)?;
            if found.name.is_some() && found == wanted {
                return Ok(PPtr::from_offset(r.off));
            }
            let legacy = RootType::of::<T>();
            if found.name.is_none()
                && (r.size, r.align, r.tag) == (legacy.size, legacy.align, legacy.tag)
            {
                tx.name_root(&r, name)?;
                return Ok(PPtr::from_offset(r.off));
            }
            Err(Error::RootNameMismatch {
                found: Box::new(found),
                wanted: Box::new(wanted),
            })
        })
    }

    /// Names the existing root `name`, whatever name or type tag it has, if its size
    /// and alignment are `T`'s; creates it (as [`Transaction::root_named`]) if there is
    /// none. For migration: a root made by [`Transaction::root`] whose type was since
    /// renamed or moved (its type tag no longer matches), or a root to be renamed.
    /// The program vouches that the bytes are a `T`.
    ///
    /// # Errors
    /// [`Error::RootNameMismatch`] if the root's size or alignment differ; as
    /// [`Transaction::alloc`].
    pub fn claim_root<T: bytemuck::Pod>(&mut self, name: &str) -> Result<PPtr<T>> {
        self.all_or_nothing(|tx| {
            tx.header()?;
            let r = read_record(tx)?;
            if r.off == 0 {
                return tx.root_named(name);
            }
            let wanted = RootId::named::<T>(name);
            let found = found_id(tx, &r)?;
            if !found.same_layout(&wanted) {
                return Err(Error::RootNameMismatch {
                    found: Box::new(found),
                    wanted: Box::new(wanted),
                });
            }
            if found != wanted {
                tx.name_root(&r, name)?;
            }
            Ok(PPtr::from_offset(r.off))
        })
    }

    /// Writes `name` into the existing root's record (freeing an old name block).
    fn name_root(&mut self, r: &Record, name: &str) -> Result<()> {
        let name_off = self.name_block(name)?;
        if r.name != 0 {
            self.free(PPtr::<[u8]>::from_offset(r.name))?;
        }
        self.put(TAG_OFF, &[named_tag(name), name_off])
    }

    /// A new block holding `[len][name]`.
    fn name_block(&mut self, name: &str) -> Result<u64> {
        let len = name.len() as u64;
        let off = self.alloc_block(8 + len, 8)?;
        let mut b = Vec::with_capacity(8 + name.len());
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        self.write_fresh(off, &b)?;
        Ok(off)
    }
}

impl Segment {
    /// The root object named `name` (see [`Transaction::root_named`]), or `None` if the
    /// segment has no root yet. A root made by [`Transaction::root`] with this very `T`
    /// is returned too (the first [`Transaction::root_named`] names it).
    ///
    /// # Errors
    /// [`Error::RootNameMismatch`] if the root exists under another name or with
    /// another size or alignment; [`Error::HeapCorrupt`]; as [`Segment::read`].
    pub fn root_named<T: bytemuck::Pod>(&self, name: &str) -> Result<Option<PPtr<T>>> {
        let tx = self.begin_read()?;
        if super::decode_header(tx.read(0, 64)?, self.len())?.is_none() {
            return Ok(None);
        }
        let r = read_record(&tx)?;
        if r.off == 0 {
            return Ok(None);
        }
        let wanted = RootId::named::<T>(name);
        let found = found_id(&tx, &r)?;
        let legacy = RootType::of::<T>();
        let adoptable = found.name.is_none()
            && (r.size, r.align, r.tag) == (legacy.size, legacy.align, legacy.tag);
        if (found.name.is_some() && found == wanted) || adoptable {
            return Ok(Some(PPtr::from_offset(r.off)));
        }
        Err(Error::RootNameMismatch {
            found: Box::new(found),
            wanted: Box::new(wanted),
        })
    }

    /// The root's identity (name, size, alignment), or `None` if there is no root:
    /// what a tool shows before it knows the program's types.
    ///
    /// # Errors
    /// [`Error::HeapCorrupt`]; as [`Segment::read`].
    pub fn root_id(&self) -> Result<Option<RootId>> {
        let tx = self.begin_read()?;
        if super::decode_header(tx.read(0, 64)?, self.len())?.is_none() {
            return Ok(None);
        }
        let r = read_record(&tx)?;
        if r.off == 0 {
            return Ok(None);
        }
        found_id(&tx, &r).map(Some)
    }
}
