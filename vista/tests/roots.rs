//! Named roots: identity by a chosen name plus size and alignment, the words of a
//! mismatch, and the migration of roots made by `root::<T>()`.

mod common;

use common::Place;
use vista::{Error, Segment};

fn opts(p: &Place) -> vista::Options {
    p.opts(1 << 20).undo_log_size(64 << 10)
}

mod old_home {
    /// A root type as a program declared it first.
    #[derive(Clone, Copy, vista::bytemuck::Pod, vista::bytemuck::Zeroable)]
    #[bytemuck(crate = "vista::bytemuck")]
    #[repr(C)]
    pub struct Todo {
        pub done: u64,
        pub left: u64,
    }
}

mod new_home {
    /// The same type, moved to another module (its `type_name` changed).
    #[derive(Clone, Copy, vista::bytemuck::Pod, vista::bytemuck::Zeroable)]
    #[bytemuck(crate = "vista::bytemuck")]
    #[repr(C)]
    pub struct Todo {
        pub done: u64,
        pub left: u64,
    }
}

fn mismatch<T: std::fmt::Debug>(r: Result<T, Error>) -> String {
    match r {
        Err(e @ Error::RootNameMismatch { .. }) => e.to_string(),
        other => panic!("expected RootNameMismatch, got {other:?}"),
    }
}

#[test]
fn a_named_root_survives_reopen_and_a_moved_type() {
    let p = Place::new();
    let ptr = {
        let seg = Segment::open(&p.path, &opts(&p)).unwrap();
        assert_eq!(seg.root_named::<old_home::Todo>("todo-v1").unwrap(), None);
        let mut tx = seg.begin().unwrap();
        let r = tx.root_named::<old_home::Todo>("todo-v1").unwrap();
        tx.get_mut(r).unwrap().left = 3;
        tx.commit().unwrap();
        seg.close().unwrap();
        r
    };
    let seg = Segment::open(&p.path, &opts(&p)).unwrap();
    // Another type of the same layout, in another module: the name is what counts.
    let r = seg
        .root_named::<new_home::Todo>("todo-v1")
        .unwrap()
        .unwrap();
    assert_eq!(r.cast::<()>(), ptr.cast::<()>());
    assert_eq!(seg.get_ptr(r).unwrap().left, 3);
    let id = seg.root_id().unwrap().unwrap();
    assert_eq!(
        (id.name.as_deref(), id.size, id.align),
        (Some("todo-v1"), 16, 8)
    );
    assert!(seg.check().unwrap().is_clean());
    // The old call does not mistake a named root for its own.
    assert!(matches!(
        seg.root::<new_home::Todo>(),
        Err(Error::RootMismatch { .. })
    ));
}

#[test]
fn mismatches_say_what_was_found_and_what_to_do() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p)).unwrap();
    let mut tx = seg.begin().unwrap();
    tx.root_named::<[u64; 2]>("todo-v1").unwrap();
    tx.commit().unwrap();

    let other_name = mismatch(seg.root_named::<[u64; 2]>("todo-v2"));
    assert!(
        other_name.contains("the root named \"todo-v1\", a 16-byte type aligned to 8")
            && other_name.contains("the root named \"todo-v2\"")
            && other_name.contains("right segment"),
        "{other_name}"
    );
    let other_size = mismatch(seg.root_named::<[u64; 3]>("todo-v1"));
    assert!(
        other_size.contains("24-byte") && other_size.contains("size or alignment changed"),
        "{other_size}"
    );
    let other_align = mismatch(seg.root_named::<[u32; 4]>("todo-v1"));
    assert!(other_align.contains("aligned to 4"), "{other_align}");
    // A refused call in a transaction leaves it usable and changes nothing.
    let mut tx = seg.begin().unwrap();
    mismatch(tx.root_named::<[u64; 2]>("todo-v2"));
    let r = tx.root_named::<[u64; 2]>("todo-v1").unwrap();
    tx.get_mut(r).unwrap()[1] = 9;
    tx.commit().unwrap();
    assert_eq!(seg.get_ptr(r).unwrap(), [0, 9]);
}

#[test]
fn a_root_made_by_root_t_is_adopted_or_claimed() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p)).unwrap();
    let mut tx = seg.begin().unwrap();
    let legacy = tx.root::<old_home::Todo>().unwrap();
    tx.get_mut(legacy).unwrap().done = 5;
    tx.commit().unwrap();

    // Same type: found read-only, named by the first transaction that asks.
    assert_eq!(
        seg.root_named::<old_home::Todo>("todo-v1").unwrap(),
        Some(legacy)
    );
    assert_eq!(seg.root_id().unwrap().unwrap().name, None);
    let mut tx = seg.begin().unwrap();
    assert_eq!(tx.root_named::<old_home::Todo>("todo-v1").unwrap(), legacy);
    drop(tx); // aborted: still unnamed
    assert_eq!(seg.root_id().unwrap().unwrap().name, None);
    assert!(seg.root::<old_home::Todo>().unwrap().is_some());

    // A moved type no longer matches the type-name tag: the error says how to claim it.
    let moved = mismatch(seg.root_named::<new_home::Todo>("todo-v1"));
    assert!(
        moved.contains("renamed or moved") && moved.contains("claim_root"),
        "{moved}"
    );
    let mut tx = seg.begin().unwrap();
    assert!(matches!(
        tx.claim_root::<[u64; 3]>("todo-v1"),
        Err(Error::RootNameMismatch { .. })
    ));
    let claimed = tx.claim_root::<new_home::Todo>("todo-v1").unwrap();
    tx.commit().unwrap();
    assert_eq!(claimed.offset(), legacy.offset());
    assert_eq!(seg.get_ptr(claimed).unwrap().done, 5);
    assert_eq!(
        seg.root_id().unwrap().unwrap().name.as_deref(),
        Some("todo-v1")
    );
    // Renaming frees the old name block: the heap holds the root and one name.
    let mut tx = seg.begin().unwrap();
    tx.claim_root::<new_home::Todo>("todo-v2").unwrap();
    tx.commit().unwrap();
    assert!(seg
        .root_named::<new_home::Todo>("todo-v2")
        .unwrap()
        .is_some());
    let report = seg.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.stats.live_blocks, 2, "the root and its name");
}

#[test]
fn creating_a_named_root_out_of_space_leaves_the_transaction_usable() {
    let p = Place::new();
    // Room for the heap's header and nothing else.
    let seg = Segment::open(&p.path, &p.opts(4096 + 4 * 4096)).unwrap();
    let mut tx = seg.begin().unwrap();
    assert!(matches!(
        tx.root_named::<u64>("r"),
        Err(Error::OutOfSpace { .. })
    ));
    tx.commit().unwrap();
    assert!(seg.root_named::<u64>("r").unwrap().is_none());
}
