//! A segment keeps the path it was opened with, and a group creates the
//! member's fence file (`<path>.fence`, which keeps the member from checkpointing alone
//! after a crash) from that path when a transaction across segments first tags the
//! member. Opened by a relative path, after the process changed its working directory
//! (a daemon's `chdir("/")`, for one), the fence lands in the new directory: after a
//! crash the member is not fenced, checkpoints alone, and a power loss then leaves the
//! transaction across segments in one member only.

use std::path::Path;
use std::process::Command;

use rio_cache::power::{self, Plan};
use rio_cache::RioOptions;
use vista::{Error, Group, Options, Protection, Segment, Writeback};

const CHILD_ENV: &str = "REVIEW4_CHDIR_CHILD";

fn opts(root: &Path) -> Options {
    Options::new()
        .size(64 << 10)
        .undo_log_size(16 << 10)
        .lanes(2)
        .protection(Protection::Auto)
        .writeback(Writeback::Manual)
        .cache_dir(root.join("shm"))
        .record_writes(root.join("log"))
}

fn rio(root: &Path) -> RioOptions {
    RioOptions::new()
        .cache_dir(root.join("shm"))
        .record_writes(root.join("log"))
}

/// The child: opens the members by relative paths, changes directory, commits a
/// transaction across both, and dies without closing (a crash).
#[test]
fn child_entry() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = Path::new(&root);
    std::env::set_current_dir(root.join("data")).unwrap();
    let o = opts(root);
    let members = vec![
        Segment::open("a.vista", &o).unwrap(),
        Segment::open("b.vista", &o).unwrap(),
    ];
    let g = Group::open(root.join("group.coord"), members, &o).unwrap();
    std::env::set_current_dir(root.join("elsewhere")).unwrap();
    g.transaction(|tx| {
        tx.on(0)?.put(0, &5u64)?;
        tx.on(1)?.put(0, &5u64)?;
        Ok::<_, Error>(())
    })
    .unwrap();
    std::process::exit(0);
}

#[test]
fn a_member_opened_by_a_relative_path_stays_fenced_after_a_chdir_and_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["data", "elsewhere", "shm", "log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let (a, b) = (root.join("data/a.vista"), root.join("data/b.vista"));
    for p in [&a, &b] {
        Segment::open(p, &opts(root)).unwrap().close().unwrap();
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, root)
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");

    // After the crash: member a, opened alone, must refuse to checkpoint on its own.
    let seg_a = Segment::open(&a, &opts(root)).unwrap();
    let fenced = seg_a.is_fenced();
    let own = seg_a.checkpoint();
    drop(seg_a);
    // A power loss: both memory images are gone.
    power::cut(&a, &rio(root), Plan::KeepAll).unwrap();
    power::cut(&b, &rio(root), Plan::KeepAll).unwrap();
    let va = Segment::open(&a, &opts(root))
        .unwrap()
        .get::<u64>(0)
        .unwrap();
    let vb = Segment::open(&b, &opts(root))
        .unwrap()
        .get::<u64>(0)
        .unwrap();
    assert!(
        va == vb,
        "the transaction across segments survived the power loss in one member only: \
         a = {va}, b = {vb} (a was fenced after the crash: {fenced}; its own checkpoint: \
         {own:?}; stray fence files: {:?})",
        std::fs::read_dir(root.join("elsewhere"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    );
}
