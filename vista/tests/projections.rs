//! Projections: an element or a field of a heap block through a typed place, logged
//! and locked alone, checked against its block.

mod common;

use common::Place;
use vista::heap::HandleError;
use vista::{bytemuck, Error, PPtr, Segment};

#[derive(Clone, Copy, Debug, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Account {
    id: u64,
    balance: i64,
    history: [u32; 8],
}

#[test]
fn get_mut_on_an_element_logs_only_the_element() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(1 << 20).undo_log_size(64 << 10)).unwrap();
    let mut tx = seg.begin().unwrap();
    let table = tx.alloc_zeroed::<[u64; 4096]>().unwrap();
    tx.commit().unwrap();

    let mut tx = seg.begin().unwrap();
    let (before, _) = tx.undo_log_usage();
    *tx.get_mut(table.index(4000)).unwrap() = 7;
    let (after, _) = tx.undo_log_usage();
    assert!(
        after - before <= 64,
        "one element logged, not the block: {} bytes",
        after - before
    );
    tx.commit().unwrap();
    assert_eq!(seg.get_ptr(table.index(4000)).unwrap(), 7);
    assert_eq!(seg.get_ptr(table).unwrap().iter().sum::<u64>(), 7);

    // Two transactions of this thread change elements on different lines at once.
    let mut a = seg.begin().unwrap();
    let mut b = seg.begin().unwrap();
    *a.get_mut(table.index(0)).unwrap() = 1;
    *b.get_mut(table.index(8)).unwrap() = 2;
    assert!(!a.conflicted() && !b.conflicted());
    // The same line is refused.
    assert!(b.get_mut(table.index(1)).is_err());
    a.commit().unwrap();
    b.commit().unwrap();
    assert_eq!(seg.get_ptr(table.index(0)).unwrap(), 1);
    assert_eq!(seg.get_ptr(table.index(8)).unwrap(), 2);
}

#[test]
fn fields_by_closure_and_by_offset_of() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(1 << 20)).unwrap();
    let mut tx = seg.begin().unwrap();
    let acct = tx
        .alloc(Account {
            id: 1,
            balance: 10,
            history: [0; 8],
        })
        .unwrap();
    *tx.get_mut(acct.project(|a| &a.balance)).unwrap() -= 3;
    *tx.get_mut(acct.project(|a| &a.history).index(2)).unwrap() = 9;
    let by_offset = acct.field::<i64>(std::mem::offset_of!(Account, balance));
    assert_eq!(by_offset, acct.project(|a| &a.balance));
    assert_eq!(by_offset.offset(), acct.offset() + 8);
    assert_eq!(tx.get_ptr(by_offset).unwrap(), 7);
    tx.commit().unwrap();
    let a = seg.get_ptr(acct).unwrap();
    assert_eq!((a.balance, a.history[2]), (7, 9));
    let accts = seg
        .transaction(|tx| tx.alloc([a; 3]))
        .expect("an array of structs");
    let second = accts.index(1).project(|a| &a.id);
    seg.transaction(|tx| tx.get_mut(second).map(|id| *id = 2))
        .unwrap();
    assert_eq!(
        seg.get_ptr(accts).unwrap().map(|a| a.id),
        [1, 2, 1],
        "only the second changed"
    );
}

#[test]
#[should_panic(expected = "out of bounds")]
fn an_index_past_the_array_panics() {
    let _ = PPtr::<[u32; 4]>::from_offset(4096).index(4);
}

#[test]
#[should_panic(expected = "part of its argument")]
fn a_projection_outside_the_value_panics() {
    static OTHER: u64 = 0;
    let _ = PPtr::<[u64; 2]>::from_offset(4096).project(|_| &OTHER);
}

#[test]
fn places_are_checked_against_their_block() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(1 << 20)).unwrap();
    let mut tx = seg.begin().unwrap();
    let small = tx.alloc([1u64; 2]).unwrap();
    // A place projected from a handle of the wrong type reaches past the block.
    let wide = small.cast::<[u64; 64]>().index(40);
    assert!(matches!(
        tx.get_mut(wide),
        Err(Error::BadHandle {
            reason: HandleError::OutsideBlock { at: 320, .. },
            ..
        })
    ));
    tx.free(small).unwrap();
    assert!(matches!(
        tx.get_ptr(small.index(1)),
        Err(Error::BadHandle {
            reason: HandleError::NotAllocated,
            ..
        })
    ));
    tx.commit().unwrap();
}
