//! A model test: random transactions, aborts, crashes, reopens, checkpoints and power
//! losses against two `Vec<u8>`s (what is committed, and what is durable on disk).
//!
//! A crash is simulated exactly: the bytes of the disk file, journal and memory image
//! are captured at the crash instant (the memory image *is* what a killed process leaves
//! behind), the handles are dropped, and the captured bytes are written back in place
//! before reopening. Real SIGKILLs are in `crash.rs`.

mod common;

use common::{pattern, Place};
use proptest::prelude::*;
use vista::{Protection, Segment, StartKind};

const SIZE: u64 = 16 << 10;

#[derive(Debug, Clone)]
enum End {
    Commit,
    CommitDurable,
    Abort,
    Drop,
    /// The process dies with the transaction open.
    Crash,
}

#[derive(Debug, Clone)]
enum Step {
    Tx {
        writes: Vec<(u64, usize, u8, bool)>,
        end: End,
    },
    Checkpoint,
    Reopen,
    CrashIdle,
    PowerLoss,
}

fn write_strategy() -> impl Strategy<Value = (u64, usize, u8, bool)> {
    (0..SIZE, 1usize..600, any::<u8>(), any::<bool>()).prop_map(|(off, len, g, via_set_range)| {
        (off.min(SIZE - len as u64), len, g, via_set_range)
    })
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let end = prop_oneof![
        4 => Just(End::Commit),
        1 => Just(End::CommitDurable),
        2 => Just(End::Abort),
        1 => Just(End::Drop),
        2 => Just(End::Crash),
    ];
    prop_oneof![
        8 => (prop::collection::vec(write_strategy(), 0..6), end)
            .prop_map(|(writes, end)| Step::Tx { writes, end }),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
        1 => Just(Step::CrashIdle),
        1 => Just(Step::PowerLoss),
    ]
}

fn opts(p: &Place, protection: Protection) -> vista::Options {
    p.opts(SIZE).protection(protection)
}

fn crash_and_reopen(
    p: &Place,
    snap: &common::Snapshot,
    power_loss: bool,
    protection: Protection,
) -> Segment {
    snap.restore();
    if power_loss {
        p.lose_power();
    }
    Segment::open(&p.path, &opts(p, protection)).expect("reopen")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, ..ProptestConfig::default() })]

    // Under mprotect, undo records and the lane's tail are written through the memory
    // image; without protection, through a window: both paths are modelled.
    #[test]
    fn segment_matches_model_mprotect(steps in prop::collection::vec(step_strategy(), 1..24)) {
        run(&steps, Protection::Mprotect)?;
    }

    // Under the alias, every write goes through the private writable mapping.
    #[test]
    fn segment_matches_model_alias(steps in prop::collection::vec(step_strategy(), 1..24)) {
        run(&steps, Protection::Alias)?;
    }

    // Under protection keys, through windows in the key-tagged view (skipped, with a
    // note, on a machine without keys; scripts/pkey-vm runs it in one with them).
    #[test]
    fn segment_matches_model_pkey(steps in prop::collection::vec(step_strategy(), 1..24)) {
        if common::pkeys_here() {
            run(&steps, Protection::Pkey)?;
        }
    }

    #[test]
    fn segment_matches_model_unprotected(steps in prop::collection::vec(step_strategy(), 1..24)) {
        run(&steps, Protection::None)?;
    }
}

fn run(steps: &[Step], protection: Protection) -> Result<(), TestCaseError> {
    {
        let p = Place::new();
        let mut seg = Segment::open(&p.path, &opts(&p, protection)).unwrap();
        let mut committed = vec![0u8; SIZE as usize];
        let mut durable = committed.clone();

        for step in steps.iter().cloned() {
            match step {
                Step::Tx { writes, end } => {
                    let mut tx = seg.begin().unwrap();
                    let mut working = committed.clone();
                    for (off, len, g, via_set_range) in &writes {
                        let data = pattern(*g, *len);
                        if *via_set_range {
                            tx.set_range(*off, *len as u64)
                                .unwrap()
                                .copy_from_slice(&data);
                        } else {
                            tx.write(*off, &data).unwrap();
                        }
                        working[*off as usize..*off as usize + len].copy_from_slice(&data);
                        prop_assert_eq!(tx.read(*off, *len as u64).unwrap(), &data[..]);
                    }
                    match end {
                        End::Commit => {
                            tx.commit().unwrap();
                            committed = working;
                        }
                        End::CommitDurable => {
                            tx.commit_durable().unwrap();
                            committed = working;
                            durable.clone_from(&committed);
                        }
                        End::Abort => tx.abort().unwrap(),
                        End::Drop => drop(tx),
                        End::Crash => {
                            let snap = p.snapshot();
                            drop(tx);
                            drop(seg);
                            seg = crash_and_reopen(&p, &snap, false, protection);
                            prop_assert_eq!(seg.start_kind(), StartKind::Warm);
                            let rolled = seg.recovery().lanes_rolled_back;
                            prop_assert_eq!(rolled, u32::from(!writes.is_empty()));
                        }
                    }
                }
                Step::Checkpoint => {
                    seg.checkpoint().unwrap();
                    durable.clone_from(&committed);
                }
                Step::Reopen => {
                    drop(seg); // a clean close checkpoints
                    durable.clone_from(&committed);
                    seg = Segment::open(&p.path, &opts(&p, protection)).unwrap();
                    prop_assert_eq!(seg.start_kind(), StartKind::Warm);
                }
                Step::CrashIdle => {
                    let snap = p.snapshot();
                    drop(seg);
                    seg = crash_and_reopen(&p, &snap, false, protection);
                }
                Step::PowerLoss => {
                    let snap = p.snapshot();
                    drop(seg);
                    seg = crash_and_reopen(&p, &snap, true, protection);
                    prop_assert!(matches!(seg.start_kind(), StartKind::Cold(_)));
                    committed.clone_from(&durable);
                }
            }
            prop_assert!(
                seg.read(0, SIZE).unwrap() == committed[..],
                "segment differs from the model"
            );
        }
    }
    Ok(())
}
