//! `crash-sim self-test`: every mutant is caught, every control is clean. Needs the
//! `mutants` feature (`cargo test -p crash-sim --features mutants`), which compiles the
//! broken orderings into vista and lrvm.
#![cfg(feature = "mutants")]

use std::process::Command;

#[test]
fn every_mutant_is_caught_and_every_control_is_clean() {
    let out = Command::new(env!("CARGO_BIN_EXE_crash-sim"))
        .args(["self-test", "--json"])
        .output()
        .expect("run crash-sim self-test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "self-test failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let runs: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let runs = runs.as_array().expect("a list of runs");
    for m in crash_sim::selftest::MUTANTS {
        let run = runs
            .iter()
            .find(|r| r["mutant"] == m.name)
            .unwrap_or_else(|| panic!("mutant {} did not run", m.name));
        assert!(
            run["violations"].as_u64().unwrap() > 0,
            "{} survived",
            m.name
        );
    }
    let controls = runs.iter().filter(|r| r["mutant"].is_null()).count();
    assert!(controls >= 3, "{stdout}");
    assert!(runs.iter().all(|r| r["ok"] == true), "{stdout}");
}
