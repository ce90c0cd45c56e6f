//! The app harness against the ledger example (`examples/common/ledger.rs`): the
//! correct ledger passes every mode, the broken variants are caught. Runs are bounded
//! by cycle counts or by the exhaustive modes' own end, not by time.
//!
//! `harness = false`: the harness forks, so this test is a single-threaded `main`, as
//! the built-in campaigns want.

#[allow(dead_code)]
#[path = "../examples/common/ledger.rs"]
mod ledger;

use crash_sim::app::{self, AppConfig};
use crash_sim::{Mode, Report};
use ledger::Ledger;

fn campaign(ledger: Ledger, mode: Mode, cycles: Option<u64>) -> Report {
    let mut cfg = AppConfig::new(mode);
    cfg.campaign.seed = 3;
    cfg.campaign.seconds = 600.0;
    cfg.campaign.cycles = cycles;
    cfg.command = "ledger".into();
    app::run(&ledger, &cfg).expect("the campaign runs")
}

fn clean(ledger: Ledger, mode: Mode, cycles: Option<u64>) -> Report {
    let r = campaign(ledger, mode, cycles);
    assert!(r.violations.is_empty(), "{}", r.table());
    assert!(r.effective_kills > 0, "{}", r.table());
    r
}

fn caught(ledger: Ledger, mode: Mode, cycles: Option<u64>, what: &str) {
    let r = campaign(ledger, mode, cycles);
    let Some(v) = r.violations.first() else {
        panic!("{ledger:?} survived {mode:?}:\n{}", r.table());
    };
    assert!(v.message.contains(what), "{}", r.table());
    let head = format!("ledger --mode {} --seed 3", mode.name());
    assert!(v.replay.starts_with(&head), "{}", v.replay);
    println!("  {ledger:?} caught by {}: {}", mode.name(), v.message);
}

fn main() {
    let r = clean(Ledger::Atomic, Mode::Kill, Some(300));
    assert!(r.acked_ops > 0, "{}", r.table());
    println!("  Atomic kill: {} cycles, no violation", r.cycles);
    let r = clean(Ledger::Atomic, Mode::Power, Some(300));
    println!("  Atomic power: {} cycles, no violation", r.cycles);
    for mode in [Mode::Points, Mode::Recovery] {
        let r = clean(Ledger::Atomic, mode, None);
        assert_eq!(r.points_hit, r.points_total, "{}", r.table());
        println!(
            "  Atomic {}: {}/{} points, no violation",
            mode.name(),
            r.points_hit,
            r.points_total
        );
    }
    let partial = "must hold";
    caught(Ledger::TwoStep, Mode::Kill, Some(3000), partial);
    caught(Ledger::TwoStep, Mode::Points, None, partial);
    let lost = "was acknowledged";
    caught(Ledger::AckFirst, Mode::Kill, Some(3000), lost);
    caught(Ledger::AckFirst, Mode::Points, None, lost);
    println!("app harness: ok");
}
