//! Injected I/O failures in heap calls, and in the undo of a heap call that failed part
//! way (docs/design.md, "A call that fails part way: all or nothing"). Every write,
//! sync, truncate, map and protection change of a scenario of allocations and frees
//! that run into `UndoLogFull` is failed in turn, with ENOSPC and EIO, under every
//! guard. After each: the error is typed, and a reopen finds a clean heap holding
//! exactly the acknowledged blocks with their values.
//!
//! Under `Mprotect` the undo of a failed call makes a system call of its own: the store
//! that cuts the lane's tail back is a `pwrite` into the memory image. When that one
//! fails, the call must report the undo's I/O error (not `UndoLogFull`: the transaction
//! is not usable any more), poison the segment, and the next open must roll the whole
//! transaction back.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{guards, Place};
use rio_cache::{Faults, IoFile, IoOp};
use vista::{Error, PPtr, Protection, Segment};

const SIZE: u64 = 1 << 20;
const BLOCK: u64 = 64;
const ERRNOS: [i32; 2] = [libc::ENOSPC, libc::EIO];

fn opts(p: &Place, g: Protection, faults: &Faults) -> vista::Options {
    p.opts(SIZE)
        .protection(g)
        .lanes(2)
        .undo_log_size(4096)
        .checkpoint_wait(Duration::from_millis(10))
        .faults(faults.clone())
}

/// The live blocks a reopen must find (offset → the value in its first 8 bytes).
type Live = BTreeMap<u64, u64>;

/// Where the scenario's failing call ran: the operation numbers `[start, end)` it and
/// its undo made (known only in a run without failures).
#[derive(Debug, Default)]
struct Undo {
    ops: Option<(u64, u64)>,
}

/// Runs the scenario until its first error; returns the acknowledged live blocks and
/// the error. The segment is closed (or dropped, if the close failed).
fn scenario(
    p: &Place,
    o: &vista::Options,
    faults: &Faults,
    undo: &mut Undo,
) -> (Live, Option<Error>) {
    let mut live = Live::new();
    let seg = match Segment::open(&p.path, o) {
        Ok(s) => s,
        Err(e) => return (live, Some(e)),
    };
    let run = |live: &mut Live, undo: &mut Undo| -> vista::Result<()> {
        let mut blocks: Vec<PPtr<[u8]>> = Vec::new();
        // 1. A few blocks, committed.
        let made = seg.transaction(|tx| {
            let mut v = Vec::new();
            for i in 0..3u64 {
                let b = tx.alloc_bytes(BLOCK)?;
                tx.put(b.offset(), &(100 + i))?;
                v.push((b, 100 + i));
            }
            Ok::<_, Error>(v)
        })?;
        live.extend(made.iter().map(|(b, v)| (b.offset(), *v)));
        blocks.extend(made.iter().map(|(b, _)| *b));
        // 2. Allocations until one fails part way (UndoLogFull), then commit what fit.
        let mut tx = seg.begin()?;
        let mut made = Vec::new();
        loop {
            let before = faults.count();
            match tx.alloc_bytes(BLOCK) {
                Ok(b) => {
                    let v = 200 + made.len() as u64;
                    tx.put(b.offset(), &v)?;
                    made.push((b, v));
                }
                Err(Error::UndoLogFull { .. }) => {
                    undo.ops = Some((before, faults.count()));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        assert!(!made.is_empty(), "some allocations fit the log");
        tx.commit()?;
        live.extend(made.iter().map(|(b, v)| (b.offset(), *v)));
        blocks.extend(made.iter().map(|(b, _)| *b));
        // 3. Frees until one fails part way, then commit them.
        let mut tx = seg.begin()?;
        let mut freed = Vec::new();
        for b in blocks {
            match tx.free(b) {
                Ok(()) => freed.push(b.offset()),
                Err(Error::UndoLogFull { .. }) => break,
                Err(e) => return Err(e),
            }
        }
        tx.commit()?;
        for off in freed {
            live.remove(&off);
        }
        // 4. A checkpoint.
        seg.checkpoint()?;
        Ok(())
    };
    let err = run(&mut live, undo).err();
    let closed = seg.close().err();
    (live, err.or(closed))
}

/// Reopens without faults: a clean heap with exactly `live`, each block's value intact.
fn check_reopen(p: &Place, g: Protection, live: &Live, what: &str) {
    let seg = Segment::open(&p.path, &opts(p, g, &Faults::none()))
        .unwrap_or_else(|e| panic!("{what}: no clean reopen: {e}"));
    let report = seg.check().unwrap_or_else(|e| panic!("{what}: check: {e}"));
    assert!(report.is_clean(), "{what}: {:?}", report.problems);
    let found: Vec<u64> = seg
        .heap_blocks()
        .unwrap()
        .iter()
        .map(|b| b.offset)
        .collect();
    let want: Vec<u64> = live.keys().copied().collect();
    assert_eq!(found, want, "{what}: the live blocks");
    for (&off, &v) in live {
        assert_eq!(seg.get::<u64>(off).unwrap(), v, "{what}: block {off}");
    }
    seg.close().unwrap_or_else(|e| panic!("{what}: close: {e}"));
}

#[test]
fn every_operation_of_heap_calls_and_their_undo_can_fail() {
    for g in guards() {
        let counting = Faults::counting();
        let mut undo = Undo::default();
        let p = Place::new();
        let (live, err) = scenario(&p, &opts(&p, g, &counting), &counting, &mut undo);
        assert!(err.is_none(), "{g:?}: {err:?}");
        check_reopen(&p, g, &live, &format!("{g:?}: no failure"));
        let calls = counting.calls();
        let (start, end) = undo.ops.expect("an allocation failed part way");
        eprintln!(
            "{g:?}: {} operations; the failing call and its undo made {:?}",
            calls.len(),
            &calls[start as usize..end as usize]
        );
        let mut undo_store = None;
        if g == Protection::Mprotect {
            // The undo cuts the tail back last, through the memory image.
            let last = end - 1;
            let c = calls[last as usize];
            assert_eq!((c.op, c.file), (IoOp::Write, IoFile::Image), "{g:?}");
            undo_store = Some(last);
        }
        for (n, call) in calls.iter().enumerate() {
            for &errno in &ERRNOS {
                let what = format!("{g:?}: operation {n} ({call}) fails with errno {errno}");
                let p = Place::new();
                let faults = Faults::counting();
                faults.fail_at(n as u64, errno);
                let (live, err) =
                    scenario(&p, &opts(&p, g, &faults), &faults, &mut Undo::default());
                assert_eq!(
                    faults.failed().map(|(c, _)| c).as_ref(),
                    Some(call),
                    "{what}: another operation"
                );
                if let Some(e) = &err {
                    assert!(
                        matches!(
                            e,
                            Error::Io { .. }
                                | Error::Poisoned(_)
                                | Error::Cache(_)
                                | Error::CheckpointBusy { .. }
                        ),
                        "{what}: an untyped or misleading error: {e}"
                    );
                }
                if undo_store == Some(n as u64) {
                    // The undo of the failing call could not cut the tail back: that
                    // call reports the I/O error and the segment is poisoned.
                    assert!(
                        matches!(err, Some(Error::Io { .. })),
                        "{what}: the failed undo must be reported: {err:?}"
                    );
                }
                check_reopen(&p, g, &live, &what);
            }
        }
    }
}
