//! Process crash: a child process writes through write windows and is SIGKILLed; the
//! memory image must hold every store it made, and the reopen must start warm.

mod common;

use std::path::Path;

use common::{
    assert_signaled, child_dispatch, disk_path, kill, modes, opts, pattern, reports, spawn_child,
    wait_until, TestDir, PAGE,
};
use rio_cache::{Protection, RioCache, StartKind};

/// Record slots of 64 bytes: `[index + 1 as u64][56 bytes of pattern(index)]`.
const RECORD: u64 = 64;
const SIZE: u64 = 256 * PAGE; // 16384 records

fn record(i: u64) -> Vec<u8> {
    let mut r = (i + 1).to_le_bytes().to_vec();
    r.extend(pattern(i, (RECORD - 8) as usize));
    r
}

fn protection_from(arg: &str) -> Protection {
    match arg {
        "none" => Protection::None,
        "mprotect" => Protection::Mprotect,
        "pkey" => Protection::Pkey,
        "alias" => Protection::Alias,
        other => panic!("unknown protection {other}"),
    }
}

fn protection_name(p: Protection) -> &'static str {
    match p {
        Protection::None => "none",
        Protection::Mprotect => "mprotect",
        Protection::Pkey => "pkey",
        Protection::Alias => "alias",
        Protection::Auto => "auto",
    }
}

/// Child: writes records one window each, acknowledging each after its window closed,
/// until every slot is full; then waits to be killed.
fn child_write_records(dir: &Path, arg: &str) {
    let mut cache =
        RioCache::open(disk_path(dir), &opts(dir, SIZE, protection_from(arg))).expect("child open");
    for i in 0..SIZE / RECORD {
        cache
            .window(i * RECORD, RECORD)
            .expect("window")
            .copy_from_slice(&record(i));
        common::report(&i.to_string());
    }
    common::report("full");
    loop {
        std::thread::park();
    }
}

/// Child: inside one update (windows open, the pages writable) stores 8-byte counters
/// one by one, acknowledging every 16th; never closes the update.
fn child_write_in_open_update(dir: &Path, arg: &str) {
    let mut cache =
        RioCache::open(disk_path(dir), &opts(dir, SIZE, protection_from(arg))).expect("child open");
    let mut update = cache.update().expect("update");
    let n = (SIZE - PAGE) / 8;
    update.open(PAGE, SIZE - PAGE).expect("open");
    for i in 0..n {
        let w = update.window(PAGE + 8 * i, 8).expect("window");
        w.copy_from_slice(&(i + 1).to_le_bytes());
        if i % 16 == 15 {
            common::report(&i.to_string());
        }
    }
    common::report("full");
    loop {
        std::thread::park();
    }
}

#[test]
fn child_process_entry() {
    child_dispatch(&[
        ("write_records", child_write_records),
        ("write_in_open_update", child_write_in_open_update),
    ]);
}

/// The highest acknowledged index in the child's reports.
fn last_ack(dir: &Path) -> Option<u64> {
    reports(dir).iter().filter_map(|l| l.parse().ok()).max()
}

#[test]
fn sigkilled_writer_loses_no_acknowledged_record() {
    let _serial = common::serial();
    for mode in modes() {
        let t = TestDir::new();
        let dir = t.path();
        let child = spawn_child("write_records", dir, protection_name(mode), &[]);
        // Kill it mid-stream, somewhere after a few thousand records.
        wait_until("the child's acknowledgements", || {
            last_ack(dir).is_some_and(|n| n >= 2000)
        });
        kill(&child);
        let mut child = child;
        assert_signaled(child.wait().unwrap(), libc::SIGKILL, "writer");
        let acked = last_ack(dir).unwrap();
        assert!(
            !reports(dir).iter().any(|l| l == "full"),
            "{mode:?}: the child finished before it was killed; the test proves nothing"
        );

        let cache = RioCache::open(disk_path(dir), &opts(dir, SIZE, mode)).unwrap();
        assert_eq!(cache.start_kind(), StartKind::Warm, "{mode:?}");
        for i in 0..=acked {
            assert_eq!(
                cache.read(i * RECORD, RECORD).unwrap(),
                record(i),
                "{mode:?}: acknowledged record {i} of {acked} lost"
            );
        }
        // Past the one record that may have been written but not acknowledged, nothing.
        let tail = (acked + 2) * RECORD;
        assert!(
            cache
                .read(tail, SIZE - tail)
                .unwrap()
                .iter()
                .all(|&b| b == 0),
            "{mode:?}: stores appeared that the child never made"
        );
    }
}

#[test]
fn sigkilled_inside_an_open_update_keeps_the_stores_made_before_death() {
    let _serial = common::serial();
    for mode in modes() {
        let t = TestDir::new();
        let dir = t.path();
        let o = opts(dir, SIZE, mode);
        // An older checkpoint, so "durable" has something to be compared with.
        {
            let mut cache = RioCache::open(disk_path(dir), &o).unwrap();
            cache.window(0, 4).unwrap().copy_from_slice(b"old!");
            cache.close().unwrap();
        }
        let child = spawn_child("write_in_open_update", dir, protection_name(mode), &[]);
        wait_until("the child's acknowledgements", || {
            last_ack(dir).is_some_and(|n| n >= 300)
        });
        kill(&child);
        let mut child = child;
        assert_signaled(child.wait().unwrap(), libc::SIGKILL, "writer");
        assert!(
            !reports(dir).iter().any(|l| l == "full"),
            "{mode:?}: too late"
        );
        let acked = last_ack(dir).unwrap();

        let check = |cache: &RioCache, upto: u64| {
            for i in 0..=upto {
                let got = cache.read(PAGE + 8 * i, 8).unwrap();
                assert_eq!(got, (i + 1).to_le_bytes(), "{mode:?}: counter {i} lost");
            }
        };
        let cache = RioCache::open(disk_path(dir), &o).unwrap();
        assert_eq!(cache.start_kind(), StartKind::Warm, "{mode:?}");
        check(&cache, acked);
        // The pages the dead update opened are still dirty, so a checkpoint writes them:
        // after it, even losing the memory image loses nothing.
        assert!(cache.stats().dirty_pages >= 1, "{mode:?}: dirty map lost");
        cache.checkpoint().unwrap();
        let image = cache.image_path().to_owned();
        drop(cache);
        std::fs::remove_file(image).unwrap();
        let cache = RioCache::open(disk_path(dir), &o).unwrap();
        assert!(matches!(cache.start_kind(), StartKind::Cold(_)), "{mode:?}");
        assert_eq!(cache.read(0, 4).unwrap(), b"old!");
        check(&cache, acked);
    }
}
