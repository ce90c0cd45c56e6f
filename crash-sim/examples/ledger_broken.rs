//! The ledger with a deliberate bug: a transfer debits in one transaction and credits in
//! a second one, so a crash between the two loses money. crash-sim catches it:
//!
//! ```text
//! cargo run --release -p crash-sim --example ledger_broken -- --mode kill
//! ```
//!
//! reports a violation ("account 3 holds 912, but after 41 transfers it must hold 970")
//! with the command line that replays it, and exits with 1.

// Each binary uses one of the two variants.
#[allow(dead_code)]
#[path = "common/ledger.rs"]
mod ledger;

fn main() -> std::process::ExitCode {
    crash_sim::app::main(&ledger::Ledger::TwoStep)
}
