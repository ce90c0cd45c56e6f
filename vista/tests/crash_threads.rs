//! SIGKILL while several threads are inside transactions, at random moments and at
//! crash points: after recovery only committed transactions remain.
//!
//! The test binary re-executes itself as a child (`threads_child_entry` with
//! `VISTA_THREADS_CHILD` set). The child runs four threads of bank transfers on a
//! segment (every fifth transaction aborted on purpose) and appends an acknowledgement
//! line after each commit returns. Each account holds a balance and a version (the
//! number of committed transfers that changed it). After each kill the parent recovers
//! the segment and checks:
//! - the total balance is conserved (no half transaction, no half roll-back);
//! - every acknowledged transfer is there: each account's version is at least the
//!   number of acknowledged transfers that touched it, and at most that plus one per
//!   thread (the commits in flight when the kill came);
//! - the versions add up to twice the committed transfers (each bumps two).
//!
//! Both tests run under every guard (None, Mprotect, Alias, and Pkey where the CPU has
//! keys); the child learns its guard from `VISTA_TEST_GUARD`.

mod common;

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use vista::{Options, Protection, Segment, Writeback};

const CHILD_ENV: &str = "VISTA_THREADS_CHILD";
const GUARD_ENV: &str = "VISTA_TEST_GUARD";
const THREADS: u64 = 4;
const ACCOUNTS: u64 = 16;
const START: u64 = 1000;
const PER_THREAD: u64 = 3000;
/// Set for a child that transfers until it is killed (`PER_THREAD` is then no bound).
const ENDLESS_ENV: &str = "VISTA_THREADS_ENDLESS";

/// The tests of this binary run one at a time: while one test's process spawns a child,
/// the child briefly holds duplicates of every open descriptor, including another test's
/// locked segment, and would see `Locked`.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn opts(cache: &Path, guard: Protection) -> Options {
    Options::new()
        .size(64 << 10)
        .undo_log_size(16 << 10)
        .lanes(THREADS as u32)
        .protection(guard)
        .writeback(Writeback::Manual)
        .cache_dir(cache)
}

/// The child: transfers from `THREADS` threads until done (`PER_THREAD` each, or without
/// end if `endless`), or killed.
fn run_bank(seg: &Path, cache: &Path, acks: &Path, guard: Protection, endless: bool) {
    let seg = Segment::open(seg, &opts(cache, guard)).unwrap();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let seg = &seg;
            s.spawn(move || {
                let mut acks = std::fs::OpenOptions::new().append(true).open(acks).unwrap();
                let mut rng =
                    rand::rngs::SmallRng::seed_from_u64(t ^ u64::from(std::process::id()));
                for i in (0..).take_while(|&i| endless || i < PER_THREAD) {
                    let from = rng.gen_range(0..ACCOUNTS);
                    let to = (from + rng.gen_range(1..ACCOUNTS)) % ACCOUNTS;
                    let want = rng.gen_range(0..100u64);
                    let aborted = i % 5 == 4;
                    let r = seg.transaction(|tx| {
                        let [fb, fv]: [u64; 2] = tx.get(from * 16)?;
                        let [tb, tv]: [u64; 2] = tx.get(to * 16)?;
                        let amount = want.min(fb);
                        tx.put(from * 16, &[fb - amount, fv + 1])?;
                        tx.put(to * 16, &[tb + amount, tv + 1])?;
                        if aborted {
                            return Err(vista::Error::InvalidOptions("abort on purpose".into()));
                        }
                        Ok((fv, tv))
                    });
                    match r {
                        Ok((fv, tv)) => {
                            // One write per line: appends of whole lines do not interleave.
                            acks.write_all(format!("{from} {fv} {to} {tv}\n").as_bytes())
                                .unwrap();
                        }
                        Err(vista::Error::InvalidOptions(_)) if aborted => {}
                        Err(e) => panic!("transfer failed: {e}"),
                    }
                }
            });
        }
    });
    seg.close().unwrap();
}

#[test]
fn threads_child_entry() {
    let Ok(_) = std::env::var(CHILD_ENV) else {
        return;
    };
    let var = |k: &str| PathBuf::from(std::env::var(k).unwrap());
    let guard = match std::env::var(GUARD_ENV).as_deref() {
        Ok("None") => Protection::None,
        Ok("Mprotect") => Protection::Mprotect,
        Ok("Alias") => Protection::Alias,
        Ok("Pkey") => Protection::Pkey,
        other => panic!("{GUARD_ENV}: {other:?}"),
    };
    run_bank(
        &var("VISTA_SEG"),
        &var("VISTA_CACHE"),
        &var("VISTA_ACKS"),
        guard,
        std::env::var_os(ENDLESS_ENV).is_some(),
    );
    std::process::exit(0);
}

struct Fixture {
    dir: tempfile::TempDir,
    guard: Protection,
}

impl Fixture {
    fn new(guard: Protection) -> Fixture {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
            guard,
        };
        std::fs::create_dir_all(f.cache()).unwrap();
        f
    }
    fn seg(&self) -> PathBuf {
        self.dir.path().join("seg.vista")
    }
    fn cache(&self) -> PathBuf {
        self.dir.path().join("shm")
    }
    fn acks(&self) -> PathBuf {
        self.dir.path().join("acks")
    }

    /// A fresh bank and an empty acknowledgement file.
    fn reset(&self) {
        let _ = std::fs::remove_file(self.seg());
        let _ = std::fs::remove_file(rio_cache::journal_path(&self.seg()));
        let _ = std::fs::remove_file(rio_cache::image_path(&self.seg(), &self.cache()).unwrap());
        let seg = Segment::open(self.seg(), &opts(&self.cache(), self.guard)).unwrap();
        for a in 0..ACCOUNTS {
            seg.transaction(|tx| tx.put(a * 16, &[START, 0u64]))
                .unwrap();
        }
        seg.close().unwrap();
        std::fs::write(self.acks(), b"").unwrap();
    }

    /// A child that transfers until killed, once it has acknowledged a first transfer.
    fn spawn_endless(&self) -> Child {
        let mut cmd = self.command();
        cmd.env(ENDLESS_ENV, "1");
        let child = cmd.spawn().unwrap();
        let started = std::time::Instant::now();
        while std::fs::metadata(self.acks()).map_or(0, |m| m.len()) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the child never committed a transfer"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        child
    }

    fn spawn(&self, point: Option<(&str, u64)>) -> Child {
        let mut cmd = self.command();
        if let Some((name, n)) = point {
            cmd.env(crash_point::ENV_VAR, format!("{name}:{n}"));
        }
        cmd.spawn().unwrap()
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "threads_child_entry",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, "bank")
        .env(GUARD_ENV, format!("{:?}", self.guard))
        .env("VISTA_SEG", self.seg())
        .env("VISTA_CACHE", self.cache())
        .env("VISTA_ACKS", self.acks())
        .env_remove(crash_point::ENV_VAR)
        .env_remove(ENDLESS_ENV)
        .stdout(std::process::Stdio::null());
        cmd
    }

    /// Recovers and checks the oracle; returns the committed transfers.
    fn check(&self, what: &str) -> u64 {
        let seg = Segment::open(self.seg(), &opts(&self.cache(), self.guard)).unwrap();
        let state: Vec<[u64; 2]> = (0..ACCOUNTS)
            .map(|a| seg.get::<[u64; 2]>(a * 16).unwrap())
            .collect();
        drop(seg);
        let acks = std::fs::read_to_string(self.acks()).unwrap();
        let mut acked = vec![0u64; ACCOUNTS as usize];
        let mut n = 0;
        // Only whole lines are acknowledgements: a child killed inside its write may
        // leave part of one, which no commit was acknowledged by.
        let whole = acks.rsplit_once('\n').map_or("", |(w, _)| w);
        for line in whole.lines() {
            let f: Vec<u64> = line.split(' ').map(|x| x.parse().unwrap()).collect();
            let [from, fv, to, tv] = f[..] else {
                panic!("{what}: bad ack line {line:?}")
            };
            acked[from as usize] += 1;
            acked[to as usize] += 1;
            assert!(
                state[from as usize][1] > fv,
                "{what}: acknowledged transfer lost"
            );
            assert!(
                state[to as usize][1] > tv,
                "{what}: acknowledged transfer lost"
            );
            n += 1;
        }
        let total: u64 = state.iter().map(|a| a[0]).sum();
        assert_eq!(
            total,
            ACCOUNTS * START,
            "{what}: money appeared or vanished"
        );
        for (a, s) in state.iter().enumerate() {
            assert!(
                s[1] >= acked[a] && s[1] <= acked[a] + THREADS,
                "{what}: account {a} has version {} for {} acknowledged transfers",
                s[1],
                acked[a]
            );
        }
        let versions: u64 = state.iter().map(|a| a[1]).sum();
        assert_eq!(versions % 2, 0, "{what}: half a transfer survived");
        assert!(versions / 2 >= n && versions / 2 <= n + THREADS, "{what}");
        n
    }
}

fn killed(child: &mut Child, what: &str) -> bool {
    let status = child.wait().unwrap();
    if status.success() {
        return false;
    }
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{what}: {status:?}");
    true
}

#[test]
fn sigkill_at_random_moments_keeps_exactly_the_committed_transfers() {
    let _serial = serial();
    for guard in common::guards() {
        let f = Fixture::new(guard);
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        for round in 0..8 {
            f.reset();
            // Killed at a random moment after its first acknowledged transfer: the
            // child never ends by itself, so every round is cut mid-way.
            let mut child = f.spawn_endless();
            std::thread::sleep(Duration::from_micros(rng.gen_range(0..60_000)));
            let _ = child.kill(); // SIGKILL
            let what = format!("{guard:?}: random kill {round}");
            assert!(
                killed(&mut child, &what),
                "{what}: the child ended by itself"
            );
            let n = f.check(&what);
            assert!(n > 0, "{what}: no transfer survived its acknowledgement");
        }
    }
}

#[test]
fn sigkill_at_crash_points_keeps_exactly_the_committed_transfers() {
    let _serial = serial();
    for guard in common::guards() {
        let f = Fixture::new(guard);
        for point in [
            "vista.set_range.record_copied",
            "vista.set_range.published",
            "vista.write.partial",
            "vista.commit.before_store",
            "vista.commit.after_store",
            "vista.abort.partial",
            "vista.abort.applied",
        ] {
            for hit in [1, 37, 400] {
                f.reset();
                let mut child = f.spawn(Some((point, hit)));
                let what = format!("{guard:?}: {point}:{hit}");
                assert!(killed(&mut child, &what), "{what}: the point was never hit");
                let n = f.check(&what);
                assert!(
                    hit < 5 || n > 0,
                    "{what}: nothing committed before the kill"
                );
            }
        }
    }
}
