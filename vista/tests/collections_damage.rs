//! Collections whose contents a wild store damaged (or a program crafted): every
//! operation reports `Error::HeapCorrupt` (or succeeds), never a panic or an abort
//! (docs/heap.md, "Collections": "a damaged collection is reported as
//! Error::HeapCorrupt").

mod common;

use common::Place;
use vista::{Error, PHashMap, PVec, Segment, Transaction};

fn no_panic<T>(what: &str, f: impl FnOnce() -> Result<T, Error>) {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(Ok(_) | Err(Error::HeapCorrupt(_))) => {}
        Ok(Err(e)) => panic!("{what}: unexpected error {e}"),
        Err(p) => panic!("{what} panicked on a damaged collection: {p:?}"),
    }
}

/// A vector of three elements whose length word says 2^62: `remove(0)` copies the
/// "tail" of 2^62 - 1 elements into a buffer sized `(to - from) * size` (an overflow
/// panic in a debug build; in a release build a capacity overflow or an allocation
/// failure, which aborts the process).
#[test]
fn a_damaged_vector_length_is_heap_corrupt_not_a_panic() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(1 << 20)).unwrap();
    let v: PVec<u64> = seg
        .transaction(|tx| {
            let v = PVec::new(tx)?;
            for i in 0..3 {
                v.push(tx, i)?;
            }
            Ok::<_, Error>(v)
        })
        .unwrap();
    // The length word, at offset 8 of the header.
    seg.transaction(|tx| tx.put(v.offset() + 8, &(1u64 << 62)))
        .unwrap();
    let mut tx = seg.begin().unwrap();
    no_panic("PVec::remove", || v.remove(&mut tx, 0));
}

/// A map whose per-lane entry counters a wild store set to i64::MAX: `len` sums them
/// and `insert` adds one to its stripe, both with unchecked i64 arithmetic.
#[test]
fn damaged_map_counters_are_heap_corrupt_not_a_panic() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(1 << 20)).unwrap();
    let m: PHashMap<u64, u64> = seg
        .transaction(|tx| {
            let m = PHashMap::new(tx)?;
            m.insert(tx, &1, 1)?;
            Ok::<_, Error>(m)
        })
        .unwrap();
    // Lines 1..=16 of the header: one counter per lane stripe.
    seg.transaction(|tx: &mut Transaction<'_>| {
        for s in 1..=16u64 {
            tx.put(m.offset() + 64 * s, &i64::MAX)?;
        }
        Ok::<_, Error>(())
    })
    .unwrap();
    let tx = seg.begin().unwrap();
    no_panic("PHashMap::len", || m.len(&tx));
    drop(tx);
    let mut tx = seg.begin().unwrap();
    no_panic("PHashMap::insert", || m.insert(&mut tx, &2, 2));
}

/// User input, not damage: `PHashMap::with_capacity(n)` for a huge `n` (a count read
/// from a file, say) must be an error such as `OutOfSpace`, not an arithmetic panic
/// (`2 * n` overflows for n > u64::MAX / 2).
#[test]
fn a_map_with_a_huge_capacity_is_an_error_not_a_panic() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(1 << 20)).unwrap();
    let mut tx = seg.begin().unwrap();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        PHashMap::<u64, u64>::with_capacity(&mut tx, u64::MAX).map(drop)
    })) {
        Ok(Err(Error::OutOfSpace { .. } | Error::AllocTooLarge { .. }) | Ok(())) => {}
        Ok(Err(e)) => panic!("unexpected error {e}"),
        Err(p) => panic!("PHashMap::with_capacity(u64::MAX) panicked: {p:?}"),
    }
}
