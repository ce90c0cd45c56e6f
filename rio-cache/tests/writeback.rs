//! Writeback: the background thread checkpoints on its interval and when enough pages
//! are dirty; `checkpoint()` returns with the data durable; the counters move;
//! `checkpoint_on_close` decides whether closing makes the last writes durable.
//!
//! Durability is checked the hard way every time: close without a final checkpoint,
//! delete the memory image, start cold.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{disk_path, opts, pattern, wait_until, TestDir, PAGE};
use rio_cache::{Protection, RioCache, RioOptions, StartKind, Writeback};

const SIZE: u64 = 64 * PAGE;

/// Power loss: the cold start's contents at `[0, len)`.
fn after_power_loss(dir: &Path, cache: RioCache, len: u64) -> Vec<u8> {
    let image = cache.image_path().to_owned();
    drop(cache);
    std::fs::remove_file(image).unwrap();
    let cache = RioCache::open(disk_path(dir), &manual(dir)).unwrap();
    assert!(matches!(cache.start_kind(), StartKind::Cold(_)));
    cache.read(0, len).unwrap().to_vec()
}

fn manual(dir: &Path) -> RioOptions {
    opts(dir, SIZE, Protection::Auto).checkpoint_on_close(false)
}

fn background(dir: &Path, interval: Duration, dirty_bytes: u64) -> RioOptions {
    manual(dir).writeback(Writeback::Background {
        interval,
        dirty_bytes,
    })
}

#[test]
fn background_writeback_on_the_interval() {
    let t = TestDir::new();
    let dir = t.path();
    let mut cache = RioCache::open(
        disk_path(dir),
        &background(dir, Duration::from_millis(20), u64::MAX),
    )
    .unwrap();
    let data = pattern(5, 3 * PAGE as usize);
    cache.window(0, 3 * PAGE).unwrap().copy_from_slice(&data);
    wait_until("an interval checkpoint", || {
        let s = cache.stats();
        s.checkpoints >= 1 && s.dirty_pages == 0
    });
    assert!(after_power_loss(dir, cache, 3 * PAGE) == data);
}

#[test]
fn background_writeback_on_the_dirty_threshold() {
    let t = TestDir::new();
    let dir = t.path();
    // An interval that never comes: only the threshold (4 pages) can trigger it.
    let mut cache = RioCache::open(
        disk_path(dir),
        &background(dir, Duration::from_secs(3600), 4 * PAGE),
    )
    .unwrap();
    let data = pattern(6, 4 * PAGE as usize);
    {
        let mut u = cache.update().unwrap();
        for p in 0..4 {
            let r = (p * PAGE) as usize..((p + 1) * PAGE) as usize;
            u.window(10 * PAGE + p * PAGE, PAGE)
                .unwrap()
                .copy_from_slice(&data[r]);
        }
    }
    wait_until("a threshold checkpoint", || cache.stats().checkpoints >= 1);
    assert_eq!(cache.stats().pages_written, 4);
    let got = after_power_loss(dir, cache, 14 * PAGE);
    assert!(got[10 * PAGE as usize..] == data[..]);
}

#[test]
fn checkpoint_returns_durable_and_counts() {
    let t = TestDir::new();
    let dir = t.path();
    let mut cache = RioCache::open(disk_path(dir), &manual(dir)).unwrap();
    let s = cache.stats();
    assert_eq!((s.checkpoints, s.dirty_pages, s.disk_seq), (0, 0, 0));
    assert_eq!(s.last_checkpoint, None);

    cache.window(PAGE - 2, 4).unwrap().copy_from_slice(b"span"); // two pages
    cache.window(9 * PAGE, 1).unwrap()[0] = 9;
    assert_eq!(cache.stats().dirty_pages, 3);
    cache.checkpoint().unwrap();
    let s = cache.stats();
    assert_eq!((s.checkpoints, s.dirty_pages, s.disk_seq), (1, 0, 1));
    assert_eq!(s.pages_written, 3);
    assert!(s.bytes_written >= 3 * PAGE);
    assert!(s.last_checkpoint.is_some());

    // Nothing dirty: a checkpoint is a no-op.
    cache.checkpoint().unwrap();
    assert_eq!(cache.stats().checkpoints, 1);
    assert_eq!(cache.stats().disk_seq, 1);

    let got = after_power_loss(dir, cache, SIZE);
    assert_eq!(&got[PAGE as usize - 2..PAGE as usize + 2], b"span");
    assert_eq!(got[9 * PAGE as usize], 9);
}

#[test]
fn checkpoint_on_close() {
    for on_close in [true, false] {
        let t = TestDir::new();
        let dir = t.path();
        let o = manual(dir).checkpoint_on_close(on_close);
        let mut cache = RioCache::open(disk_path(dir), &o).unwrap();
        cache.window(0, 5).unwrap().copy_from_slice(b"first");
        cache.checkpoint().unwrap();
        cache.window(0, 5).unwrap().copy_from_slice(b"later");
        let image = cache.image_path().to_owned();
        cache.close().unwrap();
        // A warm start sees the latest bytes either way...
        let cache = RioCache::open(disk_path(dir), &manual(dir)).unwrap();
        assert_eq!(cache.start_kind(), StartKind::Warm);
        assert_eq!(cache.read(0, 5).unwrap(), b"later");
        drop(cache);
        // ...a power loss only if the close checkpointed.
        std::fs::remove_file(image).unwrap();
        let cache = RioCache::open(disk_path(dir), &manual(dir)).unwrap();
        let want: &[u8] = if on_close { b"later" } else { b"first" };
        assert_eq!(
            cache.read(0, 5).unwrap(),
            want,
            "checkpoint_on_close({on_close})"
        );
    }
}

#[test]
fn background_checkpoints_never_split_an_update() {
    let t = TestDir::new();
    let dir = t.path();
    let mut cache = RioCache::open(
        disk_path(dir),
        &background(dir, Duration::from_millis(1), u64::MAX),
    )
    .unwrap();
    // Each update writes one counter into two pages far apart; every checkpoint the
    // thread takes must hold equal counters.
    // The writer runs without pause (`wait_until` sleeps between its checks, and on a
    // loaded machine a checkpoint's copy then seldom overlapped a burst of writes).
    let mut i = 0u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut done = || {
        for _ in 0..50 {
            i += 1;
            let mut u = cache.update().unwrap();
            u.window(0, 8).unwrap().copy_from_slice(&i.to_le_bytes());
            std::hint::black_box(&mut u);
            u.window(40 * PAGE, 8)
                .unwrap()
                .copy_from_slice(&i.to_le_bytes());
        }
        // Some of those checkpoints must have found a writer preserving a page of
        // their snapshot (the copy-on-write path, slots of the page arena).
        let s = cache.stats();
        s.checkpoints >= 20 && s.pages_preserved > 0
    };
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for background checkpoints that preserve pages: {:?}",
            cache.stats()
        );
    }
    let got = after_power_loss(dir, cache, SIZE);
    let first = &got[..8];
    assert_ne!(first, [0; 8], "no checkpoint reached the disk");
    assert_eq!(first, &got[40 * PAGE as usize..40 * PAGE as usize + 8]);
}

/// The CPU time, in clock ticks, of this process's threads named `name`
/// (`/proc/self/task/*/stat`: utime + stime).
fn thread_ticks(name: &str) -> u64 {
    let mut total = 0;
    for t in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = t.unwrap().path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        // Fields after the parenthesised name: state is the 3rd, utime the 14th.
        let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 12 {
            total += f[11].parse::<u64>().unwrap_or(0) + f[12].parse::<u64>().unwrap_or(0);
        }
    }
    total
}

/// A zero interval is taken as the shortest (1 ms): the writeback thread sleeps between
/// its checks instead of spinning (with no dirty page it used a whole core).
#[test]
fn a_zero_interval_does_not_spin() {
    let d = TestDir::new();
    let c = RioCache::open(
        disk_path(d.path()),
        &background(d.path(), Duration::ZERO, 1 << 30),
    )
    .unwrap();
    let before = thread_ticks("rio-writeback");
    std::thread::sleep(Duration::from_secs(1));
    let used = thread_ticks("rio-writeback") - before;
    // Clock ticks are 10 ms: a thread that spun for the second used about 100.
    assert!(used < 50, "the writeback thread used {used} ticks in 1 s");
    c.close().unwrap();
}
