//! Bad input: every case gets a clear error and leaves the files as they were.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::{write_in_place, Place};
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

/// Opens, expecting an error, and checks the disk file did not change.
fn open_fails(p: &Place) -> Error {
    let before = std::fs::read(&p.path).unwrap();
    let err = Segment::open(&p.path, &p.opts(SIZE)).unwrap_err();
    assert_eq!(
        std::fs::read(&p.path).unwrap(),
        before,
        "the file changed: {err}"
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
                supported: 1,
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
    let total = std::fs::metadata(&p.path).unwrap().len() - 4096;
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
