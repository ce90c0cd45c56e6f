//! One operation of a workload, as the workloads generate it and the engines run it:
//! its writes and how it ends.

/// How a transaction ends, or an operation that is not a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    /// An ordinary commit: vista `commit`, lrvm `Flush` (lrvm-flush) or `NoFlush`
    /// (lrvm-noflush).
    Commit,
    /// The transaction's writes are made, then aborted.
    Abort,
    /// A commit that survives power loss: vista `commit_durable`, lrvm `Flush`.
    Durable,
    /// No transaction: vista `checkpoint`, lrvm `truncate`.
    Checkpoint,
    /// No transaction: close the engine cleanly (vista `close`, lrvm `close`).
    Close,
}

/// One operation of a workload: its writes (offset, bytes) and how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    /// How it ends.
    pub kind: OpKind,
    /// Writes in order (empty for checkpoint and close).
    pub writes: Vec<(u64, Vec<u8>)>,
}

impl Txn {
    /// Applies the transaction to a model of the state (nothing if it aborts).
    pub fn apply(&self, state: &mut [u8]) {
        if matches!(self.kind, OpKind::Commit | OpKind::Durable) {
            for (off, bytes) in &self.writes {
                let at = *off as usize;
                state[at..at + bytes.len()].copy_from_slice(bytes);
            }
        }
    }
}
