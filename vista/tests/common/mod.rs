//! Helpers shared by vista's integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use vista::{Options, Protection, Writeback};

/// What the tests expect of protection keys (as in rio-cache's tests): `require` makes
/// the tests that run one protection mode run [`Protection::Pkey`], and the pkey tests
/// fail instead of skipping on a machine without keys (`scripts/pkey-vm` sets it in its
/// emulated machine with keys).
pub const PKEY_ENV: &str = "RIO_TEST_PKEY";

/// The protection of the tests that run one mode: `Pkey` when [`PKEY_ENV`] requires
/// it, else `Auto`.
pub fn protection() -> Protection {
    if std::env::var(PKEY_ENV).is_ok_and(|v| v == "require") {
        Protection::Pkey
    } else {
        Protection::Auto
    }
}

/// Whether the pkey tests run here: true if the machine has keys; false, with a note
/// naming the reason, if it has none; a panic if [`PKEY_ENV`] requires them.
pub fn pkeys_here() -> bool {
    static NOTED: std::sync::Once = std::sync::Once::new();
    match rio_cache::pkey_support() {
        Ok(()) => true,
        Err(why) => {
            assert!(
                protection() != Protection::Pkey,
                "{PKEY_ENV}=require, but protection keys are unavailable: {why}"
            );
            NOTED.call_once(|| eprintln!("note: Protection::Pkey not tested: {why}"));
            false
        }
    }
}

/// A segment path and a private cache directory, removed on drop.
pub struct Place {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Place {
    pub fn new() -> Place {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("seg.vista");
        Place { dir, path }
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.dir.path().join("shm")
    }

    /// Small segment, manual writeback, private cache dir.
    pub fn opts(&self, size: u64) -> Options {
        std::fs::create_dir_all(self.cache_dir()).expect("cache dir");
        Options::new()
            .size(size)
            .undo_log_size(16 << 10)
            .protection(protection())
            .writeback(Writeback::Manual)
            .cache_dir(self.cache_dir())
    }

    pub fn image(&self) -> PathBuf {
        rio_cache::image_path(&self.path, &self.cache_dir()).expect("image path")
    }

    pub fn journal(&self) -> PathBuf {
        rio_cache::journal_path(&self.path)
    }

    /// Every byte of the disk file, journal and memory image.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            files: [self.path.clone(), self.journal(), self.image()]
                .into_iter()
                .map(|p| {
                    let bytes = std::fs::read(&p).ok();
                    (p, bytes)
                })
                .collect(),
        }
    }

    /// Drops the memory image: what a power loss or reboot does.
    pub fn lose_power(&self) {
        let _ = std::fs::remove_file(self.image());
    }
}

/// The bytes of a segment's files at one instant. Restoring them in place (same inodes)
/// reproduces exactly what a process crash at that instant leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub files: Vec<(PathBuf, Option<Vec<u8>>)>,
}

impl Snapshot {
    pub fn restore(&self) {
        for (p, bytes) in &self.files {
            match bytes {
                Some(b) => write_in_place(p, b),
                None => {
                    let _ = std::fs::remove_file(p);
                }
            }
        }
    }
}

/// Every file under `dir` (recursively), sorted, with its bytes: a directory listing to
/// compare before and after an operation that must not create, remove or change any
/// file.
pub fn tree(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).expect("read dir") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let bytes = std::fs::read(&p).expect("read");
                out.push((p, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Asserts two [`tree`]s are the same, naming the first difference.
pub fn assert_same_tree(before: &[(PathBuf, Vec<u8>)], after: &[(PathBuf, Vec<u8>)], what: &str) {
    let names = |t: &[(PathBuf, Vec<u8>)]| t.iter().map(|(p, _)| p.clone()).collect::<Vec<_>>();
    assert_eq!(
        names(before),
        names(after),
        "{what}: the directory listing changed"
    );
    for ((p, b), (_, a)) in before.iter().zip(after) {
        assert!(b == a, "{what}: {} changed", p.display());
    }
}

/// Overwrites a file's bytes without replacing its inode.
pub fn write_in_place(p: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(p)
        .expect("open for restore");
    f.write_all(bytes).expect("restore");
}

/// A deterministic pattern for offset `i` of generation `g`.
pub fn pattern(g: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| g.wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

/// Every guard this machine can run: None, Mprotect, Alias, and Pkey where the CPU has
/// keys. Under `RIO_TEST_PKEY=require` (the emulated machine of `scripts/pkey-vm`, which
/// is slow and exists to prove the pkey path) only Pkey: the others run natively.
pub fn guards() -> Vec<Protection> {
    if protection() == Protection::Pkey {
        assert!(pkeys_here());
        return vec![Protection::Pkey];
    }
    let mut g = vec![Protection::None, Protection::Mprotect, Protection::Alias];
    if pkeys_here() {
        g.push(Protection::Pkey);
    }
    g
}

/// Where the vista header of each copy of a segment's data starts in `file`, the bytes of
/// a disk file (one copy per slot that holds a checkpoint) or of a memory image.
pub fn header_copies(file: &[u8]) -> Vec<usize> {
    (0..file.len().saturating_sub(8))
        .step_by(4096)
        .filter(|&at| &file[at..at + 8] == b"VISTASEG")
        .collect()
}

/// Makes every header copy in `file` say format `version`, with a matching checksum (as
/// a build of that version would have written it); returns where the copies start.
pub fn set_format_version(file: &mut [u8], version: u32) -> Vec<usize> {
    let copies = header_copies(file);
    for &h in &copies {
        file[h + 8..h + 12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32fast::hash(&file[h..h + 60]);
        file[h + 60..h + 64].copy_from_slice(&crc.to_le_bytes());
    }
    copies
}
