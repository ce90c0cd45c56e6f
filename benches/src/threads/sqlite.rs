//! SQLite in WAL mode with `synchronous=OFF`, a connection per thread (SQLite connections
//! are not shared between threads), the way a user writes debit-credit in SQL:
//! `UPDATE ... SET bal = bal + ?` on the account, teller and branch, and an
//! `INSERT OR REPLACE` of the history slot. WAL lets readers run beside the one writer, but
//! writers still take turns: each transaction starts with `BEGIN IMMEDIATE` (taking the
//! write lock up front, so two writers never deadlock upgrading), and while another
//! connection holds it SQLite answers `SQLITE_BUSY` at once (busy timeout 0); the thread
//! yields and tries again, and each such answer counts as a retry. (A busy timeout would
//! make SQLite sleep a millisecond or more per wait.)

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rusqlite::{params, Connection, ErrorCode};

use super::{Bank, Op, Teller, Totals, ACCOUNTS, RECORD, RECORDS, TELLERS};

const UPDATE: &str = "UPDATE rec SET bal = bal + ?2 WHERE id = ?1";
const HISTORY: &str = "INSERT OR REPLACE INTO history (slot, data) VALUES (?1, ?2)";

/// A SQLite database holding the bank.
#[derive(Debug)]
pub struct SqliteBank {
    path: PathBuf,
    // Dropped last: the directory outlives the database files.
    _dir: tempfile::TempDir,
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).context("opening SQLite")?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "SQLite refused WAL mode ({mode})"
    );
    conn.pragma_update(None, "synchronous", "OFF")?;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    conn.set_prepared_statement_cache_capacity(8);
    Ok(conn)
}

impl SqliteBank {
    /// Creates a database in a fresh directory under `parent` with every record zeroed.
    ///
    /// # Errors
    /// SQLite's or the file system's error.
    pub fn open(parent: &Path) -> Result<SqliteBank> {
        let dir = tempfile::Builder::new()
            .prefix("threads-sqlite-")
            .tempdir_in(parent)?;
        let path = dir.path().join("bank.db");
        let mut conn = connect(&path)?;
        conn.execute_batch(
            "CREATE TABLE rec (id INTEGER PRIMARY KEY, bal INTEGER NOT NULL, pad BLOB NOT NULL);
             CREATE TABLE history (slot INTEGER PRIMARY KEY, data BLOB NOT NULL);",
        )?;
        let tx = conn.transaction()?;
        {
            let mut insert =
                tx.prepare("INSERT INTO rec (id, bal, pad) VALUES (?1, 0, zeroblob(?2))")?;
            for id in 0..RECORDS {
                insert.execute(params![i64::try_from(id)?, RECORD - 8])?;
            }
        }
        tx.commit()?;
        Ok(SqliteBank { path, _dir: dir })
    }
}

struct SqliteTeller {
    conn: Connection,
}

fn busy(e: &rusqlite::Error) -> bool {
    e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
}

impl Teller for SqliteTeller {
    fn transfer(&mut self, op: &Op) -> Result<u64> {
        let mut retries = 0;
        loop {
            match self.conn.execute_batch("BEGIN IMMEDIATE") {
                Ok(()) => break,
                Err(e) if busy(&e) => {
                    retries += 1;
                    std::thread::yield_now();
                }
                Err(e) => return Err(e.into()),
            }
        }
        let body = || -> rusqlite::Result<()> {
            let mut update = self.conn.prepare_cached(UPDATE)?;
            for id in op.records() {
                update.execute(params![id as i64, op.delta])?;
            }
            self.conn
                .prepare_cached(HISTORY)?
                .execute(params![op.slot as i64, &op.history[..]])?;
            self.conn.execute_batch("COMMIT")
        };
        if let Err(e) = body() {
            // The error is what the caller needs; a failed rollback leaves the connection
            // in a transaction, which the next BEGIN reports.
            let _ = self.conn.execute_batch("ROLLBACK");
            return Err(e.into());
        }
        Ok(retries)
    }
}

impl Bank for SqliteBank {
    fn teller(&self, _thread: u64) -> Result<Box<dyn Teller + '_>> {
        Ok(Box::new(SqliteTeller {
            conn: connect(&self.path)?,
        }))
    }

    fn totals(&self) -> Result<Totals> {
        let conn = connect(&self.path)?;
        let sum = |lo: u64, hi: u64| -> Result<i64> {
            Ok(conn.query_row(
                "SELECT COALESCE(SUM(bal), 0) FROM rec WHERE id >= ?1 AND id < ?2",
                params![lo as i64, hi as i64],
                |r| r.get(0),
            )?)
        };
        Ok(Totals {
            accounts: sum(0, ACCOUNTS)?,
            tellers: sum(ACCOUNTS, ACCOUNTS + TELLERS)?,
            branches: sum(ACCOUNTS + TELLERS, RECORDS)?,
        })
    }
}
