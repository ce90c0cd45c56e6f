//! Group checkpoints: one decision, in a small *coordinator* file, makes the checkpoints
//! of several caches durable together.
//!
//! Each member's checkpoint is prepared as usual (its journal body written and synced),
//! but sealed with a *group commit record* that names the coordinator and an epoch
//! instead of the ordinary commit record: the batch is committed if and only if the
//! coordinator has decided that epoch. The group's commit point is one synced write of
//! the epoch to the coordinator ([`Coordinator::decide`]); the members then install
//! their batches. An open that finds a group-sealed journal asks the coordinator before
//! it acts, and refuses ([`crate::Error::GroupUnresolved`], nothing written) if it
//! cannot read it.
//!
//! The coordinator file, little-endian:
//!
//! ```text
//! 0     magic "RIOGROUP"  8 version u32  (rest of the first 64 bytes zero)
//! 64    epoch slot 0: epoch u64, crc32 of the 8 epoch bytes u32 (16 bytes)
//! 128   epoch slot 1: likewise
//! 192   members: count u32, crc32 of the count and the ids u32, then count ids u64
//!       (the layer above's names of the members that ever used the file, in the order
//!       they first did; a member's index here is its *slot base*; count 0: none yet)
//! 4096  transaction slots: u64 each, for the layer above (slot k at 4096 + 8k)
//! ```
//!
//! A group holds its coordinator locked (`flock`, exclusive) while it is open
//! ([`Coordinator::lock`]), so a second group cannot use the file at the same time; an
//! open that only reads decisions (recovery) does not lock.
//!
//! Epochs are unique (never reused, also after an epoch that was prepared but never
//! decided) and increase. A decision overwrites the slot holding the older of the two
//! epochs, so a write torn by power loss leaves the other slot: the two intact slots
//! hold the last two decided epochs, and a batch sealed for epoch `e` is committed if
//! and only if a slot holds `e` exactly. (A group checkpoint needs every member open,
//! and opening a member resolves its sealed batch, so no batch waits for an epoch two
//! decisions old.) The transaction slots
//! are written without a sync: they decide transactions for process crashes only (see
//! vista's `docs/design.md`, "Transactions across segments").

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::faults::{Faults, IoFile, IoOp};

/// The crash points of group checkpoints and of installing a journal batch in place
/// (reached only by programs that use group checkpoints, and by the open that finishes
/// one, or a grow, that a crash cut off; a checkpoint's own are in
/// [`crate::CRASH_POINTS`]).
pub const GROUP_CRASH_POINTS: &[&str] = &[
    "rio.group.body_written",
    "rio.group.body_synced",
    "rio.group.sealed_written",
    "rio.group.prepared",
    "rio.group.decision_written",
    "rio.group.decided",
    "rio.checkpoint.install_partial",
    "rio.checkpoint.installed",
    "rio.checkpoint.disk_synced",
    "rio.checkpoint.journal_cleared",
    "rio.recover.install_partial",
    "rio.recover.installed",
    "rio.recover.disk_synced",
];

const MAGIC: [u8; 8] = *b"RIOGROUP";
const VERSION: u32 = 1;
const EPOCH_SLOTS_AT: u64 = 64;
const EPOCH_SLOT_LEN: u64 = 64;
const TX_SLOTS_AT: u64 = 4096;
const MEMBERS_AT: u64 = 192;
/// The most member ids the record holds (it ends where the transaction slots begin).
pub const MAX_MEMBER_IDS: usize = ((TX_SLOTS_AT - MEMBERS_AT - 8) / 8) as usize;

/// An open coordinator file (see the module documentation).
#[derive(Debug)]
pub struct Coordinator {
    file: File,
    path: PathBuf,
    faults: Faults,
}

impl Coordinator {
    /// Opens the coordinator at `path`, creating it (durably: file and directory
    /// synced) if `create` and it is absent.
    ///
    /// # Errors
    /// [`Error::Corrupt`] if the file is not a coordinator; I/O errors.
    pub fn open(path: impl AsRef<Path>, create: bool, faults: Faults) -> Result<Coordinator> {
        let path = path.as_ref().to_owned();
        let existed = path.exists();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(&path)
            .context(|| format!("open {}", path.display()))?;
        let c = Coordinator { file, path, faults };
        let len = c
            .file
            .metadata()
            .context(|| format!("stat {}", c.path.display()))?
            .len();
        if len == 0 && create {
            let mut h = [0u8; 64];
            h[0..8].copy_from_slice(&MAGIC);
            h[8..12].copy_from_slice(&VERSION.to_le_bytes());
            c.write_at(&h, 0)?;
            c.sync()?;
            if !existed {
                let dir = c
                    .path
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty())
                    .unwrap_or_else(|| Path::new("."));
                c.faults
                    .check(IoOp::Sync, IoFile::Coordinator)
                    .and_then(|()| File::open(dir))
                    .and_then(|d| d.sync_all())
                    .context(|| format!("fsync directory {}", dir.display()))?;
            }
        }
        c.check_header()?;
        Ok(c)
    }

    fn check_header(&self) -> Result<()> {
        let mut h = [0u8; 12];
        // A failed read is an I/O error, not a file of another kind: only a file too
        // short for the header is one.
        let read = self
            .faults
            .check(IoOp::Read, IoFile::Coordinator)
            .and_then(|()| self.file.read_exact_at(&mut h, 0));
        match read {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => h = [0; 12],
            Err(e) => return Err(e).context(|| format!("read {}", self.path.display())),
        }
        let ok = h[0..8] == MAGIC && u32::from_le_bytes(h[8..12].try_into().expect("4")) == VERSION;
        if ok {
            Ok(())
        } else {
            Err(Error::Corrupt {
                path: self.path.clone(),
                reason: "not a group coordinator (bad magic or version)".into(),
            })
        }
    }

    /// The coordinator file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Locks the file (exclusively, for as long as this value lives): the holder is the
    /// one group that uses it.
    ///
    /// # Errors
    /// [`Error::Locked`] if another holder has it (in this process or another); I/O
    /// errors.
    pub fn lock(&self) -> Result<()> {
        if crate::sys::try_lock_exclusive(&self.file)
            .context(|| format!("lock {}", self.path.display()))?
        {
            Ok(())
        } else {
            Err(Error::locked(&self.path))
        }
    }

    /// The member ids recorded by [`Coordinator::set_members`], or `None` if there is
    /// no intact record (a coordinator made before the record existed, or a record torn
    /// by a power loss while it was rewritten).
    ///
    /// # Errors
    /// I/O errors.
    pub fn members(&self) -> Result<Option<Vec<u64>>> {
        let mut b = vec![0u8; (TX_SLOTS_AT - MEMBERS_AT) as usize];
        match self
            .faults
            .check(IoOp::Read, IoFile::Coordinator)
            .and_then(|()| self.file.read_exact_at(&mut b, MEMBERS_AT))
        {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e).context(|| format!("read {}", self.path.display())),
        }
        let n = u32::from_le_bytes(b[0..4].try_into().expect("4")) as usize;
        if n == 0 || n > MAX_MEMBER_IDS {
            return Ok(None);
        }
        let mut hashed = b[0..4].to_vec();
        hashed.extend_from_slice(&b[8..8 + 8 * n]);
        if crc32fast::hash(&hashed) != u32::from_le_bytes(b[4..8].try_into().expect("4")) {
            return Ok(None);
        }
        Ok(Some(
            b[8..8 + 8 * n]
                .chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().expect("8")))
                .collect(),
        ))
    }

    /// The slot base of each member id: its index among every member that ever used the
    /// file, ids seen for the first time appended (and the record synced) before this
    /// returns. Two members never share a base, so two groups that use the file one
    /// after the other (or one group whose members were moved or copied) never write
    /// each other's slots. A record that is torn or absent (an older coordinator) starts
    /// afresh.
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] once more than [`MAX_MEMBER_IDS`] members have used the
    /// file; I/O errors.
    pub fn member_bases(&self, ids: &[u64]) -> Result<Vec<u64>> {
        let old = self.members()?.unwrap_or_default();
        let mut all = old.clone();
        for id in ids {
            if !all.contains(id) {
                all.push(*id);
            }
        }
        if all.len() != old.len() {
            self.set_members(&all)?;
        }
        Ok(ids
            .iter()
            .map(|id| all.iter().position(|x| x == id).expect("recorded") as u64)
            .collect())
    }

    /// Records the member ids and syncs.
    fn set_members(&self, ids: &[u64]) -> Result<()> {
        if ids.is_empty() || ids.len() > MAX_MEMBER_IDS {
            return Err(Error::InvalidOptions(format!(
                "coordinator {} has slots for {MAX_MEMBER_IDS} members over its life, all \
                 used: give the group a new coordinator file once every member was opened \
                 since its group last ran",
                self.path.display()
            )));
        }
        let mut b = vec![0u8; 8 + 8 * ids.len()];
        b[0..4].copy_from_slice(&(ids.len() as u32).to_le_bytes());
        for (i, id) in ids.iter().enumerate() {
            b[8 + 8 * i..16 + 8 * i].copy_from_slice(&id.to_le_bytes());
        }
        let mut hashed = b[0..4].to_vec();
        hashed.extend_from_slice(&b[8..]);
        b[4..8].copy_from_slice(&crc32fast::hash(&hashed).to_le_bytes());
        self.write_at(&b, MEMBERS_AT)?;
        self.sync()
    }

    fn write_at(&self, bytes: &[u8], at: u64) -> Result<()> {
        self.faults
            .check(IoOp::Write, IoFile::Coordinator)
            .and_then(|()| self.file.write_all_at(bytes, at))
            .context(|| format!("write {}", self.path.display()))
    }

    fn sync(&self) -> Result<()> {
        self.faults
            .check(IoOp::Sync, IoFile::Coordinator)
            .and_then(|()| self.file.sync_data())
            .context(|| format!("fsync {}", self.path.display()))
    }

    /// The last decided epoch (0 if none).
    ///
    /// # Errors
    /// I/O errors.
    pub fn decided(&self) -> Result<u64> {
        Ok(self.slots()?.into_iter().max().unwrap_or(0))
    }

    /// The epochs of the two slots (0 for an empty or torn one).
    fn slots(&self) -> Result<[u64; 2]> {
        let mut out = [0; 2];
        for i in 0..2 {
            let mut s = [0u8; 12];
            match self
                .faults
                .check(IoOp::Read, IoFile::Coordinator)
                .and_then(|()| {
                    self.file
                        .read_exact_at(&mut s, EPOCH_SLOTS_AT + i * EPOCH_SLOT_LEN)
                }) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => continue,
                Err(e) => {
                    return Err(e).context(|| format!("read {}", self.path.display()));
                }
            }
            let epoch = u64::from_le_bytes(s[0..8].try_into().expect("8"));
            let crc = u32::from_le_bytes(s[8..12].try_into().expect("4"));
            if epoch != 0 && crc32fast::hash(&s[0..8]) == crc {
                out[i as usize] = epoch;
            }
        }
        Ok(out)
    }

    /// Whether `epoch` is decided.
    ///
    /// # Errors
    /// I/O errors.
    pub fn is_decided(&self, epoch: u64) -> Result<bool> {
        Ok(epoch != 0 && self.slots()?.contains(&epoch))
    }

    /// A new epoch: above every decided one and above the clock (so an epoch that was
    /// prepared and never decided is never used again).
    ///
    /// # Errors
    /// I/O errors.
    pub fn next_epoch(&self) -> Result<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2));
        Ok(self.decided()?.max(now) + 1)
    }

    /// Decides `epoch` (from [`Coordinator::next_epoch`]): writes it over the older slot
    /// and syncs. When this returns, every member batch sealed for `epoch` is committed.
    ///
    /// # Errors
    /// I/O errors (the epoch is then undecided as far as the caller knows: a later open
    /// may find it decided or not, and acts accordingly on every member alike).
    pub fn decide(&self, epoch: u64) -> Result<()> {
        let mut s = [0u8; 12];
        s[0..8].copy_from_slice(&epoch.to_le_bytes());
        let crc = crc32fast::hash(&s[0..8]);
        s[8..12].copy_from_slice(&crc.to_le_bytes());
        let slots = self.slots()?;
        let older = u64::from(slots[1] < slots[0]);
        self.write_at(&s, EPOCH_SLOTS_AT + older * EPOCH_SLOT_LEN)?;
        crash_point::crash_point!("rio.group.decision_written");
        self.sync()?;
        crash_point::crash_point!("rio.group.decided");
        Ok(())
    }

    /// Transaction slot `k` (0 if never written).
    ///
    /// # Errors
    /// I/O errors.
    pub fn slot(&self, k: u64) -> Result<u64> {
        let mut s = [0u8; 8];
        match self
            .faults
            .check(IoOp::Read, IoFile::Coordinator)
            .and_then(|()| self.file.read_exact_at(&mut s, TX_SLOTS_AT + 8 * k))
        {
            Ok(()) => Ok(u64::from_le_bytes(s)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(e).context(|| format!("read {}", self.path.display())),
        }
    }

    /// Writes transaction slot `k` with one `pwrite` of 8 aligned bytes and no sync: it
    /// outlives the process (the kernel holds it), not a power loss.
    ///
    /// # Errors
    /// I/O errors (the slot is then unchanged).
    pub fn set_slot(&self, k: u64, value: u64) -> Result<()> {
        self.write_at(&value.to_le_bytes(), TX_SLOTS_AT + 8 * k)
    }
}

/// Whether a batch sealed for `epoch` with the coordinator at `path` is committed.
pub(crate) fn resolve(path: &Path, epoch: u64, faults: &Faults) -> Result<bool> {
    let c = Coordinator::open(path, false, faults.clone())?;
    if c.is_decided(epoch)? {
        // Committed: the decision is made durable before anything acts on it (a write
        // that a process crash left unsynced in the page cache).
        c.sync()?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_and_slots_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("g");
        let c = Coordinator::open(&p, true, Faults::none()).unwrap();
        assert_eq!(c.decided().unwrap(), 0);
        c.decide(1).unwrap();
        c.decide(2).unwrap();
        c.decide(5).unwrap();
        assert_eq!(c.decided().unwrap(), 5);
        assert!(c.next_epoch().unwrap() > 5);
        // 1 was overwritten; 2 and 5 stand; 3 was never decided.
        assert!(!c.is_decided(1).unwrap() && !c.is_decided(3).unwrap());
        assert!(c.is_decided(2).unwrap() && c.is_decided(5).unwrap());
        // A torn slot (epoch 5, written over 1 in slot 0) leaves epoch 2 decided.
        c.file.write_all_at(&[0xff], EPOCH_SLOTS_AT + 3).unwrap();
        assert_eq!(c.decided().unwrap(), 2);
        assert_eq!(c.slot(7).unwrap(), 0);
        c.set_slot(7, 99).unwrap();
        assert_eq!(c.slot(7).unwrap(), 99);
        assert!(resolve(&p, 2, &Faults::none()).unwrap());
        assert!(!resolve(&p, 5, &Faults::none()).unwrap());
        std::fs::write(dir.path().join("x"), b"not a coordinator").unwrap();
        assert!(matches!(
            Coordinator::open(dir.path().join("x"), false, Faults::none()),
            Err(Error::Corrupt { .. })
        ));
    }
}

/// A group member's checkpoint, prepared: its batch is in the journal, sealed for an
/// epoch, and synced. [`Prepared::finish`] installs it once the coordinator has decided
/// the epoch. Checkpoints of the cache wait meanwhile. Dropped unfinished, it poisons
/// the cache: whether the batch is committed is then the coordinator's to say, at the
/// next open.
#[derive(Debug)]
pub struct Prepared<'a> {
    inner: &'a crate::state::Inner,
    disk_seq: std::sync::MutexGuard<'a, u64>,
    batch: Option<crate::journal::Batch>,
    started: std::time::Instant,
    done: bool,
}

impl<'a> Prepared<'a> {
    pub(crate) fn new(
        inner: &'a crate::state::Inner,
        disk_seq: std::sync::MutexGuard<'a, u64>,
        batch: Option<crate::journal::Batch>,
        started: std::time::Instant,
    ) -> Prepared<'a> {
        Prepared {
            inner,
            disk_seq,
            batch,
            started,
            done: false,
        }
    }

    /// Pages in the prepared batch (0: nothing to write).
    pub fn pages(&self) -> usize {
        self.batch.as_ref().map_or(0, crate::journal::Batch::len)
    }

    /// Installs the batch in the disk image and clears the journal. Call it only after
    /// the coordinator decided the batch's epoch.
    ///
    /// # Errors
    /// I/O errors, which poison the cache (the next open installs the batch: its epoch
    /// is decided).
    pub fn finish(mut self) -> Result<()> {
        self.done = true;
        match self.batch.take() {
            None => Ok(()),
            Some(batch) => self
                .inner
                .finish_group(&batch, &mut self.disk_seq, self.started),
        }
    }
}

impl Prepared<'_> {
    /// Gives the batch back, for a group checkpoint that will never decide its epoch (no
    /// decision was attempted: another member failed to prepare). Its pages are marked
    /// dirty again (so the next checkpoint takes them) before they leave the in-flight
    /// map, and the journal, whose sealed record no decision will ever commit, is
    /// truncated. The cache is not poisoned.
    ///
    /// # Errors
    /// I/O errors truncating the journal, which poison the cache (the next open discards
    /// the batch: its epoch is never decided).
    pub fn abandon(mut self) -> Result<()> {
        self.done = true;
        match self.batch.take() {
            None => Ok(()),
            Some(batch) => self.inner.abandon_group(&batch),
        }
    }
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        if !self.done && self.batch.is_some() {
            self.inner
                .set_poison("a group checkpoint was abandoned after it was prepared".into());
        }
    }
}
