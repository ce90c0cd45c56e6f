//! Process-level crash tests: a child process (a re-exec of this test binary) runs a
//! workload and is killed with a real `SIGKILL` at the N-th hit of a named crash point;
//! the parent then recovers and checks the guarantees:
//!
//! - every transaction whose `end_transaction(Flush)` returned survives;
//! - no transaction survives in part, and aborted ones never appear;
//! - `NoFlush` commits survive as a prefix in commit order, never with a hole.
//!
//! The recovered state must therefore equal the state after exactly `k` transactions of
//! the deterministic workload, for some `k` at least the last acknowledged `Flush`.
//!
//! Every scenario runs twice: with the real page cache (a killed process loses nothing
//! it wrote) and with `emulate_power_loss` (a killed process loses every write it did not
//! sync, as a power failure would), which makes a missing or misplaced `fsync` visible.
//!
//! The crash points are compiled in because the dev-dependency on `crash-point` enables
//! its `enabled` feature in test builds, so plain `cargo test` runs these.

use lrvm::{
    create_log, CommitMode, CreateMode, MapOptions, Options, RegionSpec, RestoreMode, Rvm,
    CRASH_POINTS, MIN_LOG_LEN,
};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const N: u64 = 160;
const LEN: usize = 4096;
const COUNTER: usize = LEN - 8;

/// The ranges of transaction `i` (1-based): (region, offset, len).
fn plan(i: u64) -> [(usize, usize, usize); 3] {
    [
        (0, (i * 37 % 3900) as usize, 64),
        (1, (i * 53 % 3800) as usize, 200),
        (0, COUNTER, 8),
    ]
}

fn value(i: u64, region: usize, j: usize) -> u8 {
    ((i as usize * 131 + j * 7 + region * 17) % 251 + 1) as u8
}

fn fill(i: u64, region: usize, off: usize, buf: &mut [u8]) {
    if off == COUNTER {
        buf.copy_from_slice(&i.to_le_bytes());
    } else {
        for (j, b) in buf.iter_mut().enumerate() {
            *b = value(i, region, j);
        }
    }
}

fn commit_mode(i: u64) -> CommitMode {
    if i.is_multiple_of(4) {
        CommitMode::Flush
    } else {
        CommitMode::NoFlush
    }
}

/// The state after each prefix of the workload: `states[k]` after `k` transactions.
fn states() -> Vec<[Vec<u8>; 2]> {
    let mut s = vec![[vec![0u8; LEN], vec![0u8; LEN]]];
    for i in 1..=N {
        let mut next = s.last().unwrap().clone();
        for (r, off, len) in plan(i) {
            fill(i, r, off, &mut next[r][off..off + len]);
        }
        s.push(next);
    }
    s
}

fn options(dir: &Path, emulate: bool) -> Options {
    Options::new(dir.join("log"))
        .flush_buffer_size(4096)
        .emulate_power_loss(emulate)
}

fn map_both(rvm: &mut Rvm, dir: &Path) -> [lrvm::RegionId; 2] {
    let spec = |n: &str| RegionSpec::new(dir.join(n), 0, LEN as u64);
    [
        rvm.map(&spec("a"), MapOptions::create_or_extend()).unwrap(),
        rvm.map(&spec("b"), MapOptions::create_or_extend()).unwrap(),
    ]
}

/// The child's workload: `N` transactions mixing restore modes and commit modes, aborted
/// transactions, explicit truncations; automatic epochs run in the background because
/// the log is small. Appends `i` to `acked` after each `Flush` commit returns.
fn workload(dir: &Path, emulate: bool) {
    let mut rvm = Rvm::initialize(options(dir, emulate)).unwrap();
    let regions = map_both(&mut rvm, dir);
    let mut acked = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("acked"))
        .unwrap();
    for i in 1..=N {
        if i % 10 == 5 {
            let t = rvm.begin_transaction(RestoreMode::Restore).unwrap();
            rvm.set_range(t, regions[0], 0, LEN as u64)
                .unwrap()
                .fill(0xEE);
            rvm.set_range(t, regions[1], 100, 50).unwrap().fill(0xEE);
            rvm.abort_transaction(t).unwrap();
        }
        let restore = if i % 3 == 0 {
            RestoreMode::NoRestore
        } else {
            RestoreMode::Restore
        };
        let t = rvm.begin_transaction(restore).unwrap();
        for (r, off, len) in plan(i) {
            let buf = rvm
                .set_range(t, regions[r], off as u64, len as u64)
                .unwrap();
            fill(i, r, off, buf);
        }
        rvm.end_transaction(t, commit_mode(i)).unwrap();
        if commit_mode(i) == CommitMode::Flush {
            writeln!(acked, "{i}").unwrap();
        }
        if i % 30 == 0 {
            rvm.truncate().unwrap();
        }
    }
    rvm.close().unwrap();
}

/// Entry point of the child processes; does nothing when run as an ordinary test.
#[test]
fn crash_child() {
    let Ok(role) = std::env::var("LRVM_CRASH_ROLE") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("LRVM_CRASH_DIR").unwrap());
    let emulate = std::env::var("LRVM_CRASH_EMULATE").as_deref() == Ok("1");
    match role.as_str() {
        "workload" => workload(&dir, emulate),
        "recover" => {
            let mut rvm = Rvm::initialize(options(&dir, emulate)).unwrap();
            map_both(&mut rvm, &dir);
            rvm.close().unwrap();
        }
        other => panic!("unknown role {other}"),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Killed,
    Finished,
}

fn run_child(dir: &Path, role: &str, emulate: bool, point: &str, nth: u64) -> Outcome {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "crash_child",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env("LRVM_CRASH_ROLE", role)
        .env("LRVM_CRASH_DIR", dir)
        .env("LRVM_CRASH_EMULATE", if emulate { "1" } else { "0" })
        .env(crash_point::ENV_VAR, format!("{point}:{nth}"))
        .output()
        .unwrap();
    if out.status.success() {
        return Outcome::Finished;
    }
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "child {role} at {point}:{nth} failed without being killed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
    );
    Outcome::Killed
}

fn fresh_dir() -> tempfile::TempDir {
    // tmpfs keeps this fast; the page cache semantics a SIGKILL sees are the same.
    let base = Path::new("/dev/shm");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base).unwrap()
    } else {
        tempfile::tempdir().unwrap()
    };
    create_log(dir.path().join("log"), MIN_LOG_LEN, CreateMode::CreateNew).unwrap();
    dir
}

/// Recovers in this process and checks the guarantees; returns `k`.
fn verify(dir: &Path, states: &[[Vec<u8>; 2]], what: &str) -> u64 {
    let mut rvm = Rvm::initialize(options(dir, false)).unwrap();
    let regions = map_both(&mut rvm, dir);
    let got = [
        rvm.region(regions[0]).unwrap().to_vec(),
        rvm.region(regions[1]).unwrap().to_vec(),
    ];
    let k = u64::from_le_bytes(got[0][COUNTER..].try_into().unwrap());
    assert!(k <= N, "{what}: counter {k} out of range");
    assert!(
        got == states[k as usize],
        "{what}: recovered state is not the state after {k} whole transactions"
    );
    let acked = std::fs::read_to_string(dir.join("acked")).unwrap_or_default();
    let last_ack = acked
        .lines()
        .map(|l| l.parse::<u64>().unwrap())
        .max()
        .unwrap_or(0);
    assert!(
        k >= last_ack,
        "{what}: acknowledged Flush commit {last_ack} lost (recovered {k})"
    );
    rvm.close().unwrap();
    k
}

/// The tests in this file take turns: a child forked by one test briefly inherits (until
/// its `exec`) the descriptors the other test's thread holds, and with them their
/// `flock`s, which would make a concurrent `map` fail with `SegmentLocked`.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn sigkill_at_every_crash_point() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    assert!(
        crash_point::enabled(),
        "test builds must enable crash points"
    );
    let states = states();
    for emulate in [true, false] {
        for point in CRASH_POINTS
            .iter()
            .filter(|p| !p.starts_with("lrvm.recover."))
        {
            let (mut nth, mut kills) = (1u64, 0);
            loop {
                let dir = fresh_dir();
                let what = format!("{point}:{nth} (emulate_power_loss={emulate})");
                match run_child(dir.path(), "workload", emulate, point, nth) {
                    Outcome::Finished => {
                        assert_eq!(verify(dir.path(), &states, &what), N, "{what}");
                        break;
                    }
                    Outcome::Killed => {
                        verify(dir.path(), &states, &what);
                        kills += 1;
                    }
                }
                nth += 1.max(nth / 4);
            }
            eprintln!("{point} (emulate_power_loss={emulate}): {kills} kills, done at hit {nth}");
            assert!(kills > 0, "{point} is never reached by the workload");
        }
    }
}

#[test]
fn sigkill_during_recovery_is_harmless() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let states = states();
    let points = [
        "lrvm.recover.scanned",
        "lrvm.recover.applied",
        "lrvm.recover.data_synced",
        "lrvm.status.written",
        "lrvm.status.synced",
        "lrvm.recover.reset",
    ];
    for emulate in [true, false] {
        for point in points {
            let dir = fresh_dir();
            let what = format!("recovery crash at {point} (emulate_power_loss={emulate})");
            // Leave committed records in the log: kill right after the 20th log sync.
            let first = run_child(dir.path(), "workload", emulate, "lrvm.log.synced", 20);
            assert_eq!(first, Outcome::Killed);
            // The first recovery always has records to apply, so it reaches the point.
            assert_eq!(
                run_child(dir.path(), "recover", emulate, point, 1),
                Outcome::Killed,
                "{what}"
            );
            // Crash again in the repeated recovery if it gets that far.
            run_child(dir.path(), "recover", emulate, point, 1);
            let k = verify(dir.path(), &states, &what);
            assert!(k >= 20 * 4 - 4, "{what}: recovered only {k} transactions");
        }
    }
}
