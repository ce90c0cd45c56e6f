//! Until 678ad53 the memory image of a disk file opened through a symlink `dir/link`
//! was named after `dir/link` (only the directory resolved), with `dir/link` as its
//! origin and the target's device and inode in its header. Now every open resolves the
//! symlink and looks only for the image named after the target: an image the previous
//! version left after a process crash (the only copy of the commits since the last
//! checkpoint) is ignored, the open starts cold from the disk image and the commits are
//! silently lost; the old image is not an orphan either (its origin, the symlink,
//! exists), so `images --remove-orphans` never frees it.
//!
//! The previous version's state is made here with the current code: a cache opened by
//! the plain name `dir/link` (a regular file then) gets exactly the old image name,
//! origin and inode; the file is then renamed to `data` (same inode) and `dir/link`
//! made a symlink to it, as the user had it.

use rio_cache::{Protection, RioCache, RioOptions, StartKind, Writeback};

#[test]
fn an_image_left_under_the_previous_naming_is_not_silently_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("shm")).unwrap();
    let opts = RioOptions::new()
        .size(1 << 16)
        .protection(Protection::None)
        .writeback(Writeback::Manual)
        .cache_dir(root.join("shm"));
    let link = root.join("link");
    let opts = opts.checkpoint_on_close(false);
    let mut old = RioCache::open(&link, &opts).unwrap();
    old.window(0, 8).unwrap().copy_from_slice(b"ckpt 1  ");
    old.checkpoint().unwrap();
    old.window(0, 8).unwrap().copy_from_slice(b"commit 2");
    let old_image = old.image_path().to_owned();
    // A process crash: the commit is in the memory image only.
    drop(old);
    std::fs::rename(&link, root.join("data")).unwrap();
    std::os::unix::fs::symlink("data", &link).unwrap();
    assert!(old_image.exists());

    let new = RioCache::open(&link, &opts).unwrap();
    assert_eq!(
        (new.start_kind(), new.read(0, 8).unwrap()),
        (StartKind::Warm, &b"commit 2"[..]),
        "the commit in the image {} (left by the previous naming) was dropped",
        old_image.display()
    );
}
