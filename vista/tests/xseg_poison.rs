//! A transaction across segments whose member's cache is poisoned while it runs (a
//! checkpoint of that member failed) must not commit: `Transaction::commit` refuses a
//! poisoned cache and rolls back, and so must the group's commit, in every member.

mod common;

use std::time::Duration;

use common::Place;
use rio_cache::Faults;
use vista::{Error, Group, Segment};

#[test]
fn a_group_commit_refuses_a_member_whose_checkpoint_failed_meanwhile() {
    let p = Place::new();
    let q = Place::new();
    let faults = Faults::counting();
    let opts = |pl: &Place| {
        pl.opts(1 << 16)
            .lanes(2)
            .checkpoint_wait(Duration::from_secs(5))
            .faults(faults.clone())
    };
    let members = vec![
        Segment::open(&p.path, &opts(&p)).unwrap(),
        Segment::open(&q.path, &opts(&q)).unwrap(),
    ];
    let g = Group::open(p.dir.path().join("coord"), members, &opts(&p)).unwrap();
    g.segment(0).transaction(|tx| tx.put(0, &1u64)).unwrap();
    // The checkpoint of member 0 is held at its first I/O operation, then fails there.
    let n = faults.count();
    faults.pause_at(n);
    std::thread::scope(|s| {
        let ckpt = s.spawn(|| g.segment(0).checkpoint());
        faults
            .wait_paused(Duration::from_secs(10))
            .expect("the checkpoint reaches its first operation");
        let mut gtx = g.begin().unwrap();
        gtx.on(0).unwrap().put(8, &7u64).unwrap();
        gtx.on(1).unwrap().put(8, &7u64).unwrap();
        faults.fail_at(n, libc::EIO);
        faults.resume();
        assert!(ckpt.join().unwrap().is_err(), "the checkpoint failed");
        let committed = gtx.commit();
        assert!(
            matches!(committed, Err(Error::Poisoned(_))),
            "a group commit over a poisoned member: {committed:?}"
        );
    });
    // Neither member shows the transaction.
    assert_eq!(g.segment(1).get::<u64>(8).unwrap(), 0);
    drop(g);
    let first = Segment::open(&p.path, &p.opts(1 << 16).lanes(2)).unwrap();
    let second = Segment::open(&q.path, &q.opts(1 << 16).lanes(2)).unwrap();
    assert_eq!(
        first.get::<u64>(8).unwrap(),
        0,
        "member 0 kept a refused transaction"
    );
    assert_eq!(
        second.get::<u64>(8).unwrap(),
        0,
        "member 1 kept a refused transaction"
    );
    assert_eq!(first.get::<u64>(0).unwrap(), 1);
}
