//! A new segment whose open fails leaves nothing behind: no segment file, no memory
//! image, no journal (the guide: "a refused open writes nothing and creates nothing").
//! A memory image that does not fit the cache directory (`CacheFull`) used to leave the
//! segment file initialised at the refused size, so that every later open, at any size,
//! failed the same way.

mod common;

use common::{tree, Place};
use rio_cache::{Faults, IoFile, IoOp};
use vista::{Error, Segment};

#[test]
fn every_failure_of_a_new_segments_open_leaves_no_file() {
    let counting = Faults::counting();
    {
        let p = Place::new();
        Segment::open(&p.path, &p.opts(1 << 16).faults(counting.clone()))
            .unwrap()
            .close()
            .unwrap();
    }
    let calls = counting.calls();
    let mut left = Vec::new();
    for (n, call) in calls.iter().enumerate() {
        let p = Place::new();
        let opts = p.opts(1 << 16);
        let before = tree(p.dir.path());
        let faults = Faults::counting();
        faults.fail_at(n as u64, libc::ENOSPC);
        let Err(e) = Segment::open(&p.path, &opts.clone().faults(faults.clone())) else {
            continue; // the failure came after the open (in its close's checkpoint)
        };
        if (call.op, call.file) == (IoOp::Allocate, IoFile::Image) {
            assert!(
                matches!(&e, Error::Cache(rio_cache::Error::CacheFull { .. })),
                "{e:?}"
            );
        }
        let after = tree(p.dir.path());
        if after != before {
            left.push(format!(
                "operation {n} ({call}): {e}: left {:?}",
                after.iter().map(|(p, _)| p).collect::<Vec<_>>()
            ));
        }
        // Whatever was left, a new open at another size works.
        Segment::open(&p.path, &opts.clone().size(1 << 15))
            .unwrap_or_else(|e| panic!("operation {n} ({call}): the next open: {e}"))
            .close()
            .unwrap();
    }
    assert!(left.is_empty(), "{left:#?}");
}
