//! `create_log(.., CreateMode::Overwrite)` on a log that a running instance
//! holds must be refused (`LogLocked`) without touching it. It opens the file with
//! `truncate(true)` before it takes the lock, so the refusal comes after the live log
//! was already emptied: flushed commits not yet applied to the segment are lost.

use lrvm::{
    create_log, CommitMode, CreateMode, Error, MapOptions, Options, RegionSpec, RestoreMode, Rvm,
    MIN_LOG_LEN,
};

#[test]
fn overwriting_a_log_in_use_is_refused_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let data = dir.path().join("data");
    create_log(&log, MIN_LOG_LEN, CreateMode::CreateNew).unwrap();
    let spec = RegionSpec::new(&data, 0, 64);
    let mut rvm = Rvm::initialize(Options::new(&log)).unwrap();
    let r = rvm.map(&spec, MapOptions::create_or_extend()).unwrap();
    let t = rvm.begin_transaction(RestoreMode::NoRestore).unwrap();
    rvm.set_range(t, r, 0, 8).unwrap().fill(0xab);
    // Durable in the log once this returns (not yet applied to the segment).
    rvm.end_transaction(t, CommitMode::Flush).unwrap();
    let before = std::fs::read(&log).unwrap();

    // Another caller (a setup script, another process) asks to recreate the log.
    let refused = create_log(&log, MIN_LOG_LEN, CreateMode::Overwrite);
    assert!(matches!(refused, Err(Error::LogLocked(_))), "{refused:?}");
    let after = std::fs::read(&log).unwrap();
    assert!(
        before == after,
        "the refused create_log changed the live log ({} bytes before, {} after)",
        before.len(),
        after.len()
    );

    // A crash now: the flushed commit must be recovered.
    rvm.abandon();
    let mut rvm = Rvm::initialize(Options::new(&log)).unwrap();
    let r = rvm.map(&spec, MapOptions::default()).unwrap();
    assert_eq!(rvm.region(r).unwrap()[..8], [0xab; 8]);
}
