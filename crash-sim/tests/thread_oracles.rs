//! The threaded oracle (`crash_sim::threads`) accepts every serial order of the
//! committed operations with any subset of the ones in flight, and says no when it
//! should: hand-made states built from a serial replay of the threads' operations,
//! then broken one way each (a lost acknowledged commit, an invented op, an aborted op
//! present, half a transfer, a lost update, last writers no serial order explains, a
//! commit lost by power loss although a checkpoint acknowledged after it began).

use crash_sim::engine::OpKind;
use crash_sim::threads::{check_recovery, kind, verify, Acks, Expect, Shape};
use crash_sim::CrashModel;

const SEED: u64 = 0x5eed_0007;
/// The thread records and items are one 64-byte line each; the items start after 64
/// records.
const LINE: usize = 64;
const ITEMS: usize = 64 * LINE;

fn replay(shape: Shape, order: &[(u32, u64)]) -> Vec<u8> {
    let mut s = shape.initial();
    for &(t, i) in order {
        shape.apply(&mut s, SEED, t, i);
    }
    s
}

fn acks(acked: &[u64]) -> Acks {
    let mut a = Acks::default();
    for (t, &n) in (0u32..).zip(acked) {
        for i in 1..=n {
            a.ack(t, i);
        }
    }
    a
}

fn check(shape: Shape, acks: &Acks, model: CrashModel, state: &[u8]) -> Result<Vec<u64>, String> {
    let base = shape.initial();
    verify(
        &Expect {
            shape,
            base: &base,
            seed: SEED,
            threads: 4,
            acks,
            model,
        },
        state,
    )
}

/// The ops `1..=n[t]` of every thread, interleaved round-robin (or thread after thread,
/// last thread first).
fn order(n: &[u64], round_robin: bool) -> Vec<(u32, u64)> {
    let mut v = Vec::new();
    if round_robin {
        for i in 1..=*n.iter().max().unwrap_or(&0) {
            v.extend(
                (0u32..)
                    .zip(n)
                    .filter(|(_, &m)| i <= m)
                    .map(|(t, _)| (t, i)),
            );
        }
    } else {
        for (t, &m) in (0u32..).zip(n).collect::<Vec<_>>().into_iter().rev() {
            v.extend((1..=m).map(|i| (t, i)));
        }
    }
    v
}

fn committing(t: u32, i: u64) -> bool {
    matches!(kind(SEED, t, i), OpKind::Commit | OpKind::Durable)
}

#[test]
fn the_threads_schedule_starts_with_every_kind() {
    for t in 0..4 {
        let k: Vec<OpKind> = (1..=6).map(|i| kind(SEED, t, i)).collect();
        assert_eq!(
            k,
            [
                OpKind::Commit,
                OpKind::Abort,
                OpKind::Durable,
                OpKind::Commit,
                OpKind::Checkpoint,
                OpKind::Commit
            ]
        );
    }
}

#[test]
fn accepts_every_order_with_any_ops_in_flight_present_or_absent() {
    let acked = [10u64, 7, 12, 3];
    let a = acks(&acked);
    for shape in [Shape::Bank, Shape::Kv] {
        for mask in 0u32..16 {
            let n: Vec<u64> = (0u32..)
                .zip(acked)
                .map(|(t, m)| m + u64::from(mask >> t & 1))
                .collect();
            for rr in [true, false] {
                let s = replay(shape, &order(&n, rr));
                let last = check(shape, &a, CrashModel::Process, &s)
                    .unwrap_or_else(|e| panic!("{shape:?} mask {mask} rr {rr}: {e}"));
                for (t, &c) in (0u32..).zip(&last) {
                    // The record names the last committing op of the thread.
                    let want = (1..=n[t as usize]).rev().find(|&i| committing(t, i));
                    assert_eq!(c, want.unwrap_or(0));
                }
                // A recovery that undid the records of the ops in flight it reports.
                assert!(check_recovery(
                    &Expect {
                        shape,
                        base: &shape.initial(),
                        seed: SEED,
                        threads: 4,
                        acks: &a,
                        model: CrashModel::Process
                    },
                    &last,
                    (0, 0)
                )
                .is_ok());
            }
        }
    }
}

#[test]
fn refuses_a_lost_acknowledged_commit() {
    for shape in [Shape::Bank, Shape::Kv] {
        let acked = [6u64, 6, 6, 6];
        // Thread 1's op 6 (a commit) was acknowledged; the state stops at its op 4.
        let s = replay(shape, &order(&[6, 4, 6, 6], true));
        let e = check(shape, &acks(&acked), CrashModel::Process, &s).unwrap_err();
        assert!(
            e.contains("lost acknowledged operations of thread 1"),
            "{e}"
        );
    }
}

#[test]
fn refuses_an_invented_op() {
    for shape in [Shape::Bank, Shape::Kv] {
        // Thread 2 acknowledged op 3; op 4 may be in flight, op 6 cannot be there.
        let s = replay(shape, &order(&[6, 6, 6, 6], true));
        let e = check(shape, &acks(&[6, 6, 3, 6]), CrashModel::Process, &s).unwrap_err();
        assert!(e.contains("thread 2: op 6 is present"), "{e}");
        assert!(e.contains("invented"), "{e}");
    }
}

#[test]
fn refuses_an_aborted_op() {
    // Op 2 of every thread aborts: its record in the state means it was kept.
    let mut s = replay(Shape::Bank, &order(&[2, 1, 1, 1], true));
    s[8..16].copy_from_slice(&2u64.to_le_bytes());
    s[..8].copy_from_slice(&SEED.to_le_bytes());
    let e = check(Shape::Bank, &acks(&[1, 1, 1, 1]), CrashModel::Process, &s).unwrap_err();
    assert!(
        e.contains("thread 0: op 2 is present, but it was Abort"),
        "{e}"
    );
}

#[test]
fn refuses_half_a_transfer_and_a_lost_update() {
    let good = replay(Shape::Bank, &order(&[9, 9, 9, 9], true));
    let all = acks(&[9, 9, 9, 9]);
    assert!(check(Shape::Bank, &all, CrashModel::Process, &good).is_ok());
    // Half a transfer: one account changed alone.
    let mut st = good.clone();
    let bal = u64::from_le_bytes(st[ITEMS..ITEMS + 8].try_into().unwrap());
    st[ITEMS..ITEMS + 8].copy_from_slice(&(bal + 17).to_le_bytes());
    let err = check(Shape::Bank, &all, CrashModel::Process, &st).unwrap_err();
    assert!(err.contains("bank total"), "{err}");
    // A lost update: money moved between two accounts that no committed transfer
    // explains (the total holds).
    let mut st = good.clone();
    let other = u64::from_le_bytes(st[ITEMS + LINE..ITEMS + LINE + 8].try_into().unwrap());
    st[ITEMS..ITEMS + 8].copy_from_slice(&(bal + 17).to_le_bytes());
    st[ITEMS + LINE..ITEMS + LINE + 8].copy_from_slice(&other.wrapping_sub(17).to_le_bytes());
    let err = check(Shape::Bank, &all, CrashModel::Process, &st).unwrap_err();
    assert!(err.contains("account 0 holds"), "{err}");
}

/// Ops of threads 0 and 1 (committing, within the first 200) that write two slots in
/// common, and those slots.
fn two_writers_of_two_slots() -> ((u64, u64), (usize, usize)) {
    let slots_of = |t: u32, i: u64| -> Vec<usize> {
        // The slots an op changes: compare the replay of the op alone with the base.
        let s = replay(Shape::Kv, &[(t, i)]);
        let base = Shape::Kv.initial();
        (0..64)
            .filter(|k| {
                s[ITEMS + k * LINE..ITEMS + (k + 1) * LINE]
                    != base[ITEMS + k * LINE..ITEMS + (k + 1) * LINE]
            })
            .collect()
    };
    for i in (7..200).filter(|&i| committing(0, i)) {
        let a = slots_of(0, i);
        for j in (7..200).filter(|&j| committing(1, j)) {
            let common: Vec<usize> = slots_of(1, j)
                .into_iter()
                .filter(|k| a.contains(k))
                .collect();
            if common.len() >= 2 {
                return ((i, j), (common[0], common[1]));
            }
        }
    }
    panic!("no two ops share two slots");
}

#[test]
fn kv_refuses_a_lost_update_and_last_writers_no_serial_order_explains() {
    let ((i, j), (x, y)) = two_writers_of_two_slots();
    let mut prefix: Vec<(u32, u64)> = (1..i).map(|k| (0, k)).collect();
    prefix.extend((1..j).map(|k| (1, k)));
    let a_then_b: Vec<(u32, u64)> = prefix.iter().copied().chain([(0, i), (1, j)]).collect();
    let b_then_a: Vec<(u32, u64)> = prefix.iter().copied().chain([(1, j), (0, i)]).collect();
    let all = acks(&[i, j, 0, 0]);
    let ab = replay(Shape::Kv, &a_then_b);
    let ba = replay(Shape::Kv, &b_then_a);
    assert!(check(Shape::Kv, &all, CrashModel::Process, &ab).is_ok());
    assert!(check(Shape::Kv, &all, CrashModel::Process, &ba).is_ok());
    let slot = |k: usize| ITEMS + k * LINE..ITEMS + (k + 1) * LINE;
    // Slot x last written by thread 0's op, slot y by thread 1's: no serial order.
    let mut st = ab.clone();
    st[slot(x)].copy_from_slice(&ba[slot(x)]);
    let err = check(Shape::Kv, &all, CrashModel::Process, &st).unwrap_err();
    assert!(err.contains("no serial order"), "{err}");
    // A lost update: the second writer of y read the version before the first wrote.
    let mut st = ab.clone();
    let ver = u64::from_le_bytes(st[slot(y)][..8].try_into().unwrap());
    st[slot(y).start..slot(y).start + 8].copy_from_slice(&(ver - 1).to_le_bytes());
    let err = check(Shape::Kv, &all, CrashModel::Process, &st).unwrap_err();
    assert!(err.contains(&format!("slot {y} has version")), "{err}");
}

#[test]
fn power_loss_keeps_what_an_acknowledged_checkpoint_began_after() {
    // Thread 0 acknowledges ops 1..=4; thread 1 begins its checkpoint (op 5); thread 0
    // acknowledges ops 6..=7; the checkpoint returns.
    let mut a = Acks::default();
    for i in 1..=4 {
        a.ack(1, i);
        a.ack(0, i);
    }
    a.start(1, 5);
    a.ack(0, 5);
    a.ack(0, 6);
    a.ack(0, 7);
    a.ack(1, 5);
    assert_eq!(a.durable[..2], [4, 5]);
    for shape in [Shape::Bank, Shape::Kv] {
        // The checkpoint holds thread 0's ops to 4 (or later) and thread 1's to 4.
        for upto in [4, 6, 7] {
            let s = replay(shape, &order(&[upto, 4], true));
            assert!(check(shape, &a, CrashModel::Power, &s).is_ok(), "{upto}");
        }
        // Thread 0's op 4 was acknowledged before the checkpoint began: it must be there.
        let s = replay(shape, &order(&[3, 4], true));
        let e = check(shape, &a, CrashModel::Power, &s).unwrap_err();
        assert!(
            e.contains("lost acknowledged operations of thread 0"),
            "{e}"
        );
        // A process crash keeps every acknowledged commit (thread 0's op 6 too).
        let s = replay(shape, &order(&[4, 4], true));
        assert!(check(shape, &a, CrashModel::Process, &s).is_err());
    }
}

#[test]
fn recovery_reports_fit_the_ops_in_flight() {
    let shape = Shape::Bank;
    let base = shape.initial();
    // Threads 0 and 1 have op 1 (a commit, 3 records) in flight, not committed; threads
    // 2 and 3 have op 4 (a commit) in flight, committed.
    let a = acks(&[0, 0, 3, 3]);
    let e = |model| Expect {
        shape,
        base: &base,
        seed: SEED,
        threads: 4,
        acks: &a,
        model,
    };
    let last = [0, 0, 4, 4];
    assert!(check_recovery(&e(CrashModel::Process), &last, (2, 6)).is_ok());
    assert!(check_recovery(&e(CrashModel::Process), &last, (2, 7)).is_err());
    assert!(check_recovery(&e(CrashModel::Process), &last, (3, 6)).is_err());
    assert!(check_recovery(&e(CrashModel::Process), &last, (0, 1)).is_err());
    // Thread 0's op 1 shows committed: only thread 1's can have been rolled back.
    assert!(check_recovery(&e(CrashModel::Process), &[1, 0, 4, 4], (2, 6)).is_err());
    assert!(check_recovery(&e(CrashModel::Power), &last, (1, 3)).is_err());
}
