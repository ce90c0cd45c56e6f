//! SPS from one or more threads on vista: the array of
//! [`crate::workload::sps`] in one segment, each transaction `S` swaps through
//! `Segment::transaction` with `tx.get` / `tx.put` (the way a program would write it),
//! every thread at once. The `sps` binary runs these cells beside the persistent
//! transactional memories' own SPS ([`super::ptm`]).
//!
//! Each thread draws its pairs before the transaction, so a run of the closure after a
//! conflict swaps the same pairs; the retries reported are those extra runs. Like the
//! PTMs' benchmark, a cell has no warm-up: the threads start together, and every
//! transaction committed before they see the stop flag counts, over the window's length.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use ::vista::{Options, Segment};
use anyhow::{Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::engine::{Engine as _, Layout};
use crate::floor::{Floor, Guard};
use crate::workload::sps::SumCheck;

/// Entries set per transaction while loading (256 KiB: a quarter of the default undo log).
const LOAD_CHUNK: u64 = 32 << 10;
/// Entries read at a time by the check.
const CHECK_CHUNK: u64 = 8 << 10;

/// The SPS array in a vista segment.
#[derive(Debug)]
pub struct VistaArray {
    seg: Option<Segment>,
    path: PathBuf,
    opts: Options,
    entries: u64,
    /// `Some` for the `-mutex` configurations: every transaction holds it.
    global: Option<Mutex<()>>,
    // Removed after the segment (`Drop` runs before the fields drop).
    _dir: tempfile::TempDir,
}

/// One measured cell.
#[derive(Debug, Clone, Copy)]
pub struct Cell {
    /// Transactions committed.
    pub commits: u64,
    /// Extra runs of transaction closures after conflicts.
    pub retries: u64,
    /// How long the threads ran.
    pub elapsed: Duration,
}

impl Cell {
    /// Committed transactions per second.
    pub fn tps(&self) -> f64 {
        self.commits as f64 / self.elapsed.as_secs_f64()
    }
}

impl VistaArray {
    /// Creates a segment of `entries` words (`opts`' size is replaced) in a new directory
    /// under `parent`, fills entry `i` with `i`, and checkpoints, so that measuring starts
    /// with nothing dirty.
    ///
    /// # Errors
    /// vista's or the file system's error.
    pub fn open(
        parent: &Path,
        opts: &Options,
        entries: u64,
        global_mutex: bool,
    ) -> Result<VistaArray> {
        let dir = tempfile::Builder::new()
            .prefix("sps-vista-")
            .tempdir_in(parent)?;
        let path = dir.path().join("sps.vista");
        let opts = opts.clone().size(entries * 8);
        Segment::remove(&path, &opts)?;
        let seg = Segment::open(&path, &opts).context("opening the SPS segment")?;
        let mut first = 0;
        while first < entries {
            let n = LOAD_CHUNK.min(entries - first);
            let mut tx = seg.begin()?;
            let bytes = tx.set_range(first * 8, n * 8)?;
            for (i, e) in bytes.chunks_exact_mut(8).enumerate() {
                e.copy_from_slice(&(first + i as u64).to_le_bytes());
            }
            tx.commit()?;
            first += n;
        }
        seg.checkpoint().context("checkpoint after loading")?;
        Ok(VistaArray {
            seg: Some(seg),
            path,
            opts,
            entries,
            global: global_mutex.then(|| Mutex::new(())),
            _dir: dir,
        })
    }

    /// The segment.
    pub fn segment(&self) -> &Segment {
        self.seg.as_ref().expect("open until dropped")
    }

    /// Runs `threads` threads, each committing transactions of `swaps` swaps, for
    /// `window`; thread `t` draws its pairs from a generator seeded with `seed + t`.
    ///
    /// # Errors
    /// The first error of a thread (the others stop too).
    pub fn run(&self, threads: u64, swaps: u64, window: Duration, seed: u64) -> Result<Cell> {
        run_threads(threads, window, |t, stop| {
            self.work(swaps, seed.wrapping_add(t), stop)
        })
    }

    fn work(&self, swaps: u64, seed: u64, stop: &AtomicBool) -> Result<(u64, u64)> {
        let seg = self.segment();
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut pairs = Vec::with_capacity(usize::try_from(swaps)?);
        let (mut commits, mut retries) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            pairs.clear();
            for _ in 0..swaps {
                let a = rng.gen_range(0..self.entries) * 8;
                let b = rng.gen_range(0..self.entries) * 8;
                pairs.push((a, b));
            }
            let _held = self
                .global
                .as_ref()
                .map(|m| m.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
            let mut runs = 0;
            seg.transaction(|tx| {
                runs += 1;
                for &(a, b) in &pairs {
                    let va: u64 = tx.get(a)?;
                    let vb: u64 = tx.get(b)?;
                    tx.put(a, &vb)?;
                    tx.put(b, &va)?;
                }
                Ok::<(), ::vista::Error>(())
            })?;
            commits += 1;
            retries += runs - 1;
        }
        Ok((commits, retries))
    }

    /// Reads the whole array back (while no thread runs) and checks that it is still a
    /// permutation of `0..n`, its sum unchanged.
    ///
    /// # Errors
    /// What [`SumCheck::finish`] finds, or vista's error.
    pub fn check(&self) -> Result<()> {
        let mut check = SumCheck::new(self.entries);
        let mut first = 0;
        while first < self.entries {
            let n = CHECK_CHUNK.min(self.entries - first);
            check.add_bytes(&self.segment().read(first * 8, n * 8)?);
            first += n;
        }
        check.finish()
    }
}

/// SPS on the suite's floor ([`crate::floor`], unguarded: before-image into a log, the
/// store, a commit that empties the log): the least an undo-logging engine does per
/// swap, measured beside vista and the PTMs in the same run.
///
/// The floor is one thread's engine, so a cell of `t` threads gives each thread its own
/// floor over `entries / t` consecutive entries (the last takes the rest), and a thread
/// swaps pairs of its own part only: no word is shared, so nothing is locked. The memory
/// touched is the same array, split.
#[derive(Debug)]
pub struct FloorArray {
    entries: u64,
    /// Per thread count of a cell: that many floors, each with the first entry it holds.
    splits: Vec<(u64, Vec<FloorPart>)>,
}

/// One thread's floor in a split: the first entry it holds, and the floor.
type FloorPart = (u64, Mutex<Floor>);

impl FloorArray {
    /// Maps, for each count in `threads`, that many floors holding `entries` entries in
    /// all, entry `i` holding `i`.
    ///
    /// # Errors
    /// A failed mapping.
    pub fn open(entries: u64, threads: &[u64]) -> Result<FloorArray> {
        let mut splits = Vec::new();
        for &t in threads {
            if splits.iter().any(|(n, _)| *n == t) {
                continue;
            }
            let mut parts = Vec::new();
            for k in 0..t {
                let first = entries / t * k;
                let n = if k + 1 == t {
                    entries - first
                } else {
                    entries / t
                };
                let layout = Layout::pages(n * 8, 8);
                let mut floor = Floor::open(&layout, Guard::None)?;
                let mut at = 0;
                while at < n {
                    let m = LOAD_CHUNK.min(n - at);
                    floor.transact(&mut |tx| {
                        let bytes: Vec<u8> = (first + at..first + at + m)
                            .flat_map(u64::to_le_bytes)
                            .collect();
                        tx.write(at * 8, &bytes)
                    })?;
                    at += m;
                }
                parts.push((first, Mutex::new(floor)));
            }
            splits.push((t, parts));
        }
        Ok(FloorArray { entries, splits })
    }

    /// As [`VistaArray::run`]: `threads` threads (a count given to [`FloorArray::open`]),
    /// each on its own floor.
    ///
    /// # Errors
    /// A thread count not opened, or the first error of a thread.
    pub fn run(&self, threads: u64, swaps: u64, window: Duration, seed: u64) -> Result<Cell> {
        let (_, parts) = self
            .splits
            .iter()
            .find(|(n, _)| *n == threads)
            .with_context(|| format!("the floor was not split for {threads} threads"))?;
        run_threads(threads, window, |t, stop| {
            let (_, floor) = &parts[usize::try_from(t)?];
            let mut floor = floor
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            floor_work(&mut floor, swaps, seed.wrapping_add(t), stop)
        })
    }

    /// Reads every part back and checks that together they are still a permutation of
    /// `0..n`.
    ///
    /// # Errors
    /// What [`SumCheck::finish`] finds, or the floor's error.
    pub fn check(&self) -> Result<()> {
        for (_, parts) in &self.splits {
            let mut check = SumCheck::new(self.entries);
            for (_, floor) in parts {
                let mut floor = floor
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let len = floor.len() as u64;
                let mut at = 0;
                while at < len {
                    let n = (CHECK_CHUNK * 8).min(len - at);
                    let mut buf = vec![0u8; usize::try_from(n)?];
                    floor.transact(&mut |tx| tx.read(at, &mut buf))?;
                    check.add_bytes(&buf);
                    at += n;
                }
            }
            check.finish()?;
        }
        Ok(())
    }
}

/// One thread's SPS transactions on its floor until `stop`: (commits, retries = 0).
fn floor_work(floor: &mut Floor, swaps: u64, seed: u64, stop: &AtomicBool) -> Result<(u64, u64)> {
    let entries = floor.len() as u64 / 8;
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut pairs = Vec::with_capacity(usize::try_from(swaps)?);
    let mut commits = 0;
    while !stop.load(Ordering::Relaxed) {
        pairs.clear();
        for _ in 0..swaps {
            let a = rng.gen_range(0..entries) * 8;
            let b = rng.gen_range(0..entries) * 8;
            pairs.push((a, b));
        }
        floor.transact(&mut |tx| {
            for &(a, b) in &pairs {
                let va = tx.read_u64(a)?;
                let vb = tx.read_u64(b)?;
                tx.write_u64(a, vb)?;
                tx.write_u64(b, va)?;
            }
            Ok(())
        })?;
        commits += 1;
    }
    Ok((commits, 0))
}

/// Runs `work(t, stop)` on `threads` threads at once for `window` (all start together;
/// the first error stops the others) and sums their (commits, retries).
fn run_threads(
    threads: u64,
    window: Duration,
    work: impl Fn(u64, &AtomicBool) -> Result<(u64, u64)> + Sync,
) -> Result<Cell> {
    let stop = AtomicBool::new(false);
    let start = Barrier::new(usize::try_from(threads)? + 1);
    std::thread::scope(|s| -> Result<Cell> {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (stop, start, work) = (&stop, &start, &work);
                s.spawn(move || -> Result<(u64, u64)> {
                    start.wait();
                    let result = work(t, stop);
                    if result.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    result
                })
            })
            .collect();
        start.wait();
        let began = Instant::now();
        while !stop.load(Ordering::Relaxed) && began.elapsed() < window {
            std::thread::sleep(Duration::from_millis(1).min(window));
        }
        stop.store(true, Ordering::Relaxed);
        let elapsed = began.elapsed();
        let mut cell = Cell {
            commits: 0,
            retries: 0,
            elapsed,
        };
        let mut first_error = None;
        for w in workers {
            match w.join().expect("an SPS thread panicked") {
                Ok((c, r)) => {
                    cell.commits += c;
                    cell.retries += r;
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        first_error.map_or(Ok(cell), Err)
    })
}

impl Drop for VistaArray {
    fn drop(&mut self) {
        // Errors are ignored: the files are scratch, and a failed close leaves them for
        // the temporary directory's removal.
        if let Some(seg) = self.seg.take() {
            let _ = seg.close();
        }
        let _ = Segment::remove(&self.path, &self.opts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_threads_keep_the_permutation_and_a_stray_store_is_caught() {
        let scratch = tempfile::tempdir().unwrap();
        let opts = Options::new()
            .protection(::vista::Protection::None)
            .writeback(::vista::Writeback::Manual);
        let a = VistaArray::open(scratch.path(), &opts, 1000, false).unwrap();
        for swaps in [1, 16] {
            let cell = a.run(2, swaps, Duration::from_millis(20), 7).unwrap();
            assert!(cell.commits > 0);
        }
        a.check().unwrap();
        // A lost swap (one side written, the other not) changes the sum.
        a.segment()
            .transaction(|tx| {
                let v: u64 = tx.get(8)?;
                tx.put(16, &v)
            })
            .unwrap();
        assert!(a.check().is_err());
    }

    #[test]
    fn split_floors_keep_the_permutation_and_a_stray_store_is_caught() {
        let f = FloorArray::open(1001, &[1, 2]).unwrap();
        for (threads, swaps) in [(1, 1), (2, 16)] {
            let cell = f.run(threads, swaps, Duration::from_millis(20), 7).unwrap();
            assert!(cell.commits > 0);
        }
        f.check().unwrap();
        assert!(f.run(3, 1, Duration::from_millis(1), 7).is_err());
        // The second thread's part starts at entry 500 and ends with entry 1000.
        let (_, parts) = &f.splits[1];
        assert_eq!(parts[1].0, 500);
        parts[1]
            .1
            .lock()
            .unwrap()
            .transact(&mut |tx| tx.write_u64(0, 3))
            .unwrap();
        assert!(f.check().is_err());
    }
}
