//! The acknowledgement channel between the harness and a forked child: framed messages
//! on a pipe. `Acks` is the workload's end, `Child` the harness's.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::sys::{self, Exit};

/// The workload's side of the acknowledgement channel (a pipe to the harness).
#[derive(Debug)]
pub struct Acks<'a> {
    pub(super) w: &'a mut File,
    pub(super) seed: u64,
    pub(super) left: u64,
}

impl Acks<'_> {
    /// The cycle's seed: derive the workload's choices from it.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether to go on: false once the cycle's operation budget is acknowledged (the
    /// kill and power modes give more than a worker gets through before its kill; the
    /// points and recovery modes a fixed script of 24).
    pub fn more(&self) -> bool {
        self.left > 0
    }

    /// Operation `op` completed (committed): vista promises it survives a process crash.
    ///
    /// # Errors
    /// The harness is gone.
    pub fn ack(&mut self, op: &[u8]) -> std::io::Result<()> {
        self.left = self.left.saturating_sub(1);
        send(self.w, ACK, op)
    }

    /// Operation `op` completed with `commit_durable`: it and every operation before it
    /// survive power loss too.
    ///
    /// # Errors
    /// The harness is gone.
    pub fn ack_durable(&mut self, op: &[u8]) -> std::io::Result<()> {
        self.left = self.left.saturating_sub(1);
        send(self.w, ACK_DURABLE, op)
    }

    /// A `Segment::checkpoint` returned: every operation acknowledged so far survives
    /// power loss.
    ///
    /// # Errors
    /// The harness is gone.
    pub fn checkpointed(&mut self) -> std::io::Result<()> {
        send(self.w, CHECKPOINTED, &[])
    }
}

pub(super) const READY: u8 = 1;
pub(super) const VERDICT: u8 = 2;
pub(super) const VIOLATION: u8 = 3;
pub(super) const ACK: u8 = 4;
pub(super) const ACK_DURABLE: u8 = 5;
pub(super) const CHECKPOINTED: u8 = 6;
pub(super) const DONE: u8 = 7;
pub(super) const ERROR: u8 = 8;

/// One frame: tag, payload length (u32, little-endian), payload; one `write` call.
pub(super) fn send(w: &mut File, tag: u8, payload: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| std::io::Error::other("acknowledgement larger than 4 GiB"))?;
    let mut frame = Vec::with_capacity(5 + payload.len());
    frame.push(tag);
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(payload);
    w.write_all(&frame)
}

/// A message from a child.
#[derive(Debug)]
pub(super) enum Msg {
    Ready { cold: bool },
    Verdict,
    Violation(String),
    Ack(Vec<u8>),
    AckDurable(Vec<u8>),
    Checkpointed,
    Done,
    Error(String),
}

/// A forked child, seen from the parent.
pub(super) struct Child {
    pub(super) pid: libc::pid_t,
    pub(super) r: BufReader<File>,
    pub(super) reaped: bool,
}

impl Child {
    /// The next message; `None` once the child is gone and everything it sent is read.
    pub(super) fn next(&mut self, timeout: Duration) -> Result<Option<Msg>> {
        if self.r.buffer().is_empty() && !sys::readable(self.r.get_ref(), timeout)? {
            bail!("worker {} sent nothing for {timeout:?}", self.pid);
        }
        let mut head = [0u8; 5];
        match self.r.read_exact(&mut head) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e.into()),
        }
        let len = u32::from_le_bytes(head[1..].try_into().expect("4 bytes"));
        let mut p = vec![0u8; len as usize];
        if self.r.read_exact(&mut p).is_err() {
            // Killed in the middle of a frame (a write larger than the pipe buffer):
            // the operation was not acknowledged.
            return Ok(None);
        }
        let text = |p: Vec<u8>| String::from_utf8_lossy(&p).into_owned();
        Ok(Some(match head[0] {
            READY => Msg::Ready {
                cold: p.first() == Some(&1),
            },
            VERDICT => Msg::Verdict,
            VIOLATION => Msg::Violation(text(p)),
            ACK => Msg::Ack(p),
            ACK_DURABLE => Msg::AckDurable(p),
            CHECKPOINTED => Msg::Checkpointed,
            DONE => Msg::Done,
            ERROR => Msg::Error(text(p)),
            other => bail!("unknown message tag {other} from worker {}", self.pid),
        }))
    }

    pub(super) fn kill(&self) -> Result<()> {
        Ok(sys::kill(self.pid)?)
    }

    pub(super) fn wait(&mut self) -> Result<Exit> {
        let e = sys::wait(self.pid)?;
        self.reaped = true;
        Ok(e)
    }
}

impl Drop for Child {
    /// Kills and reaps a child nobody waited for; errors are ignored (it is gone).
    fn drop(&mut self) {
        if !self.reaped {
            let _ = sys::kill(self.pid);
            let _ = sys::wait(self.pid);
        }
    }
}
