//! A status block whose checksum is valid but whose `head` is near u64::MAX
//! (a damaged or hostile log file) must be refused with an error, not panic on the
//! overflow of `head + capacity` in the recovery scan.

use lrvm::{create_log, CreateMode, Options, Rvm, MIN_LOG_LEN};
use std::os::unix::fs::FileExt;

const COPY_LEN: usize = 4096;
const CRC_AT: usize = COPY_LEN - 4;

#[test]
fn a_status_head_near_u64_max_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    create_log(&log, MIN_LOG_LEN, CreateMode::CreateNew).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log)
        .unwrap();
    // Both copies get the same damage, each with a valid checksum.
    for copy in 0..2u64 {
        let mut b = vec![0u8; COPY_LEN];
        f.read_exact_at(&mut b, copy * COPY_LEN as u64).unwrap();
        if b[..8] != *b"LRVMLOG\0" {
            continue;
        }
        b[32..40].copy_from_slice(&(u64::MAX - 16).to_le_bytes()); // head
        b[48..56].copy_from_slice(&(u64::MAX - 16).to_le_bytes()); // tail hint
        let crc = crc32fast::hash(&b[..CRC_AT]);
        b[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        f.write_all_at(&b, copy * COPY_LEN as u64).unwrap();
    }
    drop(f);
    let got = std::panic::catch_unwind(|| Rvm::initialize(Options::new(&log)).map(drop));
    match got {
        Ok(r) => assert!(r.is_err(), "a head near u64::MAX was accepted"),
        Err(p) => panic!("Rvm::initialize panicked on a checksum-valid status block: {p:?}"),
    }
}
