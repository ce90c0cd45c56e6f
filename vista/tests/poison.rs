//! What a failure leaves behind in a segment shared by transactions: a conflict
//! publishes nothing, a failed roll-back keeps its ranges and stops the segment, a
//! failed grow never lets a read reach an unbacked mapping, and once poisoned every
//! entry point says so with the original cause. Every test runs under every guard.

mod common;

use std::time::Duration;

use common::{guards, Place};
use rio_cache::Faults;
use vista::{Error, Protection, Segment};

fn opts(p: &Place, g: Protection) -> vista::Options {
    p.opts(1 << 16)
        .protection(g)
        .lock_wait(Duration::ZERO)
        .lanes(4)
}

/// Two transactions read X; the first one's write of X must upgrade its shared lock
/// and fails with a conflict. It must not leave a published undo record behind: the
/// lane would go back to the pool with it, and the next open would apply it, rolling
/// back a later commit of X.
#[test]
fn a_conflict_publishes_no_undo_record() {
    for g in guards() {
        let p = Place::new();
        let seg = Segment::open(&p.path, &opts(&p, g)).unwrap();
        seg.transaction(|tx| tx.put(0, &1u64)).unwrap();
        {
            let mut t1 = seg.begin().unwrap();
            let t2 = seg.begin().unwrap();
            assert_eq!(t1.get::<u64>(0).unwrap(), 1);
            assert_eq!(t2.get::<u64>(0).unwrap(), 1);
            assert!(
                matches!(t1.put(0, &7u64), Err(Error::Conflict { offset: 0, len: 8 })),
                "{g:?}"
            );
            assert_eq!(t1.undo_log_usage().0, 0, "{g:?}");
        }
        seg.transaction(|tx| tx.put(0, &5u64)).unwrap();
        seg.close().unwrap();
        let seg = Segment::open(&p.path, &opts(&p, g)).unwrap();
        assert_eq!(seg.recovery().lanes_rolled_back, 0, "{g:?}: a stale record");
        assert_eq!(
            seg.get::<u64>(0).unwrap(),
            5,
            "{g:?}: an acknowledged commit lost"
        );
    }
}

/// As above, with a record already in the lane: the abort must undo exactly the
/// records of ranges the transaction holds, and an ordinary conflict must not poison.
#[test]
fn a_conflict_after_a_logged_write_aborts_cleanly() {
    for g in guards() {
        let p = Place::new();
        let seg = Segment::open(&p.path, &opts(&p, g)).unwrap();
        seg.transaction(|tx| {
            tx.put(0, &1u64)?;
            tx.put(128, &2u64)
        })
        .unwrap();
        {
            let mut t1 = seg.begin().unwrap();
            let t2 = seg.begin().unwrap();
            t1.put(128, &20u64).unwrap();
            assert_eq!(t1.get::<u64>(0).unwrap(), 1);
            assert_eq!(t2.get::<u64>(0).unwrap(), 1);
            assert!(
                matches!(t1.put(0, &7u64), Err(Error::Conflict { offset: 0, len: 8 })),
                "{g:?}"
            );
            t1.abort().unwrap();
        }
        seg.transaction(|tx| tx.put(0, &5u64))
            .unwrap_or_else(|e| panic!("{g:?}: {e}"));
        assert_eq!(seg.get::<u64>(128).unwrap(), 2, "{g:?}");
        seg.close().unwrap();
        let seg = Segment::open(&p.path, &opts(&p, g)).unwrap();
        assert_eq!(seg.recovery().lanes_rolled_back, 0, "{g:?}");
        assert_eq!(seg.get::<u64>(0).unwrap(), 5, "{g:?}");
        assert_eq!(seg.get::<u64>(128).unwrap(), 2, "{g:?}");
    }
}

/// A roll-back that fails (here: the `mprotect` that opens the undo lane fails with
/// EIO) poisons the segment and keeps the transaction's ranges locked: no other
/// transaction may write them, and nothing commits after the poison. The next open's
/// recovery then undoes the dead transaction, and no acknowledged commit is lost.
#[test]
fn a_failed_roll_back_keeps_its_locks_and_stops_commits() {
    let p = Place::new();
    let faults = Faults::counting();
    let o = opts(&p, Protection::Mprotect).faults(faults.clone());
    let seg = Segment::open(&p.path, &o).unwrap();
    seg.transaction(|tx| tx.put(0, &1u64)).unwrap();
    let mut t1 = seg.begin().unwrap();
    let mut t2 = seg.begin().unwrap();
    t1.put(0, &9u64).unwrap();
    // The next operation is the roll-back's opening of the lane's pages.
    faults.fail_at(faults.count(), libc::EIO);
    assert!(t1.abort().is_err());
    assert!(faults.failed().is_some());
    assert!(
        matches!(t2.put(0, &3u64), Err(Error::HeldByThisThread { .. })),
        "the dead transaction's range is still locked"
    );
    t2.put(256, &3u64).unwrap();
    assert!(matches!(t2.commit(), Err(Error::Poisoned(_))));
    assert!(matches!(seg.begin(), Err(Error::Poisoned(_))));
    assert!(matches!(seg.read(512, 8), Err(Error::Poisoned(_))));
    assert!(matches!(seg.get::<u64>(512), Err(Error::Poisoned(_))));
    assert!(matches!(seg.checkpoint(), Err(Error::Poisoned(_))));
    let Err(Error::Poisoned(why)) = seg.begin() else {
        unreachable!()
    };
    assert!(
        why.contains("roll-back failed"),
        "the original cause: {why}"
    );
    drop(seg);
    let seg = Segment::open(&p.path, &opts(&p, Protection::Mprotect)).unwrap();
    assert_eq!(seg.recovery().lanes_rolled_back, 1);
    assert_eq!(seg.get::<u64>(0).unwrap(), 1);
    assert_eq!(
        seg.get::<u64>(256).unwrap(),
        0,
        "not acknowledged, not kept"
    );
}

/// A grow whose memory image cannot be rebuilt (its preallocation fails with ENOSPC, as
/// on a full /dev/shm, or its truncation with EFBIG, as past RLIMIT_FSIZE) leaves the
/// old mappings over a truncated or deleted image. No read may reach them (that would
/// be SIGBUS from safe code): reads say the segment is poisoned, and a reopen finds it
/// at the old or the new length with every commit.
#[test]
fn a_failed_grow_never_reads_through_an_unbacked_mapping() {
    for g in guards() {
        for (op, errno) in [
            (rio_cache::IoOp::Allocate, libc::ENOSPC),
            (rio_cache::IoOp::Truncate, libc::EFBIG),
        ] {
            let p = Place::new();
            let faults = Faults::counting();
            let o = opts(&p, g).faults(faults.clone());
            let mut seg = Segment::open(&p.path, &o).unwrap();
            seg.transaction(|tx| tx.put(8, &42u64)).unwrap();
            // Fail the grow's first `op` on the memory image.
            let at = faults.count();
            let image_op = |c: &rio_cache::IoCall| c.op == op && c.file == rio_cache::IoFile::Image;
            // Learn where that operation falls with a dry run on a copy.
            let q = Place::new();
            let dry = Faults::counting();
            let mut s2 = Segment::open(&q.path, &opts(&q, g).faults(dry.clone())).unwrap();
            s2.transaction(|tx| tx.put(8, &42u64)).unwrap();
            let before = dry.count();
            s2.grow(1 << 17).unwrap();
            let nth = dry.calls()[before as usize..]
                .iter()
                .position(image_op)
                .expect("the grow rebuilds the image") as u64;
            drop(s2);
            faults.fail_at(at + nth, errno);
            let e = seg.grow(1 << 17).unwrap_err();
            assert!(faults.failed().is_some(), "{g:?} {op:?}: {e}");
            assert!(
                matches!(seg.read(8, 8), Err(Error::Poisoned(_))),
                "{g:?} {op:?}"
            );
            assert!(matches!(seg.get::<u64>(0), Err(Error::Poisoned(_))));
            assert!(matches!(seg.begin(), Err(Error::Poisoned(_))));
            drop(seg);
            let seg = Segment::open(&p.path, &opts(&p, g)).unwrap();
            assert!(seg.len() == 1 << 16 || seg.len() == 1 << 17, "{g:?} {op:?}");
            assert_eq!(seg.get::<u64>(8).unwrap(), 42, "{g:?} {op:?}");
        }
    }
}

/// A checkpoint that fails while a transaction runs (it began after the checkpoint's
/// snapshot, while its writes were under way) poisons the segment, and that
/// transaction's commit is then refused and rolled back: nothing commits once the
/// segment is poisoned. (The commit checked only the segment's own poison, which a
/// failed checkpoint does not set, and returned `Ok`.)
#[test]
fn a_transaction_running_when_a_checkpoint_fails_does_not_commit() {
    for g in guards() {
        let p = Place::new();
        let faults = Faults::counting();
        let opts = p
            .opts(1 << 16)
            .protection(g)
            .writeback(vista::Writeback::Manual)
            .faults(faults.clone());
        let seg = Segment::open(&p.path, &opts).unwrap();
        seg.transaction(|tx| tx.put(0, &1u64)).unwrap();
        // The next checkpoint's calls, learnt from one like it.
        let before = faults.count();
        seg.checkpoint().unwrap();
        let calls = faults.calls()[before as usize..].to_vec();
        let first_write = calls
            .iter()
            .position(|c| (c.op, c.file) == (rio_cache::IoOp::Write, rio_cache::IoFile::Disk))
            .unwrap();
        seg.transaction(|tx| tx.put(0, &2u64)).unwrap();
        let at = faults.count() + first_write as u64;
        faults.pause_at(at);
        faults.fail_at(at, libc::EIO);
        std::thread::scope(|s| {
            let checkpoint = s.spawn(|| seg.checkpoint());
            assert!(faults.wait_paused(Duration::from_secs(60)).is_some());
            let mut tx = seg.begin().unwrap();
            tx.put(8, &3u64).unwrap();
            faults.resume();
            let failed = checkpoint.join().unwrap();
            assert!(failed.is_err(), "{g:?}: the checkpoint did not fail");
            let r = tx.commit();
            assert!(matches!(r, Err(Error::Poisoned(_))), "{g:?}: {r:?}");
        });
        drop(seg);
        let seg = Segment::open(&p.path, &opts.clone().faults(Faults::none())).unwrap();
        assert_eq!(seg.get::<u64>(0).unwrap(), 2, "{g:?}");
        assert_eq!(
            seg.get::<u64>(8).unwrap(),
            0,
            "{g:?}: the refused commit survived"
        );
    }
}
