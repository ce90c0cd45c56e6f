//! Order-entry, a TPC-C-like mix of New-Order and Payment (half each) on one warehouse.
//!
//! Tables (standard scale; fixed-size records, numbers little-endian `u64`):
//!
//! | table      | records          | bytes | fields used                          |
//! |------------|------------------|-------|--------------------------------------|
//! | header     | 1                | 64    | history count                        |
//! | warehouse  | 1                | 96    | ytd, tax                             |
//! | district   | 10               | 96    | ytd, next order id, tax              |
//! | customer   | 30,000           | 256   | balance, ytd payment, payments, discount |
//! | item       | 100,000          | 64    | price (read only)                    |
//! | stock      | 100,000          | 128   | quantity, ytd, order count           |
//! | order      | 10 x 1,024 ring  | 32    | id, customer, lines, total           |
//! | order-line | 15 per order     | 64    | item, quantity, amount, order id     |
//! | history    | 16,384 ring      | 48    | customer, district, amount, sequence |
//!
//! New-Order reads the warehouse and district tax, takes and bumps the district's next order
//! id, reads the customer's discount, and for each of 5-15 lines reads the item's price,
//! updates its stock (TPC-C's rule: subtract, add 91 when under 10 would remain) and writes
//! the order line; then it writes the order. Payment adds the amount to the warehouse's and
//! district's year-to-date, updates the customer, and appends to the history. The check
//! verifies TPC-C's consistency conditions that apply here (warehouse ytd = sum of district
//! ytd) plus the workload's own totals (orders, lines, quantities, payments, balances).

use anyhow::{ensure, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::{get_u64, load_table, put_u64, Scale, Workload};
use crate::engine::{Engine, Layout, Table, Txn};

const HEADER: usize = 0;
const WAREHOUSE: usize = 1;
const DISTRICT: usize = 2;
const CUSTOMER: usize = 3;
const ITEM: usize = 4;
const STOCK: usize = 5;
const ORDER: usize = 6;
const ORDER_LINE: usize = 7;
const HISTORY: usize = 8;

const DISTRICTS: u64 = 10;
const MAX_LINES: u64 = 15;

/// The order-entry workload.
#[derive(Debug)]
pub struct OrderEntry {
    layout: Layout,
    customers_per_district: u64,
    items: u64,
    orders_per_district: u64,
    history: u64,
    rng: SmallRng,
    lines: Vec<(u64, u64)>,
    totals: Totals,
    last_order: Option<[u8; 32]>,
}

/// What the committed transactions added up to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Totals {
    committed: u64,
    new_orders: u64,
    order_lines: u64,
    quantity: u64,
    payments: u64,
    paid: u64,
}

fn item_price(i: u64) -> u64 {
    100 + (i * 7919) % 9_900
}

fn initial_quantity(i: u64) -> u64 {
    10 + (i * 31) % 91
}

impl OrderEntry {
    /// The workload at `scale`.
    pub fn new(scale: Scale) -> OrderEntry {
        let (customers_per_district, items, orders_per_district, history) = match scale {
            Scale::Standard => (3_000, 100_000, 1_024, 16_384),
            Scale::Tiny => (30, 1_000, 16, 64),
        };
        let layout = Layout::new(vec![
            Table {
                name: "header",
                record_len: 64,
                records: 1,
            },
            Table {
                name: "warehouse",
                record_len: 96,
                records: 1,
            },
            Table {
                name: "district",
                record_len: 96,
                records: DISTRICTS,
            },
            Table {
                name: "customer",
                record_len: 256,
                records: DISTRICTS * customers_per_district,
            },
            Table {
                name: "item",
                record_len: 64,
                records: items,
            },
            Table {
                name: "stock",
                record_len: 128,
                records: items,
            },
            Table {
                name: "order",
                record_len: 32,
                records: DISTRICTS * orders_per_district,
            },
            Table {
                name: "order-line",
                record_len: 64,
                records: DISTRICTS * orders_per_district * MAX_LINES,
            },
            Table {
                name: "history",
                record_len: 48,
                records: history,
            },
        ]);
        OrderEntry {
            layout,
            customers_per_district,
            items,
            orders_per_district,
            history,
            rng: SmallRng::seed_from_u64(0x07de_0e27),
            lines: Vec::with_capacity(MAX_LINES as usize),
            totals: Totals::default(),
            last_order: None,
        }
    }

    /// Reads `N` consecutive `u64` fields of record `rec` of `table`.
    fn fields<const N: usize>(&self, tx: &mut dyn Txn, table: usize, rec: u64) -> Result<[u64; N]> {
        let mut b = [0u8; 64];
        tx.read(self.layout.offset_of(table, rec), &mut b[..N * 8])?;
        Ok(std::array::from_fn(|i| get_u64(&b, i * 8)))
    }

    /// Writes `v` as consecutive `u64` fields at the start of record `rec` of `table`.
    fn set_fields(&self, tx: &mut dyn Txn, table: usize, rec: u64, v: &[u64]) -> Result<()> {
        let mut b = [0u8; 64];
        for (i, x) in v.iter().enumerate() {
            put_u64(&mut b, i * 8, *x);
        }
        tx.write(self.layout.offset_of(table, rec), &b[..v.len() * 8])
    }

    fn new_order(&mut self, engine: &mut dyn Engine) -> Result<()> {
        let d = self.rng.gen_range(0..DISTRICTS);
        let c =
            d * self.customers_per_district + self.rng.gen_range(0..self.customers_per_district);
        let n = self.rng.gen_range(5..=MAX_LINES);
        self.lines.clear();
        for _ in 0..n {
            self.lines.push((
                self.rng.gen_range(0..self.items),
                self.rng.gen_range(1..=10),
            ));
        }
        let mut order = [0u8; 32];
        let this = &*self;
        engine.transact(&mut |tx| {
            let [_w_ytd, w_tax] = this.fields(tx, WAREHOUSE, 0)?;
            let [_d_ytd, o_id, d_tax] = this.fields(tx, DISTRICT, d)?;
            tx.write_u64(this.layout.offset_of(DISTRICT, d) + 8, o_id + 1)?;
            let [discount] = this.fields(tx, CUSTOMER, c)?;
            let slot = d * this.orders_per_district + o_id % this.orders_per_district;
            let mut total = 0;
            for (line, &(item, qty)) in this.lines.iter().enumerate() {
                let [price] = this.fields(tx, ITEM, item)?;
                let [s_qty, s_ytd, s_cnt] = this.fields(tx, STOCK, item)?;
                let s_qty = if s_qty >= qty + 10 {
                    s_qty - qty
                } else {
                    s_qty + 91 - qty
                };
                this.set_fields(tx, STOCK, item, &[s_qty, s_ytd + qty, s_cnt + 1])?;
                let amount = price * qty;
                total += amount;
                this.set_fields(
                    tx,
                    ORDER_LINE,
                    slot * MAX_LINES + line as u64,
                    &[item, qty, amount, o_id],
                )?;
            }
            let total = total * (100 - discount % 100) * (100 + w_tax + d_tax) / 10_000;
            for (i, v) in [o_id, c, n, total].into_iter().enumerate() {
                put_u64(&mut order, i * 8, v);
            }
            tx.write(this.layout.offset_of(ORDER, slot), &order)
        })?;
        let t = &mut self.totals;
        t.new_orders += 1;
        t.order_lines += n;
        t.quantity += self.lines.iter().map(|l| l.1).sum::<u64>();
        self.last_order = Some(order);
        Ok(())
    }

    fn payment(&mut self, engine: &mut dyn Engine) -> Result<()> {
        let d = self.rng.gen_range(0..DISTRICTS);
        let c =
            d * self.customers_per_district + self.rng.gen_range(0..self.customers_per_district);
        let amount = self.rng.gen_range(100..=500_000);
        let this = &*self;
        engine.transact(&mut |tx| {
            let [w_ytd] = this.fields(tx, WAREHOUSE, 0)?;
            this.set_fields(tx, WAREHOUSE, 0, &[w_ytd + amount])?;
            let [d_ytd] = this.fields(tx, DISTRICT, d)?;
            this.set_fields(tx, DISTRICT, d, &[d_ytd + amount])?;
            let [balance, ytd, count] = this.fields(tx, CUSTOMER, c)?;
            this.set_fields(
                tx,
                CUSTOMER,
                c,
                &[balance.wrapping_sub(amount), ytd + amount, count + 1],
            )?;
            let [seq] = this.fields(tx, HEADER, 0)?;
            this.set_fields(tx, HISTORY, seq % this.history, &[c, d, amount, seq + 1])?;
            this.set_fields(tx, HEADER, 0, &[seq + 1])
        })?;
        self.totals.payments += 1;
        self.totals.paid += amount;
        Ok(())
    }
}

impl Workload for OrderEntry {
    fn name(&self) -> String {
        "order-entry".into()
    }

    fn layout(&self) -> Layout {
        self.layout.clone()
    }

    fn load(&mut self, engine: &mut dyn Engine) -> Result<()> {
        let l = &self.layout;
        load_table(engine, l, WAREHOUSE, |_, r| put_u64(r, 8, 7))?;
        load_table(engine, l, DISTRICT, |d, r| put_u64(r, 16, 5 + d))?;
        load_table(engine, l, CUSTOMER, |c, r| put_u64(r, 24, c % 50))?;
        load_table(engine, l, ITEM, |i, r| put_u64(r, 0, item_price(i)))?;
        load_table(engine, l, STOCK, |i, r| put_u64(r, 0, initial_quantity(i)))
    }

    fn run_one(&mut self, engine: &mut dyn Engine) -> Result<()> {
        if self.rng.gen_bool(0.5) {
            self.new_order(engine)?;
        } else {
            self.payment(engine)?;
        }
        self.totals.committed += 1;
        Ok(())
    }

    fn committed(&self) -> u64 {
        self.totals.committed
    }

    fn check(&mut self, engine: &mut dyn Engine) -> Result<()> {
        let mut found = Totals {
            committed: self.totals.committed,
            ..Totals::default()
        };
        let (mut w_ytd, mut d_ytd, mut c_ytd, mut balance, mut history) = (0, 0, 0, 0u64, 0);
        let mut last_order = [0u8; 32];
        let this = &*self;
        engine.transact(&mut |tx| {
            [w_ytd] = this.fields(tx, WAREHOUSE, 0)?;
            [history] = this.fields(tx, HEADER, 0)?;
            for d in 0..DISTRICTS {
                let [ytd, next] = this.fields(tx, DISTRICT, d)?;
                d_ytd += ytd;
                found.new_orders += next;
            }
            for c in 0..DISTRICTS * this.customers_per_district {
                let [b, ytd, count] = this.fields(tx, CUSTOMER, c)?;
                balance = balance.wrapping_add(b);
                c_ytd += ytd;
                found.payments += count;
            }
            for i in 0..this.items {
                let [_, ytd, count] = this.fields(tx, STOCK, i)?;
                found.quantity += ytd;
                found.order_lines += count;
            }
            if let Some(last) = this.last_order {
                let (o_id, c) = (get_u64(&last, 0), get_u64(&last, 8));
                let slot = c / this.customers_per_district * this.orders_per_district
                    + o_id % this.orders_per_district;
                tx.read(this.layout.offset_of(ORDER, slot), &mut last_order)?;
            }
            Ok(())
        })?;
        let t = self.totals;
        found.paid = w_ytd;
        ensure!(found == t, "tables hold {found:?}, committed {t:?}");
        ensure!(
            d_ytd == w_ytd,
            "warehouse ytd {w_ytd} != sum of district ytd {d_ytd}"
        );
        ensure!(
            c_ytd == w_ytd,
            "customer ytd payments {c_ytd} != warehouse ytd {w_ytd}"
        );
        ensure!(
            balance == 0u64.wrapping_sub(t.paid),
            "customer balances do not sum to minus the payments"
        );
        ensure!(
            history == t.payments,
            "history count {history} != payments {}",
            t.payments
        );
        if let Some(last) = self.last_order {
            ensure!(
                last_order == last,
                "the newest order record is not the last New-Order's"
            );
        }
        Ok(())
    }
}
