//! Helpers shared by the integration tests: child processes (re-exec of the test binary),
//! file snapshots, and deterministic data.
//!
//! A child is this same test binary run again with `--exact child_process_entry` and the
//! role in [`ROLE_ENV`]; each test file that uses children has a `child_process_entry`
//! test that calls [`child_dispatch`]. Re-exec (not `fork`) because the libtest harness
//! is multi-threaded before any test runs.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use rio_cache::{Protection, RioOptions, Writeback, PAGE_SIZE};

/// Selects the child's role; absent in the parent.
pub const ROLE_ENV: &str = "RIO_TEST_CHILD_ROLE";
/// The directory the child works in (disk file `data.rio`, memory images in `shm/`).
pub const DIR_ENV: &str = "RIO_TEST_CHILD_DIR";
/// Extra argument for the child's role.
pub const ARG_ENV: &str = "RIO_TEST_CHILD_ARG";
/// A file the child appends progress reports to (one line each, unbuffered).
pub const REPORT_ENV: &str = "RIO_TEST_CHILD_REPORT";

/// Runs the tests of one binary that spawns children one at a time.
///
/// Spawning forks the test process, and the fork holds a copy of every descriptor,
/// including another test's locked disk file, until it execs. A parallel test that
/// closes and reopens its cache in that window gets `Error::Locked` (the `flock` is on
/// the shared open file description). That is how `flock` works, not a flaw of the code
/// under test, so the tests that spawn, and their siblings, take turns.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Starts `role` in a child process. `extra` adds environment variables (for example
/// `CRASH_POINT`).
pub fn spawn_child(role: &str, dir: &Path, arg: &str, extra: &[(&str, &str)]) -> Child {
    let exe = std::env::current_exe().expect("current test binary");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        "child_process_entry",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(ROLE_ENV, role)
    .env(DIR_ENV, dir)
    .env(ARG_ENV, arg)
    .env(REPORT_ENV, report_path(dir))
    .env_remove("CRASH_POINT")
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn child")
}

/// Runs `role` in a child to the end and returns how it ended.
pub fn run_child(role: &str, dir: &Path, arg: &str, extra: &[(&str, &str)]) -> ExitStatus {
    spawn_child(role, dir, arg, extra)
        .wait()
        .expect("wait for child")
}

/// Asserts the child was killed by `signal` (WIFSIGNALED and WTERMSIG).
pub fn assert_signaled(status: ExitStatus, signal: i32, what: &str) {
    assert_eq!(
        status.signal(),
        Some(signal),
        "{what}: expected death by signal {signal}, got {status:?}"
    );
}

/// A child role: gets the test directory and the argument.
pub type Role = fn(&Path, &str);

/// In a child, runs the role named in the environment with the handlers given;
/// in the parent, does nothing.
pub fn child_dispatch(roles: &[(&str, Role)]) {
    let Ok(role) = std::env::var(ROLE_ENV) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os(DIR_ENV).expect("child dir"));
    let arg = std::env::var(ARG_ENV).unwrap_or_default();
    let f = roles
        .iter()
        .find(|(name, _)| *name == role)
        .unwrap_or_else(|| panic!("unknown child role {role}"))
        .1;
    f(&dir, &arg);
    // A role that returns normally exits 0 without running the other tests' teardown.
    std::process::exit(0);
}

pub fn report_path(dir: &Path) -> PathBuf {
    dir.join("child.report")
}

/// Appends one line to the report file with a single `write` system call, so it is in
/// the kernel (and survives a SIGKILL) when this returns.
pub fn report(line: &str) {
    use std::io::Write;
    let path = std::env::var_os(REPORT_ENV).expect("report path");
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open report");
    f.write_all(format!("{line}\n").as_bytes()).expect("report");
}

/// The lines reported so far.
pub fn reports(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(report_path(dir))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits until `done` holds, panicking after a generous deadline (a hang, not a speed
/// judgement).
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Sends SIGKILL to a child.
pub fn kill(child: &Child) {
    let pid = i32::try_from(child.id()).expect("pid");
    // SAFETY: kill has no memory-safety preconditions; the pid is our own unreaped child,
    // so it cannot have been recycled for another process.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill child: {}", std::io::Error::last_os_error());
}

/// A private test directory: the disk file lives in it, the memory images in `shm/`.
#[derive(Debug)]
pub struct TestDir {
    pub dir: tempfile::TempDir,
}

impl TestDir {
    pub fn new() -> TestDir {
        TestDir::from(tempfile::tempdir().expect("tempdir"))
    }

    /// A directory on the memory file system (for tests of the real setup).
    pub fn on_shm() -> TestDir {
        TestDir::from(tempfile::tempdir_in("/dev/shm").expect("tempdir in /dev/shm"))
    }

    pub fn from(dir: tempfile::TempDir) -> TestDir {
        std::fs::create_dir(dir.path().join("shm")).expect("cache dir");
        TestDir { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// The disk file of a test directory.
pub fn disk_path(dir: &Path) -> PathBuf {
    dir.join("data.rio")
}

/// Options with the test directory's private cache dir and manual writeback.
pub fn opts(dir: &Path, size: u64, protection: Protection) -> RioOptions {
    RioOptions::new()
        .size(size)
        .cache_dir(dir.join("shm"))
        .protection(protection)
        .writeback(Writeback::Manual)
}

/// The bytes of each file (`None` if absent).
pub fn snapshot(paths: &[&Path]) -> HashMap<PathBuf, Option<Vec<u8>>> {
    paths
        .iter()
        .map(|p| (p.to_path_buf(), std::fs::read(p).ok()))
        .collect()
}

/// Asserts two snapshots are equal, naming the first differing file and offset (not
/// printing megabytes of bytes).
pub fn assert_same_files(
    before: &HashMap<PathBuf, Option<Vec<u8>>>,
    after: &HashMap<PathBuf, Option<Vec<u8>>>,
    what: &str,
) {
    for (path, b) in before {
        let a = &after[path];
        match (b, a) {
            (Some(b), Some(a)) => {
                assert_eq!(b.len(), a.len(), "{what}: {} changed size", path.display());
                if let Some(i) = (0..b.len()).find(|&i| b[i] != a[i]) {
                    panic!("{what}: {} changed at byte {i}", path.display());
                }
            }
            (None, None) => {}
            _ => panic!("{what}: {} appeared or vanished", path.display()),
        }
    }
}

/// Every file under `dir` (recursively) with its bytes: a directory listing to compare
/// before and after an operation that must not create, remove or change any file.
pub fn tree(dir: &Path) -> HashMap<PathBuf, Option<Vec<u8>>> {
    let mut out = HashMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).ok();
                out.insert(p, bytes);
            }
        }
    }
    out
}

/// Asserts two [`tree`]s list the same files with the same bytes.
pub fn assert_same_tree(
    before: &HashMap<PathBuf, Option<Vec<u8>>>,
    after: &HashMap<PathBuf, Option<Vec<u8>>>,
    what: &str,
) {
    let mut b: Vec<_> = before.keys().collect();
    let mut a: Vec<_> = after.keys().collect();
    b.sort();
    a.sort();
    assert_eq!(b, a, "{what}: the directory listing changed");
    assert_same_files(before, after, what);
}

/// A deterministic byte pattern: the `i`-th byte of stream `seed`.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// What the tests expect of protection keys: `require` (the pkey tests must run; a
/// machine without keys fails them, as `scripts/pkey-vm` sets it in its emulated
/// machine with keys), `absent` (the machine must have none, so the refusal is
/// tested), or unset (run what the machine allows, noting what is skipped).
pub const PKEY_ENV: &str = "RIO_TEST_PKEY";

/// Whether the pkey tests run here: true if the machine has keys; false, with a note
/// naming the reason, if it has none; a panic if [`PKEY_ENV`] requires them.
pub fn pkeys_here() -> bool {
    let want = std::env::var(PKEY_ENV).unwrap_or_default();
    match rio_cache::pkey_support() {
        Ok(()) => {
            assert_ne!(
                want, "absent",
                "{PKEY_ENV}=absent, but this machine has protection keys"
            );
            true
        }
        Err(why) => {
            assert_ne!(
                want, "require",
                "{PKEY_ENV}=require, but protection keys are unavailable: {why}"
            );
            eprintln!("note: Protection::Pkey not tested: {why}");
            false
        }
    }
}

/// The protection modes this machine can run, noting the ones it cannot; only `Pkey`
/// where [`PKEY_ENV`] requires it (the emulated machine is slow, and the other modes run
/// on the host).
pub fn modes() -> Vec<Protection> {
    if std::env::var(PKEY_ENV).is_ok_and(|v| v == "require") && pkeys_here() {
        return vec![Protection::Pkey];
    }
    let mut m = vec![Protection::None, Protection::Mprotect, Protection::Alias];
    if pkeys_here() {
        m.push(Protection::Pkey);
    }
    m
}

pub const PAGE: u64 = PAGE_SIZE as u64;

/// The data of the checkpoint the disk image at `path` holds (its current slot's), read
/// with the decoders `vista check` uses, journal aside.
#[allow(dead_code)]
pub fn disk_data(path: &Path, cache_dir: &Path) -> Vec<u8> {
    let info = rio_cache::inspect::inspect(path, cache_dir).unwrap();
    info.read(rio_cache::inspect::Source::Disk, 0, info.disk.data_len)
        .unwrap()
}
