//! Power loss, emulated with rio-cache's write recording (`RioOptions::record_writes`)
//! and `power::cut`: the memory image is gone, every synced write survives, and of the
//! writes not yet synced the cut keeps none, all, a prefix, a suffix or a random subset,
//! tearing a partly kept write at 512-byte sectors. After it the cache starts cold from
//! the disk image, which must be exactly one checkpoint: the last one that committed.
//! The process is also killed at every checkpoint and recovery step (crash points), and
//! each crash state is put through every plan; a warm start after the kill alone must
//! hold every store. A last test checks the recorded writes and syncs of a checkpoint
//! and of a recovery against the protocol in docs/rio-cache.md.

mod common;

use std::path::{Path, PathBuf};

use common::{assert_signaled, child_dispatch, disk_path, opts, pattern, run_child, TestDir, PAGE};
use rio_cache::power::{self, IoEvent, IoKind, Plan, Target};
use rio_cache::{ColdReason, Protection, RioCache, StartKind, CRASH_POINTS, GROUP_CRASH_POINTS};

const SIZE: u64 = 16 * PAGE;

fn o(dir: &Path) -> rio_cache::RioOptions {
    opts(dir, SIZE, Protection::Auto)
        .checkpoint_on_close(false)
        .record_writes(dir.join("shm"))
}

/// The contents of checkpoint 1.
fn old_state() -> Vec<u8> {
    pattern(1, SIZE as usize)
}

/// Checkpoint 2: three runs of pages (1, 5-6, 12) changed, partly.
fn new_state() -> Vec<u8> {
    let mut v = old_state();
    for (page, seed) in [(1, 21), (5, 25), (6, 26), (12, 32)] {
        let at = (page * PAGE + 10) as usize;
        v[at..at + 3000].copy_from_slice(&pattern(seed, 3000));
    }
    v
}

/// Writes `want` over the cache's contents, page by page, only where it differs.
fn write_state(cache: &mut RioCache, want: &[u8]) {
    let mut u = cache.update().unwrap();
    for p in 0..SIZE / PAGE {
        let r = (p * PAGE) as usize..((p + 1) * PAGE) as usize;
        if u.read(p * PAGE, PAGE).unwrap() != &want[r.clone()] {
            u.window(p * PAGE, PAGE).unwrap().copy_from_slice(&want[r]);
        }
    }
}

/// Leaves checkpoint 1 (= old) on disk and the new state, not yet checkpointed, in the
/// memory image.
fn setup(dir: &Path) {
    let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    write_state(&mut cache, &old_state());
    cache.checkpoint().unwrap();
    assert_eq!(cache.stats().disk_seq, 1);
    write_state(&mut cache, &new_state());
}

/// Child: opens the cache (warm or cold) and takes a checkpoint; `CRASH_POINT` kills it.
fn child_checkpoint(dir: &Path, _arg: &str) {
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    cache.checkpoint().unwrap();
    common::report("survived");
}

/// Child: opens the cache (recovering it) and stops there.
fn child_open(dir: &Path, _arg: &str) {
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    common::report("opened");
    std::mem::forget(cache);
}

#[test]
fn child_process_entry() {
    child_dispatch(&[
        ("checkpoint", child_checkpoint),
        ("open", child_open),
        ("group", child_group),
    ]);
}

fn crash_points_or_skip() -> bool {
    if crash_point::enabled() {
        return true;
    }
    eprintln!("note: crash points are not compiled in (crash-point/enabled); skipped");
    false
}

/// Runs the checkpoint child with `point` armed and asserts it died there.
fn kill_at(dir: &Path, point: &str) {
    kill_child_at(dir, "checkpoint", point);
}

/// Runs the child `role` with `point` armed and asserts it died there.
fn kill_child_at(dir: &Path, role: &str, point: &str) {
    let spec = format!("{point}:1");
    let status = run_child(role, dir, "", &[("CRASH_POINT", &spec)]);
    assert_signaled(status, libc::SIGKILL, point);
    assert!(common::reports(dir).is_empty(), "{point} was never reached");
}

/// The power-cut plans every crash state is tried with.
fn plans() -> Vec<Plan> {
    let mut p = vec![
        Plan::DropAll,
        Plan::KeepAll,
        Plan::Prefix {
            writes: 0,
            sectors: 3,
        },
        Plan::Prefix {
            writes: 1,
            sectors: 1,
        },
        Plan::Suffix { writes: 1 },
        Plan::Suffix { writes: 2 },
    ];
    p.extend((1..=24).map(|seed| Plan::Random { seed }));
    p
}

/// Every file of a test directory (disk file, journal, memory image, write log), to put
/// a crash state aside and restore it.
struct Files(Vec<(PathBuf, Vec<u8>)>);

fn save(dir: &Path) -> Files {
    let mut v = Vec::new();
    for d in [dir.to_owned(), dir.join("shm")] {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                v.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    Files(v)
}

/// Restores the files in place (the disk file keeps its inode, which the memory image
/// records) and removes the ones that did not exist.
fn restore(dir: &Path, f: &Files) {
    for d in [dir.to_owned(), dir.join("shm")] {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() && !f.0.iter().any(|(q, _)| *q == p) {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    for (p, b) in &f.0 {
        std::fs::write(p, b).unwrap();
    }
}

/// Power loss under `plan`, then a cold start. Returns the data and the disk seq.
fn cut_and_open(dir: &Path, plan: Plan, what: &str) -> (Vec<u8>, u64) {
    power::cut(disk_path(dir), &o(dir), plan).unwrap();
    let cache = RioCache::open(disk_path(dir), &o(dir))
        .unwrap_or_else(|e| panic!("{what}, {plan:?}: open after the power cut: {e}"));
    assert_eq!(
        cache.start_kind(),
        StartKind::Cold(ColdReason::NoImage),
        "{what}"
    );
    (cache.as_slice().unwrap().to_vec(), cache.stats().disk_seq)
}

/// Power loss keeping nothing unsynced, then a cold start.
fn cold_start(dir: &Path) -> (Vec<u8>, u64) {
    cut_and_open(dir, Plan::DropAll, "cold start")
}

/// After a process crash the warm start holds every store, and the pages the dead
/// checkpoint had in flight are dirty again, so the next checkpoint makes them durable.
fn warm_start_holds_everything(dir: &Path, what: &str) {
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Warm, "{what}");
    assert!(
        cache.as_slice().unwrap() == new_state(),
        "{what}: warm start lost stores"
    );
    cache.checkpoint().unwrap();
    drop(cache);
    let (data, _) = cold_start(dir);
    assert!(
        data == new_state(),
        "{what}: the checkpoint after the warm start did not write every in-flight page"
    );
}

#[test]
fn cold_start_equals_the_last_checkpoint() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    setup(dir);
    let crashed = save(dir);
    // The writes since checkpoint 1 live only in memory: no plan brings them back.
    for plan in plans() {
        restore(dir, &crashed);
        let (data, seq) = cut_and_open(dir, plan, "after checkpoint 1");
        assert!(
            data == old_state(),
            "{plan:?}: cold start is not checkpoint 1"
        );
        assert_eq!(seq, 1);
    }

    // Writes after the cold start, then a checkpoint, then more writes: power loss keeps
    // exactly the checkpoint.
    let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Warm);
    write_state(&mut cache, &new_state());
    cache.checkpoint().unwrap();
    cache.window(0, 5).unwrap().copy_from_slice(b"later");
    drop(cache);
    let crashed = save(dir);
    for plan in plans() {
        restore(dir, &crashed);
        let (data, seq) = cut_and_open(dir, plan, "after checkpoint 2");
        assert!(
            data == new_state(),
            "{plan:?}: cold start is not checkpoint 2"
        );
        assert_eq!(seq, 2);
    }
}

/// The crash points of a checkpoint into the other slot, in order; the ambiguous one is
/// its header written but not yet synced.
const SLOT_POINTS: [&str; 8] = [
    "rio.checkpoint.copying",
    "rio.checkpoint.intent_synced",
    "rio.checkpoint.slot_partial",
    "rio.checkpoint.staged",
    "rio.checkpoint.slot_written",
    "rio.checkpoint.slot_synced",
    "rio.checkpoint.meta_written",
    "rio.checkpoint.meta_synced",
];

/// The crash points of installing a committed journal batch in place (a group member's
/// checkpoint after its coordinator decided).
const INSTALL_POINTS: [&str; 4] = [
    "rio.checkpoint.install_partial",
    "rio.checkpoint.installed",
    "rio.checkpoint.disk_synced",
    "rio.checkpoint.journal_cleared",
];

#[test]
fn every_checkpoint_point_has_a_test() {
    let mut listed: Vec<&str> = CRASH_POINTS
        .iter()
        .chain(GROUP_CRASH_POINTS)
        .copied()
        .filter(|p| p.starts_with("rio.checkpoint."))
        .collect();
    listed.sort_unstable();
    let mut tested: Vec<&str> = SLOT_POINTS.iter().chain(&INSTALL_POINTS).copied().collect();
    tested.sort_unstable();
    assert_eq!(listed, tested, "a checkpoint step without a test");
}

#[test]
fn killed_at_every_checkpoint_step_then_power_loss() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    // Until the other slot's header is written, the checkpoint has not happened; once
    // it is synced, it has. In between, either is a correct answer.
    let commit_written = SLOT_POINTS
        .iter()
        .position(|p| *p == "rio.checkpoint.meta_written")
        .unwrap();
    for (i, point) in SLOT_POINTS.iter().enumerate() {
        let t = TestDir::new();
        let dir = t.path();
        setup(dir);
        kill_at(dir, point);
        let crashed = save(dir);
        let mut outcomes = Vec::new();
        for plan in plans() {
            restore(dir, &crashed);
            let (data, seq) = cut_and_open(dir, plan, point);
            let is_old = data == old_state() && seq == 1;
            let is_new = data == new_state() && seq == 2;
            assert!(
                is_old || is_new,
                "{point}, {plan:?}: cold start is neither checkpoint (seq {seq})"
            );
            if i < commit_written {
                assert!(
                    is_old,
                    "{point}, {plan:?}: an uncommitted checkpoint was installed"
                );
            } else if i > commit_written {
                assert!(is_new, "{point}, {plan:?}: a committed checkpoint was lost");
            }
            outcomes.push(is_new);
        }
        if i == commit_written {
            // The unsynced header: some plans keep it, some lose it.
            assert!(
                outcomes.contains(&true) && outcomes.contains(&false),
                "{point}: the plans do not cover both outcomes"
            );
        }

        restore(dir, &crashed);
        warm_start_holds_everything(dir, point);
    }
}

/// A checkpoint into the other slot cut off by power loss leaves that slot part old,
/// part new, under its old header. The cold start that follows marks as differing what
/// the current header's map names (here checkpoint 1's: every page), so its next
/// checkpoint rewrites those pages: a later checkpoint that changes one page must not
/// bring back the dead one's pages.
#[test]
fn a_checkpoint_after_a_cold_start_rewrites_what_the_other_slot_lacks() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    let t = TestDir::new();
    let dir = t.path();
    setup(dir);
    // Pages of the new state reach the other slot; its header does not.
    kill_at(dir, "rio.checkpoint.slot_written");
    power::cut(disk_path(dir), &o(dir), Plan::KeepAll).unwrap();
    let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Cold(ColdReason::NoImage));
    assert!(cache.as_slice().unwrap() == old_state());
    let mut want = old_state();
    want[3 * PAGE as usize..3 * PAGE as usize + 4].copy_from_slice(b"only");
    cache.window(3 * PAGE, 4).unwrap().copy_from_slice(b"only");
    cache.checkpoint().unwrap();
    drop(cache);
    let (data, seq) = cold_start(dir);
    assert_eq!(seq, 2);
    assert!(
        data == want,
        "the slot the dead checkpoint wrote into was taken as it stood"
    );
}

/// Checkpoint 2 (the new state, into slot 0) on disk, the memory image gone with the
/// power: slot 0's header says slot 1 lacks pages 1, 5, 6 and 12.
fn setup_two_checkpoints(dir: &Path) {
    setup(dir);
    let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    cache.checkpoint().unwrap();
    assert_eq!(cache.stats().disk_seq, 2);
    drop(cache);
    power::cut(disk_path(dir), &o(dir), Plan::DropAll).unwrap();
}

/// `state` with `what` written at the start of page `page`.
fn with(mut state: Vec<u8>, page: u64, what: &[u8]) -> Vec<u8> {
    let at = (page * PAGE) as usize;
    state[at..at + what.len()].copy_from_slice(what);
    state
}

/// After a clean cold start, the first checkpoint writes its own pages and copies only
/// the pages the current header names (the last checkpoint's), not the whole slot; the
/// disk then holds exactly the new checkpoint. A header that forgot its checkpoint's
/// pages (mutant `lacks-none`) leaves the other slot stale there.
#[test]
fn a_cold_start_copies_only_the_pages_the_header_names() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    setup_two_checkpoints(dir);
    let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    assert_eq!(cache.start_kind(), StartKind::Cold(ColdReason::NoImage));
    cache.window(3 * PAGE, 4).unwrap().copy_from_slice(b"page");
    cache.checkpoint().unwrap();
    let s = cache.stats();
    // Page 3, then pages 1, 5, 6 and 12 copied from slot 0, then the header; page 3
    // is not where slot 0's header says the slots differ: an intent first.
    assert_eq!(s.intents_written, 1);
    assert_eq!(s.bytes_written, 5 * PAGE + 512 + 512, "{s:?}");
    drop(cache);
    let (data, seq) = cold_start(dir);
    assert_eq!(seq, 3);
    assert!(data == with(new_state(), 3, b"page"), "slot 1 is stale");
}

/// A checkpoint cut off by power loss after it wrote pages the current header does not
/// name: its intent record, synced before them, makes the cold start rewrite them. Every
/// cut keeps checkpoint 2; the checkpoint after it must leave no page of the dead one
/// behind (mutants `intent-none` and `intent-no-sync`).
#[test]
fn a_checkpoint_cut_off_by_power_loss_is_rewritten_where_its_intent_says() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    let t = TestDir::new();
    let dir = t.path();
    setup_two_checkpoints(dir);
    // Pages 8 and 9 are not among checkpoint 2's: the dead checkpoint writes them into
    // slot 1 (and copies 1, 5, 6 and 12), then dies before the fsync.
    {
        let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
        cache.window(8 * PAGE, 4).unwrap().copy_from_slice(b"dead");
        cache.window(9 * PAGE, 4).unwrap().copy_from_slice(b"dead");
        drop(cache);
    }
    kill_at(dir, "rio.checkpoint.slot_written");
    let crashed = save(dir);
    for plan in plans() {
        restore(dir, &crashed);
        let (data, seq) = cut_and_open(dir, plan, "the dead checkpoint");
        assert!(
            data == new_state() && seq == 2,
            "{plan:?}: not checkpoint 2"
        );
        let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
        cache.window(3 * PAGE, 4).unwrap().copy_from_slice(b"next");
        cache.checkpoint().unwrap();
        drop(cache);
        let (data, seq) = cold_start(dir);
        assert_eq!(seq, 3, "{plan:?}");
        assert!(
            data == with(new_state(), 3, b"next"),
            "{plan:?}: a page the dead checkpoint wrote came back"
        );
    }
}

/// A group checkpoint installs its pages in place into the current slot; its header's
/// map adds them (mutant `install-lacks-none`), so the checkpoint after a cold start
/// copies them into the other slot.
#[test]
fn an_install_in_place_adds_its_pages_to_the_header_map() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    setup_two_checkpoints(dir);
    {
        let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
        cache.window(3 * PAGE, 5).unwrap().copy_from_slice(b"group");
        drop(cache);
    }
    let status = common::run_child("group", dir, "", &[]);
    assert!(status.success(), "group checkpoint: {status:?}");
    let (data, seq) = cold_start(dir);
    assert_eq!(seq, 3);
    let want = with(new_state(), 3, b"group");
    assert!(data == want);
    let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    cache.window(9 * PAGE, 4).unwrap().copy_from_slice(b"last");
    cache.checkpoint().unwrap();
    drop(cache);
    let (data, seq) = cold_start(dir);
    assert_eq!(seq, 4);
    assert!(
        data == with(want, 9, b"last"),
        "the installed page is stale in the other slot"
    );
}

/// Child: opens the cache (warm or cold), makes it a group's only member and takes a
/// group checkpoint (prepared into the journal, decided, installed in place);
/// `CRASH_POINT` kills it.
fn child_group(dir: &Path, _arg: &str) {
    let cache = rio_cache::SharedCache::new(RioCache::open(disk_path(dir), &o(dir)).unwrap());
    let c = rio_cache::group::Coordinator::open(
        dir.join("coordinator"),
        true,
        rio_cache::Faults::none(),
    )
    .unwrap();
    let epoch = c.next_epoch().unwrap();
    let prepared = cache.prepare_group(epoch, c.path()).unwrap();
    c.decide(epoch).unwrap();
    crash_point::crash_point!("test.group.decided");
    prepared.finish().unwrap();
    common::report("survived");
}

/// Runs the group child with `point` armed and asserts it died there.
fn kill_group_at(dir: &Path, point: &str) {
    kill_child_at(dir, "group", point);
}

#[test]
fn killed_at_every_install_step_then_power_loss() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    for point in INSTALL_POINTS {
        let t = TestDir::new();
        let dir = t.path();
        setup(dir);
        kill_group_at(dir, point);
        let crashed = save(dir);
        // The epoch is decided: the checkpoint happened, whatever the cut keeps.
        for plan in plans() {
            restore(dir, &crashed);
            let (data, seq) = cut_and_open(dir, plan, point);
            assert!(
                data == new_state() && seq == 2,
                "{point}, {plan:?}: a committed checkpoint was lost (seq {seq})"
            );
        }
        restore(dir, &crashed);
        warm_start_holds_everything(dir, point);
    }
}

#[test]
fn killed_at_every_recovery_step_then_power_loss() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    let points: Vec<&str> = GROUP_CRASH_POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("rio.recover."))
        .collect();
    assert_eq!(
        points.len(),
        3,
        "a recovery step without a test: {points:?}"
    );
    for point in points {
        for warm in [true, false] {
            let what = format!("{point} ({} recovery)", if warm { "warm" } else { "cold" });
            let t = TestDir::new();
            let dir = t.path();
            setup(dir);
            // A committed journal that the next open must install...
            kill_group_at(dir, "test.group.decided");
            if !warm {
                // ...after a power loss...
                power::cut(disk_path(dir), &o(dir), Plan::Random { seed: 11 }).unwrap();
            }
            // ...and that open is killed while installing it.
            kill_at(dir, point);
            let crashed = save(dir);
            // A power loss now: the committed journal is installed again.
            for plan in plans() {
                restore(dir, &crashed);
                let (data, seq) = cut_and_open(dir, plan, &what);
                assert!(
                    data == new_state() && seq == 2,
                    "{what}, {plan:?}: cold start lost the committed checkpoint"
                );
            }
            restore(dir, &crashed);
            if warm {
                warm_start_holds_everything(dir, &what);
            } else {
                // The killed open never finished loading its image: the next one
                // notices and loads again.
                let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
                assert_eq!(
                    cache.start_kind(),
                    StartKind::Cold(ColdReason::Incomplete),
                    "{what}"
                );
                assert!(cache.as_slice().unwrap() == new_state(), "{what}: data");
                assert_eq!(cache.stats().disk_seq, 2, "{what}");
            }
        }
    }
}

/// A recovery that completed, then a power loss: what it installed must be durable
/// before it cleared the journal.
#[test]
fn power_loss_right_after_a_recovery() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    let t = TestDir::new();
    let dir = t.path();
    setup(dir);
    kill_group_at(dir, "test.group.decided");
    let status = common::run_child("open", dir, "", &[]);
    assert!(status.success(), "recovering open: {status:?}");
    let crashed = save(dir);
    for plan in plans() {
        restore(dir, &crashed);
        let (data, seq) = cut_and_open(dir, plan, "after recovery");
        assert!(
            data == new_state() && seq == 2,
            "{plan:?}: the recovered checkpoint was lost"
        );
    }
}

#[test]
fn killed_during_a_cold_load() {
    let _serial = common::serial();
    if !crash_points_or_skip() {
        return;
    }
    for point in ["rio.cold_load.half", "rio.cold_load.loaded"] {
        let t = TestDir::new();
        let dir = t.path();
        setup(dir);
        power::cut(disk_path(dir), &o(dir), Plan::KeepAll).unwrap();
        kill_at(dir, point);
        let cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
        assert_eq!(
            cache.start_kind(),
            StartKind::Cold(ColdReason::Incomplete),
            "{point}"
        );
        assert!(cache.as_slice().unwrap() == old_state(), "{point}: data");
    }
}

/// The recorded writes and syncs, one token each: `J`/`D` for the journal or disk
/// image, `h` a write of a slot's header (512 bytes at byte 0 or 512 of the disk image,
/// or the journal's header at 0), `Di` the disk image's intent record (at 1024), `w` a
/// write elsewhere, `s` a sync. Consecutive page writes to the disk image collapse into
/// one `Dw+`.
fn protocol(events: &[IoEvent]) -> String {
    let mut out: Vec<String> = Vec::new();
    for e in events {
        let f = if e.target == Target::Disk { "D" } else { "J" };
        let tok = match e.kind {
            IoKind::Write { offset: 0, .. } => format!("{f}h"),
            IoKind::Write {
                offset: 512,
                len: 512,
            } if e.target == Target::Disk => "Dh".into(),
            IoKind::Write {
                offset: 1024,
                len: 512,
            } if e.target == Target::Disk => "Di".into(),
            IoKind::Write { .. } => format!("{f}w"),
            IoKind::Resize { .. } => format!("{f}r"),
            IoKind::Sync => format!("{f}s"),
            _ => format!("{f}?"),
        };
        if tok == "Dw" && out.last().is_some_and(|l| l == "Dw+") {
            continue;
        }
        out.push(if tok == "Dw" { "Dw+".into() } else { tok });
    }
    out.join(" ")
}

/// The order of writes and syncs is the protocol of docs/rio-cache.md ("Checkpoints"):
/// a checkpoint writes its pages into the other slot, fsyncs, writes that slot's
/// header, fsyncs, and never touches the journal; before its pages, if the current
/// header's map does not name them all, its intent record, fsynced. A group member's checkpoint writes
/// its journal body, fsync, the sealed commit record, fsync; then (decided) its pages
/// and header in place, fsync of the disk image, journal header zeroed, fsync. A
/// recovery installs the same way. A missing or moved fsync changes the string.
#[test]
fn checkpoint_and_recovery_follow_the_documented_fsync_order() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    setup(dir);
    let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
    let before = power::recorded(disk_path(dir), &o(dir)).unwrap().len();
    write_state(&mut cache, &old_state());
    cache.checkpoint().unwrap();
    drop(cache);
    let events = power::recorded(disk_path(dir), &o(dir)).unwrap();
    let events = &events[before..];
    // Checkpoint 1 wrote every page: its header says the other slot may differ on
    // every page, so this checkpoint needs no intent.
    assert_eq!(protocol(events), "Dw+ Ds Dh Ds", "checkpoint: {events:?}");
    // The slots alternate: checkpoint 1 went to slot 1 (its header at byte 512),
    // this one, checkpoint 2, to slot 0 (at byte 0).
    assert!(
        matches!(
            events[events.len() - 2].kind,
            IoKind::Write {
                offset: 0,
                len: 512
            }
        ),
        "{events:?}"
    );

    // Checkpoint 2 wrote pages 1, 5, 6 and 12: a checkpoint of page 3 writes its intent
    // first; one of page 3 again does not (checkpoint 3's header names it).
    for (n, want) in [(3, "Di Ds Dw+ Ds Dh Ds"), (4, "Dw+ Ds Dh Ds")] {
        let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
        let before = power::recorded(disk_path(dir), &o(dir)).unwrap().len();
        cache
            .window(3 * PAGE, 1)
            .unwrap()
            .copy_from_slice(&[n as u8]);
        cache.checkpoint().unwrap();
        assert_eq!(cache.stats().intents_written, u64::from(n == 3));
        drop(cache);
        let events = power::recorded(disk_path(dir), &o(dir)).unwrap();
        let events = &events[before..];
        assert_eq!(protocol(events), want, "checkpoint {n}: {events:?}");
    }

    // A group member's checkpoint.
    let before = power::recorded(disk_path(dir), &o(dir)).unwrap().len();
    {
        let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
        write_state(&mut cache, &new_state());
        drop(cache);
    }
    let status = common::run_child("group", dir, "", &[]);
    assert!(status.success(), "group checkpoint: {status:?}");
    let events = power::recorded(disk_path(dir), &o(dir)).unwrap();
    let events = &events[before..];
    assert_eq!(
        protocol(events),
        "Jh Js Jw Js Dw+ Dh Ds Jh Js",
        "group checkpoint: {events:?}"
    );

    if !crash_points_or_skip() {
        return;
    }
    let t = TestDir::new();
    let dir = t.path();
    setup(dir);
    kill_group_at(dir, "test.group.decided");
    let before = power::recorded(disk_path(dir), &o(dir)).unwrap().len();
    drop(RioCache::open(disk_path(dir), &o(dir)).unwrap());
    let events = power::recorded(disk_path(dir), &o(dir)).unwrap();
    let events = &events[before..];
    assert_eq!(protocol(events), "Dw+ Dh Ds Jh Js", "recovery: {events:?}");
}

/// Without protection, an update remembers the pages the previous one opened (they are
/// known dirty). A checkpoint in between clears those marks, so a page written again
/// after it must be marked dirty again, or the next checkpoint would miss it.
#[test]
fn page_rewritten_after_a_checkpoint_reaches_the_next_one() {
    use rio_cache::{Protection, RioCache, RioOptions, Writeback};
    let _serial = common::serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.rio");
    let opts = RioOptions::new()
        .size(64 << 10)
        .cache_dir(dir.path())
        .protection(Protection::None)
        .writeback(Writeback::Manual)
        .checkpoint_on_close(false)
        .record_writes(dir.path());
    let mut cache = RioCache::open(&path, &opts).unwrap();
    cache.window(100, 4).unwrap().copy_from_slice(b"one!");
    cache.checkpoint().unwrap();
    cache.window(100, 4).unwrap().copy_from_slice(b"two!");
    assert_eq!(
        cache.stats().dirty_pages,
        1,
        "the rewritten page is dirty again"
    );
    cache.checkpoint().unwrap();
    drop(cache);
    power::cut(&path, &opts, Plan::DropAll).unwrap();
    let cache = RioCache::open(&path, &opts).unwrap();
    assert_eq!(cache.read(100, 4).unwrap(), b"two!");
}

/// A cache whose size is not a whole number of pages, with exactly 3,552 whole pages (the
/// most a map holds one page per chunk) and a partial last one: a grow edits that last
/// page, installing it in place; the header's map must cover it (its chunks sized for the
/// pages rounded up), so that after a cold start the next checkpoint copies it into the
/// other slot.
#[test]
fn a_grow_edit_of_a_partial_last_page_reaches_the_other_slot() {
    const GROWN: u64 = 3552 * PAGE + 100;
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path();
    let big = opts(dir, GROWN, Protection::None)
        .checkpoint_on_close(false)
        .record_writes(dir.join("shm"));
    {
        let mut cache = RioCache::open(disk_path(dir), &o(dir)).unwrap();
        cache.window(0, 4).unwrap().copy_from_slice(b"zero");
        cache.checkpoint().unwrap();
        cache
            .grow_with(GROWN, &[(3552 * PAGE, b"tail".as_slice())])
            .unwrap();
        assert_eq!(cache.stats().disk_seq, 2);
    }
    power::cut(disk_path(dir), &big, Plan::DropAll).unwrap();
    {
        let mut cache = RioCache::open(disk_path(dir), &big).unwrap();
        assert_eq!(cache.start_kind(), StartKind::Cold(ColdReason::NoImage));
        assert_eq!(
            &cache.as_slice().unwrap()[3552 * PAGE as usize..][..4],
            b"tail"
        );
        cache.window(5 * PAGE, 4).unwrap().copy_from_slice(b"next");
        cache.checkpoint().unwrap();
        assert_eq!(cache.stats().disk_seq, 3);
    }
    power::cut(disk_path(dir), &big, Plan::DropAll).unwrap();
    let cache = RioCache::open(disk_path(dir), &big).unwrap();
    assert_eq!(cache.stats().disk_seq, 3);
    let d = cache.as_slice().unwrap();
    assert_eq!(&d[5 * PAGE as usize..][..4], b"next");
    assert_eq!(
        &d[3552 * PAGE as usize..][..4],
        b"tail",
        "the grow's edit of the last page is stale in the other slot"
    );
}

/// A new cache with a partial last page and exactly 3,552 whole ones, cut off before its
/// first checkpoint: the cold open returns (its map is sized for the pages rounded up; a
/// map too small for the cache once made the cold open loop).
#[test]
fn a_cold_open_of_a_new_cache_with_a_partial_last_page_returns() {
    let _serial = common::serial();
    let t = TestDir::new();
    let dir = t.path().to_owned();
    let o = opts(&dir, 3552 * PAGE + 100, Protection::None)
        .checkpoint_on_close(false)
        .record_writes(dir.join("shm"));
    drop(RioCache::open(disk_path(&dir), &o).unwrap());
    power::cut(disk_path(&dir), &o, Plan::DropAll).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (path, o2) = (disk_path(&dir), o.clone());
    std::thread::spawn(move || {
        let _ = tx.send(RioCache::open(&path, &o2).map(|c| c.start_kind()));
    });
    let kind = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .expect("the cold open hangs")
        .unwrap();
    assert_eq!(kind, StartKind::Cold(ColdReason::NoImage));
}

/// A checkpoint of a snapshot larger than the 16 MiB it copies whole (so it is still being
/// preserved by writers) whose intent record fails to be written, or synced: the error is
/// returned, the handle refuses further writes, and nothing is lost: a reopen checkpoints
/// everything, and a power cut after that keeps it.
#[test]
fn a_failed_intent_record_loses_nothing() {
    const PAGES: u64 = 17 * 256;
    let _serial = common::serial();
    for (step, what) in [(0, "write"), (1, "fsync")] {
        let t = TestDir::new();
        let dir = t.path();
        let faults = rio_cache::Faults::counting();
        let o = |f: &rio_cache::Faults| {
            opts(dir, PAGES * PAGE, Protection::None)
                .checkpoint_on_close(false)
                .record_writes(dir.join("shm"))
                .faults(f.clone())
        };
        let mut want = vec![0u8; (PAGES * PAGE) as usize];
        {
            let mut cache = RioCache::open(disk_path(dir), &o(&faults)).unwrap();
            for p in 0..PAGES {
                cache
                    .window(p * PAGE, 1)
                    .unwrap()
                    .copy_from_slice(&[p as u8 | 1]);
                want[(p * PAGE) as usize] = p as u8 | 1;
            }
            // A new file's header names no page: the intent is the checkpoint's first
            // write, then its fsync.
            let n = faults.calls().len() as u64;
            faults.fail_at(n + step, libc::EIO);
            let err = cache.checkpoint().unwrap_err();
            assert!(err.to_string().contains("Input/output"), "{what}: {err}");
            let op = [rio_cache::IoOp::Write, rio_cache::IoOp::Sync][step as usize];
            assert_eq!(
                faults.failed().map(|(c, _)| (c.op, c.file)),
                Some((op, rio_cache::IoFile::Disk)),
                "{what}"
            );
            assert!(
                cache.window(0, 1).is_err(),
                "{what}: writes after the failure"
            );
        }
        let none = rio_cache::Faults::none();
        let cache = RioCache::open(disk_path(dir), &o(&none)).unwrap();
        assert_eq!(cache.start_kind(), StartKind::Warm, "{what}");
        assert!(cache.as_slice().unwrap() == want, "{what}: the warm start");
        cache.checkpoint().unwrap();
        drop(cache);
        power::cut(disk_path(dir), &o(&none), Plan::DropAll).unwrap();
        let cache = RioCache::open(disk_path(dir), &o(&none)).unwrap();
        assert_eq!(
            cache.start_kind(),
            StartKind::Cold(ColdReason::NoImage),
            "{what}"
        );
        assert!(
            cache.as_slice().unwrap() == want,
            "{what}: after the power cut"
        );
    }
}
