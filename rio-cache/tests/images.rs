//! The memory images of a cache directory: the origin record names each image's disk
//! file, `images` lists them, `remove_orphan` removes only those whose file is gone and
//! that nobody has open, and `remove_closed` refuses an open cache.

mod common;

use std::os::unix::fs::FileExt;

use common::{disk_path, opts, TestDir, PAGE};
use rio_cache::{Error, Protection, RioCache, RioOptions};

const SIZE: u64 = 4 * PAGE;

fn o(dir: &std::path::Path) -> RioOptions {
    opts(dir, SIZE, Protection::Auto)
}

#[test]
fn images_name_their_disk_file_and_only_orphans_go() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let shm = dir.join("shm");
    std::fs::create_dir_all(&shm).unwrap();
    let kept = disk_path(dir);
    let gone = dir.join("gone.rio");
    let open = dir.join("open.rio");
    RioCache::open(&kept, &o(dir)).unwrap().close().unwrap();
    RioCache::open(&gone, &o(dir)).unwrap().close().unwrap();
    let held = RioCache::open(&open, &o(dir)).unwrap();
    std::fs::remove_file(&gone).unwrap();
    std::fs::remove_file(&open).unwrap();
    // An image from before the origin record: header intact, no record.
    let legacy = dir.join("legacy.rio");
    RioCache::open(&legacy, &o(dir)).unwrap().close().unwrap();
    let legacy_image = rio_cache::image_path(&legacy, &shm).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&legacy_image)
        .unwrap()
        .write_all_at(&[0u8; 8], 136)
        .unwrap();
    std::fs::remove_file(&legacy).unwrap();

    let list = rio_cache::images(&shm).unwrap();
    assert_eq!(list.len(), 4, "{list:?}");
    let find = |disk: &std::path::Path| {
        let image = rio_cache::image_path(disk, &shm).unwrap();
        list.iter().find(|i| i.path == image).unwrap().clone()
    };
    let abs = |p: &std::path::Path| {
        p.parent()
            .unwrap()
            .canonicalize()
            .unwrap()
            .join(p.file_name().unwrap())
    };
    let kept_i = find(&kept);
    assert_eq!(kept_i.origin.as_deref(), Some(abs(&kept).as_path()));
    assert_eq!(kept_i.origin_exists, Some(true));
    assert!(!kept_i.is_orphan());
    let gone_i = find(&gone);
    assert_eq!(gone_i.origin.as_deref(), Some(abs(&gone).as_path()));
    assert_eq!(gone_i.origin_exists, Some(false));
    assert!(gone_i.is_orphan());
    assert!(gone_i.len > SIZE);
    let open_i = find(&open);
    assert_eq!(open_i.origin_exists, Some(false));
    assert_eq!(open_i.locked_by, Some(std::process::id()));
    assert!(!open_i.is_orphan(), "an open image is never an orphan");
    let legacy_i = find(&legacy);
    assert_eq!(
        (legacy_i.origin.clone(), legacy_i.origin_exists),
        (None, None)
    );
    assert!(
        !legacy_i.is_orphan(),
        "an image of unknown origin is never an orphan"
    );

    // Removal re-checks everything under the image's lock.
    assert!(rio_cache::remove_orphan(&gone_i).unwrap());
    assert!(!gone_i.path.exists());
    assert!(!rio_cache::remove_orphan(&kept_i).unwrap());
    assert!(!rio_cache::remove_orphan(&legacy_i).unwrap());
    match rio_cache::remove_orphan(&open_i) {
        Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("expected Locked, got {other:?}"),
    }
    // Even a stale listing that calls it an orphan: the file came back, so it stays.
    RioCache::open(&gone, &o(dir)).unwrap().close().unwrap();
    assert!(!rio_cache::remove_orphan(&gone_i).unwrap());
    assert!(gone_i.path.exists());
    assert!(kept_i.path.exists() && open_i.path.exists() && legacy_i.path.exists());
    drop(held);
}

#[test]
fn a_grow_keeps_the_origin_record() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let shm = dir.join("shm");
    let mut c = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    c.grow(4 * SIZE).unwrap();
    c.close().unwrap();
    let list = rio_cache::images(&shm).unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].origin_exists, Some(true), "{list:?}");
}

#[test]
fn remove_closed_refuses_an_open_cache() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let shm = dir.join("shm");
    let c = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    let image = c.image_path().to_owned();
    match rio_cache::remove_closed(disk_path(dir), &shm) {
        Err(e @ Error::Locked { .. }) => {
            assert!(
                e.to_string().contains(&std::process::id().to_string()),
                "{e}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    assert!(disk_path(dir).exists() && image.exists());
    c.close().unwrap();
    rio_cache::remove_closed(disk_path(dir), &shm).unwrap();
    assert!(!disk_path(dir).exists() && !image.exists());
    assert!(!rio_cache::journal_path(&disk_path(dir)).exists());
    // Nothing there: not an error.
    rio_cache::remove_closed(disk_path(dir), &shm).unwrap();
}
