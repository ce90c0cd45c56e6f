//! `naming::absolute` follows one link only of a dangling symlink (`read_link` once),
//! while `RioCache::open` names the journal from that path and the memory image from
//! the path resolved again. A disk file created through a chain of two symlinks
//! (`link1 -> link2 -> data`, `data` absent) gets the journal `link2.journal`; once the
//! file exists every later open (through the chain or not) resolves to `data` and uses
//! `data.journal`. A grow killed after its commit point (its batch committed in
//! `link2.journal`) is then not finished by the next open: the committed grow is lost,
//! or the open is refused, instead of being installed from the journal.

mod common;

use std::path::Path;

use common::{assert_signaled, child_dispatch, opts, pattern, run_child, TestDir, PAGE};
use rio_cache::{existing_size, Protection, RioCache};

const SIZE: u64 = 8 * PAGE;
const GROWN: u64 = 16 * PAGE;

fn o(dir: &Path, size: u64) -> rio_cache::RioOptions {
    opts(dir, size, Protection::Auto).checkpoint_on_close(false)
}

/// Child: creates the file through the chain, checkpoints, grows (`CRASH_POINT` kills
/// it after the grow's commit point).
fn child_create_and_grow(dir: &Path, _arg: &str) {
    let mut cache = RioCache::open(dir.join("link1"), &o(dir, SIZE)).unwrap();
    cache
        .window(0, SIZE)
        .unwrap()
        .copy_from_slice(&pattern(1, SIZE as usize));
    cache.checkpoint().unwrap();
    cache.grow_with(GROWN, &[(GROWN - 4, b"end!")]).unwrap();
    common::report("survived");
}

#[test]
fn child_process_entry() {
    child_dispatch(&[("grow", child_create_and_grow)]);
}

#[test]
fn a_grow_committed_on_a_file_created_through_a_symlink_chain_is_finished() {
    if !crash_point::enabled() {
        return;
    }
    let t = TestDir::new();
    let dir = t.path();
    std::fs::create_dir_all(dir.join("shm")).unwrap();
    // link1 -> link2 -> data (absent).
    std::os::unix::fs::symlink("link2", dir.join("link1")).unwrap();
    std::os::unix::fs::symlink("data", dir.join("link2")).unwrap();
    let status = run_child("grow", dir, "", &[("CRASH_POINT", "rio.grow.committed:1")]);
    assert_signaled(status, libc::SIGKILL, "rio.grow.committed");
    let leftover: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".journal"))
        .collect();
    // The committed grow is installed by the next open, as for a file opened by its
    // own name (tests/grow.rs).
    let size = existing_size(dir.join("link1")).unwrap().unwrap();
    let opened = RioCache::open(dir.join("link1"), &o(dir, size));
    let cache = opened.unwrap_or_else(|e| {
        panic!("the reopen is refused: {e} (journals in the directory: {leftover:?})")
    });
    assert_eq!(
        cache.len(),
        GROWN,
        "a committed grow was lost (journals in the directory: {leftover:?})"
    );
    assert_eq!(cache.read(GROWN - 4, 4).unwrap(), b"end!");
}
