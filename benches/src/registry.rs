//! The list of engines the suite knows, and how to add one.
//!
//! # Adding an adapter
//!
//! 1. Write a type that implements [`Engine`]: an `open(layout, ...)`
//!    constructor that creates a zeroed segment of `layout.len()` bytes (a segment engine
//!    needs nothing else from the layout), and `transact`, which begins a transaction, calls
//!    the body with a [`Txn`](crate::engine::Txn) whose `read` copies bytes out and whose
//!    `write` declares the range and copies bytes in, then commits; on a body error it rolls
//!    back and returns the error. Put it in its own module and add the crate to
//!    `[dependencies]`. `src/vista.rs` is the shortest real example:
//!
//!    ```ignore
//!    impl Engine for Vista {
//!        fn transact(&mut self, body: &mut Body<'_>) -> anyhow::Result<()> {
//!            let mut tx = self.segment().begin()?;      // the engine's RAII transaction
//!            match body(&mut VistaTxn(&mut tx)) {
//!                Ok(()) => Ok(tx.commit()?),
//!                Err(e) => { tx.abort()?; Err(e) }
//!            }
//!        }
//!    }
//!    // VistaTxn::write(off, data) = tx.write (set_range + copy); read = copy out.
//!    ```
//!
//!    An engine that does background work (truncation, checkpoints) can report it through
//!    [`Engine::counters`]; the suite records what moved during each measurement.
//!
//! 2. Register each configuration in [`engines`] with one line:
//!
//!    ```ignore
//!    EngineSpec::new("vista-pkey", "Vista, pkey-protected segment", |o| {
//!        Ok(Box::new(crate::vista::Vista::open(o.layout, o.scratch, Protection::Pkey, Writeback::Manual)?))
//!    })
//!    .probe(crate::sys::pkeys_supported), // optional: skip where the machine can't
//!    // also: .flushes_to_disk() (criterion skips it), .cannot_abort() (RVM no-restore)
//!    ```
//!
//!    The table's ratio reference and the charts' "Vista, default guard" are the vista
//!    configuration `Protection::Auto` resolves to on the machine that runs the suite
//!    ([`default_engine`]), falling back to [`REFERENCE_FALLBACK`] for the ratios.
//!
//! 3. `cargo test -p benches` now runs the new adapter through every workload and checks
//!    the data (tests/adapters.rs iterates over [`engines`]); `benches/txn.rs` picks it up
//!    for the criterion micro-benchmarks and `benches smoke` for CI too.

use std::path::Path;

use ::lrvm::{CommitMode, RestoreMode};
use ::vista::{Protection, Writeback};
use anyhow::Result;

use crate::engine::{Engine, Layout};
use crate::floor::{Floor, Guard};

/// What an engine is opened with.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions<'a> {
    /// The segment's tables; its length is the segment size.
    pub layout: &'a Layout,
    /// A directory on a real file system for engines that keep files (a fresh
    /// subdirectory is made inside it per open).
    pub scratch: &'a Path,
}

type Opener = Box<dyn Fn(OpenOptions<'_>) -> Result<Box<dyn Engine>> + Send + Sync>;

/// One engine configuration: a name, a description, and how to open it.
pub struct EngineSpec {
    /// Short name used in tables and `--engines` (`floor-noguard`, `lmdb-nosync`, ...).
    pub name: &'static str,
    /// One line on what the configuration is and what durability it promises.
    pub about: &'static str,
    open: Opener,
    probe: fn() -> std::io::Result<()>,
    /// Commits wait for a disk flush (milliseconds each here); criterion skips these.
    pub flushes_to_disk: bool,
    /// A failed transaction body is rolled back (false for RVM's no-restore mode, whose
    /// adapter refuses further transactions instead).
    pub can_abort: bool,
}

impl std::fmt::Debug for EngineSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineSpec")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl EngineSpec {
    /// A configuration opened by `open`.
    pub fn new(
        name: &'static str,
        about: &'static str,
        open: impl Fn(OpenOptions<'_>) -> Result<Box<dyn Engine>> + Send + Sync + 'static,
    ) -> EngineSpec {
        EngineSpec {
            name,
            about,
            open: Box::new(open),
            probe: || Ok(()),
            flushes_to_disk: false,
            can_abort: true,
        }
    }

    /// Adds a check that this machine can run the configuration at all.
    #[must_use]
    pub fn probe(mut self, probe: fn() -> std::io::Result<()>) -> EngineSpec {
        self.probe = probe;
        self
    }

    /// Marks a configuration whose commits wait for the disk.
    #[must_use]
    pub fn flushes_to_disk(mut self) -> EngineSpec {
        self.flushes_to_disk = true;
        self
    }

    /// Marks a configuration that cannot roll a failed body back (see [`EngineSpec::can_abort`]).
    #[must_use]
    pub fn cannot_abort(mut self) -> EngineSpec {
        self.can_abort = false;
        self
    }

    /// `Err(reason)` if this machine cannot run the configuration (it is then reported as
    /// skipped, never measured).
    ///
    /// # Errors
    /// The reason.
    pub fn supported(&self) -> std::result::Result<(), String> {
        (self.probe)().map_err(|e| e.to_string())
    }

    /// Opens a fresh, zeroed segment.
    ///
    /// # Errors
    /// The engine's error.
    pub fn open(&self, options: OpenOptions<'_>) -> Result<Box<dyn Engine>> {
        (self.open)(options)
    }
}

/// The ratio reference when the default engine ([`default_engine`]) did not run in a
/// workload; when neither did, the first engine measured there is the reference.
pub const REFERENCE_FALLBACK: &str = "vista-none";

/// The vista configuration that runs with `protection`, by name (`None` for
/// [`Protection::Auto`], which is not a configuration until it is resolved).
pub fn vista_engine(protection: Protection) -> Option<&'static str> {
    match protection {
        Protection::None => Some("vista-none"),
        Protection::Mprotect => Some("vista-mprotect"),
        Protection::Alias => Some("vista-alias"),
        Protection::Pkey => Some("vista-pkey"),
        Protection::Auto => None,
    }
}

/// The vista configuration a program gets by default on this machine: what
/// `Protection::Auto` resolves to here, asked the way rio-cache resolves it
/// (`vista-pkey` where protection keys can be allocated, else `vista-alias`).
pub fn default_engine() -> &'static str {
    let auto = ::rio_cache::inspect::auto_protection();
    vista_engine(auto).expect("Auto resolves to a concrete protection mode")
}

/// Every engine configuration of this build, in report order.
pub fn all_engines() -> Vec<EngineSpec> {
    let mut v = vec![
        EngineSpec::new(
            "floor-noguard",
            "memcpy undo floor: before-image to log, copy, one store",
            |o| Ok(Box::new(Floor::open(o.layout, Guard::None)?)),
        ),
        EngineSpec::new(
            "floor-mprotect",
            "floor + mprotect RW/RO around each write",
            |o| Ok(Box::new(Floor::open(o.layout, Guard::Mprotect)?)),
        ),
        EngineSpec::new(
            "floor-pkey",
            "floor + protection key opened/closed around each write",
            |o| Ok(Box::new(Floor::open(o.layout, Guard::Pkey)?)),
        )
        .probe(crate::sys::pkeys_supported),
        vista(
            "vista-none",
            "Vista, unguarded segment, memory image on /dev/shm",
            Protection::None,
            Writeback::Manual,
        ),
        vista(
            "vista-mprotect",
            "Vista, mprotect write windows (never the default: Auto picks pkey or alias), memory image on /dev/shm",
            Protection::Mprotect,
            Writeback::Manual,
        ),
        vista(
            "vista-alias",
            "Vista, read-only segment + writable alias at a random address (Auto without PKU)",
            Protection::Alias,
            Writeback::Manual,
        ),
        vista(
            "vista-pkey",
            "Vista, protection-key write windows (Auto with PKU), memory image on /dev/shm",
            Protection::Pkey,
            Writeback::Manual,
        )
        .probe(crate::sys::pkeys_supported),
        vista(
            "vista-none-writeback",
            "vista-none + rio-cache's default background writeback (5 s / 16 MiB dirty)",
            Protection::None,
            Writeback::default(),
        ),
    ];
    v.extend(RVM.iter().map(rvm));
    #[cfg(feature = "pmdk")]
    v.push(EngineSpec::new(
        "pmdk",
        "libpmemobj tx_add_range undo log, pool on /dev/shm",
        |o| Ok(Box::new(crate::pmdk::Pmdk::open(o.layout)?)),
    ));
    // Without the feature the row still appears, as skipped, so a table never silently
    // lacks the peer.
    #[cfg(not(feature = "pmdk"))]
    v.push(
        EngineSpec::new(
            "pmdk",
            "libpmemobj (not built: needs --features pmdk and libpmemobj-dev)",
            |_| anyhow::bail!("pmdk is not built in"),
        )
        .probe(|| {
            Err(std::io::Error::other(
                "not built: run with --features pmdk (needs libpmemobj-dev)",
            ))
        }),
    );
    v.extend([
        EngineSpec::new(
            "lmdb-nosync",
            "LMDB write-map, NO_SYNC: one write txn per txn",
            |o| {
                Ok(Box::new(crate::lmdb::Lmdb::open(
                    o.layout, o.scratch, false,
                )?))
            },
        ),
        EngineSpec::new(
            "lmdb-sync",
            "LMDB write-map, msync+fsync at each commit",
            |o| {
                Ok(Box::new(crate::lmdb::Lmdb::open(
                    o.layout, o.scratch, true,
                )?))
            },
        )
        .flushes_to_disk(),
        EngineSpec::new(
            "sqlite-off",
            "SQLite WAL, synchronous=OFF, prepared statements",
            |o| {
                Ok(Box::new(crate::sqlite::Sqlite::open(
                    o.layout, o.scratch, false,
                )?))
            },
        ),
        EngineSpec::new(
            "sqlite-full",
            "SQLite WAL, synchronous=FULL (fsync per commit)",
            |o| {
                Ok(Box::new(crate::sqlite::Sqlite::open(
                    o.layout, o.scratch, true,
                )?))
            },
        )
        .flushes_to_disk(),
    ]);
    v
}

fn vista(
    name: &'static str,
    about: &'static str,
    protection: Protection,
    writeback: Writeback,
) -> EngineSpec {
    EngineSpec::new(name, about, move |o| {
        Ok(Box::new(crate::vista::Vista::open(
            o.layout, o.scratch, protection, writeback,
        )?))
    })
}

/// One LRVM configuration: name, description, restore mode, commit mode, files on
/// `/dev/shm` (RVM on Rio) rather than the scratch directory.
struct RvmConfig(&'static str, &'static str, RestoreMode, CommitMode, bool);

const RVM: [RvmConfig; 8] = {
    use CommitMode::{Flush, NoFlush};
    use RestoreMode::{NoRestore, Restore};
    [
        RvmConfig(
            "rvm-rio-restore-flush",
            "LRVM on Rio (log + data on /dev/shm), undo copy, log write + sync per commit",
            Restore,
            Flush,
            true,
        ),
        RvmConfig(
            "rvm-rio-restore-noflush",
            "LRVM on Rio, undo copy, commits buffered (64 KiB)",
            Restore,
            NoFlush,
            true,
        ),
        RvmConfig(
            "rvm-rio-norestore-flush",
            "LRVM on Rio, no undo copy, log write + sync per commit",
            NoRestore,
            Flush,
            true,
        ),
        RvmConfig(
            "rvm-rio-norestore-noflush",
            "LRVM on Rio, no undo copy, commits buffered (64 KiB)",
            NoRestore,
            NoFlush,
            true,
        ),
        RvmConfig(
            "rvm-restore-flush",
            "LRVM, log + data on disk, undo copy, log write + fdatasync per commit",
            Restore,
            Flush,
            false,
        ),
        RvmConfig(
            "rvm-restore-noflush",
            "LRVM on disk, undo copy, commits buffered (fdatasync per 64 KiB)",
            Restore,
            NoFlush,
            false,
        ),
        RvmConfig(
            "rvm-norestore-flush",
            "LRVM on disk, no undo copy, log write + fdatasync per commit",
            NoRestore,
            Flush,
            false,
        ),
        RvmConfig(
            "rvm-norestore-noflush",
            "LRVM on disk, no undo copy, commits buffered (fdatasync per 64 KiB)",
            NoRestore,
            NoFlush,
            false,
        ),
    ]
};

fn rvm(c: &RvmConfig) -> EngineSpec {
    let &RvmConfig(name, about, restore, commit, rio) = c;
    let mut spec = EngineSpec::new(name, about, move |o| {
        let dir = if rio {
            Path::new(crate::lrvm::RIO_DIR)
        } else {
            o.scratch
        };
        Ok(Box::new(crate::lrvm::Rvm::open(
            o.layout, dir, restore, commit,
        )?))
    });
    if !rio && commit == CommitMode::Flush {
        spec = spec.flushes_to_disk();
    }
    if restore == RestoreMode::NoRestore {
        spec = spec.cannot_abort();
    }
    spec
}

/// The engines whose names appear in `filter` (all when `filter` is empty), in report order.
///
/// # Errors
/// A name in `filter` that no engine has.
pub fn engines(filter: &[String]) -> Result<Vec<EngineSpec>> {
    let all = all_engines();
    if let Some(unknown) = filter
        .iter()
        .find(|f| !all.iter().any(|e| e.name == f.as_str()))
    {
        let names: Vec<_> = all.iter().map(|e| e.name).collect();
        anyhow::bail!(
            "unknown engine {unknown:?}; this build has: {}",
            names.join(", ")
        );
    }
    Ok(all
        .into_iter()
        .filter(|e| filter.is_empty() || filter.iter().any(|f| f == e.name))
        .collect())
}
