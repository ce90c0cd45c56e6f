//! Protection: a stray store outside a write window kills the process with SIGSEGV and
//! changes nothing; without protection the same store lands (so the test can tell).
//! Under `Alias`, a stray store through the data's public addresses faults even while a
//! window is open, and a stale pointer into the private alias is not caught (asserted,
//! so the documentation of what the alias stops stays true).

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
        "alias" => Protection::Alias,
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

/// Child: opens a window on the target byte (rewriting it with its own value), then,
/// with the window still open, stores through the address the read view gave for that
/// byte: a buffer overrun or stale pointer into the data while a transaction runs.
fn child_store_to_public_address_inside_window(dir: &Path, arg: &str) {
    let mut cache = RioCache::open(disk_path(dir), &opts(dir, SIZE, protection_from(arg))).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Warm);
    let old = cache.read(TARGET, 1).unwrap()[0];
    let public = cache.read(TARGET, 1).unwrap().as_ptr() as usize;
    let mut w = cache.window(TARGET, 1).unwrap();
    w[0] = old;
    common::report("window open");
    stray_store(public);
    common::report("survived");
    drop(w);
}

#[test]
fn child_process_entry() {
    child_dispatch(&[
        ("store_outside_window", child_store_outside_window),
        ("store_after_window_closed", child_store_after_window_closed),
        (
            "store_to_public_address_inside_window",
            child_store_to_public_address_inside_window,
        ),
    ]);
}

fn name(p: Protection) -> &'static str {
    match p {
        Protection::None => "none",
        Protection::Mprotect => "mprotect",
        Protection::Pkey => "pkey",
        Protection::Alias => "alias",
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
    // The legitimate window of the other roles rewrote the byte with its own
    // value but marked its page dirty: the dirty map in the image's metadata may differ,
    // the data must not.
    if role != "store_outside_window" {
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

/// Runs `role` under `mode`, expecting the store to land (`None`, or a store `mode`
/// does not stop).
fn expect_store_lands(role: &str, mode: Protection) {
    let (t, image) = setup(mode);
    let dir = t.path();
    let status = run_child(role, dir, name(mode), &[]);
    assert!(status.success(), "{role} under {mode:?}: {status:?}");
    assert!(common::reports(dir).iter().any(|l| l == "survived"));
    let mut expected = common::pattern(7, SIZE as usize);
    assert_ne!(
        expected[TARGET as usize], STRAY,
        "the store must be visible"
    );
    expected[TARGET as usize] = STRAY;
    let cache = RioCache::open(disk_path(dir), &opts(dir, SIZE, mode)).unwrap();
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
    expect_store_lands("store_outside_window", Protection::None);
    expect_store_lands("store_after_window_closed", Protection::None);
    expect_store_lands("store_to_public_address_inside_window", Protection::None);
}

#[test]
fn mprotect_does_not_stop_stores_to_an_open_window() {
    let _serial = common::serial();
    // The contrast the alias tests below rely on: while a window is open, mprotect has
    // made the page writable for every pointer into it.
    expect_store_lands(
        "store_to_public_address_inside_window",
        Protection::Mprotect,
    );
}

#[test]
fn alias_stray_stores_to_public_addresses_segfault() {
    let _serial = common::serial();
    expect_segv("store_outside_window", Protection::Alias);
    // Unlike mprotect, the public mapping stays read-only while a window is open.
    expect_segv("store_to_public_address_inside_window", Protection::Alias);
}

#[test]
fn alias_does_not_stop_a_stale_pointer_into_the_alias() {
    let _serial = common::serial();
    // What the alias does NOT stop, asserted so the documentation stays true: a window
    // hands out the alias's addresses, and a pointer kept from a closed window (or any
    // store that happens to land in the alias) still writes the data.
    expect_store_lands("store_after_window_closed", Protection::Alias);
}

#[test]
fn alias_legitimate_writes_land_and_survive_reopen() {
    let _serial = common::serial();
    let t = TestDir::on_shm();
    let options = opts(t.path(), SIZE, Protection::Alias);
    let mut expected = common::pattern(5, SIZE as usize);
    let image = {
        // No final checkpoint: the memory image alone carries the data to the reopen.
        let crashy = options.clone().checkpoint_on_close(false);
        let mut cache = RioCache::open(disk_path(t.path()), &crashy).unwrap();
        assert_eq!(cache.protection(), ActiveProtection::Alias);
        cache.window(0, SIZE).unwrap().copy_from_slice(&expected);
        let mut u = cache.update().unwrap();
        u.store_u64(8, 0x0102_0304_0506_0708).unwrap();
        u.write_bytes(PAGE + 3, b"alias").unwrap();
        let (first, second) = u
            .window_pair(2 * PAGE..2 * PAGE + 4, 5 * PAGE..5 * PAGE + 4)
            .unwrap();
        first.copy_from_slice(b"abcd");
        second.copy_from_slice(b"wxyz");
        // Reads through the public mapping see the alias's stores at once.
        assert_eq!(u.read(PAGE + 3, 5).unwrap(), b"alias");
        drop(u);
        expected[8..16].copy_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        expected[PAGE as usize + 3..PAGE as usize + 8].copy_from_slice(b"alias");
        expected[2 * PAGE as usize..2 * PAGE as usize + 4].copy_from_slice(b"abcd");
        expected[5 * PAGE as usize..5 * PAGE as usize + 4].copy_from_slice(b"wxyz");
        assert_eq!(cache.as_slice(), expected);
        drop(cache);
        let cache = RioCache::open(disk_path(t.path()), &options).unwrap();
        assert_eq!(cache.start_kind(), StartKind::Warm);
        assert_eq!(cache.as_slice(), expected);
        let image = cache.image_path().to_owned();
        cache.close().unwrap();
        image
    };
    // And through a checkpoint into the disk image (a cold start reads only that).
    std::fs::remove_file(image).unwrap();
    let cache = RioCache::open(disk_path(t.path()), &options).unwrap();
    assert!(matches!(cache.start_kind(), StartKind::Cold(_)));
    assert_eq!(cache.as_slice(), expected);
}

#[test]
fn alias_is_at_an_unpredictable_place() {
    let _serial = common::serial();
    let t = TestDir::new();
    let o = opts(t.path(), SIZE, Protection::Alias);
    let (mut offsets, mut aliases) = (Vec::new(), Vec::new());
    // Open the same cache again and again in one process: the kernel would place a
    // plain mapping at the same spot, or next to the public one, every time.
    for _ in 0..8 {
        let mut cache = RioCache::open(disk_path(t.path()), &o).unwrap();
        let public = cache.read(0, 1).unwrap().as_ptr() as usize;
        let alias = cache.window(0, 1).unwrap().as_mut_ptr() as usize;
        assert_ne!(
            alias, public,
            "the window must write through a second mapping"
        );
        assert!(
            (1usize << 40..1usize << 46).contains(&alias),
            "alias at {alias:#x}, outside the range it is drawn from"
        );
        let offset = alias.wrapping_sub(public) as isize;
        assert!(
            offset.unsigned_abs() > 1 << 32,
            "alias {alias:#x} is within 4 GiB of the public mapping {public:#x}"
        );
        offsets.push(offset);
        aliases.push(alias);
        cache.close().unwrap();
    }
    offsets.sort_unstable();
    offsets.dedup();
    aliases.sort_unstable();
    aliases.dedup();
    // 8 draws from ~2^34 places: a repeat has odds of about 2^-30.
    assert_eq!(offsets.len(), 8, "the alias's offset from the data repeats");
    assert_eq!(aliases.len(), 8, "the alias's address repeats");
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
        assert_eq!(cache.protection(), ActiveProtection::Alias);
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
