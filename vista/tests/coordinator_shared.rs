//! A coordinator file is not locked, so a second group (another process, or
//! this one) can use it at the same time as the first. Their transactions share slots
//! (a slot is named by member index and lane), and a decision of the second overwrites
//! one that a member of the first still needs: a transaction across segments that was
//! decided committed ends up in one member and not in the other.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vista::{Error, Group, Options, Protection, Segment, Writeback};

const CHILD_ENV: &str = "REVIEW4_COORD_CHILD";

fn opts(root: &Path) -> Options {
    Options::new()
        .size(64 << 10)
        .undo_log_size(16 << 10)
        .lanes(2)
        .protection(Protection::Auto)
        .writeback(Writeback::Manual)
        .cache_dir(root.join("shm"))
}

fn group_of(root: &Path, names: [&str; 2]) -> Group {
    let o = opts(root);
    let members = names
        .iter()
        .map(|n| Segment::open(root.join(n), &o).unwrap())
        .collect();
    Group::open(root.join("shared.coord"), members, &o).unwrap()
}

/// Both members get their value in one transaction across segments.
fn transfer(g: &Group, a: u64, b: u64) {
    g.transaction(|tx| {
        tx.on(0)?.put(0, &a)?;
        tx.on(1)?.put(0, &b)?;
        Ok::<_, Error>(())
    })
    .unwrap();
}

/// The child: the first group's transaction, killed after the decision and the second
/// member's commit store (before the first member's, the slot owner's).
#[test]
fn child_entry() {
    let Ok(root) = std::env::var(CHILD_ENV) else {
        return;
    };
    let root = PathBuf::from(root);
    let g = group_of(&root, ["a.vista", "b.vista"]);
    transfer(&g, 111, 222);
    std::process::exit(0);
}

#[test]
fn a_second_group_on_the_same_coordinator_is_refused_or_harmless() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    std::fs::create_dir_all(root.join("shm")).unwrap();
    // Two groups' segments exist, the first group's at zero.
    drop(group_of(&root, ["a.vista", "b.vista"]));
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &root)
        .env(crash_point::ENV_VAR, "vista.xseg.member_committed:1")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    // Another group (other members) opens the same coordinator file: not refused.
    let other = Group::open(
        root.join("shared.coord"),
        vec![
            Segment::open(root.join("c.vista"), &opts(&root)).unwrap(),
            Segment::open(root.join("d.vista"), &opts(&root)).unwrap(),
        ],
        &opts(&root),
    );
    if let Ok(other) = other {
        transfer(&other, 7, 8);
        other.close().unwrap();
    }
    // The first group's members recover: the decided transaction is in both or neither.
    let o = opts(&root);
    let a = Segment::open(root.join("a.vista"), &o).unwrap();
    let b = Segment::open(root.join("b.vista"), &o).unwrap();
    let (va, vb) = (a.get::<u64>(0).unwrap(), b.get::<u64>(0).unwrap());
    assert!(
        (va, vb) == (111, 222) || (va, vb) == (0, 0),
        "a transaction across segments decided committed is half there: a = {va}, b = {vb} \
         (recovery of a: {:?})",
        a.recovery()
    );
}

/// The rules a group meets at open: the coordinator is locked while its group is open;
/// every segment that ever used it gets slots of its own (the coordinator records it
/// the first time), so groups of other members, reordered members or moved copies never
/// write each other's slots.
#[test]
fn a_coordinator_gives_every_member_slots_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    std::fs::create_dir_all(root.join("shm")).unwrap();
    let o = opts(&root);
    let coord = root.join("shared.coord");
    let seg = |n: &str| Segment::open(root.join(n), &o).unwrap();
    let recorded = || {
        rio_cache::group::Coordinator::open(&coord, false, rio_cache::Faults::none())
            .unwrap()
            .members()
            .unwrap()
            .unwrap_or_default()
            .len()
    };
    let g = Group::open(&coord, vec![seg("a.vista"), seg("b.vista")], &o).unwrap();
    transfer(&g, 1, 2);
    assert_eq!(recorded(), 2);
    // While it is open, another group is refused by the lock.
    let other = Group::open(&coord, vec![seg("c.vista")], &o);
    assert!(matches!(other, Err(Error::Locked { .. })), "{other:?}");
    g.close().unwrap();
    // Another group, sharing one member: c gets slots of its own.
    let g = Group::open(&coord, vec![seg("a.vista"), seg("c.vista")], &o).unwrap();
    transfer(&g, 3, 4);
    g.close().unwrap();
    assert_eq!(recorded(), 3);
    // The same members in another order, or through another spelling of their paths
    // (a symlinked directory): the same slots.
    let g = Group::open(&coord, vec![seg("b.vista"), seg("a.vista")], &o).unwrap();
    g.close().unwrap();
    std::os::unix::fs::symlink(&root, root.join("alias")).unwrap();
    let via = |n: &str| Segment::open(root.join("alias").join(n), &o).unwrap();
    let g = Group::open(&coord, vec![via("a.vista"), via("b.vista")], &o).unwrap();
    g.close().unwrap();
    assert_eq!(recorded(), 3);
    let value = |n: &str| seg(n).get::<u64>(0).unwrap();
    assert_eq!(
        (value("a.vista"), value("b.vista"), value("c.vista")),
        (3, 2, 4)
    );
}
