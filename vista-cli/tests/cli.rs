//! End to end: the built `vista` binary against good, damaged, locked and foreign files.
//! Every read-only command (`info`, `check`, `dump`) must leave every file byte for
//! byte as it was; refused `recover`/`checkpoint` runs must too.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vista::{Options, Segment, Writeback};

const CHILD_ENV: &str = "VISTA_CLI_TEST_CHILD";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `vista --cache-dir DIR args...`.
fn vista(dir: &Path, args: &[&str]) -> Run {
    let out = Command::new(env!("CARGO_BIN_EXE_vista"))
        .current_dir(dir)
        .arg("--cache-dir")
        .arg(dir)
        .args(args)
        .output()
        .expect("run vista");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked") && out.status.code() != Some(101),
        "vista {args:?} panicked: {stderr}"
    );
    Run {
        code: out
            .status
            .code()
            .unwrap_or_else(|| panic!("vista {args:?} killed: {:?}", out.status)),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// Asserts a failure: exit `code`, nothing on stdout, one line on stderr naming `name`.
fn fails(r: &Run, code: i32, name: &str) {
    assert_eq!(r.code, code, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "stdout: {}", r.stdout);
    assert_eq!(r.stderr.lines().count(), 1, "stderr: {}", r.stderr);
    assert!(
        r.stderr.starts_with("vista: ") && r.stderr.contains(name),
        "stderr does not name {name}: {}",
        r.stderr
    );
}

/// Every file in `dir` (which holds the segment, its journal and its memory image).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Runs a command that must not write, and checks that it did not.
fn read_only(dir: &Path, args: &[&str]) -> Run {
    let before = snapshot(dir);
    let r = vista(dir, args);
    assert!(
        before == snapshot(dir),
        "vista {args:?} changed a file in {}",
        dir.display()
    );
    r
}

fn options(dir: &Path) -> Options {
    Options::new()
        .size(64 << 10)
        .lanes(2)
        .undo_log_size(4000)
        .cache_dir(dir)
        .writeback(Writeback::Manual)
}

/// A segment with "hello" committed at 0 and checkpointed, closed cleanly.
fn good_segment(dir: &Path) -> PathBuf {
    let path = dir.join("seg");
    let seg = Segment::open(&path, &options(dir)).unwrap();
    seg.transaction(|tx| tx.write(0, b"hello")).unwrap();
    seg.close().unwrap();
    path
}

/// A segment whose process died (SIGABRT) in a transaction that had overwritten
/// "hello" with "HELLO": the memory image holds the unfinished transaction.
fn crashed_segment(dir: &Path) -> PathBuf {
    let path = good_segment(dir);
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc_sigabrt()), "{status:?}");
    path
}

fn libc_sigabrt() -> i32 {
    6
}

/// The child of `crashed_segment` (does nothing when run as a normal test).
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let seg = Segment::open(dir.join("seg"), &options(&dir)).unwrap();
    let mut tx = seg.begin().unwrap();
    tx.write(0, b"HELLO").unwrap();
    std::process::abort();
}

/// Where a lane's first undo record's before-image lies in the memory image file.
fn first_before_image_in_image(dir: &Path, lane: u64) -> (PathBuf, u64) {
    let r = vista(dir, &["--json", "info", "seg"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let image = PathBuf::from(v["image"]["path"].as_str().unwrap());
    let image_len = v["image"]["len"].as_u64().unwrap();
    let data_len = v["data_len"].as_u64().unwrap();
    let lane_size = v["segment"]["header"]["lane_size"].as_u64().unwrap();
    let data_at = image_len - data_len.next_multiple_of(4096);
    // Lanes start at 4096; each has a 64-byte header; a record's header is 24 bytes.
    (image, data_at + 4096 + lane * lane_size + 64 + 24)
}

fn flip(path: &Path, at: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[at as usize] ^= 0x40;
    std::fs::write(path, b).unwrap();
}

#[test]
fn good_segment_info_check_dump() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = vista(d, &["create", "fresh", "--size", "64KiB", "--lanes", "3"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("64 KiB"), "{}", r.stdout);
    let again = vista(d, &["create", "fresh", "--size", "64KiB"]);
    fails(&again, 3, "fresh");

    good_segment(d);
    let r = read_only(d, &["info", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for want in ["64 KiB", "lane 1", "warm", "checkpoint", "Auto picks"] {
        assert!(r.stdout.contains(want), "info lacks {want}: {}", r.stdout);
    }
    let r = read_only(d, &["--json", "info", "fresh"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["segment"]["header"]["lanes"], 3);
    assert_eq!(v["segment"]["header"]["user_len"], 65536);
    assert_eq!(v["image"]["verdict"]["state"], "warm");

    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("no problems found"), "{}", r.stdout);
    let r = read_only(d, &["--json", "check", "seg"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["ok"], true);

    let r = read_only(d, &["dump", "seg", "--offset", "0", "--len", "8"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("68 65 6c 6c 6f 00 00 00"), "{}", r.stdout);
    assert!(r.stdout.contains("|hello...|"), "{}", r.stdout);
    let r = read_only(d, &["--json", "dump", "seg", "--len", "5", "--disk"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["hex"], "68656c6c6f");
    // Past the end: a one-line error.
    fails(
        &read_only(d, &["dump", "seg", "--offset", "64KiB", "--len", "1"]),
        3,
        "seg",
    );

    let r = vista(d, &["checkpoint", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = vista(d, &["recover", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("0 unfinished"), "{}", r.stdout);
}

#[test]
fn unfinished_transaction_is_shown_dumped_as_committed_and_recovered() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crashed_segment(d);
    let r = read_only(d, &["info", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("UNFINISHED"), "{}", r.stdout);
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(
        r.code, 0,
        "an unfinished transaction is no damage: {}",
        r.stdout
    );
    // The image holds HELLO; the committed data is hello.
    let r = read_only(d, &["--json", "dump", "seg", "--len", "5"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["source"], "memory image");
    assert_eq!(v["hex"], "68656c6c6f", "dump showed uncommitted bytes");

    let r = vista(d, &["recover", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("1 unfinished"), "{}", r.stdout);
    let r = read_only(d, &["info", "seg"]);
    assert!(!r.stdout.contains("UNFINISHED"), "{}", r.stdout);
    let seg = Segment::open(d.join("seg"), &options(d)).unwrap();
    assert_eq!(seg.read(0, 5).unwrap(), b"hello");
}

#[test]
fn corrupt_disk_header() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    flip(&path, 20); // data_len, under the header checksum
    fails(&read_only(d, &["info", "seg"]), 3, "seg");
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("FAIL disk header"), "{}", r.stdout);
    assert!(r.stdout.contains("checksum"), "{}", r.stdout);
    fails(&read_only(d, &["dump", "seg"]), 3, "seg");
    fails(&read_only(d, &["recover", "seg"]), 3, "seg");
    fails(&read_only(d, &["checkpoint", "seg"]), 3, "seg");
}

#[test]
fn corrupt_image_header() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    good_segment(d);
    let (image, _) = first_before_image_in_image(d, 0);
    flip(&image, 50); // boot id, under the image header checksum
    let r = read_only(d, &["info", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("DAMAGED"), "{}", r.stdout);
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("FAIL memory image header"),
        "{}",
        r.stdout
    );
    fails(&read_only(d, &["dump", "seg"]), 3, "seg");
    let r = read_only(d, &["dump", "seg", "--disk", "--len", "5"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("|hello|"), "{}", r.stdout);
    fails(&read_only(d, &["checkpoint", "seg"]), 3, "seg");
    let r = read_only(d, &["recover", "seg"]);
    fails(&r, 3, "seg");
    assert!(r.stderr.contains("--discard-image"), "{}", r.stderr);

    let r = vista(d, &["recover", "seg", "--discard-image"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("discarded"), "{}", r.stdout);
    assert_eq!(read_only(d, &["check", "seg"]).code, 0);
}

#[test]
fn corrupt_undo_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crashed_segment(d);
    let (image, at) = first_before_image_in_image(d, 0);
    flip(&image, at);
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains(
            "FAIL undo lane 0 (memory image): undo record at lane offset 64 fails its checksum"
        ),
        "{}",
        r.stdout
    );
    let r = read_only(d, &["info", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("DAMAGED"), "{}", r.stdout);
    fails(&read_only(d, &["dump", "seg"]), 3, "seg");
    fails(&read_only(d, &["recover", "seg"]), 3, "seg");

    // The explicit way on: drop the image, back to the last checkpoint.
    let r = vista(d, &["recover", "seg", "--discard-image"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = read_only(d, &["dump", "seg", "--len", "5"]);
    assert!(r.stdout.contains("|hello|"), "{}", r.stdout);
}

#[test]
fn truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 4096)
        .unwrap();
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("FAIL file length"), "{}", r.stdout);
    let r = read_only(d, &["info", "seg"]);
    assert!(r.stdout.contains("WRONG LENGTH"), "{}", r.stdout);
    fails(&read_only(d, &["dump", "seg", "--disk"]), 3, "seg");
    fails(&read_only(d, &["recover", "seg"]), 3, "seg");
    fails(&read_only(d, &["checkpoint", "seg"]), 3, "seg");

    // Shorter than a header.
    std::fs::write(&path, b"VISTA").unwrap();
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    fails(&read_only(d, &["info", "seg"]), 3, "seg");
}

#[test]
fn locked_segment_is_read_but_not_opened() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    let seg = Segment::open(&path, &options(d)).unwrap();
    let r = read_only(d, &["info", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains(&format!("yes, by process {}", std::process::id())),
        "{}",
        r.stdout
    );
    assert_eq!(read_only(d, &["check", "seg"]).code, 0);
    let r = read_only(d, &["dump", "seg", "--len", "5"]);
    assert!(r.stdout.contains("|hello|"), "{}", r.stdout);
    fails(&read_only(d, &["checkpoint", "seg"]), 4, "seg");
    fails(&read_only(d, &["recover", "seg"]), 4, "seg");
    drop(seg);
}

#[test]
fn foreign_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let random: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(d.join("random"), random).unwrap();
    std::fs::write(d.join("empty"), b"").unwrap();
    std::fs::create_dir(d.join("adir")).unwrap();
    for name in ["random", "empty", "adir", "missing"] {
        for cmd in ["info", "dump", "recover", "checkpoint"] {
            fails(&read_only(d, &[cmd, name]), 3, name);
        }
        let r = read_only(d, &["check", name]);
        let expect = if matches!(name, "random" | "empty") {
            1
        } else {
            3
        };
        assert_eq!(r.code, expect, "check {name}: {}{}", r.stdout, r.stderr);
        if expect == 3 {
            fails(&r, 3, name);
        }
    }
    assert!(!d.join("missing").exists(), "a read created the file");
}

#[test]
fn usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for args in [
        &["create", "x", "--size", "64MB"][..],
        &["create", "x", "--size", "lots"],
        &["create", "x"],
        &["dump", "x", "--len", "-1"],
        &["frobnicate"],
        &[],
    ] {
        let r = vista(d, args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    let r = vista(d, &["create", "x", "--size", "0"]);
    fails(&r, 3, "x");
    assert!(!d.join("x").exists() || std::fs::metadata(d.join("x")).unwrap().len() == 0);
}

#[test]
fn intact_header_claiming_an_absurd_size() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    for claim in [u64::MAX - 4, 1 << 62, 0] {
        // A header that passes its checksum but claims `claim` bytes of data.
        let mut b = std::fs::read(&path).unwrap();
        b[16..24].copy_from_slice(&claim.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        std::fs::write(&path, b).unwrap();
        for cmd in ["info", "dump", "recover", "checkpoint"] {
            let r = read_only(d, &[cmd, "seg"]);
            fails(&r, 3, "seg");
            assert!(r.stderr.contains("claims"), "{cmd} {claim}: {}", r.stderr);
        }
        assert_eq!(read_only(d, &["check", "seg"]).code, 1);
    }
    // Creating one is refused before any file is made.
    fails(
        &vista(d, &["create", "huge", "--size", "16000000TiB"]),
        3,
        "huge",
    );
    assert!(!d.join("huge").exists());
}
