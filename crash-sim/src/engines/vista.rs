//! The vista adapter: a small segment, manual writeback, the memory image in the work
//! directory (which crash-sim puts on `/dev/shm`).

use std::cell::Cell;
use std::path::PathBuf;

use anyhow::{Context, Result};
use vista::rio_cache::power::{self, Plan};
use vista::{Options, Segment, StartKind, Writeback};

use crate::engines::engine::{
    remove_if_exists, CrashModel, Engine, EngineConfig, EngineKind, Start, State, Store,
};
use crate::txn::{OpKind, Txn};

/// Undo log per lane: room for every transaction a workload makes.
const UNDO_LOG: u64 = 16 << 10;
const PAGE: u64 = 4096;

/// vista behind the [`Engine`] trait.
#[derive(Debug)]
pub struct VistaEngine {
    cfg: EngineConfig,
    /// The memory image's directory (default `mem` in `cfg.dir`).
    cache_dir: PathBuf,
    /// Power cuts so far, and the unsynced writes they kept, tore and dropped.
    cuts: Cell<[u64; 4]>,
    /// Undo lanes of a new segment (1; a threaded worker's: one per thread).
    lanes: u32,
}

impl VistaEngine {
    /// An engine keeping its files in `cfg.dir`.
    pub fn new(cfg: EngineConfig) -> VistaEngine {
        let cache_dir = cfg.dir.join("mem");
        VistaEngine::with_cache_dir(cfg, cache_dir)
    }

    /// An engine keeping its segment in `cfg.dir` and its memory image (and write log)
    /// in `cache_dir`: two of them over one directory are one segment used with two
    /// cache directories.
    pub fn with_cache_dir(cfg: EngineConfig, cache_dir: PathBuf) -> VistaEngine {
        VistaEngine {
            cfg,
            cache_dir,
            cuts: Cell::new([0; 4]),
            lanes: 1,
        }
    }

    /// The same engine creating its segment with `lanes` undo lanes (for a worker of as
    /// many threads).
    pub fn with_lanes(mut self, lanes: u32) -> VistaEngine {
        self.lanes = lanes;
        self
    }

    /// Opens (and so recovers) the segment itself, for workers that share it between
    /// threads.
    ///
    /// # Errors
    /// Engine errors.
    pub fn open_segment(&self) -> Result<Segment> {
        self.open_segment_with(&vista::rio_cache::Faults::none())
    }

    /// As [`VistaEngine::open_segment`], with injected I/O failures.
    ///
    /// # Errors
    /// As [`VistaEngine::open_segment`].
    pub fn open_segment_with(&self, faults: &vista::rio_cache::Faults) -> Result<Segment> {
        std::fs::create_dir_all(self.cache_dir())?;
        Segment::open(self.seg_path(), &self.options().faults(faults.clone()))
            .with_context(|| format!("open {}", self.seg_path().display()))
    }

    /// The segment file.
    pub(crate) fn seg_path(&self) -> PathBuf {
        self.cfg.dir.join("seg.vista")
    }

    /// The memory image's (and write log's) directory.
    pub(crate) fn cache_dir(&self) -> PathBuf {
        self.cache_dir.clone()
    }

    /// The rio-cache options a power cut needs: where the image and the log are.
    fn rio_options(&self) -> vista::rio_cache::RioOptions {
        vista::rio_cache::RioOptions::new()
            .cache_dir(self.cache_dir())
            .record_writes(self.cache_dir())
    }

    /// The user-space size: the workload's bytes, rounded up to a page.
    fn size(&self) -> u64 {
        self.cfg.state_len.max(1).next_multiple_of(PAGE)
    }

    fn options(&self) -> Options {
        let o = Options::new()
            .size(self.size())
            .undo_log_size(UNDO_LOG)
            .lanes(self.lanes)
            .protection(self.cfg.protection)
            .writeback(Writeback::Manual)
            .cache_dir(self.cache_dir());
        if self.cfg.emulate_power_loss {
            o.record_writes(self.cache_dir())
        } else {
            o
        }
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
        // In pieces that fit the undo log (a multi-megabyte state would not).
        let piece = (UNDO_LOG / 2) as usize;
        for (k, chunk) in initial.chunks(piece).enumerate() {
            let mut tx = seg.begin()?;
            tx.write((k * piece) as u64, chunk)?;
            tx.commit()?;
        }
        seg.checkpoint()?;
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
        if self.cfg.emulate_power_loss {
            if let Ok(log) = power::log_path(&seg, &self.rio_options()) {
                v.push(log);
            }
        }
        v.insert(0, seg);
        v
    }

    fn durable_files(&self) -> Vec<PathBuf> {
        let seg = self.seg_path();
        vec![rio_cache::journal_path(&seg), seg]
    }

    fn power_fail(&self, seed: u64) -> Result<()> {
        if !self.cfg.emulate_power_loss {
            // Only the memory (the image on /dev/shm) is lost; the page cache of the
            // disk files survives.
            let img = rio_cache::image_path(&self.seg_path(), &self.cache_dir())?;
            remove_if_exists(&img)?;
            return Ok(());
        }
        let r = power::cut(self.seg_path(), &self.rio_options(), plan_for(seed))?;
        let mut c = self.cuts.get();
        c[0] += 1;
        c[1] += r.kept as u64;
        c[2] += r.torn as u64;
        c[3] += r.dropped as u64;
        self.cuts.set(c);
        Ok(())
    }

    fn power_summary(&self) -> Option<String> {
        let [cuts, kept, torn, dropped] = self.cuts.get();
        (cuts > 0).then(|| {
            format!(
                "vista power cuts (rio-cache model): {cuts}; unsynced writes kept {kept}, torn {torn}, dropped {dropped}"
            )
        })
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
            .filter(|p| is_recovery_point(p))
            .collect()
    }

    fn survives(&self, op: OpKind, model: CrashModel) -> bool {
        survives(op, model)
    }

    fn exact_durable(&self, model: CrashModel) -> bool {
        model == CrashModel::Power
    }
}

/// The power-cut plan of a cycle: mostly random subsets with torn writes, sometimes
/// none, all, a prefix (with the next write torn) or a suffix.
pub fn plan_for(seed: u64) -> Plan {
    let r = crate::seed::mix(seed ^ 0x0070_0c07);
    match r % 8 {
        0 => Plan::DropAll,
        1 => Plan::KeepAll,
        2 => Plan::Prefix {
            writes: ((r >> 8) % 4) as usize,
            sectors: ((r >> 16) % 9) as usize,
        },
        3 => Plan::Suffix {
            writes: 1 + ((r >> 8) % 3) as usize,
        },
        _ => Plan::Random { seed: r >> 3 },
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

    fn recovery_report(&self) -> Option<(u32, u64)> {
        let r = self.seg.recovery();
        Some((r.lanes_rolled_back, r.records_undone))
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

/// Whether crash point `p` lies inside a vista open's recovery (or the cold load under it).
pub(super) fn is_recovery_point(p: &str) -> bool {
    p.starts_with("vista.recover.")
        || p.starts_with("rio.recover.")
        || p.starts_with("rio.cold_load.")
}

/// What survives a crash of each model in vista (alone or in a group): a commit survives
/// a process crash; only what was made durable survives power loss; an abort never.
pub(super) fn survives(op: OpKind, model: CrashModel) -> bool {
    match op {
        OpKind::Abort => false,
        OpKind::Commit => model == CrashModel::Process,
        OpKind::Durable | OpKind::Checkpoint | OpKind::Close => true,
    }
}
