//! The vista adapter for `--workload xseg`: two segments in a `vista::Group`, the
//! workload's state split in halves between them (bytes `[0, HALF)` in the first,
//! `[HALF, 2 HALF)` in the second), every transaction one transaction of the group, and
//! every checkpoint the group's.

use super::vista::{is_recovery_point, survives};
use std::cell::Cell;
use std::path::PathBuf;

use anyhow::{Context, Result};
use vista::rio_cache::power;
use vista::{Group, Options, Segment, StartKind, Writeback};

use crate::engines::engine::{
    remove_if_exists, CrashModel, Engine, EngineConfig, EngineKind, Start, State, Store,
};
use crate::engines::vista::plan_for;
use crate::txn::{OpKind, Txn};
use crate::workloads::xseg::HALF;

const UNDO_LOG: u64 = 16 << 10;

/// Two vista segments in a group, behind the [`Engine`] trait.
#[derive(Debug)]
pub struct VistaGroupEngine {
    cfg: EngineConfig,
    cuts: Cell<[u64; 4]>,
}

impl VistaGroupEngine {
    /// An engine keeping its files in `cfg.dir`.
    pub fn new(cfg: EngineConfig) -> VistaGroupEngine {
        VistaGroupEngine {
            cfg,
            cuts: Cell::new([0; 4]),
        }
    }

    fn seg_path(&self, m: usize) -> PathBuf {
        self.cfg.dir.join(format!("m{m}.vista"))
    }

    fn coordinator(&self) -> PathBuf {
        self.cfg.dir.join("group.coord")
    }

    fn cache_dir(&self) -> PathBuf {
        self.cfg.dir.join("mem")
    }

    fn rio_options(&self) -> vista::rio_cache::RioOptions {
        vista::rio_cache::RioOptions::new()
            .cache_dir(self.cache_dir())
            .record_writes(self.cache_dir())
    }

    fn options(&self) -> Options {
        let o = Options::new()
            .size(HALF)
            .undo_log_size(UNDO_LOG)
            .lanes(1)
            .protection(self.cfg.protection)
            .writeback(Writeback::Manual)
            .cache_dir(self.cache_dir());
        if self.cfg.emulate_power_loss {
            o.record_writes(self.cache_dir())
        } else {
            o
        }
    }

    fn open_group(&self) -> Result<Group> {
        std::fs::create_dir_all(self.cache_dir())?;
        let o = self.options();
        let members = (0..2)
            .map(|m| {
                Segment::open(self.seg_path(m), &o)
                    .with_context(|| format!("open {}", self.seg_path(m).display()))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Group::open(self.coordinator(), members, &o)?)
    }
}

/// The member and offset of state byte `off`.
fn route(off: u64) -> (usize, u64) {
    if off < HALF {
        (0, off)
    } else {
        (1, off - HALF)
    }
}

impl Engine for VistaGroupEngine {
    fn kind(&self) -> EngineKind {
        EngineKind::Vista
    }

    fn reset(&self, initial: &[u8]) -> Result<()> {
        std::fs::create_dir_all(self.cache_dir())?;
        for f in self.files() {
            remove_if_exists(&f)?;
        }
        let group = self.open_group()?;
        let mut tx = group.begin()?;
        for (m, half) in initial.chunks(HALF as usize).enumerate() {
            tx.on(m)?.write(0, half)?;
        }
        tx.commit()?;
        group.close()?;
        Ok(())
    }

    fn open(&self) -> Result<Box<dyn Store>> {
        Ok(Box::new(GroupStore {
            group: self.open_group()?,
        }))
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for m in 0..2 {
            let seg = self.seg_path(m);
            v.push(rio_cache::journal_path(&seg));
            if let Ok(img) = rio_cache::image_path(&seg, &self.cache_dir()) {
                v.push(img);
            }
            if self.cfg.emulate_power_loss {
                if let Ok(log) = power::log_path(&seg, &self.rio_options()) {
                    v.push(log);
                }
            }
            let mut fence = seg.as_os_str().to_owned();
            fence.push(".fence");
            v.push(PathBuf::from(fence));
            v.push(seg);
        }
        v.push(self.coordinator());
        v
    }

    fn durable_files(&self) -> Vec<PathBuf> {
        let mut v = Vec::new();
        for m in 0..2 {
            let seg = self.seg_path(m);
            v.push(rio_cache::journal_path(&seg));
            v.push(seg);
        }
        v.push(self.coordinator());
        v
    }

    fn power_fail(&self, seed: u64) -> Result<()> {
        for m in 0..2 {
            let seg = self.seg_path(m);
            if !self.cfg.emulate_power_loss {
                remove_if_exists(&rio_cache::image_path(&seg, &self.cache_dir())?)?;
                continue;
            }
            let r = power::cut(&seg, &self.rio_options(), plan_for(seed ^ m as u64))?;
            let mut c = self.cuts.get();
            c[0] += 1;
            c[1] += r.kept as u64;
            c[2] += r.torn as u64;
            c[3] += r.dropped as u64;
            self.cuts.set(c);
        }
        // The fence files need not survive: the disk images are group-consistent.
        Ok(())
    }

    fn power_summary(&self) -> Option<String> {
        let [cuts, kept, torn, dropped] = self.cuts.get();
        (cuts > 0).then(|| {
            format!(
                "vista group power cuts (rio-cache model, per member): {cuts}; unsynced writes kept {kept}, torn {torn}, dropped {dropped}"
            )
        })
    }

    fn crash_points(&self) -> Vec<&'static str> {
        // Every checkpoint is the group's: its journal steps are `rio.group.*`, and the
        // ordinary checkpoint's steps into the other slot are never passed.
        const ORDINARY_ONLY: [&str; 6] = [
            "rio.checkpoint.intent_synced",
            "rio.checkpoint.slot_partial",
            "rio.checkpoint.slot_written",
            "rio.checkpoint.slot_synced",
            "rio.checkpoint.meta_written",
            "rio.checkpoint.meta_synced",
        ];
        vista::CRASH_POINTS
            .iter()
            .chain(vista::XSEG_CRASH_POINTS)
            .chain(rio_cache::CRASH_POINTS)
            .chain(rio_cache::GROUP_CRASH_POINTS)
            .copied()
            .filter(|p| !ORDINARY_ONLY.contains(p))
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

struct GroupStore {
    group: Group,
}

impl Store for GroupStore {
    fn start(&self) -> Start {
        // Cold if either member started cold (after a power cut both do).
        let kinds: Vec<StartKind> = self
            .group
            .segments()
            .iter()
            .map(Segment::start_kind)
            .collect();
        if kinds.iter().any(|k| matches!(k, StartKind::Cold(_))) {
            Start::Cold
        } else if kinds.iter().all(|k| *k == StartKind::Created) {
            Start::Created
        } else {
            Start::Warm
        }
    }

    fn recovery_report(&self) -> Option<(u32, u64)> {
        // Lanes per segment (each has one), records in all.
        let mut r = (0, 0);
        for s in self.group.segments() {
            let rec = s.recovery();
            r.0 = r.0.max(rec.lanes_rolled_back);
            r.1 += rec.records_undone;
        }
        Some(r)
    }

    fn state(&self) -> Result<State<'_>> {
        let mut v = Vec::with_capacity(2 * HALF as usize);
        for s in self.group.segments() {
            v.extend_from_slice(&s.read(0, HALF)?);
        }
        Ok(Box::new(v))
    }

    fn run(&mut self, txn: &Txn) -> Result<()> {
        match txn.kind {
            OpKind::Checkpoint => return Ok(self.group.checkpoint()?),
            OpKind::Close => unreachable!("close is Store::close"),
            _ => {}
        }
        let mut tx = self.group.begin()?;
        for (off, bytes) in &txn.writes {
            let (m, at) = route(*off);
            tx.on(m)?.write(at, bytes)?;
        }
        match txn.kind {
            OpKind::Commit => tx.commit()?,
            OpKind::Durable => tx.commit_durable()?,
            _ => tx.abort()?,
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.group.close()?)
    }

    fn addresses(&self) -> Result<(usize, usize, usize)> {
        anyhow::bail!("the xseg workload does not run wild stores")
    }
}
