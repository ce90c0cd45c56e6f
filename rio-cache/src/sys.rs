//! The one room of the crate where unsafe code lives: system calls (mprotect,
//! pkey_*, WRPKRU, flock, fallocate) and the raw views of the shared mappings.
//!
//! The soundness argument for handing out slices of a `MAP_SHARED` mapping is in the
//! crate documentation ("Why the slices are sound"); each function below states the
//! part it relies on.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::AtomicU8;

use memmap2::{MmapOptions, MmapRaw};

/// The page size rio-cache works in. Checked against the system's at open.
pub(crate) const PAGE: usize = 4096;

/// The system's page size.
pub(crate) fn system_page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).unwrap_or(PAGE)
}

/// A `MAP_SHARED` mapping of part of a file.
#[derive(Debug)]
pub(crate) struct Mapping {
    map: MmapRaw,
}

// SAFETY: the mapping is plain memory shared with a file; `Mapping` hands out only raw
// pointers and atomics, and every access path documents its own synchronization.
unsafe impl Send for Mapping {}
// SAFETY: as above; shared references expose only reads and atomics.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps `len` bytes of `file` at `offset`, readable and writable.
    pub(crate) fn read_write(file: &File, offset: u64, len: usize) -> io::Result<Mapping> {
        let map = MmapOptions::new().offset(offset).len(len).map_raw(file)?;
        Ok(Mapping { map })
    }

    /// Maps `len` bytes of `file` at `offset`, read-only.
    pub(crate) fn read_only(file: &File, offset: u64, len: usize) -> io::Result<Mapping> {
        let map = MmapOptions::new()
            .offset(offset)
            .len(len)
            .map_raw_read_only(file)?;
        Ok(Mapping { map })
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.map.as_mut_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// The bytes `[off, off + len)` for reading.
    ///
    /// # Safety
    /// The caller must ensure the range is in bounds and that no `&mut` to any of these
    /// bytes exists or is created while the returned slice lives (in rio-cache: writers
    /// need `&mut RioCache` and hold the checkpoint gate shared, while readers hold
    /// `&RioCache` or the gate exclusively).
    pub(crate) unsafe fn slice<'a>(&self, off: usize, len: usize) -> &'a [u8] {
        debug_assert!(off.checked_add(len).is_some_and(|end| end <= self.len()));
        // SAFETY: in bounds of a live mapping (caller), no concurrent `&mut` (caller).
        unsafe { std::slice::from_raw_parts(self.ptr().add(off), len) }
    }

    /// The bytes `[off, off + len)` for writing.
    ///
    /// # Safety
    /// The caller must ensure the range is in bounds, writable at the page-table level
    /// for the whole life of the slice, and that no other reference to these bytes
    /// exists or is created while the returned slice lives.
    pub(crate) unsafe fn slice_mut<'a>(&self, off: usize, len: usize) -> &'a mut [u8] {
        debug_assert!(off.checked_add(len).is_some_and(|end| end <= self.len()));
        // SAFETY: in bounds, writable, and unaliased (all by the caller's contract).
        unsafe { std::slice::from_raw_parts_mut(self.ptr().add(off), len) }
    }

    /// `len` bytes at `off` viewed as atomics.
    ///
    /// # Safety
    /// The range must be in bounds and must only ever be accessed through atomics
    /// (rio-cache's dirty maps are never handed out any other way).
    pub(crate) unsafe fn atomics<'a>(&self, off: usize, len: usize) -> &'a [AtomicU8] {
        debug_assert!(off.checked_add(len).is_some_and(|end| end <= self.len()));
        // SAFETY: AtomicU8 has the size and alignment of u8; the range is in bounds and
        // only accessed atomically (caller).
        unsafe { std::slice::from_raw_parts(self.ptr().add(off).cast::<AtomicU8>(), len) }
    }

    /// Changes the protection of `[off, off + len)` (page-aligned) of this mapping.
    pub(crate) fn protect(&self, off: usize, len: usize, writable: bool) -> io::Result<()> {
        assert!(off % PAGE == 0 && off + len <= self.len());
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: the range is page-aligned and inside this live mapping (asserted);
        // changing protection cannot invalidate Rust references because rio-cache only
        // removes write access from ranges with no live `&mut` (write windows are
        // closed first) and never removes read access.
        let rc = unsafe { libc::mprotect(self.ptr().add(off).cast(), len, prot) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Tags the whole mapping, read-write, with protection key `key`.
    pub(crate) fn tag_with_pkey(&self, key: u32) -> io::Result<()> {
        // SAFETY: the range is exactly this live mapping; the protection stays
        // read-write at the page-table level, access is then governed by PKRU, which
        // only ever denies this key to threads that hold no slice of this mapping.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pkey_mprotect,
                self.ptr(),
                self.len(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::c_long::from(key as i32),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

/// What the CPU says about protection keys (CPUID leaf 7, sub-leaf 0, ECX): whether it
/// has them (`PKU`, bit 3) and whether the kernel turned them on (`OSPKE`, bit 4, a copy
/// of CR4.PKE).
#[cfg(target_arch = "x86_64")]
pub(crate) fn cpu_pkeys() -> (bool, bool) {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    #[allow(unused_unsafe)] // unsafe fns before Rust 1.87, safe since
    // SAFETY: CPUID exists on every x86-64 CPU and only reads identification registers;
    // leaf 7 is asked for only if leaf 0 says it exists.
    let ecx = unsafe {
        if __cpuid(0).eax < 7 {
            return (false, false);
        }
        __cpuid_count(7, 0).ecx
    };
    (ecx & (1 << 3) != 0, ecx & (1 << 4) != 0)
}

/// Allocates a protection key whose initial rights for this thread deny all access.
///
/// Checks the CPU first: without PKU (or with the kernel not enabling it), Linux
/// answers `pkey_alloc` with `ENOSPC` or `EINVAL`, which would name the wrong cause.
#[cfg(target_arch = "x86_64")]
pub(crate) fn pkey_alloc() -> Result<u32, crate::PkeyUnavailable> {
    use crate::PkeyUnavailable;
    match cpu_pkeys() {
        (false, _) => return Err(PkeyUnavailable::NoCpuSupport),
        (true, false) => return Err(PkeyUnavailable::NotEnabledByKernel),
        (true, true) => {}
    }
    // SAFETY: pkey_alloc has no memory-safety preconditions.
    let rc = unsafe { libc::syscall(libc::SYS_pkey_alloc, 0, PKEY_DISABLE_ACCESS) };
    if rc >= 0 {
        return Ok(rc as u32);
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ENOSPC) => PkeyUnavailable::NoFreeKey,
        Some(libc::ENOSYS) => PkeyUnavailable::NotEnabledByKernel,
        _ => PkeyUnavailable::Os(e),
    })
}

/// Protection keys are used on x86-64 only.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn pkey_alloc() -> Result<u32, crate::PkeyUnavailable> {
    Err(crate::PkeyUnavailable::NotX86_64)
}

/// Frees a protection key.
pub(crate) fn pkey_free(key: u32) {
    // SAFETY: pkey_free has no memory-safety preconditions; the mapping tagged with it
    // is unmapped before this is called.
    unsafe {
        libc::syscall(libc::SYS_pkey_free, libc::c_long::from(key as i32));
    }
}

const PKEY_DISABLE_ACCESS: libc::c_long = 1;

/// The PKRU bits that deny all access to `key`.
pub(crate) fn pkru_deny_bits(key: u32) -> u32 {
    0b11 << (2 * key)
}

/// Reads this thread's PKRU register.
#[cfg(target_arch = "x86_64")]
pub(crate) fn rdpkru() -> u32 {
    let eax: u32;
    // SAFETY: RDPKRU only reads a register; it is valid because rio-cache calls it only
    // after pkey_alloc succeeded, which proves the CPU has PKU and the OS enabled it.
    unsafe {
        std::arch::asm!(
            "rdpkru",
            in("ecx") 0u32,
            out("eax") eax,
            out("edx") _,
            options(nomem, nostack, preserves_flags)
        );
    }
    eax
}

/// Writes this thread's PKRU register.
#[cfg(target_arch = "x86_64")]
pub(crate) fn wrpkru(value: u32) {
    // `nomem` is not claimed: the change affects which later memory accesses fault.
    // SAFETY: WRPKRU changes this thread's rights only, and rio-cache changes only its
    // own key's bits, granting write access only while a window is open on this thread
    // and never removing rights a live slice relies on (reads use the key-0 mapping).
    unsafe {
        std::arch::asm!(
            "wrpkru",
            in("eax") value,
            in("ecx") 0u32,
            in("edx") 0u32,
            options(nostack, preserves_flags)
        );
    }
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn rdpkru() -> u32 {
    unreachable!("pkey_alloc never succeeds off x86_64 in rio-cache")
}

#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn wrpkru(_value: u32) {
    unreachable!("pkey_alloc never succeeds off x86_64 in rio-cache")
}

/// Takes an exclusive, non-blocking `flock` on `file`. `Ok(false)` means another open
/// file description holds it.
pub(crate) fn try_lock_exclusive(file: &File) -> io::Result<bool> {
    // SAFETY: flock on a valid, open descriptor has no memory-safety preconditions.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Allocates the blocks of `[0, len)` of `file` now, so that a full memory file system
/// is an error here rather than a SIGBUS on first touch.
pub(crate) fn preallocate(file: &File, len: u64) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: posix_fallocate on a valid, open descriptor has no memory-safety
    // preconditions.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// A mapping that is only ever accessed through atomic bytes: the memory image's
/// header page and dirty maps. Because no `&[u8]` or `&mut [u8]` of it is ever created,
/// handing out `&[AtomicU8]` from `&self` is sound.
#[derive(Debug)]
pub(crate) struct AtomicMapping {
    map: Mapping,
}

impl AtomicMapping {
    pub(crate) fn new(map: Mapping) -> AtomicMapping {
        AtomicMapping { map }
    }

    /// The 8 bytes at `off` (a multiple of 8) as one atomic word. Panics if out of
    /// bounds or misaligned.
    pub(crate) fn word(&self, off: usize) -> &std::sync::atomic::AtomicU64 {
        assert!(off % 8 == 0 && off + 8 <= self.map.len());
        let word = self.map.ptr().wrapping_add(off);
        #[allow(clippy::cast_ptr_alignment)] // alignment asserted above
        // SAFETY: in bounds and 8-aligned (asserted; the mapping is page-aligned); this
        // mapping is only ever accessed atomically by this process, and these 8 bytes
        // only as this word; the reference borrows self.
        unsafe {
            &*word.cast::<std::sync::atomic::AtomicU64>()
        }
    }

    /// `len` bytes at `off` as atomics. Panics if out of bounds.
    pub(crate) fn bytes(&self, off: usize, len: usize) -> &[AtomicU8] {
        assert!(off
            .checked_add(len)
            .is_some_and(|end| end <= self.map.len()));
        // SAFETY: in bounds (asserted); this mapping is never accessed non-atomically
        // by this process (the type offers no other view), and the slice borrows self,
        // so it cannot outlive the mapping.
        unsafe { self.map.atomics(off, len) }
    }
}
