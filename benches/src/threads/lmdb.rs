//! LMDB (heed), write-map, no sync: one write transaction at a time, by design. Every
//! thread shares the environment and opens its own write transactions; LMDB's writer lock
//! makes the others wait, so a transaction never conflicts and never retries. Records are
//! keyed by their number (big-endian), history slots by `HISTORY_KEY + slot`.

use std::path::Path;

use anyhow::{Context, Result};
use heed::byteorder::BigEndian;
use heed::types::{Bytes, U64};
use heed::{Database, Env, EnvFlags};

use super::{add, Bank, Op, Teller, Totals, FLAT_LEN, HISTORY_LEN, RECORD, RECORDS};
use crate::sys;

type Records = Database<U64<BigEndian>, Bytes>;

/// Key of history slot 0.
const HISTORY_KEY: u64 = 1 << 40;

/// An LMDB environment holding the bank.
pub struct LmdbBank {
    env: Env,
    db: Records,
    // Dropped last: the directory outlives the environment's files.
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for LmdbBank {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LmdbBank")
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl LmdbBank {
    /// Creates an environment in a fresh directory under `parent` with every record zeroed.
    ///
    /// # Errors
    /// LMDB's or the file system's error.
    pub fn open(parent: &Path) -> Result<LmdbBank> {
        let dir = tempfile::Builder::new()
            .prefix("threads-lmdb-")
            .tempdir_in(parent)?;
        let map_size = (usize::try_from(FLAT_LEN * 4)? + (256 << 20)).next_multiple_of(1 << 20);
        let flags = EnvFlags::WRITE_MAP | EnvFlags::NO_SYNC | EnvFlags::NO_META_SYNC;
        let env = sys::open_lmdb(dir.path(), map_size, flags).context("opening LMDB")?;
        let mut wtxn = env.write_txn()?;
        let db: Records = env.create_database(&mut wtxn, None)?;
        let zeros = [0u8; RECORD as usize];
        for id in 0..RECORDS {
            db.put(&mut wtxn, &id, &zeros)?;
        }
        wtxn.commit()?;
        Ok(LmdbBank { env, db, dir })
    }
}

struct LmdbTeller<'a> {
    env: &'a Env,
    db: Records,
}

impl Teller for LmdbTeller<'_> {
    fn transfer(&mut self, op: &Op) -> Result<u64> {
        let mut txn = self.env.write_txn()?;
        for id in op.records() {
            let mut record = [0u8; RECORD as usize];
            let old = self
                .db
                .get(&txn, &id)?
                .with_context(|| format!("record {id} missing"))?;
            record.copy_from_slice(old);
            add(&mut record, op.delta);
            self.db.put(&mut txn, &id, &record)?;
        }
        debug_assert_eq!(op.history.len(), HISTORY_LEN as usize);
        self.db
            .put(&mut txn, &(HISTORY_KEY + op.slot), &op.history)?;
        txn.commit()?;
        Ok(0)
    }
}

impl Bank for LmdbBank {
    fn teller(&self, _thread: u64) -> Result<Box<dyn Teller + '_>> {
        Ok(Box::new(LmdbTeller {
            env: &self.env,
            db: self.db,
        }))
    }

    fn totals(&self) -> Result<Totals> {
        let rtxn = self.env.read_txn()?;
        let mut t = Totals::default();
        for id in 0..RECORDS {
            let v = self
                .db
                .get(&rtxn, &id)?
                .with_context(|| format!("record {id} missing"))?;
            t.add(id, i64::from_le_bytes(v[..8].try_into()?));
        }
        Ok(t)
    }
}
