//! LMDB (heed), write-map, no sync (`WRITE_MAP | NO_SYNC | NO_META_SYNC`): a read is a
//! read transaction (`read_txn` + `get` + copy), which runs beside the writer without
//! waiting; an update is a write transaction (`write_txn` + `put` + `commit`), and LMDB's
//! writer lock makes the threads take turns, one writer at a time, as LMDB requires.
//! Keys are big-endian `u64` (in key order in the B+tree), values the 100 bytes.

use std::path::Path;

use anyhow::{Context, Result};
use heed::byteorder::BigEndian;
use heed::types::{Bytes, U64};
use heed::{Database, Env, EnvFlags};

use super::{value, Client, Store, Value, VALUE_LEN};
use crate::sys;

type Records = Database<U64<BigEndian>, Bytes>;

/// An LMDB environment holding the records.
pub struct LmdbStore {
    env: Env,
    db: Records,
    // Dropped last: the directory outlives the environment's files.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for LmdbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmdbStore")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl LmdbStore {
    /// Creates an environment in a fresh directory under `parent` and loads `records`
    /// records (one write transaction).
    ///
    /// # Errors
    /// LMDB's or the file system's error.
    pub fn open(parent: &Path, records: u64) -> Result<LmdbStore> {
        let dir = tempfile::Builder::new()
            .prefix("ycsb-lmdb-")
            .tempdir_in(parent)?;
        // Leaf pages hold about 30 records of 116 bytes; copy-on-write needs room for
        // the old pages until a transaction ends. Four times the data and 256 MiB spare.
        let map_size =
            (usize::try_from(records * 4 * 128)? + (256 << 20)).next_multiple_of(1 << 20);
        let flags = EnvFlags::WRITE_MAP | EnvFlags::NO_SYNC | EnvFlags::NO_META_SYNC;
        let env = sys::open_lmdb(dir.path(), map_size, flags).context("opening LMDB")?;
        let mut wtxn = env.write_txn()?;
        let db: Records = env.create_database(&mut wtxn, None)?;
        for key in 0..records {
            // Ascending keys: LMDB appends to the last leaf.
            db.put(&mut wtxn, &key, &value(key, 0))?;
        }
        wtxn.commit()?;
        Ok(LmdbStore { env, db, dir })
    }
}

struct LmdbClient<'a> {
    env: &'a Env,
    db: Records,
}

impl Client for LmdbClient<'_> {
    fn read(&mut self, key: u64, out: &mut Value) -> Result<u64> {
        let rtxn = self.env.read_txn()?;
        let v = self
            .db
            .get(&rtxn, &key)?
            .with_context(|| format!("key {key} missing"))?;
        anyhow::ensure!(v.len() == VALUE_LEN, "key {key}: {} bytes", v.len());
        out.copy_from_slice(v);
        Ok(0)
    }

    fn update(&mut self, key: u64, value: &Value) -> Result<u64> {
        let mut wtxn = self.env.write_txn()?;
        // The key must exist: an update never inserts.
        anyhow::ensure!(self.db.get(&wtxn, &key)?.is_some(), "key {key} missing");
        self.db.put(&mut wtxn, &key, value)?;
        wtxn.commit()?;
        Ok(0)
    }
}

impl Store for LmdbStore {
    fn client(&self, _thread: u64) -> Result<Box<dyn Client + '_>> {
        Ok(Box::new(LmdbClient {
            env: &self.env,
            db: self.db,
        }))
    }

    fn entries(&self, f: &mut dyn FnMut(u64, &Value) -> Result<()>) -> Result<()> {
        let rtxn = self.env.read_txn()?;
        for entry in self.db.iter(&rtxn)? {
            let (key, v) = entry?;
            let v: &Value = v
                .try_into()
                .with_context(|| format!("key {key}: {} bytes", v.len()))?;
            f(key, v)?;
        }
        Ok(())
    }
}
