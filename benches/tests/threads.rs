//! The thread suite's engines keep debit-credit's balances exact under concurrency: after
//! several threads transfer on a hot spot, each table sums to the committed deltas. An
//! engine whose locking lets two transactions interleave on one balance loses updates and
//! fails here.

use std::time::Duration;

use benches::threads::run::{run, Plan};
use benches::threads::{Engine, Shape, Totals};

fn exact_under(engine: Engine, shape: Shape) {
    let dir = tempfile::tempdir().unwrap();
    let bank = engine.open(dir.path()).unwrap();
    let mut committed = 0i64;
    for (seed, threads) in [(1, 4), (100, 2)] {
        let plan = Plan {
            threads,
            shape,
            warm_up: Duration::ZERO,
            measure: Duration::from_millis(300),
            seed,
        };
        let (sample, deltas) = run(bank.as_ref(), &plan, &|| 0).unwrap();
        assert!(sample.commits > 0, "{}: nothing committed", engine.name());
        assert_eq!(sample.latencies.len() as u64, sample.commits);
        committed = committed.wrapping_add(deltas);
    }
    let totals = bank.totals().unwrap();
    totals
        .check(committed)
        .unwrap_or_else(|e| panic!("{}: {e}", engine.name()));
}

#[test]
fn every_engine_keeps_the_balances_on_a_hot_spot() {
    for engine in Engine::all() {
        exact_under(engine, Shape::Hotspot);
    }
}

#[test]
fn vista_keeps_the_balances_uniform() {
    exact_under(Engine::Vista, Shape::Uniform);
}

#[test]
fn the_check_sees_a_lost_update() {
    let mut t = Totals::default();
    for (id, v) in [(0, 5), (100_000, 5), (110_000, 5)] {
        t.add(id, v);
    }
    t.check(5).unwrap();
    assert!(t.check(7).is_err());
    t.add(3, -2); // an account lost part of an update
    assert!(t.check(5).is_err());
}
