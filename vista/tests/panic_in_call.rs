//! A panic inside a heap or collection call (here in a key type's `release`, run by
//! `PHashMap::free` between the frees of its buckets), caught with `catch_unwind`,
//! leaves the call half done: the map's header and directory live while some of its
//! buckets are freed. Committing that would let the map's own calls read (and write)
//! other blocks once those are reused, so the commit refuses with
//! `Error::CallPanicked` and rolls the whole transaction back.

mod common;

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::{guards, Place};
use vista::collections::HashKey;
use vista::{Error, PHashMap, Segment, Transaction};

thread_local! {
    /// Releases left before `release` panics (u64::MAX: never).
    static RELEASES_LEFT: Cell<u64> = const { Cell::new(u64::MAX) };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, vista::bytemuck::Pod, vista::bytemuck::Zeroable)]
#[repr(transparent)]
struct Key(u64);

impl HashKey for Key {
    type Query = u64;
    const KIND: u64 = 7;
    fn hash_query(q: &u64) -> u64 {
        q.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
    fn matches(&self, _: &Transaction<'_>, q: &u64) -> vista::Result<bool> {
        Ok(self.0 == *q)
    }
    fn store(_: &mut Transaction<'_>, q: &u64) -> vista::Result<Key> {
        Ok(Key(*q))
    }
    fn release(self, _: &mut Transaction<'_>) -> vista::Result<()> {
        RELEASES_LEFT.with(|n| {
            let left = n.get();
            assert!(left != 0, "a key's release panics");
            n.set(left.saturating_sub(1));
        });
        Ok(())
    }
}

#[test]
fn a_call_that_panics_part_way_is_not_committed_half_done() {
    for g in guards() {
        let p = Place::new();
        let seg = Segment::open(
            &p.path,
            &p.opts(4 << 20).protection(g).undo_log_size(1 << 20),
        )
        .unwrap();
        let map = seg
            .transaction(|tx| {
                let m = PHashMap::<Key, u64>::with_capacity(tx, 400)?;
                for k in 0..300u64 {
                    m.insert(tx, &k, k)?;
                }
                Ok::<_, Error>(m)
            })
            .unwrap();
        // The free panics at the last key's release: every bucket but the last freed.
        let mut tx = seg.begin().unwrap();
        RELEASES_LEFT.with(|n| n.set(299));
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let freed = catch_unwind(AssertUnwindSafe(|| map.free(&mut tx)));
        std::panic::set_hook(hook);
        RELEASES_LEFT.with(|n| n.set(u64::MAX));
        assert!(freed.is_err(), "{g:?}: the free panicked");
        let committed = tx.commit();
        // Reuse the freed space: blocks of a bucket's size, filled.
        let fill = seg
            .transaction(|tx| {
                let mut v = Vec::new();
                for _ in 0..64 {
                    let b = tx.alloc_bytes(1024)?;
                    tx.bytes_mut(b)?.fill(0xEE);
                    v.push(b);
                }
                Ok::<_, Error>(v)
            })
            .unwrap();
        let map_now = seg.read_transaction(|tx| {
            let mut n = 0;
            for e in map.iter(tx) {
                e?;
                n += 1;
            }
            Ok::<_, Error>(n)
        });
        let whole = match &map_now {
            Ok(300) => "intact",
            Err(Error::BadHandle { .. }) => "freed",
            _ => "torn",
        };
        assert!(
            matches!(committed, Err(Error::CallPanicked)) && whole == "intact",
            "{g:?}: the commit after a panic inside PHashMap::free succeeded ({committed:?}) \
             and kept the map half freed: after {} blocks reused its buckets, iterating \
             it gives {map_now:?}",
            fill.len()
        );
    }
}
