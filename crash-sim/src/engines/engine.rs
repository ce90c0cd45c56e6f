//! The engines under test, behind one trait: what a workload needs (run a transaction,
//! read the committed bytes) and what a campaign needs (files, crash points, power
//! loss, the durability each commit promises).

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::txn::{OpKind, Txn};

/// Which engine (and commit mode) a campaign drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    /// vista: undo-only transactions on rio-cache.
    Vista,
    /// lrvm, every commit `CommitMode::Flush`.
    LrvmFlush,
    /// lrvm, commits `CommitMode::NoFlush` (durable ops flush).
    LrvmNoFlush,
}

impl EngineKind {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Vista => "vista",
            EngineKind::LrvmFlush => "lrvm-flush",
            EngineKind::LrvmNoFlush => "lrvm-noflush",
        }
    }

    /// Every engine.
    pub const ALL: [EngineKind; 3] = [
        EngineKind::Vista,
        EngineKind::LrvmFlush,
        EngineKind::LrvmNoFlush,
    ];

    /// Parses a command-line name (`lrvm` means `lrvm-flush`).
    pub fn parse(s: &str) -> Option<EngineKind> {
        match s {
            "vista" => Some(EngineKind::Vista),
            "lrvm" | "lrvm-flush" => Some(EngineKind::LrvmFlush),
            "lrvm-noflush" => Some(EngineKind::LrvmNoFlush),
            _ => None,
        }
    }

    /// Whether this is one of the lrvm modes.
    pub fn is_lrvm(self) -> bool {
        !matches!(self, EngineKind::Vista)
    }
}

/// What kind of crash a check assumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrashModel {
    /// The process died; the machine (page cache, memory image) did not.
    Process,
    /// Power was lost: only what the engine synced (vista: the last checkpoint) is left.
    Power,
}

/// How an open found the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// New files.
    Created,
    /// vista: the memory image survived. lrvm: always (it has no memory image).
    Warm,
    /// vista: loaded from the disk image (the memory image was gone).
    Cold,
}

/// Where an engine keeps its files and how it is configured.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Directory of the engine's files (a memory file system keeps cycles cheap).
    pub dir: PathBuf,
    /// Bytes the workload uses.
    pub state_len: u64,
    /// vista: the guard against wild stores.
    pub protection: vista::Protection,
    /// Emulate power loss faithfully: lrvm keeps unsynced writes in process memory so a
    /// kill loses them; vista records the disk image's and journal's writes
    /// (`RioOptions::record_writes`) so a power cut can drop and tear the unsynced ones.
    pub emulate_power_loss: bool,
}

/// An engine's files and configuration: opens [`Store`]s.
pub trait Engine: std::fmt::Debug {
    /// Which engine.
    fn kind(&self) -> EngineKind;
    /// Deletes every file and creates the engine afresh with `initial` committed and
    /// durable.
    ///
    /// # Errors
    /// Engine and I/O errors.
    fn reset(&self, initial: &[u8]) -> Result<()>;
    /// Opens (and so recovers) the engine.
    ///
    /// # Errors
    /// Engine errors: a damaged file, a lock held elsewhere...
    fn open(&self) -> Result<Box<dyn Store>>;
    /// Every file of the persistent state, existing or not (for snapshots).
    fn files(&self) -> Vec<PathBuf>;
    /// The files that survive power loss (the rest are deleted by [`Engine::power_fail`]).
    fn durable_files(&self) -> Vec<PathBuf>;
    /// Makes the state what power loss would leave, once no process has it open:
    /// vista with `emulate_power_loss` cuts the power with rio-cache's model
    /// (`rio_cache::power::cut`: synced writes survive, unsynced ones are kept, lost or
    /// torn as a plan drawn from `seed` says) and without it only deletes the memory
    /// image; lrvm has nothing to do when its workers ran with `emulate_power_loss`
    /// (their unsynced writes died with them).
    ///
    /// # Errors
    /// I/O errors.
    fn power_fail(&self, seed: u64) -> Result<()>;
    /// What the power cuts so far did (a line for the report), if the engine counts.
    fn power_summary(&self) -> Option<String> {
        None
    }
    /// The engine's named crash points, including those of the layers under it.
    fn crash_points(&self) -> Vec<&'static str>;
    /// The crash points that recovery passes.
    fn recovery_points(&self) -> Vec<&'static str>;
    /// Whether an acknowledged `op` must survive a crash of kind `model`.
    fn survives(&self, op: OpKind, model: CrashModel) -> bool;
    /// Whether after a crash of kind `model` the state must be exactly that of the last
    /// durable operation (vista after power loss: the last completed checkpoint), not
    /// merely contain it.
    fn exact_durable(&self, model: CrashModel) -> bool;
}

/// A view of a store's committed bytes.
pub type State<'a> = Box<dyn std::ops::Deref<Target = [u8]> + 'a>;

/// An open engine.
pub trait Store {
    /// How the open found the state.
    fn start(&self) -> Start;
    /// What the open's recovery did: `(lanes rolled back, undo records undone)`, for
    /// engines that report it (vista).
    fn recovery_report(&self) -> Option<(u32, u64)> {
        None
    }
    /// The committed bytes `[0, state_len)` (a view that may hold a lock until dropped).
    ///
    /// # Errors
    /// Engine errors.
    fn state(&self) -> Result<State<'_>>;
    /// Runs one operation to its end.
    ///
    /// # Errors
    /// Engine errors.
    fn run(&mut self, txn: &Txn) -> Result<()>;
    /// Closes cleanly, reporting errors.
    ///
    /// # Errors
    /// Engine errors.
    fn close(self: Box<Self>) -> Result<()>;
    /// The address of the mapped byte 0 of the state (for wild stores), and the range
    /// of addresses around it that are mapped: `(data, mapped_from, mapped_to)`.
    ///
    /// # Errors
    /// Engine errors.
    fn addresses(&self) -> Result<(usize, usize, usize)>;
}

/// Removes `path` if it exists.
///
/// # Errors
/// I/O errors other than "not found".
pub fn remove_if_exists(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
