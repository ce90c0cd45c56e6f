//! Real SIGKILLs inside collection operations that allocate and free: vector growth
//! and shrinking, map splits and directory doubling, buffer moves, and the recovery
//! that follows.
//!
//! As `heap_crash.rs`: the test binary re-executes itself as a child that runs a fixed
//! script of collection transactions, acknowledging each; the parent arms one crash
//! point at its N-th hit (N stepping geometrically through every point's hits), and
//! after each kill opens the segment and requires `check()` clean, the collections'
//! contents and the live blocks (offsets and bytes) to be exactly those after the
//! acknowledged transactions, or after the one in flight if it had committed.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vista::{bytemuck, Options, PBytes, PHashMap, PString, PVec, Segment, Writeback};

const CHILD_ENV: &str = "VISTA_COLL_CHILD";
const ROOT: &str = "collections-crash-v1";

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Root {
    vec: PVec<u64>,
    map: PHashMap<PString, PBytes>,
    text: PString,
}

fn opts(cache: &Path) -> Options {
    Options::new()
        .size(3 << 20)
        .lanes(2)
        .undo_log_size(512 << 10)
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

fn put(tx: &mut vista::Transaction<'_>, map: PHashMap<PString, PBytes>, k: &str, v: &[u8]) {
    let value = PBytes::new(tx, v).unwrap();
    if let Some(old) = map.insert(tx, k, value).unwrap() {
        old.free(tx).unwrap();
    }
}

fn del(tx: &mut vista::Transaction<'_>, map: PHashMap<PString, PBytes>, k: &str) {
    if let Some(old) = map.remove(tx, k).unwrap() {
        old.free(tx).unwrap();
    }
}

/// The script: five transactions; `after(k)` is called once the k-th has returned.
fn script(seg: &Segment, mut after: impl FnMut(u32)) {
    // T1: the collections, 300 elements (chunks, a larger directory), 150 keys
    // (splits, directory doublings, key and value blocks). Commit.
    let mut tx = seg.begin().unwrap();
    let root = tx.root_named::<Root>(ROOT).unwrap();
    let r = Root {
        vec: PVec::new(&mut tx).unwrap(),
        map: PHashMap::new(&mut tx).unwrap(),
        text: PString::new(&mut tx, "first").unwrap(),
    };
    *tx.get_mut(root).unwrap() = r;
    for i in 0..300u64 {
        r.vec.push(&mut tx, i * 3).unwrap();
    }
    for i in 0..150u32 {
        put(
            &mut tx,
            r.map,
            &format!("k{i}"),
            &common::pattern(i as u8, 20 + i as usize),
        );
    }
    tx.commit().unwrap();
    after(1);
    // T2: pops (chunks freed), removes (keys and values freed), a moved string. Abort.
    let mut tx = seg.begin().unwrap();
    for _ in 0..250 {
        r.vec.pop(&mut tx).unwrap();
    }
    for i in 0..100u32 {
        del(&mut tx, r.map, &format!("k{i}"));
    }
    let moved = r.text.set(&mut tx, &"x".repeat(500)).unwrap();
    *tx.get_mut(root.project(|r| &r.text)).unwrap() = moved;
    tx.abort().unwrap();
    after(2);
    // T3: the same, committed; then pushes that reuse the freed chunks.
    let mut tx = seg.begin().unwrap();
    for _ in 0..250 {
        r.vec.pop(&mut tx).unwrap();
    }
    for i in 0..100u32 {
        del(&mut tx, r.map, &format!("k{i}"));
    }
    let moved = r.text.set(&mut tx, &"y".repeat(500)).unwrap();
    *tx.get_mut(root.project(|r| &r.text)).unwrap() = moved;
    for i in 0..40u64 {
        r.vec.push(&mut tx, 1000 + i).unwrap();
    }
    tx.commit().unwrap();
    after(3);
    // T4: replaced values (old ones freed), inserts and removes in the middle. Commit.
    let mut tx = seg.begin().unwrap();
    for i in 100..150u32 {
        put(&mut tx, r.map, &format!("k{i}"), &common::pattern(7, 3000));
    }
    r.vec.insert(&mut tx, 3, 77).unwrap();
    r.vec.remove(&mut tx, 20).unwrap();
    tx.commit().unwrap();
    after(4);
    // T5: new keys and elements, dropped unfinished.
    let mut tx = seg.begin().unwrap();
    for i in 0..60u32 {
        put(&mut tx, r.map, &format!("n{i}"), b"doomed");
        r.vec.push(&mut tx, u64::from(i)).unwrap();
    }
    drop(tx);
    after(5);
}

/// What the collections hold, and the live blocks with their bytes.
type State = (
    Vec<u64>,
    Vec<(String, Vec<u8>)>,
    String,
    Vec<(u64, Vec<u8>)>,
);

fn state(seg: &Segment) -> State {
    let blocks = seg
        .heap_blocks()
        .unwrap()
        .into_iter()
        .map(|b| (b.offset, seg.read(b.offset, b.len).unwrap().to_vec()))
        .collect();
    let Some(root) = seg.root_named::<Root>(ROOT).unwrap() else {
        return (Vec::new(), Vec::new(), String::new(), blocks);
    };
    let tx = seg.begin().unwrap();
    let r = tx.get_ptr(root).unwrap();
    if r.vec.is_null() {
        return (Vec::new(), Vec::new(), String::new(), blocks);
    }
    let vec = r.vec.to_vec(&tx).unwrap();
    let mut map: Vec<(String, Vec<u8>)> = r
        .map
        .iter(&tx)
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.get(&tx).unwrap().to_owned(), v.get(&tx).unwrap().to_vec())
        })
        .collect();
    map.sort();
    assert_eq!(r.map.len(&tx).unwrap(), map.len() as u64);
    let text = r.text.get(&tx).unwrap().to_owned();
    (vec, map, text, blocks)
}

/// The state after each acknowledged count of transactions (0..=5).
fn expected(dir: &Path) -> Vec<State> {
    let cache = dir.join("ref-shm");
    std::fs::create_dir_all(&cache).unwrap();
    let seg = Segment::open(dir.join("ref.vista"), &opts(&cache)).unwrap();
    let mut states = vec![state(&seg)];
    script(&seg, |_| states.push(state(&seg)));
    states
}

#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let seg_path = PathBuf::from(std::env::var("VISTA_SEG").unwrap());
    let cache = PathBuf::from(std::env::var("VISTA_CACHE").unwrap());
    let seg = Segment::open(&seg_path, &opts(&cache)).unwrap();
    if role == "script" {
        let acks = PathBuf::from(std::env::var("VISTA_ACKS").unwrap());
        script(&seg, |k| ack(&acks, k));
    }
    std::process::exit(0);
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

fn reset(dir: &Path) {
    let _ = std::fs::remove_file(dir.join("acks"));
    Segment::remove(dir.join("seg.vista"), &opts(&dir.join("shm"))).unwrap();
    std::fs::create_dir_all(dir.join("shm")).unwrap();
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
fn sigkill_inside_collection_operations_then_inside_recovery() {
    assert!(crash_point::enabled(), "test builds enable crash points");
    let dir = tempfile::tempdir().unwrap();
    let states = expected(dir.path());
    assert_eq!(states.len(), 6);
    let points = vista::heap::CRASH_POINTS.iter().copied().chain([
        "vista.set_range.published",
        "vista.write.partial",
        "vista.commit.before_store",
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
            // Every third kill, recovery itself is killed halfway, then completed below.
            if kills % 3 == 0 && spawn("recover", dir.path(), Some(("vista.recover.partial", 2))) {
                recovery_kills += 1;
            }
            let seg = Segment::open(dir.path().join("seg.vista"), &opts(&dir.path().join("shm")))
                .unwrap();
            let report = seg.check().unwrap();
            assert!(
                report.is_clean(),
                "{point}:{n} (acked {a}): {:?}",
                report.problems
            );
            let now = state(&seg);
            let ok = now == states[a] || states.get(a + 1).is_some_and(|s| *s == now);
            assert!(
                ok,
                "{point}:{n} (acked {a}): the collections are neither S{a} nor S{}",
                a + 1
            );
            n = n * 3 / 2 + 1;
        }
        assert!(n > 1, "{point} was never hit");
    }
    assert!(
        recovery_kills > 0,
        "recovery was killed at least once ({kills} kills)"
    );
    eprintln!("{kills} kills, {recovery_kills} of them also inside recovery");
}

#[test]
fn the_script_runs_to_the_end() {
    // The reference run alone, so that a failure of the script itself is reported as
    // such and not as a crash-test failure.
    let dir = tempfile::tempdir().unwrap();
    let states = expected(dir.path());
    let (vec, map, text, _) = &states[5];
    assert_eq!(vec.len(), 50 + 40);
    assert_eq!(map.len(), 50);
    assert_eq!(text.len(), 500);
}
