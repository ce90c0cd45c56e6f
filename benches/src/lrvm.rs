//! LRVM: the project's re-implementation of Lightweight Recoverable Virtual Memory, the
//! redo-log baseline of Lowell and Chen's comparison.
//!
//! One log and one data segment file per open, in a fresh directory: under the scratch
//! directory for `rvm-*` (the log's `fdatasync` goes to the disk), under `/dev/shm` for
//! `rvm-rio-*` (the paper's "RVM on Rio": the same code with its files in memory, so a
//! sync costs nothing and every write is a memory copy). The whole segment is one mapped
//! region. A benchmark transaction is `begin_transaction(restore mode)`, per write
//! `set_range` + copy into the returned memory, reads straight from the region memory,
//! and `end_transaction(commit mode)`.
//!
//! **Restore modes.** `restore` keeps RVM's in-memory undo copy, so a failed body is
//! undone with `abort_transaction`. `no-restore` is RVM's promise never to abort (no undo
//! copy); if a body fails anyway the transaction cannot be undone, so the adapter refuses
//! every later transaction (its memory holds uncommitted bytes) and says so. The
//! workloads never abort, so this never happens in a measurement.
//!
//! **Log size.** [`LOG_LEN`] = 4 MiB for every workload. It must hold the largest
//! transaction (the workloads' 256 KiB load transactions; 64 KiB while measuring) with
//! room to keep committing while an epoch truncation applies the older half
//! (concurrent forward processing), and it is small enough that truncation is part of
//! the steady state: an epoch starts whenever 2 MiB of redo records are in the log (RVM's
//! default threshold, half the record area), that is about every 37,000 8 B transactions
//! (56 B records), 10,000 debit-credit transactions (208 B records) or 32 64 KiB ones.
//! The suite reports the truncations that ran during each measurement (`counters` in the
//! JSON results). Other tunables are RVM's defaults (64 KiB no-flush buffer, background
//! truncation).

use std::path::{Path, PathBuf};

use ::lrvm::{CommitMode, RestoreMode};
use anyhow::{bail, Context, Result};

use crate::engine::{Body, Engine, Layout, Txn};

/// Bytes of each log file, status blocks included.
pub const LOG_LEN: u64 = 4 << 20;

/// Where `rvm-rio-*` keeps its files.
pub const RIO_DIR: &str = "/dev/shm";

/// An LRVM instance with one region covering the benchmark segment.
pub struct Rvm {
    /// `None` only while reopening.
    instance: Option<::lrvm::Rvm>,
    region: ::lrvm::RegionId,
    len: u64,
    restore: RestoreMode,
    commit: CommitMode,
    log: PathBuf,
    data: PathBuf,
    /// Why the adapter refuses transactions (a failed no-restore body).
    broken: Option<String>,
    // Dropped after `rvm` (declaration order), so the files outlive the instance.
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Rvm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rvm")
            .field("log", &self.log)
            .field("restore", &self.restore)
            .field("commit", &self.commit)
            .finish_non_exhaustive()
    }
}

impl Rvm {
    /// Creates a [`LOG_LEN`] log and a zeroed data segment of `layout.len()` bytes in a
    /// fresh directory under `parent`, and maps the segment.
    ///
    /// # Errors
    /// LRVM's or the file system's error.
    pub fn open(
        layout: &Layout,
        parent: &Path,
        restore: RestoreMode,
        commit: CommitMode,
    ) -> Result<Rvm> {
        let dir = tempfile::Builder::new().prefix("rvm-").tempdir_in(parent)?;
        let log = dir.path().join("log");
        let data = dir.path().join("data");
        ::lrvm::create_log(&log, LOG_LEN, ::lrvm::CreateMode::Overwrite)
            .with_context(|| format!("creating the log {}", log.display()))?;
        let len = layout.len().max(1);
        let (rvm, region) = Self::start(&log, &data, len, ::lrvm::MapOptions::create_or_extend())?;
        Ok(Rvm {
            instance: Some(rvm),
            region,
            len,
            restore,
            commit,
            log,
            data,
            broken: None,
            _dir: dir,
        })
    }

    fn start(
        log: &Path,
        data: &Path,
        len: u64,
        map: ::lrvm::MapOptions,
    ) -> Result<(::lrvm::Rvm, ::lrvm::RegionId)> {
        let mut rvm = ::lrvm::Rvm::initialize(::lrvm::Options::new(log))
            .with_context(|| format!("initializing RVM on {}", log.display()))?;
        let region = rvm
            .map(&::lrvm::RegionSpec::new(data, 0, len), map)
            .with_context(|| format!("mapping {}", data.display()))?;
        Ok((rvm, region))
    }

    /// Closes the instance (flushing buffered commits) and starts a new one on the same
    /// files, which recovers from the log and maps the segment again: afterwards the region
    /// memory holds only what the log and the data segment file held. For tests.
    ///
    /// # Errors
    /// LRVM's error.
    pub fn reopen(&mut self) -> Result<()> {
        if let Some(rvm) = self.instance.take() {
            rvm.close().context("closing RVM")?;
        }
        let (rvm, region) = Self::start(
            &self.log,
            &self.data,
            self.len,
            ::lrvm::MapOptions::default(),
        )?;
        self.instance = Some(rvm);
        self.region = region;
        Ok(())
    }

    /// The instance's counters.
    pub fn stats(&self) -> ::lrvm::Stats {
        self.rvm().stats()
    }

    fn rvm(&self) -> &::lrvm::Rvm {
        self.instance
            .as_ref()
            .expect("the instance lives until drop")
    }
}

struct RvmTxn<'a> {
    rvm: &'a mut ::lrvm::Rvm,
    tid: ::lrvm::Tid,
    region: ::lrvm::RegionId,
}

impl Txn for RvmTxn<'_> {
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        let mem = self.rvm.region(self.region)?;
        let start = usize::try_from(off)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| mem.get(start..end))
            .with_context(|| format!("read {off}+{} outside the region", buf.len()))?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, off: u64, data: &[u8]) -> Result<()> {
        self.rvm
            .set_range(self.tid, self.region, off, data.len() as u64)?
            .copy_from_slice(data);
        Ok(())
    }
}

impl Engine for Rvm {
    fn transact(&mut self, body: &mut Body<'_>) -> Result<()> {
        if let Some(why) = &self.broken {
            bail!("refusing transactions: {why}");
        }
        let (region, restore, commit) = (self.region, self.restore, self.commit);
        let rvm = self
            .instance
            .as_mut()
            .expect("the instance lives until drop");
        let tid = rvm.begin_transaction(restore)?;
        match body(&mut RvmTxn { rvm, tid, region }) {
            Ok(()) => Ok(rvm.end_transaction(tid, commit)?),
            Err(e) if restore == RestoreMode::Restore => {
                rvm.abort_transaction(tid).context("aborting")?;
                Err(e)
            }
            Err(e) => {
                let why = "a no-restore transaction failed and cannot be undone; the \
                           region holds its uncommitted writes";
                self.broken = Some(why.into());
                Err(e.context(why))
            }
        }
    }

    fn counters(&self) -> Vec<(&'static str, u64)> {
        let s = self.stats();
        vec![
            ("truncations", s.truncations),
            ("log forces", s.log_forces),
            ("commits during epoch", s.commits_during_epoch),
        ]
    }
}
