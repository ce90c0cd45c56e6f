//! Every system call and foreign function the suite makes: anonymous mappings, `mprotect`,
//! memory protection keys, LMDB's environment opening, a thread's count of preemptions,
//! and (feature `pmdk`) libpmemobj.
//!
//! This is the crate's only module allowed to use `unsafe`. The aliasing argument for
//! [`Mapping`] is simple: it owns its pages exclusively (private anonymous memory that no
//! other handle can reach), hands out `&[u8]` only through `&self` and `&mut [u8]` only
//! through `&mut self`, and never changes the protection to anything that forbids reads.
//! A write while the pages are read-only is a `SIGSEGV`, a crash, not a silent data race.
#![allow(unsafe_code)]

use std::io;
use std::ops::Range;
use std::ptr::NonNull;

/// The page size of this machine.
pub fn page_size() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

/// Whether a page range may be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `PROT_READ`.
    ReadOnly,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

impl Access {
    fn prot(self) -> libc::c_int {
        match self {
            Access::ReadOnly => libc::PROT_READ,
            Access::ReadWrite => libc::PROT_READ | libc::PROT_WRITE,
        }
    }
}

/// A private anonymous mapping, pre-faulted, page aligned, zero filled.
#[derive(Debug)]
pub struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; moving it to another thread moves
// the ownership with it (the same argument as `Vec<u8>`).
unsafe impl Send for Mapping {}

impl Mapping {
    /// Maps `len` bytes (rounded up to whole pages) read-write and touches every page.
    ///
    /// # Errors
    /// The `mmap` error.
    pub fn anonymous(len: usize) -> io::Result<Mapping> {
        let page = page_size();
        let len = len.max(1).div_ceil(page) * page;
        // SAFETY: a fresh private anonymous mapping at an address of the kernel's choosing
        // cannot alias any existing Rust object.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        // Small pages, like the file mappings of the other engines (LMDB's map, PMDK's
        // pool on tmpfs); MAP_POPULATE keeps page faults out of the measurements.
        Ok(Mapping { ptr, len })
    }

    /// The mapped length in bytes (a whole number of pages).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a mapping has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The mapping as bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is a live mapping owned by `self` and always readable (no
        // protection this type sets drops PROT_READ); the shared borrow of `self` excludes
        // writers for the slice's lifetime.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The mapping as mutable bytes. Writing to a read-only range faults (`SIGSEGV`).
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`; the exclusive borrow of `self` makes this the only live
        // reference into the mapping.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// Changes the protection of the pages covering `bytes` (widened to page boundaries).
    ///
    /// # Errors
    /// The `mprotect` error.
    pub fn protect(&self, bytes: Range<usize>, access: Access) -> io::Result<()> {
        let page = page_size();
        let start = bytes.start / page * page;
        let end = bytes.end.div_ceil(page) * page;
        assert!(
            start <= end && end <= self.len,
            "protect range out of the mapping"
        );
        // SAFETY: the range lies inside our own mapping; every access mode we set keeps the
        // pages readable, so no outstanding `&[u8]` becomes unreadable.
        let rc = unsafe {
            libc::mprotect(
                self.ptr.as_ptr().add(start).cast(),
                end - start,
                access.prot(),
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Tags the whole mapping with protection key `key` (pages stay readable and writable in
    /// the page tables; the key's rights in PKRU decide).
    ///
    /// # Errors
    /// The `pkey_mprotect` error.
    pub fn assign_pkey(&self, key: &Pkey) -> io::Result<()> {
        // SAFETY: the range is exactly our own mapping; the protection keeps it readable.
        let rc = unsafe {
            pkey_mprotect(
                self.ptr.as_ptr().cast(),
                self.len,
                libc::PROT_READ | libc::PROT_WRITE,
                key.0,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: we own the mapping and no borrow of it outlives `self`. A munmap failure
        // cannot happen for a range we mapped ourselves; it is ignored (Drop never panics).
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}

// glibc >= 2.27 wrappers for memory protection keys; the `libc` crate does not bind them.
extern "C" {
    fn pkey_alloc(flags: libc::c_uint, access_rights: libc::c_uint) -> libc::c_int;
    fn pkey_free(pkey: libc::c_int) -> libc::c_int;
    fn pkey_mprotect(
        addr: *mut libc::c_void,
        len: usize,
        prot: libc::c_int,
        pkey: libc::c_int,
    ) -> libc::c_int;
    fn pkey_set(pkey: libc::c_int, access_rights: libc::c_uint) -> libc::c_int;
}

/// `PKEY_DISABLE_WRITE` from `<sys/mman.h>`.
const PKEY_DISABLE_WRITE: libc::c_uint = 0x2;

/// An allocated memory protection key; freed on drop.
#[derive(Debug)]
pub struct Pkey(libc::c_int);

impl Pkey {
    /// Allocates a key whose initial rights deny writes.
    ///
    /// # Errors
    /// The `pkey_alloc` error: `EINVAL` or `ENOSPC` on a CPU or kernel without protection keys.
    pub fn allocate() -> io::Result<Pkey> {
        // SAFETY: pkey_alloc only allocates a key number and sets this thread's PKRU bits for
        // it; no memory is tagged with the key yet.
        let key = unsafe { pkey_alloc(0, PKEY_DISABLE_WRITE) };
        if key < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(Pkey(key))
        }
    }

    /// Sets this thread's rights for the key: writable or read-only (a WRPKRU).
    ///
    /// # Errors
    /// The `pkey_set` error.
    pub fn set_writable(&self, writable: bool) -> io::Result<()> {
        let rights = if writable { 0 } else { PKEY_DISABLE_WRITE };
        // SAFETY: changing PKRU rights for our own key only affects pages tagged with it,
        // which are owned by the `Mapping` this key guards; reads stay allowed.
        let rc = unsafe { pkey_set(self.0, rights) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for Pkey {
    fn drop(&mut self) {
        // SAFETY: the key was allocated by us; freeing it while pages still carry it is
        // allowed by the kernel (the pages keep the stale tag). Errors are ignored.
        unsafe {
            pkey_free(self.0);
        }
    }
}

/// How many times the calling thread has lost its core so far: `(preempted, blocked)`,
/// its involuntary and voluntary context switches (`getrusage(RUSAGE_THREAD)`). A
/// difference across a timed operation tells whether the scheduler took the core from
/// the thread during it, or the thread slept (waited for a lock, a condition or I/O).
///
/// # Errors
/// `getrusage`'s error.
pub fn context_switches() -> io::Result<(u64, u64)> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: `usage` is a valid, writable `rusage` for the call to fill; RUSAGE_THREAD
    // (Linux) reports the calling thread.
    let r = unsafe { libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr()) };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getrusage returned 0, so it filled the whole struct.
    let usage = unsafe { usage.assume_init() };
    Ok((usage.ru_nivcsw as u64, usage.ru_nvcsw as u64))
}

/// Whether this machine can allocate a protection key; the error says why not (in
/// rio-cache's words: no keys in the CPU, not enabled by the kernel, or none free).
///
/// # Errors
/// The reason.
pub fn pkeys_supported() -> io::Result<()> {
    rio_cache::pkey_support()
        .map_err(|e| io::Error::other(format!("memory protection keys are unavailable: {e}")))
}

/// Opens an LMDB environment with `flags` (heed marks both steps `unsafe`).
///
/// # Errors
/// LMDB's error.
pub fn open_lmdb(
    dir: &std::path::Path,
    map_size: usize,
    flags: heed::EnvFlags,
) -> heed::Result<heed::Env> {
    let mut options = heed::EnvOpenOptions::new();
    options.map_size(map_size).max_dbs(1);
    // SAFETY: heed marks NO_SYNC and NO_META_SYNC unsafe because a machine crash may lose
    // recent commits (never corrupt the file); that is exactly the durability the
    // `lmdb-nosync` configuration is meant to measure.
    unsafe {
        options.flags(flags);
    }
    // SAFETY: `dir` is a fresh private directory of this process; nothing else opens or
    // modifies the files while the environment lives, so the map cannot change underneath.
    unsafe { options.open(dir) }
}

/// A minimal binding of PMDK's libpmemobj (Debian `libpmemobj-dev`, PMDK 1.x ABI).
#[cfg(feature = "pmdk")]
pub mod pmemobj {
    use std::ffi::{CStr, CString};
    use std::io;
    use std::path::Path;
    use std::ptr::NonNull;

    #[repr(C)]
    struct PmemObjPool {
        _opaque: [u8; 0],
    }

    /// `PMEMoid` from `<libpmemobj/base.h>`.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct PmemOid {
        pool_uuid_lo: u64,
        off: u64,
    }

    #[link(name = "pmemobj")]
    extern "C" {
        fn pmemobj_create(
            path: *const libc::c_char,
            layout: *const libc::c_char,
            poolsize: usize,
            mode: libc::mode_t,
        ) -> *mut PmemObjPool;
        fn pmemobj_close(pop: *mut PmemObjPool);
        fn pmemobj_root(pop: *mut PmemObjPool, size: usize) -> PmemOid;
        fn pmemobj_direct(oid: PmemOid) -> *mut libc::c_void;
        fn pmemobj_errormsg() -> *const libc::c_char;
        fn pmemobj_tx_begin(pop: *mut PmemObjPool, env: *mut libc::c_void, ...) -> libc::c_int;
        fn pmemobj_tx_add_range(oid: PmemOid, hoff: u64, size: usize) -> libc::c_int;
        fn pmemobj_tx_commit();
        fn pmemobj_tx_abort(errnum: libc::c_int);
        fn pmemobj_tx_end() -> libc::c_int;
        fn pmemobj_tx_stage() -> libc::c_int;
        fn pmemobj_tx_alloc(size: usize, type_num: u64) -> PmemOid;
        fn pmemobj_tx_free(oid: PmemOid) -> libc::c_int;
    }

    /// An object allocated by [`Pool::tx_alloc`] (a `PMEMoid`: 16 bytes).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Object {
        lo: u64,
        off: u64,
    }

    /// `TX_STAGE_WORK` of `enum pobj_tx_stage`.
    const TX_STAGE_WORK: libc::c_int = 1;

    /// `TX_PARAM_NONE`, the terminator of `pmemobj_tx_begin`'s parameter list.
    const TX_PARAM_NONE: libc::c_int = 0;

    fn last_error(what: &str) -> io::Error {
        // SAFETY: pmemobj_errormsg returns a thread-local NUL-terminated string (or null).
        let msg = unsafe {
            let p = pmemobj_errormsg();
            if p.is_null() {
                String::new()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        io::Error::other(format!("{what}: {msg}"))
    }

    /// A pool whose root object is a flat byte segment.
    #[derive(Debug)]
    pub struct Pool {
        pop: NonNull<PmemObjPool>,
        root: *mut u8,
        root_oid_lo: u64,
        root_oid_off: u64,
        len: usize,
    }

    // SAFETY: the pool handle is used by one thread at a time (`&mut self` for transactions);
    // libpmemobj pools may be used from any thread.
    unsafe impl Send for Pool {}

    impl Pool {
        /// Creates a pool file at `path` (which must not exist) holding a zeroed root object
        /// of `len` bytes.
        ///
        /// # Errors
        /// libpmemobj's error.
        pub fn create(path: &Path, pool_size: usize, len: usize) -> io::Result<Pool> {
            let c_path =
                CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?;
            // SAFETY: both strings are NUL-terminated and live across the call.
            let pop = unsafe {
                pmemobj_create(c_path.as_ptr(), c"vista-bench".as_ptr(), pool_size, 0o600)
            };
            let pop = NonNull::new(pop).ok_or_else(|| last_error("pmemobj_create"))?;
            // SAFETY: `pop` is a freshly created open pool.
            let oid = unsafe { pmemobj_root(pop.as_ptr(), len) };
            if oid.off == 0 {
                let err = last_error("pmemobj_root");
                // SAFETY: closing the pool we just opened.
                unsafe { pmemobj_close(pop.as_ptr()) };
                return Err(err);
            }
            // SAFETY: `oid` is the pool's live root object.
            let root = unsafe { pmemobj_direct(oid) }.cast::<u8>();
            Ok(Pool {
                pop,
                root,
                root_oid_lo: oid.pool_uuid_lo,
                root_oid_off: oid.off,
                len,
            })
        }

        /// The root object's size in bytes.
        pub fn len(&self) -> usize {
            self.len
        }

        /// Always false for a created pool.
        pub fn is_empty(&self) -> bool {
            self.len == 0
        }

        /// The root object as bytes.
        pub fn root(&self) -> &[u8] {
            // SAFETY: the root object is `len` bytes of the pool's mapping, which lives as
            // long as `self`; writers need `&mut self`.
            unsafe { std::slice::from_raw_parts(self.root, self.len) }
        }

        fn root_mut(&mut self) -> &mut [u8] {
            // SAFETY: as `root`, with the exclusive borrow of `self`.
            unsafe { std::slice::from_raw_parts_mut(self.root, self.len) }
        }

        /// Begins a transaction on this thread.
        ///
        /// # Errors
        /// libpmemobj's error.
        pub fn tx_begin(&mut self) -> io::Result<()> {
            // SAFETY: a null jmp_buf asks libpmemobj to report failures by return value
            // instead of longjmp, which would skip Rust destructors. The list ends with
            // TX_PARAM_NONE.
            let rc =
                unsafe { pmemobj_tx_begin(self.pop.as_ptr(), std::ptr::null_mut(), TX_PARAM_NONE) };
            if rc == 0 {
                Ok(())
            } else {
                // A failed begin still requires tx_end.
                // SAFETY: ends the failed transaction begun above on this thread.
                unsafe { pmemobj_tx_end() };
                Err(last_error("pmemobj_tx_begin"))
            }
        }

        /// Snapshots `off..off+data.len()` into the undo log and copies `data` in.
        ///
        /// # Errors
        /// libpmemobj's error (the transaction is then aborted and must be ended).
        pub fn tx_write(&mut self, off: usize, data: &[u8]) -> io::Result<()> {
            assert!(off + data.len() <= self.len, "write past the root object");
            let oid = PmemOid {
                pool_uuid_lo: self.root_oid_lo,
                off: self.root_oid_off,
            };
            // SAFETY: called inside a transaction begun by `tx_begin` on this thread; the
            // range lies inside the root object (checked above).
            let rc = unsafe { pmemobj_tx_add_range(oid, off as u64, data.len()) };
            if rc != 0 {
                return Err(last_error("pmemobj_tx_add_range"));
            }
            self.root_mut()[off..off + data.len()].copy_from_slice(data);
            Ok(())
        }

        /// Allocates `data.len()` bytes inside the current transaction
        /// (`pmemobj_tx_alloc`, undone if the transaction aborts) and copies `data` in.
        ///
        /// # Errors
        /// libpmemobj's error (the transaction is then aborted and must be ended).
        pub fn tx_alloc(&mut self, data: &[u8]) -> io::Result<Object> {
            // SAFETY: called inside a transaction begun by `tx_begin` on this thread; with a
            // null jmp_buf a failure returns OID_NULL (off 0) instead of jumping.
            let oid = unsafe { pmemobj_tx_alloc(data.len(), 1) };
            if oid.off == 0 {
                return Err(last_error("pmemobj_tx_alloc"));
            }
            // SAFETY: `oid` is a live object of `data.len()` bytes of this open pool, new in
            // this transaction (no snapshot needed, nothing else refers to it).
            unsafe {
                let dst = pmemobj_direct(oid).cast::<u8>();
                std::ptr::copy_nonoverlapping(data.as_ptr(), dst, data.len());
            }
            Ok(Object {
                lo: oid.pool_uuid_lo,
                off: oid.off,
            })
        }

        /// Frees `obj` inside the current transaction (`pmemobj_tx_free`, effective at
        /// commit).
        ///
        /// # Errors
        /// libpmemobj's error (the transaction is then aborted and must be ended).
        pub fn tx_free(&mut self, obj: Object) -> io::Result<()> {
            let oid = PmemOid {
                pool_uuid_lo: obj.lo,
                off: obj.off,
            };
            // SAFETY: inside a transaction begun on this thread; `oid` came from
            // `tx_alloc` on this pool and is freed once.
            if unsafe { pmemobj_tx_free(oid) } != 0 {
                return Err(last_error("pmemobj_tx_free"));
            }
            Ok(())
        }

        /// Commits and ends the current transaction.
        ///
        /// # Errors
        /// The transaction's error if it had aborted.
        pub fn tx_commit(&mut self) -> io::Result<()> {
            // SAFETY: a transaction begun by `tx_begin` is open on this thread.
            let rc = unsafe {
                pmemobj_tx_commit();
                pmemobj_tx_end()
            };
            if rc == 0 {
                Ok(())
            } else {
                Err(last_error("pmemobj transaction"))
            }
        }

        /// Aborts (restoring every snapshotted range) and ends the current transaction.
        /// A transaction that libpmemobj already aborted (a failed `tx_write`) is just ended.
        pub fn tx_abort(&mut self) {
            // SAFETY: a transaction begun by `tx_begin` is open on this thread; abort is only
            // legal in the WORK stage, and with a null jmp_buf it returns instead of jumping.
            // tx_end's return value is the abort reason, which the caller already has.
            unsafe {
                if pmemobj_tx_stage() == TX_STAGE_WORK {
                    pmemobj_tx_abort(libc::ECANCELED);
                }
                pmemobj_tx_end();
            }
        }
    }

    /// A pool whose transactions run from many threads at once, isolated by locks: the
    /// root object is cut into stripes of `stripe` bytes, each with a mutex, and a
    /// transaction holds the mutexes of every stripe it names until it ends (the locking a
    /// user of libpmemobj must add: its per-thread lanes give no isolation). One stripe as
    /// long as the root object is a global lock.
    ///
    /// Soundness: bytes of the root object are read or written only by a
    /// [`LockedTx`] holding their stripes' mutexes, or by [`LockedPool::read`] holding
    /// them, so no two threads touch one byte at once.
    #[derive(Debug)]
    pub struct LockedPool {
        pool: Pool,
        stripe: usize,
        locks: Vec<std::sync::Mutex<()>>,
    }

    // SAFETY: the handle's fields are only read after creation; libpmemobj's transaction
    // calls keep their state per thread; the root object's bytes are accessed only under
    // their stripes' mutexes (see the type's docs).
    unsafe impl Sync for LockedPool {}

    /// A transaction of a [`LockedPool`] on this thread, holding its stripes.
    #[derive(Debug)]
    pub struct LockedTx<'a> {
        pool: &'a LockedPool,
        /// Indexes of the held stripes, ascending.
        held: Vec<usize>,
    }

    impl LockedPool {
        /// Wraps `pool` with a mutex per `stripe` bytes of its root object (`stripe > 0`).
        pub fn new(pool: Pool, stripe: usize) -> LockedPool {
            let stripe = stripe.max(1);
            let locks = (0..pool.len.div_ceil(stripe))
                .map(|_| std::sync::Mutex::new(()))
                .collect();
            LockedPool {
                pool,
                stripe,
                locks,
            }
        }

        /// The stripes of `ranges`, ascending, without repeats.
        fn stripes(&self, ranges: &[std::ops::Range<usize>]) -> io::Result<Vec<usize>> {
            let mut v = Vec::new();
            for r in ranges {
                if r.start >= r.end || r.end > self.pool.len {
                    return Err(io::Error::other("range outside the root object"));
                }
                v.extend(r.start / self.stripe..=(r.end - 1) / self.stripe);
            }
            v.sort_unstable();
            v.dedup();
            Ok(v)
        }

        /// Locks `stripes` (ascending, so two callers never wait for each other in a cycle).
        fn lock(&self, stripes: &[usize]) -> Vec<std::sync::MutexGuard<'_, ()>> {
            stripes
                .iter()
                .map(|&i| {
                    self.locks[i]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                })
                .collect()
        }

        /// Copies `off..off+buf.len()` into `buf` under its stripes' locks.
        ///
        /// # Errors
        /// A range outside the root object.
        pub fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
            let end = off
                .checked_add(buf.len())
                .ok_or_else(|| io::Error::other("overflow"))?;
            let stripes = self.stripes(std::slice::from_ref(&(off..end)))?;
            let _guards = self.lock(&stripes);
            // SAFETY: inside the root object (checked by `stripes`), which lives as long
            // as `self`; its stripes are locked, so no thread writes it meanwhile.
            unsafe {
                std::ptr::copy_nonoverlapping(self.pool.root.add(off), buf.as_mut_ptr(), buf.len());
            }
            Ok(())
        }

        /// Runs `f` in a libpmemobj transaction holding the stripes of `ranges` (locked
        /// in ascending order before the transaction begins, released after it ends):
        /// commits if `f` returns `Ok`, aborts otherwise.
        ///
        /// # Errors
        /// `f`'s error, libpmemobj's, or a range outside the root object.
        pub fn transaction<R>(
            &self,
            ranges: &[std::ops::Range<usize>],
            f: impl FnOnce(&mut LockedTx<'_>) -> io::Result<R>,
        ) -> io::Result<R> {
            let held = self.stripes(ranges)?;
            let _guards = self.lock(&held);
            // SAFETY: as in `Pool::tx_begin`; the transaction belongs to this thread and
            // ends below before the guards drop.
            let rc = unsafe {
                pmemobj_tx_begin(self.pool.pop.as_ptr(), std::ptr::null_mut(), TX_PARAM_NONE)
            };
            if rc != 0 {
                // SAFETY: ends the failed transaction begun above on this thread.
                unsafe { pmemobj_tx_end() };
                return Err(last_error("pmemobj_tx_begin"));
            }
            let mut tx = LockedTx { pool: self, held };
            match f(&mut tx) {
                Ok(v) => {
                    // SAFETY: this thread's transaction, begun above, is open.
                    let rc = unsafe {
                        pmemobj_tx_commit();
                        pmemobj_tx_end()
                    };
                    if rc == 0 {
                        Ok(v)
                    } else {
                        Err(last_error("pmemobj transaction"))
                    }
                }
                Err(e) => {
                    // SAFETY: this thread's transaction, begun above, is open; abort only
                    // in the WORK stage (a failed add_range already aborted it), with a
                    // null jmp_buf so it returns.
                    unsafe {
                        if pmemobj_tx_stage() == TX_STAGE_WORK {
                            pmemobj_tx_abort(libc::ECANCELED);
                        }
                        pmemobj_tx_end();
                    }
                    Err(e)
                }
            }
        }
    }

    impl LockedTx<'_> {
        /// Whether `off..end` lies in held stripes.
        fn holds(&self, off: usize, len: usize) -> io::Result<()> {
            let stripe = self.pool.stripe;
            let end = off
                .checked_add(len)
                .ok_or_else(|| io::Error::other("overflow"))?;
            let ok = len > 0
                && end <= self.pool.pool.len
                && (off / stripe..=(end - 1) / stripe).all(|i| self.held.binary_search(&i).is_ok());
            if ok {
                Ok(())
            } else {
                Err(io::Error::other("range not locked by this transaction"))
            }
        }

        /// Copies `off..off+buf.len()` into `buf`.
        ///
        /// # Errors
        /// A range this transaction did not lock.
        pub fn read(&self, off: usize, buf: &mut [u8]) -> io::Result<()> {
            self.holds(off, buf.len())?;
            // SAFETY: inside the root object and in stripes this thread holds (checked).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.pool.pool.root.add(off),
                    buf.as_mut_ptr(),
                    buf.len(),
                );
            }
            Ok(())
        }

        /// Snapshots `off..off+data.len()` into this thread's undo log and copies `data` in.
        ///
        /// # Errors
        /// A range this transaction did not lock; libpmemobj's error (the transaction is
        /// then aborted).
        pub fn write(&mut self, off: usize, data: &[u8]) -> io::Result<()> {
            self.holds(off, data.len())?;
            let oid = PmemOid {
                pool_uuid_lo: self.pool.pool.root_oid_lo,
                off: self.pool.pool.root_oid_off,
            };
            // SAFETY: this thread's transaction is open (a `LockedTx` exists only inside
            // `LockedPool::transaction`); the range lies inside the root object (checked).
            let rc = unsafe { pmemobj_tx_add_range(oid, off as u64, data.len()) };
            if rc != 0 {
                return Err(last_error("pmemobj_tx_add_range"));
            }
            // SAFETY: inside the root object and in stripes this thread holds (checked).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    data.as_ptr(),
                    self.pool.pool.root.add(off),
                    data.len(),
                );
            }
            Ok(())
        }
    }

    /// A fixed-size open-addressing hash map (linear probing) of `u64` keys and
    /// fixed-length values in a pool's root object, changed in libpmemobj transactions
    /// that snapshot (`pmemobj_tx_add_range`) only the bytes they change, with striped
    /// DRAM mutexes for isolation between threads.
    ///
    /// ```text
    /// slot: key + 1 (u64 LE; 0 = empty), value (value_len bytes), padding to 8 bytes
    /// ```
    ///
    /// Soundness: key words are written only by [`PoolMap::insert`] (`&mut self`), so
    /// while the map is shared every slot's key, and so the slot a key lives in, is
    /// fixed (nothing is ever removed). A value is read or written only while the mutex
    /// of its key's stripe is held ([`PoolMap::get`], [`PoolMap::update`]), so no two
    /// threads touch one value at once; probing reads only key words.
    #[derive(Debug)]
    pub struct PoolMap {
        pool: Pool,
        slots: usize,
        value_len: usize,
        stride: usize,
        locks: Vec<std::sync::Mutex<()>>,
    }

    // SAFETY: see the type's docs: shared access reads only immutable key words and
    // touches values under their stripe's mutex; libpmemobj keeps transaction state per
    // thread.
    unsafe impl Sync for PoolMap {}

    /// splitmix64's finaliser: spreads consecutive keys over the slots.
    fn mix(key: u64) -> u64 {
        let mut z = key.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    impl PoolMap {
        /// Creates a pool file at `path` (which must not exist) holding an empty map of
        /// `slots` slots (rounded up to a power of two) for values of `value_len` bytes,
        /// with `stripes` mutexes.
        ///
        /// # Errors
        /// libpmemobj's error.
        pub fn create(
            path: &Path,
            slots: usize,
            value_len: usize,
            stripes: usize,
        ) -> io::Result<PoolMap> {
            let slots = slots.max(2).next_power_of_two();
            let stride = (8 + value_len).next_multiple_of(8);
            let len = slots * stride;
            // Room for the root object, the allocator's metadata and the lanes' undo logs.
            let pool = Pool::create(path, len + len / 4 + (64 << 20), len)?;
            Ok(PoolMap {
                pool,
                slots,
                value_len,
                stride,
                locks: (0..stripes.max(1))
                    .map(|_| std::sync::Mutex::new(()))
                    .collect(),
            })
        }

        /// The key word of slot `i`.
        fn key_word(&self, i: usize) -> u64 {
            // SAFETY: slot `i < slots` lies inside the root object; key words change only
            // under `&mut self` (see the type's docs), so this read races with nothing.
            unsafe { std::ptr::read_unaligned(self.pool.root.add(i * self.stride).cast::<u64>()) }
        }

        /// The slot holding `key`, or the empty slot where it would go; `None` when the
        /// map is full and `key` is absent.
        fn probe(&self, key: u64) -> Option<usize> {
            let mask = self.slots - 1;
            let home = mix(key) as usize & mask;
            (0..self.slots).map(|n| (home + n) & mask).find(|&i| {
                let word = self.key_word(i);
                word == 0 || word == key.wrapping_add(1)
            })
        }

        /// The held stripe of `key`.
        fn lock(&self, key: u64) -> std::sync::MutexGuard<'_, ()> {
            let stripe = (mix(key) >> 32) as usize % self.locks.len();
            self.locks[stripe]
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        fn check_len(&self, len: usize) -> io::Result<()> {
            if len == self.value_len {
                Ok(())
            } else {
                Err(io::Error::other(format!(
                    "a value of {len} bytes in a map of {}-byte values",
                    self.value_len
                )))
            }
        }

        /// Inserts `pairs` (keys not yet present, below `u64::MAX`) in one transaction.
        ///
        /// # Errors
        /// A key already present or the map full; libpmemobj's error (nothing is
        /// inserted).
        pub fn insert(&mut self, pairs: &[(u64, &[u8])]) -> io::Result<()> {
            self.pool.tx_begin()?;
            let result = (|| -> io::Result<()> {
                for &(key, value) in pairs {
                    self.check_len(value.len())?;
                    let word = key
                        .checked_add(1)
                        .ok_or_else(|| io::Error::other("key u64::MAX"))?;
                    let i = self
                        .probe(key)
                        .ok_or_else(|| io::Error::other("the map is full"))?;
                    if self.key_word(i) != 0 {
                        return Err(io::Error::other(format!("key {key} is present")));
                    }
                    let mut slot = Vec::with_capacity(8 + value.len());
                    slot.extend_from_slice(&word.to_le_bytes());
                    slot.extend_from_slice(value);
                    self.pool.tx_write(i * self.stride, &slot)?;
                }
                Ok(())
            })();
            match result {
                Ok(()) => self.pool.tx_commit(),
                Err(e) => {
                    self.pool.tx_abort();
                    Err(e)
                }
            }
        }

        /// Copies the value of `key` into `out` under its stripe's mutex (no transaction:
        /// libpmemobj reads committed bytes directly); `false` if absent.
        ///
        /// # Errors
        /// `out` is not `value_len` bytes.
        pub fn get(&self, key: u64, out: &mut [u8]) -> io::Result<bool> {
            self.check_len(out.len())?;
            let _held = self.lock(key);
            let Some(i) = self.probe(key).filter(|&i| self.key_word(i) != 0) else {
                return Ok(false);
            };
            // SAFETY: the value of slot `i` lies inside the root object and belongs to
            // `key`, whose stripe this thread holds (see the type's docs).
            unsafe {
                std::ptr::copy_nonoverlapping(
                    self.pool.root.add(i * self.stride + 8),
                    out.as_mut_ptr(),
                    out.len(),
                );
            }
            Ok(true)
        }

        /// Replaces the value of `key` in one transaction that snapshots only the value,
        /// under its stripe's mutex (taken before the transaction begins, released after
        /// it ends); `false` if absent (nothing changes).
        ///
        /// # Errors
        /// `value` is not `value_len` bytes; libpmemobj's error (the transaction is
        /// aborted).
        pub fn update(&self, key: u64, value: &[u8]) -> io::Result<bool> {
            self.check_len(value.len())?;
            let _held = self.lock(key);
            let Some(i) = self.probe(key).filter(|&i| self.key_word(i) != 0) else {
                return Ok(false);
            };
            let off = i * self.stride + 8;
            let oid = PmemOid {
                pool_uuid_lo: self.pool.root_oid_lo,
                off: self.pool.root_oid_off,
            };
            // SAFETY: as in `Pool::tx_begin`; the transaction belongs to this thread and
            // ends below, before the stripe's guard drops.
            let rc = unsafe {
                pmemobj_tx_begin(self.pool.pop.as_ptr(), std::ptr::null_mut(), TX_PARAM_NONE)
            };
            if rc != 0 {
                // SAFETY: ends the failed transaction begun above on this thread.
                unsafe { pmemobj_tx_end() };
                return Err(last_error("pmemobj_tx_begin"));
            }
            // SAFETY: this thread's transaction is open; the range is the value of slot
            // `i`, inside the root object.
            let rc = unsafe { pmemobj_tx_add_range(oid, off as u64, value.len()) };
            if rc != 0 {
                let err = last_error("pmemobj_tx_add_range");
                // SAFETY: the failed add_range aborted this thread's open transaction;
                // abort only in the WORK stage, with a null jmp_buf so it returns.
                unsafe {
                    if pmemobj_tx_stage() == TX_STAGE_WORK {
                        pmemobj_tx_abort(libc::ECANCELED);
                    }
                    pmemobj_tx_end();
                }
                return Err(err);
            }
            // SAFETY: the value of slot `i` lies inside the root object and belongs to
            // `key`, whose stripe this thread holds; it is snapshotted above.
            unsafe {
                std::ptr::copy_nonoverlapping(value.as_ptr(), self.pool.root.add(off), value.len());
            }
            // SAFETY: this thread's transaction, begun above, is open.
            let rc = unsafe {
                pmemobj_tx_commit();
                pmemobj_tx_end()
            };
            if rc == 0 {
                Ok(true)
            } else {
                Err(last_error("pmemobj transaction"))
            }
        }

        /// Calls `f` on every key and a copy of its value (read under its stripe's
        /// mutex, as by [`PoolMap::get`]), in slot order.
        ///
        /// # Errors
        /// `f`'s error.
        pub fn for_each<E: From<io::Error>>(
            &self,
            mut f: impl FnMut(u64, &[u8]) -> Result<(), E>,
        ) -> Result<(), E> {
            let mut value = vec![0u8; self.value_len];
            for i in 0..self.slots {
                let word = self.key_word(i);
                if word != 0 && self.get(word - 1, &mut value)? {
                    f(word - 1, &value)?;
                }
            }
            Ok(())
        }
    }

    impl Drop for Pool {
        fn drop(&mut self) {
            // SAFETY: the pool is open and no slice of it outlives `self`.
            unsafe { pmemobj_close(self.pop.as_ptr()) };
        }
    }

    /// Makes libpmem treat every mapping as persistent memory (flush with cache-line
    /// write-backs, not `msync`), as it would on real PMEM. Must run before the first pool
    /// is created; a user's own setting wins.
    pub fn force_pmem_mode() {
        if std::env::var_os("PMEM_IS_PMEM_FORCE").is_none() {
            std::env::set_var("PMEM_IS_PMEM_FORCE", "1");
        }
    }
}
