//! A property test against the simplest model of the cache: a `Vec<u8>` for the memory
//! image and a copy of it as of the last checkpoint for the disk image. Random sequences
//! of writes, checkpoints, warm reopens and power losses (image dropped, cold start).

mod common;

use common::{disk_path, opts, TestDir, PAGE};
use proptest::prelude::*;
use rio_cache::{ColdReason, Protection, RioCache, StartKind};

/// Three pages and a partial fourth: the tail page is only partly data.
const SIZE: u64 = 3 * PAGE + 100;

#[derive(Debug, Clone)]
enum Op {
    /// One update with these windows (offset, bytes).
    Update(Vec<(u64, Vec<u8>)>),
    /// Two disjoint windows opened together, filled with one byte each.
    Pair(u64, u64, u64, u8),
    Checkpoint,
    /// Close (with a final checkpoint if the handle was opened with one) and reopen
    /// warm; the next handle checkpoints on close if the flag says so.
    Reopen(bool),
    /// Close, lose the memory image, reopen cold.
    PowerLoss(bool),
}

fn window() -> impl Strategy<Value = (u64, Vec<u8>)> {
    (0..SIZE).prop_flat_map(|off| {
        let max = (SIZE - off).min(2 * PAGE) as usize;
        (Just(off), proptest::collection::vec(any::<u8>(), 1..=max))
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => proptest::collection::vec(window(), 1..4).prop_map(Op::Update),
        1 => (0..SIZE, 0..SIZE, 1..PAGE, any::<u8>()).prop_map(|(a, b, n, v)| Op::Pair(a, b, n, v)),
        2 => Just(Op::Checkpoint),
        1 => any::<bool>().prop_map(Op::Reopen),
        1 => any::<bool>().prop_map(Op::PowerLoss),
    ]
}

fn run(ops: &[Op], protection: Protection) -> Result<(), TestCaseError> {
    let tmp = TestDir::new();
    let dir = tmp.path();
    let open = |ckpt_on_close: bool| {
        RioCache::open(
            disk_path(dir),
            &opts(dir, SIZE, protection).checkpoint_on_close(ckpt_on_close),
        )
        .unwrap()
    };
    let mut model = vec![0u8; SIZE as usize];
    let mut durable = model.clone();
    let mut ckpt_on_close = false;
    let mut cache = open(ckpt_on_close);
    for op in ops {
        match op {
            Op::Update(windows) => {
                let mut u = cache.update().unwrap();
                for (off, bytes) in windows {
                    u.window(*off, bytes.len() as u64)
                        .unwrap()
                        .copy_from_slice(bytes);
                    let at = *off as usize;
                    model[at..at + bytes.len()].copy_from_slice(bytes);
                }
            }
            Op::Pair(a_off, b_off, len, v) => {
                let ra = *a_off..(*a_off + len).min(SIZE);
                let rb = *b_off..(*b_off + len).min(SIZE);
                let mut u = cache.update().unwrap();
                let overlap = ra.start < rb.end && rb.start < ra.end;
                match u.window_pair(ra.clone(), rb.clone()) {
                    Ok((x, y)) => {
                        prop_assert!(!overlap);
                        x.fill(*v);
                        y.fill(v.wrapping_add(1));
                        model[ra.start as usize..ra.end as usize].fill(*v);
                        model[rb.start as usize..rb.end as usize].fill(v.wrapping_add(1));
                    }
                    Err(rio_cache::Error::Overlap(..)) => prop_assert!(overlap),
                    Err(e) => panic!("{e:?}"),
                }
            }
            Op::Checkpoint => {
                cache.checkpoint().unwrap();
                durable.clone_from(&model);
            }
            Op::Reopen(next) => {
                cache.close().unwrap();
                if ckpt_on_close {
                    durable.clone_from(&model);
                }
                ckpt_on_close = *next;
                cache = open(ckpt_on_close);
                prop_assert_eq!(cache.start_kind(), StartKind::Warm);
            }
            Op::PowerLoss(next) => {
                let image = cache.image_path().to_owned();
                cache.close().unwrap();
                if ckpt_on_close {
                    durable.clone_from(&model);
                }
                std::fs::remove_file(image).unwrap();
                ckpt_on_close = *next;
                cache = open(ckpt_on_close);
                prop_assert_eq!(cache.start_kind(), StartKind::Cold(ColdReason::NoImage));
                model.clone_from(&durable);
            }
        }
        prop_assert!(
            cache.as_slice().unwrap() == model.as_slice(),
            "after {:?}",
            op
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn cache_matches_model_mprotect(ops in proptest::collection::vec(op(), 1..24)) {
        run(&ops, Protection::Mprotect)?;
    }

    #[test]
    fn cache_matches_model_alias(ops in proptest::collection::vec(op(), 1..24)) {
        run(&ops, Protection::Alias)?;
    }

    #[test]
    fn cache_matches_model_unprotected(ops in proptest::collection::vec(op(), 1..24)) {
        run(&ops, Protection::None)?;
    }
}
