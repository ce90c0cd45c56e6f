//! Every heap and collection call is all or nothing: a call that fails part way (here:
//! `UndoLogFull`, with the undo log made small) leaves nothing of itself behind, so the
//! transaction stays usable and a commit keeps exactly the calls that succeeded. The
//! calls change metadata that earlier calls of the same transaction already logged, so
//! this also checks that those bytes are put back as the failed call found them. Every
//! test runs under every guard.

mod common;

use std::collections::BTreeMap;

use common::{guards, Place};
use rand::{Rng, SeedableRng};
use vista::{Error, PHashMap, PVec, Protection, Segment};

fn open(p: &Place, guard: Protection, undo: u64) -> Segment {
    Segment::open(
        &p.path,
        &p.opts(8 << 20).protection(guard).undo_log_size(undo),
    )
    .unwrap()
}

/// Random inserts, removes, pushes and pops in one transaction until one fails with
/// `UndoLogFull`; then commit (or abort) and compare with a model of the calls that
/// succeeded. The segment's heap must be clean after each round.
#[test]
fn a_failed_collection_call_leaves_nothing_for_the_commit() {
    for guard in guards() {
        for seed in 0..12u64 {
            let p = Place::new();
            // Log sizes that do not divide evenly into the records, so that the call
            // that meets the full log is sometimes part way (a bucket split, a chunk).
            let seg = open(&p, guard, 4096 + 1531 * seed);
            let (map, vec) = seg
                .transaction(|tx| {
                    Ok::<_, Error>((PHashMap::<u64, u64>::new(tx)?, PVec::<u64>::new(tx)?))
                })
                .unwrap();
            let mut model_map = BTreeMap::new();
            let mut model_vec = Vec::new();
            let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
            for round in 0..6 {
                let (mut next_map, mut next_vec) = (model_map.clone(), model_vec.clone());
                let mut tx = seg.begin().unwrap();
                let stopped = loop {
                    let k = rng.gen_range(0..2000u64);
                    let r = match rng.gen_range(0..4) {
                        0 => map.insert(&mut tx, &k, k * 7 + round).map(|_| {
                            next_map.insert(k, k * 7 + round);
                        }),
                        1 => map.remove(&mut tx, &k).map(|_| {
                            next_map.remove(&k);
                        }),
                        2 => vec.push(&mut tx, k).map(|()| next_vec.push(k)),
                        _ => vec.pop(&mut tx).map(|_| {
                            next_vec.pop();
                        }),
                    };
                    if let Err(e) = r {
                        break e;
                    }
                };
                assert!(
                    matches!(stopped, Error::UndoLogFull { .. }),
                    "{guard:?} seed {seed}: {stopped}"
                );
                // Odd rounds abort: the transaction's calls before the failure go too.
                if round % 2 == 0 {
                    tx.commit().unwrap();
                    (model_map, model_vec) = (next_map, next_vec);
                } else {
                    tx.abort().unwrap();
                }
                let report = seg.check().unwrap();
                assert!(
                    report.is_clean(),
                    "{guard:?} seed {seed} round {round}: {:?}",
                    report.problems
                );
                let (got_map, got_vec) = seg
                    .read_transaction(|tx| {
                        let mut pairs = Vec::new();
                        for e in map.iter(tx) {
                            pairs.push(e?);
                        }
                        Ok::<_, Error>((pairs, vec.to_vec(tx)?, map.len(tx)?))
                    })
                    .map(|(pairs, v, n)| {
                        let mut m: BTreeMap<u64, u64> = pairs.into_iter().collect();
                        assert_eq!(n, m.len() as u64, "{guard:?} seed {seed}: counted length");
                        (std::mem::take(&mut m), v)
                    })
                    .unwrap();
                assert_eq!(
                    got_map, model_map,
                    "{guard:?} seed {seed} round {round}: map"
                );
                assert_eq!(
                    got_vec, model_vec,
                    "{guard:?} seed {seed} round {round}: vec"
                );
            }
        }
    }
}

/// The same for a conflict: a call that fails because another transaction holds a
/// range it needs keeps none of its changes, and the transaction commits the rest. One
/// conflict comes first (a push onto a vector whose header another transaction holds:
/// nothing changed yet), the other part way (a map insert that wrote its bucket's
/// slot, then meets its entry counter held by another transaction).
#[test]
fn a_call_that_conflicts_leaves_nothing_for_the_commit() {
    for guard in guards() {
        let p = Place::new();
        let seg = Segment::open(
            &p.path,
            &p.opts(4 << 20)
                .protection(guard)
                .lock_wait(std::time::Duration::from_millis(20)),
        )
        .unwrap();
        let (first, second, map) = seg
            .transaction(|tx| {
                Ok::<_, Error>((
                    PVec::<u64>::new(tx)?,
                    PVec::<u64>::new(tx)?,
                    PHashMap::<u64, u64>::new(tx)?,
                ))
            })
            .unwrap();
        let mut tx = seg.begin().unwrap();
        for i in 0..10 {
            first.push(&mut tx, i).unwrap();
        }
        let (held, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut other = seg.begin().unwrap();
                other.set_range(second.offset(), 8).unwrap();
                // The map's entry counters: the 16 lines after its first.
                other.read_for_update(map.offset() + 64, 16 * 64).unwrap();
                held.wait();
                release.wait();
                drop(other);
            });
            held.wait();
            let e = second.push(&mut tx, 99).unwrap_err();
            assert!(matches!(e, Error::Conflict { .. }), "{guard:?}: {e}");
            let e = map.insert(&mut tx, &1, 10).unwrap_err();
            assert!(matches!(e, Error::Conflict { .. }), "{guard:?}: {e}");
            release.wait();
        });
        tx.commit().unwrap();
        assert!(seg.check().unwrap().is_clean(), "{guard:?}");
        let (va, vb, found, n) = seg
            .read_transaction(|tx| {
                Ok::<_, Error>((
                    first.to_vec(tx)?,
                    second.to_vec(tx)?,
                    map.get(tx, &1)?,
                    map.len(tx)?,
                ))
            })
            .unwrap();
        assert_eq!(va, (0..10).collect::<Vec<u64>>(), "{guard:?}");
        assert!(vb.is_empty(), "{guard:?}");
        assert_eq!(
            (found, n),
            (None, 0),
            "{guard:?}: the insert left its entry"
        );
    }
}
