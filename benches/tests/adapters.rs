//! Every adapter of this build, through every workload, for a handful of transactions; then
//! the workload's own check reads the data back. A broken adapter fails here.

use benches::engine::Engine;
use benches::lrvm::Rvm;
use benches::registry::{all_engines, OpenOptions};
use benches::vista::Vista;
use benches::workload::debit_credit::DebitCredit;
use benches::workload::order_entry::OrderEntry;
use benches::workload::synthetic::Synthetic;
use benches::workload::{Family, Scale, Workload};
use lrvm::{CommitMode, RestoreMode};

#[test]
fn every_adapter_keeps_every_workloads_data() {
    let scratch = tempfile::tempdir().unwrap();
    let mut ran = 0;
    for spec in all_engines() {
        if let Err(reason) = spec.supported() {
            eprintln!("{}: skipped ({reason})", spec.name);
            continue;
        }
        for family in Family::ALL {
            let mut cases = family.cases(&[], 1 << 20, Scale::Tiny);
            if family == Family::Synthetic {
                // Fresh engine per case, so the check can compare every byte with a model.
                cases = [8, 4097, 65536]
                    .into_iter()
                    .map(|n| Box::new(Synthetic::new(1 << 20, n).with_model()) as Box<dyn Workload>)
                    .collect();
            }
            for mut w in cases {
                let layout = w.layout();
                let mut e = spec
                    .open(OpenOptions {
                        layout: &layout,
                        scratch: scratch.path(),
                    })
                    .unwrap();
                let what = format!("{} on {}", w.name(), spec.name);
                w.load(e.as_mut())
                    .unwrap_or_else(|err| panic!("{what}: load: {err:#}"));
                for _ in 0..40 {
                    w.run_one(e.as_mut())
                        .unwrap_or_else(|err| panic!("{what}: {err:#}"));
                }
                assert_eq!(w.committed(), 40);
                w.check(e.as_mut())
                    .unwrap_or_else(|err| panic!("{what}: check: {err:#}"));
                ran += 1;
            }
        }
    }
    // floor x2, vista x3, rvm x8, lmdb x2, sqlite x2 (pkey engines skip here); 9 cases each
    // (synthetic x3, debit-credit, order-entry, sps x4).
    assert!(ran >= 17 * 9, "too few adapters ran: {ran}");
}

#[test]
fn a_failed_body_leaves_no_trace_in_any_engine() {
    let scratch = tempfile::tempdir().unwrap();
    let layout = benches::engine::Layout::pages(64 << 10, 4096);
    let mut no_restore = 0;
    for spec in all_engines() {
        if spec.supported().is_err() {
            continue;
        }
        let mut e = spec
            .open(OpenOptions {
                layout: &layout,
                scratch: scratch.path(),
            })
            .unwrap();
        e.transact(&mut |t| t.write(4000, &[7; 200])).unwrap();
        let failed = e.transact(&mut |t| {
            t.write(4090, &[9; 100])?;
            anyhow::bail!("give up")
        });
        assert!(failed.is_err(), "{}", spec.name);
        let mut got = [0u8; 300];
        let read = e.transact(&mut |t| t.read(3950, &mut got));
        if !spec.can_abort {
            // RVM's no-restore mode cannot undo: the adapter must refuse to go on rather
            // than let later transactions commit on top of the failed one's writes.
            let err = read.expect_err(spec.name);
            assert!(
                format!("{err:#}").contains("no-restore"),
                "{}: {err:#}",
                spec.name
            );
            no_restore += 1;
            continue;
        }
        read.unwrap();
        assert!(got[..50].iter().all(|&b| b == 0), "{}", spec.name);
        assert!(
            got[50..250].iter().all(|&b| b == 7),
            "{}: rolled-back write visible",
            spec.name
        );
        assert!(got[250..].iter().all(|&b| b == 0), "{}", spec.name);
    }
    assert_eq!(no_restore, 4, "the four rvm no-restore configurations");
}

/// Runs `n` transactions of `w` on `e`, reopens `e` (vista: close and warm start; RVM:
/// close, recover from the log, map again) and checks the data.
fn survives_reopen<E: Engine>(
    what: &str,
    e: &mut E,
    w: &mut dyn Workload,
    n: u64,
    reopen: impl Fn(&mut E) -> anyhow::Result<()>,
) {
    w.load(e)
        .unwrap_or_else(|err| panic!("{what}: load: {err:#}"));
    for _ in 0..n {
        w.run_one(e).unwrap_or_else(|err| panic!("{what}: {err:#}"));
    }
    w.check(e)
        .unwrap_or_else(|err| panic!("{what}: check: {err:#}"));
    reopen(e).unwrap_or_else(|err| panic!("{what}: reopen: {err:#}"));
    w.check(e)
        .unwrap_or_else(|err| panic!("{what}: check after reopen: {err:#}"));
}

fn workloads() -> Vec<Box<dyn Workload>> {
    vec![
        // 200 x 64 KiB: 13 MB of redo records, so RVM's 4 MiB log truncates several times.
        Box::new(Synthetic::new(1 << 20, 65536).with_model()),
        Box::new(Synthetic::new(1 << 20, 24).with_model()),
        Box::new(DebitCredit::new(Scale::Tiny)),
        Box::new(OrderEntry::new(Scale::Tiny)),
    ]
}

#[test]
fn vista_segments_hold_their_data_across_a_reopen() {
    let scratch = tempfile::tempdir().unwrap();
    for protection in [vista::Protection::None, vista::Protection::Mprotect] {
        for mut w in workloads() {
            let mut e = Vista::open(
                &w.layout(),
                scratch.path(),
                protection,
                vista::Writeback::Manual,
            )
            .unwrap();
            let image = e.image_path().unwrap();
            let what = format!("{} on vista {protection:?}", w.name());
            survives_reopen(&what, &mut e, w.as_mut(), 200, Vista::reopen);
            drop(e);
            assert!(!image.exists(), "{what}: {} left behind", image.display());
        }
    }
}

#[test]
fn rvm_logs_truncate_and_recover_the_data() {
    let scratch = tempfile::tempdir().unwrap();
    for (restore, commit) in [
        (RestoreMode::Restore, CommitMode::Flush),
        (RestoreMode::NoRestore, CommitMode::NoFlush),
    ] {
        for mut w in workloads() {
            let mut e = Rvm::open(&w.layout(), scratch.path(), restore, commit).unwrap();
            let what = format!("{} on rvm {restore:?} {commit:?}", w.name());
            let big = w.txn_bytes() == Some(65536);
            survives_reopen(&what, &mut e, w.as_mut(), 200, |e| {
                if big {
                    // Checked before the reopen, which truncates the whole log itself.
                    let s = e.stats();
                    assert!(
                        s.truncations >= 2,
                        "{what}: only {} truncations",
                        s.truncations
                    );
                    assert!(e
                        .counters()
                        .iter()
                        .any(|&(n, v)| n == "truncations" && v >= 2));
                }
                e.reopen()
            });
        }
    }
}

#[test]
fn a_wrong_store_is_caught_by_the_checks() {
    // The checks must be able to fail: corrupt one balance behind the workload's back.
    let scratch = tempfile::tempdir().unwrap();
    let spec = &benches::registry::engines(&["floor-noguard".into()]).unwrap()[0];
    let mut w = benches::workload::debit_credit::DebitCredit::new(Scale::Tiny);
    let layout = w.layout();
    let mut e = spec
        .open(OpenOptions {
            layout: &layout,
            scratch: scratch.path(),
        })
        .unwrap();
    for _ in 0..10 {
        w.run_one(e.as_mut()).unwrap();
    }
    w.check(e.as_mut()).unwrap();
    e.transact(&mut |t| t.write(layout.offset_of(1, 3), &[1]))
        .unwrap();
    assert!(w.check(e.as_mut()).is_err());
}
