//! LMDB through heed: a B+tree on a memory-mapped file, copy-on-write, one writer.
//!
//! One LMDB write transaction per benchmark transaction. The environment is opened with
//! `WRITE_MAP` (LMDB writes pages in the map directly, its fastest mode); `lmdb-nosync` adds
//! `NO_SYNC`/`NO_META_SYNC` (commit does not flush: a process crash loses nothing, an OS crash
//! may lose recent commits), `lmdb-sync` keeps LMDB's default full flush (`msync` + `fsync`)
//! at every commit. Records are keyed by their global number (big-endian `u64`, so appends
//! land at the B+tree's right edge). A 4 KiB record does not fit in a 4 KiB leaf, so LMDB
//! stores it on two overflow pages and copies both on every update: that is LMDB's real cost
//! for page-sized values.

use std::path::Path;

use anyhow::{Context, Result};
use heed::byteorder::BigEndian;
use heed::types::{Bytes, U64};
use heed::{Database, Env, EnvFlags, RwTxn};

use crate::engine::{Body, Engine, Layout, Txn};
use crate::records::{RecordCache, RecordStore};
use crate::sys;

type Records = Database<U64<BigEndian>, Bytes>;

/// An LMDB environment holding one segment's records.
pub struct Lmdb {
    env: Env,
    db: Records,
    layout: Layout,
    cache: RecordCache,
    // Dropped last: the directory outlives the environment's files.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Lmdb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lmdb")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Lmdb {
    /// Creates an environment in a fresh directory under `parent` and stores every record of
    /// `layout`, zeroed, in one transaction.
    ///
    /// # Errors
    /// LMDB's or the file system's error.
    pub fn open(layout: &Layout, parent: &Path, sync: bool) -> Result<Lmdb> {
        let dir = tempfile::Builder::new()
            .prefix("lmdb-")
            .tempdir_in(parent)?;
        // Copy-on-write needs room for the old and new versions and the free list; records
        // of a page or more take overflow pages. The map is virtual; the file is sparse.
        let map_size = (usize::try_from(layout.len() * 4)? + (256 << 20)).next_multiple_of(1 << 20);
        let mut flags = EnvFlags::WRITE_MAP;
        if !sync {
            flags |= EnvFlags::NO_SYNC | EnvFlags::NO_META_SYNC;
        }
        let env = sys::open_lmdb(dir.path(), map_size, flags).context("opening LMDB")?;
        let mut wtxn = env.write_txn()?;
        let db: Records = env.create_database(&mut wtxn, None)?;
        let mut zeros = Vec::new();
        let mut result = Ok(());
        layout.for_each_record(|id, len| {
            zeros.resize(len, 0);
            if result.is_ok() {
                result = db.put(&mut wtxn, &id, &zeros);
            }
        });
        result.context("loading records")?;
        wtxn.commit()?;
        Ok(Lmdb {
            env,
            db,
            layout: layout.clone(),
            cache: RecordCache::default(),
            dir,
        })
    }
}

struct LmdbTxn<'a, 'e> {
    txn: &'a mut RwTxn<'e>,
    db: Records,
    layout: &'a Layout,
    cache: &'a mut RecordCache,
}

struct Store<'a, 'e> {
    txn: &'a mut RwTxn<'e>,
    db: Records,
}

impl RecordStore for Store<'_, '_> {
    fn get(&mut self, id: u64, out: &mut [u8]) -> Result<()> {
        let value = self
            .db
            .get(self.txn, &id)?
            .with_context(|| format!("record {id} missing"))?;
        anyhow::ensure!(value.len() == out.len(), "record {id} has the wrong length");
        out.copy_from_slice(value);
        Ok(())
    }

    fn put(&mut self, id: u64, data: &[u8]) -> Result<()> {
        Ok(self.db.put(self.txn, &id, data)?)
    }
}

impl Txn for LmdbTxn<'_, '_> {
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        let mut store = Store {
            txn: self.txn,
            db: self.db,
        };
        self.cache.read(self.layout, &mut store, off, buf)
    }

    fn write(&mut self, off: u64, data: &[u8]) -> Result<()> {
        let mut store = Store {
            txn: self.txn,
            db: self.db,
        };
        self.cache.write(self.layout, &mut store, off, data)
    }
}

impl Engine for Lmdb {
    fn transact(&mut self, body: &mut Body<'_>) -> Result<()> {
        let mut txn = self.env.write_txn()?;
        self.cache.begin();
        body(&mut LmdbTxn {
            txn: &mut txn,
            db: self.db,
            layout: &self.layout,
            cache: &mut self.cache,
        })?;
        // On error the `?` above drops `txn`, which aborts it.
        txn.commit()?;
        Ok(())
    }
}
