//! The `heap` workload: random allocations, frees and rewrites on vista's persistent heap
//! from several threads at once, as a crash-sim [`App`] (every mode of
//! [`crate::app::run`]: kill, power, points, recovery). Run it with
//! `cargo run --release -p crash-sim --example heap -- --mode kill --seconds 10`.
//!
//! The root holds one directory per thread; a directory slot names a block (handle,
//! length, generation). One operation is one transaction of one thread on one slot:
//! allocate a block and fill it with the generation's pattern, free it, replace it
//! with a block of another size, or rewrite it, always recording the new generation
//! in the slot. Generations grow per thread, and each operation acknowledges
//! `(thread, slot, generation)` after its commit returns.
//!
//! The oracle, on the recovered segment:
//! - `Segment::check` finds the heap consistent;
//! - the live blocks are exactly the root, the directories and the blocks the slots
//!   name: nothing leaked by a transaction cut short, nothing freed that is referenced;
//! - every named block holds its slot's generation's pattern over its slot's length;
//! - every acknowledged operation is there: a slot's generation is at least the last
//!   one acknowledged for it (a later one may have committed unacknowledged).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use anyhow::Result;
use vista::{bytemuck, Options, PPtr, Segment, Transaction, Writeback};

use crate::app::{Acks, App, History};
use crate::seed::mix;

/// Threads running operations at once.
pub const THREADS: usize = 3;
/// Slots per thread.
const SLOTS: usize = 48;

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Root {
    dirs: [PPtr<Dir>; THREADS],
}

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Slot {
    block: PPtr<[u8]>,
    len: u64,
    generation: u64,
}

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Dir {
    next_generation: u64,
    slots: [Slot; SLOTS],
}

/// The bytes of a block of generation `g` (never all zero, so a block that was never
/// written is told apart).
fn pattern(g: u64, len: usize) -> impl Iterator<Item = u8> {
    (0..len).map(move |i| (mix(g) as u8).wrapping_add(i as u8) | 1)
}

/// The heap workload.
#[derive(Debug, Default)]
pub struct HeapWorkload;

impl HeapWorkload {
    /// A block size: mostly small (every size class), sometimes several pages.
    fn size(r: u64) -> u64 {
        match r % 16 {
            0 => 4097 + (r >> 8) % 40_000,
            1..=3 => 1 + (r >> 8) % 2048,
            _ => 1 + (r >> 8) % 200,
        }
    }

    /// One operation of thread `t` on a slot; returns (slot, generation).
    fn op(tx: &mut Transaction<'_>, thread: usize, r: u64) -> vista::Result<(usize, u64)> {
        let root = tx.root::<Root>()?;
        let dir_ptr = tx.get_ptr(root)?.dirs[thread];
        let dir: Dir = tx.get_ptr(dir_ptr)?;
        let at = (r % SLOTS as u64) as usize;
        let g = dir.next_generation;
        let slot = dir.slots[at];
        let new = match (slot.block.is_null(), r >> 32 & 3) {
            (false, 0) => {
                tx.free(slot.block)?;
                Slot {
                    block: PPtr::NULL,
                    len: 0,
                    generation: g,
                }
            }
            (false, 1) => {
                // Rewrite in place.
                let len = slot.len as usize;
                for (d, p) in tx.bytes_mut(slot.block)?[..len]
                    .iter_mut()
                    .zip(pattern(g, len))
                {
                    *d = p;
                }
                Slot {
                    generation: g,
                    ..slot
                }
            }
            (empty, _) => {
                // Allocate (replacing the old block, if any).
                if !empty {
                    tx.free(slot.block)?;
                }
                let len = Self::size(mix(r));
                let block = tx.alloc_bytes(len)?;
                for (d, p) in tx.bytes_mut(block)?[..len as usize]
                    .iter_mut()
                    .zip(pattern(g, len as usize))
                {
                    *d = p;
                }
                Slot {
                    block,
                    len,
                    generation: g,
                }
            }
        };
        let d = tx.get_mut(dir_ptr)?;
        d.slots[at] = new;
        d.next_generation = g + 1;
        Ok((at, g))
    }
}

impl App for HeapWorkload {
    fn name(&self) -> &'static str {
        "heap"
    }

    fn options(&self) -> Options {
        Options::new()
            .size(4 << 20)
            .undo_log_size(128 << 10)
            .lanes(THREADS as u32 + 1)
            .writeback(Writeback::Manual)
    }

    fn init(&self, seg: &mut Segment) -> Result<()> {
        seg.transaction(|tx| {
            let root = tx.root::<Root>()?;
            for t in 0..THREADS {
                let dir = tx.alloc_zeroed::<Dir>()?;
                tx.get_mut(root)?.dirs[t] = dir;
            }
            Ok::<_, vista::Error>(())
        })?;
        Ok(())
    }

    fn run(&self, seg: &mut Segment, acks: &mut Acks<'_>) -> Result<()> {
        let seed = acks.seed();
        let acks = Mutex::new(acks);
        let seg = &*seg;
        std::thread::scope(|sc| {
            let workers: Vec<_> = (0..THREADS)
                .map(|t| {
                    let acks = &acks;
                    sc.spawn(move || -> Result<()> {
                        for i in 0u64.. {
                            if !acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.more() {
                                return Ok(());
                            }
                            let r = mix(seed ^ mix(t as u64) ^ mix(i.wrapping_mul(0x9E37)));
                            let (s, g) = match seg.transaction(|tx| Self::op(tx, t, r)) {
                                Ok(v) => v,
                                // Out of space: the transaction was aborted; free more.
                                Err(vista::Error::OutOfSpace { .. }) => continue,
                                Err(e) => return Err(e.into()),
                            };
                            let mut a = acks.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
                            let mut op = [0u8; 24];
                            op[..8].copy_from_slice(&(t as u64).to_le_bytes());
                            op[8..16].copy_from_slice(&(s as u64).to_le_bytes());
                            op[16..].copy_from_slice(&g.to_le_bytes());
                            a.ack(&op)?;
                            if t == 0 && i % 32 == 31 {
                                // Holding the acknowledgements meanwhile: an operation
                                // acknowledged after the checkpoint began may have
                                // committed after its copy, so it must not be counted
                                // as checkpointed. (The other threads' transactions
                                // still commit; only their acknowledgements wait.)
                                seg.checkpoint()?;
                                a.checkpointed()?;
                            }
                        }
                        Ok(())
                    })
                })
                .collect();
            workers
                .into_iter()
                .try_for_each(|w| w.join().map_err(|_| anyhow::anyhow!("a worker panicked"))?)
        })
    }

    fn check(&self, seg: &Segment, history: &History) -> Result<(), String> {
        let e = |e: vista::Error| e.to_string();
        let report = seg.check().map_err(e)?;
        if let Some(p) = report.problems.first() {
            return Err(format!(
                "heap check: {p} ({} problems)",
                report.problems.len()
            ));
        }
        let root = seg.root::<Root>().map_err(e)?.ok_or("no root")?;
        let mut referenced = BTreeSet::from([root.offset()]);
        let mut generation = BTreeMap::new();
        for (t, dir_ptr) in seg.get_ptr(root).map_err(e)?.dirs.into_iter().enumerate() {
            referenced.insert(dir_ptr.offset());
            let dir = seg.get_ptr(dir_ptr).map_err(e)?;
            for (s, slot) in dir.slots.iter().enumerate() {
                if slot.generation >= dir.next_generation && dir.next_generation > 0 {
                    return Err(format!(
                        "thread {t} slot {s}: generation beyond the counter"
                    ));
                }
                generation.insert((t as u64, s as u64), slot.generation);
                if slot.block.is_null() {
                    continue;
                }
                if !referenced.insert(slot.block.offset()) {
                    return Err(format!("block {:?} named twice", slot.block));
                }
                let bytes = seg.read(slot.block.offset(), slot.len).map_err(e)?;
                if !bytes
                    .iter()
                    .copied()
                    .eq(pattern(slot.generation, slot.len as usize))
                {
                    return Err(format!(
                        "thread {t} slot {s}: block {:?} does not hold generation {}",
                        slot.block, slot.generation
                    ));
                }
            }
        }
        let live: BTreeSet<u64> = seg
            .heap_blocks()
            .map_err(e)?
            .iter()
            .map(|b| b.offset)
            .collect();
        if live != referenced {
            let leaked: Vec<_> = live.difference(&referenced).take(4).collect();
            let lost: Vec<_> = referenced.difference(&live).take(4).collect();
            return Err(format!(
                "live blocks: leaked {leaked:x?}, referenced but free {lost:x?}"
            ));
        }
        let mut last = BTreeMap::new();
        for op in history.required().iter() {
            let word = |i: usize| u64::from_le_bytes(op[i..i + 8].try_into().expect("24-byte ack"));
            last.insert((word(0), word(8)), word(16));
        }
        for ((t, s), g) in last {
            let now = generation.get(&(t, s)).copied().unwrap_or(0);
            if now < g {
                return Err(format!(
                    "thread {t} slot {s}: acknowledged generation {g} lost (found {now})"
                ));
            }
        }
        Ok(())
    }
}
