//! A small vista application: a ledger of accounts between which transfers move money,
//! and the `crash_sim::app::App` that crash-tests it.
//!
//! Layout of the segment: `applied: u64` (transfers done), then `ACCOUNTS` balances
//! (`i64`). Transfer `k` is a pure function of `k` (accounts and amount), so the state
//! after `applied` transfers is known exactly, and the oracle replays it.
//!
//! A transfer of more than `LIMIT` is refused: its debit is made, then aborted, and only
//! the counter moves on (so the abort path is crash-tested too).
//!
//! [`Ledger::TwoStep`] is the deliberately broken variant: it debits in one transaction
//! and credits in a second, so a crash between the two loses money. [`Ledger::AckFirst`]
//! is broken another way: it acknowledges a transfer before committing it.

use crash_sim::app::{Acks, App, History};
use vista::{Options, Segment};

/// Accounts in the ledger.
pub const ACCOUNTS: u64 = 8;
/// Every account's opening balance.
pub const OPENING: i64 = 1000;
/// Transfers above this amount are refused.
pub const LIMIT: i64 = 90;

/// Which implementation of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ledger {
    /// Debit, credit and counter in one transaction.
    Atomic,
    /// Debit in one transaction, credit and counter in the next: broken.
    TwoStep,
    /// Acknowledges each transfer before it commits: broken.
    AckFirst,
}

fn balance_at(account: u64) -> u64 {
    8 + 8 * account
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Transfer `k`: (from, to, amount).
pub fn transfer(k: u64) -> (u64, u64, i64) {
    let h = mix(k);
    let from = h % ACCOUNTS;
    let to = (from + 1 + (h >> 8) % (ACCOUNTS - 1)) % ACCOUNTS;
    (from, to, 1 + (h >> 16) as i64 % 100)
}

/// The balances after transfers `0..n`.
pub fn balances_after(n: u64) -> Vec<i64> {
    let mut b = vec![OPENING; ACCOUNTS as usize];
    for k in 0..n {
        let (from, to, amount) = transfer(k);
        if amount <= LIMIT {
            b[from as usize] -= amount;
            b[to as usize] += amount;
        }
    }
    b
}

impl Ledger {
    fn transfer(self, seg: &mut Segment, k: u64, durable: bool) -> Result<(), vista::Error> {
        let (from, to, amount) = transfer(k);
        let end = |tx: vista::Transaction<'_>| {
            if durable {
                tx.commit_durable()
            } else {
                tx.commit()
            }
        };
        if amount > LIMIT {
            let mut tx = seg.begin()?;
            let f = tx.get::<i64>(balance_at(from))?;
            tx.put(balance_at(from), &(f - amount))?;
            tx.abort()?;
            let mut tx = seg.begin()?;
            tx.put(0, &(k + 1))?;
            return end(tx);
        }
        match self {
            Ledger::Atomic | Ledger::AckFirst => {
                let mut tx = seg.begin()?;
                let f = tx.get::<i64>(balance_at(from))?;
                let t = tx.get::<i64>(balance_at(to))?;
                tx.put(balance_at(from), &(f - amount))?;
                tx.put(balance_at(to), &(t + amount))?;
                tx.put(0, &(k + 1))?;
                end(tx)
            }
            Ledger::TwoStep => {
                seg.transaction(|tx| {
                    let f = tx.get::<i64>(balance_at(from))?;
                    tx.put(balance_at(from), &(f - amount))
                })?;
                let mut tx = seg.begin()?;
                let t = tx.get::<i64>(balance_at(to))?;
                tx.put(balance_at(to), &(t + amount))?;
                tx.put(0, &(k + 1))?;
                end(tx)
            }
        }
    }
}

impl App for Ledger {
    fn name(&self) -> &str {
        match self {
            Ledger::Atomic => "ledger",
            Ledger::TwoStep => "ledger-two-step",
            Ledger::AckFirst => "ledger-ack-first",
        }
    }

    fn options(&self) -> Options {
        Options::new()
            .size(4096)
            .undo_log_size(4096)
            .lanes(1)
            .writeback(vista::Writeback::Manual)
    }

    fn init(&self, seg: &mut Segment) -> anyhow::Result<()> {
        let mut tx = seg.begin()?;
        tx.put(0, &0u64)?;
        for a in 0..ACCOUNTS {
            tx.put(balance_at(a), &OPENING)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn run(&self, seg: &mut Segment, acks: &mut Acks<'_>) -> anyhow::Result<()> {
        let seed = acks.seed();
        while acks.more() {
            let k = seg.get::<u64>(0)?;
            if *self == Ledger::AckFirst {
                acks.ack(&k.to_le_bytes())?;
                self.transfer(seg, k, false)?;
                continue;
            }
            // Now and then a durable transfer or a checkpoint, so power loss has
            // something to keep.
            match mix(seed ^ k) % 16 {
                0 => {
                    self.transfer(seg, k, true)?;
                    acks.ack_durable(&k.to_le_bytes())?;
                }
                1 => {
                    self.transfer(seg, k, false)?;
                    acks.ack(&k.to_le_bytes())?;
                    seg.checkpoint()?;
                    acks.checkpointed()?;
                }
                _ => {
                    self.transfer(seg, k, false)?;
                    acks.ack(&k.to_le_bytes())?;
                }
            }
        }
        Ok(())
    }

    fn check(&self, seg: &Segment, history: &History) -> Result<(), String> {
        let applied = seg.get::<u64>(0).map_err(|e| e.to_string())?;
        // Every transfer vista promised to keep is there.
        if let Some(last) = history.required().last() {
            let k = u64::from_le_bytes(last[..8].try_into().expect("8 bytes"));
            if applied <= k {
                return Err(format!(
                    "transfer {k} was acknowledged but only {applied} transfers are applied \
                     ({:?} crash)",
                    history.crash()
                ));
            }
        }
        // The balances are exactly those of the transfers applied: nothing partial.
        let want = balances_after(applied);
        for (a, w) in (0..ACCOUNTS).zip(want) {
            let got = seg.get::<i64>(balance_at(a)).map_err(|e| e.to_string())?;
            if got != w {
                let total: i64 = (0..ACCOUNTS)
                    .map(|a| seg.get::<i64>(balance_at(a)).unwrap_or(0))
                    .sum();
                return Err(format!(
                    "account {a} holds {got}, but after {applied} transfers it must hold {w} \
                     (total {total}, opened with {})",
                    OPENING * ACCOUNTS as i64
                ));
            }
        }
        Ok(())
    }
}
