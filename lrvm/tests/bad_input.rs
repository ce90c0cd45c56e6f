//! Damaged and wrong input: every case is a clear typed error (or, for a torn last
//! record, a clean recovery), nothing committed is lost, nothing panics.

use lrvm::{
    create_log, CommitMode, CreateMode, Error, MapOptions, Options, RegionSpec, RestoreMode, Rvm,
    MIN_LOG_LEN,
};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Status copies live at 0 and 4096; records start at 8192.
const RECORDS: u64 = 8192;
/// A record with one 8-byte range: 32-byte header + 16-byte range header + 8 bytes.
const REC8: u64 = 56;

struct Env {
    _dir: tempfile::TempDir,
    log: PathBuf,
    data: PathBuf,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let data = dir.path().join("data");
    create_log(&log, MIN_LOG_LEN, CreateMode::CreateNew).unwrap();
    Env {
        log,
        data,
        _dir: dir,
    }
}

fn spec(data: &Path) -> RegionSpec {
    RegionSpec::new(data, 0, 64)
}

/// Commits `n` flushed 8-byte transactions (value i at offset 8*i), then crashes,
/// leaving them in the log.
fn commit_and_crash(e: &Env, n: u64) {
    let mut rvm = Rvm::initialize(Options::new(&e.log)).unwrap();
    let r = rvm
        .map(&spec(&e.data), MapOptions::create_or_extend())
        .unwrap();
    for i in 0..n {
        let t = rvm.begin_transaction(RestoreMode::NoRestore).unwrap();
        rvm.set_range(t, r, 8 * i, 8).unwrap().fill(i as u8 + 1);
        rvm.end_transaction(t, CommitMode::Flush).unwrap();
    }
    rvm.abandon();
}

fn poke(path: &Path, offset: u64, bytes: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.write_all_at(bytes, offset).unwrap();
}

fn recovered(e: &Env) -> Vec<u8> {
    let mut rvm = Rvm::initialize(Options::new(&e.log)).unwrap();
    let r = rvm.map(&spec(&e.data), MapOptions::default()).unwrap();
    rvm.region(r).unwrap().to_vec()
}

fn expected(n: u64) -> Vec<u8> {
    let mut v = vec![0u8; 64];
    for i in 0..n as usize {
        v[8 * i..8 * i + 8].fill(i as u8 + 1);
    }
    v
}

#[test]
fn torn_last_record_is_ignored_and_earlier_ones_recovered() {
    let e = env();
    commit_and_crash(&e, 3);
    // Damage the tail half of the third record, as a crash mid-write would.
    poke(&e.log, RECORDS + 2 * REC8 + 40, &[0xAB; 16]);
    let mut rvm = Rvm::initialize(Options::new(&e.log)).unwrap();
    let rep = rvm.recovery_report();
    assert!(rep.torn_tail, "{rep:?}");
    assert_eq!(rep.records_replayed, 2);
    let r = rvm.map(&spec(&e.data), MapOptions::default()).unwrap();
    assert_eq!(rvm.region(r).unwrap(), &expected(2)[..]);
}

#[test]
fn damaged_record_followed_by_valid_one_is_refused() {
    let e = env();
    commit_and_crash(&e, 3);
    let before = std::fs::read(&e.data).unwrap();
    poke(&e.log, RECORDS + REC8 + 50, &[0xCD]); // the body of the middle record
    for _ in 0..2 {
        assert!(matches!(
            Rvm::initialize(Options::new(&e.log)),
            Err(Error::CorruptLog { offset, .. }) if offset == REC8
        ));
    }
    // Nothing was applied: the data file is as the crash left it.
    assert_eq!(std::fs::read(&e.data).unwrap(), before);
}

#[test]
fn torn_status_write_falls_back_to_the_other_copy() {
    let e = env();
    commit_and_crash(&e, 2);
    // Recovery applies the two records, then writes its "empty log" status to copy 1.
    let rvm = Rvm::initialize(Options::new(&e.log)).unwrap();
    assert_eq!(rvm.recovery_report().records_replayed, 2);
    drop(rvm);
    // Tear that write: the older copy (head before the two records) is used and the
    // records, still in the log, are replayed again. Recovery is idempotent.
    poke(&e.log, 4096 + 100, &[0xFF; 8]);
    let mut rvm = Rvm::initialize(Options::new(&e.log)).unwrap();
    assert_eq!(rvm.recovery_report().records_replayed, 2);
    let r = rvm.map(&spec(&e.data), MapOptions::default()).unwrap();
    assert_eq!(rvm.region(r).unwrap(), &expected(2)[..]);
}

#[test]
fn damaged_newest_status_copy_with_records_is_refused_not_misread() {
    let e = env();
    // The newest copy (written by `map`) holds the segment table the records need;
    // damaged after the fact, the older copy cannot name their segment: a typed error.
    commit_and_crash(&e, 2);
    poke(&e.log, 100, &[0xFF; 8]);
    assert!(matches!(
        Rvm::initialize(Options::new(&e.log)),
        Err(Error::CorruptLog { .. })
    ));
}

#[test]
fn both_status_copies_damaged_is_an_error() {
    let e = env();
    commit_and_crash(&e, 1);
    poke(&e.log, 100, &[0xFF; 8]);
    poke(&e.log, 4096 + 100, &[0xFF; 8]);
    assert!(matches!(
        Rvm::initialize(Options::new(&e.log)),
        Err(Error::StatusBlockDamaged(_))
    ));
}

#[test]
fn wrong_magic_is_an_error() {
    let e = env();
    std::fs::write(&e.log, vec![7u8; MIN_LOG_LEN as usize]).unwrap();
    assert!(matches!(
        Rvm::initialize(Options::new(&e.log)),
        Err(Error::BadMagic(_))
    ));
    std::fs::write(&e.log, b"short").unwrap();
    assert!(matches!(
        Rvm::initialize(Options::new(&e.log)),
        Err(Error::BadMagic(_))
    ));
}

#[test]
fn log_of_the_wrong_size_is_an_error() {
    let e = env();
    commit_and_crash(&e, 2);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&e.log)
        .unwrap();
    f.set_len(MIN_LOG_LEN + 4096).unwrap();
    assert!(matches!(
        Rvm::initialize(Options::new(&e.log)),
        Err(Error::LogSizeMismatch { expected, actual })
            if expected == MIN_LOG_LEN && actual == MIN_LOG_LEN + 4096
    ));
    // Restoring the size restores the log: nothing was lost.
    f.set_len(MIN_LOG_LEN).unwrap();
    assert_eq!(recovered(&e), expected(2));
}

#[test]
fn short_data_segment_is_an_error_unless_extending() {
    let e = env();
    std::fs::write(&e.data, [1u8; 10]).unwrap();
    let mut rvm = Rvm::initialize(Options::new(&e.log)).unwrap();
    assert!(matches!(
        rvm.map(&spec(&e.data), MapOptions::default()),
        Err(Error::SegmentTooShort {
            len: 10,
            needed: 64,
            ..
        })
    ));
    assert_eq!(std::fs::read(&e.data).unwrap(), [1u8; 10]);
    let missing = e.data.with_extension("missing");
    assert!(matches!(
        rvm.map(&spec(&missing), MapOptions::default()),
        Err(Error::Io(err)) if err.kind() == std::io::ErrorKind::NotFound
    ));
    let r = rvm
        .map(
            &spec(&e.data),
            MapOptions {
                create: false,
                extend: true,
            },
        )
        .unwrap();
    assert_eq!(
        &rvm.region(r).unwrap()[..11],
        &[1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    );
    assert!(matches!(
        rvm.map(&RegionSpec::new(&e.data, 100, 0), MapOptions::default()),
        Err(Error::InvalidRegion(_))
    ));
    assert!(matches!(
        rvm.map(
            &RegionSpec::new(&e.data, u64::MAX, 2),
            MapOptions::default()
        ),
        Err(Error::InvalidRegion(_))
    ));
}

#[test]
fn out_of_range_set_range_and_unknown_ids_are_errors() {
    let e = env();
    let mut rvm = Rvm::initialize(Options::new(&e.log)).unwrap();
    let r = rvm
        .map(&spec(&e.data), MapOptions::create_or_extend())
        .unwrap();
    let t = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    for (off, len) in [(60, 5), (64, 1), (u64::MAX, 2), (0, 65)] {
        assert!(matches!(
            rvm.set_range(t, r, off, len),
            Err(Error::RangeOutOfBounds { region_len: 64, .. })
        ));
    }
    rvm.set_range(t, r, 0, 64).unwrap().fill(5);
    rvm.end_transaction(t, CommitMode::Flush).unwrap();
    assert!(matches!(
        rvm.set_range(t, r, 0, 1),
        Err(Error::UnknownTransaction(_))
    ));
    assert!(matches!(
        rvm.abort_transaction(t),
        Err(Error::UnknownTransaction(_))
    ));
    rvm.unmap(r).unwrap();
    let t = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    assert!(matches!(
        rvm.set_range(t, r, 0, 1),
        Err(Error::UnknownRegion(_))
    ));
    assert!(matches!(rvm.unmap(r), Err(Error::UnknownRegion(_))));
    assert_eq!(std::fs::read(&e.data).unwrap(), vec![5u8; 64]);
}
