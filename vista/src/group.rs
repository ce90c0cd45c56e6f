//! Transactions across segments: one transaction changes several segments, all or
//! nothing, across process crashes and power loss.
//!
//! In the spirit of Quicksilver's coordinator: each segment keeps its own undo records
//! (its lanes, as for any transaction), and one small record in one place, the group's
//! *coordinator* file, decides the outcome for all of them. The protocol, the orderings
//! recovery depends on and the argument are in `docs/design.md` ("Transactions across
//! segments"); in short:
//!
//! - **Joining.** A [`GroupTransaction`] begins an ordinary transaction in a member the
//!   first time it is used there ([`GroupTransaction::on`]). When a second member
//!   joins, every member's lane gets a *group record* naming the coordinator, a slot of
//!   it and the transaction's id, published before the member's next change; each later
//!   member gets it when it joins. Before its record, a member is fenced (below).
//! - **Commit.** One `pwrite` of the id into the slot is the decision (crash point
//!   `vista.xseg.decided`); then each member's usual commit store empties its lane
//!   (`vista.xseg.member_committed`), the first member's (whose lane names the slot)
//!   last. Recovery of a lane with a group record keeps it if
//!   the slot holds the id, else undoes it, so a crash anywhere, also between the
//!   decision and the last member's store, or inside recovery, leaves all or none.
//!   A transaction that touched one member commits as an ordinary one (no record, no
//!   decision): it pays nothing extra.
//! - **Power loss.** A member that took part in a transaction across segments is
//!   *fenced*: its own checkpoints are refused (also the writeback thread's and the
//!   close-time one) until [`Group::checkpoint`] writes every member back at once, with
//!   rio-cache's group checkpoint: each member's batch is sealed in its journal for an
//!   epoch, and one synced write of the epoch to the coordinator commits them all.
//!   The fence outlives a process crash (a `.fence` file beside the segment).

use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError,
};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crash_point::crash_point;
use rio_cache::group::Coordinator;

use crate::error::{Error, Result};
use crate::segment::{fence_path, Segment};
use crate::transaction::Transaction;
use crate::undo::GroupTag;

/// Every crash point of the protocol across segments (rio-cache's group checkpoint adds
/// `rio.group.*`, in [`rio_cache::GROUP_CRASH_POINTS`]).
pub const XSEG_CRASH_POINTS: &[&str] = &[
    "vista.xseg.tag_written",
    "vista.xseg.tagged",
    "vista.xseg.prepared",
    "vista.xseg.decided",
    "vista.xseg.member_committed",
    "vista.xseg.checkpoint_prepared",
    "vista.xseg.checkpoint_decided",
];

/// Segments that transactions may change together. See the module documentation.
///
/// A group owns its members; reach them with [`Group::segment`] (for transactions on
/// one member, reads, statistics). The same coordinator file must always be used with
/// the same members.
#[derive(Debug)]
pub struct Group {
    core: Arc<Core>,
    /// Takes a group checkpoint every interval while a member is fenced (with
    /// `Writeback::Background`).
    writeback: Option<GroupWriteback>,
}

/// What the group's transactions and its writeback thread share.
#[derive(Debug)]
struct Core {
    members: Vec<Segment>,
    /// Each member's slot base in the coordinator (`Coordinator::member_bases`): its
    /// slots are `base * SLOTS_PER_MEMBER + lane`.
    bases: Vec<u64>,
    coordinator: Coordinator,
    /// Transactions of the group hold it shared while they run; a group checkpoint
    /// holds it exclusively, so that every transaction across segments is in all of
    /// its snapshots or in none.
    order: RwLock<()>,
    /// Group checkpoints trying to take `order` exclusively: new transactions wait
    /// (on `reopened`) while there are any, so that a steady stream of transactions
    /// cannot keep a checkpoint out.
    closing: AtomicU32,
    reopened: (Mutex<()>, Condvar),
    /// How long a group checkpoint waits for the running transactions of the group
    /// (`Options::checkpoint_wait` of the options given to `Group::open`): a transaction
    /// leaked with `mem::forget` then makes it fail with `CheckpointBusy` instead of
    /// waiting forever.
    wait: Duration,
    next_txn: AtomicU64,
}

/// Slots of the coordinator each member owns (one per lane).
const SLOTS_PER_MEMBER: u64 = crate::options::MAX_LANES as u64;

impl Group {
    /// Makes a group of `members` decided by the coordinator file at `coordinator`
    /// (created if absent; its absolute path is what the members' records name, so keep
    /// it where it is). The members were opened (and so recovered) already: an
    /// unfinished transaction across segments that a crash left was finished as its
    /// coordinator decided. Of `opts`, the group uses the writeback policy (with
    /// `Writeback::Background { interval, .. }`, the default, a thread takes a group
    /// checkpoint every `interval` while a member is fenced, so that transactions across
    /// segments reach the disk by themselves, as the members' own writeback does for
    /// theirs), the checkpoint wait (how long a group checkpoint waits for the group's
    /// running transactions before it gives up with [`Error::CheckpointBusy`]) and the
    /// injected faults of the coordinator's I/O (tests).
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] for no members or a coordinator path too long for the
    /// records; [`Error::Cache`] if the coordinator file is not one; I/O errors.
    pub fn open(
        coordinator: impl AsRef<Path>,
        members: Vec<Segment>,
        opts: &crate::Options,
    ) -> Result<Group> {
        if members.is_empty() {
            return Err(Error::InvalidOptions(
                "a group needs at least one segment".into(),
            ));
        }
        let path = std::path::absolute(coordinator.as_ref()).map_err(|e| Error::Io {
            context: format!("resolve {}", coordinator.as_ref().display()),
            source: e,
        })?;
        if crate::undo::group_record_len(&path).is_none() {
            return Err(Error::InvalidOptions(
                "the coordinator's path is longer than 4096 bytes".into(),
            ));
        }
        if members.len() > rio_cache::group::MAX_MEMBER_IDS {
            return Err(Error::InvalidOptions(format!(
                "a group has at most {} members",
                rio_cache::group::MAX_MEMBER_IDS
            )));
        }
        let coordinator = Coordinator::open(&path, true, opts.faults.clone())?;
        // One group at a time uses the file; each member decides in slots of its own,
        // which no other member that ever used the file shares: a segment left out of
        // this group (another group's, or a moved or copied one) may still need the
        // decisions in its slots, which its recovery reads when it is next opened.
        coordinator.lock()?;
        let ids: Vec<u64> = members.iter().map(|m| member_id(m.path())).collect();
        let bases = coordinator.member_bases(&ids)?;
        // Ids never repeat for a slot: above every id the members' slots hold, and above
        // the clock.
        let mut max = 0;
        for &b in &bases {
            for k in b * SLOTS_PER_MEMBER..(b + 1) * SLOTS_PER_MEMBER {
                max = max.max(coordinator.slot(k)?);
            }
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2));
        let core = Arc::new(Core {
            members,
            bases,
            coordinator,
            order: RwLock::new(()),
            closing: AtomicU32::new(0),
            reopened: (Mutex::new(()), Condvar::new()),
            wait: opts.checkpoint_wait,
            next_txn: AtomicU64::new(max.max(now) + 1),
        });
        let writeback = match opts.writeback {
            crate::Writeback::Background { interval, .. } => {
                Some(GroupWriteback::spawn(Arc::clone(&core), interval)?)
            }
            crate::Writeback::Manual => None,
        };
        Ok(Group { core, writeback })
    }

    /// Member `index`.
    ///
    /// # Panics
    /// If there is no such member (see [`Group::len`]).
    pub fn segment(&self, index: usize) -> &Segment {
        &self.core.members[index]
    }

    /// The members, in the order given to [`Group::open`].
    pub fn segments(&self) -> &[Segment] {
        &self.core.members
    }

    /// The number of members.
    pub fn len(&self) -> usize {
        self.core.members.len()
    }

    /// Always `false`: a group has at least one member.
    pub fn is_empty(&self) -> bool {
        self.core.members.is_empty()
    }

    /// The coordinator file.
    pub fn coordinator(&self) -> &Path {
        self.core.coordinator.path()
    }

    /// Starts a transaction of the group. It joins a member the first time
    /// [`GroupTransaction::on`] is called for it. Do not run two at once on one thread
    /// (nor call [`Group::checkpoint`] while this thread has one): a group checkpoint
    /// waits for the running ones.
    ///
    /// # Errors
    /// None today; the signature leaves room.
    pub fn begin(&self) -> Result<GroupTransaction<'_>> {
        let shared = self.core.shared();
        Ok(GroupTransaction {
            parts: (0..self.core.members.len()).map(|_| None).collect(),
            joined: Vec::new(),
            tagged: Vec::new(),
            last: None,
            slot: 0,
            txn: self.core.next_txn.fetch_add(1, Ordering::Relaxed),
            group: self,
            _shared: shared,
        })
    }

    /// Runs `f` in a transaction of the group: commits if it returns `Ok`, aborts if it
    /// returns `Err` or panics; runs it again after a conflict, as
    /// [`Segment::transaction`] does (with the first member's `Options::retries`).
    ///
    /// # Errors
    /// `f`'s error, or a vista error from begin or commit.
    pub fn transaction<T, E>(
        &self,
        f: impl FnMut(&mut GroupTransaction<'_>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E>
    where
        E: From<Error>,
    {
        crate::retry::run(
            self.core.members[0].retries(),
            |slot| {
                *slot = Some(self.begin()?);
                Ok(())
            },
            f,
        )
    }

    /// Makes every member durable on disk at once: each member's dirty pages are
    /// sealed in its journal for a new epoch (synced), one synced write of the epoch to
    /// the coordinator commits them all, then each member installs its pages. A power
    /// loss at any point leaves every member at the previous group checkpoint or every
    /// member at this one. Lifts the members' fences. Waits for the group's running
    /// transactions to end, and holds new ones back until it is done.
    ///
    /// # Errors
    /// [`Error::Poisoned`]; [`Error::CheckpointBusy`] (a transaction of the group, or a
    /// member's own, outlasted the checkpoint wait: the members prepared so far give
    /// their pages back, nothing is poisoned; try again). I/O errors: writing a member's batch poisons that
    /// member (the others give their pages back); writing the decision poisons every
    /// member; installing after the decision poisons that member. Reopen a poisoned
    /// member: it finds the checkpoint committed or not, as the coordinator says, like
    /// every other member.
    pub fn checkpoint(&self) -> Result<()> {
        self.core.checkpoint()
    }

    /// Takes a final group checkpoint and closes the members, reporting errors.
    ///
    /// # Errors
    /// As [`Group::checkpoint`] and [`Segment::close`].
    pub fn close(mut self) -> Result<()> {
        if let Some(w) = self.writeback.take() {
            w.stop();
        }
        self.core.checkpoint()?;
        let core = Arc::get_mut(&mut self.core).expect("the writeback thread has ended");
        for m in std::mem::take(&mut core.members) {
            m.close()?;
        }
        Ok(())
    }
}

impl Core {
    /// The shared hold of `order` a transaction of the group keeps while it runs, taken
    /// once no group checkpoint is trying to take it exclusively.
    fn shared(&self) -> RwLockReadGuard<'_, ()> {
        if self.closing.load(Ordering::SeqCst) > 0 {
            let (lock, cv) = &self.reopened;
            let mut g = lock.lock().unwrap_or_else(PoisonError::into_inner);
            while self.closing.load(Ordering::SeqCst) > 0 {
                // Rechecked at least every millisecond: a wake-up missed between the
                // check and the wait costs at most that.
                g = cv
                    .wait_timeout(g, Duration::from_millis(1))
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        self.order.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// `order` held exclusively, once the running transactions of the group have ended;
    /// [`Error::CheckpointBusy`] if they have not within the checkpoint wait.
    fn exclusive(&self) -> Result<RwLockWriteGuard<'_, ()>> {
        self.closing.fetch_add(1, Ordering::SeqCst);
        let deadline = Instant::now().checked_add(self.wait);
        let backoff = crossbeam_utils::Backoff::new();
        let taken = loop {
            match self.order.try_write() {
                Ok(g) => break Ok(g),
                Err(TryLockError::Poisoned(p)) => break Ok(p.into_inner()),
                Err(TryLockError::WouldBlock) => {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break Err(Error::CheckpointBusy { waited: self.wait });
                    }
                    if backoff.is_completed() {
                        std::thread::sleep(Duration::from_micros(100));
                    } else {
                        backoff.snooze();
                    }
                }
            }
        };
        // Held (new transactions now wait for the lock itself) or given up: either way
        // new transactions need not wait for this checkpoint any more.
        self.closing.fetch_sub(1, Ordering::SeqCst);
        let (lock, cv) = &self.reopened;
        drop(lock.lock().unwrap_or_else(PoisonError::into_inner));
        cv.notify_all();
        taken
    }

    /// Makes every member durable on disk at once: each member's dirty pages are
    /// sealed in its journal for a new epoch (synced), one synced write of the epoch to
    /// the coordinator commits them all, then each member installs its pages. A power
    /// loss at any point leaves every member at the previous group checkpoint or every
    /// member at this one. Lifts the members' fences. Waits for the group's running
    /// transactions to end, and holds new ones back until it is done.
    ///
    /// # Errors
    /// [`Error::Poisoned`]; [`Error::CheckpointBusy`] (a transaction of the group, or a
    /// member's own, outlasted the checkpoint wait: the members prepared so far give
    /// their pages back, nothing is poisoned; try again). I/O errors: writing a member's batch poisons that
    /// member (the others give their pages back); writing the decision poisons every
    /// member; installing after the decision poisons that member. Reopen a poisoned
    /// member: it finds the checkpoint committed or not, as the coordinator says, like
    /// every other member.
    fn checkpoint(&self) -> Result<()> {
        let _exclusive = self.exclusive()?;
        for m in &self.members {
            m.poison_state().check()?;
        }
        let epoch = self.coordinator.next_epoch()?;
        let mut prepared = Vec::with_capacity(self.members.len());
        for m in &self.members {
            match m.shared().prepare_group(epoch, self.coordinator.path()) {
                Ok(p) => prepared.push(p),
                Err(e) => {
                    // No decision was attempted: the members prepared so far take their
                    // pages back (a failure to do so poisons that member).
                    for p in prepared.into_iter().rev() {
                        let _ = p.abandon();
                    }
                    return Err(e.into());
                }
            }
        }
        crash_point!("vista.xseg.checkpoint_prepared");
        if prepared.iter().all(|p| p.pages() == 0) {
            // Nothing dirty anywhere: every member's disk already holds all it has (a
            // fenced member's changes were written back by an earlier group
            // checkpoint), so there is nothing to decide.
            drop(prepared);
            return self.unfence();
        }
        #[cfg(feature = "mutants")]
        if crate::mutant::is("xseg-install-undecided") {
            // Mutant: the members install without the group's decision (and are then
            // unfenced, as after a decided checkpoint).
            for p in prepared {
                p.finish()?;
            }
            return self.unfence();
        }
        if let Err(e) = self.coordinator.decide(epoch) {
            for m in &self.members {
                m.poison_state()
                    .set(format!("a group checkpoint's decision failed: {e}"));
            }
            return Err(e.into());
        }
        crash_point!("vista.xseg.checkpoint_decided");
        let mut first = None;
        for p in prepared {
            if let Err(e) = p.finish() {
                first.get_or_insert_with(|| Error::from(e));
            }
        }
        if let Some(e) = first {
            return Err(e);
        }
        self.unfence()
    }

    /// Lifts every member's fence: its `.fence` file first, then the flag.
    fn unfence(&self) -> Result<()> {
        for m in &self.members {
            if m.is_fenced() {
                match std::fs::remove_file(fence_path(m.path())) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::Io {
                            context: format!("remove {}", fence_path(m.path()).display()),
                            source: e,
                        })
                    }
                }
                m.shared().set_fenced(false);
            }
        }
        Ok(())
    }

    /// Fences member `m` (before its lane gets a group record).
    fn fence(&self, m: usize) -> Result<()> {
        let seg = &self.members[m];
        if !seg.is_fenced() {
            let path = fence_path(seg.path());
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| Error::Io {
                    context: format!("create {}", path.display()),
                    source: e,
                })?;
            seg.shared().set_fenced(true);
        }
        Ok(())
    }
}

impl Drop for Group {
    /// Takes a final group checkpoint, ignoring its error (the members stay fenced and
    /// their commits stay in the memory images; [`Group::close`] reports it).
    fn drop(&mut self) {
        if let Some(w) = self.writeback.take() {
            w.stop();
        }
        if !self.core.members.is_empty() {
            let _ = self.core.checkpoint();
        }
    }
}

/// Whether the transaction a group record names was decided committed.
pub(crate) fn decided(
    tag: &GroupTag,
    faults: &rio_cache::Faults,
) -> std::result::Result<bool, String> {
    let c =
        Coordinator::open(&tag.coordinator, false, faults.clone()).map_err(|e| e.to_string())?;
    Ok(c.slot(tag.slot).map_err(|e| e.to_string())? == tag.txn)
}

/// A transaction of a [`Group`]: an ordinary [`Transaction`] in each member it joined,
/// committed all together or not at all. [`GroupTransaction::commit`] consumes it;
/// dropping it aborts every member's part.
#[derive(Debug)]
pub struct GroupTransaction<'g> {
    /// Dropped first: each part aborts if it did not commit.
    parts: Vec<Option<Transaction<'g>>>,
    joined: Vec<usize>,
    /// By member: its group record is published. Empty until a second member joins
    /// (a transaction on one member never allocates it).
    tagged: Vec<bool>,
    last: Option<usize>,
    slot: u64,
    txn: u64,
    group: &'g Group,
    _shared: RwLockReadGuard<'g, ()>,
}

impl<'g> GroupTransaction<'g> {
    /// The transaction's part in member `member`, begun (in a free lane of that
    /// member) the first time it is asked for. Use it as any [`Transaction`]: its
    /// changes commit or abort with the whole group transaction.
    ///
    /// # Errors
    /// [`Error::NoSuchMember`]; as [`Segment::begin`] when the member is joined; as
    /// [`Transaction::set_range`] ([`Error::UndoLogFull`]) or an I/O error if its group
    /// record cannot be written (the member is then not joined; the transaction stays
    /// usable).
    pub fn on(&mut self, member: usize) -> Result<&mut Transaction<'g>> {
        let members = self.group.core.members.len();
        if member >= members {
            return Err(Error::NoSuchMember {
                index: member,
                members,
            });
        }
        if self.parts[member].is_none() {
            self.join(member)?;
        }
        self.last = Some(member);
        Ok(self.parts[member].as_mut().expect("joined above"))
    }

    fn join(&mut self, member: usize) -> Result<()> {
        let tx = self.group.core.members[member].begin()?;
        if self.joined.is_empty() {
            self.slot = self.group.core.bases[member] * SLOTS_PER_MEMBER + u64::from(tx.lane());
        }
        self.parts[member] = Some(tx);
        self.joined.push(member);
        if self.joined.len() < 2 {
            return Ok(());
        }
        if self.tagged.is_empty() {
            self.tagged = vec![false; self.parts.len()];
        }
        let tag = GroupTag {
            coordinator: self.group.core.coordinator.path().to_owned(),
            slot: self.slot,
            txn: self.txn,
        };
        for i in 0..self.joined.len() {
            let m = self.joined[i];
            if self.tagged[m] {
                continue;
            }
            let tagged = self
                .group
                .core
                .fence(m)
                .and_then(|()| self.parts[m].as_mut().expect("joined").tag(&tag));
            match tagged {
                Ok(()) => self.tagged[m] = true,
                Err(e) => {
                    // The new member leaves again (its part aborts: it changed nothing).
                    self.joined.pop();
                    self.parts[member] = None;
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// The members this transaction joined, in the order it joined them.
    pub fn members(&self) -> &[usize] {
        &self.joined
    }

    /// Whether the last call on the member most recently reached through
    /// [`GroupTransaction::on`] failed with a conflict (the rule by which
    /// [`Group::transaction`] runs its closure again).
    fn last_call_conflicted(&self) -> bool {
        self.last
            .and_then(|m| self.parts[m].as_ref())
            .is_some_and(Transaction::last_call_conflicted)
    }

    /// Commits every member's part, all or nothing: the coordinator's decision, then
    /// each member's commit store. A transaction that joined one member commits as an
    /// ordinary one. From the decision on, the transaction survives any crash of the
    /// process; it survives power loss once a [`Group::checkpoint`] has followed (see
    /// [`GroupTransaction::commit_durable`]).
    ///
    /// # Errors
    /// [`Error::Poisoned`] if a member is poisoned, or an I/O error writing the
    /// decision: every part is rolled back and nothing survives. An error from a
    /// member's commit store after the decision: the transaction stands (it is
    /// decided), that member is poisoned, and reopening it keeps the changes; until the
    /// group is reopened, the first member's lane that this transaction used is not
    /// used again (its coordinator slot holds the decision the failed member needs).
    pub fn commit(mut self) -> Result<()> {
        self.commit_in_place()
    }

    /// [`GroupTransaction::commit`], leaving the emptied transaction to drop.
    fn commit_in_place(&mut self) -> Result<()> {
        if self.joined.len() < 2 {
            // One member (or none): an ordinary commit, nothing to decide.
            return self
                .joined
                .first()
                .and_then(|&m| self.parts[m].take())
                .map_or(Ok(()), Transaction::commit);
        }
        let parts: Vec<Transaction<'g>> = self
            .joined
            .iter()
            .map(|&m| self.parts[m].take().expect("joined"))
            .collect();
        for p in &parts {
            // Rolled back (the parts drop) if a member cannot commit: the segment or its
            // cache is poisoned (a checkpoint of it failed while this transaction ran).
            p.check_poisoned()?;
        }
        if parts.iter().any(Transaction::in_unfinished_call) {
            return Err(Error::CallPanicked); // the parts drop: rolled back
        }
        crash_point!("vista.xseg.prepared");
        #[cfg(feature = "mutants")]
        if crate::mutant::is("xseg-members-first") {
            // Mutant: the members commit before the decision.
            for p in parts {
                p.commit_decided()?;
                crash_point!("vista.xseg.member_committed");
            }
            self.group.core.coordinator.set_slot(self.slot, self.txn)?;
            crash_point!("vista.xseg.decided");
            return Ok(());
        }
        // The decision. If it fails the slot is unchanged: the parts roll back.
        self.group.core.coordinator.set_slot(self.slot, self.txn)?;
        crash_point!("vista.xseg.decided");
        // The slot is named by the first member's lane: that part stores its commit
        // last, so its lane (and with it the slot) is not handed to another transaction
        // across segments while a member still needs the decision. A member whose store
        // fails keeps needing it until it is reopened: the first member's lane is then
        // retired for this handle's life.
        let mut parts = parts.into_iter();
        let mut owner = parts.next().expect("two or more parts");
        let mut first = None;
        for p in parts {
            if let Err(e) = p.commit_decided() {
                first.get_or_insert(e);
            }
            crash_point!("vista.xseg.member_committed");
        }
        if first.is_some() {
            owner.retire_lane();
        }
        if let Err(e) = owner.commit_decided() {
            first.get_or_insert(e);
        }
        crash_point!("vista.xseg.member_committed");
        first.map_or(Ok(()), Err)
    }

    /// Commits, then takes a group checkpoint: on return the transaction survives
    /// power loss.
    ///
    /// # Errors
    /// As [`GroupTransaction::commit`]; as [`Group::checkpoint`] (the commit then
    /// stands).
    pub fn commit_durable(self) -> Result<()> {
        let group = self.group;
        self.commit()?;
        group.checkpoint()
    }

    /// Aborts every member's part (newest member first).
    ///
    /// # Errors
    /// The first error of a member's [`Transaction::abort`] (that member is then
    /// poisoned).
    pub fn abort(mut self) -> Result<()> {
        let mut first = Ok(());
        for &m in self.joined.iter().rev() {
            if let Some(p) = self.parts[m].take() {
                if let Err(e) = p.abort() {
                    if first.is_ok() {
                        first = Err(e);
                    }
                }
            }
        }
        first
    }
}

/// The group's writeback thread: a group checkpoint every interval while a member is
/// fenced (a fenced member's own checkpoints are refused, so without it a transaction
/// across segments would reach the disk only at [`Group::checkpoint`] or close).
#[derive(Debug)]
struct GroupWriteback {
    stop: Arc<(Mutex<bool>, Condvar)>,
    handle: JoinHandle<()>,
}

impl GroupWriteback {
    fn spawn(core: Arc<Core>, interval: Duration) -> Result<GroupWriteback> {
        // As the members' writeback: a zero interval would spin.
        let interval = interval.max(rio_cache::SHORTEST_INTERVAL);
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let signal = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("vista-group-writeback".into())
            .spawn(move || loop {
                let (lock, cv) = &*signal;
                let stopped = lock.lock().unwrap_or_else(PoisonError::into_inner);
                let (stopped, _) = cv
                    .wait_timeout_while(stopped, interval, |s| !*s)
                    .unwrap_or_else(PoisonError::into_inner);
                if *stopped {
                    return;
                }
                drop(stopped);
                if core.members.iter().any(Segment::is_fenced) {
                    // A failure poisons the members it concerns (they report it on
                    // their next call) or, for `CheckpointBusy`, leaves the next
                    // interval to try again.
                    let _ = core.checkpoint();
                }
            })
            .map_err(|e| Error::Io {
                context: "spawn the group writeback thread".into(),
                source: e,
            })?;
        Ok(GroupWriteback { stop, handle })
    }

    /// Asks the thread to stop and waits for it (a checkpoint it is taking ends first).
    fn stop(self) {
        let (lock, cv) = &*self.stop;
        *lock.lock().unwrap_or_else(PoisonError::into_inner) = true;
        cv.notify_all();
        // A panic in the thread was reported by the panic hook; nothing more to do.
        let _ = self.handle.join();
    }
}

impl crate::retry::Attempt for GroupTransaction<'_> {
    fn commit(&mut self) -> Result<()> {
        self.commit_in_place()
    }
    fn abort(self) -> Result<()> {
        GroupTransaction::abort(self)
    }
    fn last_call_conflicted(&self) -> bool {
        GroupTransaction::last_call_conflicted(self)
    }
}

/// A member's id in its coordinator's record: the hash of the segment's resolved path
/// (`rio_cache::path_hash`, as the memory image's name). A segment moved or copied is
/// another member, with slots of its own.
fn member_id(path: &Path) -> u64 {
    rio_cache::path_hash(path)
}
