//! `Segment::open` keeps the path `rio_cache::resolve_path` returns, which follows one
//! link of a dangling symlink only, while `RioCache::open` resolves that path again
//! (one more link). A new segment opened through a chain of two symlinks to a file
//! not yet made is created by the cache as the final target, but when the open fails
//! after the cache's open (vista's acceptance of the new segment), `Existed::put_back`
//! removes the second *symlink* (its path) instead of the file, and looks for the
//! memory image under the symlink's name: the segment file stays initialised at the
//! refused size, its memory image stays in the cache directory, and the user's
//! symlink is deleted.

mod common;

use std::path::Path;

use common::Place;
use rio_cache::Faults;
use vista::Segment;

/// Every entry under `dir` (symlinks not followed): (path, is a symlink).
fn entries(dir: &Path) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p.clone());
            }
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            out.push((name, m.file_type().is_symlink()));
        }
    }
    out.sort();
    out
}

#[test]
fn a_refused_create_through_a_symlink_chain_leaves_nothing_and_keeps_the_links() {
    let counting = Faults::counting();
    let plan = |p: &Place| {
        // seg.vista -> link2 -> data (absent).
        std::os::unix::fs::symlink("link2", &p.path).unwrap();
        std::os::unix::fs::symlink("data", p.dir.path().join("link2")).unwrap();
    };
    {
        let p = Place::new();
        plan(&p);
        Segment::open(&p.path, &p.opts(1 << 16).faults(counting.clone()))
            .unwrap()
            .close()
            .unwrap();
    }
    let mut left = Vec::new();
    for n in 0..counting.count() {
        let p = Place::new();
        let opts = p.opts(1 << 16);
        plan(&p);
        let before = entries(p.dir.path());
        let faults = Faults::counting();
        faults.fail_at(n, libc::ENOSPC);
        let Err(e) = Segment::open(&p.path, &opts.clone().faults(faults)) else {
            continue;
        };
        let after = entries(p.dir.path());
        if after != before {
            left.push(format!(
                "operation {n}: {e}: before {before:?}, after {after:?}"
            ));
        }
    }
    assert!(left.is_empty(), "{left:#?}");
}
