//! Transactions from many threads (read-only ones among them): isolation,
//! serializability against a serial model, lanes, conflicts, panics, and a hot spot with
//! more threads than cores and lanes; unaligned, line-crossing and overlapping ranges,
//! and transactions that retry a refused call themselves. Every test runs under every
//! guard.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{guards, Place};
use rand::{Rng, SeedableRng};
use vista::{Error, Protection, Segment};

/// An account: balance, then the number of transactions that changed it.
const ACCOUNT: u64 = 16;
const START_BALANCE: u64 = 1000;

fn assert_send_sync<T: Send + Sync>() {}

fn open_bank(p: &Place, accounts: u64, lanes: u32, guard: Protection) -> Segment {
    let seg = Segment::open(&p.path, &p.opts(1 << 20).protection(guard).lanes(lanes)).unwrap();
    for a in 0..accounts {
        seg.transaction(|tx| tx.put(a * ACCOUNT, &[START_BALANCE, 0u64]))
            .unwrap();
    }
    seg
}

fn balances(bytes: &[u8], accounts: u64) -> Vec<[u64; 2]> {
    (0..accounts as usize)
        .map(|a| bytemuck::pod_read_unaligned(&bytes[a * 16..a * 16 + 16]))
        .collect()
}

/// One committed transfer, as its transaction saw it.
#[derive(Debug, Clone, Copy)]
struct Transfer {
    from: u64,
    from_version: u64,
    to: u64,
    to_version: u64,
    amount: u64,
}

/// Moves up to `want` from `from` to `to`, bumping both versions. Returns what it saw.
fn transfer(seg: &Segment, from: u64, to: u64, want: u64) -> vista::Result<Transfer> {
    seg.transaction(|tx| {
        let [fb, fv]: [u64; 2] = tx.get(from * ACCOUNT)?;
        let [tb, tv]: [u64; 2] = tx.get(to * ACCOUNT)?;
        let amount = want.min(fb);
        tx.put(from * ACCOUNT, &[fb - amount, fv + 1])?;
        tx.put(to * ACCOUNT, &[tb + amount, tv + 1])?;
        Ok(Transfer {
            from,
            from_version: fv,
            to,
            to_version: tv,
            amount,
        })
    })
}

/// Finds a serial order of `log` consistent with the versions each transfer read, and
/// replays it on a model; returns the model's balances. Panics if there is none.
fn serial_replay(log: &[Transfer], accounts: u64) -> Vec<[u64; 2]> {
    // Who read (account, version): exactly one committed transfer per pair.
    let mut reader: HashMap<(u64, u64), usize> = HashMap::new();
    for (i, t) in log.iter().enumerate() {
        for key in [(t.from, t.from_version), (t.to, t.to_version)] {
            assert!(
                reader.insert(key, i).is_none(),
                "two committed transfers read version {} of account {}: a lost update",
                key.1,
                key.0
            );
        }
    }
    // Edges: the reader of (a, v) precedes the reader of (a, v + 1).
    let mut indegree = vec![0usize; log.len()];
    let mut next: Vec<Vec<usize>> = vec![Vec::new(); log.len()];
    for (&(a, v), &i) in &reader {
        if let Some(&j) = reader.get(&(a, v + 1)) {
            next[i].push(j);
            indegree[j] += 1;
        }
    }
    let mut ready: Vec<usize> = (0..log.len()).filter(|&i| indegree[i] == 0).collect();
    let mut model = vec![[START_BALANCE, 0u64]; accounts as usize];
    let mut done = 0;
    while let Some(i) = ready.pop() {
        let t = log[i];
        let (f, to) = (t.from as usize, t.to as usize);
        assert_eq!(model[f][1], t.from_version, "replay order");
        assert_eq!(model[to][1], t.to_version, "replay order");
        assert!(model[f][0] >= t.amount, "overdraft in the serial replay");
        model[f] = [model[f][0] - t.amount, model[f][1] + 1];
        model[to] = [model[to][0] + t.amount, model[to][1] + 1];
        done += 1;
        for &j in &next[i] {
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(j);
            }
        }
    }
    assert_eq!(done, log.len(), "the committed history has a cycle");
    model
}

#[test]
fn concurrent_transfers_are_serializable_and_every_read_sees_the_total() {
    for guard in guards() {
        concurrent_transfers_are_serializable_and_every_read_sees_the_total_under(guard);
    }
}

fn concurrent_transfers_are_serializable_and_every_read_sees_the_total_under(guard: Protection) {
    const ACCOUNTS: u64 = 24;
    const THREADS: u64 = 4;
    const TRANSFERS: u64 = 300;
    assert_send_sync::<Segment>();
    let p = Place::new();
    let seg = open_bank(&p, ACCOUNTS, 4, guard);
    // This test is about serializability, not about how soon a transfer gets through:
    // transfers that read two accounts and then upgrade both, with a reader taking every
    // account in between, can refuse each other for hundreds of rounds on a busy
    // 2-core machine (upgrades never wait), so give them a retry budget of seconds.
    drop(seg);
    let seg = Segment::open(
        &p.path,
        &p.opts(1 << 20).protection(guard).lanes(4).retries(100_000),
    )
    .unwrap();
    let total = ACCOUNTS * START_BALANCE;
    let done = AtomicBool::new(false);
    let reads = AtomicU64::new(0);
    let log: Vec<Transfer> = std::thread::scope(|s| {
        let seg = &seg;
        // Readers: inside transactions and through the segment's read guard. At least
        // one round even if the writers finish before this thread is first scheduled.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) || reads.load(Ordering::Relaxed) == 0 {
                let sum: u64 = seg
                    .transaction(|tx| {
                        let b = tx.read(0, ACCOUNTS * ACCOUNT)?;
                        Ok::<_, Error>(balances(b, ACCOUNTS).iter().map(|a| a[0]).sum())
                    })
                    .unwrap();
                assert_eq!(sum, total, "a transaction saw money appear or vanish");
                let bytes = seg.read(0, ACCOUNTS * ACCOUNT).unwrap();
                let sum: u64 = balances(&bytes, ACCOUNTS).iter().map(|a| a[0]).sum();
                assert_eq!(sum, total, "Segment::read saw money appear or vanish");
                drop(bytes);
                // A read-only transaction, account by account: one consistent state.
                let sum: u64 = seg
                    .read_transaction(|tx| {
                        (0..ACCOUNTS)
                            .map(|a| tx.get::<[u64; 2]>(a * ACCOUNT).map(|b| b[0]))
                            .sum::<vista::Result<u64>>()
                    })
                    .unwrap();
                assert_eq!(
                    sum, total,
                    "a read-only transaction saw money appear or vanish"
                );
                reads.fetch_add(3, Ordering::Relaxed);
            }
        });
        // Checkpoints while transfers run.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                seg.checkpoint().unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let writers: Vec<_> = (0..THREADS)
            .map(|t| {
                s.spawn(move || {
                    let mut rng = rand::rngs::SmallRng::seed_from_u64(t);
                    let mut mine = Vec::new();
                    for _ in 0..TRANSFERS {
                        let from = rng.gen_range(0..ACCOUNTS);
                        let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                        mine.push(
                            transfer(seg, from, to, rng.gen_range(0..300))
                                .unwrap_or_else(|e| panic!("{guard:?}: a transfer failed: {e}")),
                        );
                    }
                    mine
                })
            })
            .collect();
        // Join every writer before judging any: a failing writer must stop the reader
        // and the checkpointer (which loop until `done`), not leave the test hanging.
        let ends: Vec<_> = writers
            .into_iter()
            .map(std::thread::ScopedJoinHandle::join)
            .collect();
        done.store(true, Ordering::Relaxed);
        ends.into_iter()
            .flat_map(|e| e.expect("no writer panics"))
            .collect()
    });
    assert!(reads.load(Ordering::Relaxed) > 0);
    assert_eq!(log.len() as u64, THREADS * TRANSFERS);
    let model = serial_replay(&log, ACCOUNTS);
    let state = balances(&seg.read(0, ACCOUNTS * ACCOUNT).unwrap(), ACCOUNTS);
    assert_eq!(state, model, "the segment differs from the serial replay");
    // And the same after a reopen.
    drop(seg);
    let seg = Segment::open(&p.path, &p.opts(1 << 20).protection(guard)).unwrap();
    let state = balances(&seg.read(0, ACCOUNTS * ACCOUNT).unwrap(), ACCOUNTS);
    assert_eq!(state, model);
}

#[test]
fn sixteen_threads_on_a_hot_spot_all_commit() {
    for guard in guards() {
        sixteen_threads_on_a_hot_spot_all_commit_under(guard, false);
    }
}

/// As `sixteen_threads_on_a_hot_spot_all_commit`, each transfer reading its accounts
/// for update (`get_for_update`): locked exclusively at the read, so no upgrade.
#[test]
fn sixteen_threads_reading_a_hot_spot_for_update_all_commit() {
    for guard in guards() {
        sixteen_threads_on_a_hot_spot_all_commit_under(guard, true);
    }
}

fn sixteen_threads_on_a_hot_spot_all_commit_under(guard: Protection, for_update: bool) {
    const ACCOUNTS: u64 = 4;
    const THREADS: u64 = 16;
    const TRANSFERS: u64 = 100;
    let p = Place::new();
    // Fewer lanes than threads: transactions also wait for lanes.
    let seg = open_bank(&p, ACCOUNTS, 4, guard);
    let attempts = AtomicU64::new(0);
    let max_attempts = AtomicU64::new(0);
    let done = std::sync::atomic::AtomicBool::new(false);
    let checkpoints = AtomicU64::new(0);
    std::thread::scope(|s| {
        // Checkpoints run all along: each closes the gate while the hot spot is busy.
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                seg.checkpoint().unwrap();
                checkpoints.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
        });
        let mut writers = Vec::new();
        for t in 0..THREADS {
            let (seg, attempts, max_attempts) = (&seg, &attempts, &max_attempts);
            writers.push(s.spawn(move || {
                let mut rng = rand::rngs::SmallRng::seed_from_u64(100 + t);
                for _ in 0..TRANSFERS {
                    let from = rng.gen_range(0..ACCOUNTS);
                    let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                    let mut tries = 0;
                    seg.transaction(|tx| {
                        tries += 1;
                        let ([fb, fv], [tb, tv]): ([u64; 2], [u64; 2]) = if for_update {
                            (
                                tx.get_for_update(from * ACCOUNT)?,
                                tx.get_for_update(to * ACCOUNT)?,
                            )
                        } else {
                            (tx.get(from * ACCOUNT)?, tx.get(to * ACCOUNT)?)
                        };
                        let amount = fb.min(7);
                        tx.put(from * ACCOUNT, &[fb - amount, fv + 1])?;
                        tx.put(to * ACCOUNT, &[tb + amount, tv + 1])?;
                        Ok::<_, Error>(())
                    })
                    .expect("every transfer commits within the retry limit");
                    attempts.fetch_add(tries, Ordering::Relaxed);
                    max_attempts.fetch_max(tries, Ordering::Relaxed);
                }
            }));
        }
        // Every writer ends (a failed one fails the test) before the checkpointer stops.
        let results: Vec<_> = writers
            .into_iter()
            .map(std::thread::ScopedJoinHandle::join)
            .collect();
        done.store(true, Ordering::Relaxed);
        for r in results {
            if let Err(panic) = r {
                std::panic::resume_unwind(panic);
            }
        }
    });
    assert!(checkpoints.load(Ordering::Relaxed) > 0);
    let state = balances(&seg.read(0, ACCOUNTS * ACCOUNT).unwrap(), ACCOUNTS);
    assert_eq!(
        state.iter().map(|a| a[0]).sum::<u64>(),
        ACCOUNTS * START_BALANCE
    );
    // Every committed transfer bumped two versions.
    assert_eq!(
        state.iter().map(|a| a[1]).sum::<u64>(),
        2 * THREADS * TRANSFERS
    );
    let max = max_attempts.load(Ordering::Relaxed);
    assert!(max <= u64::from(vista::DEFAULT_RETRIES) + 1);
    // Nothing leaked: every lane can be taken at once (a lane never given back would
    // make one `begin` fail with `LanesBusy` after the lane wait)...
    let all: Vec<_> = (0..seg.lanes())
        .map(|_| seg.begin().expect("every lane is free again"))
        .collect();
    let mut lanes: Vec<u32> = all.iter().map(vista::Transaction::lane).collect();
    lanes.sort_unstable();
    lanes.dedup();
    assert_eq!(lanes.len(), seg.lanes() as usize);
    drop(all);
    // ...and one transaction can lock every byte of the hot spot exclusively, at once
    // (a lock word left held would refuse it with `Conflict` after the lock wait).
    let mut tx = seg.begin().unwrap();
    tx.set_range(0, ACCOUNTS * ACCOUNT)
        .expect("no lock of the hot spot is still held");
    tx.abort().unwrap();
    eprintln!(
        "hot spot ({guard:?}, for update: {for_update}): {} attempts for {} transfers, at \
         most {max} for one",
        attempts.load(Ordering::Relaxed),
        THREADS * TRANSFERS
    );
}

#[test]
fn a_read_for_update_locks_like_a_write_and_logs_nothing() {
    for guard in guards() {
        let p = Place::new();
        let seg = Segment::open(
            &p.path,
            &p.opts(1 << 20)
                .protection(guard)
                .lock_wait(Duration::from_millis(20)),
        )
        .unwrap();
        seg.transaction(|tx| tx.put(0, &[START_BALANCE, 0u64]))
            .unwrap();
        let mut tx = seg.begin().unwrap();
        let [b, v]: [u64; 2] = tx.get_for_update(0).unwrap();
        assert_eq!([b, v], [START_BALANCE, 0]);
        assert_eq!(
            tx.undo_log_usage().0,
            0,
            "{guard:?}: nothing logged by the read"
        );
        std::thread::scope(|s| {
            s.spawn(|| {
                // Another thread can neither read it nor read it for update.
                let mut t2 = seg.begin().unwrap();
                assert!(matches!(t2.get::<u64>(8), Err(Error::Conflict { .. })));
                assert!(matches!(
                    t2.get_for_update::<u64>(0),
                    Err(Error::Conflict { .. })
                ));
                // The next line is free (locks are per 64-byte line).
                t2.put(64, &[1u64, 1]).unwrap();
                t2.commit().unwrap();
            });
        });
        // The write after it logs and changes as usual; an abort restores and releases.
        tx.put(0, &[b - 1, v + 1]).unwrap();
        assert!(tx.undo_log_usage().0 > 0);
        tx.abort().unwrap();
        assert_eq!(seg.get::<[u64; 2]>(0).unwrap(), [START_BALANCE, 0]);
        // Commit keeps the write.
        let mut tx = seg.begin().unwrap();
        let [b, v]: [u64; 2] = tx.get_for_update(0).unwrap();
        tx.put(0, &[b - 1, v + 1]).unwrap();
        tx.commit().unwrap();
        assert_eq!(seg.get::<[u64; 2]>(0).unwrap(), [START_BALANCE - 1, 1]);
        // Out of range, and in a read-only transaction, it is refused.
        let tx = seg.begin().unwrap();
        let end = seg.len();
        assert!(matches!(
            tx.get_for_update::<u64>(end - 4),
            Err(Error::OutOfRange { .. })
        ));
        drop(tx);
        let r = seg.begin_read().unwrap();
        assert!(matches!(
            r.read_for_update(0, 8),
            Err(Error::ReadOnly { offset: 0, len: 8 })
        ));
    }
}

#[test]
fn uncommitted_bytes_are_invisible_and_conflicts_are_typed() {
    for guard in guards() {
        uncommitted_bytes_are_invisible_and_conflicts_are_typed_under(guard);
    }
}

fn uncommitted_bytes_are_invisible_and_conflicts_are_typed_under(guard: Protection) {
    let p = Place::new();
    let opts = p
        .opts(1 << 16)
        .protection(guard)
        .lock_wait(Duration::ZERO)
        .retries(0)
        .lanes(2)
        .lane_wait(Duration::from_millis(5));
    let seg = Segment::open(&p.path, &opts).unwrap();
    seg.transaction(|tx| tx.write(0, b"committed")).unwrap();
    let mut t1 = seg.begin().unwrap();
    t1.write(0, b"DIRTY").unwrap();
    let mut t2 = seg.begin().unwrap();
    // Another thread's transaction is refused with a conflict...
    std::thread::scope(|s| {
        s.spawn(|| {
            let t = seg.begin().unwrap_err(); // both lanes are taken
            assert!(matches!(t, Error::LanesBusy { .. }));
            assert!(
                matches!(seg.read(0, 9), Err(Error::Conflict { offset: 0, len: 9 })),
                "dirty read"
            );
        });
    });
    // ...this thread's, holding the range itself, is told so at once.
    assert!(matches!(
        t2.read(0, 9),
        Err(Error::HeldByThisThread { offset: 0, len: 9 })
    ));
    assert!(!t2.conflicted());
    assert!(matches!(
        t2.write(4, b"x"),
        Err(Error::HeldByThisThread { .. })
    ));
    assert!(matches!(
        seg.read(2, 1),
        Err(Error::HeldByThisThread { .. })
    ));
    // Both lanes are taken.
    assert!(matches!(
        seg.begin(),
        Err(Error::LanesBusy { lanes: 2, .. })
    ));
    // A checkpoint from a thread inside a transaction is refused, not a deadlock.
    assert!(seg.checkpoint().is_err());
    // Disjoint ranges go ahead.
    t2.write(100, b"other").unwrap();
    t2.commit().unwrap();
    drop(t1); // aborted: its locks and lane are released
    assert_eq!(seg.read(0, 9).unwrap(), b"committed");
    assert_eq!(seg.read(100, 5).unwrap(), b"other");
    // A read guard holds its range against writers: another thread's get a conflict,
    // this thread's are told at once that it holds the range itself.
    let guard = seg.read(0, 4).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut t = seg.begin().unwrap();
            assert!(
                matches!(
                    t.write(0, b"no"),
                    Err(Error::Conflict { offset: 0, len: 2 })
                ),
                "{guard:?}"
            );
        });
    });
    let mut t3 = seg.begin().unwrap();
    assert!(matches!(
        t3.write(2, b"no"),
        Err(Error::HeldByThisThread { offset: 2, len: 2 })
    ));
    drop(t3);
    drop(guard);
    seg.transaction(|tx| tx.write(0, b"yes")).unwrap();
    assert_eq!(seg.read(0, 3).unwrap(), b"yes");
    seg.checkpoint().unwrap();
}

#[test]
fn a_panicking_thread_aborts_and_frees_its_locks_and_lane() {
    for guard in guards() {
        a_panicking_thread_aborts_and_frees_its_locks_and_lane_under(guard);
    }
}

fn a_panicking_thread_aborts_and_frees_its_locks_and_lane_under(guard: Protection) {
    let p = Place::new();
    let opts = p
        .opts(1 << 16)
        .protection(guard)
        .lanes(2)
        .lane_wait(Duration::from_millis(50));
    let seg = Segment::open(&p.path, &opts).unwrap();
    seg.transaction(|tx| tx.write(0, b"before")).unwrap();
    std::thread::scope(|s| {
        let r = s.spawn(|| {
            seg.transaction(|tx| {
                tx.write(0, b"during")?;
                assert!(
                    tx.get::<u8>(0)? != b'd',
                    "deliberate panic inside a transaction"
                );
                Ok::<_, Error>(())
            })
        });
        assert!(r.join().is_err(), "the thread panicked");
    });
    assert_eq!(seg.read(0, 6).unwrap(), b"before");
    // Both lanes and the range are free again.
    let mut a = seg.begin().unwrap();
    let mut b = seg.begin().unwrap();
    a.write(0, b"after!").unwrap();
    b.write(64, b"too").unwrap();
    a.commit().unwrap();
    b.commit().unwrap();
    assert_eq!(seg.read(0, 6).unwrap(), b"after!");
}

/// Records of 24 bytes at an odd base, so most cross a 64-byte lock line and some a
/// page; transactions read them unaligned, log ranges that overlap each other and
/// their neighbours, retry a refused `put` themselves before passing the conflict on,
/// and abort on purpose every so often. Serializable against a serial replay, with
/// nothing of an aborted transaction left, under every guard.
#[test]
fn unaligned_overlapping_ranges_and_retries_inside_a_transaction() {
    for guard in guards() {
        unaligned_under(guard);
    }
}

const REC: u64 = 24;
const BASE: u64 = 4096 - 5 * REC - 13; // records straddle lines and the first page end

fn rec(a: u64) -> u64 {
    BASE + a * REC
}

#[derive(Debug)]
struct Deliberate;

impl From<Error> for Deliberate {
    fn from(_: Error) -> Deliberate {
        Deliberate
    }
}

fn unaligned_under(guard: Protection) {
    const ACCOUNTS: u64 = 12;
    const THREADS: u64 = 4;
    const TRANSFERS: u64 = 200;
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(1 << 16).protection(guard).lanes(4)).unwrap();
    for a in 0..ACCOUNTS {
        seg.transaction(|tx| tx.put(rec(a), &[START_BALANCE, 0, 0u64]))
            .unwrap();
    }
    let retried = AtomicU64::new(0);
    let log: Vec<Transfer> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (seg, retried) = (&seg, &retried);
                s.spawn(move || {
                    let mut rng = rand::rngs::SmallRng::seed_from_u64(500 + t);
                    let mut mine = Vec::new();
                    for i in 0..TRANSFERS {
                        let from = rng.gen_range(0..ACCOUNTS);
                        let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                        let abort = i % 7 == 3;
                        let r = seg.transaction(|tx| {
                            let [fb, fv, _]: [u64; 3] = tx.get(rec(from))?;
                            let [tb, tv, _]: [u64; 3] = tx.get(rec(to))?;
                            let amount = fb.min(37);
                            // A range that overlaps the next one logged: the tail of
                            // `from`'s record (its version and pad).
                            tx.set_range(rec(from) + 8, 16)?;
                            // Retry a refused put a few times before passing it on.
                            let put = |tx: &mut vista::Transaction<'_>, at, v: &[u64; 3]| {
                                for _ in 0..3 {
                                    match tx.put(at, v) {
                                        Err(Error::Conflict { .. }) => {
                                            retried.fetch_add(1, Ordering::Relaxed);
                                            std::thread::yield_now();
                                        }
                                        other => return other,
                                    }
                                }
                                tx.put(at, v)
                            };
                            put(tx, rec(from), &[fb - amount, fv + 1, t])?;
                            put(tx, rec(to), &[tb + amount, tv + 1, t])?;
                            if abort {
                                return Err(Deliberate);
                            }
                            Ok(Transfer {
                                from,
                                from_version: fv,
                                to,
                                to_version: tv,
                                amount,
                            })
                        });
                        match r {
                            Ok(x) => mine.push(x),
                            Err(Deliberate) => assert!(abort, "{guard:?}: a transfer failed"),
                        }
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("no writer panics"))
            .collect()
    });
    let model = serial_replay(&log, ACCOUNTS);
    let state: Vec<[u64; 2]> = (0..ACCOUNTS)
        .map(|a| {
            let [b, v, _]: [u64; 3] = seg.get(rec(a)).unwrap();
            [b, v]
        })
        .collect();
    assert_eq!(
        state, model,
        "{guard:?}: the segment differs from the serial replay"
    );
    drop(seg);
    let seg = Segment::open(&p.path, &p.opts(1 << 16).protection(guard)).unwrap();
    assert_eq!(seg.recovery().lanes_rolled_back, 0, "{guard:?}");
    for a in 0..ACCOUNTS {
        let [b, v, _]: [u64; 3] = seg.get(rec(a)).unwrap();
        assert_eq!([b, v], model[a as usize], "{guard:?}: after a reopen");
    }
    eprintln!(
        "{guard:?}: {} committed, {} puts retried inside their transaction",
        log.len(),
        retried.load(Ordering::Relaxed)
    );
}

/// Large ranges meet small ones: sweeps read and rewrite 1-4 KiB at unaligned offsets
/// (whole 1 KiB blocks of the lock table, lines at their ends), transfers move money
/// between single accounts inside them, and a reader sums all accounts in read-only
/// transactions. Every sweep and transfer keeps the total, so a reader that ever sees
/// another total saw a transaction half done, and a final total that differs means an
/// update was lost (a line written inside a block another transaction held, or the
/// reverse). Under every guard.
#[test]
fn blocks_and_lines_of_concurrent_transactions_exclude_each_other() {
    for guard in guards() {
        blocks_and_lines_under(guard);
    }
}

fn blocks_and_lines_under(guard: Protection) {
    const ACCOUNTS: u64 = 512; // 8 KiB of 16-byte accounts
    const AREA: u64 = ACCOUNTS * ACCOUNT;
    const ROUNDS: u64 = 150;
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(1 << 16).protection(guard).lanes(8)).unwrap();
    let start: Vec<[u64; 2]> = vec![[START_BALANCE, 0]; ACCOUNTS as usize];
    seg.transaction(|tx| tx.write(0, bytemuck::cast_slice(&start)))
        .unwrap();
    let total = ACCOUNTS * START_BALANCE;
    let sum = |bytes: &[u8]| -> u64 { balances(bytes, ACCOUNTS).iter().map(|b| b[0]).sum() };
    let stop = AtomicBool::new(false);
    let checks = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut checks = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let seen = seg
                    .read_transaction(|tx| tx.read(0, AREA).map(sum))
                    .unwrap();
                assert_eq!(seen, total, "{guard:?}: a read saw a transaction half done");
                checks += 1;
                // Not back to back: a reader of everything that never pauses would keep
                // the sweeps' upgrades waiting (readers are not queued behind writers).
                std::thread::sleep(Duration::from_micros(200));
            }
            checks
        });
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let seg = &seg;
                s.spawn(move || {
                    let mut rng = rand::rngs::SmallRng::seed_from_u64(900 + t);
                    for _ in 0..ROUNDS {
                        if t % 2 == 0 {
                            // A sweep: each account of the range gives one to the next.
                            let n = rng.gen_range(64..=256u64); // 1-4 KiB
                            let first = rng.gen_range(0..=ACCOUNTS - n);
                            let (off, len) = (first * ACCOUNT, n * ACCOUNT);
                            seg.transaction(|tx| {
                                let mut b = balances(tx.read(off, len)?, n);
                                let give: Vec<u64> = b.iter().map(|a| a[0].min(1)).collect();
                                let n = n as usize;
                                for i in 0..n {
                                    b[i][0] = b[i][0] - give[i] + give[(i + n - 1) % n];
                                    b[i][1] += 1;
                                }
                                tx.write(off, bytemuck::cast_slice(&b))
                            })
                            .unwrap();
                        } else {
                            let from = rng.gen_range(0..ACCOUNTS);
                            let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                            transfer(seg, from, to, rng.gen_range(1..50)).unwrap();
                        }
                    }
                })
            })
            .collect();
        // Every worker is joined and the reader stopped before any verdict, so a
        // failure ends the test instead of leaving the reader running.
        let ended: Vec<_> = workers
            .into_iter()
            .map(std::thread::ScopedJoinHandle::join)
            .collect();
        stop.store(true, Ordering::Relaxed);
        let checks = reader.join();
        assert!(
            ended.iter().all(Result::is_ok),
            "{guard:?}: a worker panicked"
        );
        checks.expect("the reader saw the total every time")
    });
    assert_eq!(
        sum(&seg.read(0, AREA).unwrap()),
        total,
        "{guard:?}: an update was lost"
    );
    drop(seg);
    let seg = Segment::open(&p.path, &p.opts(1 << 16).protection(guard)).unwrap();
    assert_eq!(
        sum(&seg.read(0, AREA).unwrap()),
        total,
        "{guard:?}: after a reopen"
    );
    eprintln!("{guard:?}: {checks} totals read beside the sweeps and transfers");
}
