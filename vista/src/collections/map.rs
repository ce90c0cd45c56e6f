//! `PHashMap<K, V>`: an extendible hash table, so that no operation needs a word that
//! every operation writes.
//!
//! ```text
//! header (1088 bytes, line-aligned):
//!   line 0: kind word, global depth G, directory, slots per new bucket
//!   lines 1..=16: entry counters, one per lane stripe (lane % 16), one line each
//! directory: 2^G bucket offsets, indexed by the top G bits of a key's hash
//! bucket (line-aligned): local depth d, count, capacity (u32 each), then slots
//!   slot: hash (u64), key, value (each aligned to its type)
//! ```
//!
//! A bucket of local depth `d` is referred to by the `2^(G - d)` directory entries
//! that share its top `d` bits. An insert into a full bucket splits it (a new bucket
//! takes the entries whose next bit is 1; only that bucket and its directory entries
//! change), doubling the directory first when `d == G`; at the largest directory
//! (2^17 entries, one MiB) a full bucket doubles its slots instead. Nothing is ever
//! rehashed as a whole, and the entry count is kept per lane stripe, so transactions
//! on keys of different buckets touch no common line but the header's first line and
//! directory lines, which they only read: they do not conflict (a split writes its
//! directory entries; a directory doubling writes the header).

// The geometry's short names follow the layout above (k a chunk, j an index in it, g the
// geometry; m the map's header, b a bucket, s the slot layout): spelled out they would
// hide the arithmetic.
#![allow(clippy::many_single_char_names)]

use std::marker::PhantomData;

use super::{alloc_zeroed, check, free_block, guard, kind_word, load, PBytes, PString, LINE};
use crate::error::{Error, Result};
use crate::pptr::PPtr;
use crate::transaction::Transaction;

/// Entry-count stripes (a transaction counts in stripe `lane % STRIPES`).
const STRIPES: u64 = 16;
const HEADER_BYTES: u64 = LINE * (1 + STRIPES);
const DEPTH: u64 = 8;
/// The largest global depth: a directory of one MiB.
const MAX_DEPTH: u64 = 17;
/// Bytes of a bucket's header.
const BUCKET_HEAD: u64 = 16;
/// A bucket's target size (slots per bucket follow from the slot size).
const BUCKET_BYTES: u64 = 1024;

/// Keys of a [`PHashMap`]: plain values ([`PodKey`], compared and hashed by their
/// bytes) and the buffers [`PBytes`] and [`PString`] (compared and hashed by their
/// contents, owned by the map: it stores the key on insert and frees it on remove).
/// Implement [`PodKey`] to use a `Pod` type of your own.
pub trait HashKey: bytemuck::Pod {
    /// What a key is looked up by: the key itself, or `[u8]`/`str` for buffers.
    type Query: ?Sized;
    /// Told apart in a map's kind word (0 plain, 1 bytes, 2 text).
    #[doc(hidden)]
    const KIND: u64;
    /// A hash that is the same in every build and process (XXH3 of the bytes).
    #[doc(hidden)]
    fn hash_query(q: &Self::Query) -> u64;
    /// Whether the stored key equals `q`.
    #[doc(hidden)]
    fn matches(&self, tx: &Transaction<'_>, q: &Self::Query) -> Result<bool>;
    /// The stored form of `q` (a buffer is allocated).
    #[doc(hidden)]
    fn store(tx: &mut Transaction<'_>, q: &Self::Query) -> Result<Self>;
    /// Frees what `store` allocated.
    #[doc(hidden)]
    fn release(self, tx: &mut Transaction<'_>) -> Result<()>;
}

/// Plain keys: compared and hashed by their bytes (so two keys are equal exactly when
/// their bytes are). Implemented for the integer types, arrays of plain keys and
/// [`PPtr`]; implement it for a `Pod` type of your own to use it as a key.
pub trait PodKey: bytemuck::Pod {}

macro_rules! pod_keys {
    ($($t:ty),*) => { $(impl PodKey for $t {})* };
}
pod_keys!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);
impl<T: PodKey, const N: usize> PodKey for [T; N] {}
impl<T: ?Sized + 'static> PodKey for PPtr<T> {}

impl<T: PodKey> HashKey for T {
    type Query = T;
    const KIND: u64 = 0;
    fn hash_query(q: &T) -> u64 {
        xxhash_rust::xxh3::xxh3_64(bytemuck::bytes_of(q))
    }
    fn matches(&self, _: &Transaction<'_>, q: &T) -> Result<bool> {
        Ok(bytemuck::bytes_of(self) == bytemuck::bytes_of(q))
    }
    fn store(_: &mut Transaction<'_>, q: &T) -> Result<T> {
        Ok(*q)
    }
    fn release(self, _: &mut Transaction<'_>) -> Result<()> {
        Ok(())
    }
}

impl HashKey for PBytes {
    type Query = [u8];
    const KIND: u64 = 1;
    fn hash_query(q: &[u8]) -> u64 {
        xxhash_rust::xxh3::xxh3_64(q)
    }
    fn matches(&self, tx: &Transaction<'_>, q: &[u8]) -> Result<bool> {
        Ok(self.get(tx)? == q)
    }
    fn store(tx: &mut Transaction<'_>, q: &[u8]) -> Result<PBytes> {
        // Line-aligned: a key never shares a lock line with another block.
        PBytes::new_aligned(tx, q, LINE)
    }
    fn release(self, tx: &mut Transaction<'_>) -> Result<()> {
        self.free(tx)
    }
}

impl HashKey for PString {
    type Query = str;
    const KIND: u64 = 2;
    fn hash_query(q: &str) -> u64 {
        xxhash_rust::xxh3::xxh3_64(q.as_bytes())
    }
    fn matches(&self, tx: &Transaction<'_>, q: &str) -> Result<bool> {
        Ok(self.as_bytes().get(tx)? == q.as_bytes())
    }
    fn store(tx: &mut Transaction<'_>, q: &str) -> Result<PString> {
        PString::new_aligned(tx, q, LINE)
    }
    fn release(self, tx: &mut Transaction<'_>) -> Result<()> {
        self.free(tx)
    }
}

/// A persistent hash map: an 8-byte handle (the offset of its header), [`bytemuck::Pod`],
/// stored inside other persistent values. Keys are [`HashKey`]s (plain values, or
/// [`PBytes`]/[`PString`] looked up by `&[u8]`/`&str`); values are any `Pod` (numbers,
/// structs, handles of other collections).
///
/// An operation declares (locks and logs) the key's bucket header, the slot it
/// changes and its lane's entry counter; it only reads the map's header and one
/// directory entry. Transactions on keys of different buckets, from different
/// threads, do not conflict; a bucket split or a directory doubling (the map's
/// resizing) does, with the transactions that read what it changes.
///
/// ```
/// # fn main() -> Result<(), vista::Error> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let opts = vista::Options::default().size(1 << 20).cache_dir(dir.path());
/// # let seg = vista::Segment::open(dir.path().join("m.vista"), &opts)?;
/// use vista::{PHashMap, PString};
/// let mut tx = seg.begin()?;
/// let ages = PHashMap::<PString, u32>::new(&mut tx)?;
/// ages.insert(&mut tx, "ada", 36)?;
/// assert_eq!(ages.insert(&mut tx, "ada", 37)?, Some(36));
/// *ages.get_mut(&mut tx, "ada")?.expect("present") += 1;
/// assert_eq!(ages.get(&tx, "ada")?, Some(38));
/// assert_eq!(ages.remove(&mut tx, "bob")?, None);
/// assert_eq!(ages.len(&tx)?, 1);
/// tx.commit()?;
/// # Ok(())
/// # }
/// ```
#[repr(transparent)]
pub struct PHashMap<K, V> {
    off: u64,
    _type: PhantomData<fn() -> (K, V)>,
}

/// Where a slot's fields lie.
#[derive(Debug, Clone, Copy)]
struct Slots {
    key: u64,
    value: u64,
    stride: u64,
    /// Offset of slot 0 in a bucket.
    first: u64,
}

/// The map header's first line.
#[derive(Debug, Clone, Copy)]
struct Meta {
    depth: u64,
    dir: u64,
}

/// A bucket's header.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    off: u64,
    depth: u64,
    count: u64,
    cap: u64,
}

fn round_up(x: u64, to: u64) -> u64 {
    x.div_ceil(to) * to
}

fn dir_index(hash: u64, depth: u64) -> u64 {
    if depth == 0 {
        0
    } else {
        hash >> (64 - depth)
    }
}

impl<K: HashKey, V: bytemuck::Pod> PHashMap<K, V> {
    /// The null handle (a zeroed `PHashMap`).
    pub const NULL: PHashMap<K, V> = PHashMap {
        off: 0,
        _type: PhantomData,
    };

    /// Whether this is the null handle.
    pub const fn is_null(&self) -> bool {
        self.off == 0
    }

    /// The offset of its header block (for diagnostics).
    pub const fn offset(&self) -> u64 {
        self.off
    }

    fn word() -> u64 {
        let size = |s: usize| s as u64;
        kind_word(
            *b"PMAP",
            &[
                K::KIND,
                size(std::mem::size_of::<K>()),
                size(std::mem::align_of::<K>()),
                size(std::mem::size_of::<V>()),
                size(std::mem::align_of::<V>()),
            ],
        )
    }

    fn slots() -> Slots {
        let (ks, ka) = (
            std::mem::size_of::<K>() as u64,
            std::mem::align_of::<K>() as u64,
        );
        let (vs, va) = (
            std::mem::size_of::<V>() as u64,
            std::mem::align_of::<V>() as u64,
        );
        let align = ka.max(va).max(8);
        let key = round_up(8, ka);
        let value = round_up(key + ks, va);
        Slots {
            key,
            value,
            stride: round_up(value + vs, align),
            first: round_up(BUCKET_HEAD, align),
        }
    }

    fn bucket_align() -> u64 {
        (std::mem::align_of::<K>() as u64)
            .max(std::mem::align_of::<V>() as u64)
            .max(LINE)
    }

    fn bucket_bytes(cap: u64) -> u64 {
        let s = Self::slots();
        s.first + cap * s.stride
    }

    /// A new, empty map (a header of 1088 bytes and one bucket).
    ///
    /// # Errors
    /// [`Error::OutOfSpace`] (nothing is left allocated; the transaction stays
    /// usable); as [`Transaction::alloc`].
    pub fn new(tx: &mut Transaction<'_>) -> Result<PHashMap<K, V>> {
        Self::with_capacity(tx, 0)
    }

    /// A new map with buckets for about `n` entries already split, so that the first
    /// `n` inserts do not resize it (and transactions inserting different keys
    /// conflict only when the keys share a bucket).
    ///
    /// # Errors
    /// As [`PHashMap::new`].
    pub fn with_capacity(tx: &mut Transaction<'_>, n: u64) -> Result<PHashMap<K, V>> {
        tx.all_or_nothing(|tx| {
            let s = Self::slots();
            let slots = ((BUCKET_BYTES - s.first) / s.stride).clamp(4, 64);
            // Saturating: a capacity beyond the largest directory is the largest one.
            let buckets = n
                .saturating_mul(2)
                .div_ceil(slots)
                .max(1)
                .next_power_of_two();
            let depth = u64::from(buckets.ilog2()).min(MAX_DEPTH);
            // A failure part way gives back what was allocated with the rest of the call.
            let header = alloc_zeroed(tx, HEADER_BYTES, LINE)?;
            let dir = alloc_zeroed(tx, (8 << depth).max(LINE), LINE)?;
            let mut offs = Vec::with_capacity(1 << depth);
            for _ in 0..1u64 << depth {
                let b = alloc_zeroed(tx, Self::bucket_bytes(slots), Self::bucket_align())?;
                tx.write_fresh(b, bytemuck::bytes_of(&[depth as u32, 0, slots as u32, 0]))?;
                offs.push(b);
            }
            tx.write_fresh(dir, bytemuck::cast_slice(&offs))?;
            tx.write_fresh(
                header,
                bytemuck::bytes_of(&[Self::word(), depth, dir, slots]),
            )?;
            Ok(PHashMap {
                off: header,
                _type: PhantomData,
            })
        })
    }

    fn meta(self, tx: &Transaction<'_>) -> Result<Meta> {
        check(tx, self.off, Self::word(), "PHashMap")?;
        let [depth, dir]: [u64; 2] = load(tx, self.off + DEPTH)?;
        if depth > MAX_DEPTH {
            return Err(self.corrupt(&format!("global depth {depth}")));
        }
        guard(dir, 8 << depth)?;
        Ok(Meta { depth, dir })
    }

    fn corrupt(self, what: &str) -> Error {
        Error::HeapCorrupt(format!("PHashMap {:#x}: {what}", self.off))
    }

    fn decode_bucket(self, m: &Meta, off: u64, w: [u32; 4]) -> Result<Bucket> {
        let b = Bucket {
            off,
            depth: u64::from(w[0]),
            count: u64::from(w[1]),
            cap: u64::from(w[2]),
        };
        if b.depth > m.depth || b.count > b.cap || b.cap == 0 {
            return Err(self.corrupt(&format!(
                "bucket {off:#x}: depth {} of {}, {} of {} slots",
                b.depth, m.depth, b.count, b.cap
            )));
        }
        guard(off, Self::bucket_bytes(b.cap))?;
        Ok(b)
    }

    /// The bucket of directory entry `idx`, its header read (locked shared).
    fn bucket(self, tx: &Transaction<'_>, m: &Meta, idx: u64) -> Result<Bucket> {
        let off: u64 = load(tx, m.dir + 8 * idx)?;
        guard(off, BUCKET_HEAD)?;
        let w: [u32; 4] = tx.get(off)?;
        self.decode_bucket(m, off, w)
    }

    /// The bucket of directory entry `idx`, its header locked exclusively (and
    /// logged) first: a change follows.
    fn bucket_mut(self, tx: &mut Transaction<'_>, m: &Meta, idx: u64) -> Result<Bucket> {
        let off: u64 = load(tx, m.dir + 8 * idx)?;
        guard(off, BUCKET_HEAD)?;
        let w: [u32; 4] = bytemuck::pod_read_unaligned(tx.set_range(off, BUCKET_HEAD)?);
        self.decode_bucket(m, off, w)
    }

    /// The slot of `q` in bucket `b`.
    fn find(tx: &Transaction<'_>, b: &Bucket, hash: u64, q: &K::Query) -> Result<Option<u64>> {
        let s = Self::slots();
        let all = tx.read(b.off + s.first, b.count * s.stride)?;
        for i in 0..b.count {
            let slot = &all[(i * s.stride) as usize..((i + 1) * s.stride) as usize];
            let tag = u64::from_le_bytes(slot[..8].try_into().expect("8 bytes"));
            if tag != hash {
                continue;
            }
            let at = s.key as usize;
            let key: K = bytemuck::pod_read_unaligned(&slot[at..at + std::mem::size_of::<K>()]);
            if key.matches(tx, q)? {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    fn slot_off(b: &Bucket, i: u64) -> u64 {
        let s = Self::slots();
        b.off + s.first + i * s.stride
    }

    /// Adds `delta` to this transaction's lane stripe of the entry count.
    fn count(self, tx: &mut Transaction<'_>, delta: i64) -> Result<()> {
        let stripe = u64::from(tx.lane()) % STRIPES;
        let w = tx.set_range(self.off + LINE * (1 + stripe), 8)?;
        let c = i64::from_le_bytes(w[..8].try_into().expect("8 bytes"));
        let Some(n) = c.checked_add(delta) else {
            return Err(self.corrupt(&format!("a stripe counter of {c}")));
        };
        w.copy_from_slice(&n.to_le_bytes());
        Ok(())
    }

    /// The value of `key`, or `None`.
    ///
    /// # Errors
    /// [`Error::BadHandle`]; [`Error::Conflict`]; [`Error::HeapCorrupt`].
    pub fn get(&self, tx: &Transaction<'_>, key: &K::Query) -> Result<Option<V>> {
        let hash = K::hash_query(key);
        let m = self.meta(tx)?;
        let b = self.bucket(tx, &m, dir_index(hash, m.depth))?;
        match Self::find(tx, &b, hash, key)? {
            Some(i) => tx
                .get(Self::slot_off(&b, i) + Self::slots().value)
                .map(Some),
            None => Ok(None),
        }
    }

    /// Whether `key` is present.
    ///
    /// # Errors
    /// As [`PHashMap::get`].
    pub fn contains_key(&self, tx: &Transaction<'_>, key: &K::Query) -> Result<bool> {
        Ok(self.get(tx, key)?.is_some())
    }

    /// The value of `key`, to change in place: only the value is declared (locked and
    /// logged).
    ///
    /// # Errors
    /// As [`PHashMap::get`]; [`Error::UndoLogFull`].
    pub fn get_mut<'a>(
        &self,
        tx: &'a mut Transaction<'_>,
        key: &K::Query,
    ) -> Result<Option<&'a mut V>> {
        let hash = K::hash_query(key);
        let m = self.meta(tx)?;
        let b = self.bucket(tx, &m, dir_index(hash, m.depth))?;
        let Some(i) = Self::find(tx, &b, hash, key)? else {
            return Ok(None);
        };
        let at = Self::slot_off(&b, i) + Self::slots().value;
        let w = tx.set_range(at, std::mem::size_of::<V>() as u64)?;
        bytemuck::try_from_bytes_mut(w)
            .map(Some)
            .map_err(|e| self.corrupt(&format!("value at {at:#x}: {e}")))
    }

    /// Sets `key` to `value`; returns the value it replaces. A new key is stored
    /// (a buffer key is copied into a block of the map's). A full bucket is split
    /// first, allocating before anything changes, so [`Error::OutOfSpace`] leaves the
    /// map as it was (or split, which changes no entry).
    ///
    /// # Errors
    /// [`Error::OutOfSpace`]; [`Error::BadHandle`]; as [`Transaction::alloc`].
    pub fn insert(&self, tx: &mut Transaction<'_>, key: &K::Query, value: V) -> Result<Option<V>> {
        tx.all_or_nothing(|tx| {
            let hash = K::hash_query(key);
            let s = Self::slots();
            loop {
                let m = self.meta(tx)?;
                let idx = dir_index(hash, m.depth);
                let b = self.bucket_mut(tx, &m, idx)?;
                if let Some(i) = Self::find(tx, &b, hash, key)? {
                    let at = Self::slot_off(&b, i) + s.value;
                    let old: V = tx.get(at)?;
                    tx.put(at, &value)?;
                    return Ok(Some(old));
                }
                if b.count < b.cap {
                    let stored = K::store(tx, key)?;
                    let mut slot = vec![0u8; s.stride as usize];
                    slot[..8].copy_from_slice(&hash.to_le_bytes());
                    let (k, v) = (s.key as usize, s.value as usize);
                    slot[k..k + std::mem::size_of::<K>()]
                        .copy_from_slice(bytemuck::bytes_of(&stored));
                    slot[v..v + std::mem::size_of::<V>()]
                        .copy_from_slice(bytemuck::bytes_of(&value));
                    // Logged even past the count: a remove earlier in this transaction may
                    // have left a committed entry there.
                    tx.write(Self::slot_off(&b, b.count), &slot)?;
                    tx.put(b.off + 4, &((b.count + 1) as u32))?;
                    self.count(tx, 1)?;
                    return Ok(None);
                }
                self.make_room(tx, &m, idx, b)?;
            }
        })
    }

    /// Splits the full bucket `b` (entry `idx`), doubling the directory first if
    /// needed, or doubles the bucket's slots at the largest directory.
    fn make_room(self, tx: &mut Transaction<'_>, m: &Meta, idx: u64, b: Bucket) -> Result<()> {
        let s = Self::slots();
        if b.depth == m.depth {
            if m.depth >= MAX_DEPTH {
                return Self::grow_bucket(tx, m, idx, b);
            }
            return self.double_directory(tx, m);
        }
        let fresh = alloc_zeroed(tx, Self::bucket_bytes(b.cap), Self::bucket_align())?;
        let all = tx.read(b.off + s.first, b.count * s.stride)?.to_vec();
        let bit = 63 - b.depth;
        let (mut stay, mut go) = (Vec::new(), Vec::new());
        for slot in all.chunks_exact(s.stride as usize) {
            let tag = u64::from_le_bytes(slot[..8].try_into().expect("8 bytes"));
            if tag >> bit & 1 == 0 {
                stay.extend_from_slice(slot);
            } else {
                go.extend_from_slice(slot);
            }
        }
        let depth = (b.depth + 1) as u32;
        let n = |v: &Vec<u8>| (v.len() as u64 / s.stride) as u32;
        tx.write_fresh(fresh, bytemuck::bytes_of(&[depth, n(&go), b.cap as u32, 0]))?;
        tx.write_fresh(fresh + s.first, &go)?;
        tx.write(
            b.off,
            bytemuck::bytes_of(&[depth, n(&stay), b.cap as u32, 0]),
        )?;
        tx.write(b.off + s.first, &stay)?;
        let span = 1u64 << (m.depth - b.depth);
        let upper = (idx >> (m.depth - b.depth) << (m.depth - b.depth)) + span / 2;
        let entries = vec![fresh; (span / 2) as usize];
        tx.write(m.dir + 8 * upper, bytemuck::cast_slice(&entries))
    }

    fn double_directory(self, tx: &mut Transaction<'_>, m: &Meta) -> Result<()> {
        let n = 1u64 << m.depth;
        let dir = alloc_zeroed(tx, (16 * n).max(LINE), LINE)?;
        let old: Vec<u64> = tx
            .read(m.dir, 8 * n)?
            .chunks_exact(8)
            .map(bytemuck::pod_read_unaligned)
            .collect();
        let new: Vec<u64> = (0..2 * n).map(|i| old[(i / 2) as usize]).collect();
        tx.write_fresh(dir, bytemuck::cast_slice(&new))?;
        free_block(tx, m.dir)?;
        tx.put(self.off + DEPTH, &[m.depth + 1, dir])
    }

    fn grow_bucket(tx: &mut Transaction<'_>, m: &Meta, idx: u64, b: Bucket) -> Result<()> {
        let s = Self::slots();
        let cap = 2 * b.cap;
        let fresh = alloc_zeroed(tx, Self::bucket_bytes(cap), Self::bucket_align())?;
        let all = tx.read(b.off + s.first, b.count * s.stride)?.to_vec();
        tx.write_fresh(
            fresh,
            bytemuck::bytes_of(&[b.depth as u32, b.count as u32, cap as u32, 0]),
        )?;
        tx.write_fresh(fresh + s.first, &all)?;
        tx.put(m.dir + 8 * idx, &fresh)?;
        free_block(tx, b.off)
    }

    /// Removes `key`; returns its value. A buffer key is freed; the value is the
    /// caller's.
    ///
    /// # Errors
    /// As [`PHashMap::insert`].
    pub fn remove(&self, tx: &mut Transaction<'_>, key: &K::Query) -> Result<Option<V>> {
        tx.all_or_nothing(|tx| {
            let hash = K::hash_query(key);
            let s = Self::slots();
            let m = self.meta(tx)?;
            let b = self.bucket_mut(tx, &m, dir_index(hash, m.depth))?;
            let Some(i) = Self::find(tx, &b, hash, key)? else {
                return Ok(None);
            };
            let at = Self::slot_off(&b, i);
            let stored: K = tx.get(at + s.key)?;
            let value: V = tx.get(at + s.value)?;
            let last = b.count - 1;
            if i != last {
                let moved = tx.read(Self::slot_off(&b, last), s.stride)?.to_vec();
                tx.write(at, &moved)?;
            }
            tx.put(b.off + 4, &(last as u32))?;
            self.count(tx, -1)?;
            stored.release(tx)?;
            Ok(Some(value))
        })
    }

    /// Its number of entries: the sum of the lane stripes' counters (all read, so
    /// this conflicts with every transaction that inserts or removes meanwhile).
    ///
    /// # Errors
    /// As [`PHashMap::get`].
    pub fn len(&self, tx: &Transaction<'_>) -> Result<u64> {
        self.meta(tx)?;
        let mut n = 0i64;
        for s in 0..STRIPES {
            let c = tx.get::<i64>(self.off + LINE * (1 + s))?;
            n = n
                .checked_add(c)
                .ok_or_else(|| self.corrupt(&format!("stripe counters summing past {n}")))?;
        }
        u64::try_from(n).map_err(|_| self.corrupt(&format!("{n} entries")))
    }

    /// Whether it has no entries.
    ///
    /// # Errors
    /// As [`PHashMap::len`].
    pub fn is_empty(&self, tx: &Transaction<'_>) -> Result<bool> {
        Ok(self.len(tx)? == 0)
    }

    /// Its entries, `(stored key, value)`, in hash order, bucket by bucket (each read
    /// locked shared). A buffer key is its handle: read it with `get`.
    pub fn iter<'a, 's>(&self, tx: &'a Transaction<'s>) -> MapIter<'a, 's, K, V> {
        MapIter {
            tx,
            map: *self,
            meta: None,
            next: 0,
            buf: Vec::new(),
            failed: false,
        }
    }

    /// The entries of the bucket at directory entry `idx`, and the next entry of
    /// another bucket.
    fn bucket_entries(
        self,
        tx: &Transaction<'_>,
        m: &Meta,
        idx: u64,
    ) -> Result<(Vec<(K, V)>, u64)> {
        let s = Self::slots();
        let b = self.bucket(tx, m, idx)?;
        let all = tx.read(b.off + s.first, b.count * s.stride)?;
        let (k, v) = (s.key as usize, s.value as usize);
        let entries = all
            .chunks_exact(s.stride as usize)
            .map(|slot| {
                (
                    bytemuck::pod_read_unaligned(&slot[k..k + std::mem::size_of::<K>()]),
                    bytemuck::pod_read_unaligned(&slot[v..v + std::mem::size_of::<V>()]),
                )
            })
            .collect();
        let span = 1u64 << (m.depth - b.depth);
        Ok((entries, (idx / span + 1) * span))
    }

    /// Frees the map: its buckets, directory, header and buffer keys (not what its
    /// values refer to).
    ///
    /// # Errors
    /// As [`PHashMap::insert`].
    pub fn free(self, tx: &mut Transaction<'_>) -> Result<()> {
        tx.all_or_nothing(|tx| {
            let m = self.meta(tx)?;
            let mut idx = 0;
            while idx < 1 << m.depth {
                let b = self.bucket(tx, &m, idx)?;
                let (entries, next) = self.bucket_entries(tx, &m, idx)?;
                for (key, _) in entries {
                    key.release(tx)?;
                }
                free_block(tx, b.off)?;
                idx = next;
            }
            free_block(tx, m.dir)?;
            free_block(tx, self.off)
        })
    }
}

/// The entries of a [`PHashMap`] ([`PHashMap::iter`]); an error ends it.
#[derive(Debug)]
pub struct MapIter<'a, 's, K, V> {
    tx: &'a Transaction<'s>,
    map: PHashMap<K, V>,
    meta: Option<Meta>,
    next: u64,
    /// The rest of the current bucket's entries.
    buf: Vec<(K, V)>,
    failed: bool,
}

impl<K: HashKey, V: bytemuck::Pod> Iterator for MapIter<'_, '_, K, V> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Result<(K, V)>> {
        loop {
            if let Some(e) = self.buf.pop() {
                return Some(Ok(e));
            }
            if self.failed {
                return None;
            }
            let step = (|| -> Result<bool> {
                let m = match self.meta {
                    Some(m) => m,
                    None => *self.meta.insert(self.map.meta(self.tx)?),
                };
                if self.next >= 1 << m.depth {
                    return Ok(false);
                }
                let (entries, next) = self.map.bucket_entries(self.tx, &m, self.next)?;
                self.buf = entries;
                self.buf.reverse();
                self.next = next;
                Ok(true)
            })();
            match step {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<K, V> Clone for PHashMap<K, V> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<K, V> Copy for PHashMap<K, V> {}
impl<K, V> PartialEq for PHashMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.off == other.off
    }
}
impl<K, V> Eq for PHashMap<K, V> {}
impl<K, V> Default for PHashMap<K, V> {
    fn default() -> Self {
        PHashMap {
            off: 0,
            _type: PhantomData,
        }
    }
}
impl<K, V> std::fmt::Debug for PHashMap<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PHashMap({:#x})", self.off)
    }
}
