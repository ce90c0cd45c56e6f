//! The engine trait every adapter implements, and the segment layout workloads declare.
//!
//! An engine presents one flat byte space (the *segment*) of [`Layout::len`] bytes, zeroed
//! when opened. A transaction is begin, any number of [`Txn::read`] / [`Txn::write`] calls
//! (a write declares the range *and* copies the new bytes in, like Vista's `set_range`
//! followed by a store), then commit. [`Engine::transact`] runs a closure as the body so that
//! engines whose transaction handle borrows the engine (LMDB's `RwTxn`, rusqlite's
//! `Transaction`) can implement it without self-referential types and the trait stays
//! object safe.
//!
//! Segment engines (floor, pmdk, vista, lrvm) ignore everything in the layout but its length.
//! Record engines (LMDB, SQLite) store each fixed-size record of each [`Table`] under its own
//! key and turn a byte-range write into a read-modify-write of the records it touches; see
//! [`Layout::pieces`].

use anyhow::{ensure, Result};

/// The body of a transaction: reads and writes through the handle.
pub type Body<'b> = dyn FnMut(&mut dyn Txn) -> Result<()> + 'b;

/// One open engine holding one segment.
pub trait Engine {
    /// Runs `body` as one transaction: begin, the body's reads and writes, commit (durable
    /// as far as the configuration promises). If `body` fails, every write it made is rolled
    /// back and its error is returned.
    ///
    /// # Errors
    /// The body's error, or the engine's failure to begin, write, or commit.
    fn transact(&mut self, body: &mut Body<'_>) -> Result<()>;

    /// Cumulative counters of background work the engine does on its own (truncations,
    /// checkpoints, log forces), so a report can say how much of it ran while a cell was
    /// measured. Empty by default.
    fn counters(&self) -> Vec<(&'static str, u64)> {
        Vec::new()
    }
}

/// The handle a transaction body reads and writes through.
pub trait Txn {
    /// Copies `buf.len()` bytes at `off` into `buf`, seeing this transaction's own writes.
    ///
    /// # Errors
    /// Out-of-range access or the engine's read failure.
    fn read(&mut self, off: u64, buf: &mut [u8]) -> Result<()>;

    /// Declares `off..off+data.len()` as modified (logging whatever the engine logs) and
    /// copies `data` there.
    ///
    /// # Errors
    /// Out-of-range access or the engine's write failure.
    fn write(&mut self, off: u64, data: &[u8]) -> Result<()>;
}

impl dyn Txn + '_ {
    /// Reads a little-endian `u64` at `off`.
    ///
    /// # Errors
    /// As [`Txn::read`].
    pub fn read_u64(&mut self, off: u64) -> Result<u64> {
        let mut b = [0u8; 8];
        self.read(off, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    /// Writes a little-endian `u64` at `off`.
    ///
    /// # Errors
    /// As [`Txn::write`].
    pub fn write_u64(&mut self, off: u64, v: u64) -> Result<()> {
        self.write(off, &v.to_le_bytes())
    }
}

/// A table: `records` fixed-size records of `record_len` bytes, stored back to back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The table's name, for reports.
    pub name: &'static str,
    /// Bytes per record.
    pub record_len: usize,
    /// Number of records.
    pub records: u64,
}

/// The tables of a segment, laid out back to back from offset 0.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    tables: Vec<Table>,
    /// Byte offset of each table.
    offsets: Vec<u64>,
    /// Global number of each table's first record (records are numbered across tables).
    first_ids: Vec<u64>,
    len: u64,
    total_records: u64,
}

/// A part of a byte range that falls inside one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// The record's global number (a key for record engines).
    pub record: u64,
    /// The record's length.
    pub record_len: usize,
    /// Where the piece starts inside the record.
    pub within: usize,
    /// Where the piece starts inside the caller's buffer.
    pub at: usize,
    /// The piece's length.
    pub len: usize,
}

impl Layout {
    /// Lays `tables` out back to back.
    pub fn new(tables: Vec<Table>) -> Layout {
        let mut offsets = Vec::with_capacity(tables.len());
        let mut first_ids = Vec::with_capacity(tables.len());
        let (mut len, mut ids) = (0u64, 0u64);
        for t in &tables {
            assert!(t.record_len > 0, "empty records in table {}", t.name);
            offsets.push(len);
            first_ids.push(ids);
            len += t.record_len as u64 * t.records;
            ids += t.records;
        }
        Layout {
            tables,
            offsets,
            first_ids,
            len,
            total_records: ids,
        }
    }

    /// One table of `len / page` records of `page` bytes: a flat segment.
    pub fn pages(len: u64, page: usize) -> Layout {
        Layout::new(vec![Table {
            name: "pages",
            record_len: page,
            records: len / page as u64,
        }])
    }

    /// The segment length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the segment has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Total records over all tables.
    pub fn total_records(&self) -> u64 {
        self.total_records
    }

    /// The tables in order.
    pub fn tables(&self) -> &[Table] {
        &self.tables
    }

    /// The byte offset of table `i`'s record `rec`.
    pub fn offset_of(&self, table: usize, rec: u64) -> u64 {
        debug_assert!(rec < self.tables[table].records);
        self.offsets[table] + rec * self.tables[table].record_len as u64
    }

    /// Calls `f(global record number, record length)` for every record in order.
    pub fn for_each_record(&self, mut f: impl FnMut(u64, usize)) {
        for (t, first) in self.tables.iter().zip(&self.first_ids) {
            for r in 0..t.records {
                f(first + r, t.record_len);
            }
        }
    }

    /// Checks that `off..off+len` lies inside the segment.
    ///
    /// # Errors
    /// Out of range.
    pub fn check(&self, off: u64, len: usize) -> Result<()> {
        ensure!(
            off.checked_add(len as u64)
                .is_some_and(|end| end <= self.len),
            "range {off}+{len} outside the {}-byte segment",
            self.len
        );
        Ok(())
    }

    /// Splits `off..off+len` into the record pieces it covers, in order.
    ///
    /// # Errors
    /// Out of range.
    pub fn pieces(
        &self,
        off: u64,
        len: usize,
        mut f: impl FnMut(Piece) -> Result<()>,
    ) -> Result<()> {
        self.check(off, len)?;
        // The table holding `off`: the last table whose offset is <= off.
        let mut t = self.offsets.partition_point(|&o| o <= off) - 1;
        let (mut pos, mut at) = (off, 0usize);
        while at < len {
            while t + 1 < self.tables.len() && self.offsets[t + 1] <= pos {
                t += 1;
            }
            let table = &self.tables[t];
            let rel = pos - self.offsets[t];
            let rec = rel / table.record_len as u64;
            let within = (rel % table.record_len as u64) as usize;
            let n = (table.record_len - within).min(len - at);
            f(Piece {
                record: self.first_ids[t] + rec,
                record_len: table.record_len,
                within,
                at,
                len: n,
            })?;
            at += n;
            pos += n as u64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout::new(vec![
            Table {
                name: "a",
                record_len: 10,
                records: 3,
            },
            Table {
                name: "b",
                record_len: 4,
                records: 2,
            },
        ])
    }

    #[test]
    fn pieces_split_at_record_and_table_edges() {
        let l = layout();
        assert_eq!(l.len(), 38);
        assert_eq!(l.total_records(), 5);
        let mut got = Vec::new();
        l.pieces(25, 10, |p| {
            got.push((p.record, p.within, p.at, p.len));
            Ok(())
        })
        .unwrap();
        assert_eq!(got, vec![(2, 5, 0, 5), (3, 0, 5, 4), (4, 0, 9, 1)]);
        assert!(l.pieces(30, 9, |_| Ok(())).is_err());
        assert_eq!(l.offset_of(1, 1), 34);
    }
}
