//! A persistent key-value map on vista's heap: a chained hash table found through the
//! root object, every change one transaction. It survives `kill -9` at any instant:
//!
//! ```sh
//! cargo run --release -p vista --example kv -- /tmp/kv.vista fill 1000000 &
//! sleep 2; kill -9 $!
//! cargo run --release -p vista --example kv -- /tmp/kv.vista verify
//! cargo run --release -p vista --example kv -- /tmp/kv.vista put greeting hello
//! cargo run --release -p vista --example kv -- /tmp/kv.vista get greeting
//! ```
//!
//! `fill N` inserts `key-i` = `value-i` for i in 0..N (one transaction each, resuming
//! where the map stops); `verify` walks the table, checks every entry and the count,
//! and runs `Segment::check` on the heap.

use std::process::ExitCode;

use vista::{bytemuck, Error, PPtr, Segment, Transaction};

const BUCKETS: usize = 4096;
const KEY_MAX: usize = 48;

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Root {
    buckets: PPtr<[PPtr<Entry>; BUCKETS]>,
    count: u64,
}

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Entry {
    next: PPtr<Entry>,
    value: PPtr<[u8]>,
    value_len: u64,
    key_len: u64,
    key: [u8; KEY_MAX],
}

/// FNV-1a: stable across builds, unlike std's hasher.
fn bucket(key: &[u8]) -> usize {
    let h = key.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h % BUCKETS as u64) as usize
}

/// The bucket head `b`: one element of the bucket array, read and written through the
/// raw offset (`get_ptr`/`get_mut` would lock and log the whole 32 KiB array).
fn head_off(root: &Root, b: usize) -> u64 {
    root.buckets.offset() + (b * std::mem::size_of::<PPtr<Entry>>()) as u64
}

/// The table, created on first use.
fn table(tx: &mut Transaction<'_>) -> Result<PPtr<Root>, Error> {
    let root = tx.root::<Root>()?;
    if tx.get_ptr(root)?.buckets.is_null() {
        let buckets = tx.alloc_zeroed()?; // all null
        tx.get_mut(root)?.buckets = buckets;
    }
    Ok(root)
}

/// The entry holding `key` and the link that points at it (`None`: the bucket head).
fn find(
    tx: &Transaction<'_>,
    root: Root,
    key: &[u8],
) -> Result<(Option<PPtr<Entry>>, PPtr<Entry>), Error> {
    let mut prev = None;
    let mut at: PPtr<Entry> = tx.get(head_off(&root, bucket(key)))?;
    while !at.is_null() {
        let e = tx.get_ptr(at)?;
        if &e.key[..e.key_len as usize] == key {
            return Ok((prev, at));
        }
        prev = Some(at);
        at = e.next;
    }
    Ok((prev, PPtr::NULL))
}

fn put(tx: &mut Transaction<'_>, key: &[u8], value: &[u8]) -> Result<(), Error> {
    assert!(key.len() <= KEY_MAX, "keys are at most {KEY_MAX} bytes");
    let root_ptr = table(tx)?;
    let root = tx.get_ptr(root_ptr)?;
    let (_, found) = find(tx, root, key)?;
    let data = tx.alloc_bytes(value.len() as u64)?;
    tx.bytes_mut(data)?[..value.len()].copy_from_slice(value);
    if !found.is_null() {
        let old = tx.get_ptr(found)?.value;
        tx.free(old)?;
        let e = tx.get_mut(found)?;
        e.value = data;
        e.value_len = value.len() as u64;
        return Ok(());
    }
    let b = bucket(key);
    let head = tx.get(head_off(&root, b))?;
    let mut entry = Entry {
        next: head,
        value: data,
        value_len: value.len() as u64,
        key_len: key.len() as u64,
        key: [0; KEY_MAX],
    };
    entry.key[..key.len()].copy_from_slice(key);
    let e = tx.alloc(entry)?;
    tx.put(head_off(&root, b), &e)?;
    tx.get_mut(root_ptr)?.count += 1;
    Ok(())
}

fn get(seg: &Segment, key: &[u8]) -> Result<Option<Vec<u8>>, Error> {
    let Some(root) = seg.root::<Root>()? else {
        return Ok(None);
    };
    let tx = seg.begin()?;
    let root = tx.get_ptr(root)?;
    if root.buckets.is_null() {
        return Ok(None);
    }
    let (_, at) = find(&tx, root, key)?;
    if at.is_null() {
        return Ok(None);
    }
    let e = tx.get_ptr(at)?;
    Ok(Some(tx.bytes(e.value)?[..e.value_len as usize].to_vec()))
}

fn del(tx: &mut Transaction<'_>, key: &[u8]) -> Result<bool, Error> {
    let root_ptr = table(tx)?;
    let root = tx.get_ptr(root_ptr)?;
    let (prev, at) = find(tx, root, key)?;
    if at.is_null() {
        return Ok(false);
    }
    let e = tx.get_ptr(at)?;
    match prev {
        Some(p) => tx.get_mut(p)?.next = e.next,
        None => tx.put(head_off(&root, bucket(key)), &e.next)?,
    }
    tx.free(e.value)?;
    tx.free(at)?;
    tx.get_mut(root_ptr)?.count -= 1;
    Ok(true)
}

/// Checks every entry of a map filled by `fill`, the count, and the heap.
fn verify(seg: &Segment) -> Result<bool, Error> {
    let Some(root) = seg.root::<Root>()? else {
        println!("empty");
        return Ok(true);
    };
    let tx = seg.begin()?;
    let root = tx.get_ptr(root)?;
    let mut n = 0u64;
    let mut ok = true;
    if !root.buckets.is_null() {
        for head in tx.get_ptr(root.buckets)? {
            let mut at = head;
            while !at.is_null() {
                let e = tx.get_ptr(at)?;
                let key = &e.key[..e.key_len as usize];
                let value = &tx.bytes(e.value)?[..e.value_len as usize];
                if let Some(i) = key.strip_prefix(b"key-") {
                    if value != [&b"value-"[..], i].concat() {
                        println!("{}: wrong value", String::from_utf8_lossy(key));
                        ok = false;
                    }
                }
                n += 1;
                at = e.next;
            }
        }
    }
    drop(tx);
    if n != root.count {
        println!("{n} entries, count says {}", root.count);
        ok = false;
    }
    let report = seg.check()?;
    for p in &report.problems {
        println!("heap: {p}");
    }
    let s = report.stats;
    println!(
        "{n} entries; heap: {} live blocks, {} live bytes in {} bytes of pages, {} free; {}",
        s.live_blocks,
        s.live_bytes,
        s.used_bytes,
        s.free_bytes,
        if ok && report.problems.is_empty() {
            "consistent"
        } else {
            "INCONSISTENT"
        }
    );
    Ok(ok && report.problems.is_empty())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: kv <segment> put KEY VALUE | get KEY | del KEY | fill N | verify";
    let (Some(path), Some(cmd)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let opts = vista::Options::default().size(256 << 20);
    let run = || -> Result<bool, Error> {
        let seg = Segment::open(path, &opts)?;
        let arg = |i: usize| args.get(i).map(String::as_bytes).ok_or(());
        match (cmd.as_str(), arg(2), arg(3)) {
            ("put", Ok(k), Ok(v)) => seg.transaction(|tx| put(tx, k, v))?,
            ("get", Ok(k), _) => match get(&seg, k)? {
                Some(v) => println!("{}", String::from_utf8_lossy(&v)),
                None => return Ok(false),
            },
            ("del", Ok(k), _) => return seg.transaction(|tx| del(tx, k)),
            ("fill", Ok(n), _) => {
                let n: u64 = std::str::from_utf8(n)
                    .ok()
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
                let start = match seg.root::<Root>()? {
                    Some(r) => seg.get_ptr(r)?.count,
                    None => 0,
                };
                for i in start..n {
                    let (k, v) = (format!("key-{i}"), format!("value-{i}"));
                    seg.transaction(|tx| put(tx, k.as_bytes(), v.as_bytes()))?;
                    if i % 10_000 == 0 {
                        println!("{i}");
                    }
                }
            }
            ("verify", _, _) => return verify(&seg),
            _ => {
                eprintln!("{usage}");
                return Ok(false);
            }
        }
        Ok(true)
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("kv: {e}");
            ExitCode::from(3)
        }
    }
}
