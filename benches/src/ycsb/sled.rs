//! sled 0.34, one [`Db`] shared by every thread, with its periodic flush off
//! (`flush_every_ms(None)`): a read is `get` + copy; an update is one `insert`, sled's
//! atomic single-key write, which returns the old value (it must have been there: an
//! update never inserts). sled has no reader or writer lock to wait on: its B-link tree
//! is lock-free, so both threads update at once. Keys are big-endian `u64` (in key order
//! in the tree), values the 100 bytes. Everything else is sled's default (`Mode::LowSpace`,
//! a 1 GiB page cache, no compression).
//!
//! Durability. With the flush off, a write is in sled's in-memory log buffers when
//! `insert` returns; it reaches the file when a buffer fills or on `flush`. So, as for
//! `redb` with `Durability::None` and unlike vista's memory or LMDB's `NO_SYNC`, a process
//! crash loses the recent updates (the database reopens whole at an earlier point).

use std::path::Path;

use ::sled::{Config, Db};
use anyhow::{Context, Result};

use super::{value, Client, Store, Value, VALUE_LEN};

/// A sled database holding the records.
pub struct SledStore {
    db: Db,
    // Dropped last: the directory outlives the database's files.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl SledStore {
    /// Creates a database in a fresh directory under `parent`, loads `records` records and
    /// flushes them to the file.
    ///
    /// # Errors
    /// sled's or the file system's error.
    pub fn open(parent: &Path, records: u64) -> Result<SledStore> {
        let dir = tempfile::Builder::new()
            .prefix("ycsb-sled-")
            .tempdir_in(parent)?;
        let db = Config::new()
            .path(dir.path().join("db"))
            .flush_every_ms(None)
            .open()
            .context("opening sled")?;
        for key in 0..records {
            db.insert(key.to_be_bytes(), value(key, 0).as_slice())?;
        }
        db.flush()?;
        Ok(SledStore { db, dir })
    }
}

struct SledClient<'a> {
    db: &'a Db,
}

impl Client for SledClient<'_> {
    fn read(&mut self, key: u64, out: &mut Value) -> Result<u64> {
        let v = self
            .db
            .get(key.to_be_bytes())?
            .with_context(|| format!("key {key} missing"))?;
        anyhow::ensure!(v.len() == VALUE_LEN, "key {key}: {} bytes", v.len());
        out.copy_from_slice(&v);
        Ok(0)
    }

    fn update(&mut self, key: u64, value: &Value) -> Result<u64> {
        let old = self.db.insert(key.to_be_bytes(), value.as_slice())?;
        // Inserted, not replaced: the key was missing (the stray key fails the check too).
        anyhow::ensure!(old.is_some(), "key {key} missing");
        Ok(0)
    }
}

impl Store for SledStore {
    fn client(&self, _thread: u64) -> Result<Box<dyn Client + '_>> {
        Ok(Box::new(SledClient { db: &self.db }))
    }

    fn entries(&self, f: &mut dyn FnMut(u64, &Value) -> Result<()>) -> Result<()> {
        for entry in self.db.iter() {
            let (k, v) = entry?;
            let key = u64::from_be_bytes(
                k.as_ref()
                    .try_into()
                    .with_context(|| format!("a key of {} bytes", k.len()))?,
            );
            let v: &Value = v
                .as_ref()
                .try_into()
                .with_context(|| format!("key {key}: {} bytes", v.len()))?;
            f(key, v)?;
        }
        Ok(())
    }
}
