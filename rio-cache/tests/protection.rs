//! Protection: a stray store outside a write window kills the process with SIGSEGV and
//! changes nothing; without protection the same store lands (so the test can tell).
//! Under `Alias`, a stray store through the data's public addresses faults even while a
//! window is open, and a stale pointer into the private alias is not caught (asserted,
//! so the documentation of what the alias stops stays true).
//!
//! Under protection keys, the fault's `si_code` tells which guard caught it:
//! `SEGV_PKUERR` for a store to the key-tagged writable view, `SEGV_ACCERR` for one to
//! the read-only view. The pkey tests run where the machine has keys; `scripts/pkey-vm`
//! runs them in an emulated machine that has them, with `RIO_TEST_PKEY=require`.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicI32, AtomicU64, AtomicUsize, Ordering};

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

/// `si_code` of a fault on a page whose protection forbids the access.
const SEGV_ACCERR: i32 = 2;
/// `si_code` of a fault that a protection key denied (not in every libc crate version).
const SEGV_PKUERR: i32 = 4;

/// The report file, opened before a stray store so the SIGSEGV handler need not
/// allocate; and the address the store aims at.
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);
static STRAY_AT: AtomicUsize = AtomicUsize::new(0);

/// SIGSEGV handler: reports `si_code N` and whether the fault address is the stray
/// store's, restores the default action, and returns, so the store runs again and kills
/// the process as it would without the handler.
extern "C" fn report_segv(_sig: libc::c_int, info: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler; a SIGSEGV's
    // carries a fault address.
    let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
    let same = addr == STRAY_AT.load(Ordering::Relaxed);
    let mut line = *b"si_code 0 addr ok   \n";
    line[8] = b'0' + (code.clamp(0, 9) as u8);
    if !same {
        line[15..19].copy_from_slice(b"else");
    }
    // SAFETY: write(2) and signal(2) are async-signal-safe; the buffer is on this stack.
    unsafe {
        libc::write(
            REPORT_FD.load(Ordering::Relaxed),
            line.as_ptr().cast(),
            line.len(),
        );
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
    }
}

/// Installs [`report_segv`] for a stray store at `addr`.
fn watch_segv(addr: usize) {
    use std::os::fd::IntoRawFd;
    let path = std::env::var_os(common::REPORT_ENV).expect("report path");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open report");
    REPORT_FD.store(f.into_raw_fd(), Ordering::Relaxed);
    STRAY_AT.store(addr, Ordering::Relaxed);
    // SAFETY: a zeroed sigaction is a valid "no flags, empty mask" value; the handler
    // has the SA_SIGINFO signature and only calls async-signal-safe functions.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = report_segv as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        assert_eq!(
            libc::sigaction(libc::SIGSEGV, &raw const sa, std::ptr::null_mut()),
            0
        );
    }
}

/// The `si_code` the child's handler reported, checking the fault was at the store.
fn reported_si_code(dir: &Path, what: &str) -> i32 {
    let lines = common::reports(dir);
    let line = lines
        .iter()
        .find(|l| l.starts_with("si_code"))
        .unwrap_or_else(|| panic!("{what}: no fault reported: {lines:?}"));
    assert!(
        line.contains("addr ok"),
        "{what}: the fault was elsewhere: {line}"
    );
    line[8..9].parse().expect("si_code digit")
}

/// The wild store under test.
fn stray_store(addr: usize) {
    watch_segv(addr);
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

/// The second cache of the two-cache roles.
fn other_disk(dir: &Path) -> std::path::PathBuf {
    dir.join("other.rio")
}

/// What the two-cache roles write into the second cache.
const B_MARK: u8 = 0xB5;

/// Child: two caches on one thread, an update open on each, the first one's ending
/// first (out of order). The second must stay writable until its own update ends; after
/// both ended, a store through the first one's window address must fault. With `arg`
/// ending in `:idle`, the second update writes nothing after the first ended.
fn child_two_caches_out_of_order(dir: &Path, arg: &str) {
    let (mode, idle) = match arg.strip_suffix(":idle") {
        Some(m) => (m, true),
        None => (arg, false),
    };
    let o = opts(dir, SIZE, protection_from(mode));
    let mut a = RioCache::open(disk_path(dir), &o).unwrap();
    let mut b = RioCache::open(other_disk(dir), &o).unwrap();
    assert_ne!(a.protection(), b.protection(), "two caches share a key");
    let old = a.read(TARGET, 1).unwrap()[0];
    let mut ua = a.update().unwrap();
    let mut ub = b.update().unwrap();
    let w = ua.window(TARGET, 1).unwrap();
    w[0] = old;
    let a_addr = w.as_mut_ptr() as usize;
    ub.window(0, 1).unwrap()[0] = B_MARK;
    drop(ua);
    common::report("a ended");
    if !idle {
        ub.window(TARGET, 1).unwrap()[0] = B_MARK;
        common::report("b written after a ended");
    }
    drop(ub);
    common::report("both ended");
    stray_store(a_addr);
    common::report("survived");
}

/// The checksum [`sum_on_signal`] computes.
fn checksum(bytes: impl Iterator<Item = u8>) -> u64 {
    bytes.fold(17, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
}

static READ_AT: AtomicUsize = AtomicUsize::new(0);
static READ_SUM: AtomicU64 = AtomicU64::new(0);

/// SIGUSR1 handler: reads the whole cache through its read view. A handler starts with
/// PKRU denying every key but 0, so this works only because reads never go through the
/// key-tagged view.
extern "C" fn sum_on_signal(_sig: libc::c_int) {
    let at = READ_AT.load(Ordering::Relaxed) as *const u8;
    // SAFETY: `at` is the start of the cache's read view, SIZE bytes long, which the
    // child keeps mapped while it raises the signal; volatile reads make no reference.
    let sum = checksum((0..SIZE as usize).map(|i| unsafe { std::ptr::read_volatile(at.add(i)) }));
    READ_SUM.store(sum, Ordering::Relaxed);
}

/// Child: a signal handler reads the cache, once while an update holds a window open on
/// this thread (the key granted), once after.
fn child_read_in_signal_handler(dir: &Path, arg: &str) {
    let mut cache = RioCache::open(disk_path(dir), &opts(dir, SIZE, protection_from(arg))).unwrap();
    let want = checksum(common::pattern(7, SIZE as usize).into_iter());
    READ_AT.store(
        cache.as_slice().unwrap().as_ptr() as usize,
        Ordering::Relaxed,
    );
    // SAFETY: the handler has the plain signature and touches only atomics and the
    // read view (volatile reads).
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = sum_on_signal as *const () as usize;
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &raw const sa, std::ptr::null_mut()),
            0
        );
    }
    let raise = || {
        READ_SUM.store(0, Ordering::Relaxed);
        // SAFETY: raise has no memory-safety preconditions; the handler is installed.
        assert_eq!(unsafe { libc::raise(libc::SIGUSR1) }, 0);
        READ_SUM.load(Ordering::Relaxed)
    };
    {
        let mut u = cache.update().unwrap();
        let v = u.read(TARGET, 1).unwrap()[0];
        u.window(TARGET, 1).unwrap()[0] = v;
        assert_eq!(raise(), want, "handler read during an update");
        // The window is still writable after the handler returned (sigreturn restores PKRU).
        u.window(TARGET, 1).unwrap()[0] = v;
    }
    common::report("read during update");
    assert_eq!(raise(), want, "handler read after the update");
    common::report("read after update");
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
        ("two_caches_out_of_order", child_two_caches_out_of_order),
        ("read_in_signal_handler", child_read_in_signal_handler),
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
    // Which guard caught it: the key, for a store to the writable view; the page
    // protection, for a store to the read-only view or under mprotect.
    let want = if mode == Protection::Pkey && role == "store_after_window_closed" {
        SEGV_PKUERR
    } else {
        SEGV_ACCERR
    };
    let what = format!("{role} under {mode:?}");
    assert_eq!(reported_si_code(dir, &what), want, "{what}: si_code");
    // The legitimate window in "store_after_window_closed" rewrote the byte with its own
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
    assert_eq!(cache.as_slice().unwrap(), common::pattern(7, SIZE as usize));
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
    assert_eq!(cache.as_slice().unwrap(), expected);
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
    if !common::pkeys_here() {
        return;
    }
    expect_segv("store_outside_window", Protection::Pkey);
    expect_segv("store_after_window_closed", Protection::Pkey);
}

/// Two caches on one thread whose updates end out of order: each update changes only
/// its own key's PKRU bits, so the second cache stays writable after the first one's
/// update ended, and after both ended neither key is left granted.
#[test]
fn pkey_two_caches_on_one_thread_end_out_of_order() {
    let _serial = common::serial();
    if !common::pkeys_here() {
        return;
    }
    for arg in ["pkey", "pkey:idle"] {
        let (t, image) = setup(Protection::Pkey);
        let dir = t.path();
        let o = opts(dir, SIZE, Protection::Pkey);
        RioCache::open(other_disk(dir), &o)
            .unwrap()
            .close()
            .unwrap();
        let disk = disk_path(dir);
        let before = snapshot(&[&disk]);
        let status = run_child("two_caches_out_of_order", dir, arg, &[]);
        let lines = common::reports(dir);
        let expected: &[&str] = if arg.ends_with("idle") {
            &["a ended", "both ended"]
        } else {
            &["a ended", "b written after a ended", "both ended"]
        };
        for line in expected {
            assert!(
                lines.iter().any(|l| l == line),
                "{arg}: the child died before {line:?}: {status:?}, {lines:?}"
            );
        }
        assert_signaled(status, libc::SIGSEGV, arg);
        assert!(
            !lines.iter().any(|l| l == "survived"),
            "{arg}: the first cache was left writable after both updates ended"
        );
        assert_eq!(reported_si_code(dir, arg), SEGV_PKUERR, "{arg}: si_code");
        common::assert_same_files(&before, &snapshot(&[&disk]), arg);
        let a = RioCache::open(&disk, &o).unwrap();
        assert_eq!(
            a.as_slice().unwrap(),
            common::pattern(7, SIZE as usize),
            "{arg}"
        );
        let b = RioCache::open(other_disk(dir), &o).unwrap();
        assert_eq!(b.read(0, 1).unwrap(), [B_MARK], "{arg}");
        let last = if arg.ends_with("idle") { 0 } else { B_MARK };
        assert_eq!(b.read(TARGET, 1).unwrap(), [last], "{arg}");
        drop(image);
    }
}

/// A signal handler reads the cache under every mode, even while the interrupted
/// thread has a window open (a handler runs with every key but 0 denied).
#[test]
fn signal_handlers_read_under_every_mode() {
    let _serial = common::serial();
    for mode in modes() {
        let (t, _image) = setup(mode);
        let dir = t.path();
        let status = run_child("read_in_signal_handler", dir, name(mode), &[]);
        assert!(
            status.success(),
            "{mode:?}: {status:?}, {:?}",
            common::reports(dir)
        );
        assert_eq!(
            common::reports(dir),
            ["read during update", "read after update"],
            "{mode:?}"
        );
    }
}

/// Without keys, asking for them is refused with the reason, matching what the kernel
/// says about the CPU (`pku` and `ospke` in /proc/cpuinfo), and nothing is created.
#[test]
fn pkey_refused_with_the_reason_when_unavailable() {
    let _serial = common::serial();
    if common::pkeys_here() {
        return;
    }
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = flags
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let t = TestDir::new();
    let e =
        RioCache::open(disk_path(t.path()), &opts(t.path(), SIZE, Protection::Pkey)).unwrap_err();
    let rio_cache::Error::PkeyUnavailable(why) = &e else {
        panic!("not PkeyUnavailable: {e:?}");
    };
    eprintln!("refused: {e}");
    if !flags.contains(&"pku") {
        assert!(
            matches!(why, rio_cache::PkeyUnavailable::NoCpuSupport),
            "{why:?}"
        );
        assert!(
            e.to_string().contains("CPU has no memory protection keys"),
            "{e}"
        );
    } else if !flags.contains(&"ospke") {
        assert!(
            matches!(why, rio_cache::PkeyUnavailable::NotEnabledByKernel),
            "{why:?}"
        );
    }
    assert!(
        !disk_path(t.path()).exists(),
        "a refused open created the disk file"
    );
    // Auto falls back to the alias on the same machine.
    let cache =
        RioCache::open(disk_path(t.path()), &opts(t.path(), SIZE, Protection::Auto)).unwrap();
    assert_eq!(cache.protection(), ActiveProtection::Alias);
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
        assert_eq!(cache.as_slice().unwrap(), expected);
        drop(cache);
        let cache = RioCache::open(disk_path(t.path()), &options).unwrap();
        assert_eq!(cache.start_kind(), StartKind::Warm);
        assert_eq!(cache.as_slice().unwrap(), expected);
        let image = cache.image_path().to_owned();
        cache.close().unwrap();
        image
    };
    // And through a checkpoint into the disk image (a cold start reads only that).
    std::fs::remove_file(image).unwrap();
    let cache = RioCache::open(disk_path(t.path()), &options).unwrap();
    assert!(matches!(cache.start_kind(), StartKind::Cold(_)));
    assert_eq!(cache.as_slice().unwrap(), expected);
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
    if common::pkeys_here() {
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
        let got = std::thread::scope(|s| {
            s.spawn(|| cache.as_slice().unwrap().to_vec())
                .join()
                .unwrap()
        });
        assert_eq!(got, data, "{mode:?}");
    }
}
