//! The memory image is named after the segment's path with only its
//! directory canonicalized, not the file itself. A segment opened through a symlink to
//! its file gets another image: after a process crash, a commit (which survives a
//! process crash: it is in the memory image) is missing when the segment is next opened
//! through the symlink, which starts cold from the last checkpoint without a word.

mod common;

use std::path::Path;
use std::process::Command;

use vista::{Segment, StartKind, Writeback};

const CHILD_ENV: &str = "REVIEW4_SYMLINK_CHILD";

/// The segment's options, with its cache directory in `root`.
fn opts(root: &Path) -> vista::Options {
    let cache = root.join("shm");
    std::fs::create_dir_all(&cache).unwrap();
    vista::Options::new()
        .size(1 << 16)
        .undo_log_size(16 << 10)
        .protection(common::protection())
        .writeback(Writeback::Manual)
        .cache_dir(cache)
}

/// The child: commits through the file's own name, then dies without closing (as a
/// crash: no close-time checkpoint).
#[test]
fn child_entry() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = Path::new(&root);
    let seg = Segment::open(root.join("seg.vista"), &opts(root)).unwrap();
    seg.transaction(|tx| tx.put(0, &42u64)).unwrap();
    std::process::exit(0);
}

#[test]
fn a_commit_survives_a_crash_when_the_segment_is_reopened_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // A segment with a checkpoint on disk.
    Segment::open(root.join("seg.vista"), &opts(root))
        .unwrap()
        .close()
        .unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, root)
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The same file, through a symlink beside it.
    let link = root.join("current.vista");
    std::os::unix::fs::symlink(root.join("seg.vista"), &link).unwrap();
    let seg = Segment::open(&link, &opts(root)).unwrap();
    assert_eq!(
        seg.get::<u64>(0).unwrap(),
        42,
        "a committed transaction is lost (the open through the symlink started {:?})",
        seg.start_kind()
    );
    assert_eq!(seg.start_kind(), StartKind::Warm);
}
