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

/// `Segment::open`, looking again for a while when the segment is locked: a child
/// process that another test of this binary spawns holds duplicates of this process's
/// descriptors (and so of a just-closed segment's lock) until it execs, which on a
/// loaded machine can take milliseconds.
fn open_segment(path: impl AsRef<Path>, opts: &vista::Options) -> vista::Result<Segment> {
    let path = path.as_ref();
    for _ in 0..250 {
        match Segment::open(path, opts) {
            Err(vista::Error::Locked { .. }) => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            r => return r,
        }
    }
    Segment::open(path, opts)
}

/// A segment with "hello" committed at 0 and checkpointed, closed cleanly.
fn good_segment(dir: &Path) -> PathBuf {
    let path = dir.join("seg");
    let seg = open_segment(&path, &options(dir)).unwrap();
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
    let seg = open_segment(dir.join("seg"), &options(&dir)).unwrap();
    let mut tx = seg.begin().unwrap();
    tx.write(0, b"HELLO").unwrap();
    std::process::abort();
}

/// Segments `seg` and `seg2` of a `vista::Group` (coordinator `group.coord`) whose
/// process died (SIGABRT) inside a transaction across both, before its decision: each
/// member's lane holds its part with a group record.
fn crashed_group(dir: &Path) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "group_crash_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc_sigabrt()), "{status:?}");
}

/// The child of `crashed_group` (does nothing when run as a normal test).
#[test]
fn group_crash_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let o = options(&dir);
    let members = ["seg", "seg2"]
        .iter()
        .map(|n| open_segment(dir.join(n), &o).unwrap())
        .collect();
    let group = vista::Group::open(dir.join("group.coord"), members, &o).unwrap();
    group
        .transaction(|tx| {
            tx.on(0)?.write(0, b"hello")?;
            tx.on(1)?.write(0, b"world")
        })
        .unwrap();
    let mut tx = group.begin().unwrap();
    tx.on(0).unwrap().write(0, b"HELLO").unwrap();
    tx.on(1).unwrap().write(0, b"WORLD").unwrap();
    std::process::abort();
}

#[test]
fn a_part_of_a_transaction_across_segments_is_shown_with_its_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    crashed_group(d);
    let r = read_only(d, &["info", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("transaction across segments decided by")
            && r.stdout.contains("group.coord")
            && r.stdout
                .contains("not committed (the next open rolls it back)"),
        "{}",
        r.stdout
    );
    let r = read_only(d, &["--json", "info", "seg2"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let lane = &v["segment"]["lanes"][0];
    assert_eq!(lane["state"], "cross-segment", "{}", r.stdout);
    assert_eq!(lane["detail"]["committed"], false, "{}", r.stdout);
    assert!(
        lane["detail"]["coordinator"]
            .as_str()
            .is_some_and(|c| c.ends_with("group.coord")),
        "{}",
        r.stdout
    );
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 0, "an undecided part is no damage: {}", r.stdout);
    let r = read_only(d, &["--json", "dump", "seg", "--len", "5"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        v["hex"], "68656c6c6f",
        "dump showed the undecided part's bytes"
    );
    // Without the coordinator, the next open would refuse: check says so.
    std::fs::rename(d.join("group.coord"), d.join("elsewhere")).unwrap();
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("cannot be read"), "{}", r.stdout);
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
    // A short name that occurs inside a word of the message is still named.
    vista(d, &["create", "x", "--size", "64KiB"]);
    let again = vista(d, &["create", "x", "--size", "64KiB"]);
    fails(&again, 3, "vista: x: already exists");
    assert_eq!(vista(d, &["remove", "x"]).code, 0);

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
    let seg = open_segment(d.join("seg"), &options(d)).unwrap();
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
    assert_eq!(r.code, 1, "info reports damage: {}", r.stderr);
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
    assert_eq!(r.code, 1, "info reports damage: {}", r.stderr);
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
    let seg = open_segment(&path, &options(d)).unwrap();
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
        let crc = crc32fast::hash(&b[..508]);
        b[508..512].copy_from_slice(&crc.to_le_bytes());
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

/// Issue 18, as the user met it: `recover` on a segment file whose header is damaged is
/// refused and creates nothing (no memory image, no journal); once good bytes are
/// copied back over the file, `recover` works.
#[test]
fn refused_recover_creates_nothing_and_the_repaired_file_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    // A segment file on its own, as copied from elsewhere.
    let r = vista(d, &["--json", "info", "seg"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    std::fs::remove_file(d.join(v["image"]["path"].as_str().unwrap())).unwrap();
    std::fs::remove_file(d.join(v["journal"]["path"].as_str().unwrap())).unwrap();
    let good = std::fs::read(&path).unwrap();
    let mut bad = good.clone();
    bad[4096 + 44] ^= 0xff; // the segment header's user length, under its checksum
    std::fs::write(&path, &bad).unwrap();

    let r = read_only(d, &["recover", "seg"]);
    fails(&r, 3, "seg");
    assert!(
        r.stderr.contains("segment file") && r.stderr.contains("header checksum mismatch"),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("vista remove seg"), "{}", r.stderr);
    assert_eq!(
        snapshot(d).keys().collect::<Vec<_>>(),
        vec![&path],
        "the refused recover created files"
    );
    fails(&read_only(d, &["checkpoint", "seg"]), 3, "seg");

    std::fs::write(&path, &good).unwrap();
    let r = vista(d, &["recover", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = read_only(d, &["dump", "seg", "--len", "5"]);
    assert!(r.stdout.contains("|hello|"), "{}", r.stdout);
}

/// A damaged copy in the memory image is named as such, with the commands that get
/// past it.
#[test]
fn damaged_segment_header_in_the_image_names_the_image_and_the_way_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    let (image, _) = first_before_image_in_image(d, 0);
    let image_len = std::fs::metadata(&image).unwrap().len();
    let data_len = vista::rio_cache::existing_size(&path)
        .unwrap()
        .unwrap()
        .next_multiple_of(4096);
    flip(&image, image_len - data_len + 44);
    let r = read_only(d, &["info", "seg"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("UNUSABLE"), "{}", r.stdout);
    for cmd in ["recover", "checkpoint"] {
        let r = read_only(d, &[cmd, "seg"]);
        fails(&r, 3, "seg");
        for want in [
            "memory image",
            image.to_str().unwrap(),
            "intact checkpoint",
            "`vista recover --discard-image seg`",
            "`vista remove seg`",
        ] {
            assert!(r.stderr.contains(want), "{cmd}: lacks {want}: {}", r.stderr);
        }
    }
    let r = vista(d, &["recover", "seg", "--discard-image"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(read_only(d, &["info", "seg"]).code, 0);
}

#[test]
fn offsets_and_sizes_in_hex_or_decimal() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    let seg = open_segment(&path, &options(d)).unwrap();
    seg.transaction(|tx| tx.write(0x50, b"at 0x50")).unwrap();
    seg.transaction(|tx| tx.write(1024, b"at 1KiB")).unwrap();
    seg.close().unwrap();
    for (offset, len, want) in [
        ("0x50", "7", "at 0x50"),
        ("80", "0x7", "at 0x50"),
        ("0X400", "7", "at 1KiB"),
        ("1KiB", "0x07", "at 1KiB"),
        ("1024", "7B", "at 1KiB"),
    ] {
        let r = read_only(
            d,
            &["--json", "dump", "seg", "--offset", offset, "--len", len],
        );
        assert_eq!(r.code, 0, "{offset} {len}: {}", r.stderr);
        let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
        let hex: String = want
            .bytes()
            .flat_map(|b| [b >> 4, b & 15])
            .map(|n| char::from_digit(u32::from(n), 16).unwrap())
            .collect();
        assert_eq!(v["hex"], hex, "--offset {offset} --len {len}");
    }
    for bad in ["0x", "0xZZ", "0x10KiB", "x50"] {
        let r = vista(d, &["dump", "seg", "--offset", bad]);
        assert_eq!(r.code, 2, "{bad}: {}", r.stderr);
    }
    let r = vista(d, &["create", "hexsized", "--size", "0x10000"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("64 KiB"), "{}", r.stdout);
}

/// Every refusal because the segment is open names the process that has it open.
#[test]
fn locked_messages_name_the_holder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    let seg = open_segment(&path, &options(d)).unwrap();
    let pid = std::process::id().to_string();
    for cmd in ["checkpoint", "recover", "remove"] {
        let r = read_only(d, &[cmd, "seg"]);
        fails(&r, 4, "seg");
        assert!(r.stderr.contains(&pid), "{cmd}: {}", r.stderr);
    }
    drop(seg);
}

#[test]
fn a_file_that_is_not_a_segment_gets_no_recover_advice() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let random: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(d.join("random"), random).unwrap();
    for cmd in ["checkpoint", "recover", "info", "dump", "heap", "remove"] {
        let r = read_only(d, &[cmd, "random"]);
        fails(&r, 3, "random");
        assert!(
            r.stderr.contains("not a vista segment"),
            "{cmd}: {}",
            r.stderr
        );
        assert!(!r.stderr.contains("recover"), "{cmd}: {}", r.stderr);
    }
}

#[test]
fn info_tells_what_a_clear_journal_holds() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    good_segment(d);
    // A checkpoint writes into the disk image's other slot: the journal stays empty.
    let r = read_only(d, &["--json", "info", "seg"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["journal"]["len"].as_u64(), Some(0), "{}", r.stdout);
    assert_eq!(v["journal"]["verdict"]["state"], "clear");
    assert!(v["checkpoint"]["slot"].as_u64().is_some(), "{}", r.stdout);
    // A group checkpoint's journal, cleared: its header zeroed, its body left behind.
    let mut j = vec![0u8; 64];
    j.extend((0..8192u32).map(|i| (i % 251) as u8 | 1));
    std::fs::write(d.join("seg.journal"), j).unwrap();
    let r = read_only(d, &["--json", "info", "seg"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["journal"]["len"].as_u64().unwrap() > 64, "{}", r.stdout);
    assert_eq!(v["journal"]["verdict"]["state"], "clear");
    let r = read_only(d, &["info", "seg"]);
    let line = r.stdout.lines().find(|l| l.starts_with("journal")).unwrap();
    assert!(
        line.contains("zeroed header")
            && line.contains("nothing reads them")
            && !line.contains("empty"),
        "{line}"
    );
}

/// A damaged intent record (bytes 1024..1536 of the file) loses nothing, but `check`
/// reports it and `info` says the other slot may differ anywhere.
#[test]
fn check_reports_a_damaged_intent_record() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    let mut b = std::fs::read(&path).unwrap();
    b[1030] ^= 0xff;
    std::fs::write(&path, b).unwrap();
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.contains("FAIL intent record"), "{}", r.stdout);
    let r = read_only(d, &["info", "seg"]);
    assert!(
        r.stdout.contains("other slot    may differ anywhere"),
        "{}",
        r.stdout
    );
}

/// Makes every copy of the segment header in `file` (the bytes of a segment file) say
/// format `version`, with a matching checksum.
fn set_segment_version(file: &mut [u8], version: u32) {
    let headers: Vec<usize> = (0..file.len() - 8)
        .step_by(4096)
        .filter(|&h| &file[h..h + 8] == b"VISTASEG")
        .collect();
    assert!(!headers.is_empty());
    for h in headers {
        file[h + 8..h + 12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32fast::hash(&file[h..h + 60]);
        file[h + 60..h + 64].copy_from_slice(&crc.to_le_bytes());
    }
}

/// A segment of format version 1 (docs/format.md, "Compatibility"): `info` names its
/// version and says an open upgrades it; `check` reads it as valid, and neither writes it.
#[test]
fn info_names_a_version_1_segment_and_its_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    for e in std::fs::read_dir(d).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "img") {
            std::fs::remove_file(p).unwrap(); // the disk file is what `info` reads
        }
    }
    let mut b = std::fs::read(&path).unwrap();
    set_segment_version(&mut b, 1);
    std::fs::write(&path, &b).unwrap();
    let r = read_only(d, &["info", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("segment version 1 (an open upgrades it to 2)"),
        "{}",
        r.stdout
    );
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout.contains("segment header (disk): version 1,"),
        "{}",
        r.stdout
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        b,
        "read-only commands wrote the file"
    );
    // Version 0 is no version this build reads: no upgrade is promised.
    set_segment_version(&mut b, 0);
    std::fs::write(&path, &b).unwrap();
    let r = read_only(d, &["info", "seg"]);
    assert!(r.stdout.contains("segment version 0\n"), "{}", r.stdout);
    assert!(!r.stdout.contains("upgrades"), "{}", r.stdout);
}

/// Bytes 2000..=2003 of the file's first page (reserved: after rio-cache's slot headers
/// and intent record) are read by nothing; `check` still notices them.
#[test]
fn check_covers_the_reserved_bytes_of_the_first_page() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    let mut b = std::fs::read(&path).unwrap();
    for x in &mut b[2000..2004] {
        *x ^= 0xff;
    }
    std::fs::write(&path, b).unwrap();
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("FAIL disk header page") && r.stdout.contains("bytes 2000..=2003"),
        "{}",
        r.stdout
    );
}

// ---------------------------------------------------------------------------------
// The heap: `check` runs the heap check read-only; `heap` shows statistics.
// ---------------------------------------------------------------------------------

const HEAP_BASE: u64 = 4096;
const META_PAGES: u64 = 4; // 256 descriptors of 64 bytes before each zone's pages

/// A heap segment: a root, a few small blocks (one slab) and a large block. Returns the
/// path and the offset of one small block.
fn heap_segment(dir: &Path) -> (PathBuf, u64) {
    let path = dir.join("seg");
    let seg = open_segment(&path, &options(dir).size(1 << 20).undo_log_size(64 << 10)).unwrap();
    let small = seg
        .transaction(|tx| {
            let root = tx.root::<[u64; 2]>()?;
            let a = tx.alloc(7u64)?;
            let _b = tx.alloc(8u64)?;
            let big = tx.alloc_bytes(3 * 4096 + 10)?;
            tx.bytes_mut(big)?.fill(1);
            tx.get_mut(root)?[0] = a.offset();
            Ok::<_, vista::Error>(a.offset())
        })
        .unwrap();
    seg.close().unwrap();
    (path, small)
}

/// The user-space offset of the descriptor of the page holding `off` (first zone).
fn desc_of(off: u64) -> u64 {
    let g = (off - HEAP_BASE) / 4096 - META_PAGES;
    HEAP_BASE + g * 64
}

/// Writes `bytes` at user offset `at` with a raw transaction (a stray store through an
/// offset), then closes the segment.
fn damage(path: &Path, dir: &Path, at: u64, bytes: &[u8]) {
    let seg = open_segment(path, &options(dir)).unwrap();
    seg.transaction(|tx| tx.write(at, bytes)).unwrap();
    seg.close().unwrap();
}

#[test]
fn check_and_heap_on_a_sound_heap() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    heap_segment(d);
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stdout
            .contains("ok   heap (memory image): consistent: 4 live block(s)"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("ok   heap (disk): consistent"),
        "{}",
        r.stdout
    );
    let r = read_only(d, &["heap", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for want in [
        "live          4 block(s)",
        "fragmentation",
        "large           1 block(s)",
        "no problems found",
    ] {
        assert!(r.stdout.contains(want), "heap lacks {want}: {}", r.stdout);
    }
    let r = read_only(d, &["--json", "heap", "seg", "--disk"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["live_blocks"], 4);
    assert_eq!(v["large_blocks"], 1);
    assert_eq!(v["ok"], true);
    assert!(
        v["classes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["block_size"] == 16 && c["live"] == 3),
        "{}",
        r.stdout
    );
    // A segment without a heap: check says so, heap refuses.
    let other = tempfile::tempdir().unwrap();
    good_segment(other.path());
    let r = read_only(other.path(), &["check", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    assert!(r.stdout.contains("no heap"), "{}", r.stdout);
    fails(&read_only(other.path(), &["heap", "seg"]), 3, "has no heap");
}

#[test]
fn check_finds_a_damaged_heap() {
    /// Where to write what, given the offset of a small block.
    type Damage = fn(u64) -> (u64, Vec<u8>);
    let cases: [(&str, Damage, &str); 3] = [
        (
            "root pointer",
            |_| (64, 0x5_5555u64.to_le_bytes().to_vec()),
            "root:",
        ),
        // The slab's descriptor links back to page 76 (its list has it first: 0).
        (
            "item link",
            |small| (desc_of(small) + 12, 77u32.to_le_bytes().to_vec()),
            "links back",
        ),
        // The slab's count of live blocks.
        (
            "slab descriptor",
            |small| (desc_of(small) + 4, 200u32.to_le_bytes().to_vec()),
            "counter 200",
        ),
    ];
    for (what, at, want) in cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (path, small) = heap_segment(d);
        let (off, bytes) = at(small);
        damage(&path, d, off, &bytes);
        let r = read_only(d, &["check", "seg"]);
        assert_eq!(r.code, 1, "{what}: {}", r.stdout);
        assert!(
            r.stdout.contains("FAIL heap (memory image)") && r.stdout.contains(want),
            "{what}: {}",
            r.stdout
        );
        // The disk holds the last checkpoint, damaged too (the close checkpointed it).
        assert!(
            r.stdout.contains("FAIL heap (disk)"),
            "{what}: {}",
            r.stdout
        );
        let r = read_only(d, &["heap", "seg"]);
        assert_eq!(r.code, 1, "{what}: {}", r.stdout);
        assert!(
            r.stdout.contains("FAIL") && r.stdout.contains(want),
            "{what}: {}",
            r.stdout
        );
        // The library's own check, on the open segment, agrees.
        let seg = open_segment(&path, &options(d)).unwrap();
        assert!(!seg.check().unwrap().is_clean(), "{what}");
    }
}

// ---------------------------------------------------------------------------------
// Deleting: `remove` and `images --remove-orphans`.
// ---------------------------------------------------------------------------------

#[test]
fn remove_deletes_a_segments_files_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    std::fs::write(
        d.join("notes.txt"),
        b"not a segment, but longer than a header....................................",
    )
    .unwrap();
    assert_eq!(snapshot(d).len(), 4, "segment, journal, image, notes");
    let r = vista(d, &["remove", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("removed seg"), "{}", r.stdout);
    assert_eq!(
        snapshot(d).keys().collect::<Vec<_>>(),
        vec![&d.join("notes.txt")],
        "{}",
        r.stdout
    );
    assert!(!path.exists());
    fails(&read_only(d, &["remove", "seg"]), 3, "nothing to remove");
    let r = read_only(d, &["remove", "notes.txt"]);
    fails(&r, 3, "not a vista segment");
    // Nor an empty file with nothing of a segment beside it; the message names it even
    // when its name is a word of the message.
    std::fs::write(d.join("a"), b"").unwrap();
    let r = read_only(d, &["remove", "a"]);
    fails(&r, 3, "vista: a: is not a vista segment (the file is empty");
    assert!(d.join("a").exists(), "an empty file was removed");
    std::fs::remove_file(d.join("a")).unwrap();
    // A damaged segment is removable: that is what the command is for.
    let path = good_segment(d);
    flip(&path, 20);
    assert_eq!(vista(d, &["remove", "seg"]).code, 0);
    assert!(!path.exists());
}

/// A group member's fence goes with its segment: left behind, it would fence a new
/// segment created at the same path (its own checkpoints refused). A refused remove
/// (the segment is open) keeps it.
#[test]
fn remove_deletes_a_group_members_fence_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    let fence = vista::fence_path(&path);
    std::fs::write(&fence, b"").unwrap();
    {
        let open = open_segment(&path, &options(d)).unwrap();
        assert!(
            open.checkpoint().is_err(),
            "the fence makes the segment's own checkpoint wait for its group"
        );
        fails(&vista(d, &["remove", "seg"]), 4, "nothing was removed");
        assert!(fence.exists(), "a refused remove deleted the fence");
    }
    let r = vista(d, &["--json", "remove", "seg"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert!(v["removed"]["fence"].is_string(), "{}", r.stdout);
    assert!(!fence.exists() && !path.exists());
    let fresh = open_segment(&path, &options(d)).unwrap();
    fresh
        .checkpoint()
        .expect("a new segment at the path is not fenced");
}

#[test]
fn images_lists_and_removes_only_orphans() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in ["kept", "gone", "open"] {
        open_segment(d.join(name), &options(d))
            .unwrap()
            .close()
            .unwrap();
    }
    let held = open_segment(d.join("open"), &options(d)).unwrap();
    for name in ["gone", "open"] {
        std::fs::remove_file(d.join(name)).unwrap();
        std::fs::remove_file(d.join(format!("{name}.journal"))).unwrap();
    }
    let image = |name: &str| vista::rio_cache::image_path(&d.join(name), d).unwrap();

    let r = read_only(d, &["images"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("3 memory image(s)"), "{}", r.stdout);
    assert!(r.stdout.contains("gone (GONE)"), "{}", r.stdout);
    assert!(r.stdout.contains("kept (exists)"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains(&format!("yes, by process {}", std::process::id())),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("1 orphan(s)"), "{}", r.stdout);

    let r = vista(d, &["--json", "images", "--remove-orphans"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["removed"], 1, "{}", r.stdout);
    assert!(!image("gone").exists(), "the orphan stayed");
    assert!(image("kept").exists(), "an image whose file exists went");
    assert!(image("open").exists(), "an open image went");
    drop(held);
    // Closed now, and its file is gone: an orphan. (A child process that another test
    // of this binary forks at the wrong moment holds a duplicate of the image's locked
    // descriptor until it execs: look again for a while before judging.)
    let mut r = vista(d, &["images", "--remove-orphans"]);
    for _ in 0..100 {
        if r.stdout.contains("1 removed") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        r = vista(d, &["images", "--remove-orphans"]);
    }
    assert!(r.stdout.contains("1 removed"), "{}", r.stdout);
    assert!(!image("open").exists());
    assert!(image("kept").exists());
}

/// A damaged segment header in the file while the memory image's copy is intact: the
/// segment opens (from the image), and `check` says the file's copy is the one at risk.
#[test]
fn check_says_when_only_the_files_copy_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = good_segment(d);
    let mut b = std::fs::read(&path).unwrap();
    b[4096 + 44] ^= 0xff;
    std::fs::write(&path, b).unwrap();
    let r = read_only(d, &["check", "seg"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    let line = r
        .stdout
        .lines()
        .find(|l| l.contains("FAIL segment header (disk)"))
        .unwrap_or_else(|| panic!("{}", r.stdout));
    assert!(
        line.contains("memory image's copy is intact") && line.contains("power loss"),
        "{line}"
    );
    assert_eq!(vista(d, &["checkpoint", "seg"]).code, 0);
}

/// A segment file deleted while its memory image lives: `create` refuses and names the
/// command that works (`recover --discard-image` needs the file, and failed), which
/// then deletes the image.
#[test]
fn a_live_image_without_its_file_points_to_remove() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    // A crashed segment: its image holds more than its file.
    let seg = crashed_segment(dir);
    std::fs::remove_file(&seg).unwrap();
    let name = seg.file_name().unwrap().to_str().unwrap();
    let r = vista(dir, &["create", name, "--size", "64KiB"]);
    fails(&r, 3, name);
    assert!(r.stderr.contains("missing or empty"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("`vista remove {name}`")) && !r.stderr.contains("recover"),
        "{}",
        r.stderr
    );
    let r = vista(dir, &["remove", name]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = vista(dir, &["create", name, "--size", "64KiB"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}
