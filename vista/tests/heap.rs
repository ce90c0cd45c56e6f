//! The persistent heap: allocation, free, handles, the root, check and statistics,
//! against a model of the live blocks, with aborts, crashes and reopens; several
//! threads allocating at once.

mod common;

use std::collections::BTreeMap;

use common::{pattern, Place};
use proptest::prelude::*;
use vista::heap::HandleError;
use vista::{bytemuck, Error, PPtr, Protection, Segment};

const SIZE: u64 = 1600 << 10; // a full zone and part of a second

fn opts(p: &Place, size: u64) -> vista::Options {
    p.opts(size).undo_log_size(1 << 20)
}

/// The reason a call refused a handle (`None` if it succeeded or failed otherwise).
#[allow(clippy::needless_pass_by_value)] // takes the call's result as it comes
fn refused<T>(r: Result<T, Error>) -> Option<HandleError> {
    match &r {
        Err(Error::BadHandle { reason, .. }) => Some(*reason),
        _ => None,
    }
}

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Node {
    value: u64,
    next: PPtr<Node>,
}

#[test]
fn alloc_free_root_round_trip() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p, SIZE)).unwrap();
    assert!(seg.root::<Node>().unwrap().is_none());
    let mut tx = seg.begin().unwrap();
    let root = tx.root::<Node>().unwrap();
    assert_eq!(tx.get_ptr(root).unwrap().value, 0, "a new root is zeroed");
    let a = tx
        .alloc(Node {
            value: 7,
            next: PPtr::NULL,
        })
        .unwrap();
    tx.get_mut(root).unwrap().next = a;
    tx.commit().unwrap();
    drop(seg);

    let seg = Segment::open(&p.path, &opts(&p, SIZE)).unwrap();
    let root = seg
        .root::<Node>()
        .unwrap()
        .expect("root found after reopen");
    let a = seg.get_ptr(root).unwrap().next;
    assert_eq!(seg.get_ptr(a).unwrap().value, 7);
    assert!(matches!(seg.root::<u64>(), Err(Error::RootMismatch { .. })));
    assert!(
        matches!(seg.root::<[u8; 16]>(), Err(Error::RootMismatch { .. })),
        "same size, other type"
    );
    let mut tx = seg.begin().unwrap();
    assert!(matches!(
        tx.root::<[u64; 3]>(),
        Err(Error::RootMismatch { .. })
    ));
    tx.free(a).unwrap();
    assert_eq!(
        refused(tx.free(a)),
        Some(HandleError::NotAllocated),
        "double free"
    );
    tx.commit().unwrap();
    assert_eq!(refused(seg.get_ptr(a)), Some(HandleError::NotAllocated));
    let report = seg.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.stats.live_blocks, 1, "only the root");
}

#[test]
fn bad_handles_are_typed_errors() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p, SIZE)).unwrap();
    let mut tx = seg.begin().unwrap();
    let small = tx.alloc(5u64).unwrap();
    let big = tx.alloc_bytes(5000).unwrap();
    let buf = tx.alloc_bytes(100).unwrap();
    assert!(tx.bytes(buf).unwrap().len() >= 100);
    let cases: Vec<(PPtr<u64>, HandleError)> = vec![
        (PPtr::NULL, HandleError::Null),
        (PPtr::from_offset(SIZE + 8), HandleError::OutOfRange),
        (PPtr::from_offset(u64::MAX), HandleError::OutOfRange),
        (PPtr::from_offset(8), HandleError::Metadata),
        (PPtr::from_offset(4096 + 64), HandleError::Metadata),
        (
            PPtr::from_offset(small.offset() + 8),
            HandleError::NotABlock,
        ),
        (
            PPtr::from_offset(small.offset() + 16),
            HandleError::NotAllocated,
        ),
        (
            PPtr::from_offset(big.offset() + 4096),
            HandleError::NotAllocated,
        ),
        (
            buf.cast(),
            HandleError::WrongSize {
                block: 112,
                wanted: 8,
            },
        ),
        (
            big.cast(),
            HandleError::WrongSize {
                block: 8192,
                wanted: 8,
            },
        ),
    ];
    for (ptr, want) in cases {
        assert_eq!(refused(tx.get_mut(ptr).map(|_| ())), Some(want), "{ptr:?}");
        assert_eq!(refused(tx.free(ptr)), Some(want), "{ptr:?}");
    }
    // The refused calls changed nothing; the transaction is still usable.
    *tx.get_mut(small).unwrap() += 1;
    tx.free(big).unwrap();
    tx.commit().unwrap();
    assert_eq!(seg.get_ptr(small).unwrap(), 6);
    assert!(seg.check().unwrap().is_clean());
}

#[test]
fn out_of_space_leaves_the_transaction_usable() {
    let p = Place::new();
    let size = 4096 + 4 * 4096 + 8 * 4096; // header, descriptors, 8 pages
    let seg = Segment::open(&p.path, &opts(&p, size)).unwrap();
    let mut tx = seg.begin().unwrap();
    let first = tx.alloc_bytes(4 * 4096).unwrap();
    let kept = tx.alloc_bytes(3 * 4096).unwrap();
    tx.bytes_mut(kept).unwrap().fill(2);
    assert!(matches!(
        tx.alloc_bytes(2 * 4096),
        Err(Error::OutOfSpace { .. })
    ));
    assert!(matches!(
        tx.alloc_bytes(2 << 20),
        Err(Error::AllocTooLarge { .. })
    ));
    tx.free(first).unwrap();
    let retried = tx.alloc_bytes(2 * 4096).unwrap();
    tx.bytes_mut(retried).unwrap().fill(3);
    tx.commit().unwrap();
    let tx = seg.begin().unwrap();
    assert_eq!(tx.bytes(kept).unwrap(), &[2u8; 3 * 4096][..]);
    assert_eq!(tx.bytes(retried).unwrap(), &[3u8; 2 * 4096][..]);
    drop(tx);
    let report = seg.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.stats.unformatted_bytes, 0);
}

#[test]
fn aborted_allocations_and_frees_leave_nothing() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p, SIZE)).unwrap();
    let kept = seg.transaction(|tx| tx.alloc([7u64; 40])).unwrap();
    let before = seg.heap_blocks().unwrap();
    let mut tx = seg.begin().unwrap();
    for i in 0..300u64 {
        tx.alloc(i).unwrap();
    }
    tx.free(kept).unwrap();
    // Reusing the block this transaction freed must not lose its committed contents.
    let again = tx.alloc([9u64; 40]).unwrap();
    assert_eq!(again, kept, "the freed block is reused");
    tx.abort().unwrap();
    assert_eq!(seg.heap_blocks().unwrap(), before);
    assert_eq!(seg.get_ptr(kept).unwrap(), [7u64; 40]);
    assert!(seg.check().unwrap().is_clean());
}

#[test]
fn the_heap_extends_into_the_segments_length_zone_by_zone() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p, SIZE)).unwrap();
    let mut ptrs = Vec::new();
    let mut tx = seg.begin().unwrap();
    loop {
        match tx.alloc_bytes(64 << 10) {
            Ok(p) => ptrs.push(p),
            Err(Error::OutOfSpace { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    tx.commit().unwrap();
    let s = seg.heap_stats().unwrap();
    assert_eq!(s.unformatted_bytes, 0);
    assert!(ptrs.len() > 16, "blocks in both zones: {}", ptrs.len());
    assert!(seg.check().unwrap().is_clean());
    seg.transaction(|tx| ptrs.iter().try_for_each(|&p| tx.free(p)))
        .unwrap();
    let s = seg.heap_stats().unwrap();
    assert_eq!(
        (s.live_blocks, s.free_runs),
        (0, 2),
        "each zone coalesced into one run"
    );
}

#[test]
fn threads_allocate_in_their_own_arenas() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p, 8 << 20).lanes(4)).unwrap();
    let per_thread = 200u64;
    let all: Vec<Vec<(PPtr<[u64; 3]>, u64)>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4u64)
            .map(|t| {
                let seg = &seg;
                s.spawn(move || {
                    let mut mine = Vec::new();
                    for i in 0..per_thread {
                        let v = t * 1000 + i;
                        let p = seg
                            .transaction(|tx| {
                                let p = tx.alloc([v; 3])?;
                                if i % 3 == 0 {
                                    let big = tx.alloc_bytes(5000 + i)?;
                                    tx.bytes_mut(big)?[0] = 1;
                                    tx.free(big)?;
                                }
                                Ok::<_, Error>(p)
                            })
                            .unwrap();
                        mine.push((p, v));
                        if i % 2 == 0 {
                            let (q, _) = mine.remove(0);
                            seg.transaction(|tx| tx.free(q)).unwrap();
                        }
                    }
                    mine
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut live: Vec<u64> = Vec::new();
    for (p, v) in all.iter().flatten() {
        assert_eq!(seg.get_ptr(*p).unwrap(), [*v; 3]);
        live.push(p.offset());
    }
    live.sort_unstable();
    let blocks: Vec<u64> = seg
        .heap_blocks()
        .unwrap()
        .iter()
        .map(|b| b.offset)
        .collect();
    assert_eq!(blocks, live, "exactly the blocks kept are live");
    let r = seg.check().unwrap();
    assert!(r.is_clean(), "{:?}", r.problems);
}

// ---- the model test ----

#[derive(Debug, Clone)]
enum Op {
    Alloc { size: u64, g: u8 },
    Free { pick: usize },
    Write { pick: usize, g: u8 },
}

#[derive(Debug, Clone)]
enum End {
    Commit,
    Abort,
    Crash,
}

#[derive(Debug, Clone)]
enum Step {
    Tx { ops: Vec<Op>, end: End },
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let size = prop_oneof![
        4 => 1u64..=128,
        2 => 129u64..=2048,
        1 => 2049u64..=40_000,
    ];
    prop_oneof![
        3 => (size, any::<u8>()).prop_map(|(size, g)| Op::Alloc { size, g }),
        2 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(pick, g)| Op::Write { pick, g }),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let end = prop_oneof![4 => Just(End::Commit), 1 => Just(End::Abort), 1 => Just(End::Crash)];
    prop_oneof![
        8 => (prop::collection::vec(op_strategy(), 0..24), end).prop_map(|(ops, end)| Step::Tx { ops, end }),
        1 => Just(Step::Reopen),
    ]
}

/// Live blocks: offset -> (length asked for, generation of its contents).
type Live = BTreeMap<u64, (u64, u8)>;

fn verify(seg: &Segment, live: &Live) -> Result<(), TestCaseError> {
    let report = seg.check().unwrap();
    prop_assert!(report.is_clean(), "{:?}", report.problems);
    let blocks = seg.heap_blocks().unwrap();
    let offsets: Vec<u64> = blocks.iter().map(|b| b.offset).collect();
    prop_assert_eq!(
        &offsets,
        &live.keys().copied().collect::<Vec<_>>(),
        "live set"
    );
    for w in blocks.windows(2) {
        prop_assert!(w[0].offset + w[0].len <= w[1].offset, "overlap {:?}", w);
    }
    for b in &blocks {
        let (len, g) = live[&b.offset];
        prop_assert!(b.len >= len);
        let ok = *seg.read(b.offset, len).unwrap() == pattern(g, len as usize)[..];
        prop_assert!(ok, "contents of the block at {:#x}", b.offset);
    }
    prop_assert_eq!(report.stats.live_blocks, live.len() as u64);
    Ok(())
}

fn run(steps: &[Step], protection: Protection) -> Result<(), TestCaseError> {
    let p = Place::new();
    let o = opts(&p, SIZE).protection(protection);
    let mut seg = Segment::open(&p.path, &o).unwrap();
    let mut live = Live::new();
    for step in steps {
        match step {
            Step::Reopen => {
                drop(seg);
                seg = Segment::open(&p.path, &o).unwrap();
            }
            Step::Tx { ops, end } => {
                let mut tx = seg.begin().unwrap();
                let mut work = live.clone();
                for op in ops {
                    match *op {
                        Op::Alloc { size, g } => match tx.alloc_bytes(size) {
                            Ok(ptr) => {
                                prop_assert!(!work.contains_key(&ptr.offset()));
                                tx.bytes_mut(ptr).unwrap()[..size as usize]
                                    .copy_from_slice(&pattern(g, size as usize));
                                work.insert(ptr.offset(), (size, g));
                            }
                            Err(Error::OutOfSpace { .. }) => {}
                            Err(e) => return Err(TestCaseError::fail(e.to_string())),
                        },
                        Op::Free { pick } if !work.is_empty() => {
                            let off = *work.keys().nth(pick % work.len()).unwrap();
                            let ptr = PPtr::<[u8]>::from_offset(off);
                            tx.free(ptr).unwrap();
                            prop_assert_eq!(refused(tx.free(ptr)), Some(HandleError::NotAllocated));
                            work.remove(&off);
                        }
                        Op::Write { pick, g } if !work.is_empty() => {
                            let (&off, &(len, _)) = work.iter().nth(pick % work.len()).unwrap();
                            tx.bytes_mut(PPtr::from_offset(off)).unwrap()[..len as usize]
                                .copy_from_slice(&pattern(g, len as usize));
                            work.insert(off, (len, g));
                        }
                        Op::Free { .. } | Op::Write { .. } => {}
                    }
                }
                match end {
                    End::Commit => {
                        tx.commit().unwrap();
                        live = work;
                    }
                    End::Abort => tx.abort().unwrap(),
                    End::Crash => {
                        let snap = p.snapshot();
                        drop(tx);
                        drop(seg);
                        snap.restore();
                        seg = Segment::open(&p.path, &o).unwrap();
                    }
                }
            }
        }
        verify(&seg, &live)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn heap_matches_model_alias(steps in prop::collection::vec(step_strategy(), 1..16)) {
        run(&steps, Protection::Alias)?;
    }

    #[test]
    fn heap_matches_model_mprotect(steps in prop::collection::vec(step_strategy(), 1..16)) {
        run(&steps, Protection::Mprotect)?;
    }
}

#[test]
fn damaged_metadata_is_reported_never_a_panic() {
    for garbage in [0xFFu8, 0x01, 0x03, 0x04] {
        let p = Place::new();
        let seg = Segment::open(&p.path, &opts(&p, SIZE)).unwrap();
        let (small, big) = seg
            .transaction(|tx| Ok::<_, Error>((tx.alloc(1u64)?, tx.alloc_bytes(9000)?)))
            .unwrap();
        // A raw write over the first descriptors (what a stray store through an offset does).
        seg.transaction(|tx| tx.write(4096, &[garbage; 4 * 64]))
            .unwrap();
        let report = seg.check().unwrap();
        assert!(!report.is_clean(), "damage {garbage:#x} went unreported");
        let mut tx = seg.begin().unwrap();
        // Each may fail (typed) or happen to succeed; none may panic.
        let _ = tx.free(small);
        let _ = tx.free(big);
        let _ = tx.get_ptr(small);
        for _ in 0..4 {
            let _ = tx.alloc(2u64);
            let _ = tx.alloc_bytes(20_000);
        }
        drop(tx);
        assert!(!seg.check().unwrap().is_clean());
    }
}

#[test]
fn a_full_heap_grows_with_the_segment_and_handles_stay_valid() {
    let p = Place::new();
    let size = 4096 + 4 * 4096 + 8 * 4096; // header, descriptors, 8 pages
    let mut seg = Segment::open(&p.path, &opts(&p, size)).unwrap();
    let kept = seg
        .transaction(|tx| {
            let b = tx.alloc_bytes(6 * 4096)?;
            tx.bytes_mut(b)?.fill(5);
            Ok::<_, Error>(b)
        })
        .unwrap();
    let mut tx = seg.begin().unwrap();
    assert!(matches!(
        tx.alloc_bytes(4 * 4096),
        Err(Error::OutOfSpace { .. })
    ));
    drop(tx);
    seg.grow(size + (1 << 20)).unwrap();
    // The same request now fits: the heap extends into the grown length.
    let more = seg
        .transaction(|tx| {
            let b = tx.alloc_bytes(4 * 4096)?;
            tx.bytes_mut(b)?.fill(6);
            Ok::<_, Error>(b)
        })
        .unwrap();
    assert!(
        more.offset() + 4 * 4096 > size,
        "the new block reaches into the grown part (it may start in the old free tail)"
    );
    let report = seg.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    seg.close().unwrap();
    // After a reopen (cold: the memory image is gone) both handles read back.
    p.lose_power();
    let seg = Segment::open(&p.path, &opts(&p, size)).unwrap();
    assert_eq!(seg.len(), size + (1 << 20));
    let tx = seg.begin().unwrap();
    assert_eq!(tx.bytes(kept).unwrap(), vec![5u8; 6 * 4096].as_slice());
    assert_eq!(tx.bytes(more).unwrap(), vec![6u8; 4 * 4096].as_slice());
    drop(tx);
    assert!(seg.check().unwrap().is_clean());
}

/// `vista::inspect`'s heap check reads the files, writes nothing, and finds what
/// `Segment::check` finds, on a sound heap and on damaged metadata.
#[test]
fn inspect_checks_the_heap_read_only_like_segment_check() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p, SIZE)).unwrap();
    seg.transaction(|tx| {
        tx.root::<Node>()?;
        for i in 0..20u64 {
            tx.alloc(i)?;
        }
        tx.alloc_bytes(9000).map(|_| ())
    })
    .unwrap();
    let compare = |seg: &Segment| {
        let live = seg.check().unwrap();
        let before = common::tree(p.dir.path());
        let info = vista::inspect::inspect(&p.path, &p.cache_dir()).unwrap();
        let view = info.view(info.current_source()).unwrap();
        let read = info.heap(&view).unwrap().expect("a heap");
        common::assert_same_tree(&before, &common::tree(p.dir.path()), "inspect");
        assert_eq!(read.problems, live.problems);
        assert_eq!(read.stats, live.stats);
        read
    };
    assert!(compare(&seg).is_clean());
    // A stray store over the first descriptors.
    seg.transaction(|tx| tx.write(4096, &[0xFF; 64])).unwrap();
    assert!(!compare(&seg).is_clean());
    drop(seg);
    // A segment used through offsets only has no heap.
    let q = Place::new();
    let plain = Segment::open(&q.path, &opts(&q, SIZE)).unwrap();
    plain.transaction(|tx| tx.write(0, b"not a heap")).unwrap();
    let info = vista::inspect::inspect(&q.path, &q.cache_dir()).unwrap();
    let view = info.view(info.current_source()).unwrap();
    assert!(info.heap(&view).unwrap().is_none());
}

/// A segment of `SIZE` under `guard` whose calls wait at most `wait` for a lock.
fn open_waiting(p: &Place, guard: Protection, wait: std::time::Duration) -> Segment {
    Segment::open(&p.path, &opts(p, SIZE).protection(guard).lock_wait(wait)).unwrap()
}

/// A refused `free` (here a double free) holds its slab's descriptor no more than
/// shared: another transaction still reaches a live block of the same slab.
#[test]
fn a_refused_free_holds_nothing_exclusively() {
    for guard in common::guards() {
        let p = Place::new();
        let seg = open_waiting(&p, guard, std::time::Duration::from_millis(50));
        let (x, y) = seg
            .transaction(|tx| Ok::<_, Error>((tx.alloc(1u64)?, tx.alloc(2u64)?)))
            .unwrap();
        seg.transaction(|tx| tx.free(y)).unwrap();
        let mut tx1 = seg.begin().unwrap();
        assert_eq!(refused(tx1.free(y)), Some(HandleError::NotAllocated));
        std::thread::scope(|s| {
            s.spawn(|| {
                let tx2 = seg.begin().unwrap();
                assert_eq!(tx2.get_ptr(x).unwrap(), 1, "{guard:?}");
            });
        });
        drop(tx1);
    }
}

/// Two frees of neighbouring large blocks: the one holding the run lists reads the
/// other's descriptor to merge the runs while the other waits for the run lists. Both
/// commit; neither is refused with a conflict (a free that locked its block's
/// descriptor exclusively before the run lists made this a cycle).
#[test]
fn frees_of_neighbouring_large_blocks_both_commit() {
    for guard in common::guards() {
        let p = Place::new();
        let seg = open_waiting(&p, guard, std::time::Duration::from_secs(5));
        let [b, a, _d, c] = seg
            .transaction(|tx| {
                Ok::<_, Error>([
                    tx.alloc_bytes(8192)?,
                    tx.alloc_bytes(8192)?,
                    tx.alloc_bytes(8192)?,
                    tx.alloc_bytes(8192)?,
                ])
            })
            .unwrap();
        assert_eq!(b.offset() + 8192, a.offset(), "b lies just before a");
        let mut tx2 = seg.begin().unwrap();
        tx2.free(c).unwrap(); // takes the run lists
        std::thread::scope(|s| {
            let t1 = s.spawn(|| {
                let mut tx1 = seg.begin().unwrap();
                tx1.free(a)?; // waits for the run lists
                tx1.commit()
            });
            std::thread::sleep(std::time::Duration::from_millis(200));
            tx2.free(b).unwrap(); // reads a's descriptor to merge
            tx2.commit().unwrap();
            t1.join().unwrap().unwrap();
        });
        assert!(seg.check().unwrap().is_clean(), "{guard:?}");
    }
}
