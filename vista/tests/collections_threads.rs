//! Threads on one map: keys of different buckets never conflict (shown without timing,
//! by two transactions open at once), threads on disjoint keys see no conflict, and a
//! threaded model check with a shared counter stays serializable.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use common::Place;
use rand::{Rng, SeedableRng};
use vista::{Error, PHashMap, PString, PVec, Segment};

fn opts(p: &Place) -> vista::Options {
    p.opts(8 << 20)
        .undo_log_size(128 << 10)
        .lanes(4)
        .lock_wait(Duration::from_millis(20))
}

/// The hash the map files a `u64` key under (XXH3 of its bytes).
fn hash(k: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64(&k.to_ne_bytes())
}

#[test]
fn two_open_transactions_on_keys_of_different_buckets_do_not_conflict() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p)).unwrap();
    // Presized: every bucket has depth >= 1, so keys whose hashes differ in the top bit
    // lie in different buckets, and keys that agree in the top 17 bits in the same one.
    let map = seg
        .transaction(|tx| PHashMap::<u64, u64>::with_capacity(tx, 2000))
        .unwrap();
    let keys: Vec<u64> = (0..2000).collect();
    let (low, high): (Vec<u64>, Vec<u64>) = keys.iter().partition(|&&k| hash(k) >> 63 == 0);
    for (i, (&a, &b)) in low.iter().zip(&high).take(200).enumerate() {
        let mut t1 = seg.begin().unwrap();
        map.insert(&mut t1, &a, 1).unwrap();
        if i % 2 == 0 {
            map.remove(&mut t1, &a).unwrap();
        }
        let mut t2 = seg.begin().unwrap();
        let r = map
            .insert(&mut t2, &b, 2)
            .and_then(|_| map.get_mut(&mut t2, &b).map(|v| *v.unwrap() += 1));
        assert!(
            r.is_ok() && !t2.conflicted(),
            "keys {a} and {b} of different buckets conflicted: {r:?}"
        );
        t2.commit().unwrap();
        t1.commit().unwrap();
    }
    // The test can fail: two keys of one bucket do conflict.
    let (a, b) = keys
        .iter()
        .flat_map(|&a| keys.iter().map(move |&b| (a, b)))
        .find(|&(a, b)| a != b && hash(a) >> 47 == hash(b) >> 47)
        .unwrap_or((0, 0));
    if a != b {
        let mut t1 = seg.begin().unwrap();
        map.insert(&mut t1, &a, 1).unwrap();
        let mut t2 = seg.begin().unwrap();
        assert!(
            map.insert(&mut t2, &b, 2).is_err(),
            "one bucket, one writer"
        );
    }
    let tx = seg.begin().unwrap();
    assert_eq!(map.len(&tx).unwrap(), 200 + 100);
}

#[test]
fn threads_on_disjoint_keys_see_no_conflict_and_match_their_models() {
    let p = Place::new();
    // A segment of fewer cache lines than the lock table has stripes (65,536): every
    // line has a stripe of its own, so keys of different buckets share no lock at all
    // and no wait can be long enough to report a conflict, however loaded the machine.
    let seg = Segment::open(&p.path, &opts(&p).size(3 << 20)).unwrap();
    let threads = 4u64;
    // Thread t's keys: those whose hash has t in its top two bits. The map is presized
    // (every bucket's depth is at least 2 and nothing splits), and buckets are chosen by
    // the hash's top bits, so no two threads' keys ever share a bucket.
    let keys: Vec<Vec<u64>> = (0..threads)
        .map(|t| (0..).filter(|&k| hash(k) >> 62 == t).take(700).collect())
        .collect();
    let map = seg
        .transaction(|tx| PHashMap::<u64, u64>::with_capacity(tx, 3000))
        .unwrap();
    let conflicts = AtomicU64::new(0);
    let models: Vec<BTreeMap<u64, u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (seg, conflicts, mine) = (&seg, &conflicts, &keys[t as usize]);
                s.spawn(move || {
                    let mut rng = rand::rngs::SmallRng::seed_from_u64(t);
                    let mut model = BTreeMap::new();
                    for _ in 0..300 {
                        let ks: Vec<u64> =
                            (0..3).map(|_| mine[rng.gen_range(0..mine.len())]).collect();
                        let op = rng.gen_range(0..3);
                        let mut work = model.clone();
                        seg.transaction(|tx| {
                            work.clone_from(&model);
                            let r = (|| {
                                for &k in &ks {
                                    match op {
                                        0 => {
                                            let old = map.insert(tx, &k, k + 1)?;
                                            assert_eq!(old, work.insert(k, k + 1));
                                        }
                                        1 => assert_eq!(map.remove(tx, &k)?, work.remove(&k)),
                                        _ => assert_eq!(map.get(tx, &k)?, work.get(&k).copied()),
                                    }
                                }
                                Ok::<_, Error>(())
                            })();
                            if tx.conflicted() {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            r
                        })
                        .unwrap();
                        model = work;
                    }
                    model
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(
        conflicts.load(Ordering::Relaxed),
        0,
        "disjoint keys conflicted"
    );
    let all: BTreeMap<u64, u64> = models.into_iter().flatten().collect();
    let tx = seg.begin().unwrap();
    let found: BTreeMap<u64, u64> = map.iter(&tx).map(Result::unwrap).collect();
    assert_eq!(found, all);
    assert_eq!(map.len(&tx).unwrap(), all.len() as u64);
    drop(tx);
    assert!(seg.check().unwrap().is_clean());
}

#[test]
fn threads_sharing_keys_stay_serializable() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p).retries(10_000)).unwrap();
    let (map, log) = seg
        .transaction(|tx| {
            let map = PHashMap::<PString, u64>::new(tx)?;
            map.insert(tx, "total", 0)?;
            Ok::<_, Error>((map, PVec::<u64>::new(tx)?))
        })
        .unwrap();
    let per_thread = 60u64;
    std::thread::scope(|s| {
        for t in 0..3u64 {
            let seg = &seg;
            s.spawn(move || {
                for i in 0..per_thread {
                    seg.transaction(|tx| {
                        // Own key (inserted: splits and a string key per entry) and
                        // the shared counter, and the shared log.
                        map.insert(tx, &format!("t{t}-{i}"), i)?;
                        *map.get_mut(tx, "total")?.expect("present") += 1;
                        log.push(tx, t * 1000 + i)
                    })
                    .unwrap();
                }
            });
        }
    });
    let tx = seg.begin().unwrap();
    assert_eq!(map.get(&tx, "total").unwrap(), Some(3 * per_thread));
    assert_eq!(map.len(&tx).unwrap(), 3 * per_thread + 1);
    let mut logged = log.to_vec(&tx).unwrap();
    assert_eq!(logged.len() as u64, 3 * per_thread);
    // Each thread's entries appear in its own order.
    for t in 0..3 {
        let mine: Vec<u64> = logged.iter().copied().filter(|x| x / 1000 == t).collect();
        assert!(
            mine.windows(2).all(|w| w[0] < w[1]),
            "thread {t} out of order"
        );
    }
    logged.sort_unstable();
    logged.dedup();
    assert_eq!(
        logged.len() as u64,
        3 * per_thread,
        "no entry lost or doubled"
    );
    drop(tx);
    assert!(seg.check().unwrap().is_clean());
}
