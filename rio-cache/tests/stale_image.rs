//! A memory image is used only if the disk image's latest checkpoint is one it wrote
//! (or the one it was loaded from): an image left behind by the same file under another
//! name, another cache directory, or before a backup was restored must not shadow the
//! disk's newer (or different) checkpoint.

use std::path::Path;

use rio_cache::{ColdReason, RioCache, RioOptions, StartKind, Writeback};

fn opts(cache_dir: &Path) -> RioOptions {
    RioOptions::new()
        .size(8192)
        .cache_dir(cache_dir)
        .writeback(Writeback::Manual)
}

fn write(path: &Path, o: &RioOptions, value: &[u8]) -> StartKind {
    let mut c = RioCache::open(path, o).unwrap();
    let start = c.start_kind();
    c.window(0, 4).unwrap().copy_from_slice(value);
    c.close().unwrap(); // checkpoints
    start
}

fn read(path: &Path, o: &RioOptions) -> (StartKind, Vec<u8>) {
    let c = RioCache::open(path, o).unwrap();
    (c.start_kind(), c.read(0, 4).unwrap().to_vec())
}

#[test]
fn image_of_the_same_file_under_its_old_name_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let (a, b) = (dir.path().join("a.rio"), dir.path().join("b.rio"));
    write(&a, &o, b"one!");
    std::fs::rename(&a, &b).unwrap();
    assert_eq!(write(&b, &o, b"two!"), StartKind::Cold(ColdReason::NoImage));
    std::fs::rename(&b, &a).unwrap();
    // a's image still holds "one!" and matches the file's inode, size and boot.
    assert_eq!(
        read(&a, &o),
        (StartKind::Cold(ColdReason::Stale), b"two!".to_vec())
    );
}

#[test]
fn image_in_another_cache_dir_makes_this_one_stale() {
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2) = (dir.path().join("shm1"), dir.path().join("shm2"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    let path = dir.path().join("d.rio");
    write(&path, &opts(&d1), b"one!");
    write(&path, &opts(&d2), b"two!");
    assert_eq!(
        read(&path, &opts(&d1)),
        (StartKind::Cold(ColdReason::Stale), b"two!".to_vec())
    );
}

#[test]
fn restored_backup_is_not_shadowed_by_the_newer_image() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let path = dir.path().join("d.rio");
    write(&path, &o, b"one!");
    let backup = std::fs::read(&path).unwrap();
    write(&path, &o, b"two!");
    // Restore in place: same inode, so only the checkpoint number tells them apart.
    std::fs::write(&path, &backup).unwrap();
    assert_eq!(
        read(&path, &o),
        (StartKind::Cold(ColdReason::Stale), b"one!".to_vec())
    );
}

#[test]
fn a_cold_started_image_without_a_checkpoint_yet_is_still_warm_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let path = dir.path().join("d.rio");
    write(&path, &o, b"one!");
    let image = rio_cache::image_path(&path, dir.path()).unwrap();
    std::fs::remove_file(&image).unwrap(); // power loss
    let mut c = RioCache::open(&path, &o.clone().checkpoint_on_close(false)).unwrap();
    assert_eq!(c.start_kind(), StartKind::Cold(ColdReason::NoImage));
    c.window(0, 4).unwrap().copy_from_slice(b"new!");
    drop(c); // a process crash: no checkpoint
    assert_eq!(read(&path, &o), (StartKind::Warm, b"new!".to_vec()));
}

#[test]
fn a_crash_between_the_disk_fsync_and_the_image_recording_it_is_still_warm() {
    // Covered end to end by power_loss.rs (a kill at rio.checkpoint.disk_synced and
    // journal_cleared reopens warm); here the same state is built by hand: the disk one
    // checkpoint ahead of what the image recorded.
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let path = dir.path().join("d.rio");
    write(&path, &o, b"one!");
    write(&path, &o, b"one!");
    let image = rio_cache::image_path(&path, dir.path()).unwrap();
    let mut b = std::fs::read(&image).unwrap();
    // The synced word: the checkpoint number in the low 48 bits, and on top the low 16
    // bits of the CRC-32 of its 6 bytes.
    let word = |seq: u64| {
        let check = crc32fast::hash(&seq.to_le_bytes()[..6]) & 0xffff;
        (seq | u64::from(check) << 48).to_le_bytes()
    };
    let synced = u64::from_le_bytes(b[128..136].try_into().unwrap()) & ((1 << 48) - 1);
    assert!(synced >= 2);
    assert_eq!(b[128..136], word(synced));
    b[128..136].copy_from_slice(&word(synced - 1));
    std::fs::write(&image, &b).unwrap();
    assert_eq!(read(&path, &o), (StartKind::Warm, b"one!".to_vec()));
    // Two behind is not a crash window: stale.
    let mut b = std::fs::read(&image).unwrap();
    b[128..136].copy_from_slice(&word(synced - 2));
    std::fs::write(&image, &b).unwrap();
    assert_eq!(read(&path, &o).0, StartKind::Cold(ColdReason::Stale));
}

#[test]
fn image_loaded_from_a_writer_that_has_checkpointed_since_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let (d1, d2) = (dir.path().join("shm1"), dir.path().join("shm2"));
    std::fs::create_dir_all(&d1).unwrap();
    std::fs::create_dir_all(&d2).unwrap();
    let path = dir.path().join("d.rio");
    write(&path, &opts(&d1), b"one!");
    // An image loaded from d1's checkpoint, written but never checkpointed...
    let mut c = RioCache::open(&path, &opts(&d2).checkpoint_on_close(false)).unwrap();
    assert_eq!(c.start_kind(), StartKind::Cold(ColdReason::NoImage));
    c.window(0, 4).unwrap().copy_from_slice(b"two!");
    drop(c);
    // ...while d1's image, the writer it was loaded from, checkpoints again.
    assert_eq!(write(&path, &opts(&d1), b"thr!"), StartKind::Warm);
    // d2's image was loaded from that writer, but not from its latest checkpoint.
    assert_eq!(
        read(&path, &opts(&d2)),
        (StartKind::Cold(ColdReason::Stale), b"thr!".to_vec())
    );
}
