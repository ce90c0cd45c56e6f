//! Crash-tests the ledger of `common/ledger.rs` with crash-sim's harness:
//!
//! ```text
//! cargo run --release -p crash-sim --example ledger -- --mode kill --seconds 10
//! cargo run --release -p crash-sim --example ledger -- --mode points
//! ```
//!
//! Every mode passes: a transfer is one vista transaction.

// Each binary uses one of the two variants.
#[allow(dead_code)]
#[path = "common/ledger.rs"]
mod ledger;

fn main() -> std::process::ExitCode {
    crash_sim::app::main(&ledger::Ledger::Atomic)
}
