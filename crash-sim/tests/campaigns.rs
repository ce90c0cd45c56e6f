//! Every mode against every engine, briefly, through the `crash-sim` binary (a fresh
//! single-threaded process per campaign, as the harness wants when it forks).

use std::process::Command;

use serde_json::Value;

fn campaign(engine: &str, workload: &str, mode: &str, extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_crash-sim"))
        .args([
            "run",
            "--engine",
            engine,
            "--workload",
            workload,
            "--mode",
            mode,
        ])
        .args(["--seed", "11", "--json", "--quiet"])
        .args(extra)
        .output()
        .expect("run crash-sim");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{engine}/{workload}/{mode} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_str(&stdout).expect("JSON report");
    assert_eq!(v["violations"].as_array().map(Vec::len), Some(0), "{v}");
    v
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn random_kills(mode: &str) {
    for (engine, workload) in [
        ("vista", "bank"),
        ("vista", "kv"),
        ("lrvm-flush", "bank"),
        ("lrvm-noflush", "kv"),
    ] {
        let v = campaign(
            engine,
            workload,
            mode,
            &["--seconds", "1.5", "--cycles", "400"],
        );
        assert!(n(&v, "effective_kills") > 20, "{v}");
        assert!(
            n(&v, "acked_ops") > 0,
            "kills never landed after a commit: {v}"
        );
    }
}

#[test]
fn kill_mode_on_every_engine() {
    random_kills("kill");
}

#[test]
fn power_mode_on_every_engine() {
    random_kills("power");
}

#[test]
fn vista_power_mode_cuts_with_the_rio_cache_model() {
    let v = campaign(
        "vista",
        "bank",
        "power",
        &["--seconds", "1.5", "--cycles", "300"],
    );
    let notes = v["notes"].to_string();
    assert!(notes.contains("power cuts (rio-cache model)"), "{v}");
}

#[test]
fn pages_workload_survives_kills_power_cuts_and_compound_faults() {
    for mode in ["kill", "power", "compound"] {
        let v = campaign(
            "vista",
            "pages",
            mode,
            &["--seconds", "60", "--cycles", "4"],
        );
        // A 3 MiB state is slow in a debug build: a few cycles, not a time budget.
        assert!(n(&v, "effective_kills") >= 2, "{v}");
    }
}

#[test]
fn compound_mode_runs_every_scenario() {
    for workload in ["bank", "kv"] {
        let v = campaign(
            "vista",
            workload,
            "compound",
            &["--seconds", "2", "--cycles", "3"],
        );
        // Three rounds of five scenarios.
        assert_eq!(n(&v, "cycles"), 15, "{v}");
        assert!(n(&v, "effective_kills") >= 15, "{v}");
    }
}

#[test]
fn points_mode_reaches_every_crash_point() {
    for (engine, workload) in [
        ("vista", "bank"),
        ("lrvm-flush", "kv"),
        ("lrvm-noflush", "bank"),
    ] {
        let v = campaign(engine, workload, "points", &["--seconds", "60"]);
        assert_eq!(n(&v, "points_hit"), n(&v, "points_total"), "{v}");
        assert!(n(&v, "points_total") >= 12, "{v}");
    }
}

#[test]
fn recovery_mode_kills_recovery_at_every_point_twice_over() {
    for (engine, workload) in [
        ("vista", "kv"),
        ("lrvm-flush", "bank"),
        ("lrvm-noflush", "kv"),
    ] {
        let v = campaign(engine, workload, "recovery", &["--seconds", "60"]);
        assert_eq!(n(&v, "points_hit"), n(&v, "points_total"), "{v}");
        let r = &v["recovery"];
        assert!(n(r, "depth2_kills") > n(r, "depth1_kills"), "{v}");
        assert!(
            n(r, "comparisons") >= n(r, "depth1_kills") + n(r, "depth2_kills"),
            "{v}"
        );
    }
}

#[test]
fn wild_stores_are_trapped_with_protection_and_corrupt_without() {
    let v = campaign(
        "vista",
        "bank",
        "wild",
        &["--seconds", "3", "--cycles", "600"],
    );
    let rows = v["wild"].as_array().expect("wild rows");
    let row = |name: &str| {
        rows.iter()
            .find(|r| r["protection"] == name)
            .unwrap_or_else(|| panic!("no {name} row: {v}"))
    };
    let none = row("none");
    assert!(n(none, "faults") > 20, "{v}");
    // Without protection, the oracle sees the damage the engine cannot.
    assert!(n(none, "corrupted_undetected") > 0, "{v}");
    assert_eq!(n(none, "trapped"), 0, "{v}");
    let mprotect = row("mprotect");
    assert!(n(mprotect, "faults") > 20, "{v}");
    assert_eq!(n(mprotect, "trapped"), n(mprotect, "faults"), "{v}");
    assert_eq!(n(mprotect, "corrupted_undetected"), 0, "{v}");

    let v = campaign(
        "lrvm-flush",
        "bank",
        "wild",
        &["--seconds", "1.5", "--cycles", "300"],
    );
    let row = &v["wild"][0];
    assert_eq!(row["protection"], "private copy");
    assert!(n(row, "faults") > 20, "{v}");
    assert_eq!(n(row, "trapped"), 0, "{v}");
}

#[test]
fn points_lists_the_engines_crash_points() {
    let out = Command::new(env!("CARGO_BIN_EXE_crash-sim"))
        .args(["points", "--engine", "lrvm"])
        .output()
        .expect("run crash-sim");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), lrvm::CRASH_POINTS.len());
    assert!(text.contains("lrvm.recover.reset (recovery)"));
}

#[test]
fn threaded_workers_survive_kills_crash_points_and_power_cuts() {
    for (workload, mode) in [("bank", "kill"), ("kv", "kill"), ("kv", "power")] {
        let v = campaign(
            "vista",
            workload,
            mode,
            &["--threads", "4", "--seconds", "2", "--cycles", "300"],
        );
        assert!(n(&v, "effective_kills") > 20, "{v}");
        assert!(n(&v, "acked_ops") > 0, "{v}");
        let notes = v["notes"].to_string();
        assert!(notes.contains("4 threads per worker"), "{v}");
    }
}

#[test]
fn threads_are_refused_where_they_are_not_supported() {
    for args in [
        ["--engine", "lrvm", "--workload", "bank", "--mode", "kill"],
        ["--engine", "vista", "--workload", "pages", "--mode", "kill"],
        [
            "--engine",
            "vista",
            "--workload",
            "bank",
            "--mode",
            "points",
        ],
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_crash-sim"))
            .arg("run")
            .args(args)
            .args(["--threads", "4", "--seconds", "1"])
            .output()
            .expect("run crash-sim");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--threads 4"), "{args:?}: {err}");
    }
}
