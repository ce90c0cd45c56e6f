//! Mapping the flat segment onto the keyed records of a key-value engine.
//!
//! Record engines (LMDB, SQLite) keep every record of every [`Table`](crate::engine::Table)
//! under its own key: the record's global number (see [`Layout::pieces`]). A read copies the
//! touched parts of each record out; a write that covers a whole record stores it directly,
//! and one that covers part of a record reads the record, patches it, and stores it back. That
//! read-modify-write is the honest cost of putting a byte-range interface on a record store;
//! a user of these engines would pay it too, since neither updates part of a value in place.

use anyhow::Result;

use crate::engine::Layout;

/// What a record engine provides inside one write transaction.
pub trait RecordStore {
    /// Copies `out.len()` bytes of record `id`, starting at byte `within`, into `out`.
    ///
    /// # Errors
    /// A missing record or the engine's error.
    fn get(&mut self, id: u64, within: usize, out: &mut [u8]) -> Result<()>;

    /// Replaces record `id` with `data` (the whole record).
    ///
    /// # Errors
    /// The engine's error.
    fn put(&mut self, id: u64, data: &[u8]) -> Result<()>;
}

/// Reads `buf.len()` bytes at `off` through `store`.
///
/// # Errors
/// Out of range or the store's error.
pub fn read(layout: &Layout, store: &mut dyn RecordStore, off: u64, buf: &mut [u8]) -> Result<()> {
    layout.pieces(off, buf.len(), |p| {
        store.get(p.record, p.within, &mut buf[p.at..p.at + p.len])
    })
}

/// Writes `data` at `off` through `store`, using `scratch` for partial records.
///
/// # Errors
/// Out of range or the store's error.
pub fn write(
    layout: &Layout,
    store: &mut dyn RecordStore,
    scratch: &mut Vec<u8>,
    off: u64,
    data: &[u8],
) -> Result<()> {
    layout.pieces(off, data.len(), |p| {
        let part = &data[p.at..p.at + p.len];
        if p.len == p.record_len {
            return store.put(p.record, part);
        }
        scratch.resize(p.record_len, 0);
        store.get(p.record, 0, scratch)?;
        scratch[p.within..p.within + p.len].copy_from_slice(part);
        store.put(p.record, scratch)
    })
}
