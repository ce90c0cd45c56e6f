//! Power-loss emulation: rebuild the disk image and the journal as a real disk could
//! leave them after the power failed, for crash tests.
//!
//! A cache opened with [`RioOptions::record_writes`] records every write, resize and
//! sync of its disk image and journal in a write log (see the `disk_io` module). After
//! the process is gone (killed, or closed), [`cut`] emulates the power loss:
//!
//! - the memory image is deleted (memory does not survive a power loss);
//! - everything a sync made durable survives: `fdatasync` of a file makes every earlier
//!   write and resize of *that file* durable, and nothing of the other file;
//! - of the writes not yet synced, an arbitrary subset survives, chosen by a [`Plan`]
//!   (none, all, a prefix or a suffix in issue order, or a random subset from a seed);
//!   a write that survives only partly is *torn* at 512-byte sector granularity: each
//!   sector it covers holds either its new or its old bytes, never a mixture (the
//!   atomic unit of a disk write).
//!
//! This is the model of SQLite's crash-test VFS and of ALICE's "application-level
//! crash states", restricted to what rio-cache does: overwrites and appends of two
//! preallocated files. Not modelled: directory entries (a cut never removes a file that
//! was created but whose directory was not synced: rio-cache syncs the directory after
//! creating the disk file and the journal, before the first checkpoint can depend on
//! them), reordering within one sector, and writes that reach the disk with garbage in
//! them (a sector holds its old or its new bytes).
//!
//! ```
//! use rio_cache::power::{self, Plan};
//! use rio_cache::{RioCache, RioOptions, Writeback};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("data.rio");
//! let opts = RioOptions::new()
//!     .size(1 << 16)
//!     .cache_dir(dir.path())
//!     .writeback(Writeback::Manual)
//!     .checkpoint_on_close(false)
//!     .record_writes(dir.path());
//! let mut cache = RioCache::open(&path, &opts)?;
//! cache.window(0, 5)?.copy_from_slice(b"saved");
//! cache.checkpoint()?;
//! cache.window(0, 5)?.copy_from_slice(b"lost!");
//! drop(cache);
//! power::cut(&path, &opts, Plan::Random { seed: 7 })?;
//! let cache = RioCache::open(&path, &opts)?;
//! assert_eq!(cache.read(0, 5)?, b"saved");
//! # Ok(())
//! # }
//! ```

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::disk_io::{self, Op, Record, WriteLog};
use crate::error::{Error, IoContext, Result};
use crate::naming::{image_path, journal_path};
use crate::options::RioOptions;

pub use crate::disk_io::Target;

/// The size of the unit a disk writes atomically.
pub const SECTOR: u64 = 512;

/// Which of the writes not yet synced at the power cut reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Plan {
    /// None of them.
    DropAll,
    /// All of them.
    KeepAll,
    /// The first `writes` (in the order they were issued, across both files) whole, the
    /// first `sectors` sectors of the next one, none of the rest.
    Prefix {
        /// Writes kept whole.
        writes: usize,
        /// Sectors kept of the next write.
        sectors: usize,
    },
    /// The last `writes` whole, none of the earlier ones (the disk reordered them).
    Suffix {
        /// Writes kept, counted from the last.
        writes: usize,
    },
    /// Each independently: kept, lost, or torn (each of its sectors kept or not), drawn
    /// from a generator seeded with `seed`.
    Random {
        /// The generator's seed.
        seed: u64,
    },
}

/// What a power cut did with the writes not yet synced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CutReport {
    /// Writes and resizes not yet synced.
    pub pending: usize,
    /// Of those, kept whole.
    pub kept: usize,
    /// Kept in part (some of their sectors).
    pub torn: usize,
    /// Lost.
    pub dropped: usize,
}

/// The kind of a recorded operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IoKind {
    /// `pwrite` of `len` bytes at `offset`.
    Write {
        /// Where.
        offset: u64,
        /// How many bytes.
        len: u64,
    },
    /// The file's length set to `len`.
    Resize {
        /// The new length.
        len: u64,
    },
    /// `fdatasync` or `fsync`.
    Sync,
}

/// A recorded operation on the disk image or the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoEvent {
    /// The file.
    pub target: Target,
    /// What was done.
    pub kind: IoKind,
}

/// The write log of the cache at `path`, from `opts` (which must record writes).
fn log_of(path: &Path, opts: &RioOptions) -> Result<std::path::PathBuf> {
    let Some(dir) = &opts.record_writes else {
        return Err(Error::InvalidOptions(
            "power-loss emulation needs RioOptions::record_writes".into(),
        ));
    };
    Ok(disk_io::log_path(
        dir,
        &image_path(path, &opts.resolved_cache_dir())?,
    ))
}

/// The write log of the cache at `path` under `opts` (for harnesses that snapshot and
/// restore a cache's files: the log is one of them).
///
/// # Errors
/// [`Error::InvalidOptions`] if `opts` do not record writes; an I/O error if the
/// absolute path cannot be determined.
pub fn log_path(path: impl AsRef<Path>, opts: &RioOptions) -> Result<std::path::PathBuf> {
    log_of(path.as_ref(), opts)
}

/// The operations recorded for the cache at `path`, oldest first, since the log last
/// started afresh (at a power cut, or at a write when nothing was pending and the log
/// had grown past 4 MiB). The last checkpoint's writes and syncs are at its end.
///
/// # Errors
/// [`Error::InvalidOptions`] if `opts` do not record writes; I/O errors reading the log.
pub fn recorded(path: impl AsRef<Path>, opts: &RioOptions) -> Result<Vec<IoEvent>> {
    let lp = log_of(path.as_ref(), opts)?;
    let log = WriteLog::open(&lp).context(|| format!("open {}", lp.display()))?;
    let records = log.records().context(|| format!("read {}", lp.display()))?;
    Ok(records
        .iter()
        .map(|r| IoEvent {
            target: r.target,
            kind: match &r.op {
                Op::Write { offset, data } => IoKind::Write {
                    offset: *offset,
                    len: data.len() as u64,
                },
                Op::Resize { len } => IoKind::Resize { len: *len },
                Op::Sync => IoKind::Sync,
            },
        })
        .collect())
}

/// Emulates a power loss for the cache at `path`: deletes its memory image and rebuilds
/// its disk image and journal from the write log as `plan` says (see the module docs).
/// The cache must not be open (its process killed or closed); the log is emptied, since
/// what the files now hold is what the disk holds.
///
/// # Errors
/// [`Error::InvalidOptions`] if `opts` do not record writes; [`Error::Locked`] if the
/// cache is open; I/O errors.
pub fn cut(path: impl AsRef<Path>, opts: &RioOptions, plan: Plan) -> Result<CutReport> {
    let path = path.as_ref();
    let lp = log_of(path, opts)?;
    let mut log = WriteLog::open(&lp).context(|| format!("open {}", lp.display()))?;
    let records = log.records().context(|| format!("read {}", lp.display()))?;
    let jpath = journal_path(path);
    let open = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .context(|| format!("open {}", p.display()))
    };
    let mut report = CutReport::default();
    let pending = pending(&records);
    if !pending.is_empty() {
        let disk = open(path)?;
        if !crate::sys::try_lock_exclusive(&disk).context(|| format!("lock {}", path.display()))? {
            return Err(Error::locked(path));
        }
        let journal = if pending
            .iter()
            .any(|&i| records[i].target == Target::Journal)
        {
            Some(open(&jpath)?)
        } else {
            None
        };
        let file = |t: Target| match t {
            Target::Disk => Some(&disk),
            Target::Journal => journal.as_ref(),
        };
        let ctx = |t: Target| {
            let p = if t == Target::Disk { path } else { &jpath };
            move || format!("power cut: rebuild {}", p.display())
        };
        // Undo every pending operation, last first: the files as the syncs left them.
        for &i in pending.iter().rev() {
            let r = &records[i];
            let f = file(r.target).expect("opened above");
            revert(f, r).context(ctx(r.target))?;
        }
        // Then replay the ones the plan keeps, in issue order.
        let fates = plan_fates(plan, &pending, &records);
        report.pending = pending.len();
        for (&i, fate) in pending.iter().zip(&fates) {
            let r = &records[i];
            let f = file(r.target).expect("opened above");
            match fate {
                Fate::Keep => report.kept += 1,
                Fate::Drop => report.dropped += 1,
                Fate::Tear(_) => report.torn += 1,
            }
            replay(f, r, fate).context(ctx(r.target))?;
        }
        disk.sync_all().context(ctx(Target::Disk))?;
        if let Some(j) = &journal {
            j.sync_all().context(ctx(Target::Journal))?;
        }
    }
    let ipath = image_path(path, &opts.resolved_cache_dir())?;
    match std::fs::remove_file(&ipath) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).context(|| format!("remove {}", ipath.display()))
        }
        _ => {}
    }
    log.reset()
        .context(|| format!("reset {}", log.path().display()))?;
    Ok(report)
}

/// The indices of the writes and resizes issued after the last sync of their file.
fn pending(records: &[Record]) -> Vec<usize> {
    let mut last_sync = [None::<usize>; 2];
    for (i, r) in records.iter().enumerate() {
        if r.op == Op::Sync {
            last_sync[usize::from(r.target == Target::Journal)] = Some(i);
        }
    }
    records
        .iter()
        .enumerate()
        .filter(|(i, r)| {
            r.op != Op::Sync
                && last_sync[usize::from(r.target == Target::Journal)].is_none_or(|s| *i > s)
        })
        .map(|(i, _)| i)
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    Keep,
    Drop,
    /// Which sectors of the write survive, in order.
    Tear(Vec<bool>),
}

/// The sectors a write covers.
fn sectors(r: &Record) -> usize {
    match &r.op {
        Op::Write { offset, data } if !data.is_empty() => {
            let end = offset + data.len() as u64;
            ((end - 1) / SECTOR - offset / SECTOR + 1) as usize
        }
        _ => 1,
    }
}

fn plan_fates(plan: Plan, pending: &[usize], records: &[Record]) -> Vec<Fate> {
    let n = pending.len();
    match plan {
        Plan::DropAll => vec![Fate::Drop; n],
        Plan::KeepAll => vec![Fate::Keep; n],
        Plan::Prefix { writes, sectors: s } => (0..n)
            .map(|k| {
                if k < writes {
                    Fate::Keep
                } else if k == writes && s > 0 {
                    let total = sectors(&records[pending[k]]);
                    if s >= total {
                        Fate::Keep
                    } else {
                        Fate::Tear((0..total).map(|x| x < s).collect())
                    }
                } else {
                    Fate::Drop
                }
            })
            .collect(),
        Plan::Suffix { writes } => (0..n)
            .map(|k| {
                if k + writes >= n {
                    Fate::Keep
                } else {
                    Fate::Drop
                }
            })
            .collect(),
        Plan::Random { seed } => {
            let mut rng = SplitMix(seed);
            pending
                .iter()
                .map(|&i| match rng.next() % 3 {
                    0 => Fate::Keep,
                    1 => Fate::Drop,
                    _ => {
                        let total = sectors(&records[i]);
                        if total == 1 {
                            if rng.next().is_multiple_of(2) {
                                Fate::Keep
                            } else {
                                Fate::Drop
                            }
                        } else {
                            Fate::Tear((0..total).map(|_| rng.next().is_multiple_of(2)).collect())
                        }
                    }
                })
                .collect()
        }
    }
}

fn revert(f: &File, r: &Record) -> std::io::Result<()> {
    match &r.op {
        Op::Write { offset, .. } => {
            f.write_all_at(&r.old, *offset)?;
            if f.metadata()?.len() != r.old_len {
                f.set_len(r.old_len)?;
            }
        }
        Op::Resize { len } => {
            f.set_len(r.old_len)?;
            f.write_all_at(&r.old, *len)?;
        }
        Op::Sync => {}
    }
    Ok(())
}

fn replay(f: &File, r: &Record, fate: &Fate) -> std::io::Result<()> {
    match (&r.op, fate) {
        (_, Fate::Drop) | (Op::Sync, _) => Ok(()),
        (Op::Resize { len }, _) => f.set_len(*len),
        (Op::Write { offset, data }, Fate::Keep) => f.write_all_at(data, *offset),
        (Op::Write { offset, data }, Fate::Tear(keep)) => {
            let end = offset + data.len() as u64;
            let first = offset / SECTOR;
            for (k, _) in keep.iter().enumerate().filter(|(_, k)| **k) {
                let sector = (first + k as u64) * SECTOR;
                let (from, to) = (sector.max(*offset), (sector + SECTOR).min(end));
                let piece = &data[(from - offset) as usize..(to - offset) as usize];
                f.write_all_at(piece, from)?;
            }
            Ok(())
        }
    }
}

/// SplitMix64: a small, well-mixed generator, so plans are reproducible from a seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(target: Target, offset: u64, len: usize) -> Record {
        Record {
            target,
            op: Op::Write {
                offset,
                data: vec![1; len],
            },
            old_len: 0,
            old: Vec::new(),
        }
    }

    #[test]
    fn pending_is_what_follows_the_last_sync_of_each_file() {
        let sync = |target| Record {
            target,
            op: Op::Sync,
            old_len: 0,
            old: Vec::new(),
        };
        let recs = vec![
            write(Target::Journal, 0, 10),
            write(Target::Disk, 0, 10),
            sync(Target::Journal),
            write(Target::Journal, 10, 10),
            write(Target::Disk, 4096, 10),
        ];
        // The disk write before the journal's sync is still pending: a sync of one
        // file says nothing about the other.
        assert_eq!(pending(&recs), vec![1, 3, 4]);
    }

    #[test]
    fn sectors_count_the_512_byte_units_a_write_touches() {
        assert_eq!(sectors(&write(Target::Disk, 0, 512)), 1);
        assert_eq!(sectors(&write(Target::Disk, 500, 20)), 2);
        assert_eq!(sectors(&write(Target::Disk, 4096, 8192)), 16);
    }

    #[test]
    fn plans_choose_as_documented() {
        let recs: Vec<Record> = (0..4)
            .map(|k| write(Target::Disk, k * 4096, 1024))
            .collect();
        let p = [0, 1, 2, 3];
        assert_eq!(
            plan_fates(
                Plan::Prefix {
                    writes: 1,
                    sectors: 1
                },
                &p,
                &recs
            ),
            vec![
                Fate::Keep,
                Fate::Tear(vec![true, false]),
                Fate::Drop,
                Fate::Drop
            ]
        );
        assert_eq!(
            plan_fates(Plan::Suffix { writes: 1 }, &p, &recs),
            vec![Fate::Drop, Fate::Drop, Fate::Drop, Fate::Keep]
        );
        let a = plan_fates(Plan::Random { seed: 3 }, &p, &recs);
        assert_eq!(a, plan_fates(Plan::Random { seed: 3 }, &p, &recs));
    }
}
