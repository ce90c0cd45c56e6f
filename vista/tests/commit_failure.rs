//! A commit whose store fails must not leave a transaction that is neither committed nor
//! rolled back.
//!
//! The fault is real: under `mprotect`, vista writes its undo log and the commit store
//! with `pwrite` into the memory image, and a `pwrite` at an offset past the process's
//! file-size limit (`RLIMIT_FSIZE`) fails with `EFBIG`. The child lowers its own limit
//! (with `prlimit`, so the test needs no unsafe code) after the transaction's writes and
//! before its commit; it runs with `SIGXFSZ` ignored (set by `sh` before `exec`, and
//! inherited), so the failure is an error return, not a signal. Mapped stores (the
//! roll-back's copies) are not subject to the limit.

mod common;

use std::path::Path;
use std::process::Command;

use common::Place;
use vista::{Error, Protection, Segment};

const SIZE: u64 = 16 << 10;
const CHILD_ENV: &str = "VISTA_COMMIT_FAILURE_DIR";

/// A small segment under `mprotect` (so the undo log and the commit store are
/// `pwrite`s), with its memory image in `cache_dir`.
fn opts(cache_dir: &Path) -> vista::Options {
    std::fs::create_dir_all(cache_dir).unwrap();
    vista::Options::new()
        .size(SIZE)
        .undo_log_size(16 << 10)
        .protection(Protection::Mprotect)
        .writeback(vista::Writeback::Manual)
        .cache_dir(cache_dir)
}

/// Sets this process's soft file-size limit (`None`: unlimited).
fn set_fsize_limit(bytes: Option<u64>) {
    let limit = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
    let status = Command::new("prlimit")
        .arg("--pid")
        .arg(std::process::id().to_string())
        .arg(format!("--fsize={limit}:"))
        .status()
        .expect("run prlimit");
    assert!(status.success(), "prlimit failed: {status:?}");
}

/// The child: a committed value, then a transaction whose commit store fails.
#[test]
fn child_process_entry() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let path = dir.join("seg.vista");
    let o = opts(&dir.join("shm"));
    let seg = Segment::open(&path, &o).unwrap();
    seg.transaction(|tx| tx.write(0, b"committed")).unwrap();
    seg.checkpoint().unwrap();

    let mut tx = seg.begin().unwrap();
    tx.write(0, b"doomed!!!").unwrap();
    // Every write of the memory image from here on fails (its data starts past 4 KiB).
    set_fsize_limit(Some(4096));
    let err = tx
        .commit()
        .expect_err("the commit store should have failed");
    set_fsize_limit(None);
    assert!(matches!(err, Error::Io { .. }), "{err:?}");

    // Rolled back (the segment goes on) or poisoned (it refuses): never half of each.
    match seg.begin() {
        Ok(mut tx) => {
            assert_eq!(
                tx.read(0, 9).unwrap(),
                b"committed",
                "a failed commit was not rolled back"
            );
            tx.write(100, b"later").unwrap();
            tx.commit().unwrap();
            println!("rolled back");
        }
        Err(Error::Poisoned(why)) => println!("poisoned: {why}"),
        Err(e) => panic!("{e:?}"),
    }
    drop(seg);
    std::process::exit(0);
}

#[test]
fn failed_commit_store_rolls_back_or_poisons() {
    if !Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        eprintln!("note: no prlimit (util-linux) on this machine; commit-failure test skipped");
        return;
    }
    let p = Place::new();
    let dir = p.dir.path();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"trap "" XFSZ; exec "$0" "$@""#)
        .arg(exe)
        .args([
            "--exact",
            "child_process_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Whatever the child did next, the failed transaction must not have become
    // permanent: warm (the memory image) and cold (the disk image).
    let path = dir.join("seg.vista");
    let o = opts(&dir.join("shm"));
    let seg = Segment::open(&path, &o).unwrap();
    assert_eq!(
        seg.read(0, 9).unwrap(),
        b"committed",
        "warm: the failed commit became permanent ({stdout})"
    );
    seg.close().unwrap();
    std::fs::remove_file(rio_cache::image_path(&path, &dir.join("shm")).unwrap()).unwrap();
    let seg = Segment::open(&path, &o).unwrap();
    assert_eq!(
        seg.read(0, 9).unwrap(),
        b"committed",
        "cold: the failed commit became permanent"
    );
}
