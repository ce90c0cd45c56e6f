//! Injected I/O failures: every write, sync, truncate, preallocation, map and
//! protection change that open, transactions, checkpoint, grow, close and recovery
//! make is failed in turn, one at a time, with ENOSPC, EIO and EFBIG, under every guard
//! (`rio_cache::Faults`). After each: the error is typed, no read returns stale or torn
//! bytes, no acknowledged commit is lost, and the segment reopens cleanly.
//!
//! The table of operations, failures and outcomes is in docs/crash-testing.md
//! ("Injected I/O failures").

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{guards, Place, Snapshot};
use rio_cache::{Faults, IoCall};
use vista::{Error, Protection, Segment};

const SIZE: u64 = 1 << 16;
const GROWN: u64 = 1 << 17;
const ERRNOS: [i32; 3] = [libc::ENOSPC, libc::EIO, libc::EFBIG];

fn opts(p: &Place, g: Protection, faults: &Faults) -> vista::Options {
    p.opts(SIZE)
        .protection(g)
        .lanes(2)
        .checkpoint_wait(Duration::from_millis(10))
        .faults(faults.clone())
}

/// What the scenario had acknowledged when it stopped: the value each offset must
/// hold, and whether the grow was acknowledged.
#[derive(Debug, Default, Clone)]
struct Acked {
    values: BTreeMap<u64, u64>,
    /// Offsets whose transaction failed: they must hold what they held before it.
    grown: Option<bool>,
}

/// The transactions of the scenario: (offset, value). Offsets cross cache lines and
/// pages; the last one lies in the grown part.
const TXNS: [(u64, u64); 4] = [(0, 11), (60, 22), (4092, 33), (SIZE + 100, 44)];

/// Runs the scenario until its first error; returns what was acknowledged and the
/// error (None if nothing failed). `seg` is left open (or None if the open failed).
fn scenario(p: &Place, o: &vista::Options) -> (Acked, Option<Error>, Option<Segment>) {
    let mut acked = Acked::default();
    for &(off, _) in &TXNS[..3] {
        acked.values.insert(off, 0);
    }
    let mut seg = match Segment::open(&p.path, o) {
        Ok(s) => s,
        Err(e) => return (acked, Some(e), None),
    };
    let mut step = |seg: &mut Segment, i: usize| -> vista::Result<()> {
        match i {
            0 | 1 => {
                let (off, v) = TXNS[i];
                seg.transaction(|tx| tx.put(off, &v))?;
                acked.values.insert(off, v);
            }
            2 | 7 => seg.checkpoint()?,
            3 => {
                // An aborted transaction: its bytes must never show.
                let mut tx = seg.begin()?;
                tx.put(TXNS[2].0, &999u64)?;
                tx.abort()?;
            }
            4 => {
                let (off, v) = TXNS[2];
                seg.transaction(|tx| tx.put(off, &v))?;
                acked.values.insert(off, v);
            }
            5 => {
                acked.grown = Some(false);
                seg.grow(GROWN)?;
                acked.grown = Some(true);
                acked.values.insert(TXNS[3].0, 0);
            }
            6 => {
                let (off, v) = TXNS[3];
                seg.transaction(|tx| tx.put(off, &v))?;
                acked.values.insert(off, v);
            }
            _ => unreachable!("eight steps"),
        }
        Ok(())
    };
    for i in 0..8 {
        if let Err(e) = step(&mut seg, i) {
            return (acked, Some(e), Some(seg));
        }
    }
    (acked, None, Some(seg))
}

/// A failure's kind, for the outcome table.
fn kind(e: &Error) -> String {
    match e {
        Error::Io { .. } => "Io".into(),
        Error::Poisoned(_) => "Poisoned".into(),
        Error::CheckpointBusy { .. } => "CheckpointBusy".into(),
        Error::Cache(c) => format!("Cache({})", c.to_string().split(':').next().unwrap_or("")),
        other => panic!("an injected I/O failure surfaced as {other}"),
    }
}

/// Every read either fails (the segment is poisoned) or shows exactly the acknowledged
/// state: never a stale, torn or uncommitted byte.
fn check_reads(seg: &Segment, acked: &Acked, what: &str) {
    for (&off, &want) in &acked.values {
        if off + 8 > seg.len() {
            continue;
        }
        match seg.get::<u64>(off) {
            Ok(v) => assert_eq!(v, want, "{what}: offset {off}"),
            Err(Error::Poisoned(_)) => {}
            Err(e) => panic!("{what}: offset {off}: {e}"),
        }
    }
}

/// Reopens without faults and checks the acknowledged state and the length.
fn check_reopen(p: &Place, g: Protection, acked: &Acked, what: &str) {
    let seg = Segment::open(&p.path, &opts(p, g, &Faults::none()))
        .unwrap_or_else(|e| panic!("{what}: no clean reopen: {e}"));
    match acked.grown {
        Some(true) => assert_eq!(seg.len(), GROWN, "{what}"),
        None => assert_eq!(seg.len(), SIZE, "{what}"),
        Some(false) => assert!(seg.len() == SIZE || seg.len() == GROWN, "{what}"),
    }
    for (&off, &want) in &acked.values {
        if off + 8 <= seg.len() {
            assert_eq!(seg.get::<u64>(off).unwrap(), want, "{what}: offset {off}");
        }
    }
    seg.check().unwrap_or_else(|e| panic!("{what}: {e}"));
    seg.close().unwrap_or_else(|e| panic!("{what}: close: {e}"));
}

/// Fails each operation of the live scenario in turn.
#[test]
fn every_operation_of_open_commit_checkpoint_grow_and_close_can_fail() {
    for g in guards() {
        let counting = Faults::counting();
        {
            let p = Place::new();
            let (_, err, seg) = scenario(&p, &opts(&p, g, &counting));
            assert!(err.is_none(), "{g:?}: {err:?}");
            seg.unwrap().close().unwrap();
        }
        let calls = counting.calls();
        assert!(calls.len() > 20, "{g:?}: {calls:?}");
        eprintln!("{g:?}: the scenario makes {} operations", calls.len());
        // Each guard runs every operation with one error, and a third of them with
        // each of the other two, so every (operation kind, error) pair occurs.
        let mut outcomes = BTreeMap::new();
        for (n, call) in calls.iter().enumerate() {
            for &errno in &ERRNOS {
                let what = format!("{g:?}: operation {n} ({call}) fails with errno {errno}");
                let p = Place::new();
                let faults = Faults::counting();
                faults.fail_at(n as u64, errno);
                let (acked, err, seg) = scenario(&p, &opts(&p, g, &faults));
                let close = seg.map(|seg| {
                    check_reads(&seg, &acked, &what);
                    seg.close()
                });
                let failed: Option<IoCall> = faults.failed().map(|(c, _)| c);
                assert_eq!(failed.as_ref(), Some(call), "{what}: another operation");
                // The failure surfaces as a typed error of the step it hit, or of the
                // close (a failed checkpoint poisons; a failed open writes nothing).
                let outcome = match (&err, &close) {
                    (Some(e), _) => kind(e),
                    (None, Some(Err(e))) => format!("close: {}", kind(e)),
                    (None, _) => "no error (nothing depended on it)".to_owned(),
                };
                outcomes
                    .entry((format!("{call}"), outcome))
                    .or_insert_with(Vec::new)
                    .push(n);
                check_reopen(&p, g, &acked, &what);
            }
        }
        for ((call, outcome), ns) in &outcomes {
            eprintln!("{g:?}\t{call}\t{outcome}\t{} cases", ns.len());
        }
    }
}

/// States a crash leaves, each recovered by an open whose every operation fails in
/// turn: a transaction to roll back (warm start), a lost memory image (cold start),
/// a committed checkpoint journal to install, and a segment of format version 1 (cold
/// start; the open upgrades its header).
#[test]
fn every_operation_of_recovery_can_fail() {
    for g in guards() {
        for state in ["rollback", "cold", "journal", "version 1"] {
            let p = Place::new();
            let acked = crashed(&p, g, state);
            let snap: Snapshot = p.snapshot();
            let counting = Faults::counting();
            drop(Segment::open(&p.path, &opts(&p, g, &counting)).unwrap());
            let calls = counting.calls();
            assert!(calls.len() > 3, "{g:?} {state}: {calls:?}");
            eprintln!("{g:?}: recovery of '{state}': {} operations", calls.len());
            for (n, call) in calls.iter().enumerate() {
                for &errno in &ERRNOS {
                    let what = format!(
                        "{g:?}: recovery of '{state}': operation {n} ({call}) fails with {errno}"
                    );
                    snap.restore();
                    let faults = Faults::counting();
                    faults.fail_at(n as u64, errno);
                    match Segment::open(&p.path, &opts(&p, g, &faults)) {
                        Ok(seg) => {
                            check_reads(&seg, &acked, &what);
                            drop(seg);
                        }
                        Err(Error::Io { .. } | Error::Cache(_) | Error::Poisoned(_)) => {}
                        // The group checkpoint's journal waits for its coordinator, whose
                        // read (or the sync of its decision) failed.
                        Err(Error::CoordinatorUnavailable { .. }) if state == "journal" => {}
                        Err(e) => panic!("{what}: an untyped or misleading error: {e}"),
                    }
                    check_reopen(&p, g, &acked, &what);
                }
            }
        }
    }
}

/// Leaves `p` as a crash would in `state`; returns what was acknowledged.
fn crashed(p: &Place, g: Protection, state: &str) -> Acked {
    let faults = Faults::counting();
    let seg = Segment::open(&p.path, &opts(p, g, &faults)).unwrap();
    let mut acked = Acked::default();
    for &(off, v) in &TXNS[..2] {
        seg.transaction(|tx| tx.put(off, &v)).unwrap();
        acked.values.insert(off, v);
    }
    match state {
        "rollback" => {
            // An unfinished transaction, leaked: the close cannot checkpoint, and the
            // memory image keeps its published undo record for recovery.
            std::thread::scope(|s| {
                s.spawn(|| {
                    let mut tx = seg.begin().unwrap();
                    tx.put(TXNS[2].0, &999u64).unwrap();
                    tx.put(TXNS[0].0, &999u64).unwrap();
                    std::mem::forget(tx);
                });
            });
            acked.values.insert(TXNS[2].0, 0);
            assert!(seg.close().is_err());
        }
        "cold" => {
            seg.close().unwrap();
            p.lose_power();
        }
        "version 1" => {
            seg.close().unwrap();
            p.lose_power();
            // Every copy of the header says version 1 (docs/format.md, "Compatibility").
            let mut b = std::fs::read(&p.path).unwrap();
            assert!(!common::set_format_version(&mut b, 1).is_empty());
            common::write_in_place(&p.path, &b);
        }
        _ => {
            // A group checkpoint whose journal commits (its epoch decided), then whose
            // install fails: the journal stays committed for the next open to install.
            // (A checkpoint of one segment writes no journal.)
            let group = |p: &Place, seg: Segment, f: &Faults| {
                vista::Group::open(p.dir.path().join("coordinator"), vec![seg], &opts(p, g, f))
                    .unwrap()
            };
            let seg = group(p, seg, &faults);
            seg.segment(0)
                .transaction(|tx| tx.put(TXNS[2].0, &TXNS[2].1))
                .unwrap();
            acked.values.insert(TXNS[2].0, TXNS[2].1);
            let dry = Faults::counting();
            let q = Place::new();
            let s2 = group(
                &q,
                Segment::open(&q.path, &opts(&q, g, &dry)).unwrap(),
                &dry,
            );
            for &(off, v) in &TXNS[..3] {
                s2.segment(0).transaction(|tx| tx.put(off, &v)).unwrap();
            }
            let before = dry.count();
            s2.checkpoint().unwrap();
            let install = dry.calls()[before as usize..]
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.op == rio_cache::IoOp::Write && c.file == rio_cache::IoFile::Disk
                })
                .map(|(i, _)| i as u64)
                .next()
                .expect("a checkpoint installs pages");
            drop(s2);
            faults.fail_at(faults.count() + install, libc::EIO);
            assert!(seg.checkpoint().is_err());
            drop(seg);
            assert!(
                std::fs::metadata(p.journal()).unwrap().len() > 0,
                "a committed journal is left"
            );
        }
    }
    acked
}
