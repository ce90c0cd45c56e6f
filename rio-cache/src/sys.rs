//! The one room of the crate where unsafe code lives: system calls (mprotect,
//! pkey_*, WRPKRU, flock, fallocate) and the raw views of the shared mappings here, and
//! in [`access`] the updates, windows and reads that turn those views into slices under
//! the rules of the crate documentation.
//!
//! The soundness argument for handing out slices of a `MAP_SHARED` mapping is in the
//! crate documentation ("Why the slices are sound"); each function below states the
//! part it relies on.
#![allow(unsafe_code)]

pub(crate) mod access;

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
    map: Backing,
}

/// Who unmaps a [`Mapping`].
#[derive(Debug)]
enum Backing {
    /// memmap2, at an address the kernel chose.
    Memmap(MmapRaw),
    /// A mapping this module placed itself (see [`Mapping::read_write_hidden`]);
    /// unmapped on drop.
    Placed { ptr: *mut u8, len: usize },
}

impl Drop for Backing {
    fn drop(&mut self) {
        if let Backing::Placed { ptr, len } = *self {
            // SAFETY: `ptr..ptr + len` is a mapping this module created and nothing else
            // unmaps; the `Mapping` that owned it is being dropped, and every slice of it
            // borrowed that `Mapping`, so none is alive.
            unsafe { libc::munmap(ptr.cast(), len) };
        }
    }
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
        Ok(Mapping {
            map: Backing::Memmap(map),
        })
    }

    /// Maps `len` bytes of `file` at `offset`, readable and writable, at a page-aligned
    /// address drawn uniformly at random from `[HIDDEN_LOW, HIDDEN_HIGH)` (about 2^34
    /// possible places, independent of where the kernel put any other mapping), instead
    /// of next to the process's other mappings where the kernel would put it.
    ///
    /// The page tables are filled at once (`MAP_POPULATE`), so a transaction's first
    /// write to a page takes no fault on the alias (the public mapping still faults on
    /// first touch, as it does without protection).
    ///
    /// `MAP_FIXED_NOREPLACE` never replaces an existing mapping: a draw that overlaps
    /// one (or a kernel older than 4.17, which treats the flag as a hint and may map
    /// elsewhere) is undone and drawn again, up to 64 times.
    pub(crate) fn read_write_hidden(file: &File, offset: u64, len: usize) -> io::Result<Mapping> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let span = (HIDDEN_HIGH - HIDDEN_LOW)
            .checked_sub(len)
            .filter(|s| *s >= PAGE && len > 0)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let slots = (span / PAGE) as u64;
        let mut last = io::Error::from(io::ErrorKind::AddrInUse);
        for _ in 0..64 {
            let want = HIDDEN_LOW + (random_u64()? % slots) as usize * PAGE;
            // SAFETY: MAP_FIXED_NOREPLACE never unmaps or replaces anything: the call
            // either creates a new mapping at `want` or fails with EEXIST. The
            // descriptor is open and the length nonzero. The result is checked below.
            let got = unsafe {
                libc::mmap(
                    want as *mut libc::c_void,
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED | libc::MAP_FIXED_NOREPLACE | libc::MAP_POPULATE,
                    file.as_raw_fd(),
                    off,
                )
            };
            if got == libc::MAP_FAILED {
                last = io::Error::last_os_error();
                if last.raw_os_error() == Some(libc::EEXIST) {
                    continue;
                }
                return Err(last);
            }
            if got as usize == want {
                return Ok(Mapping {
                    map: Backing::Placed {
                        ptr: got.cast(),
                        len,
                    },
                });
            }
            // A kernel without MAP_FIXED_NOREPLACE chose another address: undo, retry.
            // SAFETY: `got..got + len` is the mapping the call above just created;
            // nothing else refers to it.
            unsafe { libc::munmap(got, len) };
        }
        Err(last)
    }

    /// Maps `len` bytes of `file` at `offset`, readable and writable, with its page
    /// tables filled at once (`MAP_POPULATE`): for a write mapping whose first write to
    /// each page would otherwise take a fault on top of the read mapping's.
    pub(crate) fn read_write_populated(
        file: &File,
        offset: u64,
        len: usize,
    ) -> io::Result<Mapping> {
        let map = MmapOptions::new()
            .offset(offset)
            .len(len)
            .populate()
            .map_raw(file)?;
        Ok(Mapping {
            map: Backing::Memmap(map),
        })
    }

    /// Maps `len` bytes of `file` at `offset`, read-only.
    pub(crate) fn read_only(file: &File, offset: u64, len: usize) -> io::Result<Mapping> {
        let map = MmapOptions::new()
            .offset(offset)
            .len(len)
            .map_raw_read_only(file)?;
        Ok(Mapping {
            map: Backing::Memmap(map),
        })
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        match &self.map {
            Backing::Memmap(m) => m.as_mut_ptr(),
            Backing::Placed { ptr, .. } => *ptr,
        }
    }

    pub(crate) fn len(&self) -> usize {
        match &self.map {
            Backing::Memmap(m) => m.len(),
            Backing::Placed { len, .. } => *len,
        }
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
        assert!(off.is_multiple_of(PAGE) && off + len <= self.len());
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

/// The lowest address a hidden mapping may start at (1 TiB: far above the program's
/// brk heap, which grows up from near the executable).
pub(crate) const HIDDEN_LOW: usize = 1 << 40;
/// The end of the range hidden mappings are placed in (64 TiB: below the region where
/// the kernel places mmaps and stacks, just under 128 TiB on x86-64 with 4-level
/// paging, and valid on 5-level paging too, which only hands out higher addresses on
/// request).
pub(crate) const HIDDEN_HIGH: usize = 1 << 46;

/// Eight bytes from the kernel's random number generator.
fn random_u64() -> io::Result<u64> {
    let mut b = [0u8; 8];
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n == 8 {
        Ok(u64::from_ne_bytes(b))
    } else if n < 0 {
        Err(io::Error::last_os_error())
    } else {
        Err(io::Error::from(io::ErrorKind::UnexpectedEof))
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

/// Copies up to `len` bytes of `src` at `src_off` to `dst` at `dst_off` inside the
/// kernel (`sendfile`: the page cache's pages go straight into `dst`, with no user
/// buffer and one copy). Returns the bytes copied: fewer at the end of `src`, 0 past it.
/// Moves `dst`'s file offset (rio-cache writes its files only with `pwrite`).
pub(crate) fn copy_range(
    src: &File,
    src_off: u64,
    dst: &File,
    dst_off: u64,
    len: usize,
) -> io::Result<usize> {
    let too_big = || io::Error::from(io::ErrorKind::InvalidInput);
    let mut from = libc::off_t::try_from(src_off).map_err(|_| too_big())?;
    let to = libc::off_t::try_from(dst_off).map_err(|_| too_big())?;
    // SAFETY: lseek on a valid, open descriptor has no memory-safety preconditions.
    if unsafe { libc::lseek(dst.as_raw_fd(), to, libc::SEEK_SET) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both descriptors are valid and open, and `from` is a live `off_t` the
    // kernel reads and updates for the duration of the call; no user buffer is passed.
    let n = unsafe { libc::sendfile(dst.as_raw_fd(), src.as_raw_fd(), &raw mut from, len) };
    usize::try_from(n).map_err(|_| io::Error::last_os_error())
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
        assert!(off.is_multiple_of(8) && off + 8 <= self.map.len());
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
    #[inline]
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

/// Private anonymous memory with one 4 KiB slot per data page: where writers preserve
/// the snapshot's pages during a checkpoint (`snapshot.rs`). Slot `p` belongs to page
/// `p`, so preserving a page needs no allocation, no index and no lock; the slot is
/// passed from the writer to the checkpoint by the page's snapshot state (see
/// [`PageArena::slot_mut`] and [`PageArena::slot`]).
///
/// The memory is reserved, not touched: a slot's page is faulted in by its first
/// preservation (measured: a writer's first touch of a fresh slot during a 1 GiB
/// checkpoint took up to 0.4 ms, once per slot in the cache's life). Mapping the arena
/// populated instead was tried and rejected: it made every first checkpoint of an
/// open, the one at close included, zero the whole arena (about 0.3 s per GiB; a warm
/// open and close of 1 GiB went from 6 ms to 291 ms). After each snapshot in which
/// writers preserved pages, the checkpoint hands the slots back with `MADV_FREE` ([`PageArena::release`]): the
/// kernel reclaims them only under memory pressure, and until then the next write to
/// a slot reuses its page without a fault. The price is memory: one page per page
/// ever preserved, resident until the kernel needs it back.
#[derive(Debug)]
pub(crate) struct PageArena {
    map: MmapRaw,
}

impl PageArena {
    /// An arena for `pages` pages (at least one slot, so the mapping is never empty).
    pub(crate) fn new(pages: usize) -> io::Result<PageArena> {
        let len = pages
            .max(1)
            .checked_mul(PAGE)
            .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        let map = MmapRaw::from(MmapOptions::new().len(len).map_anon()?);
        Ok(PageArena { map })
    }

    /// Page `p`'s slot, for writing.
    ///
    /// # Safety
    /// `p` must be below the arena's page count, and the caller must hold page `p`'s
    /// snapshot latch for the slice's whole life: only the latch holder touches the
    /// slot until the page's state says it is preserved, and after that nobody writes
    /// it again in the same snapshot.
    pub(crate) unsafe fn slot_mut<'a>(&self, p: usize) -> &'a mut [u8] {
        debug_assert!((p + 1) * PAGE <= self.map.len());
        // SAFETY: in bounds (caller), private anonymous read-write memory that lives
        // as long as `self`, and unaliased (the caller holds the page's latch).
        unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(p * PAGE), PAGE) }
    }

    /// Page `p`'s slot, for reading.
    ///
    /// # Safety
    /// `p` must be below the arena's page count, and page `p`'s snapshot state must
    /// have been seen (with acquire ordering) to say a writer preserved it in the
    /// current snapshot: that writer's copy happened before, and no one writes the
    /// slot again until the next snapshot, which starts only after this one's copy.
    pub(crate) unsafe fn slot<'a>(&self, p: usize) -> &'a [u8] {
        debug_assert!((p + 1) * PAGE <= self.map.len());
        // SAFETY: in bounds (caller); no `&mut` to the slot exists or is created while
        // the slice lives (caller: preserved, so no writer latches the page again).
        unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(p * PAGE), PAGE) }
    }

    /// Gives the slots' memory back lazily (`MADV_FREE`): their contents may be lost,
    /// which is fine once a snapshot's copy is over. Errors are ignored: the advice
    /// only saves memory.
    ///
    /// # Safety
    /// No slice of a slot may be alive: call only after a snapshot's copy is finished
    /// (no writer preserves a page of a finished snapshot, see `snapshot.rs`).
    pub(crate) unsafe fn release(&self) {
        // SAFETY: the whole range is this live private anonymous mapping; MADV_FREE
        // changes only the contents (to zero, if the kernel reclaims a page), and no
        // reference into it is alive (caller), so no Rust value observes the change.
        unsafe {
            libc::madvise(
                self.map.as_mut_ptr().cast(),
                self.map.len(),
                libc::MADV_FREE,
            )
        };
    }
}
