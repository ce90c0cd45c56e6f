//! The bytes of an engine's files, taken and put back: the starting states of the
//! exhaustive modes.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::engines::remove_if_exists;

/// The bytes of a set of files (`None`: absent), to put back later.
#[derive(Debug, Clone)]
pub struct Snapshot(Vec<(PathBuf, Option<Vec<u8>>)>);

impl Snapshot {
    /// Reads `files`.
    ///
    /// # Errors
    /// I/O errors other than "not found".
    pub fn take(files: &[PathBuf]) -> Result<Snapshot> {
        let mut v = Vec::new();
        for f in files {
            let b = match std::fs::read(f) {
                Ok(b) => Some(b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("read {}", f.display())),
            };
            v.push((f.clone(), b));
        }
        Ok(Snapshot(v))
    }

    /// Puts the files back as they were (in place, so paths and inodes stay).
    ///
    /// # Errors
    /// I/O errors.
    pub fn restore(&self) -> Result<()> {
        for (f, b) in &self.0 {
            match b {
                Some(b) => {
                    use std::io::Write;
                    let mut file = std::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .open(f)
                        .with_context(|| format!("restore {}", f.display()))?;
                    file.write_all(b)?;
                    file.set_len(b.len() as u64)?;
                }
                None => remove_if_exists(f)?,
            }
        }
        Ok(())
    }

    /// Writes the files under other names: `map` turns each path into its copy's.
    ///
    /// # Errors
    /// I/O errors.
    pub fn copy_to(&self, targets: &[PathBuf]) -> Result<()> {
        for ((_, b), t) in self.0.iter().zip(targets) {
            match b {
                Some(b) => std::fs::write(t, b)?,
                None => remove_if_exists(t)?,
            }
        }
        Ok(())
    }
}
