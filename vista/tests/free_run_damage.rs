//! A damaged free-run descriptor must not let an allocation take pages of a
//! live block (docs/heap.md: damaged metadata is `HeapCorrupt`, "never a block handed
//! out over another").

mod common;

use common::Place;
use vista::{Error, Segment};

const SIZE: u64 = 1600 << 10;
/// Zone 0's first descriptor (page 0's), after the header page.
const DESC0: u64 = 4096;
/// Header line 2: heads of the free-run lists (u32 each, page + 1).
const RUNLISTS: u64 = 128;
/// Zone 0's first data page (after the header page and 4 descriptor pages).
const PAGE0: u64 = 4096 + 4 * 4096;

/// Two 2-page blocks P (pages 0-1) and Q (pages 2-3); P is freed, so a free run of 2
/// pages heads page 0 on run list 1. A stray store makes that run 4 pages long and
/// files it on run list 2. The next 4-page allocation takes the "run" and hands out
/// pages 0..4 - over the live block Q - and zero-fills them without a before-image,
/// so even an abort leaves Q's committed bytes destroyed.
#[test]
fn a_free_run_longer_than_its_gap_never_hands_out_pages_of_a_live_block() {
    let p = Place::new();
    let seg = Segment::open(&p.path, &p.opts(SIZE).undo_log_size(1 << 20)).unwrap();
    let (pp, q) = seg
        .transaction(|tx| {
            let pp = tx.alloc_bytes(8192)?;
            let q = tx.alloc_bytes(8192)?;
            tx.bytes_mut(q)?.fill(0xAB);
            Ok::<_, Error>((pp, q))
        })
        .unwrap();
    assert_eq!(pp.offset(), PAGE0, "layout assumed: P at page 0");
    assert_eq!(q.offset(), PAGE0 + 8192, "layout assumed: Q at page 2");
    seg.transaction(|tx| tx.free(pp)).unwrap();
    assert!(seg.check().unwrap().is_clean());
    let (l1, l2): (u32, u32) = seg
        .read_transaction(|tx| Ok::<_, Error>((tx.get(RUNLISTS + 4)?, tx.get(RUNLISTS + 8)?)))
        .unwrap();
    assert_eq!(
        (l1, l2),
        (1, 0),
        "layout assumed: the 2-page run alone on list 1"
    );
    // The stray stores: n = 4 in page 0's descriptor; the run moved to list 2.
    seg.transaction(|tx| {
        tx.put(DESC0 + 4, &4u32)?;
        tx.put(RUNLISTS + 4, &0u32)?;
        tx.put(RUNLISTS + 8, &1u32)
    })
    .unwrap();

    let mut tx = seg.begin().unwrap();
    let got = tx.alloc_bytes(16384).map(|b| b.offset());
    tx.abort().unwrap();
    let intact = seg
        .read_transaction(|tx| Ok::<_, Error>(tx.bytes(q)?.iter().all(|&b| b == 0xAB)))
        .unwrap();
    match got {
        Err(Error::HeapCorrupt(_)) => {}
        Ok(at) => assert!(
            at + 16384 <= q.offset() || at >= q.offset() + 8192,
            "a 16 KiB block handed out at {at:#x}, over the live block Q at {:#x}; \
             after the abort Q's committed bytes are intact: {intact}",
            q.offset()
        ),
        Err(e) => panic!("unexpected error {e}"),
    }
    assert!(
        intact,
        "an aborted allocation destroyed another live block's bytes"
    );
}
