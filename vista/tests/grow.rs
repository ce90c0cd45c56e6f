//! `Segment::grow`: the data and every offset stay, the new bytes read as zero and take
//! part in transactions, warm and cold reopens find the new length, a refused grow
//! writes nothing, and a process killed at every step of a grow (and of its recovery)
//! finds the segment at exactly the old length or the new one, warm and after a power
//! loss.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{pattern, Place};
use vista::{Error, Protection, Segment, StartKind};

const SIZE: u64 = 40 << 10;
/// Not a whole number of pages, on purpose.
const GROWN: u64 = (100 << 10) + 12;
const CHILD_ENV: &str = "VISTA_GROW_CHILD";

/// One test at a time: a forked child briefly holds every open descriptor, including
/// another test's locked segment (see tests/crash.rs).
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The committed contents before the grow: a pattern over the first 4 KiB and the
/// last 8 bytes.
fn fill(seg: &Segment) {
    seg.transaction(|tx| {
        tx.write(0, &pattern(1, 4096))?;
        tx.put(SIZE - 8, &0xfeed_u64)
    })
    .unwrap();
}

fn check_old_bytes(seg: &Segment, what: &str) {
    assert_eq!(seg.read(0, 4096).unwrap(), pattern(1, 4096), "{what}");
    assert_eq!(seg.get::<u64>(SIZE - 8).unwrap(), 0xfeed, "{what}");
}

fn check_new_bytes_zero(seg: &Segment, what: &str) {
    let new = seg.read(SIZE, GROWN - SIZE).unwrap();
    assert!(new.iter().all(|&b| b == 0), "{what}: new bytes not zero");
}

#[test]
fn grow_keeps_the_data_and_the_new_bytes_work_in_transactions() {
    let _s = serial();
    let mut modes = vec![Protection::None, Protection::Mprotect, Protection::Alias];
    if common::pkeys_here() {
        modes.push(Protection::Pkey);
    }
    for mode in modes {
        let what = format!("{mode:?}");
        let place = Place::new();
        let opts = place.opts(SIZE).protection(mode);
        let mut seg = Segment::open(&place.path, &opts).unwrap();
        fill(&seg);
        seg.grow(GROWN).unwrap();
        assert_eq!(seg.len(), GROWN, "{what}");
        check_old_bytes(&seg, &what);
        check_new_bytes_zero(&seg, &what);
        // The new range takes part in transactions: commit, abort, across the old end.
        seg.transaction(|tx| {
            tx.put(GROWN - 8, &7u64)?;
            tx.write(SIZE - 2, b"xyzw")
        })
        .unwrap();
        let mut tx = seg.begin().unwrap();
        tx.put(GROWN - 16, &9u64).unwrap();
        drop(tx); // aborted
        assert_eq!(seg.get::<u64>(GROWN - 16).unwrap(), 0, "{what}");
        assert_eq!(seg.get::<u64>(GROWN - 8).unwrap(), 7, "{what}");
        assert_eq!(seg.read(SIZE - 2, 4).unwrap(), b"xyzw", "{what}");
        assert!(matches!(
            seg.read(GROWN - 1, 2),
            Err(Error::OutOfRange { size: GROWN, .. })
        ));
        drop(seg);

        // Warm.
        let seg = Segment::open(&place.path, &opts).unwrap();
        assert_eq!(seg.start_kind(), StartKind::Warm, "{what}");
        assert_eq!(seg.len(), GROWN, "{what}");
        assert_eq!(seg.get::<u64>(GROWN - 8).unwrap(), 7, "{what}");
        assert_eq!(seg.read(0, 4).unwrap(), pattern(1, 4096)[..4], "{what}");
        seg.close().unwrap();

        // Cold.
        place.lose_power();
        let seg = Segment::open(&place.path, &opts).unwrap();
        assert!(matches!(seg.start_kind(), StartKind::Cold(_)), "{what}");
        assert_eq!(seg.len(), GROWN, "{what}");
        assert_eq!(seg.get::<u64>(GROWN - 8).unwrap(), 7, "{what}");
        assert_eq!(seg.read(SIZE - 2, 4).unwrap(), b"xyzw", "{what}");
    }
}

#[test]
fn a_finished_grow_survives_power_loss_without_a_checkpoint() {
    let _s = serial();
    let place = Place::new();
    // The child commits the fill (not checkpointed: the grow's checkpoint takes it
    // along), grows, and exits without closing the segment.
    assert!(!run(&place, "grow-no-close", None));
    place.lose_power();
    assert!(old_or_new(&place, "finished grow, then power loss"));
}

#[test]
fn refused_grows_write_nothing() {
    let _s = serial();
    let place = Place::new();
    let opts = place.opts(SIZE);
    let mut seg = Segment::open(&place.path, &opts).unwrap();
    fill(&seg);
    let before = place.snapshot();
    assert!(matches!(
        seg.grow(SIZE - 1),
        Err(Error::CannotShrink { len: SIZE, requested }) if requested == SIZE - 1
    ));
    assert!(matches!(
        seg.grow(u64::MAX),
        Err(Error::TooLarge {
            requested: u64::MAX,
            ..
        })
    ));
    assert!(matches!(seg.grow(1 << 60), Err(Error::TooLarge { .. })));
    seg.grow(SIZE).unwrap(); // the same length: nothing to do
    assert!(place.snapshot() == before, "a refused grow changed a file");
    assert_eq!(seg.len(), SIZE);
    check_old_bytes(&seg, "after refused grows");
}

/// Child: opens the segment, commits the fill, and grows it (a crash point may kill
/// it on the way); or (`recover`) opens it at whatever length it has.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let path = PathBuf::from(std::env::var("VISTA_SEG").unwrap());
    let cache = PathBuf::from(std::env::var("VISTA_CACHE").unwrap());
    let opts = child_opts(&cache);
    match role.as_str() {
        "grow" => {
            let mut seg = Segment::open(&path, &opts).unwrap();
            fill(&seg);
            seg.grow(GROWN).unwrap();
        }
        "grow-no-close" => {
            let mut seg = Segment::open(&path, &opts).unwrap();
            fill(&seg);
            seg.grow(GROWN).unwrap();
            std::mem::forget(seg); // no close-time checkpoint
        }
        "recover" => drop(Segment::open(&path, &opts).unwrap()),
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

fn child_opts(cache: &Path) -> vista::Options {
    vista::Options::new()
        .size(SIZE)
        .undo_log_size(16 << 10)
        .protection(common::protection())
        .writeback(vista::Writeback::Manual)
        .cache_dir(cache)
}

/// Runs `role` with `point` armed; returns whether it was killed.
fn run(place: &Place, role: &str, point: Option<&str>) -> bool {
    std::fs::create_dir_all(place.cache_dir()).unwrap();
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env("VISTA_SEG", &place.path)
        .env("VISTA_CACHE", place.cache_dir())
        .env_remove(crash_point::ENV_VAR)
        .stdout(std::process::Stdio::null());
    if let Some(p) = point {
        cmd.env(crash_point::ENV_VAR, format!("{p}:1"));
    }
    let status = cmd.status().unwrap();
    match status.signal() {
        Some(libc::SIGKILL) => true,
        None if status.success() => false,
        _ => panic!("{role} at {point:?}: {status:?}"),
    }
}

/// Opens the segment after a crash: it must be exactly the old length or the new one,
/// with the committed fill and zeros beyond. Returns whether it grew.
fn old_or_new(place: &Place, what: &str) -> bool {
    let seg = Segment::open(&place.path, &child_opts(&place.cache_dir()))
        .unwrap_or_else(|e| panic!("{what}: open: {e}"));
    check_old_bytes(&seg, what);
    match seg.len() {
        SIZE => false,
        GROWN => {
            check_new_bytes_zero(&seg, what);
            true
        }
        other => panic!("{what}: length {other}"),
    }
}

#[test]
fn killed_at_every_grow_step() {
    let _s = serial();
    let points: Vec<&str> = rio_cache::GROW_CRASH_POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("rio.grow."))
        .chain(["rio.cold_load.half"])
        .collect();
    let committed_from = points
        .iter()
        .position(|p| *p == "rio.grow.commit_written")
        .unwrap();
    for (i, point) in points.iter().enumerate() {
        let place = Place::new();
        assert!(
            run(&place, "grow", Some(point)),
            "{point} was never reached"
        );
        let crashed = place.snapshot();
        // The process crash: a written commit record survives it.
        let grown = old_or_new(&place, &format!("{point}, warm"));
        assert_eq!(grown, i >= committed_from, "{point}, warm");
        // A power loss right after the crash: every write the grow made was synced
        // except, at `commit_written`, the commit record (kept here: the disk files
        // are as the crash left them; rio-cache's tests/grow.rs cuts them too).
        crashed.restore();
        place.lose_power();
        let grown = old_or_new(&place, &format!("{point}, cold"));
        assert_eq!(grown, i >= committed_from, "{point}, cold");
    }
    // And while recovering: undoing an extension, installing a committed grow.
    for (cut_at, recover_at, grown) in [
        ("rio.grow.extended", "rio.recover.grow_undone", false),
        ("rio.grow.committed", "rio.recover.installed", true),
    ] {
        let place = Place::new();
        assert!(run(&place, "grow", Some(cut_at)));
        assert!(run(&place, "recover", Some(recover_at)), "{recover_at}");
        let what = format!("{cut_at} then {recover_at}");
        assert_eq!(old_or_new(&place, &what), grown, "{what}");
    }
    // Not killed: grown.
    let place = Place::new();
    assert!(!run(&place, "grow", None));
    assert!(old_or_new(&place, "completed"));
}

/// A grow starts with a checkpoint; when that checkpoint is refused (a fenced segment:
/// a member of a group opened alone; a transaction leaked with `mem::forget`, so the
/// checkpoint gives up as busy), the grow is refused having written nothing, and the
/// segment is not poisoned: transactions and checkpoints go on (the grow poisoned it).
#[test]
fn a_grow_refused_by_its_first_checkpoint_poisons_nothing() {
    // Fenced.
    let p = Place::new();
    let opts = p.opts(1 << 16);
    drop(Segment::open(&p.path, &opts).unwrap());
    std::fs::write(vista::fence_path(&p.path), b"").unwrap();
    let mut seg = Segment::open(&p.path, &opts).unwrap();
    assert!(seg.is_fenced());
    let e = seg.grow(1 << 17).unwrap_err();
    assert!(matches!(e, Error::GroupCheckpointRequired), "{e}");
    seg.transaction(|tx| tx.put(0, &1u64)).unwrap();
    assert_eq!(seg.len(), 1 << 16);
    drop(seg);
    // Busy.
    let p = Place::new();
    let opts = p
        .opts(1 << 16)
        .checkpoint_wait(std::time::Duration::from_millis(50));
    let mut seg = Segment::open(&p.path, &opts).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut t = seg.begin().unwrap();
            t.put(0, &1u64).unwrap();
            std::mem::forget(t);
        });
    });
    let e = seg.grow(1 << 17).unwrap_err();
    assert!(matches!(e, Error::CheckpointBusy { .. }), "{e}");
    seg.transaction(|tx| tx.put(64, &1u64)).unwrap();
    assert_eq!(seg.get::<u64>(64).unwrap(), 1);
}
