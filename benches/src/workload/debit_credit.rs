//! Debit-credit, TPC-B's shape: each transaction adds a delta to one account, its teller and
//! its branch, and appends a history record.
//!
//! Tables (standard scale): 100,000 accounts, 10,000 tellers, 1,000 branches (100-byte
//! records, balance in the first 8 bytes), a history ring of 65,536 50-byte records, and a
//! 64-byte header holding the history count and the sum of all deltas. As in TPC-B, 85% of
//! transactions pick an account of the teller's own branch. The check verifies that accounts,
//! tellers, branches and the header all sum to the committed deltas, and that the newest
//! history record is the last transaction's.

use anyhow::{ensure, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{get_u64, put_u64, Scale, Workload};
use crate::engine::{Engine, Layout, Table};

const HEADER: usize = 0;
const ACCOUNT: usize = 1;
const TELLER: usize = 2;
const BRANCH: usize = 3;
const HISTORY: usize = 4;

/// Bytes of a history record: txn number, account, teller, branch, delta, filler.
const HISTORY_LEN: usize = 50;

/// The debit-credit workload.
#[derive(Debug)]
pub struct DebitCredit {
    layout: Layout,
    accounts: u64,
    tellers: u64,
    branches: u64,
    history: u64,
    rng: SmallRng,
    committed: u64,
    total: i64,
    last: Option<[u8; HISTORY_LEN]>,
}

impl DebitCredit {
    /// The workload at `scale`.
    pub fn new(scale: Scale) -> DebitCredit {
        let (accounts, tellers, branches, history) = match scale {
            Scale::Standard => (100_000, 10_000, 1_000, 65_536),
            Scale::Tiny => (1_000, 100, 10, 64),
        };
        let layout = Layout::new(vec![
            Table {
                name: "header",
                record_len: 64,
                records: 1,
            },
            Table {
                name: "account",
                record_len: 100,
                records: accounts,
            },
            Table {
                name: "teller",
                record_len: 100,
                records: tellers,
            },
            Table {
                name: "branch",
                record_len: 100,
                records: branches,
            },
            Table {
                name: "history",
                record_len: HISTORY_LEN,
                records: history,
            },
        ]);
        DebitCredit {
            layout,
            accounts,
            tellers,
            branches,
            history,
            rng: SmallRng::seed_from_u64(0x7bc0_0001),
            committed: 0,
            total: 0,
            last: None,
        }
    }

    fn sum(&self, tx: &mut dyn crate::engine::Txn, table: usize, n: u64) -> Result<i64> {
        let mut s = 0i64;
        for r in 0..n {
            s = s.wrapping_add(tx.read_u64(self.layout.offset_of(table, r))? as i64);
        }
        Ok(s)
    }
}

impl Workload for DebitCredit {
    fn name(&self) -> String {
        "debit-credit".into()
    }

    fn layout(&self) -> Layout {
        self.layout.clone()
    }

    fn load(&mut self, _engine: &mut dyn Engine) -> Result<()> {
        // Every balance and the header start at zero, which is what a fresh segment holds.
        Ok(())
    }

    fn run_one(&mut self, engine: &mut dyn Engine) -> Result<()> {
        let teller = self.rng.gen_range(0..self.tellers);
        let branch = teller * self.branches / self.tellers;
        let per_branch = self.accounts / self.branches;
        let account = if self.rng.gen_ratio(85, 100) {
            branch * per_branch + self.rng.gen_range(0..per_branch)
        } else {
            self.rng.gen_range(0..self.accounts)
        };
        let delta: i64 = self.rng.gen_range(-99_999..=99_999);
        let l = &self.layout;
        let mut record = [0u8; HISTORY_LEN];
        let history = self.history;
        engine.transact(&mut |tx| {
            for (table, r) in [(ACCOUNT, account), (TELLER, teller), (BRANCH, branch)] {
                let off = l.offset_of(table, r);
                let balance = tx.read_u64(off)? as i64;
                tx.write_u64(off, balance.wrapping_add(delta) as u64)?;
            }
            let mut head = [0u8; 16];
            tx.read(l.offset_of(HEADER, 0), &mut head)?;
            let count = get_u64(&head, 0);
            put_u64(&mut record, 0, count + 1);
            put_u64(&mut record, 8, account);
            put_u64(&mut record, 16, teller);
            put_u64(&mut record, 24, branch);
            put_u64(&mut record, 32, delta as u64);
            tx.write(l.offset_of(HISTORY, count % history), &record)?;
            put_u64(&mut head, 0, count + 1);
            let total = (get_u64(&head, 8) as i64).wrapping_add(delta);
            put_u64(&mut head, 8, total as u64);
            tx.write(l.offset_of(HEADER, 0), &head)
        })?;
        self.committed += 1;
        self.total = self.total.wrapping_add(delta);
        self.last = Some(record);
        Ok(())
    }

    fn committed(&self) -> u64 {
        self.committed
    }

    fn check(&mut self, engine: &mut dyn Engine) -> Result<()> {
        let mut sums = [0i64; 3];
        let mut head = [0u8; 16];
        let mut newest = [0u8; HISTORY_LEN];
        let this = &*self;
        engine.transact(&mut |tx| {
            sums = [
                this.sum(tx, ACCOUNT, this.accounts)?,
                this.sum(tx, TELLER, this.tellers)?,
                this.sum(tx, BRANCH, this.branches)?,
            ];
            tx.read(this.layout.offset_of(HEADER, 0), &mut head)?;
            let count = get_u64(&head, 0);
            if count > 0 {
                tx.read(
                    this.layout.offset_of(HISTORY, (count - 1) % this.history),
                    &mut newest,
                )?;
            }
            Ok(())
        })?;
        for (name, s) in ["accounts", "tellers", "branches"].iter().zip(sums) {
            ensure!(
                s == self.total,
                "{name} sum to {s}, committed deltas sum to {}",
                self.total
            );
        }
        ensure!(
            get_u64(&head, 0) == self.committed,
            "history count {} != {}",
            get_u64(&head, 0),
            self.committed
        );
        ensure!(
            get_u64(&head, 8) as i64 == self.total,
            "header total differs"
        );
        if let Some(last) = self.last {
            ensure!(
                newest == last,
                "newest history record is not the last transaction's"
            );
        }
        Ok(())
    }
}
