//! Crash recovery, run by [`Rvm::initialize`](crate::Rvm::initialize).
//!
//! 1. Scan the log from the head until the first record that is not valid (bad checksum,
//!    unexpected sequence number): that is the tail. A torn last record ends the scan.
//! 2. Build, per segment, the latest committed value of every byte range.
//! 3. Write them to the data segment files and sync the files.
//! 4. Only then write a status block saying the log is empty (head = tail).
//!
//! A crash before step 4 leaves the old status block, so the next recovery repeats steps
//! 1-3 and writes the same bytes again: recovery is idempotent.

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::log::LogDevice;
use crate::replay::{self, Extent};
use crate::segment::Segment;
use crate::status::Status;

/// What the last recovery did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Committed records found in the log and replayed.
    pub records_replayed: u64,
    /// Bytes written to data segments (after merging overlapping ranges).
    pub bytes_applied: u64,
    /// Data segments written.
    pub segments: usize,
    /// The log ended with a torn record (a commit interrupted while it was written, never
    /// acknowledged); it was ignored.
    pub torn_tail: bool,
}

/// Recovers the log; returns the reset status and the report.
pub(crate) fn recover(
    log: &LogDevice,
    mut status: Status,
    read_buffer: usize,
    emulate_power_loss: bool,
) -> Result<(Status, RecoveryReport, u64, u64)> {
    let ids: Vec<u32> = status.segments.iter().map(|s| s.id).collect();
    let scan = replay::scan(
        log,
        status.head,
        status.head_seq,
        Extent::UntilInvalid,
        read_buffer,
        &|id| ids.contains(&id),
    )?;
    crash_point::crash_point!("lrvm.recover.scanned");
    let mut report = RecoveryReport {
        records_replayed: scan.records,
        torn_tail: scan.torn_tail,
        ..RecoveryReport::default()
    };
    if !scan.trees.is_empty() {
        let mut segments = HashMap::new();
        for id in scan.trees.keys() {
            let entry = status
                .segments
                .iter()
                .find(|s| s.id == *id)
                .ok_or(Error::CorruptLog {
                    offset: status.head,
                    reason: "record names an unknown segment",
                })?;
            let seg = Segment::open(&entry.path, false, emulate_power_loss)?;
            segments.insert(*id, Arc::new(seg));
        }
        report.bytes_applied = replay::apply(&scan.trees, &segments, status.head)?;
        report.segments = segments.len();
        crash_point::crash_point!("lrvm.recover.applied");
        replay::sync(&scan.trees, &segments)?;
        crash_point::crash_point!("lrvm.recover.data_synced");
    }
    if scan.end != status.head || !status.segments.is_empty() || scan.end != status.tail_hint {
        status.head = scan.end;
        status.head_seq = scan.next_seq;
        status.tail_hint = scan.end;
        status.segments.clear();
        log.write_status(&mut status)?;
        crash_point::crash_point!("lrvm.recover.reset");
    }
    Ok((status, report, scan.end, scan.next_seq))
}
