//! Injected failures of reads (`IoOp::Read`): a read that fails is an I/O error, never
//! taken for a file of another kind or for "nothing there", and nothing is lost.

use rio_cache::group::Coordinator;
use rio_cache::{Error, Faults, IoFile, IoOp, RioCache, RioOptions, Writeback};

/// A group coordinator whose header cannot be read is an I/O error: reported as "not a
/// group coordinator" (`Corrupt`), it invites the user to delete the file that holds
/// the group's decisions.
#[test]
fn a_coordinator_whose_header_read_fails_is_an_io_error_not_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("coordinator");
    drop(Coordinator::open(&path, true, Faults::none()).unwrap());
    let counting = Faults::counting();
    drop(Coordinator::open(&path, false, counting.clone()).unwrap());
    let calls = counting.calls();
    assert!(
        !calls.is_empty(),
        "opening an existing coordinator reads its header"
    );
    for (n, call) in calls.iter().enumerate() {
        assert_eq!((call.op, call.file), (IoOp::Read, IoFile::Coordinator));
        for errno in [libc::EIO, libc::ENOSPC] {
            let faults = Faults::counting();
            faults.fail_at(n as u64, errno);
            match Coordinator::open(&path, false, faults.clone()) {
                Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(errno)),
                other => panic!("read {n} failing with {errno}: {other:?}"),
            }
        }
    }
    // And a file that really is too short is still refused as not a coordinator.
    std::fs::write(&path, b"short").unwrap();
    assert!(matches!(
        Coordinator::open(&path, false, Faults::none()),
        Err(Error::Corrupt { .. })
    ));
}

/// Every read an open makes (the disk header, the memory image's header, the intent
/// record, the cold load's reads) fails in turn, warm and cold: the open reports an I/O
/// error, and the next open finds every byte. (vista's `tests/faults.rs` does the same
/// for the opens that recover crashed states, with the journal's and the coordinator's
/// reads.)
#[test]
fn every_read_of_an_open_can_fail_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let shm = dir.path().join("shm");
    std::fs::create_dir_all(&shm).unwrap();
    let opts = |f: &Faults| {
        RioOptions::new()
            .size(1 << 16)
            .writeback(Writeback::Manual)
            .cache_dir(&shm)
            .faults(f.clone())
    };
    let path = dir.path().join("seg");
    {
        let mut c = RioCache::open(&path, &opts(&Faults::none())).unwrap();
        c.window(0, 4).unwrap().copy_from_slice(b"ckpt");
        c.checkpoint().unwrap();
        c.window(100, 4).unwrap().copy_from_slice(b"more");
        c.close().unwrap();
    }
    let lose_image = || {
        for e in std::fs::read_dir(&shm).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
    };
    for start in ["warm", "cold"] {
        if start == "cold" {
            lose_image();
        }
        let counting = Faults::counting();
        RioCache::open(&path, &opts(&counting))
            .unwrap()
            .close()
            .unwrap();
        let reads: Vec<usize> = counting
            .calls()
            .iter()
            .enumerate()
            .filter(|(_, c)| c.op == IoOp::Read)
            .map(|(i, _)| i)
            .collect();
        assert!(reads.len() >= 2, "{start}: {:?}", counting.calls());
        for &n in &reads {
            if start == "cold" {
                lose_image();
            }
            let faults = Faults::counting();
            faults.fail_at(n as u64, libc::EIO);
            match RioCache::open(&path, &opts(&faults)) {
                Err(Error::Io { source, .. }) => {
                    assert_eq!(source.raw_os_error(), Some(libc::EIO));
                }
                other => panic!("{start}: read {n} failing: {other:?}"),
            }
            let c = RioCache::open(&path, &opts(&Faults::none()))
                .unwrap_or_else(|e| panic!("{start}: after read {n} failed: {e}"));
            assert_eq!(c.read(0, 4).unwrap(), b"ckpt", "{start}: read {n}");
            assert_eq!(c.read(100, 4).unwrap(), b"more", "{start}: read {n}");
            c.close().unwrap();
        }
    }
}
