//! Walking the heap: the consistency check, statistics and the list of live blocks.

use std::collections::BTreeSet;
use std::fmt;

use super::layout::{
    arena_head_off, desc_off, page_off, pages_fitting, pages_for, runlist, runlist_off, slab_cap,
    Desc, ARENAS, CLASSES, DESC, FREE, FREE_TAIL, HEAP_BASE, NONE, PAGE, ROOT_OFF, RUN, RUNLISTS,
    SLAB, ZONE_PAGES,
};
use super::{decode_header, PPtr, RootType};
use crate::error::Result;
use crate::segment::Segment;
use crate::transaction::Transaction;

/// One inconsistency found by [`Segment::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeapProblem {
    /// The header is damaged (or user space is not a heap).
    Header(String),
    /// A page's descriptor is invalid where a block or run must start.
    BadDescriptor {
        /// The page.
        page: u32,
        /// What is wrong.
        reason: String,
    },
    /// A slab's count of live blocks disagrees with its bitmap.
    Accounting {
        /// The slab's page.
        page: u32,
        /// Its counter.
        counted: u32,
        /// Its bitmap.
        bitmap: u32,
    },
    /// A free list is broken: a member that is not what the list holds, a bad back
    /// link, a cycle, or a free run or slab with free blocks missing from its list.
    List {
        /// Which list.
        list: String,
        /// What is wrong.
        reason: String,
    },
    /// Two free runs next to each other that were not coalesced.
    Uncoalesced {
        /// The first run's page.
        page: u32,
    },
    /// The root record names no live block large enough.
    Root(String),
}

impl fmt::Display for HeapProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeapProblem::Header(r) => write!(f, "header: {r}"),
            HeapProblem::BadDescriptor { page, reason } => write!(f, "page {page}: {reason}"),
            HeapProblem::Accounting {
                page,
                counted,
                bitmap,
            } => write!(f, "slab {page}: counter {counted}, bitmap {bitmap}"),
            HeapProblem::List { list, reason } => write!(f, "{list}: {reason}"),
            HeapProblem::Uncoalesced { page } => write!(f, "free runs at {page} not coalesced"),
            HeapProblem::Root(r) => write!(f, "root: {r}"),
        }
    }
}

/// Blocks of one small size class.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClassStats {
    /// Block size.
    pub block_size: u64,
    /// Slab pages of this class.
    pub slabs: u64,
    /// Live blocks.
    pub live: u64,
    /// Free blocks in those slabs.
    pub free: u64,
}

/// Heap statistics ([`Segment::heap_stats`]).
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct HeapStats {
    /// Live blocks.
    pub live_blocks: u64,
    /// Bytes of live blocks (size classes for small ones, the requested lengths of
    /// large ones).
    pub live_bytes: u64,
    /// Bytes of data pages in use (slabs and large blocks): what the live bytes cost.
    pub used_bytes: u64,
    /// Bytes of free runs plus free blocks in slabs.
    pub free_bytes: u64,
    /// Bytes of the segment the heap has formatted (header, descriptors, pages).
    pub formatted_bytes: u64,
    /// Bytes of data pages the heap could still format from the segment's length.
    pub unformatted_bytes: u64,
    /// Free runs.
    pub free_runs: u64,
    /// The longest free run, in pages.
    pub largest_free_run: u64,
    /// Per small size class.
    pub classes: Vec<ClassStats>,
}

impl HeapStats {
    /// `used_bytes / live_bytes` (1.0 is perfect; 0 when nothing is live).
    pub fn overhead(&self) -> f64 {
        if self.live_bytes == 0 {
            0.0
        } else {
            self.used_bytes as f64 / self.live_bytes as f64
        }
    }

    /// External fragmentation: 1 - largest free run / all free pages (0 when free
    /// space is one run, or there is none).
    pub fn fragmentation(&self) -> f64 {
        // Free blocks inside slabs are internal slack, not counted here.
        let run_bytes = self.free_run_bytes();
        if run_bytes == 0 {
            0.0
        } else {
            1.0 - (self.largest_free_run * PAGE) as f64 / run_bytes as f64
        }
    }

    fn free_run_bytes(&self) -> u64 {
        let slab_free: u64 = self.classes.iter().map(|c| c.free * c.block_size).sum();
        self.free_bytes - slab_free
    }
}

/// One live block ([`Segment::heap_blocks`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HeapBlock {
    /// Offset (a [`PPtr::offset`]).
    pub offset: u64,
    /// Bytes (its size class, or the large block's requested length).
    pub len: u64,
}

/// What [`Segment::check`] found.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct HeapReport {
    /// Every inconsistency (empty if the heap is sound).
    pub problems: Vec<HeapProblem>,
    /// Statistics gathered on the way.
    pub stats: HeapStats,
}

impl HeapReport {
    /// Whether no inconsistency was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Default)]
struct Walk {
    report: HeapReport,
    blocks: Vec<HeapBlock>,
}

impl Walk {
    fn bad(&mut self, page: u32, reason: impl Into<String>) {
        self.report.problems.push(HeapProblem::BadDescriptor {
            page,
            reason: reason.into(),
        });
    }
}

/// What the walk reads the heap through: a transaction of an open segment, or (for
/// read-only tools) the committed bytes of a segment's files ([`crate::inspect`]).
pub(crate) trait HeapSource {
    /// Bytes of user space.
    fn user_len(&self) -> u64;
    /// The bytes `[offset, offset + len)` of user space.
    fn bytes(&self, offset: u64, len: u64) -> Result<std::borrow::Cow<'_, [u8]>>;
    /// A plain-old-data value at `offset`.
    fn value<T: bytemuck::AnyBitPattern>(&self, offset: u64) -> Result<T> {
        let b = self.bytes(offset, std::mem::size_of::<T>() as u64)?;
        Ok(bytemuck::pod_read_unaligned(&b))
    }
}

impl HeapSource for Transaction<'_> {
    fn user_len(&self) -> u64 {
        self.segment_len()
    }

    fn bytes(&self, offset: u64, len: u64) -> Result<std::borrow::Cow<'_, [u8]>> {
        self.read(offset, len).map(std::borrow::Cow::Borrowed)
    }
}

/// Walks the heap read through `src` (see [`Segment::check`]).
pub(crate) fn report(src: &impl HeapSource) -> Result<HeapReport> {
    Ok(walk(src, false)?.report)
}

fn walk(tx: &impl HeapSource, want_blocks: bool) -> Result<Walk> {
    let mut w = Walk::default();
    w.report.stats.classes = CLASSES
        .iter()
        .map(|&c| ClassStats {
            block_size: c,
            ..ClassStats::default()
        })
        .collect();
    let len = tx.user_len();
    let fit = pages_fitting(len);
    if len < HEAP_BASE {
        return Ok(w);
    }
    let header = match decode_header(&tx.bytes(0, 64)?, len) {
        Ok(Some(h)) => h,
        Ok(None) => {
            w.report.stats.unformatted_bytes = u64::from(fit) * PAGE;
            return Ok(w);
        }
        Err(e) => {
            w.report.problems.push(HeapProblem::Header(e.to_string()));
            return Ok(w);
        }
    };
    let formatted = header.formatted;
    let st = &mut w.report.stats;
    st.unformatted_bytes = u64::from(fit - formatted) * PAGE;
    st.formatted_bytes = if formatted == 0 {
        HEAP_BASE
    } else {
        page_off(formatted - 1) + PAGE
    };
    let desc = |g: u32| -> Result<Desc> { Ok(Desc::decode(&tx.bytes(desc_off(g), DESC)?)) };
    // Free-run heads and partial slabs, to match against the lists.
    let mut free_heads = BTreeSet::new();
    let mut partial: BTreeSet<(u32, usize, u32)> = BTreeSet::new(); // (arena, class, page)
    let mut live_starts = BTreeSet::new();
    let mut g = 0;
    let mut prev_free = false;
    while g < formatted {
        let zone_end = (g - g % ZONE_PAGES as u32 + ZONE_PAGES as u32).min(formatted);
        let d = desc(g)?;
        let run_ok = |n: u32| n >= 1 && g.checked_add(n).is_some_and(|e| e <= zone_end);
        match d.kind {
            FREE if run_ok(d.n) => {
                if prev_free {
                    w.report.problems.push(HeapProblem::Uncoalesced { page: g });
                }
                if d.n > 1 && desc(g + d.n - 1)? != Desc::free(d.n, FREE_TAIL) {
                    w.bad(g + d.n - 1, "the tail of a free run is missing");
                }
                interior(&desc, &mut w, g + 1, g + d.n.saturating_sub(1).max(1))?;
                free_heads.insert(g);
                let st = &mut w.report.stats;
                st.free_runs += 1;
                st.free_bytes += u64::from(d.n) * PAGE;
                st.largest_free_run = st.largest_free_run.max(u64::from(d.n));
                prev_free = g + d.n < zone_end;
                g += d.n;
                continue;
            }
            RUN if run_ok(d.n) && pages_for(d.len) == u64::from(d.n) => {
                interior(&desc, &mut w, g + 1, g + d.n)?;
                let st = &mut w.report.stats;
                st.live_blocks += 1;
                st.live_bytes += d.len;
                st.used_bytes += u64::from(d.n) * PAGE;
                live_starts.insert((page_off(g), d.len));
                if want_blocks {
                    w.blocks.push(HeapBlock {
                        offset: page_off(g),
                        len: d.len,
                    });
                }
                g += d.n;
            }
            SLAB if usize::from(d.class) < CLASSES.len() && u32::from(d.arena) < ARENAS => {
                let c = usize::from(d.class);
                let cap = slab_cap(c);
                let size = CLASSES[c];
                let mut live = 0;
                let mut past_end_ok = true;
                for slot in 0..256 {
                    if slot >= cap {
                        past_end_ok &= d.bit(slot);
                    } else if d.bit(slot) {
                        live += 1;
                        let off = page_off(g) + u64::from(slot) * size;
                        live_starts.insert((off, size));
                        if want_blocks {
                            w.blocks.push(HeapBlock {
                                offset: off,
                                len: size,
                            });
                        }
                    }
                }
                if !past_end_ok {
                    w.bad(g, "slab bitmap clear past the slab's end");
                }
                if live != d.n {
                    w.report.problems.push(HeapProblem::Accounting {
                        page: g,
                        counted: d.n,
                        bitmap: live,
                    });
                }
                if live < cap {
                    partial.insert((u32::from(d.arena), c, g));
                }
                let st = &mut w.report.stats;
                let cs = &mut st.classes[c];
                cs.slabs += 1;
                cs.live += u64::from(live);
                cs.free += u64::from(cap - live);
                st.live_blocks += u64::from(live);
                st.live_bytes += u64::from(live) * size;
                st.used_bytes += PAGE;
                st.free_bytes += u64::from(cap - live) * size;
                g += 1;
            }
            k => {
                let why = match k {
                    NONE => "no block or run starts here".to_owned(),
                    FREE_TAIL => "a free-run tail without its head".to_owned(),
                    _ => format!(
                        "invalid descriptor (kind {k}, n {}, class {})",
                        d.n, d.class
                    ),
                };
                w.bad(g, why);
                g += 1;
            }
        }
        prev_free = false;
    }
    // Pages beyond the extent must be unformatted (zero) in formatted zones.
    if formatted % ZONE_PAGES as u32 != 0 {
        let zone_end = formatted - formatted % ZONE_PAGES as u32 + ZONE_PAGES as u32;
        for p in formatted..zone_end.min(fit) {
            if desc(p)?.kind != NONE {
                w.bad(p, "a descriptor beyond the heap's extent");
            }
        }
    }
    // The lists hold exactly the free runs and the slabs with free blocks.
    let mut listed_runs = BTreeSet::new();
    for l in 0..RUNLISTS {
        let name = format!("run list {l}");
        for (p, d) in list(tx, runlist_off(l), formatted, &name, &mut w)? {
            if d.kind != FREE || runlist(d.n) != l {
                w.report.problems.push(HeapProblem::List {
                    list: name.clone(),
                    reason: format!("page {p} is not a free run of this list"),
                });
            }
            listed_runs.insert(p);
        }
    }
    if listed_runs != free_heads {
        w.report.problems.push(HeapProblem::List {
            list: "run lists".into(),
            reason: format!(
                "free runs {:?} listed, {:?} found",
                listed_runs
                    .symmetric_difference(&free_heads)
                    .take(4)
                    .collect::<Vec<_>>(),
                free_heads.len()
            ),
        });
    }
    for a in 0..ARENAS {
        for c in 0..CLASSES.len() {
            let name = format!("arena {a} class {c}");
            let members = list(tx, arena_head_off(a, c), formatted, &name, &mut w)?;
            for (p, d) in members {
                let listed = (a, c, p);
                if d.kind != SLAB || usize::from(d.class) != c || u32::from(d.arena) != a {
                    w.report.problems.push(HeapProblem::List {
                        list: name.clone(),
                        reason: format!("page {p} is not a slab of this list"),
                    });
                } else if !partial.remove(&listed) {
                    w.report.problems.push(HeapProblem::List {
                        list: name.clone(),
                        reason: format!("full slab {p} listed"),
                    });
                }
            }
        }
    }
    if let Some((a, c, p)) = partial.first() {
        w.report.problems.push(HeapProblem::List {
            list: format!("arena {a} class {c}"),
            reason: format!("slab {p} has free blocks but is on no list"),
        });
    }
    let [off, size, _, _, name]: [u64; 5] = tx.value(ROOT_OFF)?;
    if off != 0 && !live_starts.iter().any(|&(o, l)| o == off && l >= size) {
        w.report.problems.push(HeapProblem::Root(format!(
            "{off:#x} is not a live block of {size} bytes"
        )));
    }
    if name != 0 && !live_starts.iter().any(|&(o, l)| o == name && l >= 8) {
        w.report.problems.push(HeapProblem::Root(format!(
            "its name {name:#x} is not a live block"
        )));
    }
    Ok(w)
}

/// Checks that the descriptors of pages `[from, to)` (inside a run) are zero.
fn interior(desc: &impl Fn(u32) -> Result<Desc>, w: &mut Walk, from: u32, to: u32) -> Result<()> {
    for p in from..to {
        if desc(p)?.kind != NONE {
            w.bad(p, "a descriptor inside a run");
        }
    }
    Ok(())
}

/// The members of the list at `head_off`, checking links; stops at a cycle.
fn list(
    tx: &impl HeapSource,
    head_off: u64,
    formatted: u32,
    name: &str,
    w: &mut Walk,
) -> Result<Vec<(u32, Desc)>> {
    let mut out = Vec::new();
    let mut at: u32 = tx.value(head_off)?;
    let mut prev = 0;
    while at != 0 {
        let p = at - 1;
        if p >= formatted || out.len() > formatted as usize {
            w.report.problems.push(HeapProblem::List {
                list: name.to_owned(),
                reason: format!("link to page {p}: beyond the heap, or a cycle"),
            });
            break;
        }
        let d = Desc::decode(&tx.bytes(desc_off(p), DESC)?);
        if d.prev != prev {
            w.report.problems.push(HeapProblem::List {
                list: name.to_owned(),
                reason: format!("page {p} links back to {} instead of {prev}", d.prev),
            });
        }
        out.push((p, d));
        prev = at;
        at = d.next;
    }
    Ok(out)
}

impl Segment {
    /// Walks the heap and reports every inconsistency (a descriptor that no block or
    /// run explains, overlapping runs, a bad size class, a slab whose counter
    /// disagrees with its bitmap, a broken or incomplete free list, free runs left
    /// uncoalesced, a root that is not a live block), with statistics. Runs in a
    /// read-only transaction of its own ([`crate::Segment::begin_read`]) that locks the
    /// metadata shared while it reads.
    ///
    /// # Errors
    /// [`crate::Error::Conflict`] (a transaction holds metadata),
    /// [`crate::Error::Poisoned`]. Damage is reported, not an error.
    pub fn check(&self) -> Result<HeapReport> {
        let tx = self.begin_read()?;
        Ok(walk(&tx, false)?.report)
    }

    /// Heap statistics: live and free bytes, per-class counts, fragmentation.
    ///
    /// # Errors
    /// As [`Segment::check`].
    pub fn heap_stats(&self) -> Result<HeapStats> {
        Ok(self.check()?.stats)
    }

    /// Every live block, by offset (for leak inspection).
    ///
    /// # Errors
    /// As [`Segment::check`].
    pub fn heap_blocks(&self) -> Result<Vec<HeapBlock>> {
        let tx = self.begin_read()?;
        Ok(walk(&tx, true)?.blocks)
    }

    /// The root object created by [`Transaction::root`], or `None` if there is none.
    ///
    /// # Errors
    /// [`crate::Error::RootMismatch`] if it was created with another type;
    /// [`crate::Error::HeapCorrupt`]; as [`Segment::read`].
    pub fn root<T: bytemuck::Pod>(&self) -> Result<Option<PPtr<T>>> {
        let tx = self.begin_read()?;
        if decode_header(tx.read(0, 64)?, self.len())?.is_none() {
            return Ok(None);
        }
        let [off, size, align, tag]: [u64; 4] = tx.get(ROOT_OFF)?;
        if off == 0 {
            return Ok(None);
        }
        let (found, wanted) = (RootType { size, align, tag }, RootType::of::<T>());
        if found != wanted {
            return Err(crate::Error::RootMismatch { found, wanted });
        }
        Ok(Some(PPtr::from_offset(off)))
    }

    /// The committed value `ptr` designates (checked like [`Transaction::get_ptr`]).
    ///
    /// # Errors
    /// [`crate::Error::BadHandle`]; as [`Segment::read`].
    pub fn get_ptr<P: super::Handle>(&self, ptr: P) -> Result<P::Target> {
        let tx = self.begin_read()?;
        tx.get_ptr(ptr)
    }

    /// The committed bytes of the buffer `ptr` designates (checked like
    /// [`Transaction::bytes`]: the whole block, at least the length it was allocated
    /// with), as a guard that keeps them from changing until it drops. For a buffer
    /// that carries its length, see [`crate::PBytes::read`].
    ///
    /// # Errors
    /// [`crate::Error::BadHandle`]; as [`Segment::read`].
    pub fn bytes(&self, ptr: PPtr<[u8]>) -> Result<crate::Bytes<'_>> {
        // The handle is checked in a transaction that keeps the block's descriptor
        // locked while the guard locks the bytes: the block is live when they are read.
        let tx = self.begin_read()?;
        let len = tx.live_block::<[u8]>(ptr.offset())?;
        self.read(ptr.offset(), len)
    }
}
