//! Every adapter of this build, through every workload, for a handful of transactions; then
//! the workload's own check reads the data back. A broken adapter fails here.

use benches::registry::{all_engines, OpenOptions};
use benches::workload::synthetic::Synthetic;
use benches::workload::{Family, Scale, Workload};

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
    assert!(ran >= 5 * 5, "too few adapters ran: {ran}");
}

#[test]
fn a_failed_body_leaves_no_trace_in_any_engine() {
    let scratch = tempfile::tempdir().unwrap();
    let layout = benches::engine::Layout::pages(64 << 10, 4096);
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
        e.transact(&mut |t| t.read(3950, &mut got)).unwrap();
        assert!(got[..50].iter().all(|&b| b == 0), "{}", spec.name);
        assert!(
            got[50..250].iter().all(|&b| b == 7),
            "{}: rolled-back write visible",
            spec.name
        );
        assert!(got[250..].iter().all(|&b| b == 0), "{}", spec.name);
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
