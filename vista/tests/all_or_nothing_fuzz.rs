//! Failed heap and collection calls (UndoLogFull at random points) mixed with
//! raw logged writes into blocks, nested calls (string keys, buffer moves), and more
//! calls after a failure in the same transaction; then commit or abort and compare
//! with a model of the calls that succeeded.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::BTreeMap;

use common::{guards, Place};
use rand::{Rng, SeedableRng};
use vista::{Error, PBytes, PHashMap, PPtr, PVec, Protection, Segment};

/// Calls that succeeded and failed, by kind of operation (printed, to show that both
/// happen).
static OKS: [AtomicU64; 14] = [const { AtomicU64::new(0) }; 14];
static FAILS: [AtomicU64; 14] = [const { AtomicU64::new(0) }; 14];

fn counts(c: &[AtomicU64; 14]) -> Vec<u64> {
    c.iter().map(|n| n.load(Ordering::Relaxed)).collect()
}

#[derive(Clone, Default, Debug, PartialEq)]
struct Model {
    map: BTreeMap<String, u64>,
    vec: Vec<u64>,
    bufs: Vec<(PBytes, Vec<u8>)>,
    raw: Vec<(PPtr<[u8]>, Vec<u8>)>,
}

fn run(guard: Protection, seed: u64, undo: u64, rounds: u32, ops: u32, block: bool) {
    let place = Place::new();
    let seg = Segment::open(
        &place.path,
        &place
            .opts(16 << 20)
            .protection(guard)
            .undo_log_size(undo)
            .lock_wait(std::time::Duration::ZERO),
    )
    .unwrap();
    let (map, vec) = seg
        .transaction(|tx| {
            Ok::<_, Error>((
                PHashMap::<vista::PString, u64>::new(tx)?,
                PVec::<u64>::new(tx)?,
            ))
        })
        .unwrap();
    let mut model = Model::default();
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    for round in 0..rounds {
        let mut next = model.clone();
        // Another transaction holds some heap metadata and data lines exclusively (it
        // changes nothing): calls conflict at random points.
        let blocker = if block {
            let b = seg.begin().unwrap();
            for _ in 0..rng.gen_range(1..6) {
                let line = if rng.gen_bool(0.5) {
                    rng.gen_range(0..(4096 + 64 * 80) / 64u64)
                } else {
                    rng.gen_range((4096 * 5) / 64..(4096 * 5 + 4096 * 80) / 64u64)
                };
                let _ = b.read_for_update(line * 64, 64);
            }
            Some(b)
        } else {
            None
        };
        let mut tx = seg.begin().unwrap();
        let mut failures = 0;
        for _ in 0..ops {
            let op = rng.gen_range(0..14);
            let r: Result<(), Error> = (|| match op {
                0 => {
                    let k = format!("key-{}", rng.gen_range(0..60u32));
                    let v = rng.gen::<u64>();
                    map.insert(&mut tx, &k, v)?;
                    next.map.insert(k, v);
                    Ok(())
                }
                1 => {
                    let k = format!("key-{}", rng.gen_range(0..60u32));
                    map.remove(&mut tx, &k)?;
                    next.map.remove(&k);
                    Ok(())
                }
                2 => {
                    let v = rng.gen::<u64>();
                    vec.push(&mut tx, v)?;
                    next.vec.push(v);
                    Ok(())
                }
                3 => {
                    let i = rng.gen_range(0..=next.vec.len() as u64);
                    let v = rng.gen::<u64>();
                    vec.insert(&mut tx, i, v)?;
                    next.vec.insert(i as usize, v);
                    Ok(())
                }
                4 if !next.vec.is_empty() => {
                    let i = rng.gen_range(0..next.vec.len() as u64);
                    let v = vec.remove(&mut tx, i)?;
                    assert_eq!(v, next.vec.remove(i as usize));
                    Ok(())
                }
                5 => {
                    let v = vec.pop(&mut tx)?;
                    assert_eq!(v, next.vec.pop());
                    Ok(())
                }
                6 | 7 if !next.bufs.is_empty() => {
                    let i = rng.gen_range(0..next.bufs.len());
                    let n = rng.gen_range(1..600);
                    let add: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                    let (b, m) = next.bufs[i].clone();
                    let moved = if op == 6 {
                        b.append(&mut tx, &add)?
                    } else {
                        b.set(&mut tx, &add)?
                    };
                    let mut m = if op == 6 { m } else { Vec::new() };
                    m.extend_from_slice(&add);
                    next.bufs[i] = (moved, m);
                    Ok(())
                }
                8 => {
                    let n = rng.gen_range(0..300);
                    let b: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                    let h = PBytes::new(&mut tx, &b)?;
                    next.bufs.push((h, b));
                    Ok(())
                }
                9 if !next.bufs.is_empty() => {
                    let i = rng.gen_range(0..next.bufs.len());
                    next.bufs[i].0.free(&mut tx)?;
                    next.bufs.swap_remove(i);
                    Ok(())
                }
                10 => {
                    let n = if rng.gen_bool(0.5) {
                        rng.gen_range(1..3000)
                    } else {
                        rng.gen_range(4000..20000)
                    };
                    let b = tx.alloc_bytes(n)?;
                    next.raw.push((b, vec![0u8; n as usize]));
                    Ok(())
                }
                11 if !next.raw.is_empty() => {
                    let i = rng.gen_range(0..next.raw.len());
                    tx.free(next.raw[i].0)?;
                    next.raw.swap_remove(i);
                    Ok(())
                }
                13 if next.bufs.iter().any(|(_, m)| !m.is_empty()) => {
                    // A raw logged write into a buffer's bytes (16 past its handle):
                    // ranges an append or set then changes, partly overlapping.
                    let full: Vec<usize> = (0..next.bufs.len())
                        .filter(|&i| !next.bufs[i].1.is_empty())
                        .collect();
                    let i = full[rng.gen_range(0..full.len())];
                    let len = next.bufs[i].1.len();
                    let at = rng.gen_range(0..len);
                    let n = rng.gen_range(1..=(len - at).min(100));
                    let v: u8 = rng.gen();
                    let off = next.bufs[i].0.offset() + 16 + at as u64;
                    tx.write(off, &vec![v; n])?;
                    next.bufs[i].1[at..at + n].fill(v);
                    Ok(())
                }
                12 | 13 if !next.raw.is_empty() => {
                    // A raw logged write into a block: ranges logged before later calls.
                    let i = rng.gen_range(0..next.raw.len());
                    let len = next.raw[i].1.len();
                    let at = rng.gen_range(0..len);
                    let n = rng.gen_range(1..=(len - at).min(200));
                    let v: u8 = rng.gen();
                    let ptr = next.raw[i].0;
                    tx.write(ptr.offset() + at as u64, &vec![v; n])?;
                    next.raw[i].1[at..at + n].fill(v);
                    Ok(())
                }
                _ => Ok(()),
            })();
            match r {
                Ok(()) => {
                    OKS[op as usize].fetch_add(1, Ordering::Relaxed);
                }
                Err(
                    Error::UndoLogFull { .. }
                    | Error::OutOfSpace { .. }
                    | Error::Conflict { .. }
                    | Error::HeldByThisThread { .. },
                ) => {
                    FAILS[op as usize].fetch_add(1, Ordering::Relaxed);
                    failures += 1;
                    if failures > 6 && !block {
                        break;
                    }
                }
                Err(e) => panic!("{guard:?} seed {seed} round {round}: {e}"),
            }
            // The transaction's own view matches the model after every call.
        }
        let commit = rng.gen_bool(0.7);
        if commit {
            tx.commit().unwrap();
            drop(blocker);
            model = next;
        } else {
            tx.abort().unwrap();
            drop(blocker);
        }
        let report = seg.check().unwrap();
        assert!(
            report.is_clean(),
            "{guard:?} seed {seed} undo {undo} round {round}: {:?}",
            report.problems
        );
        let got = seg
            .read_transaction(|tx| {
                let mut pairs = BTreeMap::new();
                for e in map.iter(tx) {
                    let (k, v) = e?;
                    pairs.insert(k.get(tx)?.to_owned(), v);
                }
                let v = vec.to_vec(tx)?;
                let mut bufs = Vec::new();
                for (b, _) in &model.bufs {
                    bufs.push(b.get(tx)?.to_vec());
                }
                let mut raw = Vec::new();
                for (r, m) in &model.raw {
                    raw.push(tx.bytes(*r)?[..m.len()].to_vec());
                }
                Ok::<_, Error>((pairs, v, bufs, raw))
            })
            .unwrap();
        let ctx = format!("{guard:?} seed {seed} undo {undo} round {round} commit {commit}");
        assert_eq!(got.0, model.map, "{ctx}: map");
        assert_eq!(got.1, model.vec, "{ctx}: vec");
        for (i, (g, (_, m))) in got.2.iter().zip(&model.bufs).enumerate() {
            assert_eq!(g, m, "{ctx}: buffer {i}");
        }
        for (i, (g, (_, m))) in got.3.iter().zip(&model.raw).enumerate() {
            assert!(g == m, "{ctx}: raw block {i}");
        }
    }
}

/// Seeds per guard: `ALL_OR_NOTHING_SEEDS`, 40 by default.
fn seeds() -> u64 {
    std::env::var("ALL_OR_NOTHING_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40)
}

#[test]
fn failed_calls_mixed_with_raw_writes_leave_nothing_behind() {
    let seeds = seeds();
    for guard in guards() {
        for seed in 0..seeds {
            let undo = 4096 + 1531 * (seed % 37);
            run(guard, seed, undo, 6, 400, false);
        }
    }
    eprintln!("ok {:?}, failed {:?}", counts(&OKS), counts(&FAILS));
}

#[test]
fn calls_that_conflict_at_random_points_leave_nothing_behind() {
    let seeds = seeds();
    for guard in guards() {
        for seed in 0..seeds {
            run(guard, 1000 + seed, 1 << 20, 12, 60, true);
        }
    }
    eprintln!("ok {:?}, failed {:?}", counts(&OKS), counts(&FAILS));
}
