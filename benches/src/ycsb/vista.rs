//! vista: the records in a `PHashMap<u64, Value>` under a named root of one segment,
//! operations from every thread at once.
//!
//! A read is what a vista user writes to read a map: a read-only transaction
//! (`seg.read_transaction(|tx| map.get(tx, &key))`), which takes no undo lane and does
//! not hold checkpoints off, and locks what the lookup reads shared while it runs. An
//! update is `*map.get_mut(tx, &key)? = value` in
//! `seg.transaction`, which declares (locks and logs) only the value's 100 bytes.
//! Both forms run the closure again after a conflict; the retries reported
//! are those extra runs.

use std::path::{Path, PathBuf};

use ::vista::{bytemuck, Options, PHashMap, Protection, Segment, Writeback};
use anyhow::{Context, Result};

use super::{value, Client, Store, Value, MAX_THREADS};

/// Which of vista's configurations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Config {
    /// `Options::default()` with only the size and the lanes set: `Protection::Auto`,
    /// background writeback.
    Default,
    /// `Protection::None`, `Writeback::Manual` (one checkpoint after loading).
    None,
}

/// The segment's root.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Root {
    map: PHashMap<u64, Value>,
}

/// The root's name.
const ROOT: &str = "benches-ycsb-v1";

/// Records inserted per loading transaction.
const LOAD_BATCH: u64 = 500;

/// User space for `records` records: the map sized by `with_capacity` keeps buckets of
/// 1 KiB about half full (some 240 bytes a record with the directory), plus room.
pub fn segment_size(records: u64) -> u64 {
    (records * 512 + (32 << 20)).next_multiple_of(1 << 20)
}

/// The options of a configuration for `records` records.
pub fn options(config: Config, records: u64) -> Options {
    let lanes = u32::try_from(MAX_THREADS).expect("64 lanes");
    match config {
        Config::Default => Options::default().size(segment_size(records)).lanes(lanes),
        Config::None => Options::new()
            .size(segment_size(records))
            .lanes(lanes)
            .protection(Protection::None)
            .writeback(Writeback::Manual),
    }
}

/// A segment holding the records.
#[derive(Debug)]
pub struct VistaStore {
    seg: Option<Segment>,
    map: PHashMap<u64, Value>,
    path: PathBuf,
    opts: Options,
    // Removed after the segment (`Drop` runs before the fields drop).
    _dir: tempfile::TempDir,
}

impl VistaStore {
    /// Creates a fresh segment in a new directory under `parent` and loads `records`
    /// records.
    ///
    /// # Errors
    /// vista's or the file system's error.
    pub fn open(parent: &Path, config: Config, records: u64) -> Result<VistaStore> {
        let opts = options(config, records);
        let dir = tempfile::Builder::new()
            .prefix("ycsb-vista-")
            .tempdir_in(parent)?;
        let path = dir.path().join("ycsb.vista");
        Segment::remove(&path, &opts)?;
        let seg = Segment::open(&path, &opts)?;
        let map = seg.transaction(|tx| -> Result<_, ::vista::Error> {
            let root = tx.root_named::<Root>(ROOT)?;
            let map = PHashMap::with_capacity(tx, records)?;
            *tx.get_mut(root.project(|r| &r.map))? = map;
            Ok(map)
        })?;
        let mut start = 0;
        while start < records {
            let end = (start + LOAD_BATCH).min(records);
            seg.transaction(|tx| {
                for key in start..end {
                    map.insert(tx, &key, value(key, 0))?;
                }
                Ok::<_, ::vista::Error>(())
            })
            .with_context(|| format!("loading keys {start}..{end}"))?;
            start = end;
        }
        // Nothing of the load is left to write back while measuring (manual writeback
        // would otherwise carry it to the first checkpoint; background writeback starts
        // from a clean image too).
        seg.checkpoint()?;
        Ok(VistaStore {
            seg: Some(seg),
            map,
            path,
            opts,
            _dir: dir,
        })
    }

    /// The map of the records.
    pub fn map(&self) -> PHashMap<u64, Value> {
        self.map
    }

    /// The segment.
    pub fn segment(&self) -> &Segment {
        self.seg.as_ref().expect("open until dropped")
    }
}

impl Drop for VistaStore {
    fn drop(&mut self) {
        // Errors are ignored: the files are scratch, and a failed close leaves them for
        // the temporary directory's removal.
        if let Some(seg) = self.seg.take() {
            let _ = seg.close();
        }
        let _ = Segment::remove(&self.path, &self.opts);
    }
}

struct VistaClient<'a> {
    seg: &'a Segment,
    map: PHashMap<u64, Value>,
}

/// A missing key, as the closure's error.
fn missing(key: u64) -> anyhow::Error {
    anyhow::anyhow!("key {key} missing")
}

impl Client for VistaClient<'_> {
    fn read(&mut self, key: u64, out: &mut Value) -> Result<u64> {
        let mut runs = 0;
        *out = self.seg.read_transaction(|tx| {
            runs += 1;
            self.map.get(tx, &key)?.ok_or_else(|| missing(key))
        })?;
        Ok(runs - 1)
    }

    fn update(&mut self, key: u64, value: &Value) -> Result<u64> {
        let mut runs = 0;
        self.seg.transaction(|tx| {
            runs += 1;
            *self.map.get_mut(tx, &key)?.ok_or_else(|| missing(key))? = *value;
            Ok::<_, anyhow::Error>(())
        })?;
        Ok(runs - 1)
    }
}

impl Store for VistaStore {
    fn client(&self, _thread: u64) -> Result<Box<dyn Client + '_>> {
        Ok(Box::new(VistaClient {
            seg: self.segment(),
            map: self.map,
        }))
    }

    fn describe(&self) -> Option<String> {
        Some(format!(
            "active protection {:?}, {} lanes",
            self.segment().protection(),
            self.segment().lanes()
        ))
    }

    fn entries(&self, f: &mut dyn FnMut(u64, &Value) -> Result<()>) -> Result<()> {
        let tx = self.segment().begin_read()?;
        for entry in self.map.iter(&tx) {
            let (key, value) = entry?;
            f(key, &value)?;
        }
        Ok(())
    }
}
