//! Debit-credit from many threads at once, on vista and on peers with the locking a user
//! of each would need (the `threads` binary runs it; see `docs/benchmarks.md#threads`).
//!
//! Each transaction adds a delta to one account, its teller and its branch, and writes a
//! 50-byte history record into its thread's own ring (a shared history head would make
//! every transaction conflict). Tables: [`ACCOUNTS`] accounts, [`TELLERS`] tellers and
//! [`BRANCHES`] branches of [`RECORD`] bytes whose first 8 bytes are the balance
//! (little-endian `i64`). [`Shape::Uniform`] picks the branch among all of them;
//! [`Shape::Hotspot`] among [`HOT_BRANCHES`] (and their tellers), so most transactions
//! meet on a few records.
//!
//! Every engine implements [`Bank`]; each thread gets its own [`Teller`] (SQLite needs a
//! connection per thread). After a run, [`Bank::totals`] must show the accounts, the
//! tellers and the branches each summing to the deltas of every committed transaction: a
//! lost update (two transactions interleaving on one balance) breaks that equality, so the
//! check catches locking that does not isolate.
//!
//! [`sps`] and [`ptm`] run the persistent transactional memories' SPS benchmark from many
//! threads, on vista and on those libraries' own builds, for the `sps` binary.

use anyhow::{ensure, Result};
use rand::rngs::SmallRng;
use rand::Rng;

pub mod lmdb;
pub mod plot;
#[cfg(feature = "pmdk")]
pub mod pmdk;
pub mod ptm;
pub mod run;
pub mod sps;
pub mod sqlite;
pub mod table;
pub mod vista;

/// Bytes per account, teller and branch record.
pub const RECORD: u64 = 100;
/// Accounts.
pub const ACCOUNTS: u64 = 100_000;
/// Tellers (ten per branch).
pub const TELLERS: u64 = 10_000;
/// Branches.
pub const BRANCHES: u64 = 1_000;
/// Tellers per branch.
pub const TELLERS_PER_BRANCH: u64 = TELLERS / BRANCHES;
/// Branches a [`Shape::Hotspot`] transaction picks from.
pub const HOT_BRANCHES: u64 = 4;
/// Bytes of one history record.
pub const HISTORY_LEN: u64 = 50;
/// History records in each thread's ring.
pub const HISTORY_PER_THREAD: u64 = 8192;
/// The most threads a run may use (each has its own history ring).
pub const MAX_THREADS: u64 = 64;
/// Account, teller and branch records in all.
pub const RECORDS: u64 = ACCOUNTS + TELLERS + BRANCHES;

/// Where each table starts in the flat layout vista and PMDK use: the record tables, then
/// the history rings.
pub const HISTORY_OFF: u64 = RECORDS * RECORD;
/// Bytes of the flat layout.
pub const FLAT_LEN: u64 = HISTORY_OFF + MAX_THREADS * HISTORY_PER_THREAD * HISTORY_LEN;

/// Which branches transactions pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Any of the [`BRANCHES`].
    Uniform,
    /// One of [`HOT_BRANCHES`].
    Hotspot,
}

impl Shape {
    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Uniform => "uniform",
            Shape::Hotspot => "hotspot",
        }
    }
}

/// One debit-credit transaction. Records are numbered globally: accounts first, then
/// tellers, then branches, so `account < teller < branch` always (the order in which
/// per-record locks are taken).
#[derive(Debug, Clone)]
pub struct Op {
    /// Record number of the account.
    pub account: u64,
    /// Record number of the teller.
    pub teller: u64,
    /// Record number of the branch.
    pub branch: u64,
    /// What is added to each of the three balances.
    pub delta: i64,
    /// The history slot (global, `thread * HISTORY_PER_THREAD + n % HISTORY_PER_THREAD`).
    pub slot: u64,
    /// The history record.
    pub history: [u8; HISTORY_LEN as usize],
}

impl Op {
    /// The `n`th transaction of thread `thread`.
    pub fn generate(rng: &mut SmallRng, shape: Shape, thread: u64, n: u64) -> Op {
        let branches = match shape {
            Shape::Uniform => BRANCHES,
            Shape::Hotspot => HOT_BRANCHES,
        };
        let branch = rng.gen_range(0..branches);
        let teller = branch * TELLERS_PER_BRANCH + rng.gen_range(0..TELLERS_PER_BRANCH);
        let account = rng.gen_range(0..ACCOUNTS);
        let delta: i64 = rng.gen_range(-99_999..=99_999);
        let mut history = [0u8; HISTORY_LEN as usize];
        history[..8].copy_from_slice(&n.to_le_bytes());
        history[8..16].copy_from_slice(&account.to_le_bytes());
        history[16..24].copy_from_slice(&teller.to_le_bytes());
        history[24..32].copy_from_slice(&branch.to_le_bytes());
        history[32..40].copy_from_slice(&delta.to_le_bytes());
        Op {
            account,
            teller: ACCOUNTS + teller,
            branch: ACCOUNTS + TELLERS + branch,
            delta,
            slot: thread * HISTORY_PER_THREAD + n % HISTORY_PER_THREAD,
            history,
        }
    }

    /// The three balance records, in ascending order.
    pub fn records(&self) -> [u64; 3] {
        [self.account, self.teller, self.branch]
    }
}

/// Offset of record `id`'s balance in the flat layout.
pub fn record_offset(id: u64) -> u64 {
    id * RECORD
}

/// Offset of history slot `slot` in the flat layout.
pub fn history_offset(slot: u64) -> u64 {
    HISTORY_OFF + slot * HISTORY_LEN
}

/// Adds `delta` to the little-endian `i64` in `balance[..8]`.
pub fn add(balance: &mut [u8], delta: i64) {
    let v = i64::from_le_bytes(balance[..8].try_into().expect("8 bytes")).wrapping_add(delta);
    balance[..8].copy_from_slice(&v.to_le_bytes());
}

/// The sums of the three tables' balances.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Sum over accounts.
    pub accounts: i64,
    /// Sum over tellers.
    pub tellers: i64,
    /// Sum over branches.
    pub branches: i64,
}

impl Totals {
    /// Adds balance `value` of record `id` to its table's sum.
    pub fn add(&mut self, id: u64, value: i64) {
        let sum = if id < ACCOUNTS {
            &mut self.accounts
        } else if id < ACCOUNTS + TELLERS {
            &mut self.tellers
        } else {
            &mut self.branches
        };
        *sum = sum.wrapping_add(value);
    }

    /// Checks that each table sums to `committed`, the deltas of every committed
    /// transaction.
    ///
    /// # Errors
    /// Which sums differ.
    pub fn check(&self, committed: i64) -> Result<()> {
        ensure!(
            self.accounts == committed && self.tellers == committed && self.branches == committed,
            "balances lost updates: accounts {}, tellers {}, branches {}, committed deltas {committed}",
            self.accounts,
            self.tellers,
            self.branches
        );
        Ok(())
    }
}

/// An engine holding the bank, shared by every thread of a run.
pub trait Bank: Sync {
    /// A handle for thread `thread` (below [`MAX_THREADS`]), used by that thread only.
    ///
    /// # Errors
    /// The engine's error.
    fn teller(&self, thread: u64) -> Result<Box<dyn Teller + '_>>;

    /// Sums the three tables (called while no thread runs transactions).
    ///
    /// # Errors
    /// The engine's error.
    fn totals(&self) -> Result<Totals>;
}

/// One thread's handle on a [`Bank`].
pub trait Teller {
    /// Runs `op` as one transaction until it commits; returns how many times it was tried
    /// again (after a conflict or a busy lock).
    ///
    /// # Errors
    /// The engine's error; a transaction that fails has not committed.
    fn transfer(&mut self, op: &Op) -> Result<u64>;
}

/// The engines of the thread suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// vista: concurrent transactions, a lane each, range locks, `Segment::transaction`
    /// retrying conflicts.
    Vista,
    /// vista with every transaction under one global mutex (what a program needed before
    /// segments were `Sync`).
    VistaMutex,
    /// PMDK's libpmemobj under one global mutex (feature `pmdk`).
    PmdkGlobal,
    /// PMDK's libpmemobj with a mutex per record, taken in record order (feature `pmdk`).
    PmdkObject,
    /// LMDB, write-map, no sync: its write transactions are serialised by LMDB's writer lock.
    Lmdb,
    /// SQLite in WAL mode, `synchronous=OFF`, a connection per thread, `BEGIN IMMEDIATE`
    /// tried again (after a yield) while another connection writes.
    SqliteWal,
}

impl Engine {
    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Vista => "vista",
            Engine::VistaMutex => "vista-mutex",
            Engine::PmdkGlobal => "pmdk-global",
            Engine::PmdkObject => "pmdk-object",
            Engine::Lmdb => "lmdb",
            Engine::SqliteWal => "sqlite-wal",
        }
    }

    /// Whether this build can run it (PMDK needs the `pmdk` feature).
    pub fn available(self) -> bool {
        !matches!(self, Engine::PmdkGlobal | Engine::PmdkObject) || cfg!(feature = "pmdk")
    }

    /// Every engine of this build.
    pub fn all() -> Vec<Engine> {
        [
            Engine::Vista,
            Engine::VistaMutex,
            Engine::PmdkGlobal,
            Engine::PmdkObject,
            Engine::Lmdb,
            Engine::SqliteWal,
        ]
        .into_iter()
        .filter(|e| e.available())
        .collect()
    }

    /// Opens a fresh bank with zero balances; files go under `dir`.
    ///
    /// # Errors
    /// The engine's error; a PMDK engine in a build without the `pmdk` feature.
    pub fn open(self, dir: &std::path::Path) -> Result<Box<dyn Bank>> {
        Ok(match self {
            Engine::Vista | Engine::VistaMutex => Box::new(vista::VistaBank::open(
                dir,
                &vista::default_options(),
                self == Engine::VistaMutex,
            )?),
            #[cfg(feature = "pmdk")]
            Engine::PmdkGlobal => Box::new(pmdk::PmdkBank::open(pmdk::Locking::Global)?),
            #[cfg(feature = "pmdk")]
            Engine::PmdkObject => Box::new(pmdk::PmdkBank::open(pmdk::Locking::PerRecord)?),
            #[cfg(not(feature = "pmdk"))]
            Engine::PmdkGlobal | Engine::PmdkObject => {
                anyhow::bail!("{} needs the `pmdk` feature", self.name())
            }
            Engine::Lmdb => Box::new(lmdb::LmdbBank::open(dir)?),
            Engine::SqliteWal => Box::new(sqlite::SqliteBank::open(dir)?),
        })
    }
}
