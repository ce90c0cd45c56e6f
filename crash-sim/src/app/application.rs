//! The contract of an application under test: what the harness calls, in a forked
//! child, to initialise, run and check it.

use anyhow::Result;
use vista::{Options, Segment};

use super::channel::Acks;
use super::history::History;

/// A vista application under test.
///
/// Every method but [`App::name`] runs in a forked child process (so a panic, an error
/// or a kill there cannot disturb the campaign), and may be killed at any moment.
pub trait App: std::fmt::Debug {
    /// A short name for reports.
    fn name(&self) -> &str;

    /// The segment's options: size, undo log, lanes, protection, writeback. The harness
    /// chooses the segment's path and its cache directory (in the campaign's work
    /// directory, so power loss can take the memory image).
    fn options(&self) -> Options;

    /// Puts the initial state into a new, empty segment. The harness checkpoints it and
    /// closes the segment afterwards, so the initial state is durable. Default: nothing.
    ///
    /// # Errors
    /// Whatever goes wrong; reported as a harness error.
    fn init(&self, seg: &mut Segment) -> Result<()> {
        let _ = seg;
        Ok(())
    }

    /// The workload: performs operations on the recovered segment, acknowledging each
    /// completed one with [`Acks::ack`] (or [`Acks::ack_durable`] after
    /// `commit_durable`, [`Acks::checkpointed`] after `Segment::checkpoint`), until
    /// [`Acks::more`] says to stop. Use [`Acks::seed`] for any randomness, so a replay
    /// does the same. The harness closes the segment after a normal return.
    ///
    /// # Errors
    /// An engine error; reported as a violation (the state could not be worked on).
    fn run(&self, seg: &mut Segment, acks: &mut Acks<'_>) -> Result<()>;

    /// The oracle: is `seg`, just recovered after a crash, consistent with `history`?
    /// Must accept operations that were in flight (started, not acknowledged) being
    /// present or absent. A panic counts as a violation too, so `assert!` works.
    ///
    /// # Errors
    /// A one-line description of the violation.
    fn check(&self, seg: &Segment, history: &History) -> Result<(), String>;
}
