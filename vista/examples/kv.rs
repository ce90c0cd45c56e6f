//! A persistent key-value map on vista's heap: a `PHashMap<PString, PBytes>` found
//! through a named root, every change one transaction. It survives `kill -9` at any
//! instant:
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
//! where the map stops); `verify` walks the map, checks every entry and the count, and
//! runs `Segment::check` on the heap.

use std::process::ExitCode;

use vista::{bytemuck, Error, PBytes, PHashMap, PString, Segment, Transaction};

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Root {
    map: PHashMap<PString, PBytes>,
}

/// The root's name: the identity of this program's data (a new layout, a new name).
const ROOT: &str = "vista-kv-v2";

/// The map, created on first use.
fn map(tx: &mut Transaction<'_>) -> Result<PHashMap<PString, PBytes>, Error> {
    let root = tx.root_named::<Root>(ROOT)?;
    let map = tx.get_ptr(root)?.map;
    if !map.is_null() {
        return Ok(map);
    }
    let map = PHashMap::with_capacity(tx, 4096)?;
    *tx.get_mut(root.project(|r| &r.map))? = map;
    Ok(map)
}

/// The map if the segment has one (read-only: nothing is created).
fn existing(seg: &Segment) -> Result<Option<PHashMap<PString, PBytes>>, Error> {
    let Some(root) = seg.root_named::<Root>(ROOT)? else {
        return Ok(None);
    };
    let map = seg.get_ptr(root)?.map;
    Ok((!map.is_null()).then_some(map))
}

fn put(tx: &mut Transaction<'_>, key: &str, value: &[u8]) -> Result<(), Error> {
    let map = map(tx)?;
    let value = PBytes::new(tx, value)?;
    if let Some(old) = map.insert(tx, key, value)? {
        old.free(tx)?;
    }
    Ok(())
}

fn get(seg: &Segment, key: &str) -> Result<Option<Vec<u8>>, Error> {
    let Some(map) = existing(seg)? else {
        return Ok(None);
    };
    let value = {
        let tx = seg.begin()?;
        map.get(&tx, key)?
    };
    // Read outside the transaction, through the segment.
    value.map(|v| v.to_vec(seg)).transpose()
}

fn del(tx: &mut Transaction<'_>, key: &str) -> Result<bool, Error> {
    let map = map(tx)?;
    match map.remove(tx, key)? {
        Some(value) => {
            value.free(tx)?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Checks every entry of a map filled by `fill`, the count, and the heap.
fn verify(seg: &Segment) -> Result<bool, Error> {
    let Some(map) = existing(seg)? else {
        println!("empty");
        return Ok(true);
    };
    let tx = seg.begin()?;
    let (mut n, mut ok) = (0u64, true);
    for entry in map.iter(&tx) {
        let (key, value) = entry?;
        let key = key.get(&tx)?;
        let value = value.get(&tx)?;
        if let Some(i) = key.strip_prefix("key-") {
            if value != format!("value-{i}").as_bytes() {
                println!("{key}: wrong value");
                ok = false;
            }
        }
        n += 1;
    }
    let count = map.len(&tx)?;
    drop(tx);
    if n != count {
        println!("{n} entries, count says {count}");
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
        let arg = |i: usize| args.get(i).map(String::as_str).ok_or(());
        match (cmd.as_str(), arg(2), arg(3)) {
            ("put", Ok(k), Ok(v)) => seg.transaction(|tx| put(tx, k, v.as_bytes()))?,
            ("get", Ok(k), _) => match get(&seg, k)? {
                Some(v) => println!("{}", String::from_utf8_lossy(&v)),
                None => return Ok(false),
            },
            ("del", Ok(k), _) => return seg.transaction(|tx| del(tx, k)),
            ("fill", Ok(n), _) => {
                let n: u64 = n.parse().unwrap_or(0);
                let start = match existing(&seg)? {
                    Some(map) => map.len(&seg.begin()?)?,
                    None => 0,
                };
                for i in start..n {
                    let (k, v) = (format!("key-{i}"), format!("value-{i}"));
                    seg.transaction(|tx| put(tx, &k, v.as_bytes()))?;
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
