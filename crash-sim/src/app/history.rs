//! What a crashed run acknowledged, as the oracle sees it: the `History` of acknowledged
//! operations and its views, `Ops`.

use crate::engines::CrashModel;

use super::channel::Msg;

/// What a crashed run acknowledged, seen by the oracle.
///
/// Kept compactly (one buffer for all operations' bytes, one offset each): a long kill
/// campaign acknowledges millions of operations.
#[derive(Debug, Clone, Default)]
pub struct History {
    bytes: Vec<u8>,
    /// Where each operation's bytes end in `bytes`.
    ends: Vec<usize>,
    /// Acknowledged operations `[..durable]` survive power loss.
    durable: usize,
    pub(super) crash: Option<CrashModel>,
}

/// A run of acknowledged operations, oldest first: a view of a [`History`].
#[derive(Debug, Clone, Copy)]
pub struct Ops<'a> {
    bytes: &'a [u8],
    ends: &'a [usize],
}

impl<'a> Ops<'a> {
    /// How many.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Operation `i` (0 = the oldest), as the workload acknowledged it.
    pub fn get(&self, i: usize) -> Option<&'a [u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.bytes[start..end])
    }

    /// The newest.
    pub fn last(&self) -> Option<&'a [u8]> {
        self.len().checked_sub(1).and_then(|i| self.get(i))
    }

    /// Every operation, oldest first.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &'a [u8]> + ExactSizeIterator + 'a {
        let (bytes, ends) = (self.bytes, self.ends);
        (0..ends.len()).map(move |i| {
            let start = if i == 0 { 0 } else { ends[i - 1] };
            &bytes[start..ends[i]]
        })
    }
}

impl History {
    /// The kind of crash the segment was recovered from.
    pub fn crash(&self) -> CrashModel {
        self.crash.unwrap_or(CrashModel::Process)
    }

    /// Every operation acknowledged since the segment was initialised, oldest first,
    /// as the workload passed it to [`Acks::ack`](super::Acks::ack). After a power loss
    /// that the oracle accepted, the operations it took (those after the last durable
    /// one) are dropped from the history.
    pub fn acked(&self) -> Ops<'_> {
        Ops {
            bytes: &self.bytes,
            ends: &self.ends,
        }
    }

    /// The acknowledged operations vista promises survive this crash, a prefix of
    /// [`History::acked`]: all of them after a process crash; after power loss, those up
    /// to the last one acknowledged durable (vista restores exactly that checkpoint, or
    /// the durable commit that was in flight).
    pub fn required(&self) -> Ops<'_> {
        let n = match self.crash() {
            CrashModel::Process => self.ends.len(),
            CrashModel::Power => self.durable,
        };
        Ops {
            bytes: &self.bytes,
            ends: &self.ends[..n],
        }
    }

    pub(super) fn push(&mut self, m: Msg) {
        match m {
            Msg::Ack(op) => self.add(&op),
            Msg::AckDurable(op) => {
                self.add(&op);
                self.durable = self.ends.len();
            }
            Msg::Checkpointed => self.durable = self.ends.len(),
            _ => {}
        }
    }

    fn add(&mut self, op: &[u8]) {
        self.bytes.extend_from_slice(op);
        self.ends.push(self.bytes.len());
    }

    /// Appends what a later run acknowledged.
    pub(super) fn extend(&mut self, later: &History) {
        if later.durable > 0 {
            self.durable = self.ends.len() + later.durable;
        }
        for op in later.acked().iter() {
            self.add(op);
        }
    }

    /// After an accepted check: what the crash took is gone.
    pub(super) fn settle(&mut self) {
        if self.crash() == CrashModel::Power {
            self.ends.truncate(self.durable);
            self.bytes.truncate(self.ends.last().copied().unwrap_or(0));
        }
        self.crash = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ops(o: Ops<'_>) -> Vec<Vec<u8>> {
        o.iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn history_keeps_the_durable_prefix_across_power_loss() {
        let mut h = History::default();
        h.push(Msg::Ack(vec![1]));
        h.push(Msg::AckDurable(vec![2, 2]));
        h.push(Msg::Ack(vec![3]));
        h.push(Msg::Checkpointed);
        h.push(Msg::Ack(vec![]));
        h.push(Msg::Ack(vec![5]));
        assert_eq!(h.acked().len(), 5);
        assert_eq!(h.acked().get(1), Some(&[2u8, 2][..]));
        assert_eq!(h.acked().get(3), Some(&[][..]));
        h.crash = Some(CrashModel::Process);
        assert_eq!(h.required().len(), 5);
        h.crash = Some(CrashModel::Power);
        assert_eq!(ops(h.required()), [vec![1], vec![2, 2], vec![3]]);
        assert_eq!(h.required().last(), Some(&[3u8][..]));
        h.settle();
        assert_eq!(ops(h.acked()), [vec![1], vec![2, 2], vec![3]]);
        // A later run's acknowledgements append; its durable mark moves with them.
        let mut later = History::default();
        later.push(Msg::AckDurable(vec![6]));
        later.push(Msg::Ack(vec![7]));
        h.extend(&later);
        h.crash = Some(CrashModel::Power);
        assert_eq!(ops(h.required()), [vec![1], vec![2, 2], vec![3], vec![6]]);
        assert_eq!(h.acked().last(), Some(&[7u8][..]));
    }
}
