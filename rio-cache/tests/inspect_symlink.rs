//! `inspect::inspect` names the journal from the path as given (`journal_path(path)`),
//! while `RioCache::open` (and `inspect`'s own image path) resolve the symlink to the
//! file: inspected through a symlink, a cache whose journal holds a committed grow
//! (a crash after the grow's commit point) is reported with no journal, its grown size
//! unknown and the file "extended", although the next open through that same symlink
//! installs the grow. `vista info`/`check`/`dump` given the symlink report the same.

mod common;

use std::path::Path;

use common::{assert_signaled, child_dispatch, opts, pattern, run_child, TestDir, PAGE};
use rio_cache::{Protection, RioCache};

const SIZE: u64 = 8 * PAGE;
const GROWN: u64 = 16 * PAGE;

fn child_grow(dir: &Path, _arg: &str) {
    let o = opts(dir, SIZE, Protection::Auto).checkpoint_on_close(false);
    let mut cache = RioCache::open(dir.join("data"), &o).unwrap();
    cache
        .window(0, SIZE)
        .unwrap()
        .copy_from_slice(&pattern(1, SIZE as usize));
    cache.checkpoint().unwrap();
    cache.grow(GROWN).unwrap();
    common::report("survived");
}

#[test]
fn child_process_entry() {
    child_dispatch(&[("grow", child_grow)]);
}

#[test]
fn inspect_through_a_symlink_sees_the_files_the_open_uses() {
    if !crash_point::enabled() {
        return;
    }
    let t = TestDir::new();
    let dir = t.path();
    std::fs::create_dir_all(dir.join("shm")).unwrap();
    let status = run_child("grow", dir, "", &[("CRASH_POINT", "rio.grow.committed:1")]);
    assert_signaled(status, libc::SIGKILL, "rio.grow.committed");
    std::os::unix::fs::symlink("data", dir.join("link")).unwrap();

    let shm = dir.join("shm");
    let direct = rio_cache::inspect::inspect(&dir.join("data"), &shm).unwrap();
    let linked = rio_cache::inspect::inspect(&dir.join("link"), &shm).unwrap();
    assert_eq!(
        (
            &linked.journal_path,
            format!("{:?}", linked.journal),
            linked.data_len
        ),
        (
            &direct.journal_path,
            format!("{:?}", direct.journal),
            direct.data_len
        ),
        "inspected through the symlink"
    );
    // What the open through the symlink does: it installs the committed grow.
    let o = opts(dir, GROWN, Protection::Auto).checkpoint_on_close(false);
    assert_eq!(RioCache::open(dir.join("link"), &o).unwrap().len(), GROWN);
}
