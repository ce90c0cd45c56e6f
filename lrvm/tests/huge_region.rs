//! Mapping a region larger than memory must fail with an error, not abort the
//! process: `Rvm::map` allocates the region's private copy with `vec![0; len]`, and an
//! allocation failure there aborts (no unwinding, nothing for the caller to handle).
//!
//! The map runs in a child process (this test binary, re-run with an environment
//! variable), so that the abort can be observed.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use lrvm::{create_log, CreateMode, MapOptions, Options, RegionSpec, Rvm, MIN_LOG_LEN};

const CHILD: &str = "LRVM_HUGE_REGION_CHILD";
/// 128 TiB: more than x86-64's user address space, so the allocation fails whatever the
/// kernel's overcommit policy (1 TiB passed only where overcommit is heuristic).
const HUGE: u64 = 1 << 47;

fn map_huge(dir: &std::path::Path) {
    let log = dir.join("log");
    let data = dir.join("data");
    create_log(&log, MIN_LOG_LEN, CreateMode::CreateNew).unwrap();
    let mut rvm = Rvm::initialize(Options::new(&log)).unwrap();
    let r = rvm.map(
        &RegionSpec::new(&data, 0, HUGE),
        MapOptions::create_or_extend(),
    );
    assert!(
        matches!(r, Err(lrvm::Error::InvalidRegion(_))),
        "map returned: {:?}",
        r.map(|_| ())
    );
}

#[test]
fn mapping_a_region_larger_than_memory_is_an_error_not_an_abort() {
    if let Some(dir) = std::env::var_os(CHILD) {
        map_huge(std::path::Path::new(&dir));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "mapping_a_region_larger_than_memory_is_an_error_not_an_abort",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.path())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the child did not finish mapping a 128 TiB region within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "mapping a 128 TiB region killed the process ({status:?}, signal {:?}) instead of \
         returning an error",
        status.signal()
    );
}
