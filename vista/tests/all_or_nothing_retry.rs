//! `Segment::transaction` runs its closure again when a heap call fails part
//! way with a conflict (the call's undo must leave the conflict as the last call's
//! result), and the committed result holds exactly one run's changes.

mod common;

use std::time::Duration;

use common::{guards, Place};
use vista::{Error, PHashMap, PVec, Segment};

#[test]
fn a_call_that_conflicts_part_way_is_retried_and_commits_once() {
    for g in guards() {
        let p = Place::new();
        let seg = Segment::open(
            &p.path,
            &p.opts(4 << 20)
                .protection(g)
                .lock_wait(Duration::from_millis(1)),
        )
        .unwrap();
        let (v, m) = seg
            .transaction(|tx| {
                Ok::<_, Error>((PVec::<u64>::new(tx)?, PHashMap::<u64, u64>::new(tx)?))
            })
            .unwrap();
        let (held, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        let runs = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            s.spawn(|| {
                let other = seg.begin().unwrap();
                // The map's entry counters (16 lines after its first): an insert changes
                // its bucket first and its lane's counter last.
                other.read_for_update(m.offset() + 64, 16 * 64).unwrap();
                held.wait();
                release.wait();
                drop(other);
            });
            held.wait();
            let mut first = true;
            seg.transaction(|tx| {
                runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                v.push(tx, 7)?;
                let r = m.insert(tx, &1, 10).map(drop);
                if first {
                    first = false;
                    assert!(matches!(r, Err(Error::Conflict { .. })), "{g:?}: {r:?}");
                    release.wait();
                }
                r
            })
            .unwrap_or_else(|e| panic!("{g:?}: {e}"));
        });
        assert!(runs.into_inner() >= 2, "{g:?}: the conflict was retried");
        assert!(seg.check().unwrap().is_clean(), "{g:?}");
        let (vv, mm) = seg
            .read_transaction(|tx| Ok::<_, Error>((v.to_vec(tx)?, m.get(tx, &1)?)))
            .unwrap();
        assert_eq!(vv, vec![7], "{g:?}");
        assert_eq!(mm, Some(10), "{g:?}");
    }
}
