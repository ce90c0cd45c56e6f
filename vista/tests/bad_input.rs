//! Bad input: every case gets a clear error and leaves the files as they were.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{assert_same_tree, tree, write_in_place, Place};
use vista::{Error, Segment};

const SIZE: u64 = 16 << 10;

/// A closed, checkpointed segment with some data, and its memory image removed, so an
/// open reads the disk file (cold start).
fn closed_segment(p: &Place) {
    let seg = Segment::open(&p.path, &p.opts(SIZE)).unwrap();
    seg.transaction(|tx| tx.write(0, b"precious data")).unwrap();
    seg.close().unwrap();
    p.lose_power();
}

/// Opens, expecting an error, and checks that no file was created, removed or changed
/// (the segment file, its journal, the cache directory: no memory image appears).
fn open_fails(p: &Place) -> Error {
    std::fs::create_dir_all(p.cache_dir()).unwrap();
    let before = tree(p.dir.path());
    let err = Segment::open(&p.path, &p.opts(SIZE)).unwrap_err();
    assert_same_tree(
        &before,
        &tree(p.dir.path()),
        &format!("a refused open ({err})"),
    );
    err
}

/// Patches the vista header (at disk offset 4096: after rio-cache's header page).
fn patch_header(p: &Place, f: impl FnOnce(&mut [u8]), fix_crc: bool) {
    let mut b = std::fs::read(&p.path).unwrap();
    let h = &mut b[4096..4096 + 64];
    f(h);
    if fix_crc {
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
    }
    write_in_place(&p.path, &b);
}

#[test]
fn random_bytes() {
    let p = Place::new();
    let junk: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&p.path, &junk).unwrap();
    let err = open_fails(&p);
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

#[test]
fn truncated_file() {
    let p = Place::new();
    closed_segment(&p);
    let b = std::fs::read(&p.path).unwrap();
    write_in_place(&p.path, &b[..b.len() - 100]);
    let err = open_fails(&p);
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    // Cut inside its header: said to be truncated (it was "slot 0's header checksum
    // mismatch", which sends one looking for damage).
    for cut in [64, 100, 500, 700] {
        write_in_place(&p.path, &b[..cut]);
        let err = open_fails(&p);
        match &err {
            Error::Corrupt { reason, .. } => assert!(reason.contains("truncated"), "{cut}: {err}"),
            other => panic!("{cut}: {other}"),
        }
    }
}

#[test]
fn wrong_magic() {
    let p = Place::new();
    closed_segment(&p);
    patch_header(&p, |h| h[0] = b'X', true);
    let err = open_fails(&p);
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("magic")),
        "{err}"
    );
}

#[test]
fn newer_version() {
    let p = Place::new();
    closed_segment(&p);
    patch_header(&p, |h| h[8..12].copy_from_slice(&7u32.to_le_bytes()), true);
    let err = open_fails(&p);
    assert!(
        matches!(
            err,
            Error::IncompatibleVersion {
                found: 7,
                supported: 2,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn header_checksum_mismatch() {
    let p = Place::new();
    closed_segment(&p);
    patch_header(&p, |h| h[40] ^= 0x10, false);
    let err = open_fails(&p);
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("checksum")),
        "{err}"
    );
}

#[test]
fn inconsistent_header_with_valid_checksum() {
    let p = Place::new();
    closed_segment(&p);
    patch_header(
        &p,
        |h| h[12..16].copy_from_slice(&1000u32.to_le_bytes()),
        true,
    );
    let err = open_fails(&p);
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
}

/// A segment left with an unfinished transaction (as a crash leaves it), then a patch
/// of its first undo record in the memory image. Returns the image path.
fn unfinished_with_patched_record(p: &Place, patch: impl FnOnce(&mut [u8])) -> std::path::PathBuf {
    let seg = Segment::open(&p.path, &p.opts(SIZE)).unwrap();
    seg.transaction(|tx| tx.write(0, b"committed")).unwrap();
    let mut tx = seg.begin().unwrap();
    tx.write(0, b"uncommitted").unwrap();
    let snap = p.snapshot();
    drop(tx);
    drop(seg);
    snap.restore();
    let image = p.image();
    let mut b = std::fs::read(&image).unwrap();
    // Data starts after the image's metadata: the image is metadata + page-rounded data.
    let total = rio_cache::existing_size(&p.path)
        .unwrap()
        .unwrap()
        .next_multiple_of(4096);
    let data_at = (b.len() as u64 - total) as usize;
    let rec = data_at + 4096 + 64; // lane 0 is at 4096; its records after 64 bytes
    patch(&mut b[rec..]);
    write_in_place(&image, &b);
    image
}

#[test]
fn undo_record_pointing_outside_the_segment() {
    let p = Place::new();
    let image = unfinished_with_patched_record(&p, |r| {
        r[8..16].copy_from_slice(&(SIZE - 4).to_le_bytes()); // 11 bytes at SIZE-4
        let len = u64::from_le_bytes(r[16..24].try_into().unwrap()) as usize;
        let crc = crc32fast::hash(&r[8..24 + len]);
        r[4..8].copy_from_slice(&crc.to_le_bytes());
    });
    let before = std::fs::read(&image).unwrap();
    let err = open_fails(&p);
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("outside")),
        "{err}"
    );
    assert_eq!(
        std::fs::read(&image).unwrap(),
        before,
        "recovery wrote to the image"
    );
}

#[test]
fn undo_record_with_bad_checksum() {
    let p = Place::new();
    let image = unfinished_with_patched_record(&p, |r| r[25] ^= 1);
    let before = std::fs::read(&image).unwrap();
    let err = open_fails(&p);
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("checksum")),
        "{err}"
    );
    assert_eq!(std::fs::read(&image).unwrap(), before);
}

#[test]
fn unpatched_unfinished_transaction_recovers() {
    // The control for the two tests above: without the patch, recovery succeeds.
    let p = Place::new();
    unfinished_with_patched_record(&p, |_| {});
    let seg = Segment::open(&p.path, &p.opts(SIZE)).unwrap();
    assert_eq!(seg.recovery().records_undone, 1);
    assert_eq!(seg.read(0, 11).unwrap(), b"committed\0\0");
}

#[test]
fn missing_cache_dir() {
    let p = Place::new();
    let opts = p.opts(SIZE).cache_dir(p.dir.path().join("no-such-dir"));
    let err = Segment::open(&p.path, &opts).unwrap_err();
    assert!(
        matches!(err, Error::Cache(rio_cache::Error::CacheDir { .. })),
        "{err}"
    );
    assert!(!p.path.exists(), "a failed open created the file");
}

#[test]
fn invalid_options() {
    let p = Place::new();
    for o in [
        p.opts(0),
        p.opts(SIZE).lanes(0),
        p.opts(SIZE).undo_log_size(8),
    ] {
        assert!(matches!(
            Segment::open(&p.path, &o),
            Err(Error::InvalidOptions(_))
        ));
    }
}

/// The child's side of `locked_by_another_process`: holds the segment open until its
/// stdin closes.
#[test]
fn lock_holder_entry() {
    let Ok(path) = std::env::var("VISTA_HOLD") else {
        return;
    };
    let cache = std::env::var("VISTA_HOLD_CACHE").unwrap();
    let opts = vista::Options::new().size(SIZE).cache_dir(cache);
    let _seg = Segment::open(path, &opts).unwrap();
    println!("ready");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    std::process::exit(0);
}

#[test]
fn locked_by_another_process() {
    let p = Place::new();
    closed_segment(&p);
    std::fs::create_dir_all(p.cache_dir()).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_holder_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("VISTA_HOLD", &p.path)
        .env("VISTA_HOLD_CACHE", p.cache_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited early");
    }
    let err = Segment::open(&p.path, &p.opts(SIZE)).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    Segment::open(&p.path, &p.opts(SIZE)).unwrap();
}

/// Where the segment's bytes start in the memory image (after rio-cache's metadata).
fn image_data_at(p: &Place) -> usize {
    let image_len = std::fs::metadata(p.image()).unwrap().len();
    let total = rio_cache::existing_size(&p.path)
        .unwrap()
        .unwrap()
        .next_multiple_of(4096);
    (image_len - total) as usize
}

/// A segment left as a crash inside a transaction leaves it: the memory image holds an
/// unfinished transaction (dirty pages, a non-empty undo lane) that no checkpoint has
/// seen.
fn crashed_mid_transaction(p: &Place) {
    let seg = Segment::open(&p.path, &p.opts(SIZE)).unwrap();
    seg.transaction(|tx| tx.write(0, b"committed")).unwrap();
    seg.checkpoint().unwrap();
    let mut tx = seg.begin().unwrap();
    tx.write(0, b"uncommitted").unwrap();
    tx.write(5000, b"more").unwrap();
    let snap = p.snapshot();
    drop(tx);
    drop(seg);
    snap.restore();
}

/// Opens, expecting a refusal; the directory listing (segment file, journal, cache
/// directory) must be the same afterwards, byte for byte: a refused open creates no
/// memory image and no journal, and changes no file.
fn refused_writes_nothing(p: &Place) -> Error {
    let before = tree(p.dir.path());
    let err = Segment::open(&p.path, &p.opts(SIZE)).unwrap_err();
    assert_same_tree(
        &before,
        &tree(p.dir.path()),
        &format!("a refused open ({err})"),
    );
    err
}

#[test]
fn corrupt_header_in_the_memory_image_writes_nothing() {
    // The cache opens warm; vista then refuses its header. The close-time checkpoint
    // of the refused cache would write the unfinished transaction to disk.
    let p = Place::new();
    crashed_mid_transaction(&p);
    let image = p.image();
    let mut b = std::fs::read(&image).unwrap();
    b[image_data_at(&p) + 20] ^= 0x40; // lane_size, under the header CRC
    write_in_place(&image, &b);
    let err = refused_writes_nothing(&p);
    assert!(
        matches!(&err, Error::Corrupt { reason, .. } if reason.contains("checksum")),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------
// Exhaustive damage: every byte of the segment header (in the memory image and in the
// segment file) and of the undo log a crash left behind; truncations of the file.
// ---------------------------------------------------------------------------------

const FLIPS: [u8; 2] = [0x01, 0xff];

/// Flips bits of the byte at `at` of `path`.
fn flip_at(path: &std::path::Path, at: usize, flip: u8) {
    let mut b = std::fs::read(path).unwrap();
    b[at] ^= flip;
    write_in_place(path, &b);
}

/// The error a damaged segment header must give: the version field gives
/// `IncompatibleVersion`, every other byte `Corrupt` (magic, checksum).
fn header_error_ok(at: usize, err: &Error) -> bool {
    match at {
        8..12 => matches!(err, Error::IncompatibleVersion { .. }),
        _ => matches!(err, Error::Corrupt { .. }),
    }
}

#[test]
fn every_segment_header_byte_in_the_memory_image() {
    let p = Place::new();
    crashed_mid_transaction(&p);
    let pristine = p.snapshot();
    let at0 = image_data_at(&p);
    for at in 0..64 {
        for flip in FLIPS {
            pristine.restore();
            flip_at(&p.image(), at0 + at, flip);
            let err = refused_writes_nothing(&p);
            assert!(header_error_ok(at, &err), "byte {at} ^ {flip:#x}: {err}");
            // Discarding the image opens the last checkpoint, which is intact.
            let seg = Segment::open(&p.path, &p.opts(SIZE).discard_image(true)).unwrap();
            assert_eq!(seg.read(0, 9).unwrap(), b"committed", "byte {at}");
        }
    }
}

#[test]
fn every_segment_header_byte_in_the_file() {
    let p = Place::new();
    crashed_mid_transaction(&p);
    p.lose_power(); // cold: the header is read from the file
    let pristine = p.snapshot();
    for at in 0..64 {
        for flip in FLIPS {
            pristine.restore();
            flip_at(&p.path, 4096 + at, flip);
            let err = refused_writes_nothing(&p);
            assert!(header_error_ok(at, &err), "byte {at} ^ {flip:#x}: {err}");
        }
    }
    // Warm, the file's copy of the header is not read (the image's is): the open
    // succeeds, and the damage is left for a cold start to report.
    let p = Place::new();
    crashed_mid_transaction(&p);
    flip_at(&p.path, 4096 + 20, 0x40);
    let seg = Segment::open(&p.path, &p.opts(SIZE)).unwrap();
    assert_eq!(seg.read(0, 9).unwrap(), b"committed");
}

#[test]
fn every_byte_of_an_undo_log() {
    // Lane 0 holds two published records (for "uncommitted" at 0 and "more" at 5000):
    // its tail word, then 40 + 32 bytes of records. Each damaged byte must give a
    // `Corrupt` refusal that changes nothing, or a recovery that restores exactly the
    // committed state.
    let p = Place::new();
    crashed_mid_transaction(&p);
    let pristine = p.snapshot();
    let lane = image_data_at(&p) + 4096;
    // The padding after each before-image (11 bytes padded to 16, 4 padded to 8) is
    // outside every check; every other byte is covered by the magic, the bounds or the
    // checksum.
    let padding =
        |at: usize| (64 + 24 + 11..64 + 40).contains(&at) || (64 + 40 + 28..64 + 72).contains(&at);
    for at in (0..8).chain(64..64 + 72) {
        for flip in FLIPS {
            pristine.restore();
            flip_at(&p.image(), lane + at, flip);
            let case = format!("lane byte {at} ^ {flip:#x}");
            let before = p.snapshot();
            match Segment::open(&p.path, &p.opts(SIZE)) {
                Ok(seg) => {
                    assert!(padding(at), "{case}: recovered from a damaged log");
                    assert_eq!(seg.read(0, 11).unwrap(), b"committed\0\0", "{case}");
                    assert_eq!(seg.read(5000, 4).unwrap(), [0; 4], "{case}");
                    assert_eq!(seg.recovery().records_undone, 2, "{case}");
                }
                Err(err) => {
                    assert!(!padding(at), "{case}: padding refused: {err}");
                    assert!(matches!(err, Error::Corrupt { .. }), "{case}: {err}");
                    assert!(
                        before == p.snapshot(),
                        "{case}: a refused open changed a file"
                    );
                }
            }
        }
    }
}

#[test]
fn truncations_of_the_segment_file() {
    let p = Place::new();
    crashed_mid_transaction(&p);
    let pristine = p.snapshot();
    let full = std::fs::metadata(&p.path).unwrap().len();
    for warm in [true, false] {
        for len in [
            1,
            63,
            64,
            4095,
            4096,
            4097,
            8192,
            full / 2,
            full - 1,
            full + 1,
        ] {
            pristine.restore();
            if !warm {
                p.lose_power();
            }
            let b = std::fs::read(&p.path).unwrap();
            let mut cut = b.clone();
            cut.resize(len as usize, 0);
            write_in_place(&p.path, &cut);
            let err = refused_writes_nothing(&p);
            assert!(matches!(err, Error::Corrupt { .. }), "{len} bytes: {err}");
        }
        // Empty: a new segment if nothing else exists; refused while a live image does.
        pristine.restore();
        if !warm {
            p.lose_power();
        }
        write_in_place(&p.path, &[]);
        if warm {
            let err = refused_writes_nothing(&p);
            assert!(matches!(err, Error::LiveImage { .. }), "{err}");
        } else {
            let seg = Segment::open(&p.path, &p.opts(SIZE)).unwrap();
            assert_eq!(seg.start_kind(), rio_cache::StartKind::Created);
        }
    }
}

#[test]
fn damaged_memory_image_is_refused_then_discarded() {
    // rio-cache's header of the image (not vista's): the image may hold committed
    // transactions, so it is refused, naming it; discard_image opens the checkpoint.
    let p = Place::new();
    crashed_mid_transaction(&p);
    flip_at(&p.image(), 50, 0x10); // inside the boot id, under the header CRC
    let err = refused_writes_nothing(&p);
    assert!(
        matches!(&err, Error::DamagedImage { image, .. } if *image == p.image()),
        "{err}"
    );
    let seg = Segment::open(&p.path, &p.opts(SIZE).discard_image(true)).unwrap();
    assert_eq!(
        seg.start_kind(),
        rio_cache::StartKind::Cold(rio_cache::ColdReason::Damaged)
    );
    assert_eq!(seg.read(0, 9).unwrap(), b"committed");
}

#[test]
fn recreated_segment_file_cannot_take_an_open_image() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(SIZE)).unwrap();
    seg.transaction(|tx| tx.write(0, b"mine")).unwrap();
    std::fs::remove_file(&p.path).unwrap();
    let image_before = std::fs::read(p.image()).unwrap();
    for o in [p.opts(SIZE), p.opts(SIZE).discard_image(true)] {
        let err = Segment::open(&p.path, &o).unwrap_err();
        assert!(
            matches!(&err, Error::Locked { path, .. } if *path == p.image()),
            "{err}"
        );
        assert!(
            std::fs::read(p.image()).unwrap() == image_before,
            "the second open changed the first's image"
        );
    }
    seg.transaction(|tx| tx.write(4, b"still")).unwrap();
    assert_eq!(seg.read(0, 9).unwrap(), b"minestill");
}

#[test]
fn refused_open_with_background_writeback_writes_nothing() {
    // A crashed transaction with a long undo log whose last record is damaged: recovery
    // validates every record (holding the cache's update, so a checkpoint waits at the
    // gate) and then refuses. A background writeback thread with a zero interval that
    // started with the cache would be waiting at the gate meanwhile, and copy the
    // crashed transaction to disk the moment the refusal let go of it. vista starts
    // the thread only once it has accepted the segment.
    let p = Place::new();
    let o = p
        .opts(SIZE)
        .protection(vista::Protection::None)
        .undo_log_size(4 << 20);
    let seg = Segment::open(&p.path, &o).unwrap();
    seg.transaction(|tx| tx.write(0, b"committed")).unwrap();
    seg.checkpoint().unwrap();
    let mut tx = seg.begin().unwrap();
    let records = 60_000u64;
    for i in 0..records {
        // 17 distinct 8-byte ranges in turn: one undo record (32 bytes) per write.
        tx.write((i % 17) * 8, &i.to_le_bytes()).unwrap();
    }
    let snap = p.snapshot();
    drop(tx);
    drop(seg);
    snap.restore();
    let last = image_data_at(&p) + 4096 + 64 + (records as usize - 1) * 32;
    flip_at(&p.image(), last + 24, 0x01); // its before-image: the checksum fails
    let pristine = p.snapshot();
    let o = o.writeback(vista::Writeback::Background {
        interval: std::time::Duration::ZERO,
        dirty_bytes: 1,
    });
    for round in 0..3 {
        pristine.restore();
        let err = Segment::open(&p.path, &o).unwrap_err();
        assert!(
            matches!(&err, Error::Corrupt { reason, .. } if reason.contains("checksum")),
            "{err}"
        );
        for ((path, b), (_, a)) in pristine.files.iter().zip(&p.snapshot().files) {
            if *path != p.image() {
                assert!(
                    b == a,
                    "round {round}: a refused open changed {}",
                    path.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// A refused open names the damaged copy and creates nothing (issue 18).
// ---------------------------------------------------------------------------------

#[test]
fn damaged_image_copy_is_named_with_the_way_forward() {
    let p = Place::new();
    crashed_mid_transaction(&p);
    flip_at(&p.image(), image_data_at(&p) + 44, 0xff);
    let err = refused_writes_nothing(&p);
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if *path == p.image()),
        "{err:?}"
    );
    assert!(
        msg.contains("memory image")
            && msg.contains("intact checkpoint")
            && msg.contains("discard_image")
            && msg.contains("Segment::remove"),
        "{msg}"
    );
}

#[test]
fn damaged_file_copy_is_named_with_the_way_forward() {
    let p = Place::new();
    closed_segment(&p);
    patch_header(&p, |h| h[44] ^= 0xff, false);
    let err = open_fails(&p);
    let msg = err.to_string();
    assert!(
        matches!(&err, Error::Corrupt { path, .. } if *path == p.path),
        "{err:?}"
    );
    assert!(
        msg.contains("segment file") && msg.contains("no memory image") && msg.contains("restore"),
        "{msg}"
    );
}

/// The sequence of issue 18: a damaged header is refused, nothing is created, the good
/// bytes are copied back over the file, and the next open works (before the fix, the
/// refused open left a memory image holding the damaged header, and every later open
/// started warm from it and failed).
#[test]
fn repaired_file_opens_after_a_refused_open() {
    let p = Place::new();
    closed_segment(&p);
    std::fs::remove_file(p.journal()).unwrap();
    let good = std::fs::read(&p.path).unwrap();
    patch_header(&p, |h| h[40] ^= 0x10, false);
    let err = open_fails(&p);
    assert!(matches!(err, Error::Corrupt { .. }), "{err}");
    assert!(!p.image().exists() && !p.journal().exists());
    write_in_place(&p.path, &good);
    let seg = Segment::open(&p.path, &p.opts(SIZE)).unwrap();
    assert_eq!(seg.read(0, 13).unwrap(), b"precious data");
}

/// A segment file whose vista header reads as zero while its data does not (damaged or
/// crafted), with no memory image (after a reboot, or deleted): the open refuses it
/// with `Corrupt` before anything is made, not after a cold load into a new memory
/// image. Once the file is repaired (its own bytes back), the next open succeeds; the
/// refused open had left an image behind, which then kept the segment refused.
#[test]
fn a_zeroed_header_over_data_is_refused_before_an_image_is_made() {
    let p = Place::new();
    let opts = p.opts(1 << 16);
    let seg = Segment::open(&p.path, &opts).unwrap();
    seg.transaction(|tx| tx.put(4096, &0xabcdu64)).unwrap();
    seg.close().unwrap();
    std::fs::remove_file(p.image()).unwrap();
    let good = std::fs::read(&p.path).unwrap();
    let mut disk = good.clone();
    let copies = common::header_copies(&disk);
    assert!(!copies.is_empty());
    for h in copies {
        disk[h..h + 64].fill(0);
    }
    std::fs::write(&p.path, &disk).unwrap();
    let before = tree(p.dir.path());
    let e = Segment::open(&p.path, &opts).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
    assert!(e.to_string().contains("holds data"), "{e}");
    assert_same_tree(&before, &tree(p.dir.path()), "a refused open");
    std::fs::write(&p.path, &good).unwrap();
    let seg = Segment::open(&p.path, &opts).unwrap();
    assert_eq!(seg.get::<u64>(4096).unwrap(), 0xabcd);
}

/// Options whose undo logs alone exceed the largest segment name the undo logs, not the
/// size the caller gave (the message used to say "size must be between 1 and ...").
#[test]
fn undo_logs_past_the_largest_segment_are_named_as_such() {
    let p = Place::new();
    let opts = p.opts(4096).lanes(1024).undo_log_size(1 << 40);
    match Segment::open(&p.path, &opts) {
        Err(Error::InvalidOptions(why)) => {
            assert!(why.contains("undo_log_size"), "{why}");
            assert!(!why.contains("size must be"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    assert!(!p.path.exists(), "a refused open created the file");
    let too_big = p.opts(1 << 50);
    match Segment::open(&p.path, &too_big) {
        Err(Error::InvalidOptions(why)) => assert!(why.contains("size 1125899906842624"), "{why}"),
        other => panic!("{other:?}"),
    }
}
