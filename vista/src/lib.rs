//! Vista: undo-only transactions on persistent memory.
//!
//! Lowell and Chen's observation (SOSP 1997): when the memory itself survives crashes
//! (Rio's battery-backed file cache; here, [`rio_cache`]), a transaction needs no redo
//! log, no system call and no log truncation. [`Transaction::set_range`] copies the
//! before-image into a persistent undo log; the program writes the data in place;
//! [`Transaction::commit`] throws the undo log away with one atomic store; abort and
//! crash recovery copy the before-images back.
//!
//! ```
//! # fn main() -> Result<(), vista::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("data.vista");
//! use vista::{bytemuck, PPtr};
//!
//! #[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
//! #[bytemuck(crate = "vista::bytemuck")]                // bytemuck comes re-exported
//! #[repr(C)]
//! struct Root { hits: u64, greeting: PPtr<[u8; 5]> }    // PPtr: an 8-byte handle (an offset)
//!
//! let opts = vista::Options::default()
//!     .size(1 << 20)
//!     .protection(vista::Protection::Auto)
//! #   .cache_dir(dir.path())
//!     ;
//! let seg = vista::Segment::open(&path, &opts)?;       // creates, or recovers
//!
//! let mut tx = seg.begin()?;
//! let root = tx.root::<Root>()?;                        // after a restart: seg.root::<Root>()?
//! let greeting = tx.alloc(*b"hello")?;                  // on the segment's heap; undone on abort
//! tx.get_mut(root)?.greeting = greeting;                // log the before-image, change in place
//! tx.commit()?;                                         // one store: committed
//!
//! let mut tx = seg.begin()?;
//! *tx.get_mut(greeting)? = *b"HELLO";
//! drop(tx);                                             // not committed: undone
//! assert_eq!(seg.get_ptr(greeting)?, *b"hello");
//!
//! // Commit on Ok, abort on Err or panic:
//! let hits = seg.transaction(|tx| {
//!     let root = tx.get_mut(root)?;
//!     root.hits += 1;
//!     Ok::<_, vista::Error>(root.hits)
//! })?;
//! assert_eq!(hits, 1);
//! seg.checkpoint()?;                                    // durable on disk too
//! drop(seg);
//!
//! let seg = vista::Segment::open(&path, &opts)?;
//! let root = seg.root::<Root>()?.expect("created above");
//! assert_eq!(seg.get_ptr(seg.get_ptr(root)?.greeting)?, *b"hello");
//! # Ok(())
//! # }
//! ```
//!
//! On the heap, [`collections`] builds [`PVec`], [`PBytes`], [`PString`] and
//! [`PHashMap`]: handles that nest inside persistent values, each operation declaring
//! only the bytes it changes. [`Transaction::root_named`] finds the root by a name the
//! program chooses; [`PPlace`] projections reach one element or field of a block.
//!
//! The heap lives in the segment's user space; the byte-level calls work on any offset
//! of it ([`Transaction::write`], [`Transaction::set_range`], [`Transaction::put`],
//! [`Segment::read`]), with [`PPtr::offset`] for a heap block's. A segment used only
//! through offsets needs no heap at all:
//!
//! ```
//! # fn main() -> Result<(), vista::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let opts = vista::Options::default().size(1 << 16).cache_dir(dir.path());
//! let seg = vista::Segment::open(dir.path().join("raw.vista"), &opts)?;
//! let mut tx = seg.begin()?;
//! tx.write(0, b"hello")?;                               // set_range + copy
//! let buf = tx.set_range(100, 8)?;                      // log, then change in place
//! buf.copy_from_slice(&42u64.to_le_bytes());
//! tx.commit()?;
//! assert_eq!(seg.get::<u64>(100)?, 42);
//! # Ok(())
//! # }
//! ```
//!
//! # Durability
//! A committed transaction survives any crash of the process at once (the memory image
//! survives). It survives an OS crash or power loss once a checkpoint has followed:
//! [`Transaction::commit_durable`] or [`Segment::checkpoint`], or the background
//! writeback. A checkpoint never captures a transaction half-done.
//!
//! # Correctness
//! The orderings recovery depends on, and their crash points (feature `crash-points`):
//! - the before-image is completely written (`vista.set_range.record_copied`) before
//!   the atomic store that publishes it (`vista.set_range.published`), which precedes
//!   any change to the data (`vista.write.partial`);
//! - commit is one atomic store of an empty log (`vista.commit.before_store`,
//!   `vista.commit.after_store`);
//! - abort and recovery copy before-images back newest first (`vista.abort.partial`,
//!   `vista.recover.partial`) and empty the log last (`vista.abort.applied`,
//!   `vista.recover.applied`), so repeating them is harmless;
//! - recovery validates every record's bounds and checksum before writing anything
//!   (`vista.recover.validated`).
//!
//! See `docs/design.md` and `docs/format.md`.
//!
//! # Transactions across segments
//! A [`Group`] of segments runs [`GroupTransaction`]s that change several of them, all
//! or nothing: each member keeps its own undo records, and one slot of the group's
//! coordinator file decides them all (Quicksilver's coordinator). The orderings, with
//! their crash points ([`XSEG_CRASH_POINTS`]):
//! - each member's lane gets a group record naming the coordinator before the member's
//!   next change, once the transaction spans two members (`vista.xseg.tagged`);
//! - the decision (one `pwrite` of the transaction's id into its slot,
//!   `vista.xseg.decided`) precedes every member's commit store
//!   (`vista.xseg.member_committed`); recovery keeps a tagged lane whose slot holds the
//!   id and rolls back any other, and refuses ([`Error::CoordinatorUnavailable`]) if it
//!   cannot read the coordinator;
//! - a member that took part is fenced: only [`Group::checkpoint`] writes it back, which
//!   seals every member's checkpoint for one epoch and commits them all with one synced
//!   decision (`vista.xseg.checkpoint_decided`), so power loss shows all or nothing too.
//!
//! A group transaction that touches one member is an ordinary transaction.
//!
//! # Threads
//! A [`Segment`] is `Send + Sync`: share it by reference, in an `Arc` or with scoped
//! threads, and run transactions from any number of threads at once. Each running
//! transaction owns one undo lane (`Options::lanes`, default the number of CPUs but at
//! least 4; `begin` waits up to `Options::lane_wait` for a free one, then fails with
//! [`Error::LanesBusy`]). Transactions are **serializable**: every range a
//! transaction reads is locked shared and every range it declares with
//! [`Transaction::set_range`] (or `write`, `put`) exclusively, until it commits or
//! aborts (strict two-phase locking). A read of bytes the transaction will change can
//! lock them exclusively at once ([`Transaction::get_for_update`]): then two
//! transactions that read and change the same bytes queue instead of each waiting for
//! the other to give up its shared lock. A range another transaction holds is waited for
//! up to `Options::lock_wait`, then the call fails with [`Error::Conflict`];
//! [`Segment::transaction`] then aborts and runs the closure again with backoff, up to
//! `Options::retries` times. Waiting is bounded, so no set of transactions deadlocks.
//! A thread that panics inside a transaction aborts it on unwinding, which releases
//! its locks and its lane. [`Segment::read`] returns a guard that holds the range
//! shared: committed bytes that no transaction can change while it is alive.
//!
//! ```
//! # fn main() -> Result<(), vista::Error> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let opts = vista::Options::default().size(1 << 16).cache_dir(dir.path());
//! let seg = vista::Segment::open(dir.path().join("bank.vista"), &opts)?;
//! seg.transaction(|tx| tx.put(0, &[100u64, 100u64]))?;
//! std::thread::scope(|s| {
//!     for t in 0..4u64 {
//!         let seg = &seg;
//!         s.spawn(move || {
//!             for _ in 0..10 {
//!                 let (from, to) = if t % 2 == 0 { (0, 8) } else { (8, 0) };
//!                 seg.transaction(|tx| {
//!                     // Read for update: both words are about to change.
//!                     let a = tx.get_for_update::<u64>(from)?;
//!                     let b = tx.get_for_update::<u64>(to)?;
//!                     tx.put(from, &(a - 1))?;
//!                     tx.put(to, &(b + 1))
//!                 })
//!                 .unwrap();
//!             }
//!         });
//!     }
//! });
//! let [a, b]: [u64; 2] = seg.get(0)?;
//! assert_eq!(a + b, 200);
//! # Ok(())
//! # }
//! ```
//!
//! # Safety
//! The public API is safe Rust; vista's only `unsafe` code is the marker-trait impls
//! that make [`PPtr`], [`PVec`] and [`PHashMap`] `bytemuck::Pod` (module `sys`: each a
//! `repr(transparent)` `u64`). The
//! heap's `&mut T` comes from the same locked slices, through `bytemuck`'s checked
//! casts. The slices it hands
//! out borrow either a transaction (`Transaction::read`, `set_range`) or a read guard
//! ([`Bytes`]), and each of those holds locks in rio-cache's
//! [`rio_cache::SharedCache`] lock table for every byte it has handed out, until it
//! ends. So, also across threads:
//! - **no two live `&mut [u8]` overlap**: a mutable slice exists only over bytes its
//!   transaction holds exclusively; two transactions cannot both hold a byte
//!   exclusively; within one transaction each mutable slice borrows the transaction
//!   mutably, so only one is alive at a time (and [`rio_cache::Update::window_pair`],
//!   used to copy a before-image, checks that its two ranges are disjoint);
//! - **readers never race a writer**: a shared slice exists only over bytes its holder
//!   locked shared or exclusively, which excludes every other holder's exclusive lock;
//!   a transaction's own shared slices borrow it immutably, so it cannot open a window
//!   while one is alive;
//! - the undo lanes are memory of the same cache, touched only by the transaction that
//!   owns the lane: each lane is a `rio_cache::Claim` (a token that cannot be copied),
//!   which the lane pool hands to one transaction at a time and which that
//!   transaction's update holds until it ends; rio-cache refuses every other access to
//!   the claimed region, so the lane needs no range locks;
//! - a read-only transaction ([`Segment::begin_read`]) hands out shared slices only,
//!   over bytes it holds shared until it ends, and can never make a mutable one:
//!   rio-cache refuses every write of its reader (`rio_cache::Error::ReadOnly`), so it
//!   needs no lane and stays outside the checkpoint gate;
//! - the checkpointer only reads, and reads a page of its snapshot only while it holds
//!   that page's latch, which a writer must pass (preserving the page first) before it
//!   opens the page for writing, so no transaction's mutable slice covers a page it is
//!   reading (rio-cache's `snapshot` module);
//! - [`Segment::grow`], which replaces the mappings, takes `&mut Segment`, so no
//!   transaction, guard or slice of the segment is alive while it runs;
//! - lock words are released with release ordering and taken with acquire ordering, so
//!   the next holder of a range sees every byte the previous one wrote.
//!
//! A false conflict (two lines sharing a lock stripe) can cost a retry, never
//! soundness. rio-cache documents why its mapping can be sliced soundly at all.
//!
//! A leaked transaction or guard (`mem::forget`) is never undefined behaviour: its
//! locks, lane and checkpoint-gate pass stay taken (checkpoints then give up with
//! [`Error::CheckpointBusy`]), and nothing it borrowed can be reached again. After a
//! failed grow the old mappings may no longer be backed by the memory image: the
//! segment is poisoned first, and every read checks the poison before it makes a slice.
//!
//! # Model-checked tests
//! Model-checked, under [shuttle](https://docs.rs/shuttle)'s randomized and PCT
//! schedulers (`cargo test -p vista --features shuttle --lib shuttle`, and the same
//! with `-p rio-cache`):
//! - the lane pool (here): no lane is held twice, every waiter gets one;
//! - the lock table (rio-cache): holders exclude each other per stripe, also across
//!   upgrades, and every byte of an unaligned, line-crossing range is covered by the
//!   stripes its holder takes (a per-byte witness);
//! - the checkpoint gate (rio-cache): no update is inside while the gate is closed, a
//!   re-entry never waits for a closing gate, every waiter wakes when it reopens.
//!
//! Resting on an argument (docs/design.md, "Concurrency") and defended by tests that
//! fail when the ordering is broken, not model-checked: a range is locked before its
//! undo record is published; a failed roll-back keeps its locks; nothing commits or
//! reads once the segment is poisoned; recovery of several lanes commutes; a checkpoint
//! gives up after its wait; gates are told apart by number. The gate's give-up path is
//! tested natively (shuttle's timed waits never time out). Shuttle checks sequentially
//! consistent executions only: the orderings that weak memory could break (the gate's
//! store-then-load handshake, which uses `SeqCst` on both sides; the lock words'
//! acquire/release pairs) rest on the C++ memory model's rules for those orderings.
//!
//! Shuttle rather than loom:
//! loom explores every interleaving, which is only tractable for a handful of
//! operations and needs every spin and timed wait rewritten for it; the lock table's
//! waits spin and yield, and the pool waits on a condition variable with a timeout.
//! Shuttle runs the same code with its own atomics, locks and scheduler, scales to
//! several threads each taking several locks, and PCT gives probabilistic bounds for
//! finding bugs of small depth. The `shuttle` feature is for those tests only (it
//! replaces the pool's lock with shuttle's, which works only inside a shuttle test).
//!
//! # Dependencies
//! - `rio-cache`: the crash-surviving memory, protection and checkpoints.
//! - `crc32fast`: the header checksum, and the checksum of undo records longer than 128
//!   bytes (it folds with carry-less multiplication where the CPU has it: about 3x
//!   faster than XXH3 on a 4 KiB record).
//! - `xxhash-rust`: the checksum of short undo records (XXH3 is the fastest on the
//!   small records of the commit path), and the hashes of root names and map keys.
//! - `bytemuck` (with `min_const_generics`, so arrays of any length qualify): typed
//!   reads and writes of plain-old-data values, and the values of the heap. It is
//!   re-exported ([`bytemuck`]) so that a program can derive `Pod` for its persistent
//!   types (with `#[bytemuck(crate = "vista::bytemuck")]`) without depending on it.
//! - `thiserror`: the [`Error`] enum.
//! - `crash-point`: crash points for crash testing (compiled in only with the feature).
//! - `crossbeam-utils`: `Backoff` between the retries of a conflicted transaction, and
//!   `CachePadded` for the lanes (each lane's lock on its own cache line, so threads on
//!   different lanes write no shared line).
//! - `shuttle` (optional, feature `shuttle`): model-checked tests of the lane pool.
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod admission;
pub mod collections;
mod error;
mod group;
pub mod heap;
mod identity;
pub mod inspect;
mod lane;
mod layout;
mod options;
mod place;
mod pptr;
mod retry;
mod segment;
mod sys;
mod transaction;
mod tx_heap;
mod undo;

#[cfg(feature = "mutants")]
mod mutant {
    //! Deliberately broken orderings for `crash-sim self-test` (feature `mutants`, off in
    //! every normal build). `VISTA_MUTANT` names the one in force; it is read once.
    pub(crate) fn is(name: &str) -> bool {
        static SELECTED: std::sync::OnceLock<String> = std::sync::OnceLock::new();
        SELECTED.get_or_init(|| std::env::var("VISTA_MUTANT").unwrap_or_default()) == name
    }
}

/// The application developers' guide, `docs/guide.md`: its Rust examples run as doctests
/// (`cargo test -p vista --doc`), so the guide cannot drift from the API. Warnings are
/// errors there: an example that keeps compiling only with a warning (a `mut` that the
/// API no longer needs, a deprecated call) has drifted too.
#[cfg(doctest)]
#[doc(test(attr(deny(warnings))))]
#[doc = include_str!("../../docs/guide.md")]
pub struct GuideDoctests;

/// `bytemuck`, re-exported: heap values are `bytemuck::Pod`; derive it with
/// `#[derive(bytemuck::Pod, bytemuck::Zeroable)]` and `#[bytemuck(crate = "vista::bytemuck")]`.
pub use bytemuck;
pub use collections::{PBytes, PHashMap, PString, PVec};
pub use error::{Error, Result};
pub use group::{Group, GroupTransaction, XSEG_CRASH_POINTS};
pub use heap::{HeapReport, HeapStats};
pub use layout::{FORMAT_VERSION, OLDEST_FORMAT_VERSION};
pub use options::{
    Options, Protection, Writeback, DEFAULT_LANES, DEFAULT_LANE_WAIT, DEFAULT_LOCK_WAIT,
    DEFAULT_RETRIES, DEFAULT_SIZE, DEFAULT_UNDO_LOG_SIZE, MAX_LANES,
};
pub use place::PPlace;
pub use pptr::PPtr;
/// The cache layer, re-exported so its types in vista's API (`Error::Cache`, the stats of
/// `Segment::cache_stats`) can be named without a separate dependency.
pub use rio_cache;
pub use rio_cache::{ActiveProtection, ColdReason, StartKind};
pub use segment::{fence_path, Bytes, Recovery, Segment};
pub use transaction::Transaction;

/// Every crash point of vista's transactions (rio-cache's checkpoint points are in
/// [`rio_cache::CRASH_POINTS`]; the heap's, reached only by programs that use it, in
/// [`heap::CRASH_POINTS`]).
pub const CRASH_POINTS: &[&str] = &[
    "vista.set_range.record_copied",
    "vista.set_range.published",
    "vista.write.partial",
    "vista.commit.before_store",
    "vista.commit.after_store",
    "vista.abort.partial",
    "vista.abort.applied",
    "vista.recover.validated",
    "vista.recover.partial",
    "vista.recover.applied",
    "vista.recover.done",
];
