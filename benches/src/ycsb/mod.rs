//! A YCSB-style key-value workload (Cooper et al., SoCC 2010) on vista's persistent hash
//! map `vista::PHashMap` and on the stores a user would pick instead (the `ycsb` binary
//! runs it; see `docs/benchmarks.md#ycsb`).
//!
//! Records are a `u64` key (`0..records`) and a [`VALUE_LEN`]-byte value. They are
//! loaded before anything is timed. Each operation is its own transaction: a read copies
//! one record's value out, an update replaces the value of an existing key. The mixes are
//! YCSB's core workloads A (50% reads, 50% updates), B (95/5) and C (reads only)
//! ([`Mix`]); keys are picked uniformly or by a Zipfian distribution with YCSB's constant
//! 0.99 over a shuffled key order ([`Dist`], [`zipf`]).
//!
//! Every value says what it is ([`value`]): its key, a version, filler derived from both,
//! and a checksum of the rest, so the check after a run ([`verify`]) needs no record of
//! which update won: every key must be present once, hold its own key and a value whose
//! checksum and filler recompute.
//!
//! Every engine implements [`Store`]; each thread gets its own [`Client`] (SQLite needs a
//! connection per thread, LMDB a transaction per thread).

use anyhow::{ensure, Result};
use rand::rngs::SmallRng;
use rand::Rng;

pub mod lmdb;
#[cfg(feature = "pmdk")]
pub mod pmdk;
pub mod redb;
pub mod run;
pub mod sled;
pub mod sqlite;
pub mod vista;
pub mod zipf;

/// Bytes of a value (YCSB's default record is ten 100-byte fields; one field here).
pub const VALUE_LEN: usize = 100;

/// A record's value. `[u8; 100]` is `bytemuck::Pod` in this build (vista turns on
/// bytemuck's `min_const_generics`), so `PHashMap<u64, Value>` stores it as it is.
pub type Value = [u8; VALUE_LEN];

/// The default record count.
pub const DEFAULT_RECORDS: u64 = 100_000;

/// The most threads a run may use (vista segments are opened with a lane each).
pub const MAX_THREADS: u64 = 64;

/// YCSB's core workloads that read and update single records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mix {
    /// Workload A, update heavy: 50% reads, 50% updates.
    A,
    /// Workload B, read mostly: 95% reads, 5% updates.
    B,
    /// Workload C, read only.
    C,
}

impl Mix {
    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mix::A => "A",
            Mix::B => "B",
            Mix::C => "C",
        }
    }

    /// The share of reads, 0..=1.
    pub fn read_share(self) -> f64 {
        match self {
            Mix::A => 0.5,
            Mix::B => 0.95,
            Mix::C => 1.0,
        }
    }

    /// Picks the next operation's kind.
    pub fn choose(self, rng: &mut SmallRng) -> Kind {
        if rng.gen::<f64>() < self.read_share() {
            Kind::Read
        } else {
            Kind::Update
        }
    }
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Copies one record's value out.
    Read,
    /// Replaces one existing record's value.
    Update,
}

/// How keys are picked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dist {
    /// Every key alike.
    Uniform,
    /// Zipfian with constant [`zipf::THETA`] over a shuffled key order.
    Zipfian,
}

impl Dist {
    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Dist::Uniform => "uniform",
            Dist::Zipfian => "zipfian",
        }
    }
}

/// Picks keys of `0..records` by a [`Dist`]; shared by every thread of a run (each
/// brings its own generator).
#[derive(Debug)]
pub struct Keys {
    records: u64,
    zipf: zipf::Scrambled,
}

impl Keys {
    /// A chooser over `records` keys; `seed` shuffles the Zipfian order.
    pub fn new(records: u64, seed: u64) -> Keys {
        Keys {
            records,
            zipf: zipf::Scrambled::new(records, zipf::THETA, seed),
        }
    }

    /// The number of keys.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// The next key under `dist`.
    pub fn next(&self, dist: Dist, rng: &mut SmallRng) -> u64 {
        match dist {
            Dist::Uniform => rng.gen_range(0..self.records),
            Dist::Zipfian => self.zipf.next(rng),
        }
    }
}

/// FNV-1a, 64 bits: the value checksum (any fixed hash would do; this one is short).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Bytes 16..92 of a value: a splitmix64 stream seeded by key and version.
fn filler(key: u64, version: u64, out: &mut [u8]) {
    let mut state = key ^ version.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for chunk in out.chunks_mut(8) {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

/// Where the checksum starts.
const SUM: usize = VALUE_LEN - 8;

/// The value of `key` at `version`: key (LE), version (LE), filler, FNV-1a of the first
/// 92 bytes.
pub fn value(key: u64, version: u64) -> Value {
    let mut v = [0u8; VALUE_LEN];
    v[..8].copy_from_slice(&key.to_le_bytes());
    v[8..16].copy_from_slice(&version.to_le_bytes());
    filler(key, version, &mut v[16..SUM]);
    let sum = fnv1a(&v[..SUM]);
    v[SUM..].copy_from_slice(&sum.to_le_bytes());
    v
}

/// The key a value says it belongs to (its first 8 bytes).
pub fn key_of(v: &Value) -> u64 {
    u64::from_le_bytes(v[..8].try_into().expect("8 bytes"))
}

/// Checks that `v` is a whole value of `key` (any version).
///
/// # Errors
/// What is wrong.
pub fn check_value(key: u64, v: &Value) -> Result<()> {
    ensure!(
        key_of(v) == key,
        "key {key} holds the value of key {}",
        key_of(v)
    );
    let version = u64::from_le_bytes(v[8..16].try_into()?);
    ensure!(
        *v == value(key, version),
        "key {key}: the value (version {version}) does not match its checksum or filler"
    );
    Ok(())
}

/// Checks a store after a run: each of `0..records` present exactly once with a whole
/// value of its own, nothing else. `entries` calls its argument on every stored record.
///
/// # Errors
/// The first problem, and how many records were wrong.
pub fn verify(records: u64, store: &dyn Store) -> Result<()> {
    let mut seen = vec![false; usize::try_from(records)?];
    let (mut count, mut bad, mut first) = (0u64, 0u64, None);
    store.entries(&mut |key, v| {
        count += 1;
        let problem = if key >= records {
            Some(format!("unexpected key {key}"))
        } else if std::mem::replace(&mut seen[key as usize], true) {
            Some(format!("key {key} seen twice"))
        } else {
            check_value(key, v).err().map(|e| e.to_string())
        };
        if let Some(p) = problem {
            bad += 1;
            first = first.take().or(Some(p));
        }
        Ok(())
    })?;
    if let Some(missing) = seen.iter().position(|s| !s) {
        bad += 1;
        first = first.or_else(|| Some(format!("key {missing} missing")));
    }
    ensure!(
        bad == 0,
        "{bad} problem(s) in {count} records (expected {records}), first: {}",
        first.unwrap_or_default()
    );
    Ok(())
}

/// An engine holding the records, shared by every thread of a run.
pub trait Store: Sync {
    /// A handle for thread `thread` (below [`MAX_THREADS`]), used by that thread only.
    ///
    /// # Errors
    /// The engine's error.
    fn client(&self, thread: u64) -> Result<Box<dyn Client + '_>>;

    /// Calls `f` on every stored record (while no thread runs operations).
    ///
    /// # Errors
    /// The engine's error or `f`'s.
    fn entries(&self, f: &mut dyn FnMut(u64, &Value) -> Result<()>) -> Result<()>;

    /// What the report should say about this store's configuration as it runs (vista:
    /// the protection `Auto` chose), if anything.
    fn describe(&self) -> Option<String> {
        None
    }
}

/// One thread's handle on a [`Store`].
pub trait Client {
    /// Copies the value of `key` into `out` in one read transaction; returns how many
    /// times it was tried again (conflicts, busy locks).
    ///
    /// # Errors
    /// The engine's error; a missing key.
    fn read(&mut self, key: u64, out: &mut Value) -> Result<u64>;

    /// Replaces the value of the existing `key` with `value` in one transaction;
    /// returns how many times it was tried again.
    ///
    /// # Errors
    /// The engine's error; a missing key.
    fn update(&mut self, key: u64, value: &Value) -> Result<u64>;
}

/// The engines of the YCSB runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// vista with `Options::default()` (only the size and lanes set): `Protection::Auto`,
    /// background writeback.
    VistaDefault,
    /// vista with `Protection::None` and `Writeback::Manual` (a checkpoint after loading,
    /// none while measuring).
    VistaNone,
    /// LMDB (heed), write-map, no sync.
    Lmdb,
    /// SQLite, WAL, `synchronous=OFF`.
    SqliteOff,
    /// SQLite, WAL, `synchronous=NORMAL`.
    SqliteNormal,
    /// PMDK's libpmemobj with an open-addressing hash map of this crate's in the pool
    /// (feature `pmdk`).
    Pmdk,
    /// redb, updates committed with `Durability::None`.
    Redb,
    /// sled 0.34, periodic flush off.
    Sled,
}

impl Engine {
    /// The name in tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Engine::VistaDefault => "vista-default",
            Engine::VistaNone => "vista-none",
            Engine::Lmdb => "lmdb",
            Engine::SqliteOff => "sqlite-off",
            Engine::SqliteNormal => "sqlite-normal",
            Engine::Pmdk => "pmdk",
            Engine::Redb => "redb",
            Engine::Sled => "sled",
        }
    }

    /// Whether it is one of vista's (the ratio columns compare these with the rest).
    pub fn is_vista(self) -> bool {
        matches!(self, Engine::VistaDefault | Engine::VistaNone)
    }

    /// Whether this build can run it (PMDK needs the `pmdk` feature).
    pub fn available(self) -> bool {
        self != Engine::Pmdk || cfg!(feature = "pmdk")
    }

    /// Every engine of this build.
    pub fn all() -> Vec<Engine> {
        [
            Engine::VistaDefault,
            Engine::VistaNone,
            Engine::Lmdb,
            Engine::SqliteOff,
            Engine::SqliteNormal,
            Engine::Pmdk,
            Engine::Redb,
            Engine::Sled,
        ]
        .into_iter()
        .filter(|e| e.available())
        .collect()
    }

    /// Opens a fresh store under `dir` and loads `records` records (version 0).
    ///
    /// # Errors
    /// The engine's error; PMDK in a build without the `pmdk` feature.
    pub fn open(self, dir: &std::path::Path, records: u64) -> Result<Box<dyn Store>> {
        Ok(match self {
            Engine::VistaDefault => Box::new(vista::VistaStore::open(
                dir,
                vista::Config::Default,
                records,
            )?),
            Engine::VistaNone => {
                Box::new(vista::VistaStore::open(dir, vista::Config::None, records)?)
            }
            Engine::Lmdb => Box::new(lmdb::LmdbStore::open(dir, records)?),
            Engine::SqliteOff => Box::new(sqlite::SqliteStore::open(
                dir,
                sqlite::Synchronous::Off,
                records,
            )?),
            Engine::SqliteNormal => Box::new(sqlite::SqliteStore::open(
                dir,
                sqlite::Synchronous::Normal,
                records,
            )?),
            #[cfg(feature = "pmdk")]
            Engine::Pmdk => Box::new(pmdk::PmdkStore::open(records)?),
            #[cfg(not(feature = "pmdk"))]
            Engine::Pmdk => anyhow::bail!("pmdk needs the `pmdk` feature"),
            Engine::Redb => Box::new(self::redb::RedbStore::open(dir, records)?),
            Engine::Sled => Box::new(self::sled::SledStore::open(dir, records)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn values_check_and_catch_damage() {
        let v = value(7, 3);
        check_value(7, &v).unwrap();
        assert!(check_value(8, &v).is_err());
        for i in [0, 9, 40, 95] {
            let mut bad = v;
            bad[i] ^= 1;
            assert!(check_value(7, &bad).is_err(), "a flip at byte {i} passed");
        }
        assert_ne!(value(7, 3)[16..], value(7, 4)[16..]);
    }

    #[test]
    fn mixes_choose_their_shares() {
        let mut rng = SmallRng::seed_from_u64(1);
        let n = 100_000;
        let reads = |mix: Mix, rng: &mut SmallRng| {
            (0..n).filter(|_| mix.choose(rng) == Kind::Read).count() as f64 / f64::from(n)
        };
        assert!((reads(Mix::A, &mut rng) - 0.5).abs() < 0.01);
        assert!((reads(Mix::B, &mut rng) - 0.95).abs() < 0.005);
        assert!((reads(Mix::C, &mut rng) - 1.0).abs() < f64::EPSILON);
    }

    #[test]
    fn uniform_keys_stay_in_range_and_cover_it() {
        let keys = Keys::new(100, 5);
        let mut rng = SmallRng::seed_from_u64(2);
        let mut seen = [false; 100];
        for _ in 0..10_000 {
            seen[keys.next(Dist::Uniform, &mut rng) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
    }
}
