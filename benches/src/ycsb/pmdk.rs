//! PMDK's libpmemobj with a hash map of this crate's in the pool
//! ([`crate::sys::pmemobj::PoolMap`]): fixed size (twice the records, rounded up to a
//! power of two), open addressing with linear probing, slots of the key and the value.
//! An update is one libpmemobj transaction that snapshots (`pmemobj_tx_add_range`) only
//! the value's 100 bytes; a read copies the value out without a transaction (libpmemobj
//! reads committed bytes in place). libpmemobj gives each thread its own undo lane but no
//! isolation, so both hold a mutex of 1,024 in DRAM chosen by the key's hash, as a user
//! must add. The pool is on `/dev/shm` with `PMEM_IS_PMEM_FORCE=1`, as in the other PMDK
//! adapters ([`crate::pmdk`]).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};

use super::{value, Client, Store, Value, VALUE_LEN};
use crate::sys::pmemobj::{force_pmem_mode, PoolMap};

/// DRAM mutexes guarding the map's values.
pub const STRIPES: usize = 1024;

/// Records inserted per loading transaction.
const LOAD_BATCH: u64 = 1000;

/// A pool holding the records.
#[derive(Debug)]
pub struct PmdkStore {
    map: PoolMap,
    path: PathBuf,
}

impl PmdkStore {
    /// Creates a fresh pool on `/dev/shm` and loads `records` records.
    ///
    /// # Errors
    /// libpmemobj's error.
    pub fn open(records: u64) -> Result<PmdkStore> {
        static SEQ: AtomicU64 = AtomicU64::new(0);
        force_pmem_mode();
        let path = PathBuf::from(format!(
            "/dev/shm/vista-ycsb-{}-{}.pmemobj",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let slots = usize::try_from(records * 2)?;
        let mut map = PoolMap::create(&path, slots, VALUE_LEN, STRIPES)
            .with_context(|| format!("creating {}", path.display()))?;
        let mut start = 0;
        while start < records {
            let end = (start + LOAD_BATCH).min(records);
            let values: Vec<(u64, Value)> = (start..end).map(|k| (k, value(k, 0))).collect();
            let pairs: Vec<(u64, &[u8])> = values.iter().map(|(k, v)| (*k, &v[..])).collect();
            map.insert(&pairs)
                .with_context(|| format!("loading keys {start}..{end}"))?;
            start = end;
        }
        Ok(PmdkStore { map, path })
    }
}

impl Drop for PmdkStore {
    fn drop(&mut self) {
        // Unlinking the open pool's file is fine on Linux; a failure leaves a file in
        // /dev/shm and is ignored.
        let _ = std::fs::remove_file(&self.path);
    }
}

struct PmdkClient<'a>(&'a PoolMap);

impl Client for PmdkClient<'_> {
    fn read(&mut self, key: u64, out: &mut Value) -> Result<u64> {
        anyhow::ensure!(self.0.get(key, out)?, "key {key} missing");
        Ok(0)
    }

    fn update(&mut self, key: u64, value: &Value) -> Result<u64> {
        anyhow::ensure!(self.0.update(key, value)?, "key {key} missing");
        Ok(0)
    }
}

impl Store for PmdkStore {
    fn client(&self, _thread: u64) -> Result<Box<dyn Client + '_>> {
        Ok(Box::new(PmdkClient(&self.map)))
    }

    fn entries(&self, f: &mut dyn FnMut(u64, &Value) -> Result<()>) -> Result<()> {
        self.map
            .for_each(|key, v| -> Result<()> { f(key, v.try_into().context("value length")?) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The pool map on its own: probing past collisions in a full map, absent keys,
    /// updates, and the errors (a key twice, a full map, a wrong length) leaving it as
    /// it was.
    #[test]
    fn pool_map_finds_updates_and_refuses() {
        force_pmem_mode();
        let path = PathBuf::from(format!(
            "/dev/shm/vista-ycsb-test-{}.pmemobj",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let mut map = PoolMap::create(&path, 4, 3, 2).unwrap();
        let _ = std::fs::remove_file(&path);
        map.insert(&[(7, b"abc"), (u64::MAX - 1, b"def"), (0, b"ghi")])
            .unwrap();
        assert!(
            map.insert(&[(9, b"jkl"), (7, b"mno")]).is_err(),
            "key 7 twice"
        );
        let mut out = [0u8; 3];
        assert!(
            !map.get(9, &mut out).unwrap(),
            "the failed batch left key 9"
        );
        map.insert(&[(9, b"jkl")]).unwrap();
        assert!(map.insert(&[(10, b"pqr")]).is_err(), "a full map");
        for (k, v) in [
            (7, b"abc"),
            (u64::MAX - 1, b"def"),
            (0, b"ghi"),
            (9, b"jkl"),
        ] {
            assert!(map.get(k, &mut out).unwrap());
            assert_eq!(&out, v);
        }
        assert!(!map.get(u64::MAX, &mut out).unwrap());
        assert!(!map.get(3, &mut out).unwrap());
        assert!(map.update(0, b"xyz").unwrap());
        assert!(!map.update(3, b"xyz").unwrap());
        assert!(map.update(0, b"too long").is_err());
        map.get(0, &mut out).unwrap();
        assert_eq!(&out, b"xyz");
        let mut seen = Vec::new();
        map.for_each(|k, v| -> std::io::Result<()> {
            seen.push((k, v.to_vec()));
            Ok(())
        })
        .unwrap();
        seen.sort();
        assert_eq!(
            seen,
            [
                (0, b"xyz".to_vec()),
                (7, b"abc".to_vec()),
                (9, b"jkl".to_vec()),
                (u64::MAX - 1, b"def".to_vec())
            ]
        );
    }
}
