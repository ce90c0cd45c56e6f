//! Protection keys with two segments on one thread: each transaction opens and closes
//! only its own segment's key, so transactions may end in any order.
//!
//! Skipped, with a note, on a machine without protection keys; `scripts/pkey-vm` runs it
//! in an emulated machine that has them (with `RIO_TEST_PKEY=require`, a machine without
//! keys fails it instead).

mod common;

use common::{pattern, Place};
use vista::{ActiveProtection, Protection, Segment, StartKind};

const SIZE: u64 = 64 << 10;

fn open(p: &Place) -> Segment {
    let seg = Segment::open(&p.path, &p.opts(SIZE).protection(Protection::Pkey)).unwrap();
    assert!(matches!(seg.protection(), ActiveProtection::Pkey(_)));
    seg
}

/// Transactions on two segments, interleaved: A begins, B begins, A ends (commit or
/// abort) while B is still open, B writes again and commits. With the whole PKRU
/// register saved and restored per transaction, A's end would deny B's key under B's
/// open transaction, and B's next write would die with SIGSEGV.
#[test]
fn two_segments_on_one_thread_end_out_of_order() {
    if !common::pkeys_here() {
        return;
    }
    let (pa, pb) = (Place::new(), Place::new());
    let (a, b) = (open(&pa), open(&pb));
    assert_ne!(a.protection(), b.protection(), "two segments share a key");

    for round in 0..4u8 {
        let commit_a = round % 2 == 0;
        let mut ta = a.begin().unwrap();
        let mut tb = b.begin().unwrap();
        ta.write(100, &pattern(round, 300)).unwrap();
        tb.set_range(5000, 64)
            .unwrap()
            .copy_from_slice(&pattern(round + 10, 64));
        if commit_a {
            ta.commit().unwrap();
        } else {
            ta.abort().unwrap();
        }
        // B's transaction outlived A's: its windows must still be writable.
        tb.write(9000, &pattern(round + 20, 100)).unwrap();
        tb.set_range(5000, 8).unwrap().copy_from_slice(&[round; 8]);
        tb.commit().unwrap();

        // And A again while B is idle, then B while A is idle.
        a.transaction(|tx| tx.write(20000, &[round; 16])).unwrap();
        b.transaction(|tx| tx.write(20000, &[round + 1; 16]))
            .unwrap();
    }
    // The last round (3) aborted A's interleaved transaction; round 2 committed it.
    assert_eq!(a.read(100, 300).unwrap(), pattern(2, 300));
    assert_eq!(a.read(20000, 16).unwrap(), [3; 16]);
    let mut b_5000 = pattern(13, 64);
    b_5000[..8].copy_from_slice(&[3; 8]);
    assert_eq!(b.read(5000, 64).unwrap(), b_5000);
    assert_eq!(b.read(9000, 100).unwrap(), pattern(23, 100));
    assert_eq!(b.read(20000, 16).unwrap(), [4; 16]);

    drop((a, b));
    let (a, b) = (open(&pa), open(&pb));
    assert_eq!(a.start_kind(), StartKind::Warm);
    assert_eq!(a.read(100, 300).unwrap(), pattern(2, 300));
    assert_eq!(b.read(9000, 100).unwrap(), pattern(23, 100));
}
