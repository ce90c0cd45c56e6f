//! Transactions across segments (`vista::Group`): all or nothing in both members, after
//! a reopen, an abort, a SIGKILL at every crash point of the protocol (also inside
//! recovery), a power cut with unsynced writes dropped or torn, and injected I/O
//! failures, under every guard.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{guards, tree, write_in_place};
use rio_cache::power::{self, Plan};
use rio_cache::{Faults, RioOptions};

use vista::inspect::LaneState;
use vista::{Error, Group, Options, Protection, Segment, Writeback};

const SIZE: u64 = 64 << 10;
const ACCOUNTS: usize = 4;
/// Account `i` of each member lives at offset `i * STRIDE` (different pages).
const STRIDE: u64 = 8192;
const START: u64 = 100;
const CHILD_ENV: &str = "VISTA_XSEG_CHILD";

static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn protection_named(name: &str) -> Protection {
    match name {
        "none" => Protection::None,
        "mprotect" => Protection::Mprotect,
        "alias" => Protection::Alias,
        "pkey" => Protection::Pkey,
        _ => common::protection(),
    }
}

fn name_of(p: Protection) -> &'static str {
    match p {
        Protection::None => "none",
        Protection::Mprotect => "mprotect",
        Protection::Alias => "alias",
        Protection::Pkey => "pkey",
        Protection::Auto => "auto",
    }
}

/// Two segments, their coordinator and a private cache directory.
struct Fixture {
    root: PathBuf,
    /// Removes the directory at the end (the parent's fixture only).
    _keep: Option<tempfile::TempDir>,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let f = Fixture {
            root: dir.path().join("x"),
            _keep: Some(dir),
        };
        std::fs::create_dir_all(f.cache()).unwrap();
        std::fs::create_dir_all(f.log()).unwrap();
        f
    }
    fn at(root: PathBuf) -> Fixture {
        Fixture { root, _keep: None }
    }
    fn seg(&self, i: usize) -> PathBuf {
        self.root.join(format!("m{i}.vista"))
    }
    fn coord(&self) -> PathBuf {
        self.root.join("group.coord")
    }
    fn cache(&self) -> PathBuf {
        self.root.join("shm")
    }
    fn log(&self) -> PathBuf {
        self.root.join("log")
    }
    fn acks(&self) -> PathBuf {
        self.root.join("acks")
    }
    fn opts(&self, g: Protection) -> Options {
        Options::new()
            .size(SIZE)
            .undo_log_size(16 << 10)
            .lanes(2)
            .protection(g)
            .writeback(Writeback::Manual)
            .cache_dir(self.cache())
            .record_writes(self.log())
    }
    fn rio(&self) -> RioOptions {
        RioOptions::new()
            .cache_dir(self.cache())
            .record_writes(self.log())
    }
    fn open(&self, g: Protection) -> Group {
        let o = self.opts(g);
        let members = (0..2)
            .map(|i| Segment::open(self.seg(i), &o).unwrap())
            .collect();
        Group::open(self.coord(), members, &o).unwrap()
    }
    /// Both members and the coordinator with every account at `START`, on disk.
    fn reset(&self, g: Protection) {
        let _ = std::fs::remove_dir_all(&self.root);
        std::fs::create_dir_all(self.cache()).unwrap();
        std::fs::create_dir_all(self.log()).unwrap();
        let group = self.open(g);
        group
            .transaction(|tx| {
                for m in 0..2 {
                    for a in 0..ACCOUNTS as u64 {
                        tx.on(m)?.put(a * STRIDE, &START)?;
                    }
                }
                Ok::<_, Error>(())
            })
            .unwrap();
        group.close().unwrap();
    }
    fn acked(&self) -> usize {
        std::fs::read_to_string(self.acks())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.parse().ok())
            .max()
            .unwrap_or(0)
    }
}

/// The balances of both members: `[m0 accounts.., m1 accounts..]`.
type State = [u64; 2 * ACCOUNTS];

fn state_of(segs: &[Segment]) -> State {
    let mut s = [0; 2 * ACCOUNTS];
    for (m, seg) in segs.iter().enumerate() {
        for a in 0..ACCOUNTS {
            s[m * ACCOUNTS + a] = seg.get::<u64>(a as u64 * STRIDE).unwrap();
        }
    }
    s
}

/// The script's transfers: (from member, from account, to member, to account, amount).
const SCRIPT: [(usize, usize, usize, usize, u64); 4] = [
    (0, 0, 1, 0, 30), // T1 commit
    (0, 1, 1, 1, 50), // T2 abort
    (1, 2, 0, 2, 20), // T3 commit_durable
    (0, 3, 1, 3, 7),  // T4 commit, then close
];

fn apply(s: &mut State, t: (usize, usize, usize, usize, u64)) {
    s[t.0 * ACCOUNTS + t.1] -= t.4;
    s[t.2 * ACCOUNTS + t.3] += t.4;
}

/// The state after `acks` acknowledgements of the script.
fn expected(acks: usize) -> State {
    let mut s = [START; 2 * ACCOUNTS];
    if acks >= 1 {
        apply(&mut s, SCRIPT[0]);
    }
    if acks >= 3 {
        apply(&mut s, SCRIPT[2]);
    }
    if acks >= 4 {
        apply(&mut s, SCRIPT[3]);
    }
    s
}

fn transfer(
    tx: &mut vista::GroupTransaction<'_>,
    t: (usize, usize, usize, usize, u64),
) -> vista::Result<()> {
    let from = tx.on(t.0)?.get::<u64>(t.1 as u64 * STRIDE)?;
    tx.on(t.0)?.put(t.1 as u64 * STRIDE, &(from - t.4))?;
    let to = tx.on(t.2)?.get::<u64>(t.3 as u64 * STRIDE)?;
    tx.on(t.2)?.put(t.3 as u64 * STRIDE, &(to + t.4))
}

fn ack(path: &Path, n: usize) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    writeln!(f, "{n}").unwrap();
}

fn run_script(f: &Fixture, g: Protection) {
    let group = f.open(g);
    let mut tx = group.begin().unwrap();
    transfer(&mut tx, SCRIPT[0]).unwrap();
    tx.commit().unwrap();
    ack(&f.acks(), 1);
    let mut tx = group.begin().unwrap();
    transfer(&mut tx, SCRIPT[1]).unwrap();
    tx.abort().unwrap();
    ack(&f.acks(), 2);
    let mut tx = group.begin().unwrap();
    transfer(&mut tx, SCRIPT[2]).unwrap();
    tx.commit_durable().unwrap();
    ack(&f.acks(), 3);
    let mut tx = group.begin().unwrap();
    transfer(&mut tx, SCRIPT[3]).unwrap();
    tx.commit().unwrap();
    ack(&f.acks(), 4);
    group.close().unwrap();
    ack(&f.acks(), 5);
}

/// The child's side: runs the role named in the environment, then exits.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ENV) else {
        return;
    };
    let f = Fixture::at(PathBuf::from(std::env::var("VISTA_XSEG_DIR").unwrap()));
    let g = protection_named(&std::env::var("VISTA_XSEG_GUARD").unwrap());
    match role.as_str() {
        "script" => run_script(&f, g),
        "recover" => {
            let o = f.opts(g);
            for i in 0..2 {
                drop(Segment::open(f.seg(i), &o).unwrap());
            }
        }
        other => panic!("unknown role {other}"),
    }
    std::process::exit(0);
}

/// Runs `role` in a child (a re-execution of this test binary); `true` if it was
/// killed at the armed point, `false` if it completed.
fn spawn(f: &Fixture, role: &str, g: Protection, point: Option<(&str, u64)>) -> bool {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, role)
        .env("VISTA_XSEG_DIR", &f.root)
        .env("VISTA_XSEG_GUARD", name_of(g))
        .env_remove(crash_point::ENV_VAR)
        .stdout(std::process::Stdio::null());
    if let Some((name, n)) = point {
        cmd.env(crash_point::ENV_VAR, format!("{name}:{n}"));
    }
    let status = cmd.status().unwrap();
    if status.success() {
        return false;
    }
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "child failed: {status:?}"
    );
    true
}

/// Every file of the fixture, to put back after a look that changes them.
fn save(f: &Fixture) -> Vec<(PathBuf, Vec<u8>)> {
    tree(&f.root)
}

fn restore(f: &Fixture, saved: &[(PathBuf, Vec<u8>)]) {
    for (p, _) in tree(&f.root) {
        if !saved.iter().any(|(q, _)| *q == p) {
            std::fs::remove_file(p).unwrap();
        }
    }
    for (p, b) in saved {
        write_in_place(p, b);
    }
}

/// Opens both members alone (each recovering on its own, asking the coordinator).
fn members_alone(f: &Fixture, g: Protection) -> Vec<Segment> {
    let o = f.opts(g);
    (0..2)
        .map(|i| Segment::open(f.seg(i), &o).unwrap())
        .collect()
}

/// After a kill: warm, both members show exactly the acknowledged transfers, or those
/// and the one in flight; then, after a power cut that keeps, drops or tears the
/// unsynced writes, both show the same prefix of the committed transfers, at least up
/// to the last acknowledged durable one.
fn check_after_kill(f: &Fixture, g: Protection, what: &str) {
    let acked = f.acked();
    let saved = save(f);
    let warm = state_of(&members_alone(f, g));
    let ok = [expected(acked), expected(acked + 1)];
    assert!(
        ok.contains(&warm),
        "{what}: warm state {warm:?} after {acked} acks is neither {:?} nor {:?}",
        ok[0],
        ok[1]
    );
    // Killed between the decision's write and its sync: the power cut may lose it too.
    let lose_decision = what.contains("rio.group.decision_written:");
    let plans = [
        Plan::DropAll,
        Plan::KeepAll,
        Plan::Random { seed: acked as u64 },
    ];
    for (plan, drop_decision) in plans
        .into_iter()
        .map(|p| (p, false))
        .chain(lose_decision.then_some((Plan::KeepAll, true)))
    {
        restore(f, &saved);
        for i in 0..2 {
            power::cut(f.seg(i), &f.rio(), plan).unwrap();
        }
        if drop_decision {
            forget_newest_decision(&f.coord());
        }
        let cold = state_of(&members_alone(f, g));
        let floor = if acked >= 5 {
            4
        } else if acked >= 3 {
            3
        } else {
            0
        };
        let ok: Vec<State> = (floor..=4).map(expected).collect();
        assert!(
            ok.contains(&cold),
            "{what}, power cut {plan:?}: cold state {cold:?} after {acked} acks is not a committed prefix from {floor}"
        );
    }
    restore(f, &saved);
}

/// Zeroes the coordinator's slot that holds the newest decided epoch (see
/// `rio_cache::group`: epoch slots of 16 bytes at 64 and 128): its write never reached
/// the disk.
fn forget_newest_decision(coord: &Path) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(coord)
        .unwrap();
    let mut best = (0, 0);
    for at in [64u64, 128] {
        let mut b = [0u8; 8];
        if file.read_exact_at(&mut b, at).is_ok() && u64::from_le_bytes(b) > best.0 {
            best = (u64::from_le_bytes(b), at);
        }
    }
    assert!(best.0 > 0, "no decision to forget");
    file.write_all_at(&[0; 16], best.1).unwrap();
}

/// The points of the protocol: vista's across segments and rio-cache's group checkpoint.
fn protocol_points() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = vista::XSEG_CRASH_POINTS.to_vec();
    v.extend(rio_cache::GROUP_CRASH_POINTS);
    v
}

/// The other points a script passes: the members' own transactions and checkpoint steps.
const MEMBER_POINTS: [&str; 8] = [
    "vista.set_range.published",
    "vista.commit.before_store",
    "vista.commit.after_store",
    "vista.abort.partial",
    "rio.checkpoint.staged",
    "rio.checkpoint.install_partial",
    "rio.checkpoint.disk_synced",
    "rio.checkpoint.journal_cleared",
];

#[test]
fn sigkill_at_every_crash_point_leaves_all_or_nothing() {
    let _s = serial();
    let f = Fixture::new();
    for (k, g) in guards().into_iter().enumerate() {
        // Every guard runs the protocol's points; the first also the members' own (the
        // same code under every guard, and the test's time is CI's).
        let mut points = protocol_points();
        if k == 0 {
            points.extend(MEMBER_POINTS);
        }
        for point in points {
            let protocol = protocol_points().contains(&point);
            for n in 1.. {
                f.reset(g);
                let killed = spawn(&f, "script", g, Some((point, n)));
                let what = format!("{g:?} {point}:{n}");
                if !killed {
                    assert_eq!(f.acked(), 5, "{what}: the script did not finish");
                    break;
                }
                check_after_kill(&f, g, &what);
                // Kill the recovery too, then look again (after the protocol's points).
                let recovery_points: &[&str] = if protocol {
                    &["vista.recover.partial", "vista.recover.applied"]
                } else {
                    &[]
                };
                for &rp in recovery_points {
                    let saved = save(&f);
                    if spawn(&f, "recover", g, Some((rp, 1))) {
                        check_after_kill(&f, g, &format!("{what}, recovery killed at {rp}"));
                    }
                    restore(&f, &saved);
                }
                assert!(n < 40, "{what}: the point is hit too often");
            }
        }
    }
}

#[test]
fn commit_is_seen_in_both_after_reopen_and_abort_or_drop_undo_both() {
    let _s = serial();
    let f = Fixture::new();
    for g in guards() {
        f.reset(g);
        let group = f.open(g);
        // Committed: seen in both members, by the group and after a reopen.
        group.transaction(|tx| transfer(tx, SCRIPT[0])).unwrap();
        assert_eq!(state_of(group.segments()), expected(1), "{g:?}");
        // Aborted and dropped: undone in both.
        let mut tx = group.begin().unwrap();
        transfer(&mut tx, SCRIPT[1]).unwrap();
        assert_eq!(tx.members(), &[0, 1]);
        tx.abort().unwrap();
        let mut tx = group.begin().unwrap();
        transfer(&mut tx, SCRIPT[2]).unwrap();
        drop(tx);
        let failed: Result<(), Error> = group.transaction(|tx| {
            transfer(tx, SCRIPT[3])?;
            Err(Error::InvalidOptions("the closure fails".into()))
        });
        assert!(failed.is_err());
        assert_eq!(state_of(group.segments()), expected(1), "{g:?}");
        drop(group);
        // Warm reopen (the group's drop took a group checkpoint).
        let segs = members_alone(&f, g);
        assert_eq!(state_of(&segs), expected(1), "{g:?}");
        assert!(!segs[0].is_fenced() && !segs[1].is_fenced());
        drop(segs);
        // Cold: the disk files alone hold it too.
        for i in 0..2 {
            let _ = std::fs::remove_file(rio_cache::image_path(&f.seg(i), &f.cache()).unwrap());
        }
        assert_eq!(state_of(&members_alone(&f, g)), expected(1), "{g:?} cold");
    }
}

#[test]
fn a_transaction_on_one_member_pays_nothing_extra() {
    let _s = serial();
    let f = Fixture::new();
    f.reset(Protection::Auto);
    let coord_before = std::fs::read(f.coord()).unwrap();
    let group = f.open(Protection::Auto);
    group.transaction(|tx| tx.on(1)?.put(0, &5u64)).unwrap();
    // No decision written, no fence: an ordinary commit.
    assert_eq!(std::fs::read(f.coord()).unwrap(), coord_before);
    assert!(!group.segment(1).is_fenced());
    group.segment(1).checkpoint().unwrap();
    assert!(matches!(
        group.begin().unwrap().on(2),
        Err(Error::NoSuchMember {
            index: 2,
            members: 2
        })
    ));
}

#[test]
fn a_fenced_member_refuses_its_own_checkpoints_until_the_group_checkpoints() {
    let _s = serial();
    let f = Fixture::new();
    f.reset(Protection::Auto);
    let group = f.open(Protection::Auto);
    group.transaction(|tx| transfer(tx, SCRIPT[0])).unwrap();
    for m in 0..2 {
        assert!(group.segment(m).is_fenced());
        assert!(matches!(
            group.segment(m).checkpoint(),
            Err(Error::GroupCheckpointRequired)
        ));
        assert!(matches!(
            group.segment(m).transaction_durable(|tx| tx.put(8, &1u64)),
            Err(Error::GroupCheckpointRequired)
        ));
    }
    // The disk still holds the state before the transfer (a power cut now shows none
    // of it in either member).
    let saved = save(&f);
    drop(group);
    restore(&f, &saved);
    for i in 0..2 {
        power::cut(f.seg(i), &f.rio(), Plan::KeepAll).unwrap();
    }
    let segs = members_alone(&f, Protection::Auto);
    assert_eq!(state_of(&segs), expected(0));
    drop(segs);
    restore(&f, &saved);
    // A process crash keeps the fence (the member opened alone stays fenced).
    let segs = members_alone(&f, Protection::Auto);
    assert!(segs[0].is_fenced());
    assert_eq!(state_of(&segs), expected(1));
    let group = Group::open(f.coord(), segs, &f.opts(Protection::Auto)).unwrap();
    group.checkpoint().unwrap();
    assert!(!group.segment(0).is_fenced() && !group.segment(1).is_fenced());
    group.segment(0).checkpoint().unwrap();
    assert!(!f.seg(0).with_extension("vista.fence").exists());
}

#[test]
fn background_group_checkpoints_take_transactions_across_segments_to_disk() {
    let _s = serial();
    let f = Fixture::new();
    f.reset(Protection::Auto);
    let o = f.opts(Protection::Auto).writeback(Writeback::Background {
        interval: Duration::from_millis(50),
        dirty_bytes: 16 << 20,
    });
    let members = (0..2)
        .map(|i| Segment::open(f.seg(i), &o).unwrap())
        .collect();
    let group = Group::open(f.coord(), members, &o).unwrap();
    group.transaction(|tx| transfer(tx, SCRIPT[0])).unwrap();
    // The group's writeback thread lifts the fences with a group checkpoint (polled with
    // a generous deadline; no timing is asserted).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while (0..2).any(|m| group.segment(m).is_fenced()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no group checkpoint within 60 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The disk now holds the transfer in both members: a power cut keeps it.
    let saved = save(&f);
    drop(group);
    restore(&f, &saved);
    for i in 0..2 {
        power::cut(f.seg(i), &f.rio(), Plan::KeepAll).unwrap();
    }
    let segs = members_alone(&f, Protection::Auto);
    assert_eq!(state_of(&segs), expected(1));
}

#[test]
fn an_in_doubt_member_refuses_to_open_without_its_coordinator() {
    let _s = serial();
    let f = Fixture::new();
    let g = Protection::Auto;
    f.reset(g);
    // Killed after both members' records were published, before the decision.
    assert!(spawn(&f, "script", g, Some(("vista.xseg.prepared", 1))));
    let moved = f.root.join("elsewhere.coord");
    std::fs::rename(f.coord(), &moved).unwrap();
    let before = tree(&f.root);
    let o = f.opts(g);
    for i in 0..2 {
        match Segment::open(f.seg(i), &o) {
            Err(Error::CoordinatorUnavailable { coordinator, .. }) => {
                assert_eq!(coordinator, std::path::absolute(f.coord()).unwrap());
            }
            other => panic!("member {i}: expected CoordinatorUnavailable, got {other:?}"),
        }
    }
    common::assert_same_tree(&before, &tree(&f.root), "a refused open");
    // With the coordinator back, both roll back (it never decided).
    std::fs::rename(&moved, f.coord()).unwrap();
    let segs = members_alone(&f, g);
    assert_eq!(state_of(&segs), expected(0));
    assert_eq!(segs[0].recovery().lanes_rolled_back, 1);
}

#[test]
fn a_decided_member_is_kept_when_the_crash_hits_before_its_commit_store() {
    let _s = serial();
    let f = Fixture::new();
    let g = Protection::Auto;
    f.reset(g);
    // Killed after the decision and the first store, the second member's (the member
    // joined first, whose lane names the coordinator slot, stores last): the first
    // member's lane still holds its records, and recovery keeps them.
    assert!(spawn(
        &f,
        "script",
        g,
        Some(("vista.xseg.member_committed", 1))
    ));
    // The inspector (the `vista` tool's library), before any open: member 0's part is
    // decided committed, and the committed balances include the transfer.
    let (lanes, state) = inspected(&f);
    assert_eq!(parts(&f, &lanes), [Some(true), None]);
    assert_eq!(state, expected(1), "the inspector must keep a decided part");
    let segs = members_alone(&f, g);
    assert_eq!(state_of(&segs), expected(1));
    assert_eq!(segs[0].recovery().lanes_kept, 1);
    assert_eq!(segs[0].recovery().lanes_rolled_back, 0);
}

/// What the inspector (`vista::inspect`, the `vista` tool's library) sees of both
/// members: each lane's state, and the committed balances it computes, with nothing
/// opened or written.
fn inspected(f: &Fixture) -> (Vec<Vec<LaneState>>, State) {
    let mut lanes = Vec::new();
    let mut s = [0; 2 * ACCOUNTS];
    for m in 0..2 {
        let info = vista::inspect::inspect(&f.seg(m), &f.cache()).unwrap();
        let view = info.view(vista::inspect::Source::Image).unwrap();
        lanes.push(view.lanes.iter().map(|l| l.state.clone()).collect());
        for a in 0..ACCOUNTS {
            let b = info.read_committed(&view, a as u64 * STRIDE, 8).unwrap();
            s[m * ACCOUNTS + a] = u64::from_le_bytes(b.try_into().unwrap());
        }
    }
    (lanes, s)
}

/// Per member, the verdict its cross-segment lane shows (`None`: no such lane).
fn parts(f: &Fixture, lanes: &[Vec<LaneState>]) -> Vec<Option<bool>> {
    lanes
        .iter()
        .map(|m| {
            m.iter().find_map(|l| match l {
                LaneState::CrossSegment {
                    decided,
                    coordinator,
                    ..
                } => {
                    assert_eq!(coordinator, &f.coord());
                    Some(*decided.as_ref().unwrap())
                }
                _ => None,
            })
        })
        .collect()
}

#[test]
fn the_inspector_shows_a_part_across_segments_and_what_its_coordinator_decided() {
    let _s = serial();
    let f = Fixture::new();
    let g = Protection::Auto;
    // Killed before the decision: both parts are undecided, and rolled back.
    f.reset(g);
    assert!(spawn(&f, "script", g, Some(("vista.xseg.prepared", 1))));
    let (lanes, state) = inspected(&f);
    assert_eq!(parts(&f, &lanes), [Some(false), Some(false)]);
    assert_eq!(state, expected(0));
    // Without its coordinator the committed state cannot be known: a typed error.
    let saved = save(&f);
    std::fs::remove_file(f.coord()).unwrap();
    let info = vista::inspect::inspect(&f.seg(0), &f.cache()).unwrap();
    let view = info.view(vista::inspect::Source::Image).unwrap();
    assert!(view.lanes.iter().any(|l| matches!(
        &l.state,
        LaneState::CrossSegment {
            decided: Err(_),
            ..
        }
    )));
    assert!(matches!(
        info.read_committed(&view, 0, 8),
        Err(Error::CoordinatorUnavailable { .. })
    ));
    restore(&f, &saved);
    assert_eq!(state_of(&members_alone(&f, g)), expected(0));
}

/// The scenario of the fault test: a transfer, a group checkpoint, a second transfer
/// (committed durably). Returns how many transfers were acknowledged and the error.
fn fault_scenario(f: &Fixture, g: Protection, faults: &Faults) -> (usize, Option<Error>) {
    let o = f.opts(g).faults(faults.clone());
    let mut acked = 0;
    let mut run = || -> vista::Result<()> {
        let members = (0..2)
            .map(|i| Segment::open(f.seg(i), &o))
            .collect::<vista::Result<Vec<_>>>()?;
        let group = Group::open(f.coord(), members, &o)?;
        group.transaction(|tx| transfer(tx, SCRIPT[0]))?;
        acked = 1;
        group.checkpoint()?;
        let mut tx = group.begin()?;
        transfer(&mut tx, SCRIPT[2])?;
        tx.commit_durable()?;
        acked = 3;
        group.close()
    };
    let e = run().err();
    (acked, e)
}

#[test]
fn injected_io_failures_give_an_error_and_lose_nothing() {
    let _s = serial();
    let f = Fixture::new();
    for g in guards() {
        f.reset(g);
        let counting = Faults::counting();
        let (acked, e) = fault_scenario(&f, g, &counting);
        assert!(e.is_none() && acked == 3, "{g:?}: {e:?}");
        let calls = counting.calls();
        let mut hit = 0;
        for (n, call) in calls.iter().enumerate() {
            // Every write and sync of the members' files (under `Mprotect` the commit
            // stores are writes to the memory image) and the coordinator's.
            if !matches!(call.op, rio_cache::IoOp::Write | rio_cache::IoOp::Sync) {
                continue;
            }
            if !matches!(
                call.file,
                rio_cache::IoFile::Coordinator
                    | rio_cache::IoFile::Journal
                    | rio_cache::IoFile::Disk
            ) {
                continue;
            }
            f.reset(g);
            let faults = Faults::counting();
            faults.fail_at(n as u64, libc::EIO);
            let (acked, e) = fault_scenario(&f, g, &faults);
            if faults.failed().is_none() {
                continue;
            }
            hit += 1;
            let what = format!("{g:?} op {n} ({call})");
            assert!(e.is_some(), "{what}: the failure was not reported");
            // Reopened without faults: nothing acknowledged is lost, no transfer is half.
            let segs = members_alone(&f, g);
            let s = state_of(&segs);
            assert!(
                s == expected(acked) || s == expected(acked + 2),
                "{what}: state {s:?} after {acked} acks"
            );
            drop(segs);
            // And after a power cut: a committed prefix, at least what was durable.
            let saved = save(&f);
            for i in 0..2 {
                power::cut(f.seg(i), &f.rio(), Plan::DropAll).unwrap();
            }
            let s = state_of(&members_alone(&f, g));
            let floor = if acked >= 3 { 3 } else { 0 };
            assert!(
                (floor..=3).map(expected).any(|x| x == s),
                "{what}: cold state {s:?} after {acked} acks"
            );
            restore(&f, &saved);
        }
        assert!(hit > 10, "{g:?}: only {hit} failures were injected");
    }
}

/// Transfers from two threads while a third takes group checkpoints: every group
/// checkpoint holds each transfer in both members or in neither (the group lock), so
/// after a power cut (the last group checkpoint) the total across both is intact.
#[test]
fn group_checkpoints_under_concurrent_transfers_hold_whole_transfers() {
    let _s = serial();
    let f = Fixture::new();
    let g = Protection::Auto;
    for round in 0..3u64 {
        f.reset(g);
        let opts = f.opts(g).lanes(4);
        let members = (0..2)
            .map(|i| Segment::open(f.seg(i), &opts).unwrap())
            .collect();
        let group = Group::open(f.coord(), members, &opts).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            for t in 0..2u64 {
                let (group, stop) = (&group, &stop);
                scope.spawn(move || {
                    let mut x = 0x9e37_79b9_7f4a_7c15 ^ (t + 1) ^ (round << 8);
                    for _ in 0..400 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let from_m = (x & 1) as usize;
                        let (from, to) = ((x >> 1) % ACCOUNTS as u64, (x >> 9) % ACCOUNTS as u64);
                        group
                            .transaction(|tx| {
                                let fa = tx.on(from_m)?.get::<u64>(from * STRIDE)?;
                                let amount = fa.min(3);
                                tx.on(from_m)?.put(from * STRIDE, &(fa - amount))?;
                                let tb = tx.on(1 - from_m)?.get::<u64>(to * STRIDE)?;
                                tx.on(1 - from_m)?.put(to * STRIDE, &(tb + amount))
                            })
                            .unwrap();
                    }
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                });
            }
            let (group, stop) = (&group, &stop);
            scope.spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    group.checkpoint().unwrap();
                }
            });
        });
        let total: u64 = state_of(group.segments()).iter().sum();
        assert_eq!(total, 2 * ACCOUNTS as u64 * START);
        // Power lost now: both members at the last group checkpoint.
        let saved = save(&f);
        drop(group);
        restore(&f, &saved);
        for i in 0..2 {
            power::cut(f.seg(i), &f.rio(), Plan::KeepAll).unwrap();
        }
        let cold = state_of(&members_alone(&f, g));
        assert_eq!(
            cold.iter().sum::<u64>(),
            2 * ACCOUNTS as u64 * START,
            "round {round}: a group checkpoint split a transfer: {cold:?}"
        );
    }
}

/// A group checkpoint that cannot prepare a member (one of its own transactions outlasts
/// the checkpoint wait) gives the members it prepared their pages back: nothing is
/// poisoned, and the next group checkpoint writes everything.
#[test]
fn a_busy_member_fails_the_group_checkpoint_without_poisoning_the_others() {
    // On a page of its own (the accounts' pages must reach the disk through the
    // abandoned batch's marks, not through a later write).
    const SPARE: u64 = 4096 + 56;
    let _s = serial();
    let f = Fixture::new();
    let g = Protection::Auto;
    f.reset(g);
    let opts = f
        .opts(g)
        .lanes(2)
        .checkpoint_wait(std::time::Duration::from_millis(50));
    let members = (0..2)
        .map(|i| Segment::open(f.seg(i), &opts).unwrap())
        .collect();
    let group = Group::open(f.coord(), members, &opts).unwrap();
    group.transaction(|tx| transfer(tx, SCRIPT[0])).unwrap();
    let (held, release) = (std::sync::Barrier::new(2), std::sync::Barrier::new(2));
    std::thread::scope(|scope| {
        let (group, held, release) = (&group, &held, &release);
        scope.spawn(move || {
            // Member 1's own transaction, open across the checkpoint.
            let mut tx = group.segment(1).begin().unwrap();
            tx.put(SPARE, &1u64).unwrap();
            held.wait();
            release.wait();
            tx.commit().unwrap();
        });
        held.wait();
        assert!(matches!(
            group.checkpoint(),
            Err(Error::CheckpointBusy { .. })
        ));
        release.wait();
    });
    // Member 0 was prepared and gave its batch back: not poisoned.
    group
        .segment(0)
        .transaction(|tx| tx.put(SPARE, &2u64))
        .unwrap();
    group.checkpoint().unwrap();
    let saved = save(&f);
    drop(group);
    restore(&f, &saved);
    for i in 0..2 {
        power::cut(f.seg(i), &f.rio(), Plan::DropAll).unwrap();
    }
    let segs = members_alone(&f, g);
    assert_eq!(state_of(&segs), expected(1));
    assert_eq!(segs[0].get::<u64>(SPARE).unwrap(), 2);
    assert_eq!(segs[1].get::<u64>(SPARE).unwrap(), 1);
}

/// A member whose journal holds a batch sealed for a group checkpoint cannot tell
/// whether to install it without the coordinator: the open refuses and writes nothing.
#[test]
fn a_sealed_journal_refuses_to_open_without_its_coordinator() {
    let _s = serial();
    let f = Fixture::new();
    let g = Protection::Auto;
    f.reset(g);
    // Killed after the decision was synced, before any member installed its batch.
    assert!(spawn(
        &f,
        "script",
        g,
        Some(("vista.xseg.checkpoint_decided", 1))
    ));
    let moved = f.root.join("elsewhere.coord");
    std::fs::rename(f.coord(), &moved).unwrap();
    let before = tree(&f.root);
    for i in 0..2 {
        match Segment::open(f.seg(i), &f.opts(g)) {
            Err(Error::CoordinatorUnavailable { coordinator, .. }) => {
                assert_eq!(coordinator, std::path::absolute(f.coord()).unwrap());
            }
            other => panic!("member {i}: expected CoordinatorUnavailable, got {other:?}"),
        }
    }
    common::assert_same_tree(&before, &tree(&f.root), "a refused open");
    // With the coordinator back, both install the decided checkpoint: after a power cut
    // both hold the durable transfer.
    std::fs::rename(&moved, f.coord()).unwrap();
    let saved = save(&f);
    for i in 0..2 {
        power::cut(f.seg(i), &f.rio(), Plan::DropAll).unwrap();
    }
    assert_eq!(state_of(&members_alone(&f, g)), expected(3));
    restore(&f, &saved);
}

/// A member whose commit store fails after the decision keeps the transaction (it is
/// poisoned and reopening it keeps the changes), so the decision in the coordinator
/// slot must outlive more transactions across segments in this process. The slot is
/// named by the first member's lane: that part stores its commit last, and when
/// another member's store failed, its lane is retired for the handle's life. Here the
/// same thread's next transaction across segments starts on the first member again:
/// it takes another lane (another slot), and the reopened member keeps the decided
/// transaction, as the first member does. (With the first member committing first and
/// its lane handed out again, the next transaction wrote its id over the decision and
/// the reopened member rolled the decided transaction back.)
#[test]
fn a_failed_member_keeps_the_decision_while_more_transactions_run() {
    let _s = serial();
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("shm");
    std::fs::create_dir_all(&cache).unwrap();
    let base = Options::new()
        .size(SIZE)
        .lanes(4)
        .undo_log_size(16 << 10)
        .protection(Protection::Mprotect) // a commit store is then a pwrite, which can fail
        .writeback(Writeback::Manual)
        .cache_dir(&cache);
    let faults = Faults::counting();
    let seg_path = |i: usize| dir.path().join(format!("m{i}.vista"));
    let members: Vec<Segment> = (0..3)
        .map(|i| {
            let o = if i == 1 {
                base.clone().faults(faults.clone())
            } else {
                base.clone()
            };
            Segment::open(seg_path(i), &o).unwrap()
        })
        .collect();
    let group = Group::open(dir.path().join("g.coord"), members, &base).unwrap();
    let mut t = group.begin().unwrap();
    t.on(0).unwrap().put(0, &111u64).unwrap();
    t.on(1).unwrap().put(0, &111u64).unwrap();
    // Member 1's commit store (its next I/O operation) fails after the decision.
    faults.fail_at(faults.count(), libc::EIO);
    assert!(t.commit().is_err(), "the injected failure was not hit");
    assert!(group.segment(1).begin().is_err(), "member 1 is poisoned");
    for round in 0..4u64 {
        group
            .transaction(|tx| {
                tx.on(0)?.put(8, &(200 + round))?;
                tx.on(2)?.put(8, &(200 + round))
            })
            .unwrap();
    }
    assert_eq!(group.segment(0).get::<u64>(0).unwrap(), 111);
    drop(group);
    let m1 = Segment::open(seg_path(1), &base).unwrap();
    assert_eq!(
        m1.get::<u64>(0).unwrap(),
        111,
        "the reopened member rolled back a decided transaction ({:?})",
        m1.recovery()
    );
}
