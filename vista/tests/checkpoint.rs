//! Checkpoints never capture a transaction half done: with the background writeback
//! checkpointing as often as it can while transfers run, the disk image (what a cold
//! start after power loss sees) always conserves the total.

mod common;

use std::time::Duration;

use common::Place;
use vista::{Segment, StartKind, Writeback};

const ACCOUNTS: u64 = 64;
const TOTAL: u64 = ACCOUNTS * 1000;

fn total(seg: &Segment) -> u64 {
    (0..ACCOUNTS)
        .map(|i| seg.get::<u64>(i * 512).unwrap())
        .sum()
}

/// A copy of the segment's disk file and journal as a power loss now would leave them,
/// in a new directory (returned with the copy's path). A background checkpoint may be
/// writing while the files are read: the copy is one in which the disk file did not
/// change while the journal was read (an install would have changed at least its
/// header's sequence number), so the pair is one moment of the page cache.
fn disk_files_now(p: &Place) -> (tempfile::TempDir, std::path::PathBuf) {
    let cold = tempfile::tempdir().unwrap();
    let copy = cold.path().join("seg.vista");
    let (disk, journal) = loop {
        let d1 = std::fs::read(&p.path).unwrap();
        let j = std::fs::read(p.journal()).ok();
        let d2 = std::fs::read(&p.path).unwrap();
        if d1 == d2 {
            break (d1, j);
        }
    };
    std::fs::write(&copy, disk).unwrap();
    if let Some(j) = journal {
        std::fs::write(rio_cache::journal_path(&copy), j).unwrap();
    }
    (cold, copy)
}

#[test]
fn background_checkpoints_only_see_whole_transactions() {
    let p = Place::new();
    let opts = p.opts(ACCOUNTS * 512).writeback(Writeback::Background {
        interval: Duration::from_millis(1),
        dirty_bytes: 4096,
    });
    let seg = Segment::open(&p.path, &opts).unwrap();
    seg.transaction(|tx| {
        for i in 0..ACCOUNTS {
            tx.put(i * 512, &1000u64)?;
        }
        Ok::<_, vista::Error>(())
    })
    .unwrap();
    // The disk must hold the deposits before the first round looks at it; from then on
    // every checkpoint, background or not, must conserve the total.
    seg.checkpoint().unwrap();
    let mut x: u64 = 1;
    for round in 0..120 {
        for _ in 0..200 {
            // xorshift: deterministic account pairs and amounts
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (from, to) = (x % ACCOUNTS, (x >> 20) % ACCOUNTS);
            let mut tx = seg.begin().unwrap();
            let a: u64 = tx.get(from * 512).unwrap();
            let amount = (x >> 40) % (a + 1);
            tx.put(from * 512, &(a - amount)).unwrap();
            // Give the checkpointer a chance to run mid-transaction if the gate allowed it.
            std::thread::sleep(Duration::from_micros(20));
            let b: u64 = tx.get(to * 512).unwrap();
            tx.put(to * 512, &(b + amount)).unwrap();
            tx.commit().unwrap();
        }
        // Power loss now: open a copy of the disk files alone.
        let (cold, copy) = disk_files_now(&p);
        let c = Segment::open(&copy, &opts.clone().cache_dir(cold.path())).unwrap();
        assert!(matches!(c.start_kind(), StartKind::Cold(_)));
        assert_eq!(
            total(&c),
            TOTAL,
            "round {round}: a checkpoint split a transfer"
        );
    }
    assert_eq!(total(&seg), TOTAL);
    assert!(seg.cache_stats().checkpoints > 5, "the writeback never ran");
}

/// Several threads commit transfers while background checkpoints copy their snapshots
/// (copy-on-write: the checkpoint's gate is closed only for the instant of the
/// snapshot). At random moments the disk files alone are opened, as after a power cut:
/// the cold state must be exactly the effect of a prefix of each thread's transfers
/// (each transfer also bumps its thread's counter, in the same transaction), so the
/// checkpoint holds a prefix of the commit order, never a transaction in part.
#[test]
fn checkpoints_under_threads_hold_a_prefix_of_the_commits() {
    const THREADS: u64 = 3;
    const ACCTS: u64 = 48;
    let p = Place::new();
    let opts = p.opts(64 << 10).lanes(4).writeback(Writeback::Background {
        interval: Duration::from_millis(1),
        dirty_bytes: 4096,
    });
    let seg = Segment::open(&p.path, &opts).unwrap();
    // Accounts on their own lines, spread over several pages; counters after them.
    let acct = |a: u64| a * 1024 + 8;
    let counter = |t: u64| 60 * 1024 + t * 64;
    seg.transaction(|tx| {
        for a in 0..ACCTS {
            tx.put(acct(a), &1000u64)?;
        }
        Ok::<_, vista::Error>(())
    })
    .unwrap();
    seg.checkpoint().unwrap();
    // Transfer `i` of thread `t`: fixed accounts and amount (transfers commute).
    let transfer = |t: u64, i: u64| {
        let x = (t + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i.wrapping_mul(0xbf58_476d_1ce4_e5b9);
        (x % ACCTS, (x >> 16) % ACCTS, (x >> 32) % 7 + 1)
    };
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (seg, stop) = (&seg, &stop);
            s.spawn(move || {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    i += 1;
                    let (from, to, amount) = transfer(t, i);
                    seg.transaction(|tx| {
                        let a: u64 = tx.get(acct(from))?;
                        tx.put(acct(from), &a.wrapping_sub(amount))?;
                        let b: u64 = tx.get(acct(to))?;
                        tx.put(acct(to), &b.wrapping_add(amount))?;
                        tx.put(counter(t), &i)
                    })
                    .unwrap();
                }
            });
        }
        for round in 0..40 {
            std::thread::sleep(Duration::from_millis(3));
            let (cold, copy) = disk_files_now(&p);
            let c = Segment::open(
                &copy,
                &opts
                    .clone()
                    .writeback(Writeback::Manual)
                    .cache_dir(cold.path()),
            )
            .unwrap();
            assert!(matches!(c.start_kind(), StartKind::Cold(_)));
            assert_eq!(c.recovery().lanes_rolled_back, 0, "round {round}");
            let mut want = vec![1000u64; ACCTS as usize];
            for t in 0..THREADS {
                let done: u64 = c.get(counter(t)).unwrap();
                for i in 1..=done {
                    let (from, to, amount) = transfer(t, i);
                    want[from as usize] = want[from as usize].wrapping_sub(amount);
                    want[to as usize] = want[to as usize].wrapping_add(amount);
                }
            }
            let got: Vec<u64> = (0..ACCTS).map(|a| c.get(acct(a)).unwrap()).collect();
            assert_eq!(
                got, want,
                "round {round}: not a prefix of each thread's transfers"
            );
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(seg.cache_stats().checkpoints > 5, "the writeback never ran");
}

/// A checkpoint holds transactions off only while it takes its snapshot, never while it
/// writes it: with a checkpoint held back at its first write to the disk image (the
/// fault plan's pause), another thread's transactions on every page of its snapshot
/// begin and commit. The disk then holds the snapshot (none of those transactions),
/// and the next checkpoint holds them. Red if the gate stays closed over the writes.
#[test]
fn transactions_do_not_wait_for_a_checkpoint_s_writes() {
    use rio_cache::{Faults, IoFile, IoOp};
    use std::sync::mpsc;
    const PAGES: u64 = 32;
    let p = Place::new();
    let faults = Faults::counting();
    let opts = p
        .opts(1 << 20)
        .writeback(Writeback::Manual)
        .faults(faults.clone());
    let seg = Segment::open(&p.path, &opts).unwrap();
    let fill = |v: u64| {
        seg.transaction(|tx| {
            for pg in 0..PAGES {
                tx.put(pg * 4096, &v)?;
            }
            Ok::<_, vista::Error>(())
        })
        .unwrap();
    };
    let on_disk = || {
        let (cold, copy) = disk_files_now(&p);
        let c = Segment::open(
            &copy,
            &opts.clone().faults(Faults::none()).cache_dir(cold.path()),
        )
        .unwrap();
        assert!(matches!(c.start_kind(), StartKind::Cold(_)));
        (0..PAGES)
            .map(|pg| c.get::<u64>(pg * 4096).unwrap())
            .collect::<Vec<_>>()
    };
    // Two checkpoints of the same pages: the second shows a checkpoint's calls once the
    // slots have settled, which the third repeats.
    fill(1);
    seg.checkpoint().unwrap();
    fill(2);
    let before = faults.count();
    seg.checkpoint().unwrap();
    let calls = faults.calls()[before as usize..].to_vec();
    let first_write = calls
        .iter()
        .position(|c| (c.op, c.file) == (IoOp::Write, IoFile::Disk))
        .expect("a checkpoint writes the disk image");
    fill(3);
    faults.pause_at(faults.count() + first_write as u64);
    std::thread::scope(|s| {
        let checkpoint = s.spawn(|| seg.checkpoint());
        let held = faults.wait_paused(Duration::from_secs(60));
        let held = held.map(|c| (c.op, c.file));
        if held != Some((IoOp::Write, IoFile::Disk)) {
            faults.resume();
            panic!("the checkpoint was not held at its first write: {held:?}");
        }
        let (done, committed) = mpsc::channel();
        let seg = &seg;
        s.spawn(move || {
            for pg in 0..PAGES {
                seg.transaction(|tx| tx.put(pg * 4096, &4u64)).unwrap();
            }
            done.send(()).unwrap();
        });
        // A regression would make each transaction wait at the closed gate (and fail
        // after the gate's wait): the channel would then close without a message.
        let committed = committed.recv_timeout(Duration::from_secs(60));
        faults.resume();
        assert!(
            committed.is_ok(),
            "transactions waited for the checkpoint's writes"
        );
        checkpoint.join().unwrap().unwrap();
    });
    assert_eq!(
        on_disk(),
        vec![3; PAGES as usize],
        "the checkpoint's snapshot"
    );
    seg.checkpoint().unwrap();
    assert_eq!(on_disk(), vec![4; PAGES as usize], "the next checkpoint");
}
