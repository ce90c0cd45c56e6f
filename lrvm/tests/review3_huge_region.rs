//! Review 3: mapping a region larger than memory must fail with an error, not abort the
//! process: `Rvm::map` allocates the region's private copy with `vec![0; len]`, and an
//! allocation failure there aborts (no unwinding, nothing for the caller to handle).
//!
//! The map runs in a child process (this test binary, re-run with an environment
//! variable), so that the abort can be observed.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::{Duration, Instant};

use lrvm::{create_log, CreateMode, MapOptions, Options, RegionSpec, Rvm, MIN_LOG_LEN};

const CHILD: &str = "LRVM_REVIEW3_HUGE_REGION_DIR";
/// 1 TiB: a sparse file on disk, far more than the machine's memory.
const HUGE: u64 = 1 << 40;

fn map_huge(dir: &std::path::Path) {
    let log = dir.join("log");
    let data = dir.join("data");
    create_log(&log, MIN_LOG_LEN, CreateMode::CreateNew).unwrap();
    let mut rvm = Rvm::initialize(Options::new(&log)).unwrap();
    let r = rvm.map(
        &RegionSpec::new(&data, 0, HUGE),
        MapOptions::create_or_extend(),
    );
    println!("map returned: {:?}", r.map(|_| ()));
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
            panic!("the child did not finish mapping a 1 TiB region within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        status.success(),
        "mapping a 1 TiB region killed the process ({status:?}, signal {:?}) instead of \
         returning an error",
        status.signal()
    );
}
