//! Read-only transactions (`Segment::begin_read`, `Segment::read_transaction`): they see
//! committed bytes only, keep what they read from changing until they end, refuse every
//! change without changing anything, never hold a checkpoint off, and count as read
//! guards of their thread. Every test runs under every guard.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{guards, Place};
use vista::{Error, PHashMap, PVec, Protection, Segment};

/// `EIO`, the errno the injected failures carry.
const EIO: i32 = 5;

fn open(p: &Place, guard: Protection) -> Segment {
    Segment::open(
        &p.path,
        &p.opts(1 << 20)
            .protection(guard)
            .lock_wait(Duration::from_millis(20))
            .retries(2),
    )
    .unwrap()
}

#[test]
fn reads_committed_bytes_and_collections() {
    for guard in guards() {
        let p = Place::new();
        let seg = open(&p, guard);
        let (word, map, vec) = seg
            .transaction(|tx| {
                let word = tx.alloc(7u64)?;
                let map = PHashMap::<u64, u64>::new(tx)?;
                let vec = PVec::<u32>::new(tx)?;
                for k in 0..100 {
                    map.insert(tx, &k, k * 3)?;
                    vec.push(tx, k as u32)?;
                }
                Ok::<_, Error>((word, map, vec))
            })
            .unwrap();
        let got = seg
            .read_transaction(|tx| {
                assert!(tx.is_read_only(), "{guard:?}");
                let a = tx.get_ptr(word)?;
                let v = map.get(tx, &42)?;
                let n = vec.len(tx)?;
                let last = vec.get(tx, 99)?;
                let sum: u64 = map
                    .iter(tx)
                    .map(|e| e.map(|(_, v)| v))
                    .sum::<Result<u64, _>>()?;
                Ok::<_, Error>((a, v, n, last, sum))
            })
            .unwrap();
        assert_eq!(got, (7, Some(126), 100, Some(99), 3 * 4950), "{guard:?}");
    }
}

#[test]
fn every_change_is_refused_and_nothing_changes() {
    for guard in guards() {
        let p = Place::new();
        let seg = open(&p, guard);
        let (at, map) = seg
            .transaction(|tx| {
                let at = tx.alloc(1u64)?.offset();
                let map = PHashMap::<u64, u64>::new(tx)?;
                map.insert(tx, &1, 10)?;
                Ok::<_, Error>((at, map))
            })
            .unwrap();
        let before = seg.read(0, seg.len()).unwrap().to_vec();
        let mut tx = seg.begin_read().unwrap();
        let refused = |r: vista::Result<()>, what: &str| match r {
            Err(Error::ReadOnly { .. }) => {}
            other => panic!("{guard:?}: {what} in a read-only transaction gave {other:?}"),
        };
        refused(tx.put(at, &2u64), "put");
        assert!(
            matches!(tx.write(at, &[9; 3]), Err(Error::ReadOnly { offset, len: 3 }) if offset == at),
            "{guard:?}: the error names the range asked for"
        );
        refused(tx.set_range(at, 8).map(drop), "set_range");
        refused(tx.alloc(5u64).map(drop), "alloc");
        refused(map.insert(&mut tx, &2, 20).map(drop), "insert");
        refused(map.get_mut(&mut tx, &1).map(drop), "get_mut");
        refused(map.remove(&mut tx, &1).map(drop), "remove");
        // Still usable for reading, and nothing changed.
        assert_eq!(tx.get::<u64>(at).unwrap(), 1, "{guard:?}");
        assert_eq!(map.get(&tx, &1).unwrap(), Some(10), "{guard:?}");
        tx.commit().unwrap();
        assert_eq!(
            seg.read(0, seg.len()).unwrap().to_vec(),
            before,
            "{guard:?}"
        );
        let tx = seg.begin_read().unwrap();
        tx.abort().unwrap();
        seg.transaction(|tx| tx.put(at, &3u64)).unwrap();
        assert_eq!(
            seg.get::<u64>(at).unwrap(),
            3,
            "{guard:?}: writers go on after"
        );
    }
}

#[test]
fn never_sees_uncommitted_bytes_and_holds_what_it_read() {
    for guard in guards() {
        let p = Place::new();
        let seg = open(&p, guard);
        seg.transaction(|tx| tx.put(0, &1u64)).unwrap();
        // A writer of another thread holds the word: the reader waits, then conflicts.
        let holding = AtomicBool::new(false);
        let release = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut tx = seg.begin().unwrap();
                tx.put(0, &2u64).unwrap();
                holding.store(true, Ordering::SeqCst);
                while !release.load(Ordering::SeqCst) {
                    std::thread::yield_now();
                }
                tx.abort().unwrap();
            });
            while !holding.load(Ordering::SeqCst) {
                std::thread::yield_now();
            }
            let r = seg.begin_read().unwrap().get::<u64>(0);
            assert!(
                matches!(r, Err(Error::Conflict { offset: 0, len: 8 })),
                "{guard:?}: a reader saw {r:?} under an uncommitted write"
            );
            release.store(true, Ordering::SeqCst);
        });
        assert_eq!(seg.read_transaction(|tx| tx.get::<u64>(0)).unwrap(), 1);

        // A reader holds what it read: another thread's writer cannot change it.
        let tx = seg.begin_read().unwrap();
        assert_eq!(tx.get::<u64>(0).unwrap(), 1);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut w = seg.begin().unwrap();
                let r = w.put(0, &5u64);
                assert!(
                    matches!(r, Err(Error::Conflict { .. })),
                    "{guard:?}: a writer changed bytes a reader holds: {r:?}"
                );
            });
        });
        assert_eq!(tx.get::<u64>(0).unwrap(), 1, "{guard:?}: repeatable read");
        drop(tx);
        seg.transaction(|tx| tx.put(0, &5u64)).unwrap();
        assert_eq!(seg.get::<u64>(0).unwrap(), 5, "{guard:?}");
    }
}

#[test]
fn is_a_read_guard_of_its_thread_and_never_holds_a_checkpoint_off() {
    for guard in guards() {
        let p = Place::new();
        let seg = open(&p, guard);
        seg.transaction(|tx| tx.put(0, &1u64)).unwrap();
        let reader = seg.begin_read().unwrap();
        assert_eq!(reader.get::<u64>(0).unwrap(), 1);
        // This thread's writer fails at once instead of waiting for itself.
        let started = std::time::Instant::now();
        let r = seg.transaction(|tx| tx.put(0, &2u64));
        assert!(
            matches!(r, Err(Error::HeldByThisThread { offset: 0, len: 8 })),
            "{guard:?}: {r:?}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{guard:?}: the writer waited for its own thread's reader"
        );
        // A checkpoint (here on the reader's own thread, which would wait forever for a
        // writer of this thread) does not wait for a reader.
        seg.checkpoint().unwrap();
        drop(reader);
        seg.transaction(|tx| tx.put(0, &2u64)).unwrap();
        // Two readers of one thread share.
        let (a, b) = (seg.begin_read().unwrap(), seg.begin_read().unwrap());
        assert_eq!(a.get::<u64>(0).unwrap(), b.get::<u64>(0).unwrap());
    }
}

#[test]
fn readers_run_beside_writers_of_other_threads() {
    for guard in guards() {
        let p = Place::new();
        let seg = Segment::open(&p.path, &p.opts(1 << 20).protection(guard)).unwrap();
        // Two words that always hold the same value: a reader must never see them differ.
        seg.transaction(|tx| tx.put(0, &[0u64, 0u64])).unwrap();
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 1..=2000u64 {
                    seg.transaction(|tx| {
                        tx.put(0, &i)?;
                        tx.put(4096, &i)
                    })
                    .unwrap();
                }
                stop.store(true, Ordering::SeqCst);
            });
            let mut reads = 0;
            while !stop.load(Ordering::SeqCst) || reads == 0 {
                let (a, b) = seg
                    .read_transaction(|tx| {
                        Ok::<_, Error>((tx.get::<u64>(0)?, tx.get::<u64>(4096)?))
                    })
                    .unwrap();
                assert_eq!(a, b, "{guard:?}: a reader saw half a transaction");
                reads += 1;
            }
        });
        assert_eq!(seg.get::<u64>(4096).unwrap(), 2000, "{guard:?}");
    }
}

#[test]
fn makes_no_system_call_that_could_fail() {
    // A read-only transaction opens nothing for writing: no write, sync, truncate, map
    // or `mprotect` (under every guard), so no injected I/O failure can reach it.
    for guard in guards() {
        let p = Place::new();
        let faults = vista::rio_cache::Faults::counting();
        let seg = Segment::open(
            &p.path,
            &p.opts(1 << 20).protection(guard).faults(faults.clone()),
        )
        .unwrap();
        let map = seg
            .transaction(|tx| {
                let m = PHashMap::<u64, u64>::new(tx)?;
                m.insert(tx, &3, 9)?;
                Ok::<_, Error>(m)
            })
            .unwrap();
        let before = faults.count();
        for _ in 0..100 {
            assert_eq!(seg.read_transaction(|tx| map.get(tx, &3)).unwrap(), Some(9));
            let mut tx = seg.begin_read().unwrap();
            assert!(matches!(
                map.insert(&mut tx, &3, 1),
                Err(Error::ReadOnly { .. })
            ));
        }
        assert_eq!(
            faults.count(),
            before,
            "{guard:?}: read-only transactions made I/O calls: {:?}",
            &faults.calls()[before as usize..]
        );
        // And with every further call failing, reads still work.
        faults.fail_from(faults.count(), EIO);
        assert_eq!(
            seg.read_transaction(|tx| map.get(tx, &3)).unwrap(),
            Some(9),
            "{guard:?}"
        );
        faults.disarm();
    }
}
