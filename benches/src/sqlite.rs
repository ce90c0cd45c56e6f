//! SQLite through rusqlite (bundled): a B-tree in a file, write-ahead log.
//!
//! One table `rec(id INTEGER PRIMARY KEY, data BLOB)`, one row per record (keyed by the
//! record's global number), `journal_mode=WAL`. `sqlite-off` sets `synchronous=OFF` (no
//! fsync; an OS crash may lose recent commits), `sqlite-full` sets `synchronous=FULL` (the WAL
//! is fsynced at every commit). Each benchmark transaction is one SQL transaction using the
//! cached prepared statements `SELECT data FROM rec WHERE id=?1` and
//! `UPDATE rec SET data=?2 WHERE id=?1`: the way a user of rusqlite would write it. A record of
//! 4 KiB does not fit in a 4 KiB B-tree page, so such rows spill onto an overflow page.

use std::path::Path;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension};

use crate::engine::{Body, Engine, Layout, Txn};
use crate::records::{RecordCache, RecordStore};

const SELECT: &str = "SELECT data FROM rec WHERE id = ?1";
const UPDATE: &str = "UPDATE rec SET data = ?2 WHERE id = ?1";

/// A SQLite database holding one segment's records.
pub struct Sqlite {
    conn: Connection,
    layout: Layout,
    cache: RecordCache,
    // Dropped last: the directory outlives the database files.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Creates a database in a fresh directory under `parent` and inserts every record of
    /// `layout`, zeroed, in one transaction.
    ///
    /// # Errors
    /// SQLite's or the file system's error.
    pub fn open(layout: &Layout, parent: &Path, full_sync: bool) -> Result<Sqlite> {
        let dir = tempfile::Builder::new()
            .prefix("sqlite-")
            .tempdir_in(parent)?;
        let mut conn = Connection::open(dir.path().join("segment.db")).context("opening SQLite")?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        anyhow::ensure!(
            mode.eq_ignore_ascii_case("wal"),
            "SQLite refused WAL mode ({mode})"
        );
        conn.pragma_update(None, "synchronous", if full_sync { "FULL" } else { "OFF" })?;
        conn.execute_batch("CREATE TABLE rec (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare("INSERT INTO rec (id, data) VALUES (?1, zeroblob(?2))")?;
            let mut result = Ok(());
            layout.for_each_record(|id, len| {
                if result.is_ok() {
                    result = insert.execute(params![id as i64, len as i64]).map(drop);
                }
            });
            result.context("loading records")?;
        }
        tx.commit()?;
        conn.set_prepared_statement_cache_capacity(16);
        Ok(Sqlite {
            conn,
            layout: layout.clone(),
            cache: RecordCache::default(),
            dir,
        })
    }
}

struct Store<'a>(&'a Connection);

impl RecordStore for Store<'_> {
    fn get(&mut self, id: u64, out: &mut [u8]) -> Result<()> {
        let mut stmt = self.0.prepare_cached(SELECT)?;
        let found = stmt
            .query_row([id as i64], |row| {
                let blob = row.get_ref(0)?.as_blob()?;
                let fits = blob.len() == out.len();
                if fits {
                    out.copy_from_slice(blob);
                }
                Ok(fits)
            })
            .optional()?;
        match found {
            Some(true) => Ok(()),
            Some(false) => anyhow::bail!("record {id} has the wrong length"),
            None => anyhow::bail!("record {id} missing"),
        }
    }

    fn put(&mut self, id: u64, data: &[u8]) -> Result<()> {
        let changed = self
            .0
            .prepare_cached(UPDATE)?
            .execute(params![id as i64, data])?;
        anyhow::ensure!(changed == 1, "record {id} missing");
        Ok(())
    }
}

struct SqliteTxn<'a> {
    conn: &'a Connection,
    layout: &'a Layout,
    cache: &'a mut RecordCache,
}

impl Txn for SqliteTxn<'_> {
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()> {
        self.cache
            .read(self.layout, &mut Store(self.conn), off, buf)
    }

    fn write(&mut self, off: u64, data: &[u8]) -> Result<()> {
        self.cache
            .write(self.layout, &mut Store(self.conn), off, data)
    }
}

impl Engine for Sqlite {
    fn transact(&mut self, body: &mut Body<'_>) -> Result<()> {
        let tx = self.conn.transaction()?;
        self.cache.begin();
        body(&mut SqliteTxn {
            conn: &tx,
            layout: &self.layout,
            cache: &mut self.cache,
        })?;
        // On error the `?` above drops `tx`, which rolls it back.
        tx.commit()?;
        Ok(())
    }
}
