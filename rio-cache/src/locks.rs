//! Range locks for concurrent updates: a striped table of reader-writer words keyed by
//! cache line, and the set of stripes one holder has taken.
//!
//! Line `l` (bytes `64 l .. 64 l + 64` of the data) maps to stripe `l mod n`, with `n` a
//! power of two no larger than the number of lines. Two lines that share a stripe share
//! its lock: a false conflict at worst, never a missed one. A stripe word is `0` (free),
//! a count of shared holders, or [`EXCLUSIVE`] with the holding thread's number in the
//! low bits.
//!
//! **Blocks.** Past the `n` line stripes the table has `n / 16` block stripes (when `n`
//! is at least 32): block stripe `n + k` stands for line stripes `16 k .. 16 k + 16`. A
//! range takes every block it covers whole as the block's word and only the lines at
//! its ends one by one, so a 4 KiB write takes about 20 words instead of 65. A line and
//! its block exclude each other by Dekker's argument: a line holder writes the line's
//! word and then reads the block's, a block holder writes the block's word and then
//! reads its lines' words, all `SeqCst`, so whichever wrote second sees the other. The
//! line holder then gives its line back and waits for the block; the block holder keeps
//! the block and waits for the line (see [`Held::take_line`], [`Held::take_block`]). A
//! line inside a block its holder has in a serving mode is not taken at all.
//!
//! **A range this thread holds.** A holder that cannot take a stripe at once first asks
//! whether this very thread holds it (its exclusive owner is this thread, or every
//! shared holder is one of this thread's read guards, which register their stripes in
//! a thread-local list). Waiting would then be for nothing: the thread cannot release
//! while it waits. The holder gives up at once and says so
//! ([`Held::refused_by_this_thread`]), and the caller reports
//! [`crate::Error::HeldByThisThread`]. (Shared locks of another update of this thread are
//! not in the list: that case waits the lock wait and reports a plain conflict.)
//!
//! Holders follow strict two-phase locking: they only take stripes until they end, then
//! release everything at once. Taking a free or compatible stripe never waits; an
//! incompatible one is waited for with [`crossbeam_utils::Backoff`] and then by yielding
//! until the holder's wait limit, after which the caller gets a conflict (so a cycle of
//! waiters breaks instead of deadlocking). A holder that waits registers the stripe it
//! waits for, and gives up early when it finds the commonest deadlocks, of two holders
//! (see [`LockTable::wait_registered`]); so an upgrade from shared to exclusive waits too,
//! for the other readers to finish, and two holders upgrading the same stripe do not wait
//! out the lock wait for each other.

use std::cell::{Cell, RefCell};
#[cfg(not(feature = "shuttle"))]
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

// Under the `shuttle` feature (model-checked tests only) the lock words are shuttle's
// atomics, so that its scheduler can interleave threads at every access.
#[cfg(feature = "shuttle")]
use shuttle::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_utils::{Backoff, CachePadded};

/// Bytes covered by one lock key.
pub(crate) const LINE: u64 = 64;
/// Lines covered by one block word (1 KiB): a range takes the blocks it covers whole as
/// one word each (see the module documentation).
const BLOCK_LINES: u64 = 16;
/// The most stripes a table has (256 KiB of lock words).
const MAX_STRIPES: usize = 1 << 16;
const EXCLUSIVE: u32 = 1 << 31;

/// Numbers threads for the owner bits of exclusive words (0: not yet numbered).
static NEXT_THREAD: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
/// Numbers lock tables, for the read guards' thread-local list.
static NEXT_TABLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

#[cfg(feature = "shuttle")]
use shuttle::thread_local;

thread_local! {
    /// This thread's number in exclusive lock words (`0` until first used).
    static THREAD: Cell<u32> = const { Cell::new(0) };
    /// Stripes held shared by this thread's read guards: (table, stripe, count).
    static GUARDED: RefCell<Guarded> = const {
        RefCell::new(Guarded { sets: 0, list: Vec::new() })
    };
}

/// The shared stripes this thread's read guards hold.
#[derive(Debug)]
struct Guarded {
    /// Read guards' sets of this thread that hold stripes now (listed here).
    sets: u32,
    /// (table, stripe, holds). With one set, every entry is that set's, each stripe
    /// once: a new stripe of the set is appended without a search, and the set's
    /// release empties the list.
    list: Vec<(u64, u32, u32)>,
}

/// This thread's number: never 0, below [`EXCLUSIVE`].
#[inline]
fn this_thread() -> u32 {
    match THREAD.with(Cell::get) {
        0 => number_this_thread(),
        n => n,
    }
}

/// Gives this thread its number (its first exclusive lock).
#[cold]
fn number_this_thread() -> u32 {
    THREAD.with(|t| {
        let n =
            (NEXT_THREAD.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % (EXCLUSIVE - 1)) + 1;
        t.set(n);
        n
    })
}

/// The lock words of one cache.
#[derive(Debug)]
pub(crate) struct LockTable {
    /// The line stripes `0..=mask`, then the block stripes (`mask + 1` on, one per
    /// [`BLOCK_LINES`] line stripes; none in a table of fewer stripes).
    words: Box<[AtomicU32]>,
    mask: u64,
    /// Block stripes (0: blocks are not used).
    blocks: u64,
    /// Holders that have taken (or are taking) a block: while 0, a line holder need not
    /// read its block's word (see [`LockTable::block_free`]). On its own cache line: it
    /// changes only when a holder takes its first block or releases.
    block_users: CachePadded<AtomicU64>,
    /// This table's number (see `GUARDED`).
    id: u64,
    /// Holders waiting for a stripe, by thread: slot `t mod WAIT_SLOTS` holds
    /// `t << 32 | stripe` while thread `t` waits (0: none), for finding deadlocks (see
    /// [`LockTable::wait_registered`]). Two threads that share a slot can hide each
    /// other: a deadlock then lasts the lock wait, as without the slots.
    waiting: Box<[AtomicU64]>,
}

/// Slots of [`LockTable::waiting`].
const WAIT_SLOTS: usize = 64;

impl LockTable {
    /// A table for `data_len` bytes.
    pub(crate) fn new(data_len: u64) -> LockTable {
        let lines = data_len.div_ceil(LINE).max(1) as usize;
        let n = lines.next_power_of_two().min(MAX_STRIPES);
        let blocks = if n as u64 >= 2 * BLOCK_LINES {
            n as u64 / BLOCK_LINES
        } else {
            0
        };
        LockTable {
            words: (0..n + blocks as usize)
                .map(|_| AtomicU32::new(0))
                .collect(),
            mask: n as u64 - 1,
            blocks,
            block_users: CachePadded::new(AtomicU64::new(0)),
            id: NEXT_TABLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            waiting: (0..WAIT_SLOTS).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    /// Waits up to `wait` for `take` to succeed on stripe `s`, which this thread's
    /// holder `holds` (its set) could not take at once, giving up early on a deadlock of
    /// two holders (see [`LockTable::deadlocked`]). Of the two, only the thread with the
    /// higher number gives up, and it looks again at every turn of its wait, so it sees
    /// the cycle whichever of them started waiting first; the other goes on instead of
    /// both waiting out the lock wait. Longer cycles still wait out the lock wait.
    #[cold]
    fn wait_registered(
        &self,
        s: u32,
        holds: impl Fn(u32) -> bool,
        take: impl FnMut() -> bool,
        wait: Duration,
    ) -> bool {
        let me = this_thread();
        let entry = u64::from(me) << 32 | u64::from(s);
        let slot = &self.waiting[me as usize % WAIT_SLOTS];
        slot.store(entry, Ordering::SeqCst);
        let taken = wait_slow(take, || self.deadlocked(s, me, &holds), wait);
        // Only our own entry: a thread sharing the slot may have replaced it.
        let _ = slot.compare_exchange(entry, 0, Ordering::SeqCst, Ordering::Relaxed);
        taken
    }

    /// Whether thread `me`, waiting for stripe `s` with a holder that `holds` stripes,
    /// is to give up: a thread numbered below `me` that it waits for waits itself for a
    /// stripe `holds` says this holder has.
    /// - `s` held exclusively: the word names its holder, whose slot says what it
    ///   waits for.
    /// - `s` held shared (this holder's upgrade, or a write of a line others read): the
    ///   word only counts its readers, so any lower-numbered waiter for a stripe this
    ///   holder has may be one of them, and this holder gives up (at worst a needless
    ///   retry). Two upgraders of one stripe always find each other this way.
    fn deadlocked(&self, s: u32, me: u32, holds: impl Fn(u32) -> bool) -> bool {
        #[cfg(feature = "mutants")]
        if crate::mutant::is("no-deadlock-detection") {
            return false; // Mutant: deadlocked holders wait out the lock wait.
        }
        let w = self.words[s as usize].load(Ordering::SeqCst);
        if w == 0 {
            return false; // Free: the next turn takes it.
        }
        let waits_for_mine = |e: u64, t: u32| e >> 32 == u64::from(t) && holds(e as u32);
        if w & EXCLUSIVE != 0 {
            let owner = w & !EXCLUSIVE;
            owner < me
                && waits_for_mine(
                    self.waiting[owner as usize % WAIT_SLOTS].load(Ordering::SeqCst),
                    owner,
                )
        } else {
            self.waiting.iter().any(|slot| {
                let e = slot.load(Ordering::SeqCst);
                let t = (e >> 32) as u32;
                t != 0 && t < me && waits_for_mine(e, t)
            })
        }
    }

    /// Whether stripe `s` is held by this thread only: exclusively by it, or
    /// shared by its read guards alone, besides `own` shares of the asking holder.
    #[cold]
    fn held_by(&self, s: u32, own: u32) -> bool {
        let w = self.words[s as usize].load(Ordering::Relaxed);
        if w & EXCLUSIVE != 0 {
            return w & !EXCLUSIVE == this_thread();
        }
        w > own
            && GUARDED.with(|g| {
                g.borrow()
                    .list
                    .iter()
                    .find(|e| e.0 == self.id && e.1 == s)
                    .is_some_and(|e| e.2 + own >= w)
            })
    }

    #[inline]
    fn try_shared(&self, s: u32) -> bool {
        let w = &self.words[s as usize];
        let mut cur = w.load(Ordering::Relaxed);
        loop {
            if cur & EXCLUSIVE != 0 || cur == EXCLUSIVE - 1 {
                return false;
            }
            // SeqCst (and on the exclusive and upgrade paths): with the load of the
            // other level's word that follows, Dekker's argument between a line and its
            // block (see the module documentation).
            match w.compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    #[inline]
    fn try_exclusive(&self, s: u32, me: u32) -> bool {
        self.words[s as usize]
            .compare_exchange(0, EXCLUSIVE | me, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// [`LockTable::try_exclusive`] or [`LockTable::try_shared`].
    #[inline]
    fn try_take(&self, s: u32, exclusive: bool, me: u32) -> bool {
        if exclusive {
            self.try_exclusive(s, me)
        } else {
            self.try_shared(s)
        }
    }

    /// Shared to exclusive, if the caller is the only shared holder.
    #[inline]
    fn try_upgrade(&self, s: u32, me: u32) -> bool {
        self.words[s as usize]
            .compare_exchange(1, EXCLUSIVE | me, Ordering::SeqCst, Ordering::Relaxed)
            .is_ok()
    }

    /// Undoes [`LockTable::try_upgrade`]: shared again, by the caller alone (nobody else
    /// changes an exclusive word).
    #[inline]
    fn downgrade(&self, s: u32) {
        self.words[s as usize].store(1, Ordering::Release);
    }

    /// Whether no holder uses blocks, or the block of line stripe `s` is free (SeqCst,
    /// after the line's word was written: see the module documentation). A holder
    /// counts itself in `block_users` before it writes its first block word, so a line
    /// holder that reads 0 there wrote its line before any block holder's count, and
    /// that block holder sees the line when it reads the block's lines.
    // Always inlined: it is on every lock's path, and out of line it cost 10-30
    // instructions a call (callgrind; docs/benchmarks.md, "Blocks").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn block_free(&self, s: u32) -> bool {
        #[cfg(feature = "mutants")]
        if crate::mutant::is("line-ignores-block") {
            return true; // Mutant: a line is taken inside another's block.
        }
        self.block_users.load(Ordering::SeqCst) == 0
            || self
                .block_of(s)
                .is_none_or(|b| self.words[b as usize].load(Ordering::SeqCst) == 0)
    }

    /// The block stripe whose word covers line stripe `s`, if blocks are used.
    #[inline]
    fn block_of(&self, s: u32) -> Option<u32> {
        (self.blocks != 0).then(|| (self.mask + 1) as u32 + s / BLOCK_LINES as u32)
    }

    /// The line stripes block stripe `b` covers.
    fn lines_of(&self, b: u32) -> std::ops::Range<u32> {
        let first = (b - (self.mask + 1) as u32) * BLOCK_LINES as u32;
        first..first + BLOCK_LINES as u32
    }

    /// What a holder takes for `[offset, offset + len)` (not empty), as block numbers
    /// (the blocks the range covers whole; see [`LockTable::block_stripe`]) and two runs
    /// of line numbers (the lines at its ends, or every line when it covers no block
    /// whole; see [`LockTable::line_stripe`]). Every stripe once (a range longer than
    /// the table takes every block, and no line).
    #[inline]
    fn plan(&self, offset: u64, len: u64) -> [std::ops::Range<u64>; 3] {
        let (first, last) = (offset / LINE, (offset + len - 1) / LINE);
        let (fb, lb) = (first.div_ceil(BLOCK_LINES), (last + 1) / BLOCK_LINES);
        let mask = self.mask;
        let (blocks, heads, tails) = if self.blocks == 0 || fb >= lb {
            let count = (last - first + 1).min(mask + 1);
            (0..0, first..first + count, 0..0)
        } else if last - first > mask {
            (0..self.blocks, 0..0, 0..0)
        } else {
            let count = (lb - fb).min(self.blocks);
            (
                fb..fb + count,
                first..fb * BLOCK_LINES,
                lb * BLOCK_LINES..last + 1,
            )
        };
        [blocks, heads, tails]
    }

    /// The stripe of block number `b` (blocks are used).
    #[inline]
    fn block_stripe(&self, b: u64) -> u32 {
        (self.mask + 1 + (b & (self.blocks - 1))) as u32
    }

    /// The stripe of line number `l`.
    #[inline]
    fn line_stripe(&self, l: u64) -> u32 {
        (l & self.mask) as u32
    }

    #[inline]
    fn release(&self, s: u32, exclusive: bool) {
        let w = &self.words[s as usize];
        if exclusive {
            w.store(0, Ordering::Release);
        } else {
            w.fetch_sub(1, Ordering::Release);
        }
    }
}

/// The stripes one holder (an update or a read guard) has taken; released on
/// [`Held::release_all`]. Small sets are scanned, large ones indexed.
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Stripe numbers, with [`EXCLUSIVE`] set for exclusive ones: the first
    /// [`INLINE`] in place (a small transaction allocates nothing), the rest in `more`.
    first: [u32; INLINE],
    len: usize,
    more: Vec<u32>,
    /// Position by stripe, once the set is longer than [`INLINE`]: an open-addressing
    /// table whose slot holds a position plus one (0: empty), its length a power of two
    /// at least twice the set's. Stripe numbers are small integers chosen by the cache's
    /// own layout, not by an adversary, so a multiplicative hash is enough.
    slots: Vec<u32>,
    /// The last `acquire` failed because this thread holds the stripe.
    mine: bool,
    /// A read guard's set: its shared stripes are listed in `GUARDED`.
    guard: Option<u64>,
    /// It holds stripes and is counted in `Guarded::sets`.
    listed: bool,
    /// By `s mod HINTS`: 0 if no stripe with that remainder is held, so a zero says "not
    /// held" without a search. Otherwise, while the set is no longer than [`INLINE`],
    /// the position plus one of the stripe with that remainder pushed last: a hint
    /// naming the stripe asked for finds it without a search (a word read, then
    /// written, finds its stripe at once), and only a hint naming another stripe scans.
    /// Beyond [`INLINE`], the index finds it.
    hint: Hints,
    /// Block stripes held: while 0, no line is covered by a block of this set, without
    /// a search.
    blocks: u32,
    /// Counted in the table's `block_users` (until [`Held::release_all`]).
    block_user: bool,
}

/// Whether a word `w` lets a holder in with `exclusive`, given the holder's own hold
/// of it (`mine`: `Some(true)` exclusive, `Some(false)` one share, `None`).
#[inline]
fn compatible(w: u32, mine: Option<bool>, exclusive: bool) -> bool {
    w == 0
        || match mine {
            Some(true) => true,
            Some(false) => !exclusive || w == 1,
            None => !exclusive && w & EXCLUSIVE == 0,
        }
}

/// Stripes a holder keeps without allocating, and searches before it indexes.
/// Thirty-two: a 512-byte range at a random offset takes 9 or 10 line stripes and a
/// 4 KiB one about 20 words (its blocks and the lines at its ends); building the index
/// for them cost a sixth of a 512-byte transaction and a twelfth of a 4 KiB one
/// (docs/benchmarks.md, "Hot path"). The set lives on the heap, so its size costs no
/// move; `find` compares all of them at once, so more in place costs a hit no more.
const INLINE: usize = 32;

/// Up to this many stripes, `find` scans the inline ones one by one; up to [`INLINE`] it
/// compares them all at once.
const SCAN: usize = 8;

// `find` gathers its comparisons of the inline stripes in a `u32`.
const _: () = assert!(SCAN < INLINE && INLINE <= 32);

/// Hints of [`Held::find`]: with 32 stripes held at random, a stripe not held finds a
/// zero hint about 78% of the time (and scans otherwise); 128 bytes, cleared at once
/// (eight vector stores) as the set is released. 64 hints cost 3 instructions less at
/// 8 B but 284 more at SPS S = 16 and 184 more at 4 KiB; 256 cost 28 more at 8 B (a
/// `memset` call) for 140 less at S = 16 (callgrind; docs/benchmarks.md, "Hot path").
const HINTS: usize = 128;

/// [`Held`]'s hints (see `Held::hint`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hints([u8; HINTS]);

impl Default for Hints {
    fn default() -> Self {
        Hints([0; HINTS])
    }
}

/// The first index's slots: room for a 4 KiB range (64 stripes) without regrowing.
const FIRST_SLOTS: usize = 256;

/// The largest index whose buffers a thread keeps (16 KiB of slots).
const SPARE_SLOTS: usize = 4096;

thread_local! {
    /// A large set's buffers (`more`, `slots`) kept when it is released, for this
    /// thread's next large set: a transaction that touches many lines allocates nothing either.
    static SPARE: Cell<Option<(Vec<u32>, Vec<u32>)>> = const { Cell::new(None) };
    /// A released update's set, kept for this thread's next update (see [`Held::boxed`]).
    static SPARE_SET: Cell<Option<Box<Held>>> = const { Cell::new(None) };
}

/// Slot of stripe `s` to probe first in a table of `mask + 1` slots.
#[inline]
fn home(s: u32, mask: usize) -> usize {
    ((u64::from(s).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 32) as usize) & mask
}

impl Held {
    fn entries(&self) -> impl Iterator<Item = u32> + '_ {
        self.first[..self.len.min(INLINE)]
            .iter()
            .chain(&self.more)
            .copied()
    }

    // Always inlined, as `set` below.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn get(&self, i: usize) -> u32 {
        if i < INLINE {
            self.first[i]
        } else {
            self.more[i - INLINE]
        }
    }

    // Always inlined: on every lock's path (out of line, `set` cost about 15
    // instructions a call; callgrind, docs/benchmarks.md "Hot path").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn set(&mut self, i: usize, e: u32) {
        if i < INLINE {
            self.first[i] = e;
        } else {
            self.more[i - INLINE] = e;
        }
    }

    // Always inlined: see `acquire`.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn find(&self, s: u32) -> Option<usize> {
        let h = self.hint.0[s as usize % HINTS];
        if h == 0 {
            return None;
        }
        if self.len <= INLINE {
            let p = usize::from(h - 1);
            if p < self.len && self.first[p] & !EXCLUSIVE == s {
                return Some(p);
            }
            return self.scan(s);
        }
        let mask = self.slots.len() - 1;
        let mut h = home(s, mask);
        loop {
            match self.slots[h] {
                0 => return None,
                k if self.get(k as usize - 1) & !EXCLUSIVE == s => return Some(k as usize - 1),
                _ => h = (h + 1) & mask,
            }
        }
    }

    /// [`Held::find`] in a set no longer than [`INLINE`] whose hint names another stripe.
    // Always inlined: see `acquire`.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn scan(&self, s: u32) -> Option<usize> {
        if self.len <= SCAN {
            return self.first[..self.len]
                .iter()
                .position(|&e| e & !EXCLUSIVE == s);
        }
        // Every slot compared, without a branch (so the compiler compares them four at a
        // time); a match beyond `len` is a stale entry of a released set.
        let mut found = 0u32;
        for (i, &e) in self.first.iter().enumerate() {
            found |= u32::from(e & !EXCLUSIVE == s) << i;
        }
        found &= ((1u64 << self.len) - 1) as u32;
        (found != 0).then(|| found.trailing_zeros() as usize)
    }

    /// Files position `i` (whose stripe is not filed yet) in the index.
    #[inline]
    fn file(&mut self, i: usize) {
        let s = self.get(i) & !EXCLUSIVE;
        let mask = self.slots.len() - 1;
        let mut h = home(s, mask);
        while self.slots[h] != 0 {
            h = (h + 1) & mask;
        }
        self.slots[h] = i as u32 + 1;
    }

    /// Rebuilds the index with `n` slots (a power of two).
    #[cold]
    fn reindex(&mut self, n: usize) {
        self.slots.clear();
        self.slots.resize(n, 0);
        for i in 0..self.len {
            self.file(i);
        }
    }

    // Always inlined: it is on every lock's path, and out of line it cost 10-30
    // instructions a call (callgrind; docs/benchmarks.md, "Blocks").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn push(&mut self, e: u32) {
        if self.len < INLINE {
            self.first[self.len] = e;
            self.len += 1;
            // At most INLINE (32): fits.
            self.hint.0[(e & !EXCLUSIVE) as usize % HINTS] = self.len as u8;
            return;
        }
        if self.len == INLINE && self.more.capacity() == 0 {
            if let Some((more, slots)) = SPARE.try_with(Cell::take).ok().flatten() {
                (self.more, self.slots) = (more, slots);
            }
        }
        self.more.push(e);
        self.len += 1;
        // Beyond the inline ones, a hint only says "held, maybe": the index tells.
        self.hint.0[(e & !EXCLUSIVE) as usize % HINTS] = u8::MAX;
        if self.len == INLINE + 1 {
            self.reindex(FIRST_SLOTS);
        } else if 2 * self.len > self.slots.len() {
            self.reindex(2 * self.slots.len());
        } else {
            self.file(self.len - 1);
        }
    }

    /// Takes `[offset, offset + len)` shared or exclusively, waiting at most `wait` for
    /// each stripe held incompatibly by others. On `false` some stripes may have been
    /// taken: they stay held until [`Held::release_all`].
    // Always inlined, with `find`: every `get` and `put` passes here, and inlined with the
    // length known it cost about 20 instructions a call less (callgrind; docs/benchmarks.md,
    // "Hot path"). Anything but the one-line request calls `acquire_slow`.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn acquire(
        &mut self,
        table: &LockTable,
        offset: u64,
        len: u64,
        exclusive: bool,
        wait: Duration,
    ) -> bool {
        // The common request, inline: one line (a word read or written), the stripe held
        // already in a mode that serves, covered by a block this set holds, or free to
        // take at once with its block free (a read guard's is listed), or an update's
        // to upgrade at once. Anything else (several lines, a wait, a block held by
        // another) takes the general path.
        if len != 0 && offset / LINE == (offset + len - 1) / LINE {
            let s = ((offset / LINE) & table.mask) as u32;
            match self.find(s) {
                Some(i) if !exclusive || self.get(i) & EXCLUSIVE != 0 => return true,
                Some(i) => {
                    if self.guard.is_none() && table.try_upgrade(s, this_thread()) {
                        if table.block_free(s) || self.block_lets_in(table, s, true) {
                            self.set(i, s | EXCLUSIVE);
                            return true;
                        }
                        table.downgrade(s);
                    }
                }
                None => {
                    if self.covered(table, s, exclusive) {
                        return true;
                    }
                    let taken = match (exclusive, self.guard) {
                        (false, _) => table.try_shared(s),
                        (true, None) => table.try_exclusive(s, this_thread()),
                        (true, Some(_)) => false,
                    };
                    if taken {
                        if !table.block_free(s) && !self.block_lets_in(table, s, exclusive) {
                            table.release(s, exclusive);
                            return self.acquire_slow(table, offset, len, exclusive, wait);
                        }
                        self.push(if exclusive { s | EXCLUSIVE } else { s });
                        if let Some(id) = self.guard {
                            // A read guard lists its new stripe for this thread.
                            let first = !self.listed;
                            self.listed = true;
                            guard_list(id, std::iter::once(s), first);
                        }
                        return true;
                    }
                }
            }
        }
        self.acquire_slow(table, offset, len, exclusive, wait)
    }

    /// This set's hold of stripe `s`: `Some(true)` exclusive, `Some(false)` shared.
    #[inline]
    fn mode(&self, s: u32) -> Option<bool> {
        self.find(s).map(|i| self.get(i) & EXCLUSIVE != 0)
    }

    /// Whether line stripe `s` is covered for `exclusive` by a block this set holds.
    // Always inlined: it is on every lock's path, and out of line it cost 10-30
    // instructions a call (callgrind; docs/benchmarks.md, "Blocks").
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn covered(&self, table: &LockTable, s: u32, exclusive: bool) -> bool {
        self.blocks != 0 && self.covered_by_block(table, s, exclusive)
    }

    /// [`Held::covered`] once this set holds a block.
    #[inline(never)]
    fn covered_by_block(&self, table: &LockTable, s: u32, exclusive: bool) -> bool {
        table
            .block_of(s)
            .and_then(|b| self.mode(b))
            .is_some_and(|x| x || !exclusive)
    }

    /// Whether the block of line stripe `s`, which this set has just taken (or
    /// upgraded), lets the line in: nobody else holds the block in a mode that
    /// conflicts. SeqCst: read after the line's word was written (see the module
    /// documentation). Out of line: [`LockTable::block_free`] answers the common case.
    #[cold]
    #[inline(never)]
    fn block_lets_in(&self, table: &LockTable, s: u32, exclusive: bool) -> bool {
        let Some(b) = table.block_of(s) else {
            return true;
        };
        let w = table.words[b as usize].load(Ordering::SeqCst);
        w == 0
            || compatible(
                w,
                if self.blocks == 0 { None } else { self.mode(b) },
                exclusive,
            )
    }

    /// [`Held::acquire`] of several lines, of a read guard's new stripe, or of a stripe
    /// that could not be taken at once.
    #[inline(never)]
    fn acquire_slow(
        &mut self,
        table: &LockTable,
        offset: u64,
        len: u64,
        exclusive: bool,
        wait: Duration,
    ) -> bool {
        if len == 0 {
            return true;
        }
        // Only exclusive words name their holder: a shared request needs no number.
        let me = if exclusive { this_thread() } else { 0 };
        let before = self.len;
        let taken = self.take(table, offset, len, exclusive, wait, me);
        // A read guard lists what it took for this thread, in one pass (also what it
        // took before failing: `release_all` unlists everything it holds).
        if let Some(id) = self.guard.filter(|_| self.len > before) {
            let first = !self.listed;
            self.listed = true;
            guard_list(
                id,
                (before..self.len).map(|i| self.get(i) & !EXCLUSIVE),
                first,
            );
        }
        taken
    }

    /// [`Held::acquire`] without the read guard's list.
    #[inline]
    fn take(
        &mut self,
        table: &LockTable,
        offset: u64,
        len: u64,
        exclusive: bool,
        wait: Duration,
        me: u32,
    ) -> bool {
        let [blocks, heads, tails] = table.plan(offset, len);
        for b in blocks {
            let taken = self.take_block(table, table.block_stripe(b), exclusive, me, wait);
            if taken != Wait::Taken {
                self.mine = taken == Wait::Mine;
                return false;
            }
        }
        for l in heads {
            if !self.take_end(table, table.line_stripe(l), exclusive, me, wait) {
                return false;
            }
        }
        for l in tails {
            if !self.take_end(table, table.line_stripe(l), exclusive, me, wait) {
                return false;
            }
        }
        true
    }

    /// A line at a range's end for [`Held::take`]: the common line inline (not held,
    /// not covered, free, its block free), any other by [`Held::take_line`].
    // Always inlined: one copy per loop of `take`, without a call per line.
    #[allow(clippy::inline_always)]
    #[inline(always)]
    fn take_end(
        &mut self,
        table: &LockTable,
        s: u32,
        exclusive: bool,
        me: u32,
        wait: Duration,
    ) -> bool {
        if self.find(s).is_none()
            && !self.covered(table, s, exclusive)
            && table.try_take(s, exclusive, me)
        {
            if table.block_free(s) {
                self.push(if exclusive { s | EXCLUSIVE } else { s });
                return true;
            }
            table.release(s, exclusive);
        }
        let taken = self.take_line(table, s, exclusive, me, wait);
        self.mine = taken == Wait::Mine;
        taken == Wait::Taken
    }

    /// Takes line stripe `s` for `exclusive` (or finds it held, or covered by a block
    /// of this set), waiting for it, and for its block, if need be.
    #[inline(never)]
    fn take_line(
        &mut self,
        table: &LockTable,
        s: u32,
        exclusive: bool,
        me: u32,
        wait: Duration,
    ) -> Wait {
        let mut deadline: Option<Instant> = None;
        loop {
            let left = match deadline {
                None => wait,
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            let held = self.find(s);
            match held {
                Some(i) if !exclusive || self.get(i) & EXCLUSIVE != 0 => return Wait::Taken,
                Some(_) => {
                    let taken = self.wait_upgrade(table, s, me, left);
                    if taken != Wait::Taken {
                        return taken;
                    }
                }
                None => {
                    if self.covered(table, s, exclusive) {
                        return Wait::Taken;
                    }
                    let taken = self.wait_stripe(table, s, exclusive, me, left);
                    if taken != Wait::Taken {
                        return taken;
                    }
                }
            }
            if table.block_free(s) || self.block_lets_in(table, s, exclusive) {
                match held {
                    Some(i) => self.set(i, s | EXCLUSIVE),
                    None => self.push(if exclusive { s | EXCLUSIVE } else { s }),
                }
                return Wait::Taken;
            }
            // Another holder has the line's block: give the line back and wait until
            // the block lets it in, then take the line again.
            match held {
                Some(_) => table.downgrade(s),
                None => table.release(s, exclusive),
            }
            let b = table
                .block_of(s)
                .expect("only a block keeps a taken line out");
            let own = u32::from(self.mode(b) == Some(false));
            if table.held_by(b, own) {
                return Wait::Mine;
            }
            let d = *deadline.get_or_insert_with(|| crate::options::deadline_after(wait));
            let left = d.saturating_duration_since(Instant::now());
            let free = self.wait_registered(
                table,
                b,
                None,
                || {
                    let w = table.words[b as usize].load(Ordering::SeqCst);
                    compatible(w, (own == 1).then_some(false), exclusive)
                },
                left,
            );
            if free != Wait::Taken {
                return free;
            }
        }
    }

    /// Takes block stripe `b` for `exclusive` (or finds it held so), waiting for it,
    /// and then for every line of it that another holder has in a conflicting mode.
    #[inline(never)]
    fn take_block(
        &mut self,
        table: &LockTable,
        b: u32,
        exclusive: bool,
        me: u32,
        wait: Duration,
    ) -> Wait {
        let held = self.find(b);
        if !self.block_user {
            // Counted before the first block word is written (see `block_free`).
            table.block_users.fetch_add(1, Ordering::SeqCst);
            self.block_user = true;
        }
        let taken = match held {
            Some(i) if !exclusive || self.get(i) & EXCLUSIVE != 0 => return Wait::Taken,
            Some(_) => self.wait_upgrade(table, b, me, wait),
            None => self.wait_stripe(table, b, exclusive, me, wait),
        };
        if taken != Wait::Taken {
            return taken;
        }
        // SeqCst loads after the block's word was written (see the module
        // documentation): a line taken by another holder is seen here, or that holder
        // sees the block.
        let mut deadline: Option<Instant> = None;
        for s in table.lines_of(b) {
            // A free line lets the block in whatever this set holds of it: no search of
            // the set for it (the common case: about 20 instructions a line, 16 lines a
            // block). The load is the same SeqCst load `lets_in` makes.
            if table.words[s as usize].load(Ordering::SeqCst) == 0 {
                continue;
            }
            let mine = self.mode(s);
            let lets_in = || {
                #[cfg(feature = "mutants")]
                if crate::mutant::is("block-ignores-lines") {
                    return true; // Mutant: a block is taken over another's lines.
                }
                compatible(
                    table.words[s as usize].load(Ordering::SeqCst),
                    mine,
                    exclusive,
                )
            };
            if lets_in() {
                continue;
            }
            let own = u32::from(mine == Some(false));
            let waited = if table.held_by(s, own) {
                Wait::Mine
            } else {
                let d = *deadline.get_or_insert_with(|| crate::options::deadline_after(wait));
                let left = d.saturating_duration_since(Instant::now());
                self.wait_registered(table, s, Some(b), lets_in, left)
            };
            if waited != Wait::Taken {
                match held {
                    Some(_) => table.downgrade(b),
                    None => table.release(b, exclusive),
                }
                return waited;
            }
        }
        match held {
            Some(i) => self.set(i, b | EXCLUSIVE),
            None => {
                self.push(if exclusive { b | EXCLUSIVE } else { b });
                self.blocks += 1;
            }
        }
        Wait::Taken
    }

    /// Takes stripe `s` (not in this set), waiting for it if need be: gives up at once
    /// if this thread holds it (see the module documentation), early on a deadlock (see
    /// [`LockTable::wait_registered`]), else after `wait`.
    #[inline]
    fn wait_stripe(
        &self,
        table: &LockTable,
        s: u32,
        exclusive: bool,
        me: u32,
        wait: Duration,
    ) -> Wait {
        if table.try_take(s, exclusive, me) {
            Wait::Taken
        } else {
            self.wait_stripe_slow(table, s, exclusive, me, wait)
        }
    }

    /// Upgrades stripe `s`, which this set holds shared, waiting for its other readers
    /// if need be: gives up at once if they are this thread's own read guards, early on
    /// a deadlock (see [`LockTable::wait_registered`]), else after `wait`.
    #[cold]
    #[inline(never)]
    fn wait_upgrade(&self, table: &LockTable, s: u32, me: u32, wait: Duration) -> Wait {
        if table.try_upgrade(s, me) {
            return Wait::Taken;
        }
        if table.held_by(s, 1) {
            return Wait::Mine;
        }
        #[cfg(feature = "mutants")]
        if crate::mutant::is("upgrade-never-waits") {
            return Wait::Busy; // Mutant: an upgrade gives up at once, as it used to.
        }
        self.wait_registered(table, s, None, || table.try_upgrade(s, me), wait)
    }

    /// [`LockTable::wait_registered`] for this set (and `also`, a block it has taken
    /// but not yet filed), as a [`Wait`].
    fn wait_registered(
        &self,
        table: &LockTable,
        s: u32,
        also: Option<u32>,
        take: impl FnMut() -> bool,
        wait: Duration,
    ) -> Wait {
        if table.wait_registered(s, |t| also == Some(t) || self.find(t).is_some(), take, wait) {
            Wait::Taken
        } else {
            Wait::Busy
        }
    }

    /// [`Held::wait_stripe`] once the stripe could not be taken at once.
    #[cold]
    #[inline(never)]
    fn wait_stripe_slow(
        &self,
        table: &LockTable,
        s: u32,
        exclusive: bool,
        me: u32,
        wait: Duration,
    ) -> Wait {
        if table.held_by(s, 0) {
            return Wait::Mine;
        }
        self.wait_registered(table, s, None, || table.try_take(s, exclusive, me), wait)
    }

    /// Whether this set may hold the line of `offset` exclusively. `false` is sure: the
    /// line's stripe is not in the set, or only shared, and the set holds no block
    /// stripe (which could cover the line).
    // Always inlined: on a vista write's path (see `Update::may_hold_exclusively`).
    #[allow(clippy::inline_always)]
    #[inline(always)]
    pub(crate) fn may_hold_line_exclusively(&self, table: &LockTable, offset: u64) -> bool {
        if self.blocks != 0 {
            return true;
        }
        let s = table.line_stripe(offset / LINE);
        matches!(self.find(s), Some(i) if self.get(i) & EXCLUSIVE != 0)
    }

    /// Whether the last failed [`Held::acquire`] gave up because this thread itself
    /// holds the range (see the module documentation).
    pub(crate) fn refused_by_this_thread(&self) -> bool {
        self.mine
    }

    /// An empty set for an update, on the heap: the update carries one pointer instead
    /// of the set's 150 or so bytes, so that it, and a vista transaction that holds it, stay
    /// cheap to build and to move (docs/benchmarks.md, "Hot path"). The thread's spare
    /// (the set its last update released, see [`Held::recycle`]) if it has one, so that
    /// an update allocates nothing.
    /// `read_guard_of`: the table, for a read guard's set (see [`Held::for_read_guard`]).
    #[inline]
    pub(crate) fn boxed(read_guard_of: Option<&LockTable>) -> Box<Held> {
        let guard = read_guard_of.map(|t| t.id);
        match SPARE_SET.try_with(Cell::take).ok().flatten() {
            Some(mut set) => {
                set.guard = guard;
                set.mine = false;
                set
            }
            None => Box::new(Held {
                guard,
                ..Held::default()
            }),
        }
    }

    /// Keeps `set` as this thread's spare for its next update, if it is released (holds
    /// nothing: a set kept locked for good is dropped with its stripes still taken).
    #[inline]
    pub(crate) fn recycle(set: Box<Held>) {
        if set.len == 0 && set.blocks == 0 && !set.listed && !set.block_user {
            // Not kept while the thread's locals are being destroyed.
            let _ = SPARE_SET.try_with(|s| s.set(Some(set)));
        }
    }

    /// A read guard's holder: its shared stripes are listed for this thread, so that
    /// this thread's own writers can tell they would wait for it.
    pub(crate) fn for_read_guard(table: &LockTable) -> Held {
        Held {
            guard: Some(table.id),
            ..Held::default()
        }
    }

    /// Releases every stripe (the end of the holder's growing phase and its life).
    // Inlined into the update's end for a small set, not a read guard's; the rest out of
    // line (docs/benchmarks.md, "Hot path").
    #[inline]
    pub(crate) fn release_all(&mut self, table: &LockTable) {
        if self.len > INLINE || self.listed || self.block_user {
            return self.release_all_slow(table);
        }
        for &e in &self.first[..self.len] {
            table.release(e & !EXCLUSIVE, e & EXCLUSIVE != 0);
        }
        self.len = 0;
        self.hint = Hints::default();
        self.blocks = 0;
    }

    /// [`Held::release_all`] of a large set, a listed read guard's, or one counted in
    /// the table's `block_users`.
    #[inline(never)]
    fn release_all_slow(&mut self, table: &LockTable) {
        if let Some(id) = self.guard.filter(|_| self.listed) {
            guard_unlist(id, self.entries().map(|e| e & !EXCLUSIVE));
            self.listed = false;
        }
        if self.len <= INLINE {
            for &e in &self.first[..self.len] {
                table.release(e & !EXCLUSIVE, e & EXCLUSIVE != 0);
            }
            self.len = 0;
            self.hint = Hints::default();
            self.blocks = 0;
            self.leave_block_users(table);
            return;
        }
        for e in self.entries() {
            table.release(e & !EXCLUSIVE, e & EXCLUSIVE != 0);
        }
        self.len = 0;
        self.hint = Hints::default();
        self.blocks = 0;
        self.leave_block_users(table);
        // Kept for this thread's next large set (see `SPARE`), unless very large.
        let (mut more, mut slots) = (
            std::mem::take(&mut self.more),
            std::mem::take(&mut self.slots),
        );
        if slots.capacity() <= SPARE_SLOTS {
            more.clear();
            slots.clear();
            // Not kept while the thread's locals are being destroyed.
            let _ = SPARE.try_with(|s| s.set(Some((more, slots))));
        }
    }

    /// Uncounts this set from the table's `block_users`, after its block words were
    /// released.
    #[inline]
    fn leave_block_users(&mut self, table: &LockTable) {
        if self.block_user {
            table.block_users.fetch_sub(1, Ordering::SeqCst);
            self.block_user = false;
        }
    }

    /// How many stripes are held.
    #[cfg(all(test, not(feature = "shuttle")))]
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// Lists new shared holds of a read guard's set on `stripes` of table `id` (stripes the
/// set did not hold before); `first` when the set held none before.
fn guard_list(id: u64, stripes: impl Iterator<Item = u32>, first: bool) {
    GUARDED.with(|g| {
        let g = &mut *g.borrow_mut();
        if first {
            g.sets += 1;
        }
        if g.sets == 1 {
            // Only this set: its stripes are not listed yet.
            g.list.extend(stripes.map(|s| (id, s, 1)));
            return;
        }
        for s in stripes {
            match g.list.iter().rposition(|e| e.0 == id && e.1 == s) {
                Some(i) => g.list[i].2 += 1,
                None => g.list.push((id, s, 1)),
            }
        }
    });
}

/// Unlists the shared holds of a read guard's set on `stripes` of table `id` (all the
/// stripes it holds), as it releases them.
fn guard_unlist(id: u64, stripes: impl Iterator<Item = u32>) {
    GUARDED.with(|g| {
        let g = &mut *g.borrow_mut();
        g.sets -= 1;
        if g.sets == 0 {
            g.list.clear(); // It was the only set: every entry is its.
            return;
        }
        for s in stripes {
            if let Some(i) = g.list.iter().rposition(|e| e.0 == id && e.1 == s) {
                g.list[i].2 -= 1;
                if g.list[i].2 == 0 {
                    g.list.swap_remove(i);
                }
            }
        }
    });
}

/// How a wait for a stripe ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Taken,
    /// Given up after the wait.
    Busy,
    /// Given up at once: this thread holds it.
    Mine,
}

/// Tries `f` until it succeeds (true), `deadlocked` says yes or `wait` has passed
/// (false).
#[inline(never)]
fn wait_slow(mut f: impl FnMut() -> bool, deadlocked: impl Fn() -> bool, wait: Duration) -> bool {
    let backoff = Backoff::new();
    while !backoff.is_completed() {
        if deadlocked() {
            return false;
        }
        backoff.snooze();
        if f() {
            return true;
        }
    }
    let deadline = crate::options::deadline_after(wait);
    loop {
        if deadlocked() {
            return false;
        }
        #[cfg(not(feature = "shuttle"))]
        std::thread::yield_now();
        #[cfg(feature = "shuttle")]
        shuttle::thread::yield_now();
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// Model-checked tests: shuttle runs the threads under a randomized scheduler (PCT)
/// that interleaves them at every lock-word access. See the crate docs for why shuttle.
#[cfg(all(test, feature = "shuttle"))]
mod shuttle_tests {
    use super::*;
    use shuttle::sync::atomic::AtomicUsize;
    use shuttle::sync::Arc;

    /// Per line: readers and writers inside, checked by every holder.
    struct Witness {
        readers: Vec<AtomicUsize>,
        writers: Vec<AtomicUsize>,
    }

    fn holders_exclude_each_other() {
        const LINES: u64 = 6;
        // Fewer stripes than lines: stripes are shared, as in a big cache.
        let table = Arc::new(LockTable::new(4 * LINE));
        let w = Arc::new(Witness {
            readers: (0..LINES).map(|_| AtomicUsize::new(0)).collect(),
            writers: (0..LINES).map(|_| AtomicUsize::new(0)).collect(),
        });
        let threads: Vec<_> = (0..3u64)
            .map(|t| {
                let (table, w) = (Arc::clone(&table), Arc::clone(&w));
                shuttle::thread::spawn(move || {
                    for round in 0..3u64 {
                        // A read of one range, then a write of another (an upgrade when
                        // they share a stripe).
                        let r = (t + round) % LINES;
                        let x = (t * 2 + round + 1) % LINES;
                        let mut held = Held::default();
                        loop {
                            let ok = held.acquire(&table, r * LINE, 8, false, Duration::ZERO)
                                && held.acquire(&table, x * LINE, LINE + 8, true, Duration::ZERO);
                            if ok {
                                break;
                            }
                            held.release_all(&table);
                            shuttle::thread::yield_now();
                        }
                        let xs = [x, (x + 1) % LINES];
                        for &l in &xs {
                            w.writers[l as usize].fetch_add(1, Ordering::SeqCst);
                        }
                        if !xs.contains(&r) {
                            w.readers[r as usize].fetch_add(1, Ordering::SeqCst);
                        }
                        for &l in &xs {
                            assert_eq!(w.writers[l as usize].load(Ordering::SeqCst), 1);
                            assert_eq!(w.readers[l as usize].load(Ordering::SeqCst), 0);
                        }
                        assert_eq!(
                            w.writers[r as usize].load(Ordering::SeqCst),
                            usize::from(xs.contains(&r))
                        );
                        for &l in &xs {
                            w.writers[l as usize].fetch_sub(1, Ordering::SeqCst);
                        }
                        if !xs.contains(&r) {
                            w.readers[r as usize].fetch_sub(1, Ordering::SeqCst);
                        }
                        held.release_all(&table);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(table.words.iter().all(|w| w.load(Ordering::SeqCst) == 0));
    }

    /// Unaligned ranges that cross lines and overlap each other's ends: every byte of a
    /// range must be covered by the stripes its holder takes. A per-byte witness counts
    /// the holders inside; no byte ever has a writer beside anyone else.
    fn unaligned_ranges_cover_every_byte() {
        const BYTES: usize = 4 * LINE as usize;
        // (offset, len, exclusive): odd offsets, lengths that end inside a line.
        const RANGES: [(u64, u64, bool); 3] = [(13, 60, true), (70, 83, true), (150, 9, false)];
        let table = Arc::new(LockTable::new(BYTES as u64));
        let readers: Arc<Vec<AtomicUsize>> =
            Arc::new((0..BYTES).map(|_| AtomicUsize::new(0)).collect());
        let writers: Arc<Vec<AtomicUsize>> =
            Arc::new((0..BYTES).map(|_| AtomicUsize::new(0)).collect());
        let threads: Vec<_> = (0..3usize)
            .map(|t| {
                let (table, readers, writers) = (
                    Arc::clone(&table),
                    Arc::clone(&readers),
                    Arc::clone(&writers),
                );
                shuttle::thread::spawn(move || {
                    for round in 0..2 {
                        let (off, len, ex) = RANGES[(t + round) % RANGES.len()];
                        let mut held = Held::default();
                        while !held.acquire(&table, off, len, ex, Duration::ZERO) {
                            held.release_all(&table);
                            shuttle::thread::yield_now();
                        }
                        let bytes = off as usize..(off + len) as usize;
                        let mine = if ex { &writers } else { &readers };
                        for b in bytes.clone() {
                            mine[b].fetch_add(1, Ordering::SeqCst);
                        }
                        shuttle::thread::yield_now();
                        for b in bytes.clone() {
                            let (w, r) = (
                                writers[b].load(Ordering::SeqCst),
                                readers[b].load(Ordering::SeqCst),
                            );
                            if ex {
                                assert_eq!((w, r), (1, 0), "byte {b} shared by a writer");
                            } else {
                                assert_eq!(w, 0, "byte {b} written while read");
                            }
                        }
                        for b in bytes {
                            mine[b].fetch_sub(1, Ordering::SeqCst);
                        }
                        held.release_all(&table);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(table.words.iter().all(|w| w.load(Ordering::SeqCst) == 0));
    }

    /// Blocks and lines of one table: holders take whole blocks (shared and
    /// exclusive, with upgrades), single lines inside blocks others hold, and ranges
    /// across blocks, as scripts of ranges taken in turn. A per-line witness counts the
    /// holders inside; no line ever has a writer beside anyone else.
    fn blocks_and_lines_exclude_each_other() {
        const LINES: usize = 32; // two blocks of 16 lines
        let block = |k: u64, ex: bool| (k * BLOCK_LINES * LINE, BLOCK_LINES * LINE, ex);
        let line = |l: u64, ex: bool| (l * LINE + 3, 8, ex);
        let scripts: [Vec<(u64, u64, bool)>; 3] = [
            // A block written whole; a block read, then a line of it written.
            vec![block(0, true), block(1, false), line(20, true)],
            // A line inside the first block; then lines across both blocks.
            vec![line(5, true), (10 * LINE, 12 * LINE, true)],
            // Everything read; then the first block written (an upgrade).
            vec![(0, 2 * BLOCK_LINES * LINE, false), block(0, true)],
        ];
        let table = Arc::new(LockTable::new(LINES as u64 * LINE));
        assert_eq!(table.blocks, 2);
        let readers: Arc<Vec<AtomicUsize>> =
            Arc::new((0..LINES).map(|_| AtomicUsize::new(0)).collect());
        let writers: Arc<Vec<AtomicUsize>> =
            Arc::new((0..LINES).map(|_| AtomicUsize::new(0)).collect());
        let threads: Vec<_> = scripts
            .into_iter()
            .map(|script| {
                let (table, readers, writers) = (
                    Arc::clone(&table),
                    Arc::clone(&readers),
                    Arc::clone(&writers),
                );
                shuttle::thread::spawn(move || {
                    for round in 0..2 {
                        // Round 0 takes the whole script, round 1 its second half.
                        let part = &script[round * script.len() / 2..];
                        let mut held = Held::default();
                        while !part.iter().all(|&(off, len, ex)| {
                            held.acquire(&table, off, len, ex, Duration::ZERO)
                        }) {
                            held.release_all(&table);
                            shuttle::thread::yield_now();
                        }
                        // The strongest mode held on each line.
                        let mut mode = [None::<bool>; LINES];
                        for &(off, len, ex) in part {
                            for l in off / LINE..=(off + len - 1) / LINE {
                                let m = &mut mode[l as usize];
                                *m = Some(m.unwrap_or(false) | ex);
                            }
                        }
                        for (l, m) in mode.iter().enumerate() {
                            match m {
                                Some(true) => writers[l].fetch_add(1, Ordering::SeqCst),
                                Some(false) => readers[l].fetch_add(1, Ordering::SeqCst),
                                None => 0,
                            };
                        }
                        shuttle::thread::yield_now();
                        for (l, m) in mode.iter().enumerate() {
                            let (w, r) = (
                                writers[l].load(Ordering::SeqCst),
                                readers[l].load(Ordering::SeqCst),
                            );
                            match m {
                                Some(true) => {
                                    assert_eq!((w, r), (1, 0), "line {l} shared by a writer")
                                }
                                Some(false) => assert_eq!(w, 0, "line {l} written while read"),
                                None => {}
                            }
                        }
                        for (l, m) in mode.iter().enumerate() {
                            match m {
                                Some(true) => writers[l].fetch_sub(1, Ordering::SeqCst),
                                Some(false) => readers[l].fetch_sub(1, Ordering::SeqCst),
                                None => 0,
                            };
                        }
                        held.release_all(&table);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(table.words.iter().all(|w| w.load(Ordering::SeqCst) == 0));
    }

    #[test]
    fn blocks_and_lines_under_random_schedules() {
        shuttle::check_random(blocks_and_lines_exclude_each_other, 2000);
    }

    #[test]
    fn blocks_and_lines_under_pct_schedules() {
        shuttle::check_pct(blocks_and_lines_exclude_each_other, 2000, 3);
    }

    #[test]
    fn unaligned_ranges_under_random_schedules() {
        shuttle::check_random(unaligned_ranges_cover_every_byte, 1000);
    }

    #[test]
    fn unaligned_ranges_under_pct_schedules() {
        shuttle::check_pct(unaligned_ranges_cover_every_byte, 1000, 3);
    }

    #[test]
    fn lock_table_excludes_under_random_schedules() {
        shuttle::check_random(holders_exclude_each_other, 1000);
    }

    #[test]
    fn lock_table_excludes_under_pct_schedules() {
        shuttle::check_pct(holders_exclude_each_other, 1000, 3);
    }
}

#[cfg(all(test, not(feature = "shuttle")))]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::ZERO;

    #[test]
    fn every_line_of_an_unaligned_range_is_covered() {
        // Tables smaller and larger than the ranges, with and without blocks: every line
        // a range touches maps to a line stripe or a block stripe the range takes (a
        // wrap-around table covers it through sharing), each taken once, and a block is
        // taken only where the range covers all of it.
        for lines in [1u64, 3, 4, 32, 64, 1000] {
            let t = LockTable::new(lines * LINE);
            let base = (t.mask + 1) as u32;
            for offset in (0..3000).step_by(37) {
                for len in [1u64, 2, 63, 64, 65, 127, 129, 500, 1024, 1100, 2048, 5000] {
                    let [blocks, heads, tails] = t.plan(offset, len);
                    let units: Vec<u32> = blocks
                        .map(|b| t.block_stripe(b))
                        .chain(heads.chain(tails).map(|l| t.line_stripe(l)))
                        .collect();
                    let taken: std::collections::BTreeSet<u32> = units.iter().copied().collect();
                    assert_eq!(
                        taken.len(),
                        units.len(),
                        "{lines}: {offset}+{len}: {units:?}"
                    );
                    let (first, last) = (offset / LINE, (offset + len - 1) / LINE);
                    for line in first..=last {
                        let s = (line & t.mask) as u32;
                        let block = t.block_of(s).filter(|b| taken.contains(b));
                        assert!(
                            taken.contains(&s) || block.is_some(),
                            "{lines} lines: {offset}+{len}: line {line}"
                        );
                    }
                    let touched: std::collections::BTreeSet<u32> =
                        (first..=last).map(|l| (l & t.mask) as u32).collect();
                    for &b in taken.iter().filter(|&&u| u >= base) {
                        assert!(t.blocks != 0);
                        // A block stands only for lines the range needs.
                        assert!(
                            t.lines_of(b).all(|s| touched.contains(&s)),
                            "{lines}: {offset}+{len}: block {b}"
                        );
                    }
                }
            }
        }
    }

    /// Whether this thread keeps a spare set (without taking it).
    fn has_spare_set() -> bool {
        SPARE_SET.with(|s| {
            let spare = s.take();
            let has = spare.is_some();
            s.set(spare);
            has
        })
    }

    #[test]
    fn a_released_set_is_kept_for_the_next_update_and_a_held_one_never() {
        let t = LockTable::new(1 << 20);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                assert!(!has_spare_set());
                // A set that still holds a stripe (an update kept locked) is not kept:
                // its stripe stays taken, and the next update starts from an empty set.
                let mut kept_locked = Held::boxed(None);
                assert!(kept_locked.acquire(&t, 0, 8, true, NO_WAIT));
                Held::recycle(kept_locked);
                assert!(!has_spare_set());
                let mut other = Held::default();
                assert!(!other.acquire(&t, 0, 8, false, NO_WAIT), "still held");
                // A released set is kept, and handed out empty, with the guard asked for.
                let mut a = Held::boxed(Some(&t));
                assert!(a.acquire(&t, 4096, 8, false, NO_WAIT));
                a.release_all(&t);
                Held::recycle(a);
                assert!(has_spare_set());
                let b = Held::boxed(None);
                assert!(!has_spare_set());
                assert_eq!((b.len, b.blocks, b.guard), (0, 0, None));
                assert_eq!(b.hint, Hints::default());
                assert!(!b.listed && !b.block_user && !b.mine);
                Held::recycle(b);
                let c = Held::boxed(Some(&t));
                assert_eq!(c.guard, Some(t.id));
            });
        });
    }

    #[test]
    fn shared_holders_coexist_and_exclude_writers() {
        let t = LockTable::new(1 << 20);
        let (mut a, mut b, mut c) = (Held::default(), Held::default(), Held::default());
        assert!(a.acquire(&t, 0, 100, false, NO_WAIT));
        assert!(b.acquire(&t, 64, 8, false, NO_WAIT));
        assert!(!c.acquire(&t, 70, 1, true, NO_WAIT));
        // An upgrade with another reader present fails (when it may not wait).
        assert!(!a.acquire(&t, 64, 1, true, NO_WAIT));
        b.release_all(&t);
        assert!(a.acquire(&t, 64, 1, true, NO_WAIT), "sole reader upgrades");
        assert!(!c.acquire(&t, 64, 1, false, NO_WAIT));
        a.release_all(&t);
        c.release_all(&t);
        assert!(c.acquire(&t, 0, 128, true, NO_WAIT));
        c.release_all(&t);
        assert!(t.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn a_block_and_the_lines_inside_it_exclude_each_other() {
        let t = LockTable::new(64 * 1024); // 1024 line stripes, 64 blocks
        let block0 = (0, BLOCK_LINES * LINE); // lines 0..16, taken as one word
        let (mut a, mut b, mut c) = (Held::default(), Held::default(), Held::default());
        // A line written inside the block: the block is refused both ways.
        assert!(a.acquire(&t, 5 * LINE, 8, true, NO_WAIT));
        assert!(
            !b.acquire(&t, block0.0, block0.1, true, NO_WAIT),
            "block over a written line"
        );
        assert!(
            !b.acquire(&t, block0.0, block0.1, false, NO_WAIT),
            "block read over a written line"
        );
        assert_eq!(b.len(), 0, "a refused block is given back");
        a.release_all(&t);
        // The block written whole: its lines are refused, the next block's are not.
        assert!(b.acquire(&t, block0.0, block0.1, true, NO_WAIT));
        assert_eq!(b.len(), 1, "one word for 16 lines");
        assert!(
            !c.acquire(&t, 7 * LINE, 8, false, NO_WAIT),
            "line read in a written block"
        );
        assert!(
            !c.acquire(&t, 7 * LINE, 8, true, NO_WAIT),
            "line written in a written block"
        );
        assert!(
            c.acquire(&t, 16 * LINE, 8, true, NO_WAIT),
            "the next block's line"
        );
        assert!(
            b.acquire(&t, 9 * LINE, 8, true, NO_WAIT),
            "its own block's line"
        );
        assert_eq!(b.len(), 1, "covered: nothing more taken");
        b.release_all(&t);
        c.release_all(&t);
        // The block read whole: lines are read beside it, not written; its holder
        // writes one of its lines only while nobody else reads the block.
        assert!(b.acquire(&t, block0.0, block0.1, false, NO_WAIT));
        assert!(
            c.acquire(&t, 3 * LINE, 8, false, NO_WAIT),
            "line read beside a read block"
        );
        assert!(
            !c.acquire(&t, 4 * LINE, 8, true, NO_WAIT),
            "line written in a read block"
        );
        assert!(
            !a.acquire(&t, block0.0, block0.1, true, NO_WAIT),
            "block written over reads"
        );
        assert!(
            !b.acquire(&t, 3 * LINE, 8, true, NO_WAIT),
            "another holder reads line 3"
        );
        assert!(
            b.acquire(&t, 12 * LINE, 8, true, NO_WAIT),
            "the block's only other reader is c's line"
        );
        assert!(!c.acquire(&t, 12 * LINE, 8, false, NO_WAIT));
        b.release_all(&t);
        c.release_all(&t);
        a.release_all(&t);
        assert!(t.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        assert_eq!(
            t.block_users.load(Ordering::Relaxed),
            0,
            "every block user uncounted"
        );
    }

    #[test]
    fn a_block_or_a_line_this_thread_holds_elsewhere_is_refused_at_once() {
        // A read guard of this thread reads a whole block; an update of the same thread
        // that wants a line inside it would wait for the guard forever: it is refused at
        // once, as held by this thread. And the reverse: the update writes a line, the
        // guard wants the block around it.
        let t = LockTable::new(64 * 1024);
        let long = Duration::from_secs(60);
        let block0 = (0, BLOCK_LINES * LINE);
        // `holder` asks for `(off, len)` with the lock wait `long`: refused at once, as
        // this thread's.
        let refused_at_once = |holder: &mut Held, (off, len): (u64, u64), ex: bool, why: &str| {
            let started = Instant::now();
            assert!(!holder.acquire(&t, off, len, ex, long), "{why}");
            assert!(holder.refused_by_this_thread(), "{why}");
            assert!(
                started.elapsed() < long / 2,
                "{why}: refused at once, not waited out"
            );
        };
        let mut guard = Held::for_read_guard(&t);
        assert!(guard.acquire(&t, block0.0, block0.1, false, NO_WAIT));
        let mut update = Held::default();
        refused_at_once(
            &mut update,
            (5 * LINE, 8),
            true,
            "the guard's block is this thread's",
        );
        update.release_all(&t);
        guard.release_all(&t);
        assert!(update.acquire(&t, 5 * LINE, 8, true, NO_WAIT));
        let mut guard = Held::for_read_guard(&t);
        refused_at_once(
            &mut guard,
            block0,
            false,
            "the update's line is this thread's",
        );
        guard.release_all(&t);
        update.release_all(&t);
        assert!(t.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        assert_eq!(t.block_users.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_block_waits_for_a_line_inside_it_and_a_line_for_its_block() {
        let t = LockTable::new(64 * 1024);
        for line_first in [true, false] {
            let mut first = Held::default();
            let (off, len) = if line_first {
                (5 * LINE, 8)
            } else {
                (0, BLOCK_LINES * LINE)
            };
            assert!(first.acquire(&t, off, len, true, NO_WAIT));
            std::thread::scope(|s| {
                let w = s.spawn(|| {
                    let mut second = Held::default();
                    let (off, len) = if line_first {
                        (0, BLOCK_LINES * LINE)
                    } else {
                        (5 * LINE, 8)
                    };
                    let ok = second.acquire(&t, off, len, true, Duration::from_secs(60));
                    second.release_all(&t);
                    ok
                });
                std::thread::sleep(Duration::from_millis(5));
                first.release_all(&t);
                assert!(w.join().unwrap(), "line first: {line_first}");
            });
            assert!(t.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        }
    }

    #[test]
    fn a_holder_retakes_its_own_stripes_and_wide_ranges_take_each_stripe_once() {
        let t = LockTable::new(64 * 128); // 128 line stripes, 8 blocks
        let mut a = Held::default();
        assert!(a.acquire(&t, 0, 64 * 1000, true, NO_WAIT));
        assert_eq!(
            a.len(),
            8,
            "every block once; the lines at the end are in them"
        );
        assert!(a.acquire(&t, 5, 64 * 300, true, NO_WAIT));
        assert!(a.acquire(&t, 5, 10, false, NO_WAIT));
        assert!(
            a.acquire(&t, 64 * 77 + 3, 1, true, NO_WAIT),
            "a line of a held block"
        );
        assert_eq!(a.len(), 8);
        a.release_all(&t);
        assert!(t.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn large_sets_find_every_stripe_they_hold_and_no_other() {
        // Random stripes into sets of every size around the scan and index limits and
        // the index's growth, one set after another on this thread (so later sets reuse
        // the spare buffers): each set takes a stripe once, finds it as held (a retake
        // takes nothing, an upgrade keeps the count), and releases exactly what it took.
        // One set serves them all, so a smaller set follows a larger one whose stripes
        // are still in its inline slots beyond its length.
        let t = LockTable::new(64 << 16); // the most stripes
        let mut held = Held::default();
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for size in [
            1usize, 7, 8, 9, 16, 17, 24, 25, 31, 32, 33, 127, 128, 129, 300, 2100, 3000, 9, 16, 12,
            3, 32, 20,
        ] {
            let mut model = std::collections::BTreeMap::new();
            while model.len() < size {
                let line = next() % (1 << 16);
                let exclusive = next() % 2 == 0;
                assert!(held.acquire(&t, line * LINE, 1, exclusive, NO_WAIT));
                let e = model.entry(line).or_insert(false);
                *e |= exclusive;
                assert_eq!(held.len(), model.len(), "set of {size}");
            }
            for (&line, &exclusive) in &model {
                let word = t.words[line as usize].load(Ordering::Relaxed);
                assert_eq!(word & EXCLUSIVE != 0, exclusive, "stripe {line}");
                assert!(held.find(line as u32).is_some(), "stripe {line} held");
                // Retaking (shared, then exclusive) changes nothing but the mode.
                assert!(held.acquire(&t, line * LINE, 1, false, NO_WAIT));
                assert!(held.acquire(&t, line * LINE, 1, true, NO_WAIT));
                assert_eq!(held.len(), model.len());
            }
            let absent = (0..1u32 << 16).filter(|s| !model.contains_key(&u64::from(*s)));
            for s in absent.take(5000) {
                assert_eq!(held.find(s), None, "stripe {s} not held");
            }
            // Whatever the last set left in the slots beyond this one's length, with the
            // hints opened so that the search itself must tell (a zero hint would
            // otherwise hide most of them, and a wrong mask would go unseen): once with
            // every hint naming a live slot, which scans, and once with the stale
            // stripe's hint naming its own stale slot.
            let hint = held.hint.clone();
            for h in &mut held.hint.0 {
                *h = (*h).max(1);
            }
            let stale: Vec<(usize, u32)> = (held.len.min(INLINE)..INLINE)
                .map(|i| (i, held.first[i] & !EXCLUSIVE))
                .filter(|&(_, s)| !model.contains_key(&u64::from(s)))
                .collect();
            for &(_, s) in &stale {
                assert_eq!(held.find(s), None, "stale stripe {s} not held");
            }
            for &(i, s) in &stale {
                let h = s as usize % HINTS;
                let kept = held.hint.0[h];
                held.hint.0[h] = i as u8 + 1;
                assert_eq!(held.find(s), None, "stale stripe {s} hinted, not held");
                held.hint.0[h] = kept;
            }
            held.hint = hint;
            held.release_all(&t);
            assert!(t.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        }
    }

    /// The lock wait of the deadlock tests: long, so that a holder that waits it out
    /// cannot be taken for one that found the deadlock.
    const DEADLOCK_WAIT: Duration = Duration::from_secs(20);

    /// Two threads: each takes the line at `mine` (`exclusive` or shared), and when both
    /// have, wants the other's line exclusively or shared (`then`): a deadlock. Exactly
    /// one must get its line, and the other must give up long before the lock wait (when
    /// one waits it out instead, the other may get its line as it gives up, so which got
    /// theirs does not tell).
    fn deadlock(exclusive: bool, then: bool, lines: [u64; 2]) {
        let t = LockTable::new(64 * 1024);
        let both = std::sync::Barrier::new(2);
        let run = |mine: u64, theirs: u64| {
            let mut held = Held::default();
            assert!(held.acquire(&t, mine, 8, exclusive, NO_WAIT));
            both.wait();
            let started = Instant::now();
            let got = held.acquire(&t, theirs, 8, then, DEADLOCK_WAIT);
            let waited = started.elapsed();
            held.release_all(&t);
            (got, waited)
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| run(lines[0], lines[1]));
            let b = s.spawn(|| run(lines[1], lines[0]));
            (a.join().unwrap(), b.join().unwrap())
        });
        assert!(a.0 != b.0, "exactly one gets its line: {a:?} {b:?}");
        let loser = if a.0 { b } else { a };
        assert!(
            loser.1 < DEADLOCK_WAIT / 2,
            "the deadlock was found, not waited out: {loser:?}"
        );
        assert!(t.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
        assert!(t.waiting.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn of_two_holders_waiting_for_each_other_one_gives_up_before_the_lock_wait() {
        // Each writes its line, then reads the other's (two SPS swaps that cross).
        deadlock(true, false, [0, 64]);
        // Each reads its line, then writes the other's: the words name no holder.
        deadlock(false, true, [0, 64]);
    }

    #[test]
    fn of_two_holders_upgrading_one_stripe_one_gives_up_before_the_lock_wait() {
        // Both read one line, then both want to write it: each waits for the other's
        // read.
        deadlock(false, true, [0, 16]);
    }

    #[test]
    fn an_upgrade_waits_for_the_other_readers_to_end() {
        let t = LockTable::new(64 * 1024);
        let both = std::sync::Barrier::new(2);
        let mut a = Held::default();
        assert!(a.acquire(&t, 0, 8, false, NO_WAIT));
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut b = Held::default();
                assert!(b.acquire(&t, 8, 8, false, NO_WAIT));
                both.wait();
                std::thread::sleep(Duration::from_millis(5));
                b.release_all(&t);
            });
            both.wait();
            assert!(
                a.acquire(&t, 0, 8, true, Duration::from_secs(10)),
                "the upgrade waited for the other reader"
            );
        });
        a.release_all(&t);
        assert!(t.words.iter().all(|w| w.load(Ordering::Relaxed) == 0));
    }

    #[test]
    fn a_waiter_gets_the_stripe_when_its_holder_ends() {
        let t = LockTable::new(4096);
        let mut a = Held::default();
        assert!(a.acquire(&t, 0, 8, true, NO_WAIT));
        std::thread::scope(|s| {
            let w = s.spawn(|| {
                let mut b = Held::default();
                let ok = b.acquire(&t, 0, 8, true, Duration::from_secs(60));
                b.release_all(&t);
                ok
            });
            std::thread::sleep(Duration::from_millis(5));
            a.release_all(&t);
            assert!(w.join().unwrap());
        });
    }
}
