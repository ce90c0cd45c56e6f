//! Stress tests of the concurrent and durability paths: transfers over
//! many stripes, blocks and upgrades beside read-only transactions, read guards and
//! checkpoints (the sum must hold); injected I/O failures while threads commit (no
//! acknowledged commit lost, no failed one kept); same-thread guards and
//! transactions; odd options and ranges. `STRESS_SECS` (default 1) sets how long each
//! stress test runs under each guard.

mod common;

use std::time::Duration;

use common::Place;
use vista::{Error, Segment};

/// Where the stress tests' accounts lie: `runs` of consecutive accounts, one per 64-byte
/// line, `runs.0` apart in a segment of `size` bytes.
struct Accounts {
    size: u64,
    /// How many runs, and the bytes from one run's start to the next's.
    runs: (u64, u64),
    /// Accounts in each run.
    per_run: u64,
}

impl Accounts {
    fn n(&self) -> u64 {
        self.runs.0 * self.per_run
    }

    fn off(&self, a: u64) -> u64 {
        (a % self.per_run) * 64 + (a / self.per_run) * self.runs.1
    }

    /// The balances of the accounts in `bytes`, one run read whole.
    fn sum(&self, bytes: &[u8]) -> u64 {
        (0..self.per_run as usize)
            .map(|i| u64::from_le_bytes(bytes[i * 64..i * 64 + 8].try_into().unwrap()))
            .sum()
    }
}

/// Transfers that touch 9 to 24 accounts (lock sets kept in place by the lock set, and
/// larger ones that build its index), some read for update, some read then written
/// (upgrades), and sweeps that read 256 accounts' 16 KiB (block stripes) and then move
/// money inside them (block upgrades), from three threads; a fourth sums every account
/// at once, in read-only transactions and through read guards, and checkpoints. The sum
/// must never change, before and after a cold reopen.
fn transfers_conserve_the_sum(acc: &Accounts) {
    use rand::{Rng, SeedableRng};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    const START: u64 = 1000;
    let n = acc.n();
    let secs: u64 = std::env::var("STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1);
    let run_len = acc.per_run * 64;
    for g in common::guards() {
        let p = Place::new();
        let opts = p.opts(acc.size).protection(g).lanes(8);
        let seg = Segment::open(&p.path, &opts).unwrap();
        for c in 0..n / 256 {
            seg.transaction(|tx| {
                for a in c * 256..(c + 1) * 256 {
                    tx.put(acc.off(a), &START)?;
                }
                Ok::<_, Error>(())
            })
            .unwrap();
        }
        let stop = AtomicBool::new(false);
        let bad = AtomicU64::new(0);
        let commits = AtomicU64::new(0);
        std::thread::scope(|s| {
            for t in 0..3u64 {
                let (seg, stop, commits) = (&seg, &stop, &commits);
                s.spawn(move || {
                    let mut rng = rand::rngs::SmallRng::seed_from_u64(t * 7 + 1);
                    while !stop.load(Ordering::Relaxed) {
                        let kind = rng.gen_range(0..4);
                        let r = if kind < 3 {
                            let k = rng.gen_range(9..=24);
                            let mut accts: Vec<u64> = (0..k).map(|_| rng.gen_range(0..n)).collect();
                            accts.sort_unstable();
                            accts.dedup();
                            seg.transaction(|tx| {
                                let mut vals = Vec::new();
                                for &a in &accts {
                                    let v: u64 = match kind {
                                        0 => tx.get(acc.off(a))?,
                                        1 => tx.get_for_update(acc.off(a))?,
                                        _ if a.is_multiple_of(2) => tx.get(acc.off(a))?,
                                        _ => tx.get_for_update(acc.off(a))?,
                                    };
                                    vals.push(v);
                                }
                                // Move everything one step round the ring, one unit each.
                                let k = vals.len();
                                let mut new = vals.clone();
                                for i in 0..k {
                                    if vals[i] > 0 {
                                        new[i] -= 1;
                                        new[(i + 1) % k] += 1;
                                    }
                                }
                                for (i, &a) in accts.iter().enumerate() {
                                    tx.put(acc.off(a), &new[i])?;
                                }
                                Ok::<_, Error>(())
                            })
                        } else {
                            // 256 accounts of one run, read whole, then a transfer inside.
                            let first = rng.gen_range(0..acc.runs.0) * acc.per_run
                                + rng.gen_range(0..acc.per_run - 256);
                            let (x, y) =
                                (first + rng.gen_range(0..256), first + rng.gen_range(0..256));
                            seg.transaction(|tx| {
                                tx.read(acc.off(first), 256 * 64)?;
                                let vx: u64 = tx.get(acc.off(x))?;
                                let vy: u64 = tx.get(acc.off(y))?;
                                if x != y && vx > 0 {
                                    tx.put(acc.off(x), &(vx - 1))?;
                                    tx.put(acc.off(y), &(vy + 1))?;
                                }
                                Ok::<_, Error>(())
                            })
                        };
                        match r {
                            Ok(()) => {
                                commits.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(Error::Conflict { .. }) => {}
                            Err(e) => panic!("{g:?}: {e}"),
                        }
                    }
                });
            }
            {
                let (seg, stop, bad) = (&seg, &stop, &bad);
                s.spawn(move || {
                    let starts = || (0..acc.runs.0).map(|r| r * acc.runs.1);
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        let sum = if i.is_multiple_of(2) {
                            seg.read_transaction(|tx| {
                                let mut sum = 0;
                                for at in starts() {
                                    sum += acc.sum(tx.read(at, run_len)?);
                                }
                                Ok::<_, Error>(sum)
                            })
                        } else {
                            // Every run's guard held at once, then summed.
                            starts()
                                .map(|at| seg.read(at, run_len))
                                .collect::<Result<Vec<_>, _>>()
                                .map(|guards| guards.iter().map(|b| acc.sum(b)).sum())
                        };
                        match sum {
                            Ok(s) if s != n * START => {
                                bad.fetch_add(1, Ordering::Relaxed);
                                eprintln!("{g:?}: a reader saw the sum {s}");
                            }
                            Ok(_) | Err(Error::Conflict { .. }) => {}
                            Err(e) => panic!("{g:?}: reader {e}"),
                        }
                        if i.is_multiple_of(16) {
                            match seg.checkpoint() {
                                Ok(())
                                | Err(Error::Cache(rio_cache::Error::CheckpointBusy { .. })) => {}
                                Err(e) => panic!("{g:?}: checkpoint {e}"),
                            }
                        }
                    }
                });
            }
            std::thread::sleep(Duration::from_secs(secs));
            stop.store(true, Ordering::Relaxed);
        });
        let total = |seg: &Segment| -> u64 {
            (0..acc.runs.0)
                .map(|r| acc.sum(&seg.read(r * acc.runs.1, run_len).unwrap()))
                .sum()
        };
        assert_eq!(bad.load(Ordering::Relaxed), 0, "{g:?}");
        assert_eq!(total(&seg), n * START, "{g:?}");
        eprintln!("{g:?}: {} commits", commits.load(Ordering::Relaxed));
        seg.checkpoint().unwrap();
        drop(seg);
        let seg = Segment::open(&p.path, &opts.clone().discard_image(true)).unwrap();
        assert_eq!(total(&seg), n * START, "{g:?}: after a cold reopen");
    }
}

/// [`transfers_conserve_the_sum`] over 1,024 accounts on consecutive lines of a 1 MiB
/// segment.
#[test]
fn stress_many_stripes_blocks_and_upgrades_conserve_the_sum() {
    transfers_conserve_the_sum(&Accounts {
        size: 1 << 20,
        runs: (1, 0),
        per_run: 1024,
    });
}

/// [`transfers_conserve_the_sum`] in an 8 MiB segment whose two runs of 512 accounts lie
/// 4 MiB apart: the lock table has 65,536 line stripes, so accounts 512 apart share a
/// stripe (and a block stripe).
#[test]
fn stress_shared_stripes_conserve_the_sum() {
    transfers_conserve_the_sum(&Accounts {
        size: 8 << 20,
        runs: (2, 4 << 20),
        per_run: 512,
    });
}

/// Injected failures of a checkpoint's disk writes and syncs (the n-th I/O call of the
/// run fails, for several n) while threads commit: each thread counts its commits in
/// its own word; after the failure poisons the segment, a warm reopen must hold exactly
/// the acknowledged counts (a commit that returned `Ok` is there, one that returned an
/// error is not).
#[test]
fn checkpoint_failures_under_concurrent_commits_lose_no_acknowledged_commit() {
    use std::sync::atomic::{AtomicBool, Ordering};
    for g in common::guards() {
        for nth in [3u64, 7, 12, 20, 33] {
            let p = Place::new();
            let faults = rio_cache::Faults::counting();
            let opts = p
                .opts(1 << 20)
                .protection(g)
                .lanes(4)
                .faults(faults.clone());
            let seg = Segment::open(&p.path, &opts).unwrap();
            faults.fail_at(faults.count() + nth, libc::EIO);
            let stop = AtomicBool::new(false);
            let acked: Vec<u64> = std::thread::scope(|s| {
                let hs: Vec<_> = (0..3u64)
                    .map(|t| {
                        let (seg, stop) = (&seg, &stop);
                        s.spawn(move || {
                            let mut n = 0u64;
                            while !stop.load(Ordering::Relaxed) {
                                let r = seg.transaction(|tx| {
                                    let v: u64 = tx.get(t * 4096)?;
                                    tx.put(t * 4096, &(v + 1))?;
                                    tx.put(t * 4096 + 8192 * 4, &(v + 1))
                                });
                                match r {
                                    Ok(()) => n += 1,
                                    Err(Error::Poisoned(_)) => break,
                                    // Under mprotect the n-th call may be a transaction's
                                    // own: it failed, so it is not acknowledged.
                                    Err(_) => {}
                                }
                            }
                            n
                        })
                    })
                    .collect();
                let mut poisoned = false;
                for _ in 0..400 {
                    match seg.checkpoint() {
                        Ok(()) => {}
                        Err(_) => {
                            poisoned = true;
                            break;
                        }
                    }
                    std::thread::sleep(Duration::from_millis(1));
                }
                std::thread::sleep(Duration::from_millis(20));
                stop.store(true, Ordering::Relaxed);
                let acked = hs.into_iter().map(|h| h.join().unwrap()).collect();
                eprintln!(
                    "{g:?} {nth}: checkpoint failed: {poisoned}; {:?}",
                    faults.failed()
                );
                acked
            });
            drop(seg);
            let seg = Segment::open(&p.path, &p.opts(1 << 20).protection(g).lanes(4)).unwrap();
            for t in 0..3u64 {
                let a: u64 = seg.get(t * 4096).unwrap();
                let b: u64 = seg.get(t * 4096 + 8192 * 4).unwrap();
                assert_eq!(
                    (a, b),
                    (acked[t as usize], acked[t as usize]),
                    "{g:?} {nth}: thread {t}"
                );
            }
        }
    }
}

/// Sound-check (passes): a read guard over blocks and a transaction of the same thread
/// writing a line inside them, and the reverse, never alias: the second fails at once.
#[test]
fn same_thread_guards_and_transactions_never_alias_across_blocks() {
    for g in common::guards() {
        let p = Place::new();
        let seg = Segment::open(&p.path, &p.opts(1 << 20).protection(g)).unwrap();
        let guard = seg.read(0, 64 << 10).unwrap();
        let mut tx = seg.begin().unwrap();
        let r = tx.put(4096 + 8, &1u64);
        assert!(
            matches!(r, Err(Error::HeldByThisThread { .. })),
            "{g:?}: {r:?}"
        );
        let r = tx.read_for_update(100, 8).map(|_| ());
        assert!(
            matches!(r, Err(Error::HeldByThisThread { .. })),
            "{g:?}: {r:?}"
        );
        drop(tx);
        drop(guard);
        let mut tx = seg.begin().unwrap();
        tx.set_range(0, 16 << 10).unwrap()[5000] = 7;
        let r = seg.read(5000, 1).map(|b| b[0]);
        assert!(
            matches!(r, Err(Error::HeldByThisThread { .. })),
            "{g:?}: {r:?}"
        );
        let r = seg.read_transaction(|rt| rt.get::<u8>(6000));
        assert!(
            matches!(r, Err(Error::HeldByThisThread { .. })),
            "{g:?}: {r:?}"
        );
        tx.abort().unwrap();
        assert_eq!(seg.get::<u8>(5000).unwrap(), 0);
    }
}

/// Sound-check (passes): odd option values and ranges give typed errors, no panics.
#[test]
fn odd_options_and_ranges_give_errors_not_panics() {
    let p = Place::new();
    let cases: Vec<(&str, vista::Options)> = vec![
        ("size 0", p.opts(0)),
        ("size max", p.opts(u64::MAX)),
        ("lanes 0", p.opts(1 << 16).lanes(0)),
        ("lanes max", p.opts(1 << 16).lanes(u32::MAX)),
        ("undo 0", p.opts(1 << 16).undo_log_size(0)),
        ("undo 1", p.opts(1 << 16).undo_log_size(1)),
        ("undo max", p.opts(1 << 16).undo_log_size(u64::MAX)),
        ("retries max", p.opts(1 << 16).retries(u32::MAX)),
        (
            "checkpoint wait max",
            p.opts(1 << 16).checkpoint_wait(Duration::MAX),
        ),
    ];
    for (what, o) in cases {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let r = Segment::open(&p.path, &o);
            if let Ok(seg) = &r {
                let _ = seg.read(u64::MAX, 2);
                let _ = seg.read(seg.len(), 1);
                let _ = seg.transaction(|tx| {
                    let _ = tx.write(u64::MAX - 1, &[1, 2, 3]);
                    let _ = tx.set_range(seg.len() - 1, u64::MAX);
                    let _ = tx.read(1, u64::MAX);
                    tx.put(seg.len() - 8, &1u64)
                });
                let _ = seg.checkpoint();
            }
            drop(r);
            let _ = Segment::remove(&p.path, &o);
        }));
        assert!(r.is_ok(), "{what}: panicked");
    }
}
