//! Normal operation: commits, aborts, several open transactions, truncation, locking,
//! map/unmap.

use lrvm::{
    create_log, CommitMode, CreateMode, Error, MapOptions, Options, RegionSpec, RestoreMode, Rvm,
    Tunables, MIN_LOG_LEN,
};
use std::path::{Path, PathBuf};

struct Env {
    _dir: tempfile::TempDir,
    log: PathBuf,
    data: PathBuf,
}

fn env(log_len: u64) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let data = dir.path().join("data");
    create_log(&log, log_len, CreateMode::CreateNew).unwrap();
    Env {
        log,
        data,
        _dir: dir,
    }
}

fn open(log: &Path) -> Rvm {
    Rvm::initialize(Options::new(log)).unwrap()
}

#[test]
fn flushed_commit_survives_reopen_and_abort_restores() {
    let e = env(1 << 20);
    let mut rvm = open(&e.log);
    let r = rvm
        .map(
            &RegionSpec::new(&e.data, 0, 1000),
            MapOptions::create_or_extend(),
        )
        .unwrap();
    let t = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    rvm.set_range(t, r, 10, 4).unwrap().copy_from_slice(b"abcd");
    rvm.end_transaction(t, CommitMode::Flush).unwrap();

    // Overlapping set_ranges in one transaction: abort must restore the original bytes.
    let t = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    rvm.set_range(t, r, 8, 4).unwrap().fill(b'X');
    rvm.set_range(t, r, 10, 6).unwrap().fill(b'Y');
    assert_eq!(&rvm.region(r).unwrap()[8..16], b"XXYYYYYY");
    rvm.abort_transaction(t).unwrap();
    assert_eq!(&rvm.region(r).unwrap()[8..16], b"\0\0abcd\0\0");
    assert!(matches!(
        rvm.end_transaction(t, CommitMode::Flush),
        Err(Error::UnknownTransaction(_))
    ));
    assert_eq!(rvm.stats().aborts, 1);
    drop(rvm);

    let mut rvm = open(&e.log);
    let r = rvm
        .map(&RegionSpec::new(&e.data, 0, 1000), MapOptions::default())
        .unwrap();
    assert_eq!(&rvm.region(r).unwrap()[8..16], b"\0\0abcd\0\0");
}

#[test]
fn no_restore_cannot_abort_but_can_commit() {
    let e = env(1 << 20);
    let mut rvm = open(&e.log);
    let r = rvm
        .map(
            &RegionSpec::new(&e.data, 0, 64),
            MapOptions::create_or_extend(),
        )
        .unwrap();
    let t = rvm.begin_transaction(RestoreMode::NoRestore).unwrap();
    rvm.set_range(t, r, 0, 2).unwrap().copy_from_slice(b"hi");
    assert!(matches!(
        rvm.abort_transaction(t),
        Err(Error::NoRestoreAbort(_))
    ));
    rvm.end_transaction(t, CommitMode::NoFlush).unwrap();
    rvm.close().unwrap();
    let mut rvm = open(&e.log);
    let r = rvm
        .map(&RegionSpec::new(&e.data, 0, 64), MapOptions::default())
        .unwrap();
    assert_eq!(&rvm.region(r).unwrap()[..2], b"hi");
}

#[test]
fn several_open_transactions_commit_their_own_ranges() {
    let e = env(1 << 20);
    let mut rvm = open(&e.log);
    let r = rvm
        .map(
            &RegionSpec::new(&e.data, 0, 64),
            MapOptions::create_or_extend(),
        )
        .unwrap();
    let ta = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    let tb = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    rvm.set_range(ta, r, 0, 4).unwrap().fill(1);
    rvm.set_range(tb, r, 8, 4).unwrap().fill(2);
    rvm.end_transaction(tb, CommitMode::Flush).unwrap();
    rvm.abort_transaction(ta).unwrap();
    let tc = rvm.begin_transaction(RestoreMode::NoRestore).unwrap();
    rvm.set_range(tc, r, 16, 1).unwrap().fill(3);
    // `a`'s bytes were written to memory but `a` never committed: after ta crash they are gone.
    let ta2 = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    rvm.set_range(ta2, r, 0, 4).unwrap().fill(9);
    rvm.end_transaction(tc, CommitMode::Flush).unwrap();
    rvm.abandon();
    let mut rvm = open(&e.log);
    let r = rvm
        .map(&RegionSpec::new(&e.data, 0, 64), MapOptions::default())
        .unwrap();
    let m = rvm.region(r).unwrap();
    assert_eq!(&m[..4], &[0; 4]);
    assert_eq!(&m[8..12], &[2; 4]);
    assert_eq!(m[16], 3);
}

#[test]
fn truncation_runs_concurrently_and_applies_to_the_data_file() {
    let e = env(MIN_LOG_LEN);
    let mut rvm = Rvm::initialize(Options::new(&e.log).flush_buffer_size(4096)).unwrap();
    let r = rvm
        .map(
            &RegionSpec::new(&e.data, 0, 8192),
            MapOptions::create_or_extend(),
        )
        .unwrap();
    let mut model = vec![0u8; 8192];
    for i in 0..2000u64 {
        let t = rvm.begin_transaction(RestoreMode::NoRestore).unwrap();
        let off = (i * 97) % 8000;
        let v = (i % 251) as u8 + 1;
        rvm.set_range(t, r, off, 64).unwrap().fill(v);
        model[off as usize..off as usize + 64].fill(v);
        let mode = if i % 3 == 0 {
            CommitMode::Flush
        } else {
            CommitMode::NoFlush
        };
        rvm.end_transaction(t, mode).unwrap();
    }
    let s = rvm.stats();
    assert!(s.truncations > 10, "{s:?}");
    // Each epoch covers a synced prefix; commits keep going to the rest of the log while
    // it runs on the background thread.
    assert!(s.commits_during_epoch > 0, "{s:?}");
    assert!(s.log_used <= s.log_capacity);
    rvm.truncate().unwrap();
    assert_eq!(rvm.stats().log_used, 0);
    assert_eq!(std::fs::read(&e.data).unwrap(), model);
    assert_eq!(rvm.region(r).unwrap(), &model[..]);
}

#[test]
fn inline_truncation_when_background_is_off() {
    let e = env(MIN_LOG_LEN);
    let mut rvm = Rvm::initialize(Options::new(&e.log).background_truncation(false)).unwrap();
    let r = rvm
        .map(
            &RegionSpec::new(&e.data, 0, 4096),
            MapOptions::create_or_extend(),
        )
        .unwrap();
    for i in 0..300u64 {
        let t = rvm.begin_transaction(RestoreMode::Restore).unwrap();
        rvm.set_range(t, r, i % 4000, 80).unwrap().fill(i as u8);
        rvm.end_transaction(t, CommitMode::Flush).unwrap();
    }
    let s = rvm.stats();
    assert!(s.truncations > 0 && s.commits_during_epoch == 0, "{s:?}");
}

#[test]
fn options_round_trip_and_are_validated() {
    let e = env(1 << 20);
    let mut rvm = open(&e.log);
    assert_eq!(rvm.query_options(), Tunables::default());
    let t = Tunables {
        truncate_threshold: 0.25,
        flush_buffer_size: 8192,
        ..Tunables::default()
    };
    rvm.set_options(t).unwrap();
    assert_eq!(rvm.query_options(), t);
    let bad = Tunables {
        truncate_threshold: 1.5,
        ..t
    };
    assert!(matches!(rvm.set_options(bad), Err(Error::InvalidOption(_))));
    assert_eq!(rvm.query_options(), t);
    drop(rvm);
    assert!(matches!(
        Rvm::initialize(Options::new(&e.log).flush_buffer_size(10)),
        Err(Error::InvalidOption(_))
    ));
}

#[test]
fn log_and_segments_are_locked() {
    let e = env(1 << 20);
    let mut rvm = open(&e.log);
    assert!(matches!(
        Rvm::initialize(Options::new(&e.log)),
        Err(Error::LogLocked(_))
    ));
    let r = rvm
        .map(
            &RegionSpec::new(&e.data, 0, 100),
            MapOptions::create_or_extend(),
        )
        .unwrap();
    let log2 = e.log.with_extension("2");
    create_log(&log2, 1 << 20, CreateMode::CreateNew).unwrap();
    let mut other = open(&log2);
    assert!(matches!(
        other.map(
            &RegionSpec::new(&e.data, 200, 100),
            MapOptions::create_or_extend()
        ),
        Err(Error::SegmentLocked(_))
    ));
    // A second region of the same segment in the same instance is fine; an overlap is not.
    let r2 = rvm
        .map(
            &RegionSpec::new(&e.data, 100, 100),
            MapOptions::create_or_extend(),
        )
        .unwrap();
    assert!(matches!(
        rvm.map(
            &RegionSpec::new(&e.data, 150, 10),
            MapOptions::create_or_extend()
        ),
        Err(Error::RegionOverlap(_))
    ));
    let t = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    rvm.set_range(t, r2, 0, 3).unwrap().copy_from_slice(b"xyz");
    assert!(matches!(rvm.unmap(r2), Err(Error::RegionBusy(_))));
    rvm.end_transaction(t, CommitMode::NoFlush).unwrap();
    rvm.unmap(r2).unwrap();
    assert!(matches!(rvm.region(r2), Err(Error::UnknownRegion(_))));
    assert_eq!(rvm.segment_paths().len(), 1);
    // Unmapping the last region applies the log and releases the lock.
    rvm.unmap(r).unwrap();
    assert!(rvm.segment_paths().is_empty());
    assert_eq!(&std::fs::read(&e.data).unwrap()[100..103], b"xyz");
    other
        .map(
            &RegionSpec::new(&e.data, 200, 100),
            MapOptions::create_or_extend(),
        )
        .unwrap();
}

#[test]
fn create_log_modes() {
    let e = env(1 << 20);
    assert!(matches!(
        create_log(&e.log, 1 << 20, CreateMode::CreateNew),
        Err(Error::LogExists(_))
    ));
    assert!(matches!(
        create_log(&e.log, MIN_LOG_LEN - 1, CreateMode::Overwrite),
        Err(Error::LogTooSmall { .. })
    ));
    create_log(&e.log, MIN_LOG_LEN, CreateMode::Overwrite).unwrap();
    assert_eq!(std::fs::metadata(&e.log).unwrap().len(), MIN_LOG_LEN);
    open(&e.log);
}

#[test]
fn oversized_transaction_is_refused_before_it_writes() {
    let e = env(MIN_LOG_LEN);
    let mut rvm = open(&e.log);
    let r = rvm
        .map(
            &RegionSpec::new(&e.data, 0, 64 * 1024),
            MapOptions::create_or_extend(),
        )
        .unwrap();
    let t = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    rvm.set_range(t, r, 0, 10_000).unwrap().fill(1);
    assert!(matches!(
        rvm.set_range(t, r, 10_000, 10_000),
        Err(Error::TransactionTooLarge { .. })
    ));
    rvm.end_transaction(t, CommitMode::Flush).unwrap();
    // A transaction that nearly fills the log forces truncation of the previous one.
    let t = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    rvm.set_range(t, r, 20_000, 12_000).unwrap().fill(2);
    rvm.end_transaction(t, CommitMode::Flush).unwrap();
    assert!(rvm.stats().truncations >= 1);
}

#[test]
fn remapping_an_unmapped_region_sees_its_committed_values() {
    let e = env(1 << 20);
    let mut rvm = open(&e.log);
    let keep = rvm
        .map(
            &RegionSpec::new(&e.data, 0, 100),
            MapOptions::create_or_extend(),
        )
        .unwrap();
    let spec = RegionSpec::new(&e.data, 100, 100);
    let r = rvm.map(&spec, MapOptions::create_or_extend()).unwrap();
    let t = rvm.begin_transaction(RestoreMode::Restore).unwrap();
    rvm.set_range(t, r, 0, 4).unwrap().copy_from_slice(b"kept");
    rvm.end_transaction(t, CommitMode::NoFlush).unwrap();
    // The segment stays mapped through `keep`; the value must not be stuck in the log.
    rvm.unmap(r).unwrap();
    let r = rvm.map(&spec, MapOptions::default()).unwrap();
    assert_eq!(&rvm.region(r).unwrap()[..4], b"kept");
    assert_eq!(rvm.region(keep).unwrap(), &[0u8; 100][..]);
}
