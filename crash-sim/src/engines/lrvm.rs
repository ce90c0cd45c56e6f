//! The lrvm adapter: one log of the minimum size (so it wraps and truncates often), one
//! region over one data segment.

use std::path::PathBuf;

use anyhow::{Context, Result};
use lrvm::{CommitMode, CreateMode, MapOptions, Options, RegionId, RegionSpec, RestoreMode, Rvm};

use crate::engines::engine::{
    remove_if_exists, CrashModel, Engine, EngineConfig, EngineKind, Start, State, Store,
};
use crate::txn::{OpKind, Txn};

/// lrvm behind the [`Engine`] trait, in one of its commit modes.
#[derive(Debug)]
pub struct LrvmEngine {
    kind: EngineKind,
    cfg: EngineConfig,
}

impl LrvmEngine {
    /// An engine keeping its files in `cfg.dir`; `kind` picks the commit mode.
    pub fn new(kind: EngineKind, cfg: EngineConfig) -> LrvmEngine {
        LrvmEngine { kind, cfg }
    }

    fn log_path(&self) -> PathBuf {
        self.cfg.dir.join("log")
    }

    fn data_path(&self) -> PathBuf {
        self.cfg.dir.join("data")
    }

    fn options(&self) -> Options {
        Options::new(self.log_path())
            .flush_buffer_size(4096)
            .emulate_power_loss(self.cfg.emulate_power_loss)
    }

    fn spec(&self) -> RegionSpec {
        RegionSpec::new(self.data_path(), 0, self.cfg.state_len)
    }
}

impl Engine for LrvmEngine {
    fn kind(&self) -> EngineKind {
        self.kind
    }

    fn reset(&self, initial: &[u8]) -> Result<()> {
        std::fs::create_dir_all(&self.cfg.dir)?;
        for f in self.files() {
            remove_if_exists(&f)?;
        }
        lrvm::create_log(self.log_path(), lrvm::MIN_LOG_LEN, CreateMode::Overwrite)?;
        let mut rvm = Rvm::initialize(Options::new(self.log_path()))?;
        let region = rvm.map(&self.spec(), MapOptions::create_or_extend())?;
        let tid = rvm.begin_transaction(RestoreMode::NoRestore)?;
        rvm.set_range(tid, region, 0, initial.len() as u64)?
            .copy_from_slice(initial);
        rvm.end_transaction(tid, CommitMode::Flush)?;
        rvm.truncate()?;
        rvm.close()?;
        Ok(())
    }

    fn open(&self) -> Result<Box<dyn Store>> {
        let mut rvm = Rvm::initialize(self.options())
            .with_context(|| format!("initialize {}", self.log_path().display()))?;
        let region = rvm
            .map(&self.spec(), MapOptions::default())
            .with_context(|| format!("map {}", self.data_path().display()))?;
        let mode = match self.kind {
            EngineKind::LrvmNoFlush => CommitMode::NoFlush,
            _ => CommitMode::Flush,
        };
        Ok(Box::new(LrvmStore { rvm, region, mode }))
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.log_path(), self.data_path()]
    }

    fn durable_files(&self) -> Vec<PathBuf> {
        self.files()
    }

    fn power_fail(&self, _seed: u64) -> Result<()> {
        // Workers of power campaigns run with `emulate_power_loss`: whatever they did not
        // sync was in their memory and died with them.
        anyhow::ensure!(
            self.cfg.emulate_power_loss,
            "lrvm power loss needs workers with emulate_power_loss"
        );
        Ok(())
    }

    fn crash_points(&self) -> Vec<&'static str> {
        lrvm::CRASH_POINTS.to_vec()
    }

    fn recovery_points(&self) -> Vec<&'static str> {
        lrvm::CRASH_POINTS
            .iter()
            .copied()
            .filter(|p| p.starts_with("lrvm.recover.") || p.starts_with("lrvm.status."))
            .collect()
    }

    fn survives(&self, op: OpKind, _model: CrashModel) -> bool {
        match op {
            OpKind::Abort => false,
            OpKind::Commit => self.kind == EngineKind::LrvmFlush,
            OpKind::Durable | OpKind::Checkpoint | OpKind::Close => true,
        }
    }

    fn exact_durable(&self, _model: CrashModel) -> bool {
        false
    }
}

struct LrvmStore {
    rvm: Rvm,
    region: RegionId,
    mode: CommitMode,
}

impl Store for LrvmStore {
    fn start(&self) -> Start {
        Start::Warm
    }

    fn state(&self) -> Result<State<'_>> {
        Ok(Box::new(self.rvm.region(self.region)?))
    }

    fn run(&mut self, txn: &Txn) -> Result<()> {
        match txn.kind {
            OpKind::Checkpoint => return Ok(self.rvm.truncate()?),
            OpKind::Close => unreachable!("close is Store::close"),
            _ => {}
        }
        let tid = self.rvm.begin_transaction(RestoreMode::Restore)?;
        for (off, bytes) in &txn.writes {
            self.rvm
                .set_range(tid, self.region, *off, bytes.len() as u64)?
                .copy_from_slice(bytes);
        }
        match txn.kind {
            OpKind::Commit => self.rvm.end_transaction(tid, self.mode)?,
            OpKind::Durable => self.rvm.end_transaction(tid, CommitMode::Flush)?,
            _ => self.rvm.abort_transaction(tid)?,
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.rvm.close()?)
    }

    fn addresses(&self) -> Result<(usize, usize, usize)> {
        let r = self.rvm.region(self.region)?;
        let data = r.as_ptr() as usize;
        Ok((data, data, data + r.len()))
    }
}
