//! A segment opened through a symlink by a build before the resolved naming had its
//! memory image named after the link. After such a build crashed, `Segment::open`
//! through the link must find that image (the only copy of the commits since the last
//! checkpoint) instead of starting cold: vista passes the path as given to the cache,
//! which takes the old image over.
//!
//! The old build's state is made with this one: a segment opened by the plain name
//! `link` (a regular file then) gets the old image name; its process is killed after a
//! commit; the file is then renamed to `data` and `link` made a symlink to it.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

use vista::{Segment, StartKind};

const CHILD_ENV: &str = "VISTA_LEGACY_SYMLINK_CHILD";

fn opts(dir: &std::path::Path) -> vista::Options {
    vista::Options::new()
        .size(1 << 16)
        .lanes(2)
        .writeback(vista::Writeback::Manual)
        .cache_dir(dir.join("shm"))
}

#[test]
fn child_entry() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let seg = Segment::open(dir.join("link"), &opts(&dir)).unwrap();
    seg.transaction(|tx| tx.put(0, &1u64)).unwrap();
    seg.checkpoint().unwrap();
    seg.transaction(|tx| tx.put(0, &2u64)).unwrap();
    std::process::abort();
}

#[test]
fn an_image_named_after_the_link_by_an_older_build_is_taken_over() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().canonicalize().unwrap();
    std::fs::create_dir(dir.join("shm")).unwrap();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status:?}");
    std::fs::rename(dir.join("link"), dir.join("data")).unwrap();
    std::os::unix::fs::symlink("data", dir.join("link")).unwrap();
    let seg = Segment::open(dir.join("link"), &opts(&dir)).unwrap();
    assert_eq!(seg.start_kind(), StartKind::Warm);
    assert_eq!(
        seg.get::<u64>(0).unwrap(),
        2,
        "the commit in the old image was lost"
    );
}
