//! `crash-sim exec` against the shell programs of `examples/exec`: the non-atomic one is
//! caught, the one with an atomic rename is not; and the options do what they say.
//! Runs are bounded by cycle counts, not by time.

use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::Value;

fn programs() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/exec")
}

fn program(name: &str) -> String {
    programs().join(name).display().to_string()
}

fn exec(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crash-sim"))
        .arg("exec")
        .args(["--json", "--seconds", "600"])
        .args(args)
        .output()
        .expect("run crash-sim")
}

fn report(out: &Output, code: i32) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).expect("JSON report")
}

fn n(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

fn violations(v: &Value) -> &Vec<Value> {
    v["violations"].as_array().expect("violations")
}

#[test]
fn non_atomic_update_of_two_files_is_caught() {
    let out = exec(&[
        "--cycles",
        "200",
        "--max-delay-ms",
        "30",
        "--ready",
        "ready",
        "--setup",
        "echo 0 > a; echo 0 > b",
        "--check",
        &program("check-two-files.sh"),
        "--",
        &program("two-files.sh"),
    ]);
    let v = report(&out, 1);
    let first = &violations(&v)[0];
    let message = first["message"].as_str().expect("message");
    assert!(message.contains("inconsistent: a="), "{first}");
    let at = first["at"].as_str().expect("at");
    assert!(at.contains("kill after"), "{first}");
    let replay = first["replay"].as_str().expect("replay");
    assert!(
        replay.starts_with("crash-sim exec ")
            && replay.contains("--seed 1 --cycles ")
            && replay.contains("-- ")
            && replay.ends_with("two-files.sh"),
        "{replay}"
    );
    assert!(n(&v, "effective_kills") >= 1, "{v}");
}

#[test]
fn atomic_rename_passes_a_long_run() {
    let out = exec(&[
        "--cycles",
        "150",
        "--seed",
        "5",
        "--max-delay-ms",
        "30",
        "--ready",
        "ready",
        "--setup",
        "mkdir v0 && echo 0 > v0/a && echo 0 > v0/b && ln -s v0 cur",
        "--check",
        &program("check-two-files-atomic.sh"),
        "--",
        &program("two-files-atomic.sh"),
    ]);
    let v = report(&out, 0);
    assert_eq!(n(&v, "cycles"), 150, "{v}");
    assert!(n(&v, "effective_kills") > 0, "{v}");
}

#[test]
fn the_whole_process_group_dies_before_the_check() {
    // The program leaves a writer running in the background; if only the program itself
    // were killed, the file would still grow while the check looks at it.
    let out = exec(&[
        "--cycles",
        "5",
        "--max-delay-ms",
        "5",
        "--ready",
        "ready",
        "--check",
        "s1=$(wc -c < c); sleep 0.1; s2=$(wc -c < c); test \"$s1\" = \"$s2\" || echo \"c grew from $s1 to $s2\"; test \"$s1\" = \"$s2\"",
        "--",
        "sh",
        "-c",
        "(while :; do echo x >> c; done) & echo ready; wait",
    ]);
    let v = report(&out, 0);
    assert_eq!(n(&v, "cycles"), 5, "{v}");
}

#[test]
fn power_loss_gives_a_private_cache_dir_wiped_before_the_check() {
    let out = exec(&[
        "--cycles",
        "5",
        "--power-loss",
        "--ready",
        "ready",
        "--check",
        "test -d \"$RIO_CACHE_DIR\" && test -z \"$(ls -A \"$RIO_CACHE_DIR\")\" && test -f wrote",
        "--",
        "sh",
        "-c",
        "echo image > \"$RIO_CACHE_DIR/img\" && touch wrote && echo ready && sleep 100",
    ]);
    report(&out, 0);
    // Without the option nothing is wiped: the same check fails.
    let out = exec(&[
        "--cycles",
        "5",
        "--ready",
        "ready",
        "--setup",
        "mkdir cache",
        "--check",
        "test -z \"$(ls -A cache)\"",
        "--",
        "sh",
        "-c",
        "echo image > cache/img && echo ready && sleep 100",
    ]);
    report(&out, 1);
}

#[test]
fn a_program_that_does_not_come_up_is_a_violation() {
    let out = exec(&[
        "--cycles",
        "1",
        "--ready",
        "never printed",
        "--check",
        "true",
        "--",
        "sh",
        "-c",
        "echo starting; exit 3",
    ]);
    let v = report(&out, 1);
    let message = violations(&v)[0]["message"].as_str().expect("message");
    assert!(
        message.contains("without printing its ready line"),
        "{message}"
    );
}

#[test]
fn usage_errors_exit_2() {
    // No check.
    let out = exec(&["--", "true"]);
    assert_eq!(out.status.code(), Some(2));
    // No program.
    let out = exec(&["--check", "true"]);
    assert_eq!(out.status.code(), Some(2));
    // An empty delay range.
    let out = exec(&[
        "--min-delay-ms",
        "5",
        "--max-delay-ms",
        "1",
        "--check",
        "true",
        "--",
        "true",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // A failing setup command.
    let out = exec(&["--setup", "exit 4", "--check", "true", "--", "true"]);
    assert_eq!(out.status.code(), Some(2));
}

/// The program of `the_memory_images_of_a_runs_segments_are_removed`: opens a small
/// vista segment in its working directory (its image in `RIO_CACHE_DIR`), says ready
/// and waits to be killed. Does nothing when run as a normal test.
#[test]
fn segment_program() {
    if std::env::var_os("CRASH_SIM_SEGMENT_PROGRAM").is_none() {
        return;
    }
    let opts = vista::Options::new()
        .size(64 << 10)
        .lanes(1)
        .undo_log_size(4096);
    let seg = vista::Segment::open("seg", &opts).expect("open the segment");
    seg.transaction(|tx| tx.write(0, b"x")).expect("write");
    println!("ready");
    std::thread::sleep(std::time::Duration::from_secs(100));
}

#[test]
fn the_memory_images_of_a_runs_segments_are_removed() {
    let cache = tempfile::tempdir().unwrap();
    // An image that is not the run's: it stays.
    let other = tempfile::tempdir().unwrap();
    let opts = vista::Options::new()
        .size(4096)
        .lanes(1)
        .undo_log_size(4096)
        .cache_dir(cache.path());
    vista::Segment::open(other.path().join("other"), &opts)
        .unwrap()
        .close()
        .unwrap();
    let exe = std::env::current_exe().unwrap().display().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_crash-sim"))
        .env("RIO_CACHE_DIR", cache.path())
        .env("CRASH_SIM_SEGMENT_PROGRAM", "1")
        .args(["exec", "--json", "--seconds", "600", "--cycles", "3"])
        .args(["--keep-going", "--ready", "ready", "--check", "false", "--"])
        .args([&exe, "--exact", "segment_program", "--nocapture"])
        .args(["--test-threads=1"])
        .output()
        .unwrap();
    // Every check fails, so with --keep-going the working directory is emptied after
    // each cycle (a fresh start) and removed at the end.
    let v = report(&out, 1);
    assert_eq!(n(&v, "cycles"), 3, "{v}");
    let left: Vec<_> = rio_cache_images(cache.path());
    assert_eq!(
        left,
        vec![vista::rio_cache::image_path(&other.path().join("other"), cache.path()).unwrap()],
        "images of the run's segments were left behind"
    );
}

fn rio_cache_images(dir: &std::path::Path) -> Vec<PathBuf> {
    vista::rio_cache::images(dir)
        .unwrap()
        .into_iter()
        .map(|i| i.path)
        .collect()
}
