//! Power loss: the memory image is gone (deleted), so the cache starts cold from the disk
//! image, which must be exactly one checkpoint: the last one that committed. The process
//! is also killed at every checkpoint and recovery step (crash points), after which both
//! a cold start (exactly the old or the new checkpoint) and a warm start (every store)
//! must hold.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_signaled, child_dispatch, disk_path, opts, pattern, run_child, TestDir, PAGE};
use rio_cache::{ColdReason, Protection, RioCache, StartKind, CRASH_POINTS};

const SIZE: u64 = 16 * PAGE;

fn o(dir: &Path) -> rio_cache::RioOptions {
    opts(dir, SIZE, Protection::Auto).checkpoint_on_close(false)
}

/// The contents of checkpoint 1.
fn old_state() -> Vec<u8> {
    pattern(1, SIZE as usize)
}

/// Checkpoint 2: three runs of pages (1, 5-6, 12) changed, partly.
fn new_state() -> Vec<u8> {
    let mut v = old_state();
    for (page, seed) in [(1, 21), (5, 25), (6, 26), (12, 32)] {
        let at = (page * PAGE + 10) as usize;
        v[at..at + 3000].copy_from_slice(&pattern(seed, 3000));
    }
    v
}

/// Writes `want` over the cache's contents, page by page, only where it differs.
fn write_state(cache: &mut RioCache, want: &[u8]) {
    let mut u = cache.update().unwrap();
    for p in 0..SIZE / PAGE {
        let r = (p * PAGE) as usize..((p + 1) * PAGE) as usize;
        if u.read(p * PAGE, PAGE).unwrap() != &want[r.clone()] {
            u.window(p * PAGE, PAGE).unwrap().copy_from_slice(&want[r]);
        }
    }
}

/// Leaves checkpoint 1 (= old) on disk and the new state, not yet checkpointed, in the
/// memory image.
fn setup(dir: &Path) -> PathBuf {
    let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    write_state(&mut cache, &old_state());
    cache.checkpoint().unwrap();
    assert_eq!(cache.stats().disk_seq, 1);
    write_state(&mut cache, &new_state());
    let image = cache.image_path().to_owned();
    drop(cache);
    image
}

/// Child: opens the cache (warm or cold) and takes a checkpoint; `CRASH_POINT` kills it.
fn child_checkpoint(dir: &Path, _arg: &str) {
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    cache.checkpoint().unwrap();
    common::report("survived");
}

#[test]
fn child_process_entry() {
    child_dispatch(&[("checkpoint", child_checkpoint)]);
}

fn crash_points_or_skip() -> bool {
    if crash_point::enabled() {
        return true;
    }
    eprintln!("note: crash points are not compiled in (crash-point/enabled); skipped");
    false
}

/// Runs the checkpoint child with `point` armed and asserts it died there.
fn kill_at(dir: &Path, point: &str) {
    let spec = format!("{point}:1");
    let status = run_child("checkpoint", dir, "", &[("CRASH_POINT", &spec)]);
    assert_signaled(status, libc::SIGKILL, point);
    assert!(common::reports(dir).is_empty(), "{point} was never reached");
}

/// The three files of a cache, to put a crash state aside and restore it.
struct Files {
    disk: Vec<u8>,
    journal: Option<Vec<u8>>,
    image: Option<Vec<u8>>,
}

fn save(dir: &Path, image: &Path) -> Files {
    Files {
        disk: std::fs::read(disk_path(dir)).unwrap(),
        journal: std::fs::read(rio_cache::journal_path(&disk_path(dir))).ok(),
        image: std::fs::read(image).ok(),
    }
}

/// Restores the files in place (the disk file keeps its inode, which the memory image
/// records).
fn restore(dir: &Path, image: &Path, f: &Files) {
    std::fs::write(disk_path(dir), &f.disk).unwrap();
    let j = rio_cache::journal_path(&disk_path(dir));
    match &f.journal {
        Some(b) => std::fs::write(j, b).unwrap(),
        None => drop(std::fs::remove_file(j)),
    }
    match &f.image {
        Some(b) => std::fs::write(image, b).unwrap(),
        None => drop(std::fs::remove_file(image)),
    }
}

/// Power loss: drop the memory image and start cold. Returns the data and disk seq.
fn cold_start(dir: &Path, image: &Path) -> (Vec<u8>, u64) {
    std::fs::remove_file(image).unwrap();
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Cold(ColdReason::NoImage));
    (cache.as_slice().to_vec(), cache.stats().disk_seq)
}

/// After a process crash the warm start holds every store, and the pages the dead
/// checkpoint had in flight are dirty again, so the next checkpoint makes them durable.
fn warm_start_holds_everything(dir: &Path, image: &Path, what: &str) {
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Warm, "{what}");
    assert!(
        cache.as_slice() == new_state(),
        "{what}: warm start lost stores"
    );
    cache.checkpoint().unwrap();
    drop(cache);
    let (data, _) = cold_start(dir, image);
    assert!(
        data == new_state(),
        "{what}: the checkpoint after the warm start did not write every in-flight page"
    );
}

#[test]
fn cold_start_equals_the_last_checkpoint() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let (data, seq) = cold_start(dir, &image);
    assert!(data == old_state(), "cold start is not checkpoint 1");
    assert_eq!(seq, 1);

    // Writes after the cold start, then a checkpoint, then more writes: power loss keeps
    // exactly the checkpoint.
    let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Warm);
    write_state(&mut cache, &new_state());
    cache.checkpoint().unwrap();
    cache.window(0, 5).unwrap().copy_from_slice(b"later");
    drop(cache);
    let (data, seq) = cold_start(dir, &image);
    assert!(data == new_state(), "cold start is not checkpoint 2");
    assert_eq!(seq, 2);
}

#[test]
fn killed_at_every_checkpoint_step() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    let points: Vec<&str> = CRASH_POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("rio.checkpoint."))
        .collect();
    assert_eq!(
        points.len(),
        9,
        "a checkpoint step without a test: {points:?}"
    );
    // Until the commit record is written, the checkpoint has not happened; once it is
    // synced, it has. In between, either is a correct answer.
    let commit_written = points
        .iter()
        .position(|p| *p == "rio.checkpoint.commit_written")
        .unwrap();
    for (i, point) in points.iter().enumerate() {
        let t = TestDir::new();
        let dir = t.path();
        let image = setup(dir);
        kill_at(dir, point);
        let crashed = save(dir, &image);

        let (data, seq) = cold_start(dir, &image);
        let is_old = data == old_state();
        let is_new = data == new_state();
        assert!(
            is_old || is_new,
            "{point}: cold start is neither checkpoint"
        );
        if i < commit_written {
            assert!(
                is_old && seq == 1,
                "{point}: an uncommitted checkpoint was installed"
            );
        } else if i > commit_written {
            assert!(
                is_new && seq == 2,
                "{point}: a committed checkpoint was lost"
            );
        }

        restore(dir, &image, &crashed);
        warm_start_holds_everything(dir, &image, point);
    }
}

#[test]
fn killed_at_every_recovery_step() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    let points: Vec<&str> = CRASH_POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("rio.recover."))
        .collect();
    assert_eq!(
        points.len(),
        3,
        "a recovery step without a test: {points:?}"
    );
    for point in points {
        for warm in [true, false] {
            let what = format!("{point} ({} recovery)", if warm { "warm" } else { "cold" });
            let t = TestDir::new();
            let dir = t.path();
            let image = setup(dir);
            // A committed journal that the next open must install...
            kill_at(dir, "rio.checkpoint.commit_synced");
            if !warm {
                std::fs::remove_file(&image).unwrap();
            }
            // ...and that open is killed while installing it.
            kill_at(dir, point);
            let crashed = save(dir, &image);

            if warm {
                let (data, seq) = cold_start(dir, &image);
                assert!(data == new_state() && seq == 2, "{what}: cold start");
                restore(dir, &image, &crashed);
                warm_start_holds_everything(dir, &image, &what);
            } else {
                // The killed open never finished loading its image: the next one
                // notices and loads again.
                let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
                assert_eq!(
                    cache.start_kind(),
                    StartKind::Cold(ColdReason::Incomplete),
                    "{what}"
                );
                assert!(cache.as_slice() == new_state(), "{what}: data");
                assert_eq!(cache.stats().disk_seq, 2, "{what}");
            }
        }
    }
}

#[test]
fn killed_during_a_cold_load() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    for point in ["rio.cold_load.half", "rio.cold_load.loaded"] {
        let t = TestDir::new();
        let dir = t.path();
        let image = setup(dir);
        std::fs::remove_file(&image).unwrap();
        kill_at(dir, point);
        let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
        assert_eq!(
            cache.start_kind(),
            StartKind::Cold(ColdReason::Incomplete),
            "{point}"
        );
        assert!(cache.as_slice() == old_state(), "{point}: data");
    }
}

/// Without protection, an update remembers the pages the previous one opened (they are
/// known dirty). A checkpoint in between clears those marks, so a page written again
/// after it must be marked dirty again, or the next checkpoint would miss it.
#[test]
fn page_rewritten_after_a_checkpoint_reaches_the_next_one() {
    use rio_cache::{Protection, RioCache, RioOptions, Writeback};
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.rio");
    let opts = RioOptions::new()
        .size(64 << 10)
        .cache_dir(dir.path())
        .protection(Protection::None)
        .writeback(Writeback::Manual)
        .checkpoint_on_close(false);
    let mut cache = RioCache::open(&path, &opts).unwrap();
    cache.window(100, 4).unwrap().copy_from_slice(b"one!");
    cache.checkpoint().unwrap();
    cache.window(100, 4).unwrap().copy_from_slice(b"two!");
    assert_eq!(
        cache.stats().dirty_pages,
        1,
        "the rewritten page is dirty again"
    );
    cache.checkpoint().unwrap();
    let image = cache.image_path().to_owned();
    drop(cache);
    std::fs::remove_file(image).unwrap(); // power loss
    let cache = RioCache::open(&path, &opts).unwrap();
    assert_eq!(cache.read(100, 4).unwrap(), b"two!");
}
