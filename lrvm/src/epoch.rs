//! Epoch truncation: the recovery procedure applied to a synced prefix of the log while
//! new transactions keep committing to the rest of it.
//!
//! An epoch covers `[start, end)`: records that were written *and synced* before the
//! epoch began. It rebuilds the latest values from the log file (not from memory, which
//! may hold uncommitted changes), writes them to the data segments, syncs the segments,
//! and only then moves the head in the status block. Until the head moves, recovery
//! would replay the whole epoch again, which is harmless because records are blind
//! writes of new values.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crate::error::Result;
use crate::log::LogDevice;
use crate::replay::{self, Extent};
use crate::segment::Segment;
use crate::status::Status;

/// The prefix an epoch applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch {
    pub(crate) start: u64,
    pub(crate) start_seq: u64,
    pub(crate) end: u64,
    pub(crate) end_seq: u64,
}

/// Runs one epoch to completion. Safe to run on a background thread: it reads only the
/// synced prefix of the log, writes only data segments, and takes the status lock for
/// the head move.
pub(crate) fn run(
    log: &LogDevice,
    status: &Mutex<Status>,
    segments: &HashMap<u32, Arc<Segment>>,
    epoch: Epoch,
    read_buffer: usize,
) -> Result<()> {
    let scan = replay::scan(
        log,
        epoch.start,
        epoch.start_seq,
        Extent::Exactly(epoch.end),
        read_buffer,
        &|id| segments.contains_key(&id),
    )?;
    debug_assert_eq!(scan.next_seq, epoch.end_seq);
    replay::apply(&scan.trees, segments, epoch.start)?;
    crash_point::crash_point!("lrvm.truncate.applied");
    #[cfg(feature = "mutants")]
    let head_first = crate::mutant::is("head-before-sync");
    #[cfg(not(feature = "mutants"))]
    let head_first = false;
    if !head_first {
        replay::sync(&scan.trees, segments)?;
    }
    crash_point::crash_point!("lrvm.truncate.data_synced");
    {
        let mut st = status.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = st.clone();
        next.head = epoch.end;
        next.head_seq = epoch.end_seq;
        next.tail_hint = next.tail_hint.max(epoch.end);
        log.write_status(&mut next)?;
        *st = next;
    }
    if head_first {
        replay::sync(&scan.trees, segments)?; // Mutant: the head moved before this sync.
    }
    crash_point::crash_point!("lrvm.truncate.head_moved");
    Ok(())
}
