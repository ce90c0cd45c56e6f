//! Real SIGKILLs at every crash point, and during recovery.
//!
//! The test binary re-executes itself as a child (`child_entry` with `VISTA_CHILD`
//! set), which runs a fixed script of transactions and appends an acknowledgement to a
//! file after each one returns. The parent arms one crash point at its N-th hit
//! (`CRASH_POINT=name:N`), for every point and every N until the script completes,
//! and checks after each kill:
//! - warm (the memory image survived): the segment equals the state after exactly the
//!   acknowledged transactions, or, for the one in flight, possibly after it if it
//!   committed;
//! - cold (disk files only, as after a power loss): the state of the last completed
//!   checkpoint, which covers every acknowledged `commit_durable`.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::pattern;
use vista::{Options, Protection, Segment, StartKind, Writeback};

const SIZE: u64 = 64 << 10;
const CHILD_ENV: &str = "VISTA_CHILD";

/// The tests of this binary run one at a time: while one test's process forks a child,
/// the child briefly holds duplicates of every open descriptor, including another test's
/// locked segment, and a third process would then see `Locked`.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The protection the children of the running test use (the parent's own opens use
/// the same, through the environment variable it also hands the children).
static CHILD_PROTECTION: std::sync::Mutex<&str> = std::sync::Mutex::new("auto");
const PROTECTION_ENV: &str = "VISTA_TEST_PROTECTION";

/// The protection modes the SIGKILL tests run under on this machine.
fn protections() -> Vec<&'static str> {
    // In scripts/pkey-vm's emulated machine (RIO_TEST_PKEY=require), only the keys: the
    // other modes run on the host, and the emulated machine is slow.
    if common::protection() == Protection::Pkey {
        return vec!["pkey"];
    }
    let mut v = vec!["mprotect", "alias"];
    if common::pkeys_here() {
        v.push("pkey");
    }
    v
}

fn protection() -> Protection {
    let name = std::env::var(PROTECTION_ENV).unwrap_or_else(|_| {
        (*CHILD_PROTECTION
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
        .to_owned()
    });
    match name.as_str() {
        "mprotect" => Protection::Mprotect,
        "alias" => Protection::Alias,
        "pkey" => Protection::Pkey,
        "none" => Protection::None,
        _ => common::protection(),
    }
}

fn set_protection(name: &'static str) {
    *CHILD_PROTECTION
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = name;
}

fn opts(cache: &Path) -> Options {
    Options::new()
        .size(SIZE)
        .undo_log_size(16 << 10)
        .protection(protection())
        .writeback(Writeback::Manual)
        .cache_dir(cache)
}

/// The script's transactions: (offset, generation, length) writes each.
fn script() -> Vec<Vec<(u64, u8, usize)>> {
    vec![
        vec![(100, 1, 300), (5000, 11, 64), (20000, 21, 5000)], // T1 commit
        vec![(100, 2, 50), (40000, 12, 100)],                   // T2 abort
        vec![(150, 3, 400), (60000, 13, 1000)],                 // T3 commit_durable
        vec![(0, 4, 64)],                                       // T4 dropped
    ]
}

fn apply(state: &mut [u8], tx: &[(u64, u8, usize)]) {
    for &(off, g, len) in tx {
        state[off as usize..off as usize + len].copy_from_slice(&pattern(g, len));
    }
}

/// S0 (initial), S1 (after T1), S3 (after T3).
fn states() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let s0 = pattern(99, SIZE as usize);
    let mut s1 = s0.clone();
    apply(&mut s1, &script()[0]);
    let mut s3 = s1.clone();
    apply(&mut s3, &script()[2]);
    (s0, s1, s3)
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

fn run_script(seg_path: &Path, cache: &Path, acks: &Path) {
    let seg = Segment::open(seg_path, &opts(cache)).unwrap();
    let s = script();
    let write_all = |tx: &mut vista::Transaction<'_>, writes: &[(u64, u8, usize)]| {
        for (i, &(off, g, len)) in writes.iter().enumerate() {
            if i % 2 == 0 {
                tx.write(off, &pattern(g, len)).unwrap();
            } else {
                tx.set_range(off, len as u64)
                    .unwrap()
                    .copy_from_slice(&pattern(g, len));
            }
        }
    };
    let mut tx = seg.begin().unwrap();
    write_all(&mut tx, &s[0]);
    tx.commit().unwrap();
    ack(acks, 1);
    let mut tx = seg.begin().unwrap();
    write_all(&mut tx, &s[1]);
    tx.abort().unwrap();
    ack(acks, 2);
    let mut tx = seg.begin().unwrap();
    write_all(&mut tx, &s[2]);
    tx.commit_durable().unwrap();
    ack(acks, 3);
    let mut tx = seg.begin().unwrap();
    write_all(&mut tx, &s[3]);
    drop(tx);
    ack(acks, 4);
    seg.close().unwrap();
    ack(acks, 5);
}

/// The child's side: runs the role named in the environment, then exits.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let seg = PathBuf::from(std::env::var("VISTA_SEG").unwrap());
    let cache = PathBuf::from(std::env::var("VISTA_CACHE").unwrap());
    match role.as_str() {
        "script" => run_script(
            &seg,
            &cache,
            Path::new(&std::env::var("VISTA_ACKS").unwrap()),
        ),
        "recover" => drop(Segment::open(&seg, &opts(&cache)).unwrap()),
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

enum Outcome {
    Completed,
    Killed,
}

fn spawn(role: &str, seg: &Path, cache: &Path, acks: &Path, point: Option<(&str, u64)>) -> Outcome {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env("VISTA_SEG", seg)
        .env("VISTA_CACHE", cache)
        .env("VISTA_ACKS", acks)
        .env(
            PROTECTION_ENV,
            *CHILD_PROTECTION
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .env_remove(crash_point::ENV_VAR)
        .stdout(std::process::Stdio::null());
    if let Some((name, n)) = point {
        cmd.env(crash_point::ENV_VAR, format!("{name}:{n}"));
    }
    let status = cmd.status().unwrap();
    if status.success() {
        Outcome::Completed
    } else {
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "child failed: {status:?}"
        );
        Outcome::Killed
    }
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(f.cache()).unwrap();
        f
    }
    fn seg(&self) -> PathBuf {
        self.dir.path().join("seg.vista")
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("shm")
    }
    fn acks(&self) -> PathBuf {
        self.dir.path().join("acks")
    }
    fn reset(&self, s0: &[u8]) {
        for p in [
            self.seg(),
            rio_cache::journal_path(&self.seg()),
            self.acks(),
        ] {
            let _ = std::fs::remove_file(p);
        }
        let _ = std::fs::remove_file(rio_cache::image_path(&self.seg(), &self.cache()).unwrap());
        let seg = Segment::open(self.seg(), &opts(&self.cache())).unwrap();
        for (i, chunk) in s0.chunks(8192).enumerate() {
            seg.transaction(|tx| tx.write(i as u64 * 8192, chunk))
                .unwrap();
        }
        seg.close().unwrap();
    }
    fn acked(&self) -> u32 {
        std::fs::read_to_string(self.acks())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .max()
            .unwrap_or(0)
    }
    /// Opens a copy of the disk file and journal alone: a cold start after power loss.
    fn cold_state(&self) -> Vec<u8> {
        let cold = tempfile::tempdir().unwrap();
        let seg = cold.path().join("seg.vista");
        std::fs::copy(self.seg(), &seg).unwrap();
        if let Ok(j) = std::fs::read(rio_cache::journal_path(&self.seg())) {
            std::fs::write(rio_cache::journal_path(&seg), j).unwrap();
        }
        let s = Segment::open(&seg, &opts(cold.path())).unwrap();
        assert!(matches!(s.start_kind(), StartKind::Cold(_)));
        let state = s.read(0, SIZE).unwrap().to_vec();
        state
    }
    fn warm_state(&self) -> Vec<u8> {
        let s = Segment::open(self.seg(), &opts(&self.cache())).unwrap();
        assert_eq!(s.start_kind(), StartKind::Warm);
        let state = s.read(0, SIZE).unwrap().to_vec();
        state
    }
}

fn name_of(state: &[u8], (s0, s1, s3): (&[u8], &[u8], &[u8])) -> &'static str {
    if state == s0 {
        "S0"
    } else if state == s1 {
        "S1"
    } else if state == s3 {
        "S3"
    } else {
        "a mix"
    }
}

#[test]
fn sigkill_at_every_crash_point_keeps_acknowledged_and_drops_partial() {
    let _serial = serial();
    assert!(crash_point::enabled(), "test builds enable crash points");
    for p in protections() {
        set_protection(p);
        sigkill_at_every_crash_point(p);
    }
    set_protection("auto");
}

fn sigkill_at_every_crash_point(protection: &str) {
    let (s0, s1, s3) = states();
    let named = (&s0[..], &s1[..], &s3[..]);
    let f = Fixture::new();
    let mut hit_points = Vec::new();
    let mut kills = 0;
    let points: Vec<&str> = vista::CRASH_POINTS
        .iter()
        .chain(rio_cache::CRASH_POINTS)
        .copied()
        .collect();
    for point in &points {
        for n in 1.. {
            f.reset(&s0);
            match spawn("script", &f.seg(), &f.cache(), &f.acks(), Some((point, n))) {
                Outcome::Completed => break,
                Outcome::Killed => {}
            }
            kills += 1;
            if n == 1 {
                hit_points.push(*point);
            }
            let a = f.acked();
            let cold = f.cold_state();
            let cold_ok: &[&[u8]] = match a {
                0 | 1 => &[&s0],
                2 => &[&s0, &s3],
                _ => &[&s3],
            };
            assert!(
                cold_ok.contains(&&cold[..]),
                "{protection} {point}:{n} after {a} acks: cold start holds {}",
                name_of(&cold, named)
            );
            let warm = f.warm_state();
            let warm_ok: &[&[u8]] = match a {
                0 => &[&s0, &s1],
                1 => &[&s1],
                2 => &[&s1, &s3],
                _ => &[&s3],
            };
            assert!(
                warm_ok.contains(&&warm[..]),
                "{protection} {point}:{n} after {a} acks: warm start holds {}",
                name_of(&warm, named)
            );
        }
    }
    // Every step of the script's path must have been crashed at.
    for must in [
        "vista.set_range.record_copied",
        "vista.set_range.published",
        "vista.write.partial",
        "vista.commit.before_store",
        "vista.commit.after_store",
        "vista.abort.partial",
        "vista.abort.applied",
        "rio.checkpoint.staged",
        "rio.checkpoint.intent_synced",
        "rio.checkpoint.slot_partial",
        "rio.checkpoint.slot_written",
        "rio.checkpoint.slot_synced",
        "rio.checkpoint.meta_written",
        "rio.checkpoint.meta_synced",
    ] {
        assert!(hit_points.contains(&must), "{must} never hit");
    }
    eprintln!(
        "{protection}: {kills} kills; points hit {}/{}",
        hit_points.len(),
        points.len()
    );
}

/// Leaves T1 unfinished (killed after the second record is published), snapshots the
/// files, and returns the snapshot.
fn unfinished_transaction(f: &Fixture, s0: &[u8]) -> Vec<(PathBuf, Vec<u8>)> {
    f.reset(s0);
    assert!(matches!(
        spawn(
            "script",
            &f.seg(),
            &f.cache(),
            &f.acks(),
            Some(("vista.write.partial", 2))
        ),
        Outcome::Killed
    ));
    [
        f.seg(),
        rio_cache::journal_path(&f.seg()),
        rio_cache::image_path(&f.seg(), &f.cache()).unwrap(),
    ]
    .into_iter()
    .map(|p| {
        let b = std::fs::read(&p).unwrap();
        (p, b)
    })
    .collect()
}

fn restore(snap: &[(PathBuf, Vec<u8>)]) {
    for (p, b) in snap {
        common::write_in_place(p, b);
    }
}

#[test]
fn crash_during_recovery_at_every_step_then_recover_gives_the_same_bytes() {
    let _serial = serial();
    let (s0, _, _) = states();
    let f = Fixture::new();
    let snap = unfinished_transaction(&f, &s0);
    // The reference: one clean recovery.
    restore(&snap);
    let reference = {
        let s = Segment::open(f.seg(), &opts(&f.cache())).unwrap();
        assert_eq!(s.recovery().lanes_rolled_back, 1);
        assert_eq!(s.recovery().records_undone, 3);
        let state = s.read(0, SIZE).unwrap().to_vec();
        state
    };
    assert_eq!(reference, s0, "recovery restores the state before T1");

    let recovery_points = [
        "vista.recover.validated",
        "vista.recover.partial",
        "vista.recover.applied",
        "vista.recover.done",
    ];
    let mut kills = 0;
    // Depth 2: every point and hit of a first recovery, then a clean second recovery.
    for first in recovery_points {
        for n in 1.. {
            restore(&snap);
            match spawn("recover", &f.seg(), &f.cache(), &f.acks(), Some((first, n))) {
                Outcome::Completed => break,
                Outcome::Killed => kills += 1,
            }
            // Depth 3 for a sample: kill the second recovery too, at its first point.
            if n == 1 {
                for second in recovery_points {
                    let copy: Vec<_> = snap
                        .iter()
                        .map(|(p, _)| (p.clone(), std::fs::read(p).unwrap()))
                        .collect();
                    let _ = spawn(
                        "recover",
                        &f.seg(),
                        &f.cache(),
                        &f.acks(),
                        Some((second, 1)),
                    );
                    let s = Segment::open(f.seg(), &opts(&f.cache())).unwrap();
                    assert_eq!(
                        s.read(0, SIZE).unwrap(),
                        &reference[..],
                        "{first}:1 then {second}:1"
                    );
                    drop(s);
                    restore(&copy);
                }
            }
            let s = Segment::open(f.seg(), &opts(&f.cache())).unwrap();
            assert_eq!(
                s.read(0, SIZE).unwrap(),
                &reference[..],
                "killed at {first}:{n}"
            );
        }
    }
    assert!(kills >= 6, "only {kills} recovery kills");
}

#[test]
fn recovery_of_a_killed_commit_store_is_all_or_nothing() {
    let _serial = serial();
    // Killed right after the commit store: the transaction stands, even though the
    // process never returned from commit.
    let (s0, s1, _) = states();
    let f = Fixture::new();
    f.reset(&s0);
    assert!(matches!(
        spawn(
            "script",
            &f.seg(),
            &f.cache(),
            &f.acks(),
            Some(("vista.commit.after_store", 1))
        ),
        Outcome::Killed
    ));
    assert_eq!(f.acked(), 0);
    assert_eq!(f.warm_state(), s1);
    f.reset(&s0);
    assert!(matches!(
        spawn(
            "script",
            &f.seg(),
            &f.cache(),
            &f.acks(),
            Some(("vista.commit.before_store", 1))
        ),
        Outcome::Killed
    ));
    assert_eq!(f.warm_state(), s0);
}
