//! Bad input: damaged, foreign or mismatched files, a bad cache directory, misuse of the
//! API. Each is refused with the documented error and leaves the files byte-for-byte
//! unchanged, or (for a memory image that cannot be trusted) falls back to the documented
//! safe cold start.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{
    assert_same_files, assert_same_tree, child_dispatch, disk_path, opts, pattern, run_child,
    snapshot, tree, TestDir, PAGE,
};
use rio_cache::{ColdReason, Error, Protection, RioCache, RioOptions, StartKind};

const SIZE: u64 = 8 * PAGE;
const DATA_AT: u64 = PAGE; // the disk image's data follows its header page
/// Where slot 1's header is (slot 0's is at byte 0).
const SLOT1_AT: u64 = 512;

fn o(dir: &Path) -> RioOptions {
    opts(dir, SIZE, Protection::Auto)
}

/// A closed cache whose disk image holds `pattern(1)` (checkpointed) and whose memory
/// image holds `pattern(2)` (not checkpointed). Returns the image path.
fn setup(dir: &Path) -> PathBuf {
    // No final checkpoint: the two images must differ.
    let mut cache = RioCache::open(disk_path(dir), &o(dir).checkpoint_on_close(false)).unwrap();
    cache
        .window(0, SIZE)
        .unwrap()
        .copy_from_slice(&pattern(1, SIZE as usize));
    cache.checkpoint().unwrap();
    cache
        .window(0, SIZE)
        .unwrap()
        .copy_from_slice(&pattern(2, SIZE as usize));
    let image = cache.image_path().to_owned();
    drop(cache);
    image
}

fn files(dir: &Path, image: &Path) -> Vec<PathBuf> {
    vec![
        disk_path(dir),
        rio_cache::journal_path(&disk_path(dir)),
        image.to_owned(),
    ]
}

/// Opens with `opts`, expects an error matched by `is_expected`, and checks that no file
/// changed.
fn refused(dir: &Path, image: &Path, opts: &RioOptions, is_expected: impl Fn(&Error) -> bool) {
    let paths = files(dir, image);
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let before = snapshot(&refs);
    let listing = tree(dir);
    match RioCache::open(disk_path(dir), opts) {
        Ok(c) => panic!("open succeeded ({:?}); expected an error", c.start_kind()),
        Err(e) => assert!(is_expected(&e), "unexpected error: {e:?}"),
    }
    assert_same_files(&before, &snapshot(&refs), "a refused open");
    assert_same_tree(&listing, &tree(dir), "a refused open");
}

fn patch(path: &Path, at: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, at).unwrap();
}

fn read_at(path: &Path, at: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut b = vec![0; len];
    f.read_exact_at(&mut b, at).unwrap();
    b
}

/// Rewrites the CRC of the slot header at `at` (bytes 508..512 over 0..508) after a
/// patch.
fn fix_disk_crc(path: &Path, at: u64) {
    let h = read_at(path, at, 508);
    patch(path, at + 508, &crc32fast::hash(&h).to_le_bytes());
}

/// Rewrites the memory image header's CRC (bytes 120..124 over 0..120).
fn fix_image_crc(image: &Path) {
    let h = read_at(image, 0, 120);
    patch(image, 120, &crc32fast::hash(&h).to_le_bytes());
}

#[test]
fn truncated_disk_file_is_corrupt() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(disk_path(dir))
        .unwrap();
    f.set_len(DATA_AT + SIZE / 2).unwrap();
    refused(dir, &image, &o(dir), |e| matches!(e, Error::Corrupt { .. }));
    // Shorter than a header: not a rio-cache file at all.
    f.set_len(10).unwrap();
    refused(dir, &image, &o(dir), |e| {
        matches!(e, Error::NotRioCache { .. })
    });
}

#[test]
fn random_bytes_are_not_a_rio_cache() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    std::fs::write(disk_path(dir), pattern(99, (DATA_AT + SIZE) as usize)).unwrap();
    refused(dir, Path::new("/nonexistent"), &o(dir), |e| {
        matches!(e, Error::NotRioCache { .. })
    });
}

#[test]
fn wrong_magic_is_not_a_rio_cache() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    // Slot 0's magic only: slot 1's header is intact, so this is a damaged disk image.
    patch(&disk_path(dir), 0, b"SQLITE");
    fix_disk_crc(&disk_path(dir), 0);
    refused(
        dir,
        &image,
        &o(dir),
        |e| matches!(e, Error::Corrupt { reason, .. } if reason.contains("slot 1's is intact")),
    );
    // Both: someone else's file.
    patch(&disk_path(dir), SLOT1_AT, b"SQLITE");
    refused(dir, &image, &o(dir), |e| {
        matches!(e, Error::NotRioCache { .. })
    });
}

/// Rewrites the slot header at `at` as version 2 wrote it: 64 bytes, its CRC at 60 over
/// 0..60, no map, the rest of the sector zero.
fn downgrade_header(path: &Path, at: u64) {
    let mut h = read_at(path, at, 512);
    h[8..12].copy_from_slice(&2u32.to_le_bytes());
    h[44..].fill(0);
    let crc = crc32fast::hash(&h[..60]);
    h[60..64].copy_from_slice(&crc.to_le_bytes());
    patch(path, at, &h);
}

/// A disk image of version 2 (slot headers without a map, no intent record) opens; as a
/// cold start cannot tell where its slots differ, the first checkpoint rewrites the
/// whole other slot, and writes a version 3 header.
#[test]
fn version_2_files_open_and_their_next_checkpoint_makes_them_version_3() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    // A second checkpoint, so that both slots hold one (each by a header of its own).
    let cache = RioCache::open(disk_path(dir), &o(dir).checkpoint_on_close(false)).unwrap();
    cache.checkpoint().unwrap();
    drop(cache);
    for at in [0, SLOT1_AT] {
        downgrade_header(&disk_path(dir), at);
    }
    patch(&disk_path(dir), 1024, &[0; 512]);
    std::fs::remove_file(&image).unwrap();
    let info = rio_cache::inspect::inspect(&disk_path(dir), &dir.join("shm")).unwrap();
    assert_eq!(
        (info.disk.version, info.disk.other_slot_may_differ),
        (2, None)
    );

    let o = o(dir).checkpoint_on_close(false);
    let mut cache = RioCache::open(disk_path(dir), &o).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Cold(ColdReason::NoImage));
    assert!(cache.as_slice().unwrap() == pattern(2, SIZE as usize));
    cache.window(0, 3).unwrap().copy_from_slice(b"new");
    cache.checkpoint().unwrap();
    let s = cache.stats();
    // Every page (one changed, the rest copied) and the header; no intent.
    assert_eq!(s.bytes_written, SIZE + 512, "{s:?}");
    drop(cache);
    let info = rio_cache::inspect::inspect(&disk_path(dir), &dir.join("shm")).unwrap();
    assert_eq!(info.disk.version, 3);
    assert_eq!(info.disk.other_slot_may_differ, Some(PAGE));
    std::fs::remove_file(&image).unwrap();
    let cache = RioCache::open(disk_path(dir), &o).unwrap();
    let mut want = pattern(2, SIZE as usize);
    want[..3].copy_from_slice(b"new");
    assert!(cache.as_slice().unwrap() == want);
}

/// A damaged intent record is not an error: the slots may differ anywhere, so the first
/// checkpoint after a cold start rewrites the whole other slot, and it writes a new
/// record, after which the next cold start trusts the maps again.
#[test]
fn a_damaged_intent_record_costs_one_whole_slot_copy_and_is_replaced() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let o = o(dir).checkpoint_on_close(false);
    patch(&disk_path(dir), 1024, b"not an intent record");
    std::fs::remove_file(&image).unwrap();
    let info = |dir: &Path| rio_cache::inspect::inspect(&disk_path(dir), &dir.join("shm")).unwrap();
    assert_eq!(info(dir).disk.other_slot_may_differ, None);
    let mut cache = RioCache::open(disk_path(dir), &o).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Cold(ColdReason::NoImage));
    assert!(cache.as_slice().unwrap() == pattern(1, SIZE as usize));
    cache.window(0, 3).unwrap().copy_from_slice(b"one");
    cache.checkpoint().unwrap();
    let s = cache.stats();
    // Every page, the header, and a new intent record.
    assert_eq!(
        (s.bytes_written, s.intents_written),
        (SIZE + 1024, 1),
        "{s:?}"
    );
    drop(cache);
    assert_eq!(info(dir).disk.other_slot_may_differ, Some(PAGE));
    std::fs::remove_file(&image).unwrap();
    let mut cache = RioCache::open(disk_path(dir), &o).unwrap();
    cache.window(0, 3).unwrap().copy_from_slice(b"two");
    cache.checkpoint().unwrap();
    let s = cache.stats();
    assert_eq!(
        (s.bytes_written, s.intents_written),
        (PAGE + 512, 0),
        "{s:?}"
    );
    drop(cache);
    std::fs::remove_file(&image).unwrap();
    let cache = RioCache::open(disk_path(dir), &o).unwrap();
    let mut want = pattern(1, SIZE as usize);
    want[..3].copy_from_slice(b"two");
    assert!(cache.as_slice().unwrap() == want);
}

/// A slot header that passes its checksum but whose map's chunks are too small to reach
/// the cache's last page (a crafted file): the open neither hangs nor trusts the map;
/// the slots may differ anywhere.
#[test]
fn a_crafted_map_that_stops_short_of_the_cache_marks_every_page() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    // 4096 pages: the maps' chunks are 2 pages.
    let size = 4096 * PAGE;
    let o = opts(dir, size, Protection::None).checkpoint_on_close(false);
    let image = {
        let mut cache = RioCache::open(disk_path(dir), &o).unwrap();
        cache.window(0, 3).unwrap().copy_from_slice(b"one");
        cache.checkpoint().unwrap();
        cache.image_path().to_owned()
    };
    // Checkpoint 1 is in slot 1: give its map chunks of one page.
    patch(&disk_path(dir), SLOT1_AT + 44, &0u32.to_le_bytes());
    fix_disk_crc(&disk_path(dir), SLOT1_AT);
    std::fs::remove_file(&image).unwrap();
    // In a thread: a map taken at its word would have `inspect` and the open loop.
    let (tx, rx) = std::sync::mpsc::channel();
    let (path, shm, o2) = (disk_path(dir), dir.join("shm"), o.clone());
    std::thread::spawn(move || {
        let info = rio_cache::inspect::inspect(&path, &shm).unwrap();
        let r = RioCache::open(&path, &o2).map(|mut c| {
            c.window(PAGE, 3).unwrap().copy_from_slice(b"two");
            c.checkpoint().map(|()| c.stats().bytes_written)
        });
        let _ = tx.send((info.disk.other_slot_may_differ, r));
    });
    let (may_differ, r) = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("inspect or the open hangs");
    assert_eq!(may_differ, None);
    let written = r.unwrap().unwrap();
    // Every page copied (or written) and the header; no intent record (with no map, a
    // cold start marks every page anyway).
    assert_eq!(written, size + 512);
}

#[test]
fn newer_version_is_incompatible() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    // In either slot's header: the open refuses before it picks one.
    for at in [0, SLOT1_AT] {
        patch(&disk_path(dir), at + 8, &4u32.to_le_bytes());
        fix_disk_crc(&disk_path(dir), at);
        refused(dir, &image, &o(dir), |e| {
            matches!(
                e,
                Error::IncompatibleVersion {
                    found: 4,
                    supported: 3,
                    ..
                }
            )
        });
        patch(&disk_path(dir), at + 8, &3u32.to_le_bytes());
        fix_disk_crc(&disk_path(dir), at);
    }
}

#[test]
fn header_checksum_mismatch_is_corrupt() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    patch(&disk_path(dir), 24, &[7]); // the checkpoint sequence number
    refused(dir, &image, &o(dir), |e| matches!(e, Error::Corrupt { .. }));
}

#[test]
fn size_other_than_requested_is_a_mismatch() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let bigger = o(dir).size(2 * SIZE);
    refused(dir, &image, &bigger, |e| {
        matches!(e, Error::SizeMismatch { found, requested, .. }
            if *found == SIZE && *requested == 2 * SIZE)
    });
}

/// A journal in the documented format: header, index, pages, then (if `commit`) the
/// commit record.
fn journal(seq: u64, pages: &[(u64, Vec<u8>)], commit: bool) -> Vec<u8> {
    let n = pages.len() as u64;
    let mut j = vec![0u8; 64];
    j[0..8].copy_from_slice(b"RIOCJRNL");
    j[8..12].copy_from_slice(&2u32.to_le_bytes());
    j[12..16].copy_from_slice(&4096u32.to_le_bytes());
    j[16..24].copy_from_slice(&SIZE.to_le_bytes());
    j[24..32].copy_from_slice(&seq.to_le_bytes());
    j[32..40].copy_from_slice(&n.to_le_bytes());
    let crc = crc32fast::hash(&j[..60]);
    j[60..64].copy_from_slice(&crc.to_le_bytes());
    for (p, _) in pages {
        j.extend(p.to_le_bytes());
    }
    for (_, data) in pages {
        assert_eq!(data.len(), 4096);
        j.extend(data);
    }
    if commit {
        let mut c = vec![0u8; 64];
        c[0..8].copy_from_slice(b"RIOCCMIT");
        c[8..16].copy_from_slice(&seq.to_le_bytes());
        c[16..24].copy_from_slice(&n.to_le_bytes());
        c[24..28].copy_from_slice(&crc32fast::hash(&j).to_le_bytes());
        let crc = crc32fast::hash(&c[..60]);
        c[60..64].copy_from_slice(&crc.to_le_bytes());
        j.extend(c);
    }
    j
}

/// Checkpoint 2 as a journal: pages 2 and 5 of `pattern(3)`.
fn journal_pages() -> Vec<(u64, Vec<u8>)> {
    let new = pattern(3, SIZE as usize);
    [2u64, 5]
        .iter()
        .map(|&p| {
            (
                p,
                new[(p * PAGE) as usize..((p + 1) * PAGE) as usize].to_vec(),
            )
        })
        .collect()
}

fn expected_after_journal() -> Vec<u8> {
    let mut v = pattern(1, SIZE as usize);
    for (p, data) in journal_pages() {
        v[(p * PAGE) as usize..((p + 1) * PAGE) as usize].copy_from_slice(&data);
    }
    v
}

/// A cleared journal is empty or has a zeroed header (the checkpoint zeroes it in place).
fn journal_is_clear(jp: &std::path::Path) -> bool {
    let b = std::fs::read(jp).unwrap();
    b.len() < 64 || b[..64].iter().all(|&x| x == 0)
}

#[test]
fn committed_journal_is_installed() {
    let _serial = common::serial();
    // The positive case: proves the hand-made journal below is a valid one.
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    std::fs::remove_file(&image).unwrap();
    let jp = rio_cache::journal_path(&disk_path(dir));
    std::fs::write(&jp, journal(2, &journal_pages(), true)).unwrap();
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.stats().disk_seq, 2);
    assert!(cache.as_slice().unwrap() == expected_after_journal());
    assert!(journal_is_clear(&jp), "journal not cleared");
}

#[test]
fn damaged_committed_journal_is_corrupt() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let jp = rio_cache::journal_path(&disk_path(dir));
    let mut j = journal(2, &journal_pages(), true);
    j[64 + 16 + 4096 + 77] ^= 0x10; // a bit of the second page
    std::fs::write(&jp, j).unwrap();
    refused(
        dir,
        &image,
        &o(dir),
        |e| matches!(e, Error::Corrupt { path, .. } if *path == jp),
    );
    // A committed journal for a checkpoint the disk image cannot follow is corrupt too.
    std::fs::write(&jp, journal(7, &journal_pages(), true)).unwrap();
    refused(dir, &image, &o(dir), |e| matches!(e, Error::Corrupt { .. }));
}

#[test]
fn torn_journal_is_discarded() {
    let _serial = common::serial();
    for torn in [
        "no commit record",
        "half a commit record",
        "zeroed commit record",
        "half the body",
    ] {
        let t = TestDir::new();
        let dir = t.path();
        let image = setup(dir);
        std::fs::remove_file(&image).unwrap();
        let jp = rio_cache::journal_path(&disk_path(dir));
        let full = journal(2, &journal_pages(), true);
        let bytes = match torn {
            "no commit record" => full[..full.len() - 64].to_vec(),
            "half a commit record" => full[..full.len() - 32].to_vec(),
            // The file grew but the commit record's block never reached the disk.
            "zeroed commit record" => {
                let mut b = full.clone();
                let n = b.len();
                b[n - 64..].fill(0);
                b
            }
            _ => full[..full.len() / 2].to_vec(),
        };
        std::fs::write(&jp, bytes).unwrap();
        let disk_before = std::fs::read(disk_path(dir)).unwrap();
        let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
        assert!(
            cache.as_slice().unwrap() == pattern(1, SIZE as usize),
            "{torn}"
        );
        assert_eq!(cache.stats().disk_seq, 1, "{torn}");
        assert!(journal_is_clear(&jp), "{torn}");
        drop(cache);
        assert!(
            std::fs::read(disk_path(dir)).unwrap() == disk_before,
            "{torn}"
        );
    }
}

/// Opens a cache whose memory image was tampered with: it must start cold for `reason`
/// and hold the disk image's checkpoint, not the image's bytes.
fn falls_back_cold(dir: &Path, reason: ColdReason) {
    let disk_before = std::fs::read(disk_path(dir)).unwrap();
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Cold(reason));
    assert!(
        cache.as_slice().unwrap() == pattern(1, SIZE as usize),
        "{reason:?}"
    );
    drop(cache);
    assert!(std::fs::read(disk_path(dir)).unwrap() == disk_before);
}

#[test]
fn image_of_another_file_is_not_used() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    // Another cache of the same size in the same cache dir; its image replaces ours.
    let other = dir.join("other.rio");
    let mut c = RioCache::open(&other, &o(dir)).unwrap();
    c.window(0, 4).unwrap().copy_from_slice(b"othr");
    let other_image = c.image_path().to_owned();
    drop(c);
    std::fs::copy(other_image, &image).unwrap();
    falls_back_cold(dir, ColdReason::OtherFile);
}

/// Opens with `discard_image`: it must start cold for `reason` and hold the disk
/// image's checkpoint.
fn discarded_cold(dir: &Path, reason: ColdReason) {
    let disk_before = std::fs::read(disk_path(dir)).unwrap();
    let cache = RioCache::open(disk_path(dir), &o(dir).discard_image(true)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Cold(reason));
    assert!(
        cache.as_slice().unwrap() == pattern(1, SIZE as usize),
        "{reason:?}"
    );
    drop(cache);
    assert!(std::fs::read(disk_path(dir)).unwrap() == disk_before);
}

fn is_damaged_image(image: &Path) -> impl Fn(&Error) -> bool + '_ {
    move |e| matches!(e, Error::DamagedImage { image: i, .. } if i == image)
}

fn is_live_image(image: &Path) -> impl Fn(&Error) -> bool + '_ {
    move |e| matches!(e, Error::LiveImage { image: i, .. } if i == image)
}

#[test]
fn image_of_another_size_is_refused_then_discarded() {
    // Our own image (it continues the disk's checkpoint), but of the wrong length: it
    // may hold newer data, so it is refused, not silently replaced.
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let len = std::fs::metadata(&image).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .set_len(len + PAGE)
        .unwrap();
    refused(dir, &image, &o(dir), is_damaged_image(&image));
    discarded_cold(dir, ColdReason::SizeChanged);

    let image = setup(dir);
    patch(&image, 16, &(SIZE / 2).to_le_bytes()); // the header's data length
    fix_image_crc(&image);
    refused(dir, &image, &o(dir), is_damaged_image(&image));
    discarded_cold(dir, ColdReason::SizeChanged);
}

#[test]
fn image_with_damaged_header_is_refused_then_discarded() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    patch(&image, 33, &[0x5a]);
    refused(dir, &image, &o(dir), is_damaged_image(&image));
    discarded_cold(dir, ColdReason::Damaged);
}

#[test]
fn discard_image_drops_a_usable_image() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    setup(dir);
    discarded_cold(dir, ColdReason::Discarded);
    // And the replaced image is used from then on.
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Warm);
    assert!(cache.as_slice().unwrap() == pattern(1, SIZE as usize));
}

#[test]
fn disk_truncated_to_zero_with_a_live_image_is_refused() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    std::fs::OpenOptions::new()
        .write(true)
        .open(disk_path(dir))
        .unwrap()
        .set_len(0)
        .unwrap();
    refused(dir, &image, &o(dir), is_live_image(&image));
    // Removed outright: the same, and the refused open leaves no file behind.
    std::fs::remove_file(disk_path(dir)).unwrap();
    let image_before = std::fs::read(&image).unwrap();
    let e = RioCache::open(disk_path(dir), &o(dir)).unwrap_err();
    assert!(is_live_image(&image)(&e), "{e:?}");
    assert!(std::fs::read(&image).unwrap() == image_before);
    assert!(
        !disk_path(dir).exists(),
        "the refused open created the file"
    );
    // Discarding the image is the explicit way to start again.
    let cache = RioCache::open(disk_path(dir), &o(dir).discard_image(true)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Created);
    assert!(cache.as_slice().unwrap().iter().all(|&b| b == 0));
}

#[test]
fn disk_replaced_by_a_copy_with_a_live_image_is_refused() {
    // A copy of the very checkpoint the image continues, under a new inode (a restore
    // of the latest backup, a tool that rewrites by rename): the image may hold newer
    // data, so it is refused; a copy of an older checkpoint is just stale.
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let copy = dir.join("copy");
    std::fs::copy(disk_path(dir), &copy).unwrap();
    std::fs::rename(&copy, disk_path(dir)).unwrap();
    refused(dir, &image, &o(dir), is_live_image(&image));
    discarded_cold(dir, ColdReason::OtherFile);
}

#[test]
fn recreated_disk_file_cannot_take_an_open_image() {
    // The first cache keeps its disk file's old inode (locked) and maps the image; the
    // disk file is removed and created again, so the second opener locks a new inode.
    // Even asked to discard the image, it must not touch it.
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let mut first = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(first.start_kind(), StartKind::Warm);
    let old_disk = std::fs::read(disk_path(dir)).unwrap();
    std::fs::remove_file(disk_path(dir)).unwrap();
    // Empty, and a copy of the old disk image (valid, so the open gets to the image).
    for recreated in [Vec::new(), old_disk] {
        std::fs::write(disk_path(dir), &recreated).unwrap();
        let image_before = std::fs::read(&image).unwrap();
        for opts in [o(dir), o(dir).discard_image(true)] {
            match RioCache::open(disk_path(dir), &opts) {
                Err(Error::Locked { path, .. }) => assert_eq!(path, image),
                other => panic!("expected Locked on the image, got {other:?}"),
            }
            assert!(
                std::fs::read(&image).unwrap() == image_before,
                "the second opener changed the first's image"
            );
        }
    }
    // The first cache is intact and still works.
    assert!(first.as_slice().unwrap() == pattern(2, SIZE as usize));
    first.window(0, 4).unwrap().copy_from_slice(b"live");
    first.checkpoint().unwrap();
    assert_eq!(first.read(0, 4).unwrap(), b"live");
}

#[test]
fn image_from_another_boot_is_not_used() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    patch(&image, 40, b"00000000-0000-0000-0000-000000000000");
    fix_image_crc(&image);
    falls_back_cold(dir, ColdReason::BootChanged);
}

#[test]
fn incomplete_image_is_not_used() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    patch(&image, 124, &[0, 0, 0, 0]); // the "ready" word
    falls_back_cold(dir, ColdReason::Incomplete);
}

#[test]
fn missing_or_non_directory_cache_dir() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let missing = o(dir).cache_dir(dir.join("nope"));
    let e = RioCache::open(disk_path(dir), &missing).unwrap_err();
    assert!(matches!(e, Error::CacheDir { .. }), "{e:?}");
    assert!(
        !disk_path(dir).exists(),
        "a refused open created the disk file"
    );

    let file = dir.join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let e = RioCache::open(disk_path(dir), &o(dir).cache_dir(&file)).unwrap_err();
    assert!(matches!(e, Error::CacheDir { .. }), "{e:?}");
    assert!(!disk_path(dir).exists());
}

/// A tiny tmpfs, unmounted on drop.
struct TinyTmpfs(PathBuf);

impl TinyTmpfs {
    fn mount(at: &Path) -> Option<TinyTmpfs> {
        std::fs::create_dir(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
            .arg(at)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| TinyTmpfs(at.to_owned()))
    }
}

impl Drop for TinyTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn full_cache_dir() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let Some(tiny) = TinyTmpfs::mount(&dir.join("tiny")) else {
        eprintln!("note: cannot mount a tmpfs here (not root?); CacheFull test skipped");
        return;
    };
    // A cache whose image (256 KiB of data) cannot fit in 64 KiB.
    let big = o(dir).size(64 * PAGE);
    let mut c = RioCache::open(disk_path(dir), &big).unwrap();
    c.window(0, 64 * PAGE).unwrap().fill(0xAB);
    let image = c.image_path().to_owned();
    c.close().unwrap();
    let full = big.cache_dir(&tiny.0);
    refused(
        dir,
        &image,
        &full,
        |e| matches!(e, Error::CacheFull { len, .. } if *len > 64 * 1024),
    );
    assert_eq!(
        std::fs::read_dir(&tiny.0).unwrap().count(),
        0,
        "a partial image was left behind"
    );
    // A new cache too.
    let e = RioCache::open(dir.join("new.rio"), &full).unwrap_err();
    assert!(matches!(e, Error::CacheFull { .. }), "{e:?}");
}

#[test]
fn opened_twice_in_one_process_is_locked() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let first = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    refused(dir, &image, &o(dir), |e| matches!(e, Error::Locked { .. }));
    drop(first);
    RioCache::open(disk_path(dir), &o(dir)).unwrap();
}

/// Child: tries to open the cache; exit code 3 means Locked.
fn child_try_open(dir: &Path, _arg: &str) {
    match RioCache::open(disk_path(dir), &o(dir)) {
        Err(Error::Locked { .. }) => std::process::exit(3),
        Err(e) => panic!("{e:?}"),
        Ok(_) => std::process::exit(0),
    }
}

#[test]
fn child_process_entry() {
    child_dispatch(&[("try_open", child_try_open)]);
}

#[test]
fn opened_from_another_process_is_locked() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let paths = files(dir, &image);
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    let first = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    let before = snapshot(&refs);
    let status = run_child("try_open", dir, "", &[]);
    assert_eq!(status.code(), Some(3), "child: {status:?}");
    assert_same_files(&before, &snapshot(&refs), "a locked-out open");
    drop(first);
    assert_eq!(run_child("try_open", dir, "", &[]).code(), Some(0));
}

#[test]
fn out_of_range_reads_and_windows() {
    let _serial = common::serial();
    let t = TestDir::new();
    let mut cache = RioCache::open(disk_path(t.path()), &o(t.path())).unwrap();
    let oor = |r: Result<(), Error>| {
        assert!(
            matches!(r, Err(Error::OutOfRange { size, .. }) if size == SIZE),
            "{r:?}"
        );
    };
    oor(cache.read(SIZE - 1, 2).map(drop));
    oor(cache.read(SIZE + 1, 0).map(drop));
    oor(cache.read(u64::MAX, 2).map(drop));
    oor(cache.window(SIZE, 1).map(drop));
    oor(cache.window(1, u64::MAX).map(drop));
    let mut u = cache.update().unwrap();
    oor(u.read(SIZE, 1).map(drop));
    oor(u.window(SIZE - 4, 5).map(drop));
    oor(u.window_pair(0..1, SIZE..SIZE + 1).map(drop));
    drop(u);
    assert_eq!(cache.read(SIZE - 1, 1).unwrap(), [0]);
    assert_eq!(
        cache.stats().dirty_pages,
        0,
        "a refused window marked pages dirty"
    );
}

#[test]
fn overlapping_window_pair() {
    let _serial = common::serial();
    let t = TestDir::new();
    let mut cache = RioCache::open(disk_path(t.path()), &o(t.path())).unwrap();
    let mut u = cache.update().unwrap();
    for (a, b) in [(0..10, 9..20), (5..6, 0..100), (100..200, 100..200)] {
        match u.window_pair(a.clone(), b.clone()) {
            Err(Error::Overlap(x, y)) => assert_eq!((x, y), (a, b)),
            other => panic!("{a:?} {b:?}: {other:?}"),
        }
    }
    // Adjacent is fine.
    let (x, y) = u.window_pair(0..10, 10..20).unwrap();
    x[9] = 1;
    y[0] = 2;
}

#[test]
fn zero_size_is_invalid() {
    let _serial = common::serial();
    let t = TestDir::new();
    let e = RioCache::open(disk_path(t.path()), &o(t.path()).size(0)).unwrap_err();
    assert!(matches!(e, Error::InvalidOptions(_)), "{e:?}");
    assert!(!disk_path(t.path()).exists());
}

#[test]
fn pkey_when_unsupported() {
    let _serial = common::serial();
    if rio_cache::pkeys_supported() {
        eprintln!("note: this machine has protection keys; PkeyUnavailable not testable");
        return;
    }
    let t = TestDir::new();
    let e = RioCache::open(
        disk_path(t.path()),
        &o(t.path()).protection(Protection::Pkey),
    )
    .unwrap_err();
    assert!(matches!(e, Error::PkeyUnavailable(_)), "{e:?}");
    assert!(
        !disk_path(t.path()).exists(),
        "a refused open created the disk file"
    );
}

// ---------------------------------------------------------------------------------
// Exhaustive damage: every header byte and truncations at many sizes. Each case starts
// from the same files (restored in place, so inodes stay), opens once, and asserts the
// documented outcome: a typed error with every file unchanged, or a correct open.
// ---------------------------------------------------------------------------------

/// What an open of a damaged cache must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    NotRioCache,
    IncompatibleVersion,
    Corrupt,
    DamagedImage,
    LiveImage,
    /// Open, with this start, holding `pattern(n)` (0: zeroes).
    Opens(StartKind, u64),
}

fn classify(e: &Error) -> Option<Expect> {
    Some(match e {
        Error::NotRioCache { .. } => Expect::NotRioCache,
        Error::IncompatibleVersion { .. } => Expect::IncompatibleVersion,
        Error::Corrupt { .. } => Expect::Corrupt,
        Error::DamagedImage { .. } => Expect::DamagedImage,
        Error::LiveImage { .. } => Expect::LiveImage,
        _ => return None,
    })
}

/// The three files of `dir`, as bytes (`None`: absent).
type Files = Vec<(PathBuf, Option<Vec<u8>>)>;

fn capture(dir: &Path, image: &Path) -> Files {
    files(dir, image)
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).ok();
            (p, b)
        })
        .collect()
}

/// Puts the files back in place (same inodes), removing those that were absent.
fn put_back(files: &Files) {
    for (p, bytes) in files {
        match bytes {
            Some(b) => {
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(p)
                    .unwrap();
                f.set_len(b.len() as u64).unwrap();
                f.write_all_at(b, 0).unwrap();
            }
            None => drop(std::fs::remove_file(p)),
        }
    }
}

/// Opens `dir`'s cache and checks the outcome against `want`: an expected error with
/// every file byte-identical afterwards, or an open with the expected start and data.
fn check(dir: &Path, image: &Path, opts: &RioOptions, want: Expect, case: &str) {
    let before = capture(dir, image);
    match RioCache::open(disk_path(dir), opts) {
        Ok(cache) => {
            let Expect::Opens(start, gen) = want else {
                panic!(
                    "{case}: opened ({:?}); expected {want:?}",
                    cache.start_kind()
                );
            };
            assert_eq!(cache.start_kind(), start, "{case}");
            let data = if gen == 0 {
                vec![0; SIZE as usize]
            } else {
                pattern(gen, SIZE as usize)
            };
            assert!(cache.as_slice().unwrap() == data, "{case}: wrong data");
        }
        Err(e) => {
            assert_eq!(classify(&e), Some(want), "{case}: {e}");
            assert!(
                capture(dir, image) == before,
                "{case}: a refused open ({e}) changed a file"
            );
        }
    }
}

/// The two ways a byte is damaged in these tests.
const FLIPS: [u8; 2] = [0x01, 0xff];

#[test]
fn every_disk_header_byte() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let pristine = capture(dir, &image);
    // Warm (a live image: the header is still read and checked) and cold.
    for warm in [true, false] {
        let (start, gen) = if warm {
            (StartKind::Warm, 2)
        } else {
            (StartKind::Cold(ColdReason::NoImage), 1)
        };
        // The fields of both slots' headers (slot 0's holds checkpoint 0, slot 1's the
        // current one: a damaged header is refused either way, not passed over), then a
        // sample of the rest of the header page: the headers' maps (under their
        // checksums), the intent record (damaged, it only makes a cold start rewrite
        // every page of the other slot) and the reserved rest.
        for at in (0..64)
            .chain(SLOT1_AT..SLOT1_AT + 64)
            .chain((64..PAGE).step_by(67))
        {
            for flip in FLIPS {
                put_back(&pristine);
                if !warm {
                    std::fs::remove_file(&image).unwrap();
                }
                let mut b = read_at(&disk_path(dir), at, 1);
                b[0] ^= flip;
                patch(&disk_path(dir), at, &b);
                let want = match at {
                    // Version 3 ^ 1 is version 2, whose checksum is elsewhere.
                    8 | 520 if flip == 0x01 => Expect::Corrupt,
                    8..12 | 520..524 => Expect::IncompatibleVersion,
                    // Magics (slot 0's beside an intact slot 1 header: a damaged disk
                    // image, not someone else's file); page size, data_len, seq, writer,
                    // slot, map shift, map, crc: the CRC catches it
                    0..8 | 12..512 | 512..520 | 524..1024 => Expect::Corrupt,
                    _ => Expect::Opens(start, gen),
                };
                let case = format!("disk byte {at} ^ {flip:#x}, warm {warm}");
                check(dir, &image, &o(dir), want, &case);
            }
        }
    }
}

#[test]
fn every_image_header_byte() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let pristine = capture(dir, &image);
    let meta_len = std::fs::metadata(&image).unwrap().len() - SIZE;
    // The header, `ready` and `synced` (0..136); a sample of the reserved rest of the
    // header page and of the dirty and in-flight maps (a flipped mark only makes a
    // page dirty: it is written again).
    for at in (0..136).chain((136..meta_len).step_by(61)) {
        for flip in FLIPS {
            put_back(&pristine);
            let mut b = read_at(&image, at, 1);
            b[0] ^= flip;
            patch(&image, at, &b);
            let case = format!("image byte {at} ^ {flip:#x}");
            if at < 136 {
                check(dir, &image, &o(dir), Expect::DamagedImage, &case);
                // The explicit way on: the disk image's checkpoint, nothing else.
                let discard = o(dir).discard_image(true);
                let cold = Expect::Opens(StartKind::Cold(ColdReason::Damaged), 1);
                check(dir, &image, &discard, cold, &case);
            } else {
                check(
                    dir,
                    &image,
                    &o(dir),
                    Expect::Opens(StartKind::Warm, 2),
                    &case,
                );
            }
        }
    }
}

/// Truncates (or extends) `path` to `len` bytes.
fn set_len(path: &Path, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn truncations_of_the_disk_file() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let pristine = capture(dir, &image);
    let full = rio_cache::disk_image_len(SIZE);
    for warm in [true, false] {
        for len in [
            0,
            1,
            8,
            63,
            64,
            65,
            PAGE - 1,
            PAGE,
            PAGE + 1,
            SLOT1_AT + 32,
            DATA_AT + SIZE / 2,
            full - 1,
            full + 1,
            full + PAGE,
        ] {
            put_back(&pristine);
            if !warm {
                std::fs::remove_file(&image).unwrap();
            }
            set_len(&disk_path(dir), len);
            let want = match len {
                // An empty file is new, unless a live image of it exists.
                0 if warm => Expect::LiveImage,
                0 => Expect::Opens(StartKind::Created, 0),
                1..64 => Expect::NotRioCache,
                _ => Expect::Corrupt, // the length does not match the header
            };
            check(
                dir,
                &image,
                &o(dir),
                want,
                &format!("disk {len} bytes, warm {warm}"),
            );
        }
    }
}

#[test]
fn truncations_of_the_memory_image() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let pristine = capture(dir, &image);
    let full = std::fs::metadata(&image).unwrap().len();
    let meta_len = full - SIZE;
    for len in [
        0,
        1,
        64,
        123,
        124,
        128,
        135,
        136,
        PAGE,
        meta_len,
        meta_len + PAGE,
        full - 1,
        full + 1,
        full + PAGE,
    ] {
        put_back(&pristine);
        set_len(&image, len);
        let want = match len {
            // Nothing was ever loaded into an empty image.
            0 => Expect::Opens(StartKind::Cold(ColdReason::Incomplete), 1),
            // Cut inside its header or its data: it may have held newer data.
            _ => Expect::DamagedImage,
        };
        check(dir, &image, &o(dir), want, &format!("image {len} bytes"));
    }
}

#[test]
fn truncations_of_a_committed_journal() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    std::fs::remove_file(&image).unwrap();
    let jp = rio_cache::journal_path(&disk_path(dir));
    let full = journal(2, &journal_pages(), true);
    std::fs::write(&jp, &full).unwrap();
    let pristine = capture(dir, &image);
    let n = full.len() as u64;
    for len in [
        0,
        1,
        32,
        63,
        64,
        65,
        64 + 8,
        64 + 16,
        64 + 16 + PAGE / 2,
        64 + 16 + PAGE,
        n - 64,
        n - 63,
        n - 32,
        n - 1,
        n,
    ] {
        put_back(&pristine);
        set_len(&jp, len);
        let case = format!("journal {len} of {n} bytes");
        let cache =
            RioCache::open(disk_path(dir), &o(dir)).unwrap_or_else(|e| panic!("{case}: {e}"));
        let disk_seq = cache.stats().disk_seq;
        if len == n {
            // The whole journal, commit record included: installed.
            assert_eq!(disk_seq, 2, "{case}");
            assert!(
                cache.as_slice().unwrap() == expected_after_journal(),
                "{case}"
            );
        } else {
            // Torn: discarded, the old checkpoint exactly.
            assert_eq!(disk_seq, 1, "{case}");
            assert!(
                cache.as_slice().unwrap() == pattern(1, SIZE as usize),
                "{case}"
            );
        }
        drop(cache);
        assert!(journal_is_clear(&jp), "{case}: journal not cleared");
    }
}

#[test]
fn disk_header_damaged_during_a_session_is_rewritten_or_reported() {
    // Every checkpoint that installs pages writes the whole header again, so damage
    // done to it while the cache is open is repaired by the next such checkpoint; if
    // none comes, the next open reports it (warm or cold) and changes nothing.
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let damage = || patch(&disk_path(dir), 20, &[0xee]); // data_len, under the CRC
    let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    damage();
    cache.window(0, 4).unwrap().copy_from_slice(b"next");
    cache.checkpoint().unwrap();
    drop(cache);
    std::fs::remove_file(&image).unwrap();
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Cold(ColdReason::NoImage));
    assert_eq!(cache.read(0, 4).unwrap(), b"next");
    // Damaged with nothing left to checkpoint: reported at the next open.
    damage();
    cache.close().unwrap();
    refused(dir, &image, &o(dir), |e| matches!(e, Error::Corrupt { .. }));
}

/// Threads of one process open caches in one directory at once: the writability probe of
/// one open must not make another's fail (it once used one probe name per process).
#[test]
fn threads_open_caches_in_one_directory_at_once() {
    let dir = tempfile::tempdir().unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let dir = dir.path();
            s.spawn(move || {
                for i in 0..50 {
                    let opts = rio_cache::RioOptions::new()
                        .size(4096)
                        .writeback(rio_cache::Writeback::Manual)
                        .cache_dir(dir);
                    let path = dir.join(format!("disk-{t}-{i}"));
                    let cache = rio_cache::RioCache::open(&path, &opts)
                        .unwrap_or_else(|e| panic!("thread {t} open {i}: {e}"));
                    drop(cache);
                }
            });
        }
    });
}

/// A refused open of a disk file that does not exist leaves none behind: here a live
/// memory image of a removed file refuses the open (its data would be lost).
#[test]
fn refused_open_of_a_missing_file_creates_nothing() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    std::fs::remove_file(disk_path(dir)).unwrap();
    std::fs::remove_file(rio_cache::journal_path(&disk_path(dir))).unwrap();
    refused(dir, &image, &o(dir), |e| {
        matches!(e, Error::LiveImage { .. })
    });
    assert!(
        !disk_path(dir).exists(),
        "the refused open created the file"
    );
    // Discarding the image makes it a new cache.
    let c = RioCache::open(disk_path(dir), &o(dir).discard_image(true)).unwrap();
    assert_eq!(c.start_kind(), StartKind::Created);
}

/// A damaged disk header whose memory image is intact: the refusal says the image may
/// hold everything and how to use it; restoring the header lets the open start warm
/// from the image, with nothing lost.
#[test]
fn damaged_disk_header_names_the_intact_image() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let image = setup(dir);
    let good = read_at(&disk_path(dir), 0, 64);
    patch(&disk_path(dir), 20, &[0xAB]);
    let listing = tree(dir);
    let e = RioCache::open(disk_path(dir), &o(dir)).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(&e, Error::Corrupt { path, .. } if *path == disk_path(dir)),
        "{e:?}"
    );
    assert!(
        msg.contains("header checksum mismatch")
            && msg.contains(&image.display().to_string())
            && msg.contains("intact"),
        "{msg}"
    );
    assert_same_tree(&listing, &tree(dir), "a refused open");
    patch(&disk_path(dir), 0, &good);
    let c = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(c.start_kind(), StartKind::Warm);
    assert_eq!(c.read(0, SIZE).unwrap(), pattern(2, SIZE as usize));
}

/// The lock error names the process holding the cache.
#[test]
fn locked_names_the_holder() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    setup(dir);
    let first = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    match RioCache::open(disk_path(dir), &o(dir)) {
        Err(e @ Error::Locked { pid, .. }) => {
            assert_eq!(pid, Some(std::process::id()), "{e}");
            assert!(
                e.to_string().contains(&std::process::id().to_string()),
                "{e}"
            );
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(first);
}
