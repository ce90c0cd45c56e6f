//! `Segment::close` is documented to take a final checkpoint and report its
//! errors (durability.md: what was committed before it survives power loss). On a
//! fenced segment (a member left fenced by a crash, opened alone) rio-cache skips the
//! close-time checkpoint silently, so `close` returns `Ok(())` with nothing written,
//! where `checkpoint` says `GroupCheckpointRequired`: a commit acknowledged before an
//! `Ok` close is lost by a power loss. It must fail with `GroupCheckpointRequired`.

use std::path::Path;
use std::process::Command;

use rio_cache::power::{self, Plan};
use rio_cache::RioOptions;
use vista::{Error, Group, Options, Protection, Segment, Writeback};

const CHILD_ENV: &str = "REVIEW4_FENCED_CLOSE_CHILD";

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

/// The child: a transaction across two segments, then a crash (no group checkpoint).
#[test]
fn child_entry() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = Path::new(&root);
    let o = opts(root);
    let members = vec![
        Segment::open(root.join("a.vista"), &o).unwrap(),
        Segment::open(root.join("b.vista"), &o).unwrap(),
    ];
    let g = Group::open(root.join("group.coord"), members, &o).unwrap();
    g.transaction(|tx| {
        tx.on(0)?.put(0, &5u64)?;
        tx.on(1)?.put(0, &5u64)?;
        Ok::<_, Error>(())
    })
    .unwrap();
    std::process::exit(0);
}

#[test]
fn closing_a_fenced_segment_reports_that_nothing_was_checkpointed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for d in ["shm", "log"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, root)
        .status()
        .unwrap();
    assert!(status.success(), "{status:?}");

    // Member a alone, fenced: an ordinary transaction, then a clean close.
    let a = root.join("a.vista");
    let seg = Segment::open(&a, &opts(root)).unwrap();
    assert!(seg.is_fenced());
    seg.transaction(|tx| tx.put(64, &77u64)).unwrap();
    let checkpoint = seg.checkpoint();
    assert!(
        matches!(checkpoint, Err(Error::GroupCheckpointRequired)),
        "{checkpoint:?}"
    );
    // The close says so too: it took no checkpoint (it returned Ok, and a power loss
    // then lost the commit).
    let closed = seg.close();
    assert!(
        matches!(closed, Err(Error::GroupCheckpointRequired)),
        "close() returned {closed:?}, yet took no checkpoint"
    );
    // The memory image keeps the commit: reopened (no power loss), it is there, and the
    // group's checkpoint then makes it durable.
    let seg = Segment::open(&a, &opts(root)).unwrap();
    assert_eq!(seg.get::<u64>(64).unwrap(), 77);
    let members = vec![
        seg,
        Segment::open(root.join("b.vista"), &opts(root)).unwrap(),
    ];
    let g = Group::open(root.join("group.coord"), members, &opts(root)).unwrap();
    g.close().unwrap();
    power::cut(
        &a,
        &RioOptions::new()
            .cache_dir(root.join("shm"))
            .record_writes(root.join("log")),
        Plan::KeepAll,
    )
    .unwrap();
    let seg = Segment::open(&a, &opts(root)).unwrap();
    assert_eq!(
        seg.get::<u64>(64).unwrap(),
        77,
        "lost after the group's checkpoint"
    );
    assert_eq!(seg.get::<u64>(0).unwrap(), 5);
}
