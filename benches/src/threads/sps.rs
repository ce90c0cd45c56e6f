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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Barrier, Mutex};
use std::time::{Duration, Instant};

use ::vista::{Options, Segment};
use anyhow::{Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

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

/// SPS with the least work an undo log does: before each store, the word's offset and
/// old value are appended to a log (a `Vec` kept across transactions), and a commit
/// empties the log. No locks, no checksums, no page marks, no guard, no dispatch: the
/// swap loop is plain loads and stores (relaxed atomics, which compile to plain moves),
/// so it measures what the memory and the log append cost on this machine, beside vista
/// and the PTMs in the same run.
///
/// The log is never read back (nothing aborts here); a real engine must also be able to
/// roll back, which the suite's floor ([`crate::floor`]) does.
///
/// With `t` threads, thread `k` swaps only entries whose index is `k` modulo `t`, so no
/// word is shared and nothing needs a lock, while every thread still reaches the whole
/// array, as the PTMs' and vista's threads do (a thread kept to its own `t`-th of the
/// array would touch fewer pages and run faster for it). The array is one heap
/// allocation of small pages, touched while it is filled.
#[derive(Debug)]
pub struct FloorArray {
    words: Vec<AtomicU64>,
}

impl FloorArray {
    /// An array of `entries` entries, entry `i` holding `i`.
    ///
    /// # Errors
    /// No entries.
    pub fn open(entries: u64) -> Result<FloorArray> {
        anyhow::ensure!(entries > 0, "the floor needs at least one entry");
        Ok(FloorArray {
            words: (0..entries).map(AtomicU64::new).collect(),
        })
    }

    /// As [`VistaArray::run`]: `threads` threads, thread `k` on the entries whose index
    /// is `k` modulo `threads`.
    ///
    /// # Errors
    /// More threads than entries (a thread would have none), or the first error of a
    /// thread.
    pub fn run(&self, threads: u64, swaps: u64, window: Duration, seed: u64) -> Result<Cell> {
        let entries = self.words.len() as u64;
        anyhow::ensure!(
            (1..=entries).contains(&threads),
            "the floor has {entries} entries for {threads} threads: it needs 1 to {entries} threads"
        );
        run_threads(threads, window, |k, stop| {
            // Entries k, k + threads, k + 2 threads, ...
            let mine = (entries - k).div_ceil(threads);
            floor_work(
                &self.words,
                (k, threads, mine),
                swaps,
                seed.wrapping_add(k),
                stop,
            )
        })
    }

    /// Reads the array back and checks that it is still a permutation of `0..n`.
    ///
    /// # Errors
    /// What [`SumCheck::finish`] finds.
    pub fn check(&self) -> Result<()> {
        let mut check = SumCheck::new(self.words.len() as u64);
        for w in &self.words {
            check.add(w.load(Ordering::Relaxed));
        }
        check.finish()
    }
}

/// One thread's SPS transactions until `stop` on the entries `first + stride * j` for
/// `j < count` of `words`: (commits, retries = 0).
fn floor_work(
    words: &[AtomicU64],
    (first, stride, count): (u64, u64, u64),
    swaps: u64,
    seed: u64,
    stop: &AtomicBool,
) -> Result<(u64, u64)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut pairs = Vec::with_capacity(usize::try_from(swaps)?);
    let mut log: Vec<(usize, u64)> = Vec::with_capacity(2 * pairs.capacity());
    let mut commits = 0;
    let at = |j: u64| (first + stride * j) as usize;
    while !stop.load(Ordering::Relaxed) {
        pairs.clear();
        for _ in 0..swaps {
            pairs.push((at(rng.gen_range(0..count)), at(rng.gen_range(0..count))));
        }
        for &(a, b) in &pairs {
            let (va, vb) = (
                words[a].load(Ordering::Relaxed),
                words[b].load(Ordering::Relaxed),
            );
            log.push((a, va));
            words[a].store(vb, Ordering::Relaxed);
            log.push((b, vb));
            words[b].store(va, Ordering::Relaxed);
        }
        // Commit: the log is emptied. (`black_box`: the log is written as a real one
        // would be, not left out as never read.)
        std::hint::black_box(&mut log);
        log.clear();
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
    fn interleaved_floor_threads_keep_the_permutation_and_a_stray_store_is_caught() {
        let f = FloorArray::open(1001).unwrap();
        for (threads, swaps) in [(1, 1), (2, 16), (3, 4)] {
            let cell = f.run(threads, swaps, Duration::from_millis(20), 7).unwrap();
            assert!(cell.commits > 0);
        }
        f.check().unwrap();
        assert!(f.run(1002, 1, Duration::from_millis(1), 7).is_err());
        assert!(f.run(0, 1, Duration::from_millis(1), 7).is_err());
        assert!(FloorArray::open(0).is_err());
        // A lost swap (one side written, the other not) changes the sum.
        f.words[600].store(3, Ordering::Relaxed);
        assert!(f.check().is_err());
    }
}
