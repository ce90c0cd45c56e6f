//! The transaction API: what commits, what aborts, what is refused.

mod common;

use common::Place;
use vista::{Error, Segment, StartKind};

#[test]
fn commit_keeps_abort_and_drop_undo() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(64 << 10)).unwrap();
    assert_eq!(seg.start_kind(), StartKind::Created);
    assert_eq!(seg.len(), 64 << 10);

    let mut tx = seg.begin().unwrap();
    tx.write(10, b"committed").unwrap();
    assert_eq!(tx.read(10, 9).unwrap(), b"committed");
    tx.commit().unwrap();
    assert_eq!(seg.read(10, 9).unwrap(), b"committed");

    let mut tx = seg.begin().unwrap();
    tx.write(10, b"ABORTED!!").unwrap();
    tx.set_range(5000, 3).unwrap().copy_from_slice(b"xyz");
    tx.abort().unwrap();
    assert_eq!(seg.read(10, 9).unwrap(), b"committed");
    assert_eq!(seg.read(5000, 3).unwrap(), [0, 0, 0]);

    {
        let mut tx = seg.begin().unwrap();
        tx.write(10, b"dropped!!").unwrap();
    }
    assert_eq!(seg.read(10, 9).unwrap(), b"committed");
}

#[test]
fn overlapping_and_repeated_ranges_roll_back_to_the_oldest_image() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(64 << 10)).unwrap();
    seg.transaction(|tx| tx.write(0, &[1u8; 64])).unwrap();
    let mut tx = seg.begin().unwrap();
    tx.write(0, &[2u8; 32]).unwrap();
    let used = tx.undo_log_usage().0;
    tx.write(8, &[3u8; 8]).unwrap(); // inside a logged range: not logged again
    assert_eq!(tx.undo_log_usage().0, used);
    tx.write(16, &[4u8; 48]).unwrap(); // overlaps: logged, with the newer before-image
    assert!(tx.undo_log_usage().0 > used);
    tx.abort().unwrap();
    assert_eq!(seg.read(0, 64).unwrap(), &[1u8; 64][..]);
}

#[test]
fn a_range_inside_any_line_of_a_logged_range_is_not_logged_again() {
    // The lane skips its search of recent ranges when a filter of logged lines says no
    // range covers the new one's first line: the filter must know every line of a
    // logged range (not only its first), including ranges of 64 lines and more, and
    // lines that share its bit must still be searched and logged.
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(64 << 10)).unwrap();
    let fill: Vec<u8> = (0..16 << 10).map(|i| (i % 251) as u8).collect();
    seg.transaction(|tx| tx.write(0, &fill)).unwrap();
    for _ in 0..2 {
        // Twice: the filter starts empty in each transaction of the lane.
        let mut tx = seg.begin().unwrap();
        assert_eq!(tx.undo_log_usage().0, 0);
        tx.write(0, &[1u8; 256]).unwrap(); // lines 0..4
        let used = tx.undo_log_usage().0;
        tx.write(130, &[2u8; 8]).unwrap(); // line 2: inside
        tx.write(192, &[2u8; 64]).unwrap(); // line 3: inside
        assert_eq!(tx.undo_log_usage().0, used);
        tx.write(64 * 64 + 130, &[3u8; 8]).unwrap(); // line 66 shares line 2's bit
        let used = tx.undo_log_usage().0;
        assert!(used > 0);
        tx.write(8192, &[4u8; 8192]).unwrap(); // 128 lines: every bit
        let used = tx.undo_log_usage().0;
        tx.write(8192 + 8190, &[5u8; 2]).unwrap(); // its last line: inside
        assert_eq!(tx.undo_log_usage().0, used);
        tx.write(8192 + 8190, &[5u8; 4]).unwrap(); // past its end: logged
        assert!(tx.undo_log_usage().0 > used);
        tx.abort().unwrap();
        assert_eq!(seg.read(0, 16 << 10).unwrap(), &fill[..]);
    }
}

#[test]
fn closure_commits_on_ok_aborts_on_err_and_panic() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(4096)).unwrap();
    let v = seg
        .transaction(|tx| {
            tx.put(0, &7u64)?;
            tx.get::<u64>(0)
        })
        .unwrap();
    assert_eq!(v, 7);
    let r: Result<(), Error> = seg.transaction(|tx| {
        tx.put(0, &8u64)?;
        Err(Error::InvalidOptions("user error".into()))
    });
    assert!(r.is_err());
    assert_eq!(seg.get::<u64>(0).unwrap(), 7);
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = seg.transaction(|tx| {
            tx.put(0, &9u64)?;
            panic!("boom");
            #[allow(unreachable_code)]
            Ok::<_, Error>(())
        });
    }));
    assert!(caught.is_err());
    assert_eq!(seg.get::<u64>(0).unwrap(), 7);
}

#[test]
fn out_of_range_is_refused_without_logging() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(4096)).unwrap();
    let mut tx = seg.begin().unwrap();
    assert!(matches!(
        tx.write(4090, &[0; 7]),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(
        tx.set_range(u64::MAX, 2),
        Err(Error::OutOfRange { .. })
    ));
    assert!(matches!(tx.read(4097, 0), Err(Error::OutOfRange { .. })));
    assert_eq!(tx.undo_log_usage().0, 0);
    tx.write(4089, &[5; 7]).unwrap(); // the last bytes are fine
    tx.commit().unwrap();
    assert!(matches!(seg.read(0, 4097), Err(Error::OutOfRange { .. })));
}

#[test]
fn full_undo_log_leaves_the_transaction_usable() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(1 << 20).undo_log_size(4096)).unwrap();
    let cap = seg.undo_log_capacity();
    assert!(cap >= 4096);
    let mut tx = seg.begin().unwrap();
    tx.write(0, &[1; 1000]).unwrap();
    let err = tx.write(10_000, &vec![2; cap as usize]).unwrap_err();
    assert!(matches!(err, Error::UndoLogFull { .. }), "{err}");
    tx.commit().unwrap();
    assert_eq!(seg.read(0, 1000).unwrap(), &[1; 1000][..]);
    assert_eq!(seg.read(10_000, 10).unwrap(), &[0; 10][..]);

    let mut tx = seg.begin().unwrap();
    tx.write(0, &[3; 1000]).unwrap();
    assert!(tx.write(10_000, &vec![2; cap as usize]).is_err());
    tx.abort().unwrap();
    assert_eq!(seg.read(0, 1000).unwrap(), &[1; 1000][..]);
}

#[test]
fn reopen_is_warm_and_commit_durable_survives_power_loss() {
    let p = Place::new();
    let opts = p.opts(64 << 10);
    {
        let seg = Segment::open(&p.path, &opts).unwrap();
        let mut tx = seg.begin().unwrap();
        tx.write(100, b"durable").unwrap();
        tx.commit_durable().unwrap();
        seg.transaction(|tx| tx.write(200, b"memory only")).unwrap();
        // Simulate an abrupt end: no close-time checkpoint may run, so forget nothing
        // but copy the files as a crash would leave them.
        let snap = p.snapshot();
        drop(seg);
        snap.restore();
    }
    {
        let seg = Segment::open(&p.path, &opts).unwrap();
        assert_eq!(seg.start_kind(), StartKind::Warm);
        assert_eq!(seg.read(100, 7).unwrap(), b"durable");
        assert_eq!(seg.read(200, 11).unwrap(), b"memory only");
        let snap = p.snapshot();
        drop(seg);
        snap.restore();
    }
    p.lose_power();
    let seg = Segment::open(&p.path, &opts).unwrap();
    assert!(matches!(seg.start_kind(), StartKind::Cold(_)));
    assert_eq!(seg.read(100, 7).unwrap(), b"durable");
    assert_eq!(seg.read(200, 11).unwrap(), &[0; 11][..], "not checkpointed");
}

#[test]
fn existing_segment_keeps_its_shape() {
    let p = Place::new();
    drop(Segment::open(&p.path, &p.opts(8192)).unwrap());
    let seg = Segment::open(&p.path, &p.opts(1 << 20)).unwrap();
    assert_eq!(seg.len(), 8192);
}

#[test]
fn second_open_is_locked() {
    let p = Place::new();
    let _seg = Segment::open(&p.path, &p.opts(4096)).unwrap();
    assert!(matches!(
        Segment::open(&p.path, &p.opts(4096)),
        Err(Error::Locked { .. })
    ));
}

#[test]
fn remove_deletes_the_segment_its_journal_and_its_memory_image() {
    let p = Place::new();
    let opts = p.opts(4096);
    Segment::open(&p.path, &opts).unwrap().close().unwrap();
    assert!(p.path.exists() && p.journal().exists() && p.image().exists());
    Segment::remove(&p.path, &opts).unwrap();
    assert!(!p.path.exists() && !p.journal().exists() && !p.image().exists());
    Segment::remove(&p.path, &opts).unwrap(); // nothing left: still fine
}

/// An open segment is not removed, from this process or another: its locks are taken
/// first, and nothing is deleted, not even its fence (deleted first, a group member's
/// fence would be gone while the member still holds transactions only its group's
/// checkpoint may write back).
#[test]
fn remove_refuses_an_open_segment_and_deletes_nothing() {
    let p = Place::new();
    let opts = p.opts(4096);
    let seg = Segment::open(&p.path, &opts).unwrap();
    let fence = vista::fence_path(&p.path);
    std::fs::write(&fence, b"").unwrap();
    let err = Segment::remove(&p.path, &opts).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err}");
    assert!(p.path.exists() && p.journal().exists() && p.image().exists() && fence.exists());
    seg.close().unwrap();
    Segment::remove(&p.path, &opts).unwrap();
    assert!(!p.path.exists() && !p.journal().exists() && !p.image().exists() && !fence.exists());
}
