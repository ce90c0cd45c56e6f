//! The transactional persistent heap: typed handles ([`crate::PPtr`]), allocation and
//! free inside a transaction, a root object, a consistency check and statistics.
//!
//! All heap metadata lives in the segment's user space, apart from the blocks it hands
//! out (a header page and, per zone, a table of page descriptors), and is changed only
//! through the transaction's undo log ([`Transaction::write`]), so abort and crash
//! recovery undo an allocation or a free exactly as they undo any write. See
//! `docs/heap.md` for the layout, the size classes and why recovery is correct.

mod check;
mod layout;
mod root;

use crash_point::crash_point;

use crate::error::{Error, Result};
pub use crate::identity::{HandleError, RootId, RootType};
pub use crate::place::Handle;
use crate::pptr::PPtr;
use crate::transaction::Transaction;
pub(crate) use check::{report, HeapSource};
pub use check::{ClassStats, HeapBlock, HeapProblem, HeapReport, HeapStats};
use layout::{
    arena_head_off, class_for, desc_off, page_off, pages_fitting, pages_for, place, runlist,
    runlist_off, slab_cap, zone_start, Desc, Place, ARENAS, CLASSES, DESC, FREE, FREE_TAIL, MAGIC,
    MAX_SMALL, NONE, PAGE, ROOT_OFF, RUN, RUNLISTS, RUNLISTS_OFF, SLAB, VERSION, ZONE_PAGES,
};

/// The heap's crash points (feature `crash-points`), besides the undo log's
/// ([`crate::CRASH_POINTS`]) that every heap operation goes through.
pub const CRASH_POINTS: &[&str] = &[
    "vista.heap.alloc.claimed",
    "vista.heap.alloc.written",
    "vista.heap.free.released",
    "vista.heap.extend.formatted",
];

/// The largest block the heap hands out (one zone of pages).
pub const MAX_ALLOC: u64 = ZONE_PAGES * PAGE;

/// A live block found from a handle.
#[derive(Debug, Clone, Copy)]
struct Found {
    g: u32,
    desc: Desc,
    /// Block bytes: the size class, or the large block's requested length.
    len: u64,
    /// Small: the slot in its slab.
    slot: Option<u32>,
}

/// Whether a run of `n` pages (n >= 1) starting at page `g` lies inside `g`'s zone.
fn fits_zone(g: u32, n: u32) -> bool {
    n >= 1 && u64::from(g % ZONE_PAGES as u32) + u64::from(n) <= ZONE_PAGES
}

fn corrupt(what: impl Into<String>) -> Error {
    Error::HeapCorrupt(what.into())
}

/// Whether user space starting with `b` starts with a heap header of this format (its
/// magic; the rest is checked by the walk).
pub(crate) fn starts_with_header(b: &[u8]) -> bool {
    b.len() >= MAGIC.len() && b[..MAGIC.len()] == MAGIC
}

/// Heap header, line 0.
#[derive(Debug, Clone, Copy)]
struct Header {
    /// Data pages formatted so far (descriptors valid): the heap's extent.
    formatted: u32,
}

const HDR_FORMATTED: u64 = 32;

fn encode_header(formatted: u32) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[0..8].copy_from_slice(&MAGIC);
    b[8..12].copy_from_slice(&VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&(PAGE as u32).to_le_bytes());
    b[16..20].copy_from_slice(&(ZONE_PAGES as u32).to_le_bytes());
    b[20..24].copy_from_slice(&ARENAS.to_le_bytes());
    b[24..28].copy_from_slice(&(CLASSES.len() as u32).to_le_bytes());
    b[HDR_FORMATTED as usize..HDR_FORMATTED as usize + 4].copy_from_slice(&formatted.to_le_bytes());
    b
}

/// Decodes header line 0: `Ok(None)` if it is all zero (no heap yet).
fn decode_header(b: &[u8], seg_len: u64) -> Result<Option<Header>> {
    if b.iter().all(|&x| x == 0) {
        return Ok(None);
    }
    let expect = encode_header(0);
    if b[..HDR_FORMATTED as usize] != expect[..HDR_FORMATTED as usize] {
        return Err(corrupt(
            "user space does not start with a heap header of this version",
        ));
    }
    let formatted = u32::from_le_bytes(b[32..36].try_into().expect("4"));
    if formatted > pages_fitting(seg_len) || b[36..].iter().any(|&x| x != 0) {
        return Err(corrupt(format!(
            "header extent {formatted} pages beyond the segment's {}",
            pages_fitting(seg_len)
        )));
    }
    Ok(Some(Header { formatted }))
}

/// Whether `[off, off + len)` lies in the data pages of one zone, where every block
/// lies: a check without locks for offsets read from persistent structures (the
/// collections), so that a damaged one can never make them write heap metadata.
pub(crate) fn in_data_pages(off: u64, len: u64) -> bool {
    let Some(last) = off.checked_add(len.max(1) - 1) else {
        return false;
    };
    match (place(off), place(last)) {
        (Place::Page { g: a, .. }, Place::Page { g: b, .. }) => zone_start(a) == zone_start(b),
        _ => false,
    }
}

/// Types a handle can designate: plain-old-data values (their size class is checked)
/// and byte buffers (`[u8]`, any live block). Sealed.
pub trait Block: sealed::Sealed {
    /// Size and alignment, `None` for an untyped buffer.
    #[doc(hidden)]
    fn layout() -> Option<(u64, u64)>;
}
impl<T: bytemuck::Pod> Block for T {
    fn layout() -> Option<(u64, u64)> {
        Some((
            std::mem::size_of::<T>() as u64,
            std::mem::align_of::<T>() as u64,
        ))
    }
}
impl Block for [u8] {
    fn layout() -> Option<(u64, u64)> {
        None
    }
}
mod sealed {
    pub trait Sealed {}
    impl<T: bytemuck::Pod> Sealed for T {}
    impl Sealed for [u8] {}
}

impl Transaction<'_> {
    /// Allocates a block for `value` on the segment's heap and writes `value` into it.
    /// The allocation belongs to this transaction: it is undone by an abort or a crash
    /// before commit, so nothing leaks. The first heap call on a segment formats its
    /// heap (the user space must then be zero where the heap's header goes).
    ///
    /// ```
    /// # fn main() -> Result<(), vista::Error> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let opts = vista::Options::default().size(1 << 20).cache_dir(dir.path());
    /// let seg = vista::Segment::open(dir.path().join("h.vista"), &opts)?;
    /// let mut tx = seg.begin()?;
    /// let p = tx.alloc([1u64, 2, 3])?;
    /// tx.get_mut(p)?[1] = 20;                 // declares the range, changes in place
    /// tx.commit()?;
    /// assert_eq!(seg.get_ptr(p)?, [1, 20, 3]);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`Error::OutOfSpace`] (the transaction stays usable); [`Error::AllocTooLarge`];
    /// [`Error::UndoLogFull`]; [`Error::Conflict`]; [`Error::HeapCorrupt`].
    pub fn alloc<T: bytemuck::Pod>(&mut self, value: T) -> Result<PPtr<T>> {
        self.all_or_nothing(|tx| {
            let (size, align) = (
                std::mem::size_of::<T>() as u64,
                std::mem::align_of::<T>() as u64,
            );
            let off = tx.alloc_block(size, align)?;
            tx.write_fresh(off, bytemuck::bytes_of(&value))?;
            crash_point!("vista.heap.alloc.written");
            Ok(PPtr::from_offset(off))
        })
    }

    /// Allocates a zero-filled `T` (see [`Transaction::alloc`]); for large values, as
    /// it needs no value on the stack. Zero handles in it are null.
    ///
    /// # Errors
    /// As [`Transaction::alloc`].
    pub fn alloc_zeroed<T: bytemuck::Pod>(&mut self) -> Result<PPtr<T>> {
        self.all_or_nothing(|tx| {
            let size = std::mem::size_of::<T>() as u64;
            let off = tx.alloc_block(size, std::mem::align_of::<T>() as u64)?;
            tx.fill_fresh(off, size)?;
            crash_point!("vista.heap.alloc.written");
            Ok(PPtr::from_offset(off))
        })
    }

    /// Allocates a zero-filled byte buffer of `len` bytes (see [`Transaction::alloc`]).
    /// [`Transaction::bytes_mut`] gives its bytes: at least `len` of them (the whole
    /// block of its size class for a small buffer).
    ///
    /// # Errors
    /// As [`Transaction::alloc`].
    pub fn alloc_bytes(&mut self, len: u64) -> Result<PPtr<[u8]>> {
        self.all_or_nothing(|tx| {
            let off = tx.alloc_block(len, 1)?;
            let found = tx.block::<[u8]>(off)?;
            tx.fill_fresh(off, found.len)?;
            crash_point!("vista.heap.alloc.written");
            Ok(PPtr::from_offset(off))
        })
    }

    /// Frees the block `ptr` designates. The free takes effect if this transaction
    /// commits; until then the block is not reused by other transactions (its
    /// descriptor is locked), and an abort or crash leaves it live and unchanged.
    ///
    /// # Errors
    /// [`Error::BadHandle`] (nothing changed; the transaction stays usable);
    /// [`Error::UndoLogFull`]; [`Error::Conflict`]; [`Error::HeapCorrupt`].
    pub fn free<T: Block + ?Sized>(&mut self, ptr: PPtr<T>) -> Result<()> {
        self.all_or_nothing(|tx| {
            let off = ptr.offset();
            // Read shared, not for update: the handle is checked first (a refused free holds
            // nothing exclusively), and a large block's free takes the run lists before it
            // writes its descriptor, while the free of its neighbour, holding the run lists,
            // reads that descriptor to merge the two runs.
            let found = tx.block::<T>(off)?;
            match found.slot {
                Some(slot) => tx.free_small(found.g, found.desc, slot)?,
                None => tx.insert_free_run(found.g, found.desc.n)?,
            }
            // The whole extent the block occupied (a large block's pages, not only the
            // bytes asked for) is committed contents until this transaction commits.
            let extent = match found.slot {
                Some(_) => found.len,
                None => u64::from(found.desc.n) * PAGE,
            };
            if let Some(freed) = tx.freed_mut() {
                freed.record_free(off, extent);
            }
            crash_point!("vista.heap.free.released");
            Ok(())
        })
    }

    /// The value `ptr` designates, to change in place: its range is declared (locked
    /// and logged) as by [`Transaction::set_range`]. `ptr` is a [`PPtr`] or a
    /// projection of one ([`crate::PPlace`]: an element or a field), whose bytes alone
    /// are declared.
    ///
    /// # Errors
    /// [`Error::BadHandle`]; [`Error::UndoLogFull`]; [`Error::Conflict`].
    pub fn get_mut<P: Handle>(&mut self, ptr: P) -> Result<&mut P::Target> {
        let off = ptr.locate(self)?;
        let b = self.set_range(off, std::mem::size_of::<P::Target>() as u64)?;
        bytemuck::try_from_bytes_mut(b).map_err(|_| Error::BadHandle {
            offset: off,
            reason: HandleError::NotABlock,
        })
    }

    /// The value `ptr` designates, including this transaction's changes (its range is
    /// locked shared until the transaction ends).
    ///
    /// # Errors
    /// [`Error::BadHandle`]; [`Error::Conflict`].
    pub fn get_ptr<P: Handle>(&self, ptr: P) -> Result<P::Target> {
        let off = ptr.locate(self)?;
        self.get(off)
    }

    /// Checks that a live block of `T` (`[u8]`: of any size) starts at `off`; returns
    /// its length (its size class, or a large block's bytes).
    pub(crate) fn live_block<T: Block + ?Sized>(&self, off: u64) -> Result<u64> {
        Ok(self.block::<T>(off)?.len)
    }

    /// The bytes of the buffer `ptr` designates, to change in place (declared as by
    /// [`Transaction::set_range`]).
    ///
    /// # Errors
    /// As [`Transaction::get_mut`].
    pub fn bytes_mut(&mut self, ptr: PPtr<[u8]>) -> Result<&mut [u8]> {
        let found = self.block::<[u8]>(ptr.offset())?;
        self.set_range(ptr.offset(), found.len)
    }

    /// The bytes of the buffer `ptr` designates.
    ///
    /// # Errors
    /// As [`Transaction::get_ptr`].
    pub fn bytes(&self, ptr: PPtr<[u8]>) -> Result<&[u8]> {
        let found = self.block::<[u8]>(ptr.offset())?;
        self.read(ptr.offset(), found.len)
    }

    /// The root object: created zero-filled on first use (in this transaction),
    /// found again after a restart with [`crate::Segment::root`]. The root remembers
    /// its type's size, alignment and name.
    ///
    /// # Errors
    /// [`Error::RootMismatch`] if the root was created with another type; as
    /// [`Transaction::alloc`].
    pub fn root<T: bytemuck::Pod>(&mut self) -> Result<PPtr<T>> {
        self.all_or_nothing(|tx| {
            tx.header()?;
            let wanted = RootType::of::<T>();
            let [off, size, align, tag]: [u64; 4] = tx.get(ROOT_OFF)?;
            if off != 0 {
                let found = RootType { size, align, tag };
                return if found == wanted {
                    Ok(PPtr::from_offset(off))
                } else {
                    Err(Error::RootMismatch { found, wanted })
                };
            }
            let off = tx.alloc_block(wanted.size, wanted.align)?;
            tx.fill_fresh(off, wanted.size)?;
            tx.put(ROOT_OFF, &[off, wanted.size, wanted.align, wanted.tag])?;
            Ok(PPtr::from_offset(off))
        })
    }

    /// The live block at `off`, checked against `T`'s size class.
    fn block<T: Block + ?Sized>(&self, off: u64) -> Result<Found> {
        let bad = |reason| Error::BadHandle {
            offset: off,
            reason,
        };
        if off == 0 {
            return Err(bad(HandleError::Null));
        }
        if off >= self.segment_len() {
            return Err(bad(HandleError::OutOfRange));
        }
        let Place::Page { g, within } = place(off) else {
            return Err(bad(HandleError::Metadata));
        };
        if page_off(g) + PAGE > self.segment_len() {
            return Err(bad(HandleError::OutOfRange));
        }
        let d = self.desc(g)?;
        let found = match d.kind {
            SLAB => {
                let c = usize::from(d.class);
                if u32::from(d.arena) >= ARENAS {
                    return Err(corrupt(format!("page {g}: arena {}", d.arena)));
                }
                let Some(&size) = CLASSES.get(c) else {
                    return Err(corrupt(format!("page {g}: size class {c}")));
                };
                let slot = (within / size) as u32;
                if within % size != 0 || slot >= slab_cap(c) {
                    return Err(bad(HandleError::NotABlock));
                }
                if !d.bit(slot) {
                    return Err(bad(HandleError::NotAllocated));
                }
                Found {
                    g,
                    desc: d,
                    len: size,
                    slot: Some(slot),
                }
            }
            RUN if within != 0 => return Err(bad(HandleError::NotABlock)),
            RUN if d.n == 0
                || u64::from(g % ZONE_PAGES as u32) + u64::from(d.n) > ZONE_PAGES
                || pages_for(d.len) != u64::from(d.n) =>
            {
                return Err(corrupt(format!(
                    "page {g}: a run of {} pages, {} bytes",
                    d.n, d.len
                )));
            }
            RUN => Found {
                g,
                desc: d,
                len: d.len,
                slot: None,
            },
            // Free, or inside a large block: no live block starts on this page.
            NONE | FREE | FREE_TAIL => return Err(bad(HandleError::NotAllocated)),
            k => return Err(corrupt(format!("page {g}: descriptor kind {k}"))),
        };
        if let Some((size, align)) = T::layout() {
            let ok = match (found.slot, class_for(size, align)) {
                (Some(_), Some(c)) => c == usize::from(found.desc.class),
                (None, None) => pages_for(size) == u64::from(found.desc.n) && align <= PAGE,
                _ => false,
            };
            if !ok {
                return Err(bad(HandleError::WrongSize {
                    block: if found.slot.is_some() {
                        found.len
                    } else {
                        u64::from(found.desc.n) * PAGE
                    },
                    wanted: size,
                }));
            }
        }
        Ok(found)
    }

    /// Writes the first bytes of a block this transaction just allocated: unlogged,
    /// unless this transaction freed those bytes (then they are committed contents).
    pub(crate) fn write_fresh(&mut self, off: u64, bytes: &[u8]) -> Result<()> {
        if self
            .freed()
            .is_some_and(|f| f.overlaps_freed(off, bytes.len() as u64))
        {
            return self.write(off, bytes);
        }
        self.window_unlogged(off, bytes.len() as u64)?
            .copy_from_slice(bytes);
        Ok(())
    }

    pub(crate) fn fill_fresh(&mut self, off: u64, len: u64) -> Result<()> {
        let w = if self.freed().is_some_and(|f| f.overlaps_freed(off, len)) {
            self.set_range(off, len)?
        } else {
            self.window_unlogged(off, len)?
        };
        w.fill(0);
        Ok(())
    }

    fn desc(&self, g: u32) -> Result<Desc> {
        Ok(Desc::decode(self.read(desc_off(g), DESC)?))
    }

    /// `desc` for a caller that writes the descriptor back: read for update
    /// (locked exclusively at once, so the write needs no upgrade, and two transactions
    /// changing one descriptor queue instead of both waiting to upgrade).
    fn desc_for_update(&self, g: u32) -> Result<Desc> {
        Ok(Desc::decode(self.read_for_update(desc_off(g), DESC)?))
    }

    fn put_desc(&mut self, g: u32, d: &Desc) -> Result<()> {
        self.write(desc_off(g), &d.encode())
    }

    fn u32_at(&self, off: u64) -> Result<u32> {
        self.get(off)
    }

    /// Allocates a block of `size` bytes aligned to `align`; returns its offset.
    pub(crate) fn alloc_block(&mut self, size: u64, align: u64) -> Result<u64> {
        if size > MAX_ALLOC || align > PAGE || !align.is_power_of_two() {
            return Err(Error::AllocTooLarge {
                requested: size,
                align,
                max: MAX_ALLOC,
            });
        }
        match class_for(size, align) {
            Some(c) if size <= MAX_SMALL => self.alloc_small(c, size),
            _ => {
                let n = pages_for(size) as u32;
                let g = self.take_run(n, size)?;
                self.put_desc(
                    g,
                    &Desc {
                        kind: RUN,
                        n,
                        len: size.max(1),
                        ..Desc::default()
                    },
                )?;
                crash_point!("vista.heap.alloc.claimed");
                Ok(page_off(g))
            }
        }
    }

    /// A block of class `c` from this lane's arena: the head slab of the arena's list
    /// for the class (every slab on it has a free block), or a new slab.
    fn alloc_small(&mut self, c: usize, size: u64) -> Result<u64> {
        let arena = self.lane() % ARENAS;
        let head_off = arena_head_off(arena, c);
        let head = self.u32_at(head_off)?;
        let (g, mut d) = if head == 0 {
            let g = self.take_run(1, size)?;
            let mut d = Desc::slab(c, arena);
            self.push(head_off, g, &mut d)?;
            (g, d)
        } else {
            let g = head - 1;
            let d = self.desc_for_update(g)?;
            if d.kind != SLAB || usize::from(d.class) != c || u32::from(d.arena) != arena {
                return Err(corrupt(format!(
                    "arena {arena} class {c} lists page {g}, which is not its slab"
                )));
            }
            (g, d)
        };
        let Some(slot) = d.first_free() else {
            return Err(corrupt(format!("full slab {g} on a free list")));
        };
        // A damaged bitmap (a bit past the slab's blocks cleared) would name a block
        // beyond the page: on the next page's live block, written without a record.
        if slot >= slab_cap(c) {
            return Err(corrupt(format!(
                "slab {g}: block {slot} marked free, but the slab has {}",
                slab_cap(c)
            )));
        }
        d.flip(slot);
        d.n =
            d.n.checked_add(1)
                .filter(|&n| n <= slab_cap(c))
                .ok_or_else(|| corrupt(format!("slab {g}: counter {} at a free block", d.n)))?;
        if d.first_free().is_none() {
            self.unlink(head_off, g, &mut d)?;
        }
        self.put_desc(g, &d)?;
        crash_point!("vista.heap.alloc.claimed");
        Ok(page_off(g) + u64::from(slot) * CLASSES[c])
    }

    fn free_small(&mut self, g: u32, mut d: Desc, slot: u32) -> Result<()> {
        let c = usize::from(d.class);
        let head_off = arena_head_off(u32::from(d.arena), c);
        let was_full = d.first_free().is_none();
        d.flip(slot);
        d.n =
            d.n.checked_sub(1)
                .ok_or_else(|| corrupt(format!("slab {g}: a live block but a zero counter")))?;
        if was_full {
            if d.n == 0 && self.u32_at(head_off)? != 0 {
                // A one-block slab, now empty, and the arena has a slab of this class:
                // its page goes back to the runs (it is on no list).
                return self.insert_free_run(g, 1);
            }
            // It has a free block again: back on its arena's list, at the head.
            self.push(head_off, g, &mut d)?;
            return self.put_desc(g, &d);
        }
        if d.n == 0 && self.u32_at(head_off)? != g + 1 {
            // Empty and not the arena's current slab: its page goes back to the runs.
            self.unlink(head_off, g, &mut d)?;
            return self.insert_free_run(g, 1);
        }
        self.put_desc(g, &d)
    }

    /// Pushes page `g` (descriptor `d`, written by the caller) on the list at `head_off`.
    fn push(&mut self, head_off: u64, g: u32, d: &mut Desc) -> Result<()> {
        let head = self.u32_at(head_off)?;
        d.next = head;
        d.prev = 0;
        if head != 0 {
            let mut h = self.desc_for_update(head - 1)?;
            h.prev = g + 1;
            self.put_desc(head - 1, &h)?;
        }
        self.put(head_off, &(g + 1))
    }

    /// Takes page `g` (descriptor `d`, written by the caller) off the list at `head_off`.
    fn unlink(&mut self, head_off: u64, g: u32, d: &mut Desc) -> Result<()> {
        if d.prev == 0 {
            if self.u32_at(head_off)? != g + 1 {
                return Err(corrupt(format!(
                    "page {g} has no predecessor but is not a head"
                )));
            }
            self.put(head_off, &d.next)?;
        } else {
            let mut p = self.desc_for_update(d.prev - 1)?;
            p.next = d.next;
            self.put_desc(d.prev - 1, &p)?;
        }
        if d.next != 0 {
            let mut n = self.desc_for_update(d.next - 1)?;
            n.prev = d.prev;
            self.put_desc(d.next - 1, &n)?;
        }
        d.next = 0;
        d.prev = 0;
        Ok(())
    }

    /// Finds a free run of at least `n` pages without scanning: the head of a list of
    /// longer runs, or one of the first few runs of `n`'s own list.
    fn find_run(&self, n: u32) -> Result<Option<(u32, Desc)>> {
        let own = runlist(n);
        if !n.is_power_of_two() {
            let mut at = self.u32_at(runlist_off(own))?;
            for _ in 0..8 {
                if at == 0 {
                    break;
                }
                let d = self.desc(at - 1)?;
                if d.kind != FREE || !fits_zone(at - 1, d.n) {
                    return Err(corrupt(format!("run list {own} holds page {}", at - 1)));
                }
                if d.n >= n {
                    return Ok(Some((at - 1, d)));
                }
                at = d.next;
            }
        }
        let first = if n.is_power_of_two() { own } else { own + 1 };
        for l in first..RUNLISTS {
            let at = self.u32_at(runlist_off(l))?;
            if at != 0 {
                let d = self.desc(at - 1)?;
                if d.kind != FREE || d.n < n || !fits_zone(at - 1, d.n) {
                    return Err(corrupt(format!("run list {l} holds page {}", at - 1)));
                }
                return Ok(Some((at - 1, d)));
            }
        }
        Ok(None)
    }

    /// Takes `n` pages from a free run, extending the heap into the segment's unused
    /// length when no run is long enough. The caller writes the first page's descriptor.
    fn take_run(&mut self, n: u32, requested: u64) -> Result<u32> {
        // The run lists are contended by every lane: lock them exclusively at once
        // (a shared lock upgraded later fails whenever another reader holds them).
        self.set_range(RUNLISTS_OFF, DESC)?;
        loop {
            if let Some((g, mut d)) = self.find_run(n)? {
                let len = d.n;
                // The run's tail must agree with its head: a damaged length would hand
                // out pages past the run, over a live block (written without a record).
                if len > 1 {
                    let tail = self.desc(g + len - 1)?;
                    if tail.kind != FREE_TAIL || tail.n != len {
                        return Err(corrupt(format!(
                            "free run at page {g} of {len} pages has no tail at page {}",
                            g + len - 1
                        )));
                    }
                }
                self.unlink(runlist_off(runlist(len)), g, &mut d)?;
                if len > n {
                    self.put_free(g + n, len - n)?;
                } else if len > 1 {
                    self.put_desc(g + len - 1, &Desc::default())?;
                }
                return Ok(g);
            }
            if !self.extend()? {
                return Err(Error::OutOfSpace { requested });
            }
        }
    }

    /// Writes the head (and tail) descriptors of free run `[g, g + n)` and lists it.
    fn put_free(&mut self, g: u32, n: u32) -> Result<()> {
        let mut d = Desc::free(n, FREE);
        self.push(runlist_off(runlist(n)), g, &mut d)?;
        self.put_desc(g, &d)?;
        if n > 1 {
            self.put_desc(g + n - 1, &Desc::free(n, FREE_TAIL))?;
        }
        Ok(())
    }

    /// Frees pages `[g, g + n)`, coalescing with the free runs on either side in the
    /// same zone. Every descriptor that stops being a head or tail is zeroed, so a
    /// stale descriptor never makes a freed handle look live.
    fn insert_free_run(&mut self, first: u32, pages: u32) -> Result<()> {
        self.set_range(RUNLISTS_OFF, DESC)?;
        let (mut start, mut end) = (first, first + pages);
        let zs = zone_start(first);
        if first > zs {
            let before = self.desc(first - 1)?;
            let prev_start = match before.kind {
                FREE_TAIL => Some(
                    (first - 1)
                        .checked_sub(before.n.saturating_sub(1))
                        .filter(|&s| s >= zs && before.n > 1),
                ),
                FREE if before.n == 1 => Some(Some(first - 1)),
                _ => None,
            };
            if let Some(s) = prev_start {
                let s = s.ok_or_else(|| corrupt(format!("free tail at page {}", first - 1)))?;
                let mut head = self.desc(s)?;
                if head.kind != FREE || head.n != first - s {
                    return Err(corrupt(format!(
                        "free run at page {s} disagrees with its tail"
                    )));
                }
                self.unlink(runlist_off(runlist(head.n)), s, &mut head)?;
                if first - 1 != s {
                    self.put_desc(first - 1, &Desc::default())?;
                }
                start = s;
            }
        }
        if end < zs + ZONE_PAGES as u32 && page_off(end) + PAGE <= self.segment_len() {
            let mut after = self.desc(end)?;
            if after.kind == FREE && !fits_zone(end, after.n) {
                return Err(corrupt(format!(
                    "free run at page {end} of {} pages",
                    after.n
                )));
            }
            if after.kind == FREE {
                let m = after.n;
                self.unlink(runlist_off(runlist(m)), end, &mut after)?;
                self.put_desc(end, &Desc::default())?;
                end += m;
            }
        }
        if start != first {
            self.put_desc(first, &Desc::default())?;
        }
        self.put_free(start, end - start)
    }

    /// Header line 0, formatting the heap on first use.
    fn header(&mut self) -> Result<Header> {
        let len = self.segment_len();
        if len < layout::HEAP_BASE {
            return Err(Error::OutOfSpace {
                requested: layout::HEAP_BASE,
            });
        }
        if let Some(h) = decode_header(self.read(0, 64)?, len)? {
            return Ok(h);
        }
        if self.read(0, layout::HEAP_BASE)?.iter().any(|&b| b != 0) {
            return Err(corrupt("user space holds data where the heap header goes"));
        }
        self.write(0, &encode_header(0))?;
        Ok(Header { formatted: 0 })
    }

    /// Formats more of the segment's length as free pages (to the end of the current
    /// zone, or one more zone): the growth contract of `docs/heap.md`. Returns whether
    /// there was room.
    fn extend(&mut self) -> Result<bool> {
        let h = self.header()?;
        let fit = pages_fitting(self.segment_len());
        if h.formatted >= fit {
            return Ok(false);
        }
        let zone_end = zone_start(h.formatted) + ZONE_PAGES as u32;
        let end = fit.min(zone_end);
        self.put(HDR_FORMATTED, &end)?;
        self.insert_free_run(h.formatted, end - h.formatted)?;
        crash_point!("vista.heap.extend.formatted");
        Ok(true)
    }
}
