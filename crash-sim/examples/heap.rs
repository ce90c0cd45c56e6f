//! Crash-tests vista's persistent heap with crash-sim's harness: the `heap` workload
//! (`crash_sim::heap`), several threads allocating, freeing and rewriting blocks.
//!
//! ```text
//! cargo run --release -p crash-sim --example heap -- --mode kill --seconds 10
//! cargo run --release -p crash-sim --example heap -- --mode points
//! ```

fn main() -> std::process::ExitCode {
    crash_sim::app::main(&crash_sim::heap::HeapWorkload)
}
