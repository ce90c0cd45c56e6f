//! docs/lrvm.md, Recovery step 1: "If a *valid* record follows a damaged one, committed
//! data would silently vanish, so recovery refuses with `CorruptLog` and writes
//! nothing." The scan checks this only when the damaged record's header is intact and
//! its body is not; a damaged *header* in the middle of the log ends the scan as if the
//! log ended there, and recovery replays the prefix, resets the log (head = that end)
//! and reports success: the acknowledged (`Flush`) commits after it are gone, and the
//! reset lets new records overwrite them.

use lrvm::{
    create_log, CommitMode, CreateMode, Error, MapOptions, Options, RegionSpec, RestoreMode, Rvm,
    MIN_LOG_LEN,
};
use std::os::unix::fs::FileExt;

/// Status copies live at 0 and 4096; records start at 8192.
const RECORDS: u64 = 8192;
/// A record with one 8-byte range: 32-byte header + 16-byte range header + 8 bytes.
const REC8: u64 = 56;

#[test]
fn a_damaged_record_header_followed_by_valid_records_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let data = dir.path().join("data");
    create_log(&log, MIN_LOG_LEN, CreateMode::CreateNew).unwrap();
    let spec = RegionSpec::new(&data, 0, 64);
    // Three acknowledged (flushed) transactions, then a crash.
    let mut rvm = Rvm::initialize(Options::new(&log)).unwrap();
    let r = rvm.map(&spec, MapOptions::create_or_extend()).unwrap();
    for i in 0..3u64 {
        let t = rvm.begin_transaction(RestoreMode::NoRestore).unwrap();
        rvm.set_range(t, r, 8 * i, 8).unwrap().fill(i as u8 + 1);
        rvm.end_transaction(t, CommitMode::Flush).unwrap();
    }
    rvm.abandon();
    let before = std::fs::read(&data).unwrap();
    // One byte of the middle record's header (its range count) goes bad.
    let f = std::fs::OpenOptions::new().write(true).open(&log).unwrap();
    f.write_all_at(&[0xCD], RECORDS + REC8 + 4).unwrap();
    drop(f);

    let got = Rvm::initialize(Options::new(&log));
    let outcome = match &got {
        Ok(rvm) => format!(
            "recovered: {:?}, data now {:?}",
            rvm.recovery_report(),
            std::fs::read(&data).unwrap()
        ),
        Err(e) => format!("{e}"),
    };
    assert!(
        matches!(got, Err(Error::CorruptLog { .. })),
        "two acknowledged commits follow the damaged header; {outcome}"
    );
    assert_eq!(std::fs::read(&data).unwrap(), before, "nothing applied");
}
