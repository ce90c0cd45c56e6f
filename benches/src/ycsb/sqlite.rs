//! SQLite in WAL mode, `synchronous=OFF` or `NORMAL`, the way a user writes a key-value
//! table: `CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB NOT NULL)`, a connection per
//! thread (SQLite connections are not shared between threads), prepared statements
//! (`prepare_cached`).
//!
//! A read is `SELECT v FROM kv WHERE k = ?` in autocommit mode (its own read
//! transaction; WAL readers never wait for the writer). An update is
//! `BEGIN IMMEDIATE; UPDATE kv SET v = ? WHERE k = ?; COMMIT`: the write lock is taken
//! up front, so two writers never deadlock upgrading a read lock (an autocommit UPDATE
//! can fail with `SQLITE_BUSY_SNAPSHOT` when another connection committed since its
//! read began). While another connection writes, SQLite calls the busy handler, which
//! yields the CPU and lets SQLite try again, up to [`BUSY_TRIES`] times (SQLite's own
//! `busy_timeout` handler sleeps 1 ms and more per wait, longer than a whole update
//! here); each call counts as a retry.

use std::cell::Cell;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rusqlite::{params, Connection};

use super::{value, Client, Store, Value};

const READ: &str = "SELECT v FROM kv WHERE k = ?1";
const UPDATE: &str = "UPDATE kv SET v = ?2 WHERE k = ?1";

/// How many times the busy handler lets SQLite try again before the operation fails
/// with `SQLITE_BUSY` (millions of yields: seconds, the role of a busy timeout).
pub const BUSY_TRIES: i32 = 10_000_000;

/// `PRAGMA synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// No fsync at all.
    Off,
    /// WAL: fsync at checkpoints, not at commits.
    Normal,
}

impl Synchronous {
    fn pragma(self) -> &'static str {
        match self {
            Synchronous::Off => "OFF",
            Synchronous::Normal => "NORMAL",
        }
    }
}

thread_local! {
    /// Busy-handler calls on this thread (read and reset by each update).
    static BUSY: Cell<u64> = const { Cell::new(0) };
}

fn yield_when_busy(tries: i32) -> bool {
    BUSY.with(|b| b.set(b.get() + 1));
    std::thread::yield_now();
    tries < BUSY_TRIES
}

fn connect(path: &Path, sync: Synchronous) -> Result<Connection> {
    let conn = Connection::open(path).context("opening SQLite")?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "SQLite refused WAL mode ({mode})"
    );
    conn.pragma_update(None, "synchronous", sync.pragma())?;
    conn.busy_handler(Some(yield_when_busy))?;
    conn.set_prepared_statement_cache_capacity(8);
    Ok(conn)
}

/// A SQLite database holding the records.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    sync: Synchronous,
    // Dropped last: the directory outlives the database files.
    _dir: tempfile::TempDir,
}

impl SqliteStore {
    /// Creates a database in a fresh directory under `parent` and loads `records`
    /// records (one transaction).
    ///
    /// # Errors
    /// SQLite's or the file system's error.
    pub fn open(parent: &Path, sync: Synchronous, records: u64) -> Result<SqliteStore> {
        let dir = tempfile::Builder::new()
            .prefix("ycsb-sqlite-")
            .tempdir_in(parent)?;
        let path = dir.path().join("ycsb.db");
        let mut conn = connect(&path, sync)?;
        conn.execute_batch("CREATE TABLE kv (k INTEGER PRIMARY KEY, v BLOB NOT NULL);")?;
        let tx = conn.transaction()?;
        {
            let mut insert = tx.prepare("INSERT INTO kv (k, v) VALUES (?1, ?2)")?;
            for key in 0..records {
                insert.execute(params![i64::try_from(key)?, &value(key, 0)[..]])?;
            }
        }
        tx.commit()?;
        // Fold the load into the database file, so no run starts with a long WAL.
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(SqliteStore {
            path,
            sync,
            _dir: dir,
        })
    }
}

struct SqliteClient {
    conn: Connection,
}

impl Client for SqliteClient {
    fn read(&mut self, key: u64, out: &mut Value) -> Result<u64> {
        BUSY.with(|b| b.set(0));
        let mut read = self.conn.prepare_cached(READ)?;
        let found = read.query_row(params![key as i64], |r| {
            let v = r.get_ref(0)?.as_blob()?;
            Ok(<&Value>::try_from(v).map(|v| *out = *v).is_ok())
        });
        match found {
            Ok(true) => Ok(BUSY.with(Cell::get)),
            Ok(false) => anyhow::bail!("key {key}: the value is not {} bytes", out.len()),
            Err(rusqlite::Error::QueryReturnedNoRows) => anyhow::bail!("key {key} missing"),
            Err(e) => Err(e.into()),
        }
    }

    fn update(&mut self, key: u64, value: &Value) -> Result<u64> {
        BUSY.with(|b| b.set(0));
        self.conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        let body = || -> Result<()> {
            let changed = self
                .conn
                .prepare_cached(UPDATE)?
                .execute(params![key as i64, &value[..]])?;
            anyhow::ensure!(changed == 1, "key {key} missing");
            self.conn.prepare_cached("COMMIT")?.execute([])?;
            Ok(())
        };
        if let Err(e) = body() {
            // The error is what the caller needs; a failed rollback leaves the connection
            // in a transaction, which the next BEGIN reports.
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e);
        }
        Ok(BUSY.with(Cell::get))
    }
}

impl Store for SqliteStore {
    fn client(&self, _thread: u64) -> Result<Box<dyn Client + '_>> {
        Ok(Box::new(SqliteClient {
            conn: connect(&self.path, self.sync)?,
        }))
    }

    fn entries(&self, f: &mut dyn FnMut(u64, &Value) -> Result<()>) -> Result<()> {
        let conn = connect(&self.path, self.sync)?;
        let mut all = conn.prepare("SELECT k, v FROM kv ORDER BY k")?;
        let mut rows = all.query([])?;
        while let Some(row) = rows.next()? {
            let key = u64::try_from(row.get::<_, i64>(0)?)?;
            let v = row.get_ref(1)?.as_blob()?;
            let v: &Value = v
                .try_into()
                .with_context(|| format!("key {key}: {} bytes", v.len()))?;
            f(key, v)?;
        }
        Ok(())
    }
}
