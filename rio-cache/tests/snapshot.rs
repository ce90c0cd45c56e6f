//! The checkpoint's copy-on-write snapshot: every checkpoint that a writer races holds
//! one instant between two updates, whether the checkpoint copied a page itself or took
//! the copy a writer preserved in the page arena first.
//!
//! Checked on the disk image itself after each checkpoint (the data starts one page
//! into the file, see docs/format.md), so every checkpoint is judged, not only the last.

mod common;

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

use common::{disk_path, opts, wait_until, TestDir, PAGE};
use rio_cache::{Error, Protection, RioCache, SharedCache};

const PAGES: u64 = 64;

/// Stops the writer however the checking thread leaves the scope (a failed check
/// panics, and the scope would otherwise wait for the writer forever).
struct Stop<'a>(&'a AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

#[test]
fn every_checkpoint_under_a_writer_holds_whole_updates() {
    let t = TestDir::new();
    let dir = t.path();
    let opts = opts(dir, PAGES * PAGE, Protection::None);
    let cache = SharedCache::new(RioCache::open(disk_path(dir), &opts).unwrap());
    let disk = std::fs::File::open(disk_path(dir)).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let stopper = Stop(&stop);
        // Each update writes one counter into the first word of every page.
        let writer = s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let mut u = cache.update().unwrap();
                for p in 0..PAGES {
                    u.window(p * PAGE, 8)
                        .unwrap()
                        .copy_from_slice(&i.to_le_bytes());
                }
            }
        });
        let mut checkpoints = 0;
        wait_until("checkpoints that took pages writers preserved", || {
            match cache.checkpoint() {
                Ok(()) => {}
                Err(Error::CheckpointBusy { .. }) => return false,
                Err(e) => panic!("checkpoint: {e}"),
            }
            checkpoints += 1;
            let mut first = [0u8; 8];
            disk.read_exact_at(&mut first, PAGE).unwrap();
            for p in 1..PAGES {
                let mut word = [0u8; 8];
                disk.read_exact_at(&mut word, PAGE + p * PAGE).unwrap();
                assert_eq!(
                    word,
                    first,
                    "checkpoint {checkpoints}: page {p} holds counter {} but page 0 holds {}",
                    u64::from_le_bytes(word),
                    u64::from_le_bytes(first)
                );
            }
            checkpoints >= 50 && cache.stats().pages_preserved >= 100
        });
        drop(stopper);
        writer.join().unwrap();
    });
}
