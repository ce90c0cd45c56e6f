//! Protection: a stray store outside a write window kills the process with SIGSEGV and
//! changes nothing; without protection the same store lands (so the test can tell).

mod common;

use std::path::Path;

use common::{
    assert_signaled, child_dispatch, disk_path, modes, opts, run_child, snapshot, TestDir, PAGE,
};
use rio_cache::{ActiveProtection, Protection, RioCache, StartKind};

const SIZE: u64 = 8 * PAGE;
/// Where the stray store aims: inside page 3.
const TARGET: u64 = 3 * PAGE + 100;
const STRAY: u8 = 0xEE;

fn protection_from(arg: &str) -> Protection {
    match arg {
        "none" => Protection::None,
        "mprotect" => Protection::Mprotect,
        "pkey" => Protection::Pkey,
        other => panic!("unknown protection {other}"),
    }
}

/// The wild store under test.
fn stray_store(addr: usize) {
    // This models a wild store by buggy code; it only ever runs in a child process.
    // SAFETY: the address is inside a live MAP_SHARED mapping of this process and no
    // Rust reference to that byte is alive, so the only effects are the CPU's: a fault
    // (SIGSEGV, under Mprotect or Pkey) or a changed byte (None), as the parent asserts.
    unsafe { std::ptr::write_volatile(addr as *mut u8, STRAY) };
}

/// Child: stores into the cache's read view without any window open.
fn child_store_outside_window(dir: &Path, arg: &str) {
    let cache = RioCache::open(disk_path(dir), &opts(dir, SIZE, protection_from(arg))).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Warm);
    let addr = cache.read(TARGET, 1).unwrap().as_ptr() as usize;
    stray_store(addr);
    common::report("survived");
}

/// Child: rewrites the target byte legitimately in a window (with the value it already
/// has), closes the window, then stores through the window's address again.
fn child_store_after_window_closed(dir: &Path, arg: &str) {
    let mut cache = RioCache::open(disk_path(dir), &opts(dir, SIZE, protection_from(arg))).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Warm);
    let old = cache.read(TARGET, 1).unwrap()[0];
    let addr = {
        let mut w = cache.window(TARGET, 1).unwrap();
        w[0] = old;
        w.as_mut_ptr() as usize
    };
    common::report("window closed");
    stray_store(addr);
    common::report("survived");
}

#[test]
fn child_process_entry() {
    child_dispatch(&[
        ("store_outside_window", child_store_outside_window),
        ("store_after_window_closed", child_store_after_window_closed),
    ]);
}

fn name(p: Protection) -> &'static str {
    match p {
        Protection::None => "none",
        Protection::Mprotect => "mprotect",
        Protection::Pkey => "pkey",
        Protection::Auto => "auto",
    }
}

/// Sets up a cache with known contents (checkpointed, then closed) on /dev/shm.
fn setup(mode: Protection) -> (TestDir, std::path::PathBuf) {
    let t = TestDir::on_shm();
    let mut cache = RioCache::open(disk_path(t.path()), &opts(t.path(), SIZE, mode)).unwrap();
    cache
        .window(0, SIZE)
        .unwrap()
        .copy_from_slice(&common::pattern(7, SIZE as usize));
    let image = cache.image_path().to_owned();
    cache.close().unwrap();
    (t, image)
}

/// Runs `role` under `mode`, expecting SIGSEGV and both images unchanged.
fn expect_segv(role: &str, mode: Protection) {
    let (t, image) = setup(mode);
    let dir = t.path();
    let disk = disk_path(dir);
    let before = snapshot(&[&disk, &image]);
    let status = run_child(role, dir, name(mode), &[]);
    let mut after = snapshot(&[&disk, &image]);
    assert_signaled(status, libc::SIGSEGV, &format!("{role} under {mode:?}"));
    assert!(
        !common::reports(dir).iter().any(|l| l == "survived"),
        "{role} under {mode:?}: the store went through"
    );
    // The legitimate window in "store_after_window_closed" rewrote the byte with its own
    // value but marked its page dirty: the dirty map in the image's metadata may differ,
    // the data must not.
    if role == "store_after_window_closed" {
        let dirty_byte = 4096 + (TARGET / PAGE) as usize;
        let a = after.get_mut(&image).unwrap().as_mut().unwrap();
        assert_eq!(a[dirty_byte], 1, "the window's page is not marked dirty");
        a[dirty_byte] = before[&image].as_ref().unwrap()[dirty_byte];
    }
    common::assert_same_files(&before, &after, &format!("{role} under {mode:?}"));
    let cache = RioCache::open(&disk, &opts(dir, SIZE, mode)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Warm);
    assert_eq!(cache.as_slice(), common::pattern(7, SIZE as usize));
}

/// Runs `role` without protection: the same store must land.
fn expect_store_lands(role: &str) {
    let (t, image) = setup(Protection::None);
    let dir = t.path();
    let status = run_child(role, dir, "none", &[]);
    assert!(status.success(), "{role} without protection: {status:?}");
    assert!(common::reports(dir).iter().any(|l| l == "survived"));
    let mut expected = common::pattern(7, SIZE as usize);
    assert_ne!(
        expected[TARGET as usize], STRAY,
        "the store must be visible"
    );
    expected[TARGET as usize] = STRAY;
    let cache = RioCache::open(disk_path(dir), &opts(dir, SIZE, Protection::None)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Warm);
    assert_eq!(cache.as_slice(), expected);
    assert_eq!(std::fs::read(image).unwrap()[..4], *b"RIOC");
}

#[test]
fn mprotect_stray_store_outside_window_segfaults() {
    let _serial = common::serial();
    expect_segv("store_outside_window", Protection::Mprotect);
}

#[test]
fn mprotect_store_after_window_closed_segfaults() {
    let _serial = common::serial();
    expect_segv("store_after_window_closed", Protection::Mprotect);
}

#[test]
fn pkey_stray_stores_segfault() {
    let _serial = common::serial();
    if !rio_cache::pkeys_supported() {
        eprintln!("note: no memory protection keys on this machine (pkey_alloc fails); skipped");
        return;
    }
    expect_segv("store_outside_window", Protection::Pkey);
    expect_segv("store_after_window_closed", Protection::Pkey);
}

#[test]
fn without_protection_the_same_stray_stores_land() {
    let _serial = common::serial();
    expect_store_lands("store_outside_window");
    expect_store_lands("store_after_window_closed");
}

#[test]
fn auto_resolves_to_what_the_machine_has() {
    let _serial = common::serial();
    let t = TestDir::new();
    let cache =
        RioCache::open(disk_path(t.path()), &opts(t.path(), SIZE, Protection::Auto)).unwrap();
    if rio_cache::pkeys_supported() {
        assert!(matches!(cache.protection(), ActiveProtection::Pkey(_)));
    } else {
        assert_eq!(cache.protection(), ActiveProtection::Mprotect);
    }
}

#[test]
fn other_threads_read_under_every_mode() {
    let _serial = common::serial();
    for mode in modes() {
        let t = TestDir::new();
        let mut cache = RioCache::open(disk_path(t.path()), &opts(t.path(), SIZE, mode)).unwrap();
        let data = common::pattern(11, SIZE as usize);
        {
            let mut u = cache.update().unwrap();
            let (a, b) = u.window_pair(0..PAGE, PAGE..SIZE).unwrap();
            a.copy_from_slice(&data[..PAGE as usize]);
            b.copy_from_slice(&data[PAGE as usize..]);
        }
        let cache = &cache;
        std::thread::scope(|s| {
            let readers: Vec<_> = (0..4)
                .map(|k| {
                    s.spawn(move || {
                        let off = k * 2 * PAGE;
                        cache.read(off, 2 * PAGE).unwrap().to_vec()
                    })
                })
                .collect();
            for (k, r) in readers.into_iter().enumerate() {
                let off = k * 2 * PAGE as usize;
                assert_eq!(
                    r.join().unwrap(),
                    data[off..off + 2 * PAGE as usize],
                    "{mode:?}"
                );
            }
        });
        // And a thread that starts after a window closed still reads the new bytes.
        cache.checkpoint().unwrap();
        let got = std::thread::scope(|s| s.spawn(|| cache.as_slice().to_vec()).join().unwrap());
        assert_eq!(got, data, "{mode:?}");
    }
}
