//! Property test against a `Vec<u8>` model, with reopen and crash steps.
//!
//! The model keeps, per region, the memory the application sees and the committed
//! state. Because `NoFlush` commits may or may not survive a crash, it also keeps every
//! committed state since the last point where durability is certain; after a crash the
//! recovered memory must equal one of them (a prefix of the commits, never a hole and
//! never part of a transaction).

use lrvm::{
    create_log, CommitMode, CreateMode, MapOptions, Options, RegionId, RegionSpec, RestoreMode,
    Rvm, Tid, MIN_LOG_LEN,
};
use proptest::prelude::*;
use std::path::{Path, PathBuf};

const REGION_LEN: usize = 2048;
const SLOTS: usize = 2;

#[derive(Debug, Clone)]
enum Op {
    Begin {
        slot: usize,
        restore: bool,
    },
    Write {
        slot: usize,
        region: usize,
        off: usize,
        len: usize,
        byte: u8,
    },
    Commit {
        slot: usize,
        flush: bool,
    },
    Abort {
        slot: usize,
    },
    Flush,
    Truncate,
    Reopen,
    Crash,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..SLOTS, any::<bool>()).prop_map(|(slot, restore)| Op::Begin { slot, restore }),
        6 => (0..SLOTS, 0..2usize, 0..REGION_LEN, 1..300usize, any::<u8>()).prop_map(
            |(slot, region, off, len, byte)| Op::Write {
                slot,
                region,
                off,
                len: len.min(REGION_LEN - off),
                byte
            }
        ),
        3 => (0..SLOTS, any::<bool>()).prop_map(|(slot, flush)| Op::Commit { slot, flush }),
        1 => (0..SLOTS).prop_map(|slot| Op::Abort { slot }),
        1 => Just(Op::Flush),
        1 => Just(Op::Truncate),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

struct ModelTxn {
    tid: Tid,
    restore: bool,
    ranges: Vec<(usize, usize, usize)>,
    undo: Vec<Vec<u8>>,
}

struct Harness {
    log: PathBuf,
    data: [PathBuf; 2],
    rvm: Option<Rvm>,
    regions: [RegionId; 2],
    /// What the application sees.
    mem: [Vec<u8>; 2],
    /// Committed states since the last certainly-durable one (first element).
    candidates: Vec<[Vec<u8>; 2]>,
    txns: [Option<ModelTxn>; SLOTS],
}

fn open(log: &Path, data: &[PathBuf; 2]) -> (Rvm, [RegionId; 2]) {
    let opts = Options::new(log)
        .flush_buffer_size(4096)
        .emulate_power_loss(true);
    let mut rvm = Rvm::initialize(opts).unwrap();
    let spec = |p: &PathBuf| RegionSpec::new(p, 0, REGION_LEN as u64);
    let a = rvm
        .map(&spec(&data[0]), MapOptions::create_or_extend())
        .unwrap();
    let b = rvm
        .map(&spec(&data[1]), MapOptions::create_or_extend())
        .unwrap();
    (rvm, [a, b])
}

impl Harness {
    fn rvm(&mut self) -> &mut Rvm {
        self.rvm.as_mut().unwrap()
    }

    fn committed(&self) -> [Vec<u8>; 2] {
        self.candidates.last().unwrap().clone()
    }

    fn durable_now(&mut self) {
        let c = self.committed();
        self.candidates = vec![c];
    }

    fn reopen(&mut self) -> [Vec<u8>; 2] {
        let (rvm, regions) = open(&self.log, &self.data);
        self.rvm = Some(rvm);
        self.regions = regions;
        self.txns = [None, None];
        let r = self.rvm.as_ref().unwrap();
        [
            r.region(regions[0]).unwrap().to_vec(),
            r.region(regions[1]).unwrap().to_vec(),
        ]
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match *op {
            Op::Begin { slot, restore } => {
                if self.txns[slot].is_none() {
                    let mode = if restore {
                        RestoreMode::Restore
                    } else {
                        RestoreMode::NoRestore
                    };
                    let tid = self.rvm().begin_transaction(mode).unwrap();
                    self.txns[slot] = Some(ModelTxn {
                        tid,
                        restore,
                        ranges: vec![],
                        undo: vec![],
                    });
                }
            }
            Op::Write {
                slot,
                region,
                off,
                len,
                byte,
            } => {
                let Some(t) = self.txns[slot].as_ref() else {
                    return Ok(());
                };
                let (tid, reg) = (t.tid, self.regions[region]);
                let buf = self
                    .rvm()
                    .set_range(tid, reg, off as u64, len as u64)
                    .unwrap();
                buf.fill(byte);
                let old = self.mem[region][off..off + len].to_vec();
                self.mem[region][off..off + len].fill(byte);
                let t = self.txns[slot].as_mut().unwrap();
                t.ranges.push((region, off, len));
                t.undo.push(old);
            }
            Op::Commit { slot, flush } => {
                let Some(t) = self.txns[slot].take() else {
                    return Ok(());
                };
                let mode = if flush {
                    CommitMode::Flush
                } else {
                    CommitMode::NoFlush
                };
                self.rvm().end_transaction(t.tid, mode).unwrap();
                let mut next = self.committed();
                for &(region, off, len) in &t.ranges {
                    next[region][off..off + len].copy_from_slice(&self.mem[region][off..off + len]);
                }
                self.candidates.push(next);
                if flush {
                    self.durable_now();
                }
            }
            Op::Abort { slot } => {
                let Some(t) = self.txns[slot].take() else {
                    return Ok(());
                };
                if t.restore {
                    self.rvm().abort_transaction(t.tid).unwrap();
                    for (&(region, off, len), old) in t.ranges.iter().zip(&t.undo).rev() {
                        self.mem[region][off..off + len].copy_from_slice(old);
                    }
                } else {
                    prop_assert!(self.rvm().abort_transaction(t.tid).is_err());
                    self.txns[slot] = Some(t);
                }
            }
            Op::Flush => {
                self.rvm().flush().unwrap();
                self.durable_now();
            }
            Op::Truncate => {
                self.rvm().truncate().unwrap();
                self.durable_now();
            }
            Op::Reopen => {
                self.rvm.take().unwrap().close().unwrap();
                self.durable_now();
                let got = self.reopen();
                prop_assert_eq!(&got, &self.candidates[0]);
                self.mem = got;
            }
            Op::Crash => {
                self.rvm.take().unwrap().abandon();
                let got = self.reopen();
                let k = self.candidates.iter().position(|c| *c == got);
                prop_assert!(
                    k.is_some(),
                    "recovered state is not a prefix of the commits"
                );
                self.candidates = vec![got.clone()];
                self.mem = got;
            }
        }
        let r = self.rvm.as_ref().unwrap();
        prop_assert_eq!(r.region(self.regions[0]).unwrap(), &self.mem[0][..]);
        prop_assert_eq!(r.region(self.regions[1]).unwrap(), &self.mem[1][..]);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]
    #[test]
    fn matches_the_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        create_log(&log, MIN_LOG_LEN, CreateMode::CreateNew).unwrap();
        let data = [dir.path().join("a"), dir.path().join("b")];
        let (rvm, regions) = open(&log, &data);
        let zero = vec![0u8; REGION_LEN];
        let mut h = Harness {
            log,
            data,
            rvm: Some(rvm),
            regions,
            mem: [zero.clone(), zero.clone()],
            candidates: vec![[zero.clone(), zero]],
            txns: [None, None],
        };
        for op in &ops {
            h.step(op)?;
        }
    }
}
