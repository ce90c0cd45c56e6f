//! A process kill in the middle of a failed call's undo (`Lane::undo_to`, its
//! crash point `vista.abort.partial`), or in the work that follows it in the same
//! transaction, rolls back the whole transaction on the next open: the segment holds
//! exactly the committed state and its heap is clean.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use vista::{Error, Options, PHashMap, PString, PVec, Segment, Writeback};

const CHILD_ENV: &str = "VISTA_UNDO_CRASH_CHILD";

fn opts(cache: &Path) -> Options {
    Options::new()
        .size(4 << 20)
        .lanes(2)
        .undo_log_size(7000)
        .protection(common::protection())
        .writeback(Writeback::Manual)
        .cache_dir(cache)
}

type State = (Vec<(String, u64)>, Vec<u64>);

fn state(seg: &Segment, [m, v]: [u64; 2]) -> State {
    seg.read_transaction(|tx| {
        let map = vista::bytemuck::cast::<u64, PHashMap<PString, u64>>(m);
        let vec = vista::bytemuck::cast::<u64, PVec<u64>>(v);
        let mut pairs = Vec::new();
        for e in map.iter(tx) {
            let (k, x) = e?;
            pairs.push((k.get(tx)?.to_owned(), x));
        }
        pairs.sort();
        Ok::<_, Error>((pairs, vec.to_vec(tx)?))
    })
    .unwrap()
}

/// The child: a committed map and vector, then one transaction of calls that keep
/// going after each failure (UndoLogFull), never committed (killed, or it exits).
fn child(dir: &Path, arm: Option<(String, u64)>) {
    let seg = Segment::open(dir.join("seg"), &opts(&dir.join("shm"))).unwrap();
    seg.transaction(|tx| {
        let r = tx.root::<[u64; 2]>()?;
        let m = PHashMap::<PString, u64>::new(tx)?;
        let v = PVec::<u64>::new(tx)?;
        for i in 0..30u64 {
            m.insert(tx, &format!("base-{i}"), i)?;
            v.push(tx, i)?;
        }
        tx.put(r.offset(), &[m.offset(), v.offset()])
    })
    .unwrap();
    let handles: [u64; 2] = {
        let mut tx = seg.begin().unwrap();
        let r = tx.root::<[u64; 2]>().unwrap();
        let h = tx.get_ptr(r).unwrap();
        tx.commit().unwrap();
        h
    };
    std::fs::write(
        dir.join("handles"),
        format!("{} {}", handles[0], handles[1]),
    )
    .unwrap();
    std::fs::write(dir.join("baseline"), format!("{:?}", state(&seg, handles))).unwrap();
    if let Some((name, n)) = arm {
        crash_point::arm(&name, n);
    }
    let mut tx = seg.begin().unwrap();
    let r = tx.root::<[u64; 2]>().unwrap();
    let [m, v] = tx.get_ptr(r).unwrap();
    let map = vista::bytemuck::cast::<u64, PHashMap<PString, u64>>(m);
    let vec = vista::bytemuck::cast::<u64, PVec<u64>>(v);
    let mut failures = 0;
    for i in 0..2000u64 {
        let r = match i % 4 {
            0 => map
                .insert(&mut tx, &format!("base-{}", i % 30), 100 + i)
                .map(drop),
            1 => map
                .insert(
                    &mut tx,
                    &format!("new-{i}-{}", "y".repeat((i % 9) as usize * 30)),
                    i,
                )
                .map(drop),
            2 => vec.push(&mut tx, i),
            _ => vec.remove(&mut tx, i % 7).map(drop),
        };
        if r.is_err() {
            failures += 1;
            if failures > 40 {
                break;
            }
        }
    }
    std::fs::write(dir.join("done"), format!("{failures}")).unwrap();
    std::mem::forget(tx); // a crash without a kill: the transaction never ends
    std::process::exit(0);
}

fn run_child(dir: &Path, point: Option<(&str, u64)>) -> std::process::ExitStatus {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        "a_kill_inside_a_failed_calls_undo_rolls_back_the_whole_transaction",
        "--nocapture",
    ])
    .env(CHILD_ENV, dir)
    .env_remove(crash_point::ENV_VAR);
    if let Some((name, n)) = point {
        cmd.env("VISTA_UNDO_CRASH_ARM", format!("{name}:{n}"));
    }
    cmd.status().unwrap()
}

#[test]
fn a_kill_inside_a_failed_calls_undo_rolls_back_the_whole_transaction() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        let arm = std::env::var("VISTA_UNDO_CRASH_ARM").ok().map(|s| {
            let (a, b) = s.rsplit_once(':').unwrap();
            (a.to_owned(), b.parse().unwrap())
        });
        child(&PathBuf::from(dir), arm);
        return;
    }
    assert!(crash_point::enabled());
    let mut kills = 0;
    for point in [
        "vista.abort.partial",
        "vista.set_range.published",
        "vista.heap.alloc.claimed",
    ] {
        let step = if point == "vista.abort.partial" { 1 } else { 7 };
        let mut n = 1;
        loop {
            let tmp = tempfile::tempdir().unwrap();
            std::fs::create_dir_all(tmp.path().join("shm")).unwrap();
            let status = run_child(tmp.path(), Some((point, n)));
            let done = tmp.path().join("done").exists();
            if status.success() && done {
                break; // the point was hit fewer than n times
            }
            assert!(status.signal().is_some() || !status.success(), "{status:?}");
            kills += 1;
            let baseline = std::fs::read_to_string(tmp.path().join("baseline")).unwrap();
            let h: Vec<u64> = std::fs::read_to_string(tmp.path().join("handles"))
                .unwrap()
                .split(' ')
                .map(|x| x.parse().unwrap())
                .collect();
            let seg = Segment::open(tmp.path().join("seg"), &opts(&tmp.path().join("shm")))
                .unwrap_or_else(|e| panic!("{point}:{n}: reopen failed: {e}"));
            let report = seg.check().unwrap();
            assert!(report.is_clean(), "{point}:{n}: {:?}", report.problems);
            assert_eq!(
                format!("{:?}", state(&seg, [h[0], h[1]])),
                baseline,
                "{point}:{n}: the killed transaction was not rolled back entirely"
            );
            drop(seg);
            n += step;
        }
    }
    eprintln!("kills checked: {kills}");
    assert!(kills > 0);
}
