//! Real SIGKILLs inside heap allocation, free and extension, and during the recovery
//! that follows.
//!
//! The test binary re-executes itself as a child that runs a fixed script of heap
//! transactions and appends an acknowledgement after each returns. The parent arms one
//! crash point at its N-th hit, for every heap point (and the undo-log points the heap
//! goes through) and every N until the script completes. After each kill it runs a
//! second child that recovers the segment and is itself killed in the middle of its
//! roll-back, then opens the segment and checks: `check()` is clean and the live blocks
//! (offsets and contents) are exactly those after the acknowledged transactions, or
//! after the one in flight too if it had committed.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vista::{Options, PPtr, Segment, Writeback};

const SIZE: u64 = 2200 << 10; // two full zones and part of a third
const CHILD_ENV: &str = "VISTA_HEAP_CHILD";

fn opts(cache: &Path) -> Options {
    Options::new()
        .size(SIZE)
        .lanes(2)
        .undo_log_size(256 << 10)
        .protection(common::protection())
        .writeback(Writeback::Manual)
        .cache_dir(cache)
}

fn ack(path: &Path, n: u32) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(f, "{n}").unwrap();
}

fn fill(tx: &mut vista::Transaction<'_>, p: PPtr<[u8]>, g: u8) {
    let b = tx.bytes_mut(p).unwrap();
    let len = b.len();
    b.copy_from_slice(&common::pattern(g, len));
}

/// The script: five transactions; `after(k)` is called once the k-th has returned.
fn script(seg: &Segment, mut after: impl FnMut(u32)) {
    let sizes = [
        16u64, 24, 100, 100, 700, 2048, 5000, 20_000, 48, 48, 48, 300,
    ];
    // T1: the root and a dozen blocks, small and large (formats the heap). Commit.
    let mut tx = seg.begin().unwrap();
    let root = tx.root::<[PPtr<[u8]>; 16]>().unwrap();
    let mut blocks = Vec::new();
    for (i, &s) in sizes.iter().enumerate() {
        let p = tx.alloc_bytes(s).unwrap();
        fill(&mut tx, p, i as u8);
        blocks.push(p);
    }
    tx.get_mut(root).unwrap()[..12].copy_from_slice(&blocks);
    tx.commit().unwrap();
    after(1);
    // T2: frees and allocations, aborted.
    let mut tx = seg.begin().unwrap();
    for &p in &blocks[..8] {
        tx.free(p).unwrap();
    }
    let p = tx.alloc_bytes(5000).unwrap();
    fill(&mut tx, p, 50);
    tx.abort().unwrap();
    after(2);
    // T3: frees (a large block coalesces, a slab empties), then allocations that reuse
    // the freed space and one that extends the heap into the second zone. Commit.
    let mut tx = seg.begin().unwrap();
    for &p in &[blocks[6], blocks[8], blocks[9], blocks[10], blocks[0]] {
        tx.free(p).unwrap();
    }
    let again = tx.alloc_bytes(4000).unwrap();
    fill(&mut tx, again, 60);
    let big = tx.alloc_bytes(1000 << 10).unwrap(); // zero-filled, unlogged
    tx.write(big.offset(), &common::pattern(61, 4096)).unwrap();
    tx.get_mut(root).unwrap()[12] = big;
    tx.commit().unwrap();
    after(3);
    // T4: changes through handles and a free of the big block. Commit.
    let mut tx = seg.begin().unwrap();
    fill(&mut tx, blocks[2], 70);
    tx.free(big).unwrap();
    let small = tx.alloc(7u64).unwrap();
    tx.get_mut(root).unwrap()[13] = small.cast();
    tx.commit().unwrap();
    after(4);
    // T5: allocations dropped unfinished.
    let mut tx = seg.begin().unwrap();
    for i in 0..20u64 {
        tx.alloc(i).unwrap();
    }
    drop(tx);
    after(5);
}

/// The live blocks and their bytes.
fn live(seg: &Segment) -> Vec<(u64, Vec<u8>)> {
    seg.heap_blocks()
        .unwrap()
        .into_iter()
        .map(|b| (b.offset, seg.read(b.offset, b.len).unwrap().to_vec()))
        .collect()
}

/// The live blocks after each acknowledged count of transactions (0..=5).
fn expected(dir: &Path) -> Vec<Vec<(u64, Vec<u8>)>> {
    let cache = dir.join("ref-shm");
    std::fs::create_dir_all(&cache).unwrap();
    let seg = Segment::open(dir.join("ref.vista"), &opts(&cache)).unwrap();
    let mut states = vec![live(&seg)];
    script(&seg, |_| states.push(live(&seg)));
    states
}

#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let seg_path = PathBuf::from(std::env::var("VISTA_SEG").unwrap());
    let cache = PathBuf::from(std::env::var("VISTA_CACHE").unwrap());
    let acks = PathBuf::from(std::env::var("VISTA_ACKS").unwrap());
    if role == "overflow" {
        let seg = Segment::open(&seg_path, &small_log(&cache)).unwrap();
        overflow_script(&seg, |k| ack(&acks, k));
        std::process::exit(0);
    }
    let seg = Segment::open(&seg_path, &opts(&cache)).unwrap();
    if role == "script" {
        script(&seg, |k| ack(&acks, k));
    }
    std::process::exit(0);
}

/// A segment whose undo log fills after a few dozen allocations.
fn small_log(cache: &Path) -> Options {
    opts(cache).undo_log_size(4096)
}

/// Two transactions: a few allocations (commit), then a map too large for the log and
/// allocations until one fails part way with `UndoLogFull` (each failed call's changes
/// put back), and a commit of the rest.
fn overflow_script(seg: &Segment, mut after: impl FnMut(u32)) {
    let mut tx = seg.begin().unwrap();
    for i in 0..4u64 {
        tx.alloc(i).unwrap();
    }
    tx.commit().unwrap();
    after(1);
    let mut tx = seg.begin().unwrap();
    // A call that changes many ranges before the log fills (a map's buckets, each
    // from a slab of its own), so its undo has many records to put back.
    match vista::PHashMap::<u64, u64>::with_capacity(&mut tx, 100_000) {
        Err(vista::Error::UndoLogFull { .. }) => {}
        other => panic!("{:?}", other.map(|m| m.offset())),
    }
    let mut i = 0u64;
    loop {
        match tx.alloc_bytes([8, 2048, 5000][(i % 3) as usize]) {
            Ok(_) => i += 1,
            Err(vista::Error::UndoLogFull { .. }) => break,
            Err(e) => panic!("{e}"),
        }
    }
    tx.commit().unwrap();
    after(2);
}

/// A kill in the middle of putting back a failed call's changes (the undo of an
/// `alloc` that met a full log): recovery rolls back the whole transaction, so the heap
/// is clean and holds the blocks of the first transaction only (or, once the second
/// committed, of both).
#[test]
fn sigkill_while_a_failed_alloc_is_put_back() {
    assert!(crash_point::enabled(), "test builds enable crash points");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("ref-shm");
    std::fs::create_dir_all(&cache).unwrap();
    let reference = Segment::open(dir.path().join("ref.vista"), &small_log(&cache)).unwrap();
    let mut states = vec![live(&reference)];
    overflow_script(&reference, |_| states.push(live(&reference)));
    drop(reference);
    let mut n = 1;
    loop {
        reset(dir.path());
        if !spawn("overflow", dir.path(), Some(("vista.abort.partial", n))) {
            break;
        }
        let a = acked(dir.path());
        assert_recovered(
            dir.path(),
            &small_log(&dir.path().join("shm")),
            &states,
            a,
            &format!("hit {n}"),
        );
        n += 1;
    }
    assert!(
        n > 2,
        "the failed call's undo was killed only {} times",
        n - 1
    );
}

/// Runs a child; `true` if it was killed by its crash point.
fn spawn(role: &str, dir: &Path, point: Option<(&str, u64)>) -> bool {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env("VISTA_SEG", dir.join("seg.vista"))
        .env("VISTA_CACHE", dir.join("shm"))
        .env("VISTA_ACKS", dir.join("acks"))
        .env_remove(crash_point::ENV_VAR)
        .stdout(std::process::Stdio::null());
    if let Some((name, n)) = point {
        cmd.env(crash_point::ENV_VAR, format!("{name}:{n}"));
    }
    let status = cmd.status().unwrap();
    if status.success() {
        return false;
    }
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child failed: {status:?}"
    );
    true
}

/// Opens the recovered segment and checks it: the heap is clean and its live blocks are
/// those after the `acked` transactions, or after the one in flight too.
fn assert_recovered(
    dir: &Path,
    o: &Options,
    states: &[Vec<(u64, Vec<u8>)>],
    acked: usize,
    at: &str,
) {
    let seg = open_when_free(&dir.join("seg.vista"), o);
    let report = seg.check().unwrap();
    assert!(
        report.is_clean(),
        "{at} (acked {acked}): {:?}",
        report.problems
    );
    let now = live(&seg);
    assert!(
        now == states[acked] || states.get(acked + 1).is_some_and(|s| *s == now),
        "{at} (acked {acked}): the live blocks are neither S{acked} nor S{}",
        acked + 1
    );
}

/// Opens the segment once no child forked by the other test of this binary holds a copy
/// of its lock's descriptor any more (see `reset`).
fn open_when_free(path: &Path, o: &Options) -> Segment {
    let mut tries = 0;
    loop {
        match Segment::open(path, o) {
            Err(vista::Error::Locked { .. }) if tries < 200 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => break r.unwrap(),
        }
    }
}

fn reset(dir: &Path) {
    let seg = dir.join("seg.vista");
    let cache = dir.join("shm");
    let _ = std::fs::remove_file(dir.join("acks"));
    // The other test of this binary forks its children while this one may hold the
    // segment: between its fork and its exec, a child holds a copy of the lock's
    // descriptor (close-on-exec), so the lock may outlive this test's handle briefly.
    let mut tries = 0;
    loop {
        match Segment::remove(&seg, &opts(&cache)) {
            Err(vista::Error::Locked { .. }) if tries < 200 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => break r.unwrap(),
        }
    }
    std::fs::create_dir_all(&cache).unwrap();
}

fn acked(dir: &Path) -> usize {
    std::fs::read_to_string(dir.join("acks"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn sigkill_inside_alloc_free_and_extend_then_inside_recovery() {
    assert!(crash_point::enabled(), "test builds enable crash points");
    let dir = tempfile::tempdir().unwrap();
    let states = expected(dir.path());
    assert_eq!(states.len(), 6);
    let points = vista::heap::CRASH_POINTS.iter().copied().chain([
        "vista.set_range.published",
        "vista.write.partial",
        "vista.commit.before_store",
        "vista.abort.partial",
    ]);
    let (mut kills, mut recovery_kills) = (0, 0);
    for point in points {
        let mut n = 1;
        loop {
            reset(dir.path());
            if !spawn("script", dir.path(), Some((point, n))) {
                break;
            }
            kills += 1;
            let a = acked(dir.path());
            // Recovery itself is killed halfway (if there is anything to undo), then
            // completed by the open below.
            if spawn("recover", dir.path(), Some(("vista.recover.partial", 2))) {
                recovery_kills += 1;
            }
            assert_recovered(
                dir.path(),
                &opts(&dir.path().join("shm")),
                &states,
                a,
                &format!("{point}:{n}"),
            );
            n += if n < 40 { 1 } else { 7 };
        }
        assert!(n > 1, "{point} was never hit");
    }
    assert!(
        recovery_kills > 0,
        "recovery was killed at least once ({kills} kills)"
    );
    eprintln!("{kills} kills, {recovery_kills} of them also inside recovery");
}
