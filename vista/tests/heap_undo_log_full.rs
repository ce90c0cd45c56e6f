//! `UndoLogFull` from a heap call, then commit. docs/guide.md's error table: "UndoLogFull
//! | set_range/write/put/heap calls: the transaction's undo log has no room | the
//! transaction is still usable: commit or abort it"; and §10: "nothing was logged or
//! changed for that call, so you can commit what it has so far". A heap call that fails
//! this way must therefore leave the heap's metadata as it was before the call.

mod common;

use common::Place;
use vista::{Error, PPtr, Segment};

fn opts(p: &Place) -> vista::Options {
    p.opts(4 << 20).undo_log_size(4096)
}

/// Allocations until the log is full, then commit what fit (the guide's pattern): the
/// heap must stay consistent and the next transaction must allocate. Today the call
/// that hits the full log has already changed some metadata (a run list's head) and
/// not the rest; the commit makes that permanent and every later allocation fails with
/// `HeapCorrupt`.
#[test]
fn committing_after_undo_log_full_in_alloc_keeps_the_heap_consistent() {
    for size in [8u64, 2048, 5000] {
        let p = Place::new();
        let seg = Segment::open(&p.path, &opts(&p)).unwrap();
        let mut tx = seg.begin().unwrap();
        let mut made = 0;
        let stopped = loop {
            match tx.alloc_bytes(size) {
                Ok(_) => made += 1,
                Err(e) => break e,
            }
        };
        assert!(
            matches!(stopped, Error::UndoLogFull { .. }),
            "size {size}: {stopped}"
        );
        assert!(made > 0);
        tx.commit().unwrap(); // "commit what it has so far"
        let report = seg.check().unwrap();
        assert!(
            report.is_clean(),
            "size {size}: after {made} allocations and a commit past UndoLogFull: {:?}",
            report.problems
        );
        let next = seg.transaction(|tx| tx.alloc_bytes(size).map(drop));
        assert!(next.is_ok(), "size {size}: the next allocation: {next:?}");
    }
}

/// The same with frees: free blocks until the log is full, commit, and the heap must be
/// consistent with exactly the unfreed blocks live.
#[test]
fn committing_after_undo_log_full_in_free_keeps_the_heap_consistent() {
    for size in [8u64, 2048, 5000] {
        let p = Place::new();
        let seg = Segment::open(&p.path, &opts(&p)).unwrap();
        let mut blocks: Vec<PPtr<[u8]>> = Vec::new();
        while blocks.len() < 400 {
            let more = seg.transaction(|tx| {
                let mut v = Vec::new();
                for _ in 0..20 {
                    v.push(tx.alloc_bytes(size)?);
                }
                Ok::<_, Error>(v)
            });
            match more {
                Ok(v) => blocks.extend(v),
                Err(_) => break,
            }
        }
        let mut tx = seg.begin().unwrap();
        let mut freed = 0;
        let stopped = loop {
            if freed == blocks.len() {
                break None;
            }
            match tx.free(blocks[freed]) {
                Ok(()) => freed += 1,
                Err(e) => break Some(e),
            }
        };
        let Some(stopped) = stopped else { continue };
        assert!(
            matches!(stopped, Error::UndoLogFull { .. }),
            "size {size}: {stopped}"
        );
        tx.commit().unwrap();
        let report = seg.check().unwrap();
        assert!(
            report.is_clean(),
            "size {size}: after {freed} frees and a commit past UndoLogFull: {:?}",
            report.problems
        );
        let mut live: Vec<u64> = blocks[freed..].iter().map(PPtr::offset).collect();
        live.sort_unstable();
        let found: Vec<u64> = seg
            .heap_blocks()
            .unwrap()
            .iter()
            .map(|b| b.offset)
            .collect();
        assert_eq!(found, live, "size {size}: the live blocks after the commit");
    }
}
