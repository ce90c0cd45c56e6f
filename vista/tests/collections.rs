//! The collections against simple models (`Vec`, `String`, `BTreeMap`) with aborts,
//! crashes and reopens under every protection mode; growth, resizing, bad handles,
//! out-of-space, leaks, and reading outside a transaction.

mod common;

use std::collections::BTreeMap;

use common::Place;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use vista::heap::HandleError;
use vista::{bytemuck, Error, PBytes, PHashMap, PString, PVec, Protection, Segment, Transaction};

#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Root {
    vec: PVec<u64>,
    text: PString,
    map: PHashMap<u64, u64>,
    names: PHashMap<PString, PBytes>,
}

const ROOT: &str = "collections-test-v1";

fn opts(p: &Place, size: u64) -> vista::Options {
    p.opts(size).undo_log_size(256 << 10)
}

/// The models of the four collections.
#[derive(Debug, Clone, Default, PartialEq)]
struct Model {
    vec: Vec<u64>,
    text: String,
    map: BTreeMap<u64, u64>,
    names: BTreeMap<String, Vec<u8>>,
}

#[derive(Debug, Clone)]
enum Op {
    Push(u64),
    PushMany(u64, u8),
    Pop,
    Insert(usize, u64),
    Remove(usize),
    Set(usize, u64),
    PopMany(u8),
    Text(String),
    AppendText(String),
    MapInsert(u64, u64),
    MapInsertMany(u64, u8),
    MapRemove(u64),
    MapBump(u64),
    NameSet(String, Vec<u8>),
    NameRemove(String),
}

#[derive(Debug, Clone)]
enum End {
    Commit,
    Abort,
    Crash,
}

#[derive(Debug, Clone)]
enum Step {
    Tx(Vec<Op>, End),
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let key = 0u64..400;
    let name = "[a-e]{1,3}";
    prop_oneof![
        4 => any::<u64>().prop_map(Op::Push),
        1 => (any::<u64>(), 1u8..120).prop_map(|(v, n)| Op::PushMany(v, n)),
        2 => Just(Op::Pop),
        1 => (any::<usize>(), any::<u64>()).prop_map(|(i, v)| Op::Insert(i, v)),
        1 => any::<usize>().prop_map(Op::Remove),
        2 => (any::<usize>(), any::<u64>()).prop_map(|(i, v)| Op::Set(i, v)),
        1 => (1u8..120).prop_map(Op::PopMany),
        1 => "[a-zß]{0,40}".prop_map(Op::Text),
        1 => "[a-z]{0,30}".prop_map(Op::AppendText),
        4 => (key.clone(), any::<u64>()).prop_map(|(k, v)| Op::MapInsert(k, v)),
        1 => (key.clone(), 1u8..200).prop_map(|(k, n)| Op::MapInsertMany(k, n)),
        3 => key.clone().prop_map(Op::MapRemove),
        2 => key.prop_map(Op::MapBump),
        2 => (name, prop::collection::vec(any::<u8>(), 0..300))
            .prop_map(|(k, v)| Op::NameSet(k, v)),
        1 => name.prop_map(Op::NameRemove),
    ]
}

fn step_strategy() -> impl Strategy<Value = Step> {
    let end = prop_oneof![4 => Just(End::Commit), 1 => Just(End::Abort), 1 => Just(End::Crash)];
    prop_oneof![
        8 => (prop::collection::vec(op_strategy(), 0..16), end).prop_map(|(ops, end)| Step::Tx(ops, end)),
        1 => Just(Step::Reopen),
    ]
}

/// Applies `op` to the collections and to the model.
fn apply(
    tx: &mut Transaction<'_>,
    root: &mut Root,
    model: &mut Model,
    op: &Op,
) -> vista::Result<()> {
    let vec = root.vec;
    match op {
        Op::Push(x) => {
            vec.push(tx, *x)?;
            model.vec.push(*x);
        }
        Op::PushMany(x, n) => {
            for i in 0..u64::from(*n) {
                vec.push(tx, x.wrapping_add(i))?;
                model.vec.push(x.wrapping_add(i));
            }
        }
        Op::Pop => assert_eq!(vec.pop(tx)?, model.vec.pop()),
        Op::PopMany(n) => {
            for _ in 0..*n {
                assert_eq!(vec.pop(tx)?, model.vec.pop());
            }
        }
        Op::Insert(i, x) => {
            let i = i % (model.vec.len() + 1);
            vec.insert(tx, i as u64, *x)?;
            model.vec.insert(i, *x);
        }
        Op::Remove(i) if !model.vec.is_empty() => {
            let i = i % model.vec.len();
            assert_eq!(vec.remove(tx, i as u64)?, model.vec.remove(i));
        }
        Op::Set(i, x) if !model.vec.is_empty() => {
            let i = i % model.vec.len();
            vec.set(tx, i as u64, *x)?;
            model.vec[i] = *x;
        }
        Op::Remove(_) | Op::Set(..) => {
            assert!(matches!(
                vec.remove(tx, 0),
                Err(Error::IndexOutOfBounds { index: 0, len: 0 })
            ));
        }
        Op::Text(s) => {
            root.text = root.text.set(tx, s)?;
            model.text.clone_from(s);
        }
        Op::AppendText(s) => {
            root.text = root.text.push_str(tx, s)?;
            model.text.push_str(s);
        }
        Op::MapInsert(k, x) => assert_eq!(root.map.insert(tx, k, *x)?, model.map.insert(*k, *x)),
        Op::MapInsertMany(k, n) => {
            for i in 0..u64::from(*n) {
                let k = k * 1000 + i;
                assert_eq!(root.map.insert(tx, &k, i)?, model.map.insert(k, i));
            }
        }
        Op::MapRemove(k) => assert_eq!(root.map.remove(tx, k)?, model.map.remove(k)),
        Op::MapBump(k) => match (root.map.get_mut(tx, k)?, model.map.get_mut(k)) {
            (Some(a), Some(b)) => {
                *a = a.wrapping_add(1);
                *b = b.wrapping_add(1);
            }
            (None, None) => {}
            _ => panic!("get_mut disagrees with the model on {k}"),
        },
        Op::NameSet(k, bytes) => {
            let value = PBytes::new(tx, bytes)?;
            if let Some(old) = root.names.insert(tx, k, value)? {
                old.free(tx)?;
            }
            model.names.insert(k.clone(), bytes.clone());
        }
        Op::NameRemove(k) => {
            let gone = root.names.remove(tx, k)?;
            assert_eq!(gone.is_some(), model.names.remove(k).is_some());
            if let Some(b) = gone {
                b.free(tx)?;
            }
        }
    }
    Ok(())
}

/// The collections' contents, read in a transaction and through the segment.
fn observe(seg: &Segment, root: vista::PPtr<Root>) -> Model {
    let tx = seg.begin().unwrap();
    let r = tx.get_ptr(root).unwrap();
    let vec = r.vec.to_vec(&tx).unwrap();
    assert_eq!(r.vec.len(&tx).unwrap(), vec.len() as u64);
    let map: BTreeMap<u64, u64> = r.map.iter(&tx).map(Result::unwrap).collect();
    assert_eq!(r.map.len(&tx).unwrap(), map.len() as u64);
    for (k, v) in &map {
        assert_eq!(r.map.get(&tx, k).unwrap(), Some(*v));
    }
    let mut names = BTreeMap::new();
    for e in r.names.iter(&tx) {
        let (k, v) = e.unwrap();
        let k = k.get(&tx).unwrap().to_owned();
        assert_eq!(r.names.get(&tx, &k).unwrap(), Some(v));
        names.insert(k, v.get(&tx).unwrap().to_vec());
    }
    assert_eq!(r.names.len(&tx).unwrap(), names.len() as u64);
    let text = r.text.get(&tx).unwrap().to_owned();
    drop(tx);
    assert_eq!(
        r.text.to_string(seg).unwrap(),
        text,
        "read outside a transaction"
    );
    Model {
        vec,
        text,
        map,
        names,
    }
}

fn create(seg: &Segment) -> vista::PPtr<Root> {
    seg.transaction(|tx| {
        let root = tx.root_named::<Root>(ROOT)?;
        let r = Root {
            vec: PVec::new(tx)?,
            text: PString::new(tx, "")?,
            map: PHashMap::new(tx)?,
            names: PHashMap::new(tx)?,
        };
        *tx.get_mut(root)? = r;
        Ok::<_, Error>(root)
    })
    .unwrap()
}

/// Frees every collection and value: only the root and its name may be left.
fn free_all(seg: &Segment, root: vista::PPtr<Root>) {
    seg.transaction(|tx| {
        let r = tx.get_ptr(root)?;
        let values: Vec<PBytes> = r
            .names
            .iter(tx)
            .map(|e| e.map(|(_, v)| v))
            .collect::<Result<_, _>>()?;
        for v in values {
            v.free(tx)?;
        }
        r.names.free(tx)?;
        r.map.free(tx)?;
        r.vec.free(tx)?;
        r.text.free(tx)?;
        *tx.get_mut(root)? = bytemuck::Zeroable::zeroed();
        Ok::<_, Error>(())
    })
    .unwrap();
    let report = seg.check().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        report.stats.live_blocks,
        2,
        "leaked blocks: {:?}",
        seg.heap_blocks().unwrap()
    );
}

fn run(steps: &[Step], protection: Protection) -> Result<(), TestCaseError> {
    let p = Place::new();
    let o = opts(&p, 3 << 20).protection(protection);
    let mut seg = Segment::open(&p.path, &o).unwrap();
    let root = create(&seg);
    let mut model = Model::default();
    for step in steps {
        match step {
            Step::Reopen => {
                drop(seg);
                seg = Segment::open(&p.path, &o).unwrap();
                prop_assert_eq!(seg.root_named::<Root>(ROOT).unwrap(), Some(root));
            }
            Step::Tx(ops, end) => {
                let mut tx = seg.begin().unwrap();
                let mut r = tx.get_ptr(root).unwrap();
                let mut work = model.clone();
                for op in ops {
                    apply(&mut tx, &mut r, &mut work, op).unwrap();
                }
                *tx.get_mut(root).unwrap() = r;
                match end {
                    End::Commit => {
                        tx.commit().unwrap();
                        model = work;
                    }
                    End::Abort => tx.abort().unwrap(),
                    End::Crash => {
                        // The files as a killed process leaves them, mid-transaction.
                        let snap = p.snapshot();
                        drop(tx);
                        drop(seg);
                        snap.restore();
                        seg = Segment::open(&p.path, &o).unwrap();
                    }
                }
            }
        }
        let report = seg.check().unwrap();
        prop_assert!(report.is_clean(), "{:?}", report.problems);
        prop_assert_eq!(observe(&seg, root), model.clone());
    }
    free_all(&seg, root);
    Ok(())
}

#[test]
fn collections_match_their_models_under_every_guard() {
    for guard in common::guards() {
        let mut runner = TestRunner::new(Config {
            cases: 8,
            failure_persistence: None,
            ..Config::default()
        });
        let steps = prop::collection::vec(step_strategy(), 1..12);
        runner
            .run(&steps, |steps| run(&steps, guard))
            .unwrap_or_else(|e| panic!("{guard:?}: {e}"));
    }
}

#[test]
fn a_vector_grows_past_its_doubling_chunks_without_moving() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p, 6 << 20)).unwrap();
    // 4 KiB elements: chunks of 1, 2, ... 128 elements, then 128 each.
    let v = seg.transaction(PVec::<[u64; 512]>::new).unwrap();
    let elem = |i: u64| {
        let mut e = [0u64; 512];
        e[0] = i;
        e[511] = !i;
        e
    };
    let (n, batch) = (700u64, 50u64);
    for b in 0..n / batch {
        seg.transaction(|tx| {
            for i in b * batch..(b + 1) * batch {
                v.push(tx, elem(i))?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    }
    let tx = seg.begin().unwrap();
    assert_eq!(v.len(&tx).unwrap(), n);
    for (i, e) in v.iter(&tx).enumerate() {
        assert_eq!(e.unwrap(), elem(i as u64));
    }
    drop(tx);
    // Pop back below the doubling chunks: trailing chunks are freed, one spare kept.
    let before = seg.heap_stats().unwrap().live_blocks;
    seg.transaction(|tx| {
        for _ in 0..n - 10 {
            v.pop(tx)?;
        }
        Ok::<_, Error>(())
    })
    .unwrap();
    let after = seg.heap_stats().unwrap().live_blocks;
    // Header, directory and 10 chunks (1, 2, ..., 256 elements, then 256 each); then
    // the chunks of 10 elements (1, 2, 4, 8) and one spare.
    assert_eq!((before, after), (12, 7), "chunks freed");
    let tx = seg.begin().unwrap();
    assert_eq!(
        v.to_vec(&tx).unwrap(),
        (0..10).map(elem).collect::<Vec<_>>()
    );
}

#[test]
fn a_map_resizes_through_many_splits() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p, 8 << 20)).unwrap();
    let map = seg.transaction(PHashMap::<u64, [u64; 2]>::new).unwrap();
    let n = 6000u64;
    for b in 0..n / 100 {
        seg.transaction(|tx| {
            for k in b * 100..(b + 1) * 100 {
                assert_eq!(map.insert(tx, &(k * 7919), [k, !k])?, None);
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    }
    for b in 0..n / 1000 {
        seg.transaction(|tx| {
            for k in (b * 1000..(b + 1) * 1000).step_by(2) {
                assert_eq!(map.remove(tx, &(k * 7919))?, Some([k, !k]));
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    }
    let tx = seg.begin().unwrap();
    assert_eq!(map.len(&tx).unwrap(), n / 2);
    let mut seen: Vec<u64> = map
        .iter(&tx)
        .map(|e| {
            let (k, v) = e.unwrap();
            assert_eq!(v, [k / 7919, !(k / 7919)]);
            k / 7919
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..n).step_by(2).collect::<Vec<_>>());
    assert_eq!(map.get(&tx, &0).unwrap(), None);
    drop(tx);
    assert!(seg.check().unwrap().is_clean());
    // A presized map needs no split for its capacity.
    let sized = seg
        .transaction(|tx| PHashMap::<u64, u64>::with_capacity(tx, 1000))
        .unwrap();
    let blocks = seg.heap_stats().unwrap().live_blocks;
    seg.transaction(|tx| {
        for k in 0..1000 {
            sized.insert(tx, &k, k)?;
        }
        Ok::<_, Error>(())
    })
    .unwrap();
    assert_eq!(
        seg.heap_stats().unwrap().live_blocks,
        blocks,
        "no block allocated"
    );
}

#[test]
fn bad_handles_and_indices_are_typed_errors() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p, 1 << 20)).unwrap();
    let mut tx = seg.begin().unwrap();
    let v = PVec::<u64>::new(&mut tx).unwrap();
    let m = PHashMap::<u64, u64>::new(&mut tx).unwrap();
    let s = PString::new(&mut tx, "x").unwrap();
    let not_a = |r: vista::Result<()>| {
        matches!(
            r,
            Err(Error::BadHandle {
                reason: HandleError::NotACollection { .. },
                ..
            })
        )
    };
    let as_vec: PVec<u64> = bytemuck::cast(m);
    let as_vec32: PVec<u32> = bytemuck::cast(v);
    let as_map: PHashMap<u64, u64> = bytemuck::cast(v);
    let as_map_of_strings: PHashMap<PString, u64> = bytemuck::cast(m);
    let as_string: PString = bytemuck::cast(v);
    assert!(not_a(as_vec.push(&mut tx, 1)));
    assert!(not_a(as_vec32.push(&mut tx, 1)), "another element type");
    assert!(not_a(as_map.insert(&mut tx, &1, 1).map(|_| ())));
    assert!(not_a(as_map_of_strings.insert(&mut tx, "k", 1).map(|_| ())));
    assert!(not_a(as_string.len(&tx).map(|_| ())));
    assert!(matches!(
        PVec::<u64>::NULL.push(&mut tx, 1),
        Err(Error::BadHandle {
            reason: HandleError::Null,
            ..
        })
    ));
    assert!(matches!(
        v.set(&mut tx, 0, 1),
        Err(Error::IndexOutOfBounds { index: 0, len: 0 })
    ));
    assert!(matches!(
        v.insert(&mut tx, 1, 1),
        Err(Error::IndexOutOfBounds { index: 1, len: 0 })
    ));
    assert_eq!(v.get(&tx, 5).unwrap(), None);
    // Nothing changed; the transaction is usable.
    v.push(&mut tx, 3).unwrap();
    m.insert(&mut tx, &1, 2).unwrap();
    assert_eq!(s.get(&tx).unwrap(), "x");
    tx.commit().unwrap();
    assert!(seg.check().unwrap().is_clean());
}

/// Fills the heap through the collections until `OutOfSpace`; returns how many
/// entries went in. The transaction that met it stays usable and commits.
fn fill(seg: &Segment, map: PHashMap<PString, u64>, vec: PVec<u64>) -> u64 {
    let mut n = 0u64;
    loop {
        let mut tx = seg.begin().unwrap();
        let mut full = false;
        for _ in 0..64 {
            let key = format!("key-{n:08}-{}", "x".repeat(40));
            match map
                .insert(&mut tx, &key, n)
                .and_then(|_| vec.push(&mut tx, n))
            {
                Ok(()) => n += 1,
                Err(Error::OutOfSpace { .. }) => {
                    full = true;
                    break;
                }
                Err(e) => panic!("{e}"),
            }
        }
        // Usable after OutOfSpace: the entries before it commit, the map is whole.
        let len = map.len(&tx).unwrap();
        let vlen = vec.len(&tx).unwrap();
        assert!(len == n || len == n + 1, "{len} entries for {n}");
        assert!(vlen == n, "{vlen} elements for {n}");
        if len == n + 1 {
            // The insert went in, the push did not: undo the insert.
            map.remove(&mut tx, &format!("key-{n:08}-{}", "x".repeat(40)))
                .unwrap();
        }
        tx.commit().unwrap();
        if full {
            return n;
        }
    }
}

#[test]
fn out_of_space_leaves_the_collections_whole_and_a_crash_leaks_nothing() {
    let p = Place::new();
    let o = opts(&p, 4096 + 4 * 4096 + 48 * 4096);
    let mut seg = Segment::open(&p.path, &o).unwrap();
    let (map, vec) = seg
        .transaction(|tx| Ok::<_, Error>((PHashMap::new(tx)?, PVec::new(tx)?)))
        .unwrap();
    let first = fill(&seg, map, vec);
    assert!(first > 100, "only {first} entries fit");
    assert!(seg.check().unwrap().is_clean());
    // Free everything, crash in the middle of a transaction that allocates, reopen.
    let clear = |seg: &Segment| {
        seg.transaction(|tx| {
            let keys: Vec<PString> = map
                .iter(tx)
                .map(|e| e.map(|(k, _)| k))
                .collect::<Result<_, _>>()?;
            for k in keys {
                let k = k.get(tx)?.to_owned();
                map.remove(tx, &k)?;
            }
            vec.clear(tx)
        })
        .unwrap();
    };
    clear(&seg);
    let mut tx = seg.begin().unwrap();
    for i in 0..500u64 {
        if map.insert(&mut tx, &format!("doomed-{i}"), i).is_err() {
            break;
        }
        vec.push(&mut tx, i).unwrap();
    }
    let snap = p.snapshot();
    drop(tx);
    drop(seg);
    snap.restore();
    seg = Segment::open(&p.path, &o).unwrap();
    assert!(seg.check().unwrap().is_clean());
    let second = fill(&seg, map, vec);
    assert_eq!(
        first, second,
        "the same capacity after a crash: nothing leaked"
    );
    clear(&seg);
    seg.transaction(|tx| {
        map.free(tx)?;
        vec.free(tx)
    })
    .unwrap();
    assert_eq!(seg.heap_stats().unwrap().live_blocks, 0);
}

#[test]
fn buffers_are_read_outside_transactions_and_durable_closures_survive_power_loss() {
    let p = Place::new();
    let o = opts(&p, 1 << 20);
    let seg = Segment::open(&p.path, &o).unwrap();
    let (b, s, raw) = seg
        .transaction_durable(|tx| {
            let raw = tx.alloc_bytes(40)?;
            tx.bytes_mut(raw)?[..3].copy_from_slice(b"raw");
            let root = tx.root_named::<[PBytes; 2]>("buffers")?;
            let b = PBytes::new(tx, &[7u8; 100])?;
            let s = PString::new(tx, "durable")?;
            *tx.get_mut(root)? = [b, bytemuck::cast(s)];
            Ok::<_, Error>((b, s, raw))
        })
        .unwrap();
    let snap = p.snapshot();
    {
        let guard = b.read(&seg).unwrap();
        assert_eq!(&*guard, &[7u8; 100][..]);
        let whole = seg.bytes(raw).unwrap();
        assert!(whole.len() >= 40 && whole[..3] == *b"raw");
    }
    assert_eq!(s.to_string(&seg).unwrap(), "durable");
    // Growth moves the buffer: the returned handle is the one to keep.
    let (b2, s2) = seg
        .transaction(|tx| Ok::<_, Error>((b.append(tx, &[8u8; 5000])?, s.set(tx, "short")?)))
        .unwrap();
    assert_ne!(b2, b);
    assert_eq!(s2, s, "fits in place");
    assert_eq!(b2.to_vec(&seg).unwrap().len(), 5100);
    assert!(
        matches!(b.to_vec(&seg), Err(Error::BadHandle { .. })),
        "the old block was freed"
    );
    drop(seg);
    // Power loss right after the durable transaction: the memory image is gone, the
    // disk holds what the checkpoint wrote.
    snap.restore();
    p.lose_power();
    let seg = Segment::open(&p.path, &o).unwrap();
    let root = seg.root_named::<[PBytes; 2]>("buffers").unwrap().unwrap();
    let [b, s] = seg.get_ptr(root).unwrap();
    assert_eq!(b.to_vec(&seg).unwrap(), [7u8; 100]);
    let s: PString = bytemuck::cast(s);
    assert_eq!(s.to_string(&seg).unwrap(), "durable");
}

#[test]
fn byte_keys_and_nested_collections() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &opts(&p, 2 << 20)).unwrap();
    // A map of byte keys to vectors, inside a map of maps.
    let outer = seg
        .transaction(|tx| {
            let outer = PHashMap::<u32, PHashMap<PBytes, PVec<u16>>>::new(tx)?;
            for shard in 0..3u32 {
                let inner = PHashMap::new(tx)?;
                for k in 0..20u16 {
                    let v = PVec::new(tx)?;
                    for x in 0..k {
                        v.push(tx, x * shard as u16)?;
                    }
                    inner.insert(tx, &[shard as u8, k as u8, 0xff][..], v)?;
                }
                outer.insert(tx, &shard, inner)?;
            }
            Ok::<_, Error>(outer)
        })
        .unwrap();
    let tx = seg.begin().unwrap();
    assert_eq!(outer.len(&tx).unwrap(), 3);
    let inner = outer.get(&tx, &2).unwrap().unwrap();
    let v = inner.get(&tx, &[2, 7, 0xff][..]).unwrap().unwrap();
    assert_eq!(
        v.to_vec(&tx).unwrap(),
        (0..7).map(|x| x * 2).collect::<Vec<u16>>()
    );
    assert_eq!(
        inner.get(&tx, &[2, 7][..]).unwrap(),
        None,
        "keys compare by contents"
    );
    let mut keys: Vec<Vec<u8>> = inner
        .iter(&tx)
        .map(|e| e.unwrap().0.get(&tx).unwrap().to_vec())
        .collect();
    keys.sort();
    assert_eq!(keys.len(), 20);
    assert_eq!(keys[0], [2, 0, 0xff]);
    drop(tx);
    // Freeing: the values are the program's, the keys the map's.
    seg.transaction(|tx| {
        let inners: Vec<_> = outer
            .iter(tx)
            .map(|e| e.map(|(_, m)| m))
            .collect::<Result<_, _>>()?;
        for inner in inners {
            let vecs: Vec<_> = inner
                .iter(tx)
                .map(|e| e.map(|(_, v)| v))
                .collect::<Result<_, _>>()?;
            for v in vecs {
                v.free(tx)?;
            }
            inner.free(tx)?;
        }
        outer.free(tx)
    })
    .unwrap();
    assert_eq!(
        seg.heap_stats().unwrap().live_blocks,
        0,
        "{:?}",
        seg.heap_blocks().unwrap()
    );
}

/// A vector's header damaged by a wild store (or crafted): a directory offset near
/// `u64::MAX`, then a directory larger than the heap, then more chunks than the
/// directory holds. Every access reports `HeapCorrupt`, never a panic (the offset of a
/// chunk's entry overflowed before the header was checked).
#[test]
fn a_damaged_vector_header_is_heap_corrupt_not_a_panic() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(1 << 20)).unwrap();
    let v: PVec<u64> = seg
        .transaction(|tx| {
            let v = PVec::new(tx)?;
            for i in 0..100 {
                v.push(tx, i)?;
            }
            Ok::<_, Error>(v)
        })
        .unwrap();
    // The header's words: len, chunks, directory, directory capacity (from offset 8).
    let [len, chunks, dir, cap]: [u64; 4] = seg.get(v.offset() + 8).unwrap();
    assert_eq!(len, 100);
    for damage in [
        [len, chunks, u64::MAX - 7, cap],
        [len, chunks, dir, u64::MAX / 4],
        [len, cap + 1, dir, cap],
    ] {
        seg.transaction(|tx| tx.put(v.offset() + 8, &damage))
            .unwrap();
        for r in [
            seg.transaction(|tx| v.get(tx, 50).map(drop)),
            seg.transaction(|tx| v.push(tx, 7)),
            seg.transaction(|tx| v.pop(tx).map(drop)),
        ] {
            assert!(matches!(r, Err(Error::HeapCorrupt(_))), "{damage:?}: {r:?}");
        }
        seg.transaction(|tx| tx.put(v.offset() + 8, &[len, chunks, dir, cap]))
            .unwrap();
    }
    assert_eq!(seg.transaction(|tx| v.get(tx, 50)).unwrap(), Some(50));
}
