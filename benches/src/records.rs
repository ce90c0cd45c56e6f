//! Mapping the flat segment onto the keyed records of a key-value engine.
//!
//! Record engines (LMDB, SQLite) keep every record of every [`Table`](crate::engine::Table)
//! under its own key: the record's global number (see [`Layout::pieces`]). Within one
//! transaction a [`RecordCache`] keeps the most recently fetched record, so a workload's
//! `read` of a field followed by its `write` costs one get and one put, exactly what a user of
//! these engines would write by hand (get, modify, put). A write that covers a whole record
//! is a blind put; one that covers part of a record is a read-modify-write of the record, the
//! honest cost of a byte-range interface on a store that cannot update part of a value.

use anyhow::Result;

use crate::engine::Layout;

/// What a record engine provides inside one write transaction.
pub trait RecordStore {
    /// Copies record `id` (exactly `out.len()` bytes) into `out`.
    ///
    /// # Errors
    /// A missing record or the engine's error.
    fn get(&mut self, id: u64, out: &mut [u8]) -> Result<()>;

    /// Replaces record `id` with `data` (the whole record).
    ///
    /// # Errors
    /// The engine's error.
    fn put(&mut self, id: u64, data: &[u8]) -> Result<()>;
}

/// The last record a transaction fetched or wrote; valid for one transaction only.
#[derive(Debug, Default)]
pub struct RecordCache {
    id: Option<u64>,
    buf: Vec<u8>,
}

impl RecordCache {
    /// Forgets the cached record; call at the start of every transaction.
    pub fn begin(&mut self) {
        self.id = None;
    }

    fn fetch(&mut self, store: &mut dyn RecordStore, id: u64, len: usize) -> Result<()> {
        if self.id != Some(id) {
            self.id = None;
            self.buf.resize(len, 0);
            store.get(id, &mut self.buf)?;
            self.id = Some(id);
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `off` through `store`.
    ///
    /// # Errors
    /// Out of range or the store's error.
    pub fn read(
        &mut self,
        layout: &Layout,
        store: &mut dyn RecordStore,
        off: u64,
        buf: &mut [u8],
    ) -> Result<()> {
        layout.pieces(off, buf.len(), |p| {
            self.fetch(store, p.record, p.record_len)?;
            buf[p.at..p.at + p.len].copy_from_slice(&self.buf[p.within..p.within + p.len]);
            Ok(())
        })
    }

    /// Writes `data` at `off` through `store`.
    ///
    /// # Errors
    /// Out of range or the store's error.
    pub fn write(
        &mut self,
        layout: &Layout,
        store: &mut dyn RecordStore,
        off: u64,
        data: &[u8],
    ) -> Result<()> {
        layout.pieces(off, data.len(), |p| {
            let part = &data[p.at..p.at + p.len];
            if p.len == p.record_len {
                if self.id == Some(p.record) {
                    self.id = None;
                }
                return store.put(p.record, part);
            }
            self.fetch(store, p.record, p.record_len)?;
            self.buf[p.within..p.within + p.len].copy_from_slice(part);
            store.put(p.record, &self.buf)
        })
    }
}
