//! Growing a cache in place: the data is kept and the new bytes read as zero, warm and
//! cold reopens find the new size, every protection mode guards the grown range, a
//! refused grow writes nothing, and a process killed at every step of a grow (and of
//! its recovery), then put through every power-cut plan, finds the cache at exactly
//! the old size or the new one (with the edits of `grow_with`, all or none), with every
//! byte written before the grow.

mod common;

use std::path::{Path, PathBuf};

use common::{
    assert_same_files, assert_signaled, child_dispatch, disk_path, modes, opts, pattern, run_child,
    snapshot, TestDir, PAGE,
};
use rio_cache::power::{self, Plan};
use rio_cache::{
    existing_size, ColdReason, Error, Protection, RioCache, StartKind, CRASH_POINTS,
    GROW_CRASH_POINTS,
};

const SIZE: u64 = 8 * PAGE;
/// Not a whole number of pages, on purpose.
const GROWN: u64 = 21 * PAGE + 100;

fn o(dir: &Path, size: u64) -> rio_cache::RioOptions {
    opts(dir, size, Protection::Auto)
        .checkpoint_on_close(false)
        .record_writes(dir.join("shm"))
}

/// The bytes written before the grow: checkpointed, then changed again in memory only.
fn before() -> Vec<u8> {
    let mut v = pattern(1, SIZE as usize);
    v[PAGE as usize * 3..PAGE as usize * 5].copy_from_slice(&pattern(2, 2 * PAGE as usize));
    v
}

/// What the grow writes with the size (`grow_with`): in the old range, across a page
/// boundary, across the old end and at the new end.
const EDITS: [(u64, &[u8]); 4] = [
    (10, b"header"),
    (2 * PAGE - 3, b"across"),
    (SIZE - 2, b"old|new"),
    (GROWN - 4, b"end!"),
];

/// The cache after the grow: `before`, zeros, and the edits.
fn after() -> Vec<u8> {
    let mut v = before();
    v.resize(GROWN as usize, 0);
    for (at, b) in EDITS {
        v[at as usize..at as usize + b.len()].copy_from_slice(b);
    }
    v
}

/// Checkpoint of pattern 1, then pages 3-4 changed in the memory image only.
fn setup(dir: &Path) {
    let mut cache = RioCache::open(disk_path(dir), &o(dir, SIZE)).unwrap();
    cache
        .window(0, SIZE)
        .unwrap()
        .copy_from_slice(&pattern(1, SIZE as usize));
    cache.checkpoint().unwrap();
    cache
        .window(3 * PAGE, 2 * PAGE)
        .unwrap()
        .copy_from_slice(&pattern(2, 2 * PAGE as usize));
}

/// Child: opens the cache and grows it with the edits; `CRASH_POINT` kills it on the
/// way.
fn child_grow(dir: &Path, _arg: &str) {
    let mut cache = RioCache::open(disk_path(dir), &o(dir, SIZE)).unwrap();
    cache.grow_with(GROWN, &EDITS).unwrap();
    assert!(cache.as_slice().unwrap() == after());
    common::report("survived");
}

/// Child: opens the cache at whatever size it has (recovering it) and stops there.
fn child_open(dir: &Path, _arg: &str) {
    let size = existing_size(disk_path(dir)).unwrap().unwrap();
    let cache = RioCache::open(disk_path(dir), &o(dir, size)).unwrap();
    common::report("opened");
    std::mem::forget(cache);
}

/// Child: grows under the protection named by `arg`, writes a byte of the new range in a
/// window, then stores to it outside one (which must fault, except without protection).
fn child_stray_store(dir: &Path, arg: &str) {
    let mode = match arg {
        "mprotect" => Protection::Mprotect,
        "pkey" => Protection::Pkey,
        "alias" => Protection::Alias,
        other => panic!("unknown protection {other}"),
    };
    let mut cache = RioCache::open(disk_path(dir), &opts(dir, SIZE, mode)).unwrap();
    cache.grow(GROWN).unwrap();
    cache.window(GROWN - 8, 1).unwrap()[0] = 7;
    let addr = cache.read(GROWN - 8, 1).unwrap().as_ptr() as usize;
    common::report("armed");
    // SAFETY: deliberately a store through the read-only public mapping, outside any
    // window: under every mode tested here the MMU refuses it with SIGSEGV, which kills
    // this child (the parent asserts the signal and that the byte is unchanged).
    unsafe { std::ptr::write_volatile(addr as *mut u8, 0x55) };
    common::report("stored");
}

#[test]
fn child_process_entry() {
    child_dispatch(&[
        ("grow", child_grow),
        ("open", child_open),
        ("stray", child_stray_store),
    ]);
}

/// Opens the cache at the size its files say, checking the start kind.
fn reopen(dir: &Path, want: StartKind) -> RioCache {
    let size = existing_size(disk_path(dir)).unwrap().unwrap();
    let cache = RioCache::open(disk_path(dir), &o(dir, size)).unwrap();
    assert_eq!(cache.start_kind(), want);
    cache
}

#[test]
fn grow_keeps_the_data_and_zeroes_the_new_bytes_in_every_mode() {
    let _serial = common::serial();
    // 3000 pages: the memory image's dirty maps outgrow their page, so its layout moves.
    for (mode, new_len) in modes()
        .into_iter()
        .map(|m| (m, GROWN))
        .chain([(Protection::Auto, 3000 * PAGE + 1)])
    {
        let what = format!("{mode:?} to {new_len}");
        let t = TestDir::new();
        let dir = t.path();
        let op = |size| opts(dir, size, mode).checkpoint_on_close(false);
        let mut cache = RioCache::open(disk_path(dir), &op(SIZE)).unwrap();
        cache
            .window(0, SIZE)
            .unwrap()
            .copy_from_slice(&pattern(1, SIZE as usize));
        cache.grow(new_len).unwrap();
        assert_eq!(cache.len(), new_len, "{what}");
        assert!(
            cache.read(0, SIZE).unwrap() == pattern(1, SIZE as usize),
            "{what}"
        );
        assert!(
            cache.as_slice().unwrap()[SIZE as usize..]
                .iter()
                .all(|&b| b == 0),
            "{what}: new bytes not zero"
        );
        // Windows across the old end and at the new one, through the new mappings.
        cache
            .window(SIZE - 10, 20)
            .unwrap()
            .copy_from_slice(&pattern(3, 20));
        cache
            .window(new_len - 50, 50)
            .unwrap()
            .copy_from_slice(&pattern(4, 50));
        let mut want = pattern(1, SIZE as usize);
        want.resize(new_len as usize, 0);
        want[SIZE as usize - 10..SIZE as usize + 10].copy_from_slice(&pattern(3, 20));
        want[new_len as usize - 50..].copy_from_slice(&pattern(4, 50));
        assert!(cache.as_slice().unwrap() == want, "{what}");
        assert!(matches!(
            cache.read(new_len - 1, 2),
            Err(Error::OutOfRange { .. })
        ));
        drop(cache);

        // Warm: the rebuilt image holds the writes made after the grow.
        assert_eq!(existing_size(disk_path(dir)).unwrap(), Some(new_len));
        let cache = RioCache::open(disk_path(dir), &op(new_len)).unwrap();
        assert_eq!(cache.start_kind(), StartKind::Warm, "{what}");
        assert!(cache.as_slice().unwrap() == want, "{what}: warm reopen");
        cache.checkpoint().unwrap();
        let image = cache.image_path().to_owned();
        drop(cache);

        // Cold: the disk image has the new size and everything.
        std::fs::remove_file(image).unwrap();
        let cache = RioCache::open(disk_path(dir), &op(new_len)).unwrap();
        assert_eq!(
            cache.start_kind(),
            StartKind::Cold(ColdReason::NoImage),
            "{what}"
        );
        assert!(cache.as_slice().unwrap() == want, "{what}: cold reopen");
        assert_eq!(
            std::fs::metadata(disk_path(dir)).unwrap().len(),
            rio_cache::disk_image_len(new_len)
        );
    }
}

#[test]
fn grow_with_background_writeback_keeps_writing_back() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let op = |size| {
        opts(dir, size, Protection::Auto).writeback(rio_cache::Writeback::Background {
            interval: std::time::Duration::from_millis(1),
            dirty_bytes: 1,
        })
    };
    let mut cache = RioCache::open(disk_path(dir), &op(SIZE)).unwrap();
    cache.grow(GROWN).unwrap();
    let seq = cache.stats().disk_seq;
    cache.window(GROWN - 1, 1).unwrap()[0] = 9;
    // The restarted writeback thread takes the checkpoint (no timing: wait for it).
    common::wait_until("a background checkpoint after the grow", || {
        cache.stats().disk_seq > seq
    });
    let disk = common::disk_data(&disk_path(dir), dir);
    assert_eq!(disk[(GROWN - 1) as usize], 9);
}

#[test]
fn refused_grows_write_nothing() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let mut cache = RioCache::open(disk_path(dir), &o(dir, SIZE)).unwrap();
    cache.window(0, 4).unwrap().copy_from_slice(b"data");
    let files: Vec<PathBuf> = vec![
        disk_path(dir),
        cache.journal_path().to_owned(),
        cache.image_path().to_owned(),
    ];
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let before = snapshot(&paths);
    assert!(matches!(
        cache.grow(SIZE - 1),
        Err(Error::CannotShrink { len: SIZE, requested }) if requested == SIZE - 1
    ));
    assert!(matches!(
        cache.grow(u64::MAX),
        Err(Error::TooLarge {
            requested: u64::MAX,
            ..
        })
    ));
    assert!(matches!(cache.grow(1 << 51), Err(Error::TooLarge { .. })));
    assert!(matches!(
        cache.grow_with(GROWN, &[(GROWN - 1, b"xy")]),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        cache.grow_with(GROWN, &[(u64::MAX, b"x")]),
        Err(Error::OutOfRange { .. })
    ));
    cache.grow(SIZE).unwrap(); // the same size: nothing to do
    assert_same_files(&before, &snapshot(&paths), "refused grow");
    cache.poison("test");
    assert!(matches!(cache.grow(GROWN), Err(Error::Poisoned(_))));
    assert_same_files(&before, &snapshot(&paths), "grow of a poisoned cache");
    assert_eq!(cache.len(), SIZE);
    assert!(
        matches!(cache.read(0, 4), Err(Error::Poisoned(_))),
        "a poisoned cache refuses reads too"
    );
}

#[test]
fn stray_stores_into_the_grown_range_fault_in_every_guarded_mode() {
    let _serial = common::serial();
    for mode in modes() {
        let arg = match mode {
            Protection::Mprotect => "mprotect",
            Protection::Pkey => "pkey",
            Protection::Alias => "alias",
            _ => continue, // without protection a stray store lands: nothing to test
        };
        let t = TestDir::new();
        let dir = t.path();
        let status = run_child("stray", dir, arg, &[]);
        assert_signaled(status, libc::SIGSEGV, arg);
        assert_eq!(common::reports(dir), ["armed"], "{arg}");
        let cache = RioCache::open(disk_path(dir), &opts(dir, GROWN, mode)).unwrap();
        assert_eq!(cache.start_kind(), StartKind::Warm);
        assert_eq!(cache.read(GROWN - 8, 1).unwrap(), [7], "{arg}");
    }
}

fn crash_points_or_skip() -> bool {
    if crash_point::enabled() {
        return true;
    }
    eprintln!("note: crash points are not compiled in (crash-point/enabled); skipped");
    false
}

/// Runs `role` with `point` armed and asserts it died there.
fn kill_at(dir: &Path, role: &str, point: &str) {
    let spec = format!("{point}:1");
    let status = run_child(role, dir, "", &[("CRASH_POINT", &spec)]);
    assert_signaled(status, libc::SIGKILL, point);
    assert!(common::reports(dir).is_empty(), "{point} was never reached");
}

/// The power-cut plans every crash state is tried with.
fn plans() -> Vec<Plan> {
    let mut p = vec![
        Plan::DropAll,
        Plan::KeepAll,
        Plan::Prefix {
            writes: 0,
            sectors: 3,
        },
        Plan::Suffix { writes: 1 },
    ];
    p.extend((1..=12).map(|seed| Plan::Random { seed }));
    p
}

/// Every file of a test directory, to put a crash state aside and restore it.
struct Files(Vec<(PathBuf, Vec<u8>)>);

fn save(dir: &Path) -> Files {
    let mut v = Vec::new();
    for d in [dir.to_owned(), dir.join("shm")] {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                v.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    Files(v)
}

fn restore(dir: &Path, f: &Files) {
    for d in [dir.to_owned(), dir.join("shm")] {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() && !f.0.iter().any(|(q, _)| *q == p) {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    for (p, b) in &f.0 {
        std::fs::write(p, b).unwrap();
    }
}

/// Opens the cache at the size its files say and asserts it is exactly the old or the
/// new one, with every byte written before the grow, and the disk file of that size.
/// Returns whether it is the new one.
fn old_or_new(dir: &Path, what: &str) -> bool {
    let size = existing_size(disk_path(dir))
        .unwrap_or_else(|e| panic!("{what}: existing_size: {e}"))
        .unwrap();
    let cache = RioCache::open(disk_path(dir), &o(dir, size))
        .unwrap_or_else(|e| panic!("{what}: open after the crash: {e}"));
    let grown = match size {
        SIZE => {
            assert!(
                cache.as_slice().unwrap() == before(),
                "{what}: old size, wrong data"
            );
            false
        }
        GROWN => {
            assert!(
                cache.as_slice().unwrap() == after(),
                "{what}: new size, wrong data"
            );
            true
        }
        other => panic!("{what}: the cache is {other} bytes"),
    };
    assert_eq!(
        std::fs::metadata(disk_path(dir)).unwrap().len(),
        rio_cache::disk_image_len(size),
        "{what}: disk file length"
    );
    // The recovered cache is usable: a checkpoint and a cold start keep it.
    cache.checkpoint().unwrap();
    let image = cache.image_path().to_owned();
    drop(cache);
    std::fs::remove_file(image).unwrap();
    let cache = reopen(dir, StartKind::Cold(ColdReason::NoImage));
    assert_eq!(cache.len(), size, "{what}");
    grown
}

#[test]
fn killed_at_every_grow_step_then_power_loss() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    // The grow's own steps, then the cold load that rebuilds the image inside it.
    let mut points: Vec<&str> = GROW_CRASH_POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("rio.grow."))
        .collect();
    assert_eq!(points.len(), 9, "a grow step without a test: {points:?}");
    let loaded = points
        .iter()
        .position(|p| *p == "rio.grow.image_loaded")
        .unwrap();
    points.insert(loaded, "rio.cold_load.half");
    points.insert(loaded + 1, "rio.cold_load.loaded");
    assert!(CRASH_POINTS.contains(&"rio.cold_load.half"));
    let commit_written = points
        .iter()
        .position(|p| *p == "rio.grow.commit_written")
        .unwrap();
    for (i, point) in points.iter().enumerate() {
        let t = TestDir::new();
        let dir = t.path();
        setup(dir);
        kill_at(dir, "grow", point);
        let crashed = save(dir);

        // The process crash alone: before the commit record the old size, from it on the
        // new one; the image is incomplete until the very end, so the start is cold.
        let what = format!("{point}, killed");
        let start = if *point == "rio.grow.image_ready" {
            StartKind::Warm
        } else {
            StartKind::Cold(ColdReason::Incomplete)
        };
        let size = existing_size(disk_path(dir)).unwrap().unwrap();
        let cache =
            RioCache::open(disk_path(dir), &o(dir, size)).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(cache.start_kind(), start, "{what}");
        drop(cache);
        restore(dir, &crashed);
        // (A written commit record survives a process crash: the page cache keeps it.)
        assert_eq!(old_or_new(dir, &what), i >= commit_written, "{what}");

        // Then a power loss under every plan.
        let mut outcomes = Vec::new();
        for plan in plans() {
            restore(dir, &crashed);
            power::cut(disk_path(dir), &o(dir, SIZE), plan).unwrap();
            let what = format!("{point}, {plan:?}");
            let grown = old_or_new(dir, &what);
            if i < commit_written {
                assert!(!grown, "{what}: an uncommitted grow took effect");
            } else if i > commit_written {
                assert!(grown, "{what}: a committed grow was lost");
            }
            outcomes.push(grown);
        }
        if i == commit_written {
            // The unsynced commit record: some plans keep it, some lose it.
            assert!(
                outcomes.contains(&true) && outcomes.contains(&false),
                "{point}: the plans do not cover both outcomes"
            );
        }
    }

    // A grow that returned survives any power loss.
    let t = TestDir::new();
    let dir = t.path();
    setup(dir);
    assert_eq!(run_child("grow", dir, "", &[]).code(), Some(0));
    let done = save(dir);
    for plan in plans() {
        restore(dir, &done);
        power::cut(disk_path(dir), &o(dir, SIZE), plan).unwrap();
        assert!(old_or_new(dir, &format!("completed grow, {plan:?}")));
    }
}

#[test]
fn killed_while_undoing_or_finishing_a_grow() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    for (cut_at, recover_at, grown) in [
        // The file was extended; the open that truncates it back is killed.
        ("rio.grow.extended", "rio.recover.grow_undone", false),
        // The grow committed; the open that installs it is killed.
        ("rio.grow.committed", "rio.recover.installed", true),
        ("rio.grow.committed", "rio.cold_load.half", true),
    ] {
        let what = format!("{cut_at} then {recover_at}");
        let t = TestDir::new();
        let dir = t.path();
        setup(dir);
        kill_at(dir, "grow", cut_at);
        kill_at(dir, "open", recover_at);
        let crashed = save(dir);
        assert_eq!(old_or_new(dir, &what), grown, "{what}");
        for plan in plans() {
            restore(dir, &crashed);
            power::cut(disk_path(dir), &o(dir, SIZE), plan).unwrap();
            assert_eq!(
                old_or_new(dir, &format!("{what}, {plan:?}")),
                grown,
                "{what}, {plan:?}"
            );
        }
    }
}

#[test]
fn inspection_shows_an_interrupted_grow() {
    use rio_cache::inspect::{inspect, InterruptedGrow, Source};
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    for (point, want) in [
        (
            "rio.grow.extended",
            Some(InterruptedGrow::Uncommitted { to: GROWN }),
        ),
        (
            "rio.grow.committed",
            Some(InterruptedGrow::Committed { to: GROWN }),
        ),
        ("rio.grow.journal_cleared", None),
    ] {
        let t = TestDir::new();
        let dir = t.path();
        setup(dir);
        kill_at(dir, "grow", point);
        let files = save(dir);
        let info = inspect(&disk_path(dir), &dir.join("shm")).unwrap();
        assert_eq!(info.grow, want, "{point}");
        // The length the next open accepts is the file's: no false alarm.
        assert_eq!(info.file_len, info.expected_len, "{point}");
        let size = if matches!(want, Some(InterruptedGrow::Uncommitted { .. })) {
            SIZE
        } else {
            GROWN
        };
        assert_eq!(info.data_len, size, "{point}");
        // The disk as the next open will leave it: the edits come with the new size.
        let data = info.read(Source::Disk, 0, size).unwrap();
        let want_data = if size == SIZE { before() } else { after() };
        assert!(data == want_data, "{point}: inspected data");
        // Inspection writes nothing.
        let after_files = save(dir);
        assert!(files.0 == after_files.0, "{point}: inspection wrote");
    }
}

/// A grow killed after it extended the file and before its commit point leaves a torn
/// journal whose header says how far the grow went (the intent). Every read the next
/// open makes fails in turn: the open reports the I/O error, and the one after it undoes
/// the grow as if nothing had failed. (A failed read of the intent was taken for "no
/// grow": the open then refused the longer file as corrupt.)
#[test]
fn every_read_of_the_open_after_an_interrupted_grow_can_fail() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    let t = TestDir::new();
    let dir = t.path();
    setup(dir);
    kill_at(dir, "grow", "rio.grow.extended");
    let crashed = save(dir);
    let counting = rio_cache::Faults::counting();
    let size = existing_size(disk_path(dir)).unwrap().unwrap();
    drop(RioCache::open(disk_path(dir), &o(dir, size).faults(counting.clone())).unwrap());
    let reads: Vec<(usize, rio_cache::IoCall)> = counting
        .calls()
        .into_iter()
        .enumerate()
        .filter(|(_, c)| c.op == rio_cache::IoOp::Read)
        .collect();
    assert!(
        reads
            .iter()
            .any(|(_, c)| c.file == rio_cache::IoFile::Journal),
        "{reads:?}"
    );
    for (n, call) in reads {
        restore(dir, &crashed);
        let faults = rio_cache::Faults::counting();
        faults.fail_at(n as u64, libc::EIO);
        match RioCache::open(disk_path(dir), &o(dir, size).faults(faults)) {
            Err(Error::Io { .. }) => {}
            other => panic!("read {n} ({call}) failing: {other:?}"),
        }
        let cache = RioCache::open(disk_path(dir), &o(dir, size))
            .unwrap_or_else(|e| panic!("after read {n} ({call}) failed: {e}"));
        assert!(cache.as_slice().unwrap() == before(), "read {n} ({call})");
    }
}
