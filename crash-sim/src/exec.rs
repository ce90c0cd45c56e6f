//! `crash-sim exec`: crash-tests any program, vista or not.
//!
//! Each cycle starts PROGRAM in the run's working directory as the leader of its own
//! process group, waits (optionally) for its ready line, `SIGKILL`s the whole group after
//! a seeded random delay, waits until every process of the group is gone (so nothing
//! writes any more), optionally loses the memory image (power loss for vista programs),
//! and runs CHECK_CMD through `sh -c` in the same directory: exit 0 means the state is
//! consistent, anything else is a violation whose output is reported. The state carries
//! over from cycle to cycle, as it would across real crashes, until the time is up.
//!
//! Cycle `n`'s delay is drawn from `cycle_seed(seed, n)`, so `--seed S --cycles n+1`
//! replays the same kill delays (the program's own timing can still differ).
//!
//! Vista programs leave a memory image per segment in the cache directory. When the
//! working directory is emptied (before a fresh start) or removed (at the end, with a
//! run directory of exec's own), the images of the segments that were in it are
//! removed too (`rio_cache::images`, by their origin records), so runs do not fill
//! `/dev/shm`.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rand::{Rng, SeedableRng};

use crate::engines::EngineKind;
use crate::harness::config::{Config, Mode};
use crate::harness::ctx::Ctx;
use crate::report::Report;
use crate::seed::cycle_seed;
use crate::sys;
use crate::workloads::WorkloadKind;

/// What `crash-sim exec` runs.
#[derive(Debug, Clone)]
pub struct ExecConfig {
    /// The program and its arguments.
    pub program: Vec<String>,
    /// The consistency check, run through `sh -c` after each kill (exit 0: consistent).
    pub check: String,
    /// Time budget in seconds (default 10).
    pub seconds: f64,
    /// Seed of the kill delays (default 1).
    pub seed: u64,
    /// Stop after this many cycles (default: no limit).
    pub cycles: Option<u64>,
    /// Shortest delay before the kill (default 0).
    pub min_delay: Duration,
    /// Longest delay before the kill (default 100 ms).
    pub max_delay: Duration,
    /// Start the kill clock only once the program printed a line containing this on its
    /// standard output (default: at once).
    pub ready: Option<String>,
    /// How long to wait for the ready line; a program that does not print it in time (or
    /// exits first) is a violation: it did not come up from the state it was given
    /// (default 30 s).
    pub ready_timeout: Duration,
    /// Run once through `sh -c` in the working directory before the first cycle (and,
    /// with `keep_going`, after each violation, on an emptied directory).
    pub setup: Option<String>,
    /// Power loss: `RIO_CACHE_DIR` points to a directory private to this run, which is
    /// wiped after each kill, before the check (vista programs lose their memory image).
    pub power_loss: bool,
    /// Where the run's files go (default: a fresh directory in `/dev/shm`, removed
    /// afterwards): `DIR/work` is the working directory of PROGRAM, CHECK_CMD and the
    /// setup command, emptied at the start; `DIR/rio-cache` is the power-loss cache
    /// directory.
    pub dir: Option<PathBuf>,
    /// Go on after a violation (default: stop at the first).
    pub keep_going: bool,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl ExecConfig {
    /// The defaults above for `program` and `check`.
    pub fn new(program: Vec<String>, check: String) -> ExecConfig {
        ExecConfig {
            program,
            check,
            seconds: 10.0,
            seed: 1,
            cycles: None,
            min_delay: Duration::ZERO,
            max_delay: Duration::from_millis(100),
            ready: None,
            ready_timeout: Duration::from_secs(30),
            setup: None,
            power_loss: false,
            dir: None,
            keep_going: false,
            progress: false,
        }
    }

    /// The command line up to the per-violation arguments, and after them.
    fn replay(&self) -> (String, String) {
        let mut before = format!(
            "crash-sim exec --min-delay-ms {} --max-delay-ms {}",
            self.min_delay.as_secs_f64() * 1e3,
            self.max_delay.as_secs_f64() * 1e3
        );
        if let Some(r) = &self.ready {
            let _ = write!(before, " --ready {}", shell_quote(r));
        }
        if let Some(s) = &self.setup {
            let _ = write!(before, " --setup {}", shell_quote(s));
        }
        if self.power_loss {
            before.push_str(" --power-loss");
        }
        let mut after = format!("--check {} --", shell_quote(&self.check));
        for a in &self.program {
            after.push(' ');
            after.push_str(&shell_quote(a));
        }
        (before, after)
    }
}

/// Quotes `s` for a POSIX shell (as is, if it needs no quoting).
pub fn shell_quote(s: &str) -> String {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Runs `crash-sim exec`.
///
/// # Errors
/// Harness failures: the program cannot be started, the setup command fails, files.
/// What the check finds is reported as violations.
pub fn run(cfg: &ExecConfig) -> Result<Report> {
    if cfg.program.is_empty() {
        bail!("no program to run");
    }
    if cfg.min_delay > cfg.max_delay {
        bail!("the shortest kill delay is longer than the longest");
    }
    let mut ccfg = Config::new(EngineKind::Vista, WorkloadKind::Bank, Mode::Kill);
    ccfg.seconds = cfg.seconds;
    ccfg.seed = cfg.seed;
    ccfg.cycles = cfg.cycles;
    ccfg.dir.clone_from(&cfg.dir);
    ccfg.keep_going = cfg.keep_going;
    ccfg.progress = cfg.progress;
    let mut ctx = Ctx::new(ccfg)?;
    ctx.report = Report {
        engine: "exec".into(),
        workload: cfg.program.join(" "),
        mode: if cfg.power_loss { "power" } else { "kill" }.into(),
        seed: cfg.seed,
        ..Report::default()
    };
    let (before, after) = cfg.replay();
    ctx.set_replay(before, after);
    let work = ctx.dir().join("work");
    let cache = ctx.dir().join("rio-cache");
    let run = Run {
        cfg,
        work: &work,
        cache: &cache,
    };
    run.fresh()?;
    // The memory images' origin records name the segments by their canonical path.
    let canonical_work = work
        .canonicalize()
        .with_context(|| format!("resolve {}", work.display()))?;
    let (lo, hi) = (
        cfg.min_delay.as_micros() as u64,
        cfg.max_delay.as_micros() as u64,
    );
    let mut cycle = 0u64;
    while ctx.more(cycle, 1.0) {
        let seed = cycle_seed(cfg.seed, cycle);
        let delay_us = rand::rngs::SmallRng::seed_from_u64(seed).gen_range(lo..=hi);
        let at = format!(
            "cycle {cycle} (seed {}, kill after {delay_us} us)",
            cfg.seed
        );
        let extra = format!("--seed {} --cycles {}", cfg.seed, cycle + 1);
        let violations = ctx.report.violations.len();
        let (killed, not_ready) = run.crash(Duration::from_micros(delay_us))?;
        if killed {
            ctx.report.effective_kills += 1;
        }
        if let Some(why) = not_ready {
            ctx.violation(at.clone(), why, &extra);
        }
        if cfg.power_loss {
            wipe(&cache)?;
        }
        if let Some(why) = run.check()? {
            ctx.violation(at, why, &extra);
        }
        cycle += 1;
        ctx.report.cycles = cycle;
        if ctx.report.violations.len() > violations && cfg.keep_going {
            // Each violation from a known state, not from the wreck of the last one.
            run.fresh()?;
        }
        let (c, k, v) = (
            cycle,
            ctx.report.effective_kills,
            ctx.report.violations.len(),
        );
        ctx.tick(|| format!("{c} cycles, {k} kills, {v} violations"));
    }
    // Finishing removes a run directory of its own, with the segments in it; their
    // memory images go too (those of a kept `--dir` stay with their segments).
    let report = ctx.finish();
    remove_images(&run.image_dir(), &canonical_work)?;
    Ok(report)
}

/// Removes the memory images, in `cache_dir`, of the segments that lived under `work`
/// (a canonical path) and are gone: the images a program's segments leave behind when
/// the working directory is emptied or removed. An image that is open, or whose segment
/// still exists, stays. Returns how many were removed.
fn remove_images(cache_dir: &Path, work: &Path) -> Result<usize> {
    let Ok(images) = rio_cache::images(cache_dir) else {
        return Ok(0); // no cache directory: no images
    };
    let mut removed = 0;
    for i in images
        .iter()
        .filter(|i| i.origin.as_deref().is_some_and(|o| o.starts_with(work)))
    {
        match rio_cache::remove_orphan(i) {
            Ok(true) => removed += 1,
            Ok(false) | Err(rio_cache::Error::Locked { .. }) => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", i.path.display())),
        }
    }
    Ok(removed)
}

/// The files and commands of one `crash-sim exec` run.
struct Run<'a> {
    cfg: &'a ExecConfig,
    work: &'a Path,
    cache: &'a Path,
}

impl Run<'_> {
    /// A shell command in the working directory.
    fn shell(&self, cmd: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(cmd).current_dir(self.work);
        if self.cfg.power_loss {
            c.env("RIO_CACHE_DIR", self.cache);
        }
        c
    }

    /// Where the program's memory images go: the private cache directory with power
    /// loss, else the one it inherits ($RIO_CACHE_DIR, else /dev/shm).
    fn image_dir(&self) -> std::path::PathBuf {
        if self.cfg.power_loss {
            self.cache.to_owned()
        } else {
            rio_cache::RioOptions::new().resolved_cache_dir()
        }
    }

    /// Empties the working and cache directories (and removes the memory images of the
    /// segments that were in the working directory) and runs the setup command.
    fn fresh(&self) -> Result<()> {
        let work = self.work.canonicalize().ok();
        wipe(self.work)?;
        if let Some(work) = work {
            remove_images(&self.image_dir(), &work)?;
        }
        wipe(self.cache)?;
        if let Some(setup) = &self.cfg.setup {
            let out = self
                .shell(setup)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("run the setup command {setup:?}"))?;
            if !out.status.success() {
                bail!(
                    "the setup command {setup:?} failed ({}): {}",
                    out.status,
                    output_text(&out.stdout, &out.stderr)
                );
            }
        }
        Ok(())
    }

    /// Starts the program, kills its process group after `delay` (counted from its ready
    /// line, if any) and waits until the whole group is gone. Returns whether the kill
    /// hit a running program, and why the program did not come up, if it did not.
    fn crash(&self, delay: Duration) -> Result<(bool, Option<String>)> {
        let (prog, args) = self.cfg.program.split_first().expect("checked non-empty");
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .current_dir(self.work)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .stdout(if self.cfg.ready.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        // Its own process group, so the kill reaches whatever it started too.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        if self.cfg.power_loss {
            cmd.env("RIO_CACHE_DIR", self.cache);
        }
        let mut child = cmd.spawn().with_context(|| format!("start {prog}"))?;
        let pgid = child.id() as libc::pid_t;
        let not_ready = match &self.cfg.ready {
            Some(line) => self.wait_ready(&mut child, line)?,
            None => None,
        };
        let started = Instant::now();
        let mut exited = child.try_wait()?.is_some();
        while not_ready.is_none() && !exited {
            let left = delay.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(2)));
            exited = child.try_wait()?.is_some();
        }
        sys::kill_group(pgid)?;
        child.wait()?;
        // Processes of the group that are not our children are reaped by someone else:
        // wait until none is left, so nothing writes while the check runs.
        let gone = Instant::now();
        while group_alive(pgid) {
            if gone.elapsed() > Duration::from_secs(10) {
                bail!("process group {pgid} still alive 10 s after SIGKILL");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok((!exited && not_ready.is_none(), not_ready))
    }

    /// Reads the program's output until a line contains `ready`; then keeps draining it
    /// on a thread (so the program never blocks on a full pipe). Returns why it did not
    /// come up, if it did not.
    fn wait_ready(&self, child: &mut Child, ready: &str) -> Result<Option<String>> {
        let stdout = child.stdout.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut sent = false;
            // Lines after the ready one are read and dropped until the program dies.
            for line in lines.by_ref() {
                let Ok(line) = line else { break };
                if !sent && line.contains(&ready) {
                    sent = tx.send(()).is_ok();
                }
            }
        });
        match rx.recv_timeout(self.cfg.ready_timeout) {
            Ok(()) => Ok(None),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                Ok(Some(match child.try_wait()? {
                    Some(status) => {
                        format!("the program ended ({status}) without printing its ready line")
                    }
                    None => "the program closed its output without printing its ready line".into(),
                }))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Ok(Some(format!(
                "no ready line within {:?}",
                self.cfg.ready_timeout
            ))),
        }
    }

    /// Runs the check; returns the violation, if any.
    fn check(&self) -> Result<Option<String>> {
        let out = self
            .shell(&self.cfg.check)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run the check {:?}", self.cfg.check))?;
        if out.status.success() {
            return Ok(None);
        }
        Ok(Some(format!(
            "the check failed ({}): {}",
            out.status,
            output_text(&out.stdout, &out.stderr)
        )))
    }
}

/// A command's stdout and stderr as one trimmed text, at most 4000 bytes.
fn output_text(stdout: &[u8], stderr: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(stdout).trim_end().to_owned();
    let e = String::from_utf8_lossy(stderr);
    if !e.trim().is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(e.trim_end());
    }
    if s.len() > 4000 {
        let mut cut = 4000;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str(" [...]");
    }
    if s.is_empty() {
        "(no output)".into()
    } else {
        s
    }
}

/// Whether a process of the process group `pgid` is still running: one that is not a
/// zombie (an orphaned zombie waits for a reaper, which a container may not have; it
/// writes nothing any more either way). Reads `/proc/<pid>/stat`.
fn group_alive(pgid: libc::pid_t) -> bool {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return false;
    };
    procs.filter_map(Result::ok).any(|e| {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            return false;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        // pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 1..]) else {
            return false;
        };
        let mut f = rest.split_whitespace();
        let state = f.next().unwrap_or("Z");
        let pgrp = f.nth(1).and_then(|p| p.parse::<libc::pid_t>().ok());
        pgrp == Some(pgid) && !matches!(state, "Z" | "X" | "x")
    })
}

/// Removes `dir` with everything in it, and creates it empty.
fn wipe(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("remove {}", dir.display()))
        }
        _ => {}
    }
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a/b-c.sh"), "a/b-c.sh");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("a b"), "'a b'");
    }

    #[test]
    fn output_is_bounded_and_labelled() {
        assert_eq!(output_text(b"", b""), "(no output)");
        assert_eq!(output_text(b"out\n", b"err\n"), "out\nerr");
        assert!(output_text(&[b'x'; 9000], b"").len() < 4100);
    }
}
