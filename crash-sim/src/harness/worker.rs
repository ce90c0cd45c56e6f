//! Workers: forked children that open the engine, report what recovery left, run a
//! cycle's operations and acknowledge each one over a pipe before starting the next.
//!
//! The parent forks every worker from its own, already loaded, single-threaded image
//! (a fork server without the extra process) and holds no engine handle while it does,
//! so no child inherits a locked descriptor it should not have.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::engines::{Engine, Start, Store};
use crate::harness::maps::{self, Region};
use crate::sys::{self, Exit, Fork, WildStore};
use crate::txn::{OpKind, Txn};
use crate::workloads::{op_kind, Workload};

/// Where a wild store goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WildTarget {
    /// This offset of the workload's state.
    Data(u64),
    /// This offset from the start of the engine's mapping (vista: header, undo log).
    Meta(u64),
    /// Anywhere the worker has mapped (see [`crate::harness::maps::targets`]), every byte
    /// equally likely: the address is this number modulo the mapped bytes.
    Anywhere(u64),
}

/// A wild store a worker performs before one of its operations.
#[derive(Debug, Clone, Copy)]
pub struct WildFault {
    /// Performed before operation `before_op` (outside any transaction).
    pub before_op: u64,
    /// Where.
    pub target: WildTarget,
    /// What.
    pub store: WildStore,
}

/// What a worker does.
#[derive(Debug, Clone, Copy)]
pub struct Job<'a> {
    /// The engine.
    pub engine: &'a dyn Engine,
    /// The workload.
    pub workload: &'a dyn Workload,
    /// The cycle's seed.
    pub seed: u64,
    /// Operations in the cycle (the last one closes).
    pub ops: u64,
    /// A crash point to arm: the worker kills itself at its N-th hit.
    pub arm: Option<(&'a str, u64)>,
    /// Send the recovered state after opening.
    pub send_state: bool,
    /// Only open (recover), then exit.
    pub recover_only: bool,
    /// A wild store to perform.
    pub wild: Option<WildFault>,
}

/// A message from a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Msg {
    /// The engine is open (recovered); effective kills count from here.
    Ready(Start),
    /// The committed state right after recovery.
    State(Vec<u8>),
    /// Operation `i` returned.
    Ack(u64),
    /// About to perform the wild store, at an address in this region.
    Wild(crate::harness::maps::Region),
    /// The wild store did not fault.
    WildSurvived,
    /// Every operation returned.
    Done,
    /// What recovery did: lanes rolled back, records undone.
    Recovery(u32, u64),
    /// An engine error (the worker then exits with code 3).
    Error(String),
    /// A threaded worker's thread is about to begin a durable operation.
    ThreadStart(u32, u64),
    /// A threaded worker's operation returned.
    ThreadAck(u32, u64),
}

const READY: u64 = 1;
const STATE: u64 = 2;
const ACK: u64 = 3;
const WILD: u64 = 4;
const WILD_SURVIVED: u64 = 5;
const DONE: u64 = 6;
const ERROR: u64 = 7;
const RECOVERY: u64 = 8;
/// A threaded worker's thread is about to begin a durable operation (value: thread
/// and op, see [`crate::modes::threads`]).
pub(crate) const THREAD_START: u64 = 9;
/// A threaded worker's operation returned (value: thread and op).
pub(crate) const THREAD_ACK: u64 = 10;

fn send(w: &File, tag: u64, value: u64, payload: &[u8]) -> std::io::Result<()> {
    let mut frame = Vec::with_capacity(16 + payload.len());
    frame.extend_from_slice(&tag.to_le_bytes());
    frame.extend_from_slice(&value.to_le_bytes());
    frame.extend_from_slice(payload);
    // One write of at most PIPE_BUF bytes is atomic, also when several threads write
    // frames to the pipe at once; a larger one (a state) is read whole by the parent
    // anyway.
    let mut w = w;
    w.write_all(&frame)
}

/// Sends a 16-byte frame (safe from several threads at once: one atomic `write`).
pub(crate) fn send_frame(w: &File, tag: u64, value: u64) -> std::io::Result<()> {
    send(w, tag, value, &[])
}

/// Sends `READY`.
pub(crate) fn send_ready(w: &File, start: Start) -> std::io::Result<()> {
    send(w, READY, start_code(start), &[])
}

/// Sends what recovery did.
pub(crate) fn send_recovery(w: &File, lanes: u32, records: u64) -> std::io::Result<()> {
    send(w, RECOVERY, records, &lanes.to_le_bytes())
}

/// Sends the recovered state.
pub(crate) fn send_state(w: &File, state: &[u8]) -> std::io::Result<()> {
    send(w, STATE, state.len() as u64, state)
}

/// Sends `DONE`.
pub(crate) fn send_done(w: &File) -> std::io::Result<()> {
    send(w, DONE, 0, &[])
}

/// Sends an engine error (best effort: the worker exits next).
pub(crate) fn send_error(w: &File, e: &anyhow::Error) {
    let msg = format!("{e:#}");
    let _ = send(w, ERROR, msg.len() as u64, msg.as_bytes());
}

fn start_code(start: Start) -> u64 {
    match start {
        Start::Created => 0,
        Start::Warm => 1,
        Start::Cold => 2,
    }
}

/// A running worker, seen from the parent.
#[derive(Debug)]
pub struct Worker {
    pid: libc::pid_t,
    reader: BufReader<File>,
    reaped: bool,
}

/// Forks a worker for `job`.
///
/// # Errors
/// `pipe` or `fork` errors.
pub fn spawn(job: &Job<'_>) -> Result<Worker> {
    spawn_fn(|w| child_main(job, w))
}

/// Forks a worker that runs `child` with the pipe's write end, then ends the process at
/// once ([`sys::exit_now`]) with the exit code `child` returns.
///
/// # Errors
/// `pipe` or `fork` errors.
pub(crate) fn spawn_fn(child: impl FnOnce(File) -> i32) -> Result<Worker> {
    let (r, w) = sys::pipe().context("pipe")?;
    match sys::fork().context("fork")? {
        Fork::Child => {
            drop(r);
            sys::exit_now(child(w))
        }
        Fork::Parent(pid) => {
            drop(w);
            Ok(Worker {
                pid,
                reader: BufReader::with_capacity(1 << 16, r),
                reaped: false,
            })
        }
    }
}

fn child_main(job: &Job<'_>, mut w: File) -> ! {
    match job.arm {
        Some((point, n)) => crash_point::arm(point, n),
        None => crash_point::disarm(),
    }
    let code = match child_body(job, &mut w) {
        Ok(()) => 0,
        Err(e) => {
            send_error(&w, &e);
            3
        }
    };
    sys::exit_now(code)
}

fn child_body(job: &Job<'_>, w: &mut File) -> Result<()> {
    let mut store = Some(job.engine.open()?);
    let s = store.as_ref().expect("open");
    send(w, READY, start_code(s.start()), &[])?;
    if let Some((lanes, records)) = s.recovery_report() {
        send(w, RECOVERY, records, &lanes.to_le_bytes())?;
    }
    if job.send_state {
        let st = s.state()?;
        send(w, STATE, st.len() as u64, &st)?;
    }
    if job.recover_only {
        send(w, DONE, 0, &[])?;
        return Ok(());
    }
    for i in 1..=job.ops {
        if let Some(f) = job.wild.filter(|f| f.before_op == i) {
            wild(&**store.as_ref().expect("open"), f, w)?;
        }
        let kind = op_kind(job.seed, i, job.ops);
        if kind == OpKind::Close {
            store.take().expect("open").close()?;
            send(w, ACK, i, &[])?;
            break;
        }
        let s = store.as_mut().expect("open");
        let writes = match kind {
            OpKind::Checkpoint => Vec::new(),
            _ => job.workload.writes(job.seed, i, &s.state()?),
        };
        s.run(&Txn { kind, writes })?;
        send(w, ACK, i, &[])?;
    }
    send(w, DONE, 0, &[])?;
    Ok(())
}

fn wild(store: &dyn Store, f: WildFault, w: &mut File) -> Result<()> {
    let (data, from, to) = store.addresses()?;
    let (addr, mapped, region) = match f.target {
        WildTarget::Data(off) => (data + off as usize, from..to, Region::Segment),
        WildTarget::Meta(off) => (from + off as usize, from..to, Region::Segment),
        WildTarget::Anywhere(n) => {
            let areas = maps::current()?;
            let targets = maps::targets(&areas);
            let addr = maps::pick(&targets, n).context("nothing mapped")?;
            let area = targets
                .iter()
                .find(|a| a.range.contains(&addr))
                .context("picked outside")?;
            (
                addr,
                area.range.clone(),
                maps::region(&areas, &(from..to), addr),
            )
        }
    };
    send(w, WILD, region.code(), &[])?;
    sys::wild_store(addr, mapped, f.store);
    send(w, WILD_SURVIVED, 0, &[])?;
    Ok(())
}

impl Worker {
    /// The next message; `None` once the worker is gone and everything it sent is read.
    /// Waits at most `timeout` for it to arrive.
    ///
    /// # Errors
    /// A timeout, a malformed message, I/O errors.
    pub fn next(&mut self, timeout: Duration) -> Result<Option<Msg>> {
        if self.reader.buffer().is_empty() && !sys::readable(self.reader.get_ref(), timeout)? {
            bail!("worker {} sent nothing for {timeout:?}", self.pid);
        }
        let mut frame = [0u8; 16];
        match self.reader.read_exact(&mut frame) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let tag = u64::from_le_bytes(frame[..8].try_into().expect("8 bytes"));
        let value = u64::from_le_bytes(frame[8..].try_into().expect("8 bytes"));
        let mut payload = || -> Result<Vec<u8>> {
            let mut p = vec![0u8; usize::try_from(value)?];
            self.reader
                .read_exact(&mut p)
                .context("worker died in the middle of a message")?;
            Ok(p)
        };
        Ok(Some(match tag {
            READY => Msg::Ready(match value {
                0 => Start::Created,
                1 => Start::Warm,
                _ => Start::Cold,
            }),
            STATE => Msg::State(payload()?),
            ACK => Msg::Ack(value),
            WILD => Msg::Wild(crate::harness::maps::Region::from_code(value)),
            WILD_SURVIVED => Msg::WildSurvived,
            DONE => Msg::Done,
            RECOVERY => {
                let mut lanes = [0u8; 4];
                self.reader
                    .read_exact(&mut lanes)
                    .context("worker died in the middle of a message")?;
                Msg::Recovery(u32::from_le_bytes(lanes), value)
            }
            ERROR => Msg::Error(String::from_utf8_lossy(&payload()?).into_owned()),
            THREAD_START => {
                let (t, i) = crate::harness::thread_acks::untag(value);
                Msg::ThreadStart(t, i)
            }
            THREAD_ACK => {
                let (t, i) = crate::harness::thread_acks::untag(value);
                Msg::ThreadAck(t, i)
            }
            other => bail!("unknown message tag {other} from worker {}", self.pid),
        }))
    }

    /// Kills the worker with `SIGKILL` (it may already be gone).
    ///
    /// # Errors
    /// The `kill` error.
    pub fn kill(&self) -> Result<()> {
        Ok(sys::kill(self.pid)?)
    }

    /// Waits for the worker to end.
    ///
    /// # Errors
    /// The `waitpid` error.
    pub fn wait(&mut self) -> Result<Exit> {
        let e = sys::wait(self.pid)?;
        self.reaped = true;
        Ok(e)
    }

    /// The worker's exit if it has ended already (reaping it), `None` if it runs.
    ///
    /// # Errors
    /// The `waitpid` error.
    pub fn try_wait(&mut self) -> Result<Option<Exit>> {
        let e = sys::try_wait(self.pid)?;
        self.reaped |= e.is_some();
        Ok(e)
    }

    /// Reads every message left (the worker must be gone or about to be).
    ///
    /// # Errors
    /// As [`Worker::next`].
    pub fn drain(&mut self) -> Result<Vec<Msg>> {
        let mut v = Vec::new();
        while let Some(m) = self.next(Duration::from_secs(30))? {
            v.push(m);
        }
        Ok(v)
    }
}

impl Drop for Worker {
    /// Kills and reaps a worker nobody waited for; errors are ignored (it is gone).
    fn drop(&mut self) {
        if !self.reaped {
            let _ = sys::kill(self.pid);
            let _ = sys::wait(self.pid);
        }
    }
}

/// What a finished worker did.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    /// How it started (if it got that far).
    pub start: Option<Start>,
    /// The state it found after recovery.
    pub state: Option<Vec<u8>>,
    /// The last acknowledged operation.
    pub acked: u64,
    /// Every operation returned.
    pub done: bool,
    /// The engine error it reported.
    pub error: Option<String>,
    /// What its recovery did (lanes rolled back, records undone), if the engine says.
    pub recovery: Option<(u32, u64)>,
    /// It reached the wild store.
    pub wild: bool,
    /// Where the wild store went.
    pub wild_region: Option<crate::harness::maps::Region>,
    /// It survived the wild store.
    pub wild_survived: bool,
    /// A threaded worker's acknowledgements.
    pub threads: crate::harness::thread_acks::Acks,
}

impl Outcome {
    /// Folds messages in.
    pub fn absorb(&mut self, msgs: impl IntoIterator<Item = Msg>) {
        for m in msgs {
            match m {
                Msg::Ready(s) => self.start = Some(s),
                Msg::State(s) => self.state = Some(s),
                Msg::Ack(i) => self.acked = i,
                Msg::Wild(r) => {
                    self.wild = true;
                    self.wild_region = Some(r);
                }
                Msg::WildSurvived => self.wild_survived = true,
                Msg::Done => self.done = true,
                Msg::Recovery(lanes, records) => self.recovery = Some((lanes, records)),
                Msg::Error(e) => self.error = Some(e),
                Msg::ThreadStart(t, i) => self.threads.start(t, i),
                Msg::ThreadAck(t, i) => self.threads.ack(t, i),
            }
        }
    }
}

/// Runs a worker to its end without interfering (it may kill itself at an armed crash
/// point): returns its exit and what it said.
///
/// # Errors
/// Fork, pipe, wait errors, or a worker silent for 60 s.
pub fn run_to_end(job: &Job<'_>) -> Result<(Exit, Outcome)> {
    let mut w = spawn(job)?;
    let mut out = Outcome::default();
    while let Some(m) = w.next(Duration::from_secs(60))? {
        out.absorb([m]);
    }
    let exit = w.wait()?;
    Ok((exit, out))
}
