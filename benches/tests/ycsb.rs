//! Every YCSB engine runs a tiny cell of each mix from one and two threads and then
//! passes the data check (every key present once with a whole value of its own); the
//! check itself fails on a missing key, a stray key and a damaged value.

use std::time::Duration;

use anyhow::Result;
use benches::ycsb::run::{run, Plan};
use benches::ycsb::{value, verify, Client, Dist, Engine, Keys, Mix, Store, Value};

const RECORDS: u64 = 500;

#[test]
fn every_engine_runs_a_smoke_cell_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let keys = Keys::new(RECORDS, 9);
    for engine in Engine::all() {
        let store = engine.open(dir.path(), RECORDS).unwrap();
        for (seed, threads, mix, dist) in [
            (1, 2, Mix::A, Dist::Zipfian),
            (2, 1, Mix::B, Dist::Uniform),
            (3, 2, Mix::C, Dist::Uniform),
        ] {
            let plan = Plan {
                threads,
                mix,
                dist,
                warm_up: Duration::ZERO,
                measure: Duration::from_millis(50),
                seed,
            };
            let s = run(store.as_ref(), &keys, &plan)
                .unwrap_or_else(|e| panic!("{}: {e:#}", engine.name()));
            assert!(
                s.all.commits > 0,
                "{}: no operation completed",
                engine.name()
            );
            assert_eq!(s.all.latencies.len() as u64, s.all.commits);
            assert_eq!(s.reads.commits + s.updates.commits, s.all.commits);
            if mix == Mix::C {
                assert_eq!(s.updates.commits, 0);
            }
        }
        verify(RECORDS, store.as_ref()).unwrap_or_else(|e| panic!("{}: {e:#}", engine.name()));
    }
}

/// A store that hands out fixed records, to show the check failing.
struct Fixed(Vec<(u64, Value)>);

impl Store for Fixed {
    fn client(&self, _thread: u64) -> Result<Box<dyn Client + '_>> {
        anyhow::bail!("not for running")
    }

    fn entries(&self, f: &mut dyn FnMut(u64, &Value) -> Result<()>) -> Result<()> {
        for (k, v) in &self.0 {
            f(*k, v)?;
        }
        Ok(())
    }
}

#[test]
fn the_check_fails_on_missing_stray_and_damaged_records() {
    let good: Vec<(u64, Value)> = (0..10).map(|k| (k, value(k, k * 3))).collect();
    verify(10, &Fixed(good.clone())).unwrap();

    let mut missing = good.clone();
    missing.remove(4);
    assert!(verify(10, &Fixed(missing)).is_err());

    let mut stray = good.clone();
    stray.push((10, value(10, 0)));
    assert!(verify(10, &Fixed(stray)).is_err());

    let mut twice = good.clone();
    twice[3] = (2, value(2, 0));
    assert!(verify(10, &Fixed(twice)).is_err());

    let mut damaged = good.clone();
    damaged[7].1[50] ^= 0x40;
    assert!(verify(10, &Fixed(damaged)).is_err());

    let mut swapped = good;
    swapped[1].1 = value(2, 0);
    assert!(verify(10, &Fixed(swapped)).is_err());
}
