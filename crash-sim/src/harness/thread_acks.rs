//! The threaded worker's acknowledgements, as the parent reads them from the pipe: the
//! frame value that names a thread's op, and what the acks say must survive.

use std::collections::HashMap;

/// A frame value: thread `t`, op `i`.
pub(crate) fn tag(t: u32, i: u64) -> u64 {
    (u64::from(t) << 48) | i
}

/// Splits a frame value into (thread, op).
pub(crate) fn untag(v: u64) -> (u32, u64) {
    ((v >> 48) as u32, v & ((1 << 48) - 1))
}

/// What the parent learned from a threaded worker's frames.
#[derive(Debug, Default, Clone)]
pub struct Acks {
    /// Per thread: the last acknowledged op (0: none).
    pub acked: Vec<u64>,
    /// Per thread: every op up to this one was acknowledged before a durable operation
    /// (of any thread) began that was itself acknowledged; after power loss those
    /// commits must be there.
    pub durable: Vec<u64>,
    /// Durable operations begun and not yet acknowledged: the acks read before each.
    starts: HashMap<(u32, u64), Vec<u64>>,
}

impl Acks {
    fn grow(&mut self, t: u32) {
        let n = (t as usize + 1).max(self.acked.len());
        self.acked.resize(n, 0);
        self.durable.resize(n, 0);
    }

    /// Thread `t` is about to begin the durable op `i`.
    pub fn start(&mut self, t: u32, i: u64) {
        self.grow(t);
        self.starts.insert((t, i), self.acked.clone());
    }

    /// Op `i` of thread `t` returned.
    pub fn ack(&mut self, t: u32, i: u64) {
        self.grow(t);
        self.acked[t as usize] = i;
        if let Some(before) = self.starts.remove(&(t, i)) {
            for (u, a) in before.iter().enumerate() {
                self.durable[u] = self.durable[u].max(*a);
            }
            self.durable[t as usize] = self.durable[t as usize].max(i);
        }
    }

    pub(crate) fn acked(&self, t: u32) -> u64 {
        self.acked.get(t as usize).copied().unwrap_or(0)
    }

    pub(crate) fn durable(&self, t: u32) -> u64 {
        self.durable.get(t as usize).copied().unwrap_or(0)
    }

    /// Acknowledged ops of every thread.
    pub fn total(&self) -> u64 {
        self.acked.iter().sum()
    }
}
