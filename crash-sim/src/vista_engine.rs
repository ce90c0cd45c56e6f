//! The vista adapter: a small segment, manual writeback, the memory image in the work
//! directory (which crash-sim puts on `/dev/shm`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use vista::{Options, Segment, StartKind, Writeback};

use crate::engine::{
    remove_if_exists, CrashModel, Engine, EngineConfig, EngineKind, OpKind, Start, State, Store,
    Txn,
};

/// Undo log per lane: room for every transaction a workload makes.
const UNDO_LOG: u64 = 16 << 10;
const PAGE: u64 = 4096;

/// vista behind the [`Engine`] trait.
#[derive(Debug)]
pub struct VistaEngine {
    cfg: EngineConfig,
}

impl VistaEngine {
    /// An engine keeping its files in `cfg.dir`.
    pub fn new(cfg: EngineConfig) -> VistaEngine {
        VistaEngine { cfg }
    }

    fn seg_path(&self) -> PathBuf {
        self.cfg.dir.join("seg.vista")
    }

    fn cache_dir(&self) -> PathBuf {
        self.cfg.dir.join("mem")
    }

    /// The user-space size: the workload's bytes, rounded up to a page.
    fn size(&self) -> u64 {
        self.cfg.state_len.max(1).next_multiple_of(PAGE)
    }

    fn options(&self) -> Options {
        Options::new()
            .size(self.size())
            .undo_log_size(UNDO_LOG)
            .lanes(1)
            .protection(self.cfg.protection)
            .writeback(Writeback::Manual)
            .cache_dir(self.cache_dir())
    }

    /// Where user byte 0 lies in the rio-cache data: the header page, then one lane of
    /// `UNDO_LOG` plus its 64-byte header rounded up to pages (docs/format.md).
    fn user_off() -> u64 {
        PAGE + (UNDO_LOG + 64).next_multiple_of(PAGE)
    }
}

impl Engine for VistaEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Vista
    }

    fn reset(&self, initial: &[u8]) -> Result<()> {
        std::fs::create_dir_all(self.cache_dir())?;
        for f in self.files() {
            remove_if_exists(&f)?;
        }
        let seg = Segment::open(self.seg_path(), &self.options())?;
        let mut tx = seg.begin()?;
        tx.write(0, initial)?;
        tx.commit_durable()?;
        seg.close()?;
        Ok(())
    }

    fn open(&self) -> Result<Box<dyn Store>> {
        std::fs::create_dir_all(self.cache_dir())?;
        let seg = Segment::open(self.seg_path(), &self.options())
            .with_context(|| format!("open {}", self.seg_path().display()))?;
        Ok(Box::new(VistaStore {
            seg,
            len: self.cfg.state_len,
        }))
    }

    fn files(&self) -> Vec<PathBuf> {
        let seg = self.seg_path();
        let mut v = vec![rio_cache::journal_path(&seg)];
        if let Ok(img) = rio_cache::image_path(&seg, &self.cache_dir()) {
            v.push(img);
        }
        v.insert(0, seg);
        v
    }

    fn durable_files(&self) -> Vec<PathBuf> {
        let seg = self.seg_path();
        vec![rio_cache::journal_path(&seg), seg]
    }

    fn power_fail(&self) -> Result<()> {
        // Power loss takes the memory (the image on /dev/shm) and nothing synced.
        let img = rio_cache::image_path(&self.seg_path(), &self.cache_dir())?;
        remove_if_exists(&img)?;
        Ok(())
    }

    fn crash_points(&self) -> Vec<&'static str> {
        vista::CRASH_POINTS
            .iter()
            .chain(rio_cache::CRASH_POINTS)
            .copied()
            .collect()
    }

    fn recovery_points(&self) -> Vec<&'static str> {
        self.crash_points()
            .into_iter()
            .filter(|p| {
                p.starts_with("vista.recover.")
                    || p.starts_with("rio.recover.")
                    || p.starts_with("rio.cold_load.")
            })
            .collect()
    }

    fn survives(&self, op: OpKind, model: CrashModel) -> bool {
        match op {
            OpKind::Abort => false,
            OpKind::Commit => model == CrashModel::Process,
            OpKind::Durable | OpKind::Checkpoint | OpKind::Close => true,
        }
    }

    fn exact_durable(&self, model: CrashModel) -> bool {
        model == CrashModel::Power
    }
}

struct VistaStore {
    seg: Segment,
    len: u64,
}

impl Store for VistaStore {
    fn start(&self) -> Start {
        match self.seg.start_kind() {
            StartKind::Created => Start::Created,
            StartKind::Warm => Start::Warm,
            StartKind::Cold(_) => Start::Cold,
        }
    }

    fn state(&self) -> Result<State<'_>> {
        Ok(Box::new(self.seg.read(0, self.len)?))
    }

    fn run(&mut self, txn: &Txn) -> Result<()> {
        match txn.kind {
            OpKind::Checkpoint => return Ok(self.seg.checkpoint()?),
            OpKind::Close => unreachable!("close is Store::close"),
            _ => {}
        }
        let mut tx = self.seg.begin()?;
        for (off, bytes) in &txn.writes {
            tx.write(*off, bytes)?;
        }
        match txn.kind {
            OpKind::Commit => tx.commit()?,
            OpKind::Durable => tx.commit_durable()?,
            _ => tx.abort()?,
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.seg.close()?)
    }

    fn addresses(&self) -> Result<(usize, usize, usize)> {
        // No public API gives the mapping's address: derive it from a committed read.
        let data = self.seg.read(0, 1)?.as_ptr() as usize;
        let from = data - VistaEngine::user_off() as usize;
        let to = data + self.seg.len() as usize;
        Ok((data, from, to))
    }
}
