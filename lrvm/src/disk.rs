//! Positioned file I/O with an optional power-loss emulation.
//!
//! In the normal mode a [`DiskFile`] is a thin wrapper over `pread`/`pwrite`/`fdatasync`.
//! With power-loss emulation (see [`Options::emulate_power_loss`](crate::Options::emulate_power_loss))
//! writes stay in process memory until [`DiskFile::sync`], so a `SIGKILL` between a write
//! and its sync loses the write, as a power failure loses the page cache. Reads see the
//! pending writes, as reads see the page cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{Mutex, PoisonError};

/// Writes not yet synced, oldest first (power-loss emulation).
type Pending = Mutex<Vec<(u64, Vec<u8>)>>;

/// A file accessed only at explicit offsets.
#[derive(Debug)]
pub(crate) struct DiskFile {
    file: File,
    /// `Some` in power-loss emulation mode: writes not yet synced, oldest first.
    pending: Option<Pending>,
}

impl DiskFile {
    pub(crate) fn new(file: File, emulate_power_loss: bool) -> Self {
        Self {
            file,
            pending: emulate_power_loss.then(|| Mutex::new(Vec::new())),
        }
    }

    pub(crate) fn file(&self) -> &File {
        &self.file
    }

    pub(crate) fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        match &self.pending {
            None => self.file.write_all_at(buf, offset),
            Some(p) => {
                p.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((offset, buf.to_vec()));
                Ok(())
            }
        }
    }

    pub(crate) fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let Some(p) = &self.pending else {
            return self.file.read_exact_at(buf, offset);
        };
        let pending = p.lock().unwrap_or_else(PoisonError::into_inner);
        // Pending writes may extend the file: the visible length is the larger one.
        let file_len = self.file.metadata()?.len();
        let visible_len = pending
            .iter()
            .map(|(o, d)| o + d.len() as u64)
            .fold(file_len, u64::max);
        let end = offset + buf.len() as u64;
        if end > visible_len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end of file",
            ));
        }
        buf.fill(0);
        if offset < file_len {
            let n = ((file_len - offset) as usize).min(buf.len());
            self.file.read_exact_at(&mut buf[..n], offset)?;
        }
        for (woff, data) in pending.iter() {
            let wend = woff + data.len() as u64;
            if *woff < end && wend > offset {
                let from = (*woff).max(offset);
                let to = wend.min(end);
                buf[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&data[(from - woff) as usize..(to - woff) as usize]);
            }
        }
        Ok(())
    }

    /// The file length including pending (unsynced) extensions.
    pub(crate) fn len(&self) -> io::Result<u64> {
        let file_len = self.file.metadata()?.len();
        Ok(match &self.pending {
            None => file_len,
            Some(p) => p
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .map(|(o, d)| o + d.len() as u64)
                .fold(file_len, u64::max),
        })
    }

    /// Makes every earlier write durable (`fdatasync`).
    pub(crate) fn sync(&self) -> io::Result<()> {
        if let Some(p) = &self.pending {
            let mut pending = p.lock().unwrap_or_else(PoisonError::into_inner);
            for (off, data) in pending.drain(..) {
                self.file.write_all_at(&data, off)?;
            }
        }
        self.file.sync_data()
    }

    /// Forgets unsynced writes (emulation mode only), as a power failure would.
    pub(crate) fn discard_pending(&self) {
        if let Some(p) = &self.pending {
            p.lock().unwrap_or_else(PoisonError::into_inner).clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emulated_writes_are_visible_but_lost_without_sync() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        f.set_len(16).unwrap();
        let d = DiskFile::new(f, true);
        d.write_at(b"abcd", 4).unwrap();
        d.write_at(b"xyz", 18).unwrap();
        assert_eq!(d.len().unwrap(), 21);
        let mut buf = [0u8; 8];
        d.read_at(&mut buf, 2).unwrap();
        assert_eq!(&buf, b"\0\0abcd\0\0");
        assert_eq!(std::fs::read(&path).unwrap(), vec![0; 16]);
        d.discard_pending();
        d.write_at(b"q", 0).unwrap();
        d.sync().unwrap();
        let on_disk = std::fs::read(&path).unwrap();
        assert_eq!(on_disk[0], b'q');
        assert_eq!(&on_disk[4..8], &[0; 4]);
    }
}
