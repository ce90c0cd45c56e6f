//! A `PageMemo` names pages by number and a dirty-map generation only, not
//! the cache it came from. Passed to another cache's `SharedCache::update_with` (both
//! at generation 0 after their opens), it makes that cache's update skip marking the
//! pages it writes dirty: the checkpoint then leaves them out, and a power loss loses
//! the write although `checkpoint` returned `Ok`. (A `Claim` of another cache is
//! refused; a memo of another cache is silently trusted.)

use rio_cache::power::{self, Plan};
use rio_cache::{Protection, RioCache, RioOptions, SharedCache, Writeback};

#[test]
fn a_memo_of_another_cache_does_not_keep_a_write_out_of_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let opts = RioOptions::new()
        .size(1 << 16)
        .protection(Protection::None)
        .writeback(Writeback::Manual)
        .cache_dir(dir.path())
        .record_writes(dir.path());
    let a = SharedCache::new(RioCache::open(dir.path().join("a"), &opts).unwrap());
    let b = SharedCache::new(RioCache::open(dir.path().join("b"), &opts).unwrap());

    // One writer thread, one memo, two caches.
    let mut u = a.update().unwrap();
    u.window(0, 8).unwrap().copy_from_slice(b"in cache");
    let memo = u.memo();
    drop(u);
    let mut u = b.update_with(&memo).unwrap();
    u.window(0, 8).unwrap().copy_from_slice(b"durable?");
    drop(u);
    let dirty = b.stats().dirty_pages;
    // Everything committed so far is on disk once this returns.
    b.checkpoint().unwrap();
    b.close().unwrap();
    a.close().unwrap();

    // Power loss: the memory image is gone, the disk keeps what was written.
    power::cut(dir.path().join("b"), &opts, Plan::KeepAll).unwrap();
    let b = RioCache::open(dir.path().join("b"), &opts).unwrap();
    assert_eq!(
        b.read(0, 8).unwrap(),
        b"durable?",
        "a checkpointed write was lost ({dirty} dirty pages before the checkpoint)"
    );
}

/// The same with one cache closed and opened again in between: the new handle starts at
/// generation 0 too, so the writer's memo from the previous handle is trusted.
#[test]
fn a_memo_from_before_a_reopen_does_not_keep_a_write_out_of_the_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c");
    let opts = RioOptions::new()
        .size(1 << 16)
        .protection(Protection::None)
        .writeback(Writeback::Manual)
        .cache_dir(dir.path())
        .record_writes(dir.path());
    let c = SharedCache::new(RioCache::open(&path, &opts).unwrap());
    let mut u = c.update().unwrap();
    u.window(0, 8).unwrap().copy_from_slice(b"first v.");
    let memo = u.memo();
    drop(u);
    c.close().unwrap();

    let c = SharedCache::new(RioCache::open(&path, &opts).unwrap());
    let mut u = c.update_with(&memo).unwrap();
    u.window(0, 8).unwrap().copy_from_slice(b"second. ");
    drop(u);
    c.checkpoint().unwrap();
    c.close().unwrap();

    power::cut(&path, &opts, Plan::KeepAll).unwrap();
    let c = RioCache::open(&path, &opts).unwrap();
    assert_eq!(
        c.read(0, 8).unwrap(),
        b"second. ",
        "a checkpointed write was lost"
    );
}
