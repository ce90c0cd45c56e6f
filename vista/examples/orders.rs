//! Orders in one segment, stock in another, changed together: a `vista::Group` of two
//! segments, where taking an order (record it, take the items from stock) is one
//! transaction across both. Kill it at any instant (or cut the power: the group's
//! checkpoints write both segments back at once) and the two still agree:
//!
//! ```sh
//! cargo run --release -p vista --example orders -- /tmp/shop fill 100000 &
//! sleep 2; kill -9 $!
//! cargo run --release -p vista --example orders -- /tmp/shop verify
//! cargo run --release -p vista --example orders -- /tmp/shop order 3 2
//! cargo run --release -p vista --example orders -- /tmp/shop restock 3 50
//! ```
//!
//! The directory holds `orders.vista`, `stock.vista` and the coordinator `shop.group`.
//! The invariant `verify` checks: for every item, what is in stock plus what was ordered
//! equals what was received.

use std::path::Path;
use std::process::ExitCode;

use vista::{bytemuck, Error, Group, GroupTransaction, PVec, Segment, Transaction};

const ITEMS: usize = 8;
const ORDERS: usize = 0;
const STOCK: usize = 1;

#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Order {
    number: u64,
    item: u64,
    qty: u64,
}

/// The orders segment's root: every order taken, in order.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Orders {
    list: PVec<Order>,
}

/// The stock segment's root: per item, what is on the shelf and what was ever received.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[bytemuck(crate = "vista::bytemuck")]
#[repr(C)]
struct Stock {
    on_hand: [u64; ITEMS],
    received: [u64; ITEMS],
}

/// The list of orders, created on first use.
fn orders(tx: &mut Transaction<'_>) -> Result<PVec<Order>, Error> {
    let root = tx.root_named::<Orders>("shop-orders-v1")?;
    let list = tx.get_ptr(root)?.list;
    if !list.is_null() {
        return Ok(list);
    }
    let list = PVec::new(tx)?;
    tx.get_mut(root)?.list = list;
    Ok(list)
}

/// Takes an order of `qty` of `item` if the stock has it: the stock goes down and the
/// order is recorded, in one transaction across both segments. `false` if out of stock.
fn order(tx: &mut GroupTransaction<'_>, item: usize, qty: u64) -> Result<bool, Error> {
    let stock = tx.on(STOCK)?.root_named::<Stock>("shop-stock-v1")?;
    let shelf = tx.on(STOCK)?.get_mut(stock)?;
    if shelf.on_hand[item] < qty {
        return Ok(false);
    }
    shelf.on_hand[item] -= qty;
    let list = orders(tx.on(ORDERS)?)?;
    let number = list.len(tx.on(ORDERS)?)? + 1;
    list.push(
        tx.on(ORDERS)?,
        Order {
            number,
            item: item as u64,
            qty,
        },
    )?;
    Ok(true)
}

/// Receives `qty` of `item` (the stock segment alone: an ordinary transaction).
fn restock(tx: &mut GroupTransaction<'_>, item: usize, qty: u64) -> Result<(), Error> {
    let stock = tx.on(STOCK)?.root_named::<Stock>("shop-stock-v1")?;
    let shelf = tx.on(STOCK)?.get_mut(stock)?;
    shelf.on_hand[item] += qty;
    shelf.received[item] += qty;
    Ok(())
}

/// Checks that stock and orders agree; prints the totals.
fn verify(shop: &Group) -> Result<bool, Error> {
    let Some(stock) = shop.segment(STOCK).root_named::<Stock>("shop-stock-v1")? else {
        println!("empty shop");
        return Ok(true);
    };
    let stock = shop.segment(STOCK).get_ptr(stock)?;
    let mut ordered = [0u64; ITEMS];
    let mut n = 0;
    if let Some(root) = shop
        .segment(ORDERS)
        .root_named::<Orders>("shop-orders-v1")?
    {
        let list = shop.segment(ORDERS).get_ptr(root)?.list;
        if !list.is_null() {
            let tx = shop.segment(ORDERS).begin()?;
            for o in list.iter(&tx) {
                let o = o?;
                n += 1;
                if o.number != n {
                    println!("order {n} is numbered {}", o.number);
                    return Ok(false);
                }
                ordered[o.item as usize] += o.qty;
            }
        }
    }
    let mut ok = true;
    for (i, ((on_hand, ordered), received)) in stock
        .on_hand
        .iter()
        .zip(&ordered)
        .zip(&stock.received)
        .enumerate()
    {
        if on_hand + ordered != *received {
            println!("item {i}: {on_hand} on hand + {ordered} ordered != {received} received");
            ok = false;
        }
    }
    println!(
        "{n} orders, {} items on hand, {} received: {}",
        stock.on_hand.iter().sum::<u64>(),
        stock.received.iter().sum::<u64>(),
        if ok { "consistent" } else { "INCONSISTENT" }
    );
    Ok(ok)
}

fn open(dir: &Path) -> Result<Group, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::Io {
        context: format!("create {}", dir.display()),
        source: e,
    })?;
    let opts = vista::Options::default().size(64 << 20);
    let members = vec![
        Segment::open(dir.join("orders.vista"), &opts)?,
        Segment::open(dir.join("stock.vista"), &opts)?,
    ];
    Group::open(dir.join("shop.group"), members, &opts)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: orders <dir> order ITEM QTY | restock ITEM QTY | fill N | verify";
    let (Some(dir), Some(cmd)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        return ExitCode::from(2);
    };
    let num = |i: usize| args.get(i).and_then(|a| a.parse::<u64>().ok());
    let run = || -> Result<bool, Error> {
        let shop = open(Path::new(dir))?;
        match (cmd.as_str(), num(2), num(3)) {
            ("order", Some(item), Some(qty)) if (item as usize) < ITEMS => {
                let taken = shop.transaction(|tx| order(tx, item as usize, qty))?;
                println!("{}", if taken { "ordered" } else { "out of stock" });
            }
            ("restock", Some(item), Some(qty)) if (item as usize) < ITEMS => {
                shop.transaction(|tx| restock(tx, item as usize, qty))?;
            }
            ("fill", Some(n), None) => {
                // Orders of pseudo-random items; restock an item when it runs out.
                let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
                for k in 0..n {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let (item, qty) = ((x % ITEMS as u64) as usize, 1 + (x >> 8) % 5);
                    if !shop.transaction(|tx| order(tx, item, qty))? {
                        shop.transaction(|tx| restock(tx, item, 100))?;
                    }
                    if k % 10_000 == 9_999 {
                        shop.checkpoint()?; // both segments on disk, at once
                    }
                }
            }
            ("verify", None, None) => return verify(&shop),
            _ => {
                eprintln!("{usage}");
                return Ok(false);
            }
        }
        shop.close()?;
        Ok(true)
    };
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("orders: {e}");
            ExitCode::FAILURE
        }
    }
}
