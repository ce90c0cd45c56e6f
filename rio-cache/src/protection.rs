//! Protection: the mode in force, the per-handle guard state, and mapping the data so
//! that the mode can guard it.

use std::fs::File;
use std::path::Path;
use std::sync::Mutex;

use crate::error::{IoContext, Result};
use crate::faults::{Faults, IoFile, IoOp};
use crate::options::Protection;
use crate::sys::{self, Mapping};

/// The protection actually in force (what [`Protection::Auto`] resolved to).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActiveProtection {
    /// No guard.
    None,
    /// `mprotect` windows.
    Mprotect,
    /// Memory protection key windows, with this key.
    Pkey(u32),
    /// A read-only public mapping and a writable alias at a random address
    /// ([`Protection::Alias`]).
    Alias,
}

/// The per-handle protection state, owned by the [`crate::RioCache`] and shared by its
/// updates (one at a time for a `RioCache`, any number for a [`crate::SharedCache`]).
#[derive(Debug)]
pub(crate) enum Guard {
    /// Without protection, opening a page only marks it dirty, which stays true until a
    /// checkpoint's copy clears the dirty map; see [`crate::PageMemo`].
    None,
    /// Open-window count per data page. The lock makes a count's change and the
    /// `mprotect` it calls for one step, so two threads' windows on a page never leave
    /// it read-only while one of them is open.
    Mprotect {
        refs: Mutex<Vec<u32>>,
    },
    Pkey {
        key: u32,
    },
    /// Writes go through the alias mapping, which is always writable: opening a page
    /// only marks it dirty. No state.
    Alias,
}

/// Resolves the protection mode, allocating a key if one is used.
pub(crate) fn resolve_protection(p: Protection) -> Result<ActiveProtection> {
    match p {
        Protection::None => Ok(ActiveProtection::None),
        Protection::Mprotect => Ok(ActiveProtection::Mprotect),
        Protection::Pkey => Ok(ActiveProtection::Pkey(sys::pkey_alloc()?)),
        Protection::Alias => Ok(ActiveProtection::Alias),
        Protection::Auto => {
            Ok(sys::pkey_alloc().map_or(ActiveProtection::Alias, ActiveProtection::Pkey))
        }
    }
}

/// Frees an allocated key unless disarmed: keeps failed opens from leaking keys.
pub(crate) struct KeyGuard(pub(crate) Option<u32>);
impl Drop for KeyGuard {
    fn drop(&mut self) {
        if let Some(k) = self.0 {
            sys::pkey_free(k);
        }
    }
}

pub(crate) type DataMaps = (Mapping, Option<Mapping>, Guard);

/// Maps the data area according to the protection mode.
pub(crate) fn map_data(
    image: &File,
    ipath: &Path,
    at: u64,
    len: usize,
    protection: ActiveProtection,
    pages: usize,
    faults: &Faults,
) -> Result<DataMaps> {
    let ctx = || format!("map {}", ipath.display());
    let map = || faults.check(IoOp::Map, IoFile::Image);
    map().context(ctx)?;
    Ok(match protection {
        ActiveProtection::None => (
            Mapping::read_write(image, at, len).context(ctx)?,
            None,
            Guard::None,
        ),
        ActiveProtection::Mprotect => {
            let m = Mapping::read_write(image, at, len).context(ctx)?;
            faults
                .check(IoOp::Protect, IoFile::Image)
                .and_then(|()| m.protect(0, len, false))
                .context(ctx)?;
            (
                m,
                None,
                Guard::Mprotect {
                    refs: Mutex::new(vec![0; pages]),
                },
            )
        }
        ActiveProtection::Pkey(key) => {
            let r = Mapping::read_only(image, at, len).context(ctx)?;
            // Populated like the alias, so a first write to a page takes no fault.
            map().context(ctx)?;
            let w = Mapping::read_write_populated(image, at, len).context(ctx)?;
            w.tag_with_pkey(key).context(ctx)?;
            // This thread's rights for the key were set to "no access" by pkey_alloc;
            // other threads start from the kernel's default, which also denies it.
            (r, Some(w), Guard::Pkey { key })
        }
        ActiveProtection::Alias => {
            let r = Mapping::read_only(image, at, len).context(ctx)?;
            map().context(ctx)?;
            let w = Mapping::read_write_hidden(image, at, len)
                .context(|| format!("map {} at a random address", ipath.display()))?;
            (r, Some(w), Guard::Alias)
        }
    })
}
