//! redb, one [`Database`] shared by every thread, updates committed with
//! [`Durability::None`]: a read is a read transaction (`begin_read` + `open_table` +
//! `get` + copy), which runs beside the writer without waiting (redb is MVCC, like LMDB);
//! an update is a write transaction (`begin_write` + `open_table` + `get` + `insert` +
//! `commit`), and redb lets one write transaction in at a time (`begin_write` waits for
//! the current one), so the threads take turns as with LMDB. Keys are `u64` (redb orders
//! them as numbers), values the 100 bytes as `&[u8]`.
//!
//! Durability. The records are loaded in one transaction with redb's default
//! [`Durability::Immediate`] (written and fsynced); every update then commits with
//! [`Durability::None`]. That is the durability class the issue asks for and the nearest
//! redb has to LMDB's `NO_SYNC`, but it is **weaker** than vista's memory and LMDB's
//! `NO_SYNC`: in redb 5.0 a `None` commit leaves its pages in redb's own write buffer in
//! the process's memory and updates the header only in memory (`PagedCachedFile::
//! write_barrier`, `TransactionalMemory::non_durable_commit`), so a process crash loses
//! every update since the last durable commit (the file reopens at that commit, whole).
//! vista's memory image and LMDB's write-map are in the OS's page cache when a commit
//! returns, so they survive a process crash and may lose recent commits only in a machine
//! crash. redb has no setting that writes at commit but does not fsync; its durable commit
//! fsyncs (the class of `sqlite-normal` and stronger).

use std::path::Path;

use ::redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use anyhow::{Context, Result};

use super::{value, Client, Store, Value, VALUE_LEN};

/// The one table: key to the 100-byte value.
const RECORDS: TableDefinition<'static, u64, &[u8]> = TableDefinition::new("ycsb");

/// A redb database holding the records.
pub struct RedbStore {
    db: Database,
    // Dropped last: the directory outlives the database file.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Creates a database in a fresh directory under `parent` and loads `records` records
    /// (one durable write transaction).
    ///
    /// # Errors
    /// redb's or the file system's error.
    pub fn open(parent: &Path, records: u64) -> Result<RedbStore> {
        let dir = tempfile::Builder::new()
            .prefix("ycsb-redb-")
            .tempdir_in(parent)?;
        // The default builder: a 1 GiB page cache, far more than 100,000 records need, so
        // reads are served from memory as LMDB's and vista's are.
        let db = Database::create(dir.path().join("ycsb.redb")).context("opening redb")?;
        let wtxn = db.begin_write()?;
        {
            let mut table = wtxn.open_table(RECORDS)?;
            for key in 0..records {
                // Ascending keys: redb appends to the last leaf.
                table.insert(key, value(key, 0).as_slice())?;
            }
        }
        wtxn.commit()?;
        Ok(RedbStore { db, dir })
    }
}

struct RedbClient<'a> {
    db: &'a Database,
}

impl Client for RedbClient<'_> {
    fn read(&mut self, key: u64, out: &mut Value) -> Result<u64> {
        let rtxn = self.db.begin_read()?;
        let table = rtxn.open_table(RECORDS)?;
        let v = table
            .get(key)?
            .with_context(|| format!("key {key} missing"))?;
        let v = v.value();
        anyhow::ensure!(v.len() == VALUE_LEN, "key {key}: {} bytes", v.len());
        out.copy_from_slice(v);
        Ok(0)
    }

    fn update(&mut self, key: u64, value: &Value) -> Result<u64> {
        let mut wtxn = self.db.begin_write()?;
        wtxn.set_durability(Durability::None)?;
        {
            let mut table = wtxn.open_table(RECORDS)?;
            // The key must exist: an update never inserts.
            anyhow::ensure!(table.get(key)?.is_some(), "key {key} missing");
            table.insert(key, value.as_slice())?;
        }
        wtxn.commit()?;
        Ok(0)
    }
}

impl Store for RedbStore {
    fn client(&self, _thread: u64) -> Result<Box<dyn Client + '_>> {
        Ok(Box::new(RedbClient { db: &self.db }))
    }

    fn entries(&self, f: &mut dyn FnMut(u64, &Value) -> Result<()>) -> Result<()> {
        let rtxn = self.db.begin_read()?;
        let table = rtxn.open_table(RECORDS)?;
        for entry in table.iter()? {
            let (key, v) = entry?;
            let (key, v) = (key.value(), v.value());
            let v: &Value = v
                .try_into()
                .with_context(|| format!("key {key}: {} bytes", v.len()))?;
            f(key, v)?;
        }
        Ok(())
    }
}
