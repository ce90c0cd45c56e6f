//! crash-sim's wild mode with vista under protection keys: every stray store is trapped
//! and nothing is corrupted. Skipped, with a note, on a machine without protection keys;
//! `scripts/pkey-vm` runs it in an emulated machine that has them (with
//! `RIO_TEST_PKEY=require`, a machine without keys fails it instead).

use std::process::Command;

use serde_json::Value;

#[test]
fn wild_stores_under_pkey_are_all_trapped() {
    if let Err(why) = rio_cache::pkey_support() {
        assert!(
            std::env::var("RIO_TEST_PKEY").map_or(true, |v| v != "require"),
            "RIO_TEST_PKEY=require, but protection keys are unavailable: {why}"
        );
        eprintln!("note: wild mode under Protection::Pkey not tested: {why}");
        return;
    }
    // A short campaign: the emulated machine that runs this is slow.
    let out = Command::new(env!("CARGO_BIN_EXE_crash-sim"))
        .args([
            "run",
            "--engine",
            "vista",
            "--workload",
            "bank",
            "--mode",
            "wild",
        ])
        .args([
            "--seed",
            "7",
            "--seconds",
            "60",
            "--cycles",
            "45",
            "--json",
            "--quiet",
        ])
        .output()
        .expect("run crash-sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "crash-sim failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(v["violations"].as_array().map(Vec::len), Some(0), "{v}");
    let row = v["wild"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["protection"] == "pkey"))
        .unwrap_or_else(|| panic!("no pkey row: {v}"));
    let n = |k: &str| row[k].as_u64().unwrap_or_else(|| panic!("{k} in {row}"));
    assert!(
        n("faults") >= 5,
        "too few wild stores landed before the kill: {row}"
    );
    assert_eq!(n("trapped"), n("faults"), "{row}");
    assert_eq!(n("corrupted_undetected"), 0, "{row}");
}

/// The threaded campaigns under protection keys: kill (with crash points) and injected
/// I/O failures, four threads on one segment, bounded by cycles for the slow machine.
#[test]
fn threaded_campaigns_under_pkey_find_nothing() {
    if let Err(why) = rio_cache::pkey_support() {
        assert!(
            std::env::var("RIO_TEST_PKEY").map_or(true, |v| v != "require"),
            "RIO_TEST_PKEY=require, but protection keys are unavailable: {why}"
        );
        eprintln!("note: threaded campaigns under Protection::Pkey not tested: {why}");
        return;
    }
    for (workload, mode) in [("bank", "kill"), ("kv", "io")] {
        let out = Command::new(env!("CARGO_BIN_EXE_crash-sim"))
            .args(["run", "--engine", "vista", "--workload", workload])
            .args(["--mode", mode, "--threads", "4", "--protection", "pkey"])
            .args(["--seed", "7", "--seconds", "60", "--cycles", "40"])
            .args(["--json", "--quiet"])
            .output()
            .expect("run crash-sim");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{workload} {mode}: crash-sim failed ({}):\n{stdout}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_str(&stdout).expect("JSON report");
        assert_eq!(v["violations"].as_array().map(Vec::len), Some(0), "{v}");
        assert!(
            v["notes"].to_string().contains("vista protection: pkey"),
            "{v}"
        );
    }
}
