//! Leaked transactions and guards, waits that could last forever, and how often
//! `Segment::transaction` runs its closure: never undefined behaviour, never a hang,
//! always a typed error.

mod common;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{guards, Place};
use vista::{Error, Segment};

const WAIT: Duration = Duration::from_millis(200);

/// A transaction leaked with `mem::forget` never ends, so no checkpoint can close the
/// gate. Checkpoints (and `close`) give up with `CheckpointBusy` after the checkpoint
/// wait instead of blocking forever; other transactions go on; nothing committed is
/// lost, and the next open rolls the leaked transaction back.
#[test]
fn a_leaked_transaction_makes_checkpoints_give_up_not_hang() {
    for g in guards() {
        let p = Place::new();
        let opts = p.opts(1 << 16).protection(g).checkpoint_wait(WAIT);
        let seg = Segment::open(&p.path, &opts).unwrap();
        seg.transaction(|tx| tx.put(0, &1u64)).unwrap();
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut leaked = seg.begin().unwrap();
                leaked.put(64, &99u64).unwrap();
                std::mem::forget(leaked);
            });
        });
        let e = seg.checkpoint().unwrap_err();
        assert!(matches!(e, Error::CheckpointBusy { .. }), "{g:?}: {e}");
        // Not poisoned: other threads' transactions and reads go on.
        std::thread::scope(|s| {
            s.spawn(|| seg.transaction(|tx| tx.put(128, &7u64)).unwrap());
        });
        assert_eq!(seg.get::<u64>(128).unwrap(), 7);
        std::mem::forget(seg.read(256, 8).unwrap()); // a leaked read guard, too
                                                     // Leaked on this thread: the checkpoint would wait for this thread itself.
        std::mem::forget(seg.begin().unwrap());
        assert!(seg.checkpoint().is_err());
        assert!(matches!(seg.close(), Err(Error::CheckpointBusy { .. })));
        let seg = Segment::open(&p.path, &opts).unwrap();
        assert!(seg.recovery().lanes_rolled_back >= 1, "{g:?}");
        assert_eq!(seg.get::<u64>(0).unwrap(), 1);
        assert_eq!(seg.get::<u64>(64).unwrap(), 0, "the leaked write is undone");
        assert_eq!(seg.get::<u64>(128).unwrap(), 7, "{g:?}: a commit lost");
        seg.checkpoint().unwrap();
    }
}

/// Two threads, each inside a transaction of one segment, begin one on the other
/// while both segments checkpoint: each checkpoint waits for the thread that waits at
/// its gate. The checkpoints give up after the checkpoint wait, so both transactions
/// go on instead of deadlocking.
#[test]
fn crossed_checkpoints_of_two_segments_do_not_deadlock() {
    let (pa, pb) = (Place::new(), Place::new());
    let a = Arc::new(Segment::open(&pa.path, &pa.opts(1 << 16).checkpoint_wait(WAIT)).unwrap());
    let b = Arc::new(Segment::open(&pb.path, &pb.opts(1 << 16).checkpoint_wait(WAIT)).unwrap());
    let inside = Arc::new(Barrier::new(4));
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let mut threads = Vec::new();
    for (first, second) in [
        (Arc::clone(&a), Arc::clone(&b)),
        (Arc::clone(&b), Arc::clone(&a)),
    ] {
        let (inside, done) = (Arc::clone(&inside), done_tx.clone());
        threads.push(std::thread::spawn(move || {
            let mut t1 = first.begin().unwrap();
            t1.put(0, &1u64).unwrap();
            inside.wait(); // both threads inside their first segment
            inside.wait(); // both checkpoints have started
            std::thread::sleep(Duration::from_millis(50)); // ... and closed their gates
            let mut t2 = second.begin().unwrap();
            t2.put(64, &2u64).unwrap();
            t2.commit().unwrap();
            t1.commit().unwrap();
            done.send(()).unwrap();
        }));
    }
    for seg in [Arc::clone(&a), Arc::clone(&b)] {
        let inside = Arc::clone(&inside);
        threads.push(std::thread::spawn(move || {
            inside.wait();
            inside.wait();
            // Gives up (CheckpointBusy) or succeeds once the transactions are done.
            let _ = seg.checkpoint();
        }));
    }
    for _ in 0..2 {
        done_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the two transactions deadlocked with the checkpoints");
    }
    for t in threads {
        t.join().unwrap();
    }
    for seg in [a, b] {
        assert_eq!(seg.get::<[u64; 9]>(0).unwrap()[0], 1);
        assert_eq!(seg.get::<u64>(64).unwrap(), 2);
        seg.checkpoint().unwrap();
    }
}

#[derive(Debug, PartialEq)]
enum AppError {
    Vista(String),
    Mine,
}

impl From<Error> for AppError {
    fn from(e: Error) -> AppError {
        AppError::Vista(e.to_string())
    }
}

/// The rule for running the closure again: only when it returns `Err` and its last call
/// on the transaction failed with `Conflict`.
#[test]
fn the_closure_runs_again_only_while_its_last_call_conflicted() {
    let p = Place::new();
    let opts = p
        .opts(1 << 16)
        .lanes(2)
        .lock_wait(Duration::ZERO)
        .retries(3);
    let seg = Segment::open(&p.path, &opts).unwrap();
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let seg = &seg;
        // Another thread holds line 0 exclusively until told to let go.
        s.spawn(move || {
            let mut holder = seg.begin().unwrap();
            holder.put(0, &1u64).unwrap();
            held_tx.send(()).unwrap();
            release_rx.recv().unwrap();
        });
        held_rx.recv().unwrap();

        // Passed on with `?`: run 1 + retries times, then the conflict is returned.
        let runs = AtomicU32::new(0);
        let r = seg.transaction(|tx| {
            runs.fetch_add(1, Ordering::Relaxed);
            tx.put(0, &2u64)?;
            Ok::<_, AppError>(())
        });
        assert!(matches!(r, Err(AppError::Vista(_))));
        assert_eq!(runs.load(Ordering::Relaxed), 4);

        // Handled, then another call succeeded, then its own error: run once.
        let runs = AtomicU32::new(0);
        let r = seg.transaction(|tx| {
            runs.fetch_add(1, Ordering::Relaxed);
            if tx.put(0, &2u64).is_err() {
                tx.put(512, &3u64)?;
            }
            Err::<(), _>(AppError::Mine)
        });
        assert_eq!(r, Err(AppError::Mine));
        assert_eq!(runs.load(Ordering::Relaxed), 1);
        assert_eq!(seg.get::<u64>(512).unwrap(), 0, "aborted");

        // Its own error straight after the conflict: the conflict was its last call, so
        // it runs again (documented on `Segment::transaction`).
        let runs = AtomicU32::new(0);
        let r = seg.transaction(|tx| {
            runs.fetch_add(1, Ordering::Relaxed);
            match tx.put(0, &2u64) {
                Err(_) => Err::<(), _>(AppError::Mine),
                Ok(()) => Ok(()),
            }
        });
        assert_eq!(r, Err(AppError::Mine));
        assert_eq!(runs.load(Ordering::Relaxed), 4);
        release_tx.send(()).unwrap();
    });

    // With the holder gone, one run.
    let runs = AtomicU32::new(0);
    seg.transaction(|tx| {
        runs.fetch_add(1, Ordering::Relaxed);
        tx.put(0, &5u64)
    })
    .unwrap();
    assert_eq!(runs.load(Ordering::Relaxed), 1);
    assert_eq!(seg.get::<u64>(0).unwrap(), 5);
}

/// A transaction that asks for a range its own thread holds (a read guard, or another
/// open transaction's write) fails at once with `HeldByThisThread`, naming the range,
/// instead of waiting out the lock wait and every retry for a holder that cannot
/// release; the closure is not run again. Other threads still see a conflict.
#[test]
#[allow(clippy::many_single_char_names)]
fn a_range_held_by_this_thread_fails_at_once_and_says_so() {
    for g in guards() {
        let p = Place::new();
        // Waits long enough that a wait, not a refusal, would show as a conflict.
        let opts = p
            .opts(1 << 16)
            .protection(g)
            .lanes(4)
            .lock_wait(Duration::from_secs(2));
        let seg = Segment::open(&p.path, &opts).unwrap();
        seg.transaction(|tx| tx.put(64, &1u64)).unwrap();

        let guard = seg.read(64, 8).unwrap();
        let runs = AtomicU32::new(0);
        let r = seg.transaction(|tx| {
            runs.fetch_add(1, Ordering::Relaxed);
            tx.put(68, &2u32)
        });
        assert!(
            matches!(r, Err(Error::HeldByThisThread { offset: 68, len: 4 })),
            "{g:?}: {r:?}"
        );
        assert_eq!(runs.load(Ordering::Relaxed), 1, "not run again");
        drop(guard);

        let mut t1 = seg.begin().unwrap();
        t1.put(64, &3u64).unwrap();
        let t2 = seg.begin().unwrap();
        let r = t2.get::<u64>(64);
        assert!(
            matches!(r, Err(Error::HeldByThisThread { offset: 64, len: 8 })),
            "{g:?}: {r:?}"
        );
        assert!(matches!(
            seg.read(64, 8),
            Err(Error::HeldByThisThread { .. })
        ));
        drop(t2);
        t1.commit().unwrap();

        // Two read guards of this thread over one line, then a write: still this
        // thread's.
        let (a, b) = (seg.read(64, 8).unwrap(), seg.read(60, 8).unwrap());
        let mut t = seg.begin().unwrap();
        let r = t.put(64, &4u64);
        assert!(
            matches!(r, Err(Error::HeldByThisThread { .. })),
            "{g:?}: {r:?}"
        );
        drop(t);
        drop((a, b));
        // A guard of another thread (and one of this thread): that is a conflict, not
        // this thread's, found after the lock wait.
        let mine = seg.read(64, 8).unwrap();
        let (held_tx, held_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        std::thread::scope(|s| {
            let seg = &seg;
            s.spawn(move || {
                let _g = seg.read(64, 8).unwrap();
                held_tx.send(()).unwrap();
                done_rx.recv().unwrap();
            });
            held_rx.recv().unwrap();
            drop(mine);
            let mut t = seg.begin().unwrap();
            let r = t.put(64, &5u64);
            drop(t);
            done_tx.send(()).unwrap();
            assert!(
                matches!(r, Err(Error::Conflict { offset: 64, len: 8 })),
                "{g:?}: {r:?}"
            );
        });
        assert_eq!(seg.get::<u64>(64).unwrap(), 3);
    }
}

/// A transaction across segments leaked with `mem::forget` keeps the group's running
/// transactions from ending, so no group checkpoint can start: the checkpoint (also the
/// one of `Group::close`) gives up with `CheckpointBusy` after the checkpoint wait
/// instead of waiting forever, and the group's other transactions go on.
#[test]
fn a_leaked_group_transaction_makes_group_checkpoints_give_up_not_hang() {
    let p = Place::new();
    let opts = p.opts(1 << 16).checkpoint_wait(WAIT);
    let members = (0..2)
        .map(|i| Segment::open(p.dir.path().join(format!("m{i}.vista")), &opts).unwrap())
        .collect();
    let group = vista::Group::open(p.dir.path().join("g.coord"), members, &opts).unwrap();
    group
        .transaction(|tx| {
            tx.on(0)?.put(0, &1u64)?;
            tx.on(1)?.put(0, &1u64)
        })
        .unwrap();
    let mut leaked = group.begin().unwrap();
    leaked.on(0).unwrap().put(64, &2u64).unwrap();
    std::mem::forget(leaked);
    let (send, recv) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| send.send(group.checkpoint()).unwrap());
        let r = recv.recv_timeout(Duration::from_secs(60));
        let r = r.expect("the group checkpoint still waits after 60 s");
        assert!(matches!(r, Err(Error::CheckpointBusy { .. })), "{r:?}");
    });
    // Other transactions of the group go on (in other lanes).
    group
        .transaction(|tx| {
            tx.on(0)?.put(128, &3u64)?;
            tx.on(1)?.put(128, &3u64)
        })
        .unwrap();
    let e = group.close().unwrap_err();
    assert!(matches!(e, Error::CheckpointBusy { .. }), "{e}");
}

/// `Duration::MAX` as a wait means no limit: the lock wait, the lane wait and the
/// writeback interval are taken as a century (`rio_cache::LONGEST_WAIT`), not added to
/// `Instant::now()`, which panicked (the first waiter for a range or a lane, and the
/// writeback thread at its start, so no background checkpoint ever ran).
#[test]
fn a_wait_of_duration_max_means_no_limit() {
    let p = Place::new();
    let opts = p
        .opts(1 << 20)
        .lanes(2)
        .lock_wait(Duration::MAX)
        .lane_wait(Duration::MAX)
        .writeback(vista::Writeback::Background {
            interval: Duration::MAX,
            dirty_bytes: 4096,
        });
    let seg = Segment::open(&p.path, &opts).unwrap();
    let bump = || {
        seg.transaction(|tx| {
            let v: u64 = tx.get(0)?;
            tx.put(0, &(v + 1))
        })
    };
    // A waiter for a range: the holder has it.
    let mut holder = seg.begin().unwrap();
    holder.put(0, &1u64).unwrap();
    std::thread::scope(|s| {
        let waiter = s.spawn(bump);
        std::thread::sleep(Duration::from_millis(50));
        holder.commit().unwrap();
        waiter
            .join()
            .expect("the waiter for a range panicked")
            .unwrap();
    });
    // A waiter for a lane: both are taken.
    let (a, b) = (seg.begin().unwrap(), seg.begin().unwrap());
    std::thread::scope(|s| {
        let waiter = s.spawn(bump);
        std::thread::sleep(Duration::from_millis(50));
        drop(a);
        waiter
            .join()
            .expect("the waiter for a lane panicked")
            .unwrap();
    });
    drop(b);
    assert_eq!(seg.get::<u64>(0).unwrap(), 3);
    // The writeback thread runs: dirty pages past the threshold are checkpointed.
    let n0 = seg.cache_stats().checkpoints;
    for i in 1..64u64 {
        seg.transaction(|tx| tx.put(i * 4096, &i)).unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while seg.cache_stats().checkpoints == n0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no background checkpoint within 30 s of 63 dirty pages"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Threads that run transactions across segments back to back, so that at every instant
/// one of them holds the group's transactions open, do not keep a group checkpoint out:
/// while a checkpoint tries to start, new transactions of the group wait for it, so each
/// checkpoint succeeds within the checkpoint wait.
#[test]
fn a_stream_of_group_transactions_does_not_keep_group_checkpoints_out() {
    use std::sync::atomic::AtomicBool;
    let p = Place::new();
    let opts = p
        .opts(1 << 16)
        .writeback(vista::Writeback::Manual)
        .checkpoint_wait(Duration::from_secs(2));
    let members = (0..2)
        .map(|i| Segment::open(p.dir.path().join(format!("m{i}.vista")), &opts).unwrap())
        .collect();
    let group = vista::Group::open(p.dir.path().join("g.coord"), members, &opts).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (group, stop) = (&group, &stop);
            s.spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    group
                        .transaction(|tx| {
                            tx.on(0)?.put(t * 64, &i)?;
                            std::thread::sleep(Duration::from_micros(200));
                            tx.on(1)?.put(t * 64, &i)
                        })
                        .unwrap();
                }
            });
        }
        let results: Vec<_> = (0..5)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(20));
                group.checkpoint()
            })
            .collect();
        stop.store(true, Ordering::Relaxed);
        for (round, r) in results.iter().enumerate() {
            assert!(r.is_ok(), "checkpoint {round}: {r:?}");
        }
    });
}
