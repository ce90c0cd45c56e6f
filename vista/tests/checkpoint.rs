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
        let cold = tempfile::tempdir().unwrap();
        let copy = cold.path().join("seg.vista");
        // A background checkpoint may be writing while the files are read: take a copy in
        // which the disk file did not change while the journal was read (an install would
        // have changed at least its header's sequence number), so the pair is one moment
        // of the page cache, as a power loss would leave it.
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
