//! `vista recover` on a member of a group left fenced by a crash, with an unfinished
//! transaction across segments in its lane: the open rolls the lane back in the memory
//! image, then `Segment::close` fails with GroupCheckpointRequired (aea4eac), and the
//! command exits 3, which the tool documents as "nothing changed" (and cli.rs: "refused
//! `recover`/`checkpoint` runs must [leave every file byte for byte as it was]"); the
//! memory image was rewritten.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vista::{Options, Segment, Writeback};

const CHILD_ENV: &str = "VISTA_RECOVER_FENCED_CHILD";

fn options(dir: &Path) -> Options {
    Options::new()
        .size(64 << 10)
        .lanes(2)
        .undo_log_size(4000)
        .cache_dir(dir)
        .writeback(Writeback::Manual)
}

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

/// The child: a committed transaction across both members (they are fenced), then one
/// left unfinished by SIGABRT.
#[test]
fn group_child() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let o = options(&dir);
    let members = ["seg", "seg2"]
        .iter()
        .map(|n| Segment::open(dir.join(n), &o).unwrap())
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
fn a_refused_recover_of_a_fenced_member_changes_nothing() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "group_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(6), "{status:?}");
    assert!(vista::fence_path(&dir.join("seg")).exists());

    let before = snapshot(dir);
    let out = Command::new(env!("CARGO_BIN_EXE_vista"))
        .current_dir(dir)
        .arg("--cache-dir")
        .arg(dir)
        .args(["recover", "seg"])
        .output()
        .unwrap();
    let changed: Vec<_> = snapshot(dir)
        .into_iter()
        .filter(|(p, b)| before.get(p) != Some(b))
        .map(|(p, _)| p)
        .collect();
    assert!(
        out.status.success() || changed.is_empty(),
        "`vista recover seg` exited {:?} ({}) but changed {changed:?}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("fenced"),
        "the report says the member stays fenced: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    // `vista checkpoint` cannot write a fenced member back: refused, nothing changed.
    let before = snapshot(dir);
    let out = Command::new(env!("CARGO_BIN_EXE_vista"))
        .current_dir(dir)
        .arg("--cache-dir")
        .arg(dir)
        .args(["checkpoint", "seg"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        snapshot(dir) == before,
        "a refused checkpoint changed files"
    );
}
