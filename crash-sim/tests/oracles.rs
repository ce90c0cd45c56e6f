//! The oracles and durability rules say no when they should: hand-made recovered
//! states with a partial transaction, a lost acknowledged commit, a key never written, a
//! hole, and a power-loss state newer than the last checkpoint.

use crash_sim::engine::{engine, EngineConfig, OpKind};
use crash_sim::oracle::{verify, Expectation};
use crash_sim::workload::{op_kind, plan, Workload};
use crash_sim::{CrashModel, EngineKind, WorkloadKind};

const OPS: u64 = 5000;
const SEED: u64 = 42;

fn eng(kind: EngineKind) -> Box<dyn crash_sim::engine::Engine> {
    engine(
        kind,
        EngineConfig {
            dir: std::env::temp_dir().join("crash-sim-oracle-unused"),
            state_len: 4096,
            protection: vista::Protection::None,
            emulate_power_loss: true,
        },
    )
}

fn after(wl: &dyn Workload, base: &[u8], j: u64) -> Vec<u8> {
    let mut s = base.to_vec();
    for t in plan(wl, base, SEED, j, OPS) {
        t.apply(&mut s);
    }
    s
}

fn check(
    kind: EngineKind,
    wl: &dyn Workload,
    model: CrashModel,
    acked: u64,
    state: &[u8],
) -> Result<u64, String> {
    let e = eng(kind);
    let base = wl.initial();
    verify(
        &Expectation {
            engine: &*e,
            workload: wl,
            model,
            base: &base,
            seed: SEED,
            ops: OPS,
            acked,
        },
        state,
    )
}

#[test]
fn the_op_schedule_starts_with_every_kind() {
    let kinds: Vec<OpKind> = (1..=6).map(|i| op_kind(SEED, i, OPS)).collect();
    for k in [
        OpKind::Commit,
        OpKind::Abort,
        OpKind::Durable,
        OpKind::Checkpoint,
    ] {
        assert!(kinds.contains(&k));
    }
    assert_eq!(op_kind(SEED, OPS, OPS), OpKind::Close);
}

#[test]
fn bank_accepts_whole_prefixes_and_rejects_half_a_transfer() {
    let wl = WorkloadKind::Bank.build();
    let base = wl.initial();
    for acked in [0, 1, 5, 9] {
        for j in [acked, acked + 1] {
            let s = after(&*wl, &base, j);
            assert!(check(EngineKind::Vista, &*wl, CrashModel::Process, acked, &s).is_ok());
        }
    }
    // Op 1 committed, op 2 aborted: its debit alone is half a transfer.
    let txns = plan(&*wl, &base, SEED, 4, OPS);
    let mut s = after(&*wl, &base, 1);
    let (off, bytes) = &txns[3].writes[0];
    s[*off as usize..*off as usize + 8].copy_from_slice(bytes);
    let err = check(EngineKind::Vista, &*wl, CrashModel::Process, 3, &s).unwrap_err();
    assert!(err.contains("total"), "{err}");
    // The count without the balances.
    let mut s = after(&*wl, &base, 3);
    s[..8].copy_from_slice(&txns[3].writes[2].1);
    let err = check(EngineKind::Vista, &*wl, CrashModel::Process, 3, &s).unwrap_err();
    assert!(err.contains("whole transfers"), "{err}");
}

#[test]
fn a_lost_acknowledged_commit_is_a_violation_where_it_was_promised() {
    let wl = WorkloadKind::Kv.build();
    let base = wl.initial();
    let s = after(&*wl, &base, 3);
    // vista, process crash: op 4 (a commit) was acknowledged and is gone.
    let err = check(EngineKind::Vista, &*wl, CrashModel::Process, 4, &s).unwrap_err();
    assert!(err.contains("lost") && err.contains("keys"), "{err}");
    // lrvm-noflush: op 4 was a NoFlush commit; losing it (a suffix) is allowed...
    assert!(check(EngineKind::LrvmNoFlush, &*wl, CrashModel::Power, 4, &s).is_ok());
    // ...but not op 3, a Flush (durable) commit.
    let s2 = after(&*wl, &base, 2);
    let err = check(EngineKind::LrvmNoFlush, &*wl, CrashModel::Power, 4, &s2).unwrap_err();
    assert!(err.contains("lost"), "{err}");
    // lrvm-flush promises every commit.
    assert!(check(EngineKind::LrvmFlush, &*wl, CrashModel::Power, 4, &s).is_err());
}

#[test]
fn vista_after_power_loss_must_be_exactly_the_last_checkpoint() {
    let wl = WorkloadKind::Bank.build();
    let base = wl.initial();
    // Ops: 1 commit, 2 abort, 3 durable, 4 commit, 5 checkpoint, 6 commit.
    let at = |j| after(&*wl, &base, j);
    // 3 acknowledged, op 4 (a commit) in flight: the last checkpoint is op 3.
    assert!(check(EngineKind::Vista, &*wl, CrashModel::Power, 3, &at(3)).is_ok());
    let err = check(EngineKind::Vista, &*wl, CrashModel::Power, 3, &at(4)).unwrap_err();
    assert!(err.contains("last completed checkpoint"), "{err}");
    assert!(check(EngineKind::Vista, &*wl, CrashModel::Power, 3, &at(1)).is_err());
    // 4 acknowledged and op 5 (a checkpoint) in flight: its state (= op 4's) is allowed.
    assert!(check(EngineKind::Vista, &*wl, CrashModel::Power, 4, &at(5)).is_ok());
    // A process crash keeps every acknowledged commit.
    assert!(check(EngineKind::Vista, &*wl, CrashModel::Process, 4, &at(4)).is_ok());
    assert!(check(EngineKind::Vista, &*wl, CrashModel::Process, 4, &at(3)).is_err());
}

#[test]
fn kv_rejects_keys_never_written_partial_transactions_and_holes() {
    let wl = WorkloadKind::Kv.build();
    let base = wl.initial();
    let txns = plan(&*wl, &base, SEED, 8, OPS);
    // A key nobody wrote.
    let mut s = after(&*wl, &base, 1);
    s[8 + 16 * 200..8 + 16 * 201].copy_from_slice(&[7; 16]);
    let err = check(EngineKind::LrvmFlush, &*wl, CrashModel::Process, 1, &s).unwrap_err();
    assert!(err.contains("never written"), "{err}");
    // The aborted op 2's writes are never committed either.
    let mut s = after(&*wl, &base, 1);
    txns[1].writes.iter().for_each(|(o, b)| {
        s[*o as usize..*o as usize + b.len()].copy_from_slice(b);
    });
    let err = check(EngineKind::LrvmFlush, &*wl, CrashModel::Process, 1, &s).unwrap_err();
    assert!(err.contains("never written"), "{err}");
    // Half of a multi-key transaction.
    let (i, multi) = txns
        .iter()
        .enumerate()
        .find(|(_, t)| t.kind == OpKind::Commit && t.writes.len() > 2)
        .expect("a commit with two keys");
    let mut s = after(&*wl, &base, i as u64);
    let (o, b) = &multi.writes[0];
    s[*o as usize..*o as usize + b.len()].copy_from_slice(b);
    let err = check(
        EngineKind::LrvmFlush,
        &*wl,
        CrashModel::Process,
        i as u64,
        &s,
    )
    .unwrap_err();
    assert!(err.contains("partial"), "{err}");
    // A later transaction present, an earlier one missing.
    let mut s = after(&*wl, &base, 3);
    for (o, b) in &txns[5].writes {
        s[*o as usize..*o as usize + b.len()].copy_from_slice(b);
    }
    let err = check(EngineKind::LrvmNoFlush, &*wl, CrashModel::Process, 6, &s).unwrap_err();
    assert!(
        err.contains("not a prefix") || err.contains("next_key"),
        "{err}"
    );
}
