//! `vista remove` names the journal and the fence from the path as given, while
//! `rio_cache::remove_closed_with` (and `Segment::open`) resolve the symlink to the
//! segment file: `vista remove LINK` deletes the target's file, journal and memory image
//! but removes `LINK.fence`, not the target's fence. The fence of a member left fenced
//! by a crash stays beside the deleted file, so the next segment created at that path
//! starts fenced: its creation (whose first checkpoint is refused) fails with
//! GroupCheckpointRequired until the fence is deleted by hand
//! (files.rs says a fence left behind must never do that).

use std::path::Path;
use std::process::Command;

use vista::{Options, Segment, Writeback};

fn opts(dir: &Path) -> Options {
    Options::new()
        .size(1 << 16)
        .undo_log_size(16 << 10)
        .writeback(Writeback::Manual)
        .cache_dir(dir)
}

#[test]
fn remove_through_a_symlink_removes_the_fence_of_the_segment() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let data = dir.join("data.vista");
    Segment::open(&data, &opts(dir)).unwrap().close().unwrap();
    // A member a crash left fenced (its group's checkpoint had not run).
    std::fs::write(vista::fence_path(&data), b"").unwrap();
    std::os::unix::fs::symlink("data.vista", dir.join("link.vista")).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_vista"))
        .current_dir(dir)
        .arg("--cache-dir")
        .arg(dir)
        .args(["remove", "link.vista"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(!data.exists(), "the segment file was not removed");
    let fence_left = vista::fence_path(&data).exists();

    // A new segment at the same path.
    let reopened = Segment::open(&data, &opts(dir)).map(Segment::close);
    assert!(
        !fence_left && matches!(reopened, Ok(Ok(()))),
        "`vista remove link.vista` left {} behind: a new segment at that path gives {reopened:?}\n{}",
        vista::fence_path(&data).display(),
        String::from_utf8_lossy(&out.stdout)
    );
}
