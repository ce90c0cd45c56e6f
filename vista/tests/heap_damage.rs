//! Damaged heap metadata met by allocation: reported as `Error::HeapCorrupt` (or at
//! least kept inside the damaged slab), never a block handed out over another live
//! block, never a panic (docs/heap.md, "Bad handles": "Damaged metadata found on the
//! way is Error::HeapCorrupt, never a panic").

mod common;

use common::Place;
use vista::{Error, Segment};

const SIZE: u64 = 1600 << 10;
/// Zone 0's first descriptor (page 0's), after the header page.
const DESC0: u64 = 4096;

fn opts(p: &Place) -> vista::Options {
    p.opts(SIZE).undo_log_size(1 << 20)
}

/// A slab of 2048-byte blocks (two per page) with one block live is on its arena's
/// list. A stray store sets the bit of its free block and clears the bit of block 2,
/// which does not exist (bits past a slab's end are kept set; `check()` reports a
/// clear one). The next allocation of that class must not hand out "block 2": it is
/// the first 2048 bytes of the next page, a live large block, and the allocation
/// writes its zeros there without a before-image, so even an abort does not bring the
/// large block's committed bytes back.
#[test]
fn a_slab_bitmap_clear_past_its_end_never_hands_out_a_block_outside_the_slab() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p)).unwrap();
    let (small, big) = seg
        .transaction(|tx| {
            let small = tx.alloc_bytes(2048)?;
            let big = tx.alloc_bytes(8192)?;
            tx.bytes_mut(big)?.fill(0xAB);
            Ok::<_, Error>((small, big))
        })
        .unwrap();
    assert_eq!(
        big.offset(),
        small.offset() + 4096,
        "layout assumed by the test: the large block follows the slab's page"
    );
    assert!(seg.check().unwrap().is_clean());
    // The stray store: bits[0] of page 0's descriptor (offset 16 in it).
    let bits = !(1u64 << 2);
    seg.transaction(|tx| tx.put(DESC0 + 16, &bits)).unwrap();
    assert!(
        !seg.check().unwrap().is_clean(),
        "check() reports the bitmap"
    );

    let mut tx = seg.begin().unwrap();
    let got = tx.alloc_bytes(2048).map(|p| p.offset());
    tx.abort().unwrap();
    let tx = seg.begin().unwrap();
    let intact = tx.bytes(big).unwrap().iter().all(|&b| b == 0xAB);
    drop(tx);
    match got {
        Err(Error::HeapCorrupt(_)) => {}
        Ok(at) => assert!(
            at < small.offset() + 4096,
            "a 2048-byte block handed out at {at:#x}, outside its slab page {:#x}.. \
             (over the live large block at {:#x}); after the abort the large block's \
             committed bytes are intact: {intact}",
            small.offset(),
            big.offset()
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
    assert!(
        intact,
        "an aborted allocation changed the committed bytes of another live block"
    );
}

/// A slab on its arena's list whose used-block counter a stray store set to u32::MAX:
/// the next allocation from it must be `HeapCorrupt` (or succeed), not an arithmetic
/// overflow panic.
#[test]
fn a_slab_counter_at_its_maximum_is_heap_corrupt_not_a_panic() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p)).unwrap();
    seg.transaction(|tx| tx.alloc(1u64).map(|_| ())).unwrap();
    // n (u32 at offset 4 of page 0's descriptor).
    seg.transaction(|tx| tx.put(DESC0 + 4, &u32::MAX)).unwrap();
    let mut tx = seg.begin().unwrap();
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| tx.alloc(2u64).map(|_| ())));
    match r {
        Ok(Ok(()) | Err(Error::HeapCorrupt(_))) => {}
        Ok(Err(e)) => panic!("unexpected error {e}"),
        Err(p) => panic!("alloc panicked on a damaged slab counter: {p:?}"),
    }
}

/// The root's name block (`[len u64][bytes]`, an ordinary heap block: a stray store or
/// an overrun through a raw offset can reach it) whose length word says u64::MAX:
/// `Segment::root_named` and `Segment::root_id` must report `HeapCorrupt`, not panic on
/// the overflow of `8 + len`.
#[test]
fn a_damaged_root_name_length_is_heap_corrupt_not_a_panic() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p)).unwrap();
    seg.transaction(|tx| tx.root_named::<u64>("app-v1").map(drop))
        .unwrap();
    // The root record is header line 1: [offset, size, align, tag, name].
    let name: u64 = seg.get(64 + 32).unwrap();
    assert_ne!(name, 0);
    seg.transaction(|tx| tx.put(name, &u64::MAX)).unwrap();
    for (what, r) in [
        (
            "root_named",
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                seg.root_named::<u64>("app-v1").map(drop)
            })),
        ),
        (
            "root_id",
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| seg.root_id().map(drop))),
        ),
    ] {
        match r {
            Ok(Err(Error::HeapCorrupt(_))) => {}
            Ok(other) => panic!("{what}: {other:?}"),
            Err(p) => panic!("Segment::{what} panicked on a damaged root name: {p:?}"),
        }
    }
}

/// A root whose name block shares a slab with blocks another transaction is
/// allocating: that transaction holds the slab's descriptor (read for update) until it
/// ends, so `Segment::root_named` on another thread meets a lock conflict. That is
/// `Error::Conflict` (transient: try again), not `Error::HeapCorrupt` (the segment is
/// damaged), which is what `found_id` turns every error of reading the name into.
#[test]
fn a_lock_conflict_on_the_root_name_is_not_reported_as_heap_corruption() {
    let p = Place::new();
    let o = opts(&p).lock_wait(std::time::Duration::from_millis(50));
    let seg = Segment::open(&p.path, &o).unwrap();
    let lane = seg
        .transaction(|tx| tx.root_named::<u64>("app").map(|_| tx.lane()))
        .unwrap();
    // Not a damaged heap.
    assert!(seg.check().unwrap().is_clean());
    assert!(seg.root_named::<u64>("app").unwrap().is_some());
    // Another transaction in the same lane (so the same arena) allocates a 16-byte block
    // from the slab the 11-byte name block ("app" and its length) lies in.
    let mut tx = seg.begin().unwrap();
    assert_eq!(tx.lane(), lane, "the test needs the same arena");
    tx.alloc(5u64).unwrap();
    let seen = std::thread::scope(|s| {
        s.spawn(|| seg.root_named::<u64>("app").map(drop))
            .join()
            .unwrap()
    });
    drop(tx);
    match seen {
        Err(Error::Conflict { .. }) | Ok(()) => {}
        Err(e) => panic!("a lock conflict reported as: {e}"),
    }
}
