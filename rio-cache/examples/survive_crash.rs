//! A process writes records into a rio-cache and is killed with SIGKILL mid-stream: every
//! record it was told was written is there when the cache is reopened (warm start). Then
//! the memory image is dropped, as a power loss would, and the cache starts cold from
//! the disk image, which holds exactly the last checkpoint.
//!
//! ```text
//! cargo run --release -p rio-cache --example survive_crash
//! ```
//!
//! Exits non-zero if anything does not match.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{ensure, Context, Result};
use rio_cache::{RioCache, RioOptions, StartKind, Writeback};

const SIZE: u64 = 16 << 20;
const RECORD: u64 = 64;
/// The child takes a checkpoint after this many records...
const CHECKPOINT_AFTER: u64 = 5_000;
/// ...and the parent kills it once it has acknowledged this many.
const KILL_AFTER: u64 = 20_000;
const CHILD_ENV: &str = "SURVIVE_CRASH_CHILD_DIR";

/// Record `i`: its number, then a checksum-like fill derived from it.
fn record(i: u64) -> [u8; RECORD as usize] {
    let mut r = [0u8; RECORD as usize];
    r[..8].copy_from_slice(&(i + 1).to_le_bytes());
    let mut x = (i + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for b in &mut r[8..] {
        x ^= x >> 29;
        x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        *b = (x >> 56) as u8;
    }
    r
}

fn options(dir: &Path) -> RioOptions {
    RioOptions::new()
        .size(SIZE)
        .cache_dir(dir.join("shm"))
        .writeback(Writeback::Manual)
        .checkpoint_on_close(false)
}

/// The child: writes records forever (until the slots run out), one write window each,
/// and acknowledges each on stdout after its window closed.
fn child(dir: &Path) -> Result<()> {
    let mut cache = RioCache::open(dir.join("records.rio"), &options(dir))?;
    let mut out = std::io::stdout().lock();
    for i in 0..SIZE / RECORD {
        cache
            .window(i * RECORD, RECORD)?
            .copy_from_slice(&record(i));
        writeln!(out, "ack {i}")?;
        if i + 1 == CHECKPOINT_AFTER {
            cache.checkpoint()?;
            writeln!(out, "checkpoint {i}")?;
        }
    }
    loop {
        std::thread::park();
    }
}

/// Counts the records at the start of the cache and checks that everything after them
/// is zero: a record is either completely there or not written at all.
fn count_records(cache: &RioCache) -> Result<u64> {
    let mut n = 0;
    while n < SIZE / RECORD && cache.read(n * RECORD, RECORD)? == record(n) {
        n += 1;
    }
    let tail = n * RECORD;
    ensure!(
        cache.read(tail, SIZE - tail)?.iter().all(|&b| b == 0),
        "record {n} is damaged, or bytes follow the records that no one wrote"
    );
    Ok(n)
}

fn main() -> Result<()> {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        return child(Path::new(&dir));
    }
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path();
    // The memory image goes on a memory file system when there is one.
    let shm: PathBuf = if Path::new("/dev/shm").is_dir() {
        tempfile::tempdir_in("/dev/shm")?.keep()
    } else {
        dir.join("shm-fallback")
    };
    std::fs::create_dir_all(&shm)?;
    std::os::unix::fs::symlink(&shm, dir.join("shm"))?;
    let _cleanup = Cleanup(shm.clone());
    let path = dir.join("records.rio");
    println!("cache: {} ({} MiB)", path.display(), SIZE >> 20);
    println!("memory image in {}", shm.display());

    // 1. A child process writes records and is killed with SIGKILL mid-stream.
    let mut child = Command::new(std::env::current_exe()?)
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut acked = None;
    let mut checkpointed = None;
    let lines = BufReader::new(child.stdout.take().context("child stdout")?);
    for line in lines.lines() {
        let line = line?;
        if let Some(n) = line.strip_prefix("ack ") {
            acked = Some(n.parse::<u64>()?);
        } else if let Some(n) = line.strip_prefix("checkpoint ") {
            checkpointed = Some(n.parse::<u64>()?);
        }
        if acked.is_some_and(|n| n + 1 >= KILL_AFTER) {
            break;
        }
    }
    let pid = i32::try_from(child.id())?;
    // SAFETY: kill has no memory-safety preconditions; the pid is our unreaped child.
    let rc = unsafe { libc::kill(pid, libc::SIGKILL) };
    ensure!(rc == 0, "kill failed: {}", std::io::Error::last_os_error());
    let status = child.wait()?;
    ensure!(
        status.signal() == Some(libc::SIGKILL),
        "child was not killed by SIGKILL: {status:?}"
    );
    let acked = acked.context("no record acknowledged")? + 1;
    let checkpointed = checkpointed.context("no checkpoint acknowledged")? + 1;
    println!(
        "1. child (pid {pid}) acknowledged {acked} records, with a checkpoint after \
         {checkpointed}, then died by SIGKILL"
    );

    // 2. Reopen: the memory image survived the process, so the start is warm.
    let cache = RioCache::open(&path, &options(dir))?;
    ensure!(
        cache.start_kind() == StartKind::Warm,
        "expected a warm start, got {:?}",
        cache.start_kind()
    );
    let found = count_records(&cache)?;
    ensure!(
        found >= acked,
        "only {found} of {acked} acknowledged records survived"
    );
    println!(
        "2. warm start ({:?} protection): all {acked} acknowledged records are intact{}",
        cache.protection(),
        if found > acked {
            format!(
                ", and {} more it wrote before its acks were read",
                found - acked
            )
        } else {
            String::new()
        }
    );

    // 3. Power loss: the memory image is gone; the disk image holds the checkpoint.
    let image = cache.image_path().to_owned();
    drop(cache);
    std::fs::remove_file(&image)?;
    let cache = RioCache::open(&path, &options(dir))?;
    ensure!(
        matches!(cache.start_kind(), StartKind::Cold(_)),
        "expected a cold start, got {:?}",
        cache.start_kind()
    );
    let found = count_records(&cache)?;
    ensure!(
        found == checkpointed,
        "cold start holds {found} records, the checkpoint {checkpointed}"
    );
    println!(
        "3. power loss (memory image deleted): cold start holds exactly the last \
         checkpoint, records 0..{checkpointed}, and nothing after it"
    );
    println!("OK");
    Ok(())
}

/// Removes the memory-image directory at exit.
struct Cleanup(PathBuf);
impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
