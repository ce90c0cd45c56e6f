//! vista: the bank in one segment, transactions from every thread at once.
//!
//! Each balance is changed in place through `set_range` (its lock is taken exclusively at
//! once, so two transactions never both read a balance and then upgrade), the history
//! record with `write`. `Segment::transaction` runs the closure again after a conflict;
//! the retries reported are those extra runs.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ::vista::{Options, Segment, Writeback};
use anyhow::Result;

use super::{add, history_offset, record_offset, Bank, Op, Teller, Totals, FLAT_LEN, MAX_THREADS};

/// The options of the scaling runs: the flat layout's size, a lane per possible thread,
/// no protection, manual writeback (no checkpoint while measuring), memory image in
/// `$RIO_CACHE_DIR` or `/dev/shm` (vista's default).
pub fn default_options() -> Options {
    Options::new()
        .size(FLAT_LEN)
        .lanes(u32::try_from(MAX_THREADS).expect("64 lanes"))
        .protection(::vista::Protection::None)
        .writeback(Writeback::Manual)
}

/// A segment holding the bank.
#[derive(Debug)]
pub struct VistaBank {
    seg: Option<Segment>,
    path: PathBuf,
    opts: Options,
    /// `Some` for `vista-mutex`: every transaction holds it.
    global: Option<Mutex<()>>,
    // Removed after the segment (`Drop` runs before the fields drop).
    _dir: tempfile::TempDir,
}

impl VistaBank {
    /// Creates a fresh segment in a new directory under `parent` with `opts`.
    ///
    /// # Errors
    /// vista's or the file system's error.
    pub fn open(parent: &Path, opts: &Options, global_mutex: bool) -> Result<VistaBank> {
        let dir = tempfile::Builder::new()
            .prefix("threads-vista-")
            .tempdir_in(parent)?;
        let path = dir.path().join("bank.vista");
        Segment::remove(&path, opts)?;
        let seg = Segment::open(&path, opts)?;
        Ok(VistaBank {
            seg: Some(seg),
            path,
            opts: opts.clone(),
            global: global_mutex.then(|| Mutex::new(())),
            _dir: dir,
        })
    }

    /// The segment.
    pub fn segment(&self) -> &Segment {
        self.seg.as_ref().expect("open until dropped")
    }
}

impl Drop for VistaBank {
    fn drop(&mut self) {
        // Errors are ignored: the files are scratch, and a failed close leaves them for
        // the temporary directory's removal.
        if let Some(seg) = self.seg.take() {
            let _ = seg.close();
        }
        let _ = Segment::remove(&self.path, &self.opts);
    }
}

struct VistaTeller<'a> {
    seg: &'a Segment,
    global: Option<&'a Mutex<()>>,
}

impl Teller for VistaTeller<'_> {
    fn transfer(&mut self, op: &Op) -> Result<u64> {
        let _held = self
            .global
            .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        let mut runs = 0;
        self.seg.transaction(|tx| {
            runs += 1;
            for id in op.records() {
                add(tx.set_range(record_offset(id), 8)?, op.delta);
            }
            tx.write(history_offset(op.slot), &op.history)
        })?;
        Ok(runs - 1)
    }
}

impl Bank for VistaBank {
    fn teller(&self, _thread: u64) -> Result<Box<dyn Teller + '_>> {
        Ok(Box::new(VistaTeller {
            seg: self.segment(),
            global: self.global.as_ref(),
        }))
    }

    fn totals(&self) -> Result<Totals> {
        let mut t = Totals::default();
        for id in 0..super::RECORDS {
            t.add(id, self.segment().get::<i64>(record_offset(id))?);
        }
        Ok(t)
    }
}
