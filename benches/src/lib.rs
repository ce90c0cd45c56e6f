//! The LRVM-vs-Vista benchmark suite.
//!
//! Lowell and Chen (SOSP 1997) measured transaction overhead against transaction size and
//! throughput on debit-credit (TPC-B-like) and order-entry (TPC-C-like). This crate runs
//! those workloads ([`workload`]) on every engine through one trait ([`engine::Engine`]),
//! times them ([`measure`]), and reports medians, ratios, JSON, a Markdown report and SVG and
//! PNG figures ([`suite`], [`report`], [`plot`]; what a figure is, in [`figure`]). The binary
//! is `cargo run --release -p benches -- quick`; see `docs/benchmarks.md`.
//!
//! Engines ([`registry::engines`] lists them; its docs say how to add one):
//! - [`floor`]: the least work an undo-logging engine must do, with no guard, an `mprotect`
//!   guard, or a protection-key guard (only where `pkey_alloc` works).
//! - [`lmdb`]: LMDB (write-map; no-sync and sync).
//! - [`sqlite`]: SQLite (WAL; `synchronous` OFF and FULL).
//! - `pmdk` (feature `pmdk`): PMDK's libpmemobj, pool on `/dev/shm`.
//! - [`vista`]: the project's Vista (no guard, `mprotect`, the alias, protection keys
//!   where available), memory image on `/dev/shm`.
//! - [`lrvm`]: the project's LRVM, restore/no-restore x flush/no-flush, files on disk
//!   (`rvm-*`) or on `/dev/shm` (`rvm-rio-*`, the paper's RVM on Rio).
//!
//! ```
//! use benches::engine::Layout;
//! use benches::registry::{engines, OpenOptions};
//! use benches::workload::{synthetic::Synthetic, Workload};
//!
//! let spec = &engines(&["floor-noguard".to_string()])?[0];
//! let mut w = Synthetic::new(1 << 20, 64);
//! let scratch = std::env::temp_dir();
//! let mut engine = spec.open(OpenOptions { layout: &w.layout(), scratch: &scratch })?;
//! for _ in 0..100 {
//!     w.run_one(engine.as_mut())?;
//! }
//! w.check(engine.as_mut())?; // the data is really there
//! # Ok::<(), anyhow::Error>(())
//! ```
//!
//! [`threads`] runs debit-credit from many threads at once (vista, and PMDK, LMDB and SQLite
//! with the locking a user of each would need) for the `threads` binary:
//! `cargo run --release -p benches --bin threads`.
//!
//! [`ycsb`] runs YCSB's core workloads A, B and C (uniform and Zipfian keys) on vista's
//! persistent hash map and on LMDB, SQLite, PMDK, redb and sled, for the `ycsb` binary:
//! `cargo run --release -p benches --features pmdk --bin ycsb`.
//!
//! Errors are `anyhow::Error` throughout: this crate is a harness whose only users are its
//! own binary, tests and criterion benches, and every error ends up printed in a report.
//!
//! Why each dependency is here: `vista` and `lrvm` (the engines under comparison),
//! `rio-cache` (to remove vista's memory images after a run, and to ask what
//! `Protection::Auto` resolves to here), `heed` (LMDB, builds LMDB's C source), `rusqlite`
//! with `bundled` (SQLite, builds the amalgamation), `redb` and `sled` (the pure-Rust
//! embedded stores a Rust user would pick instead, YCSB only; cargo builds both),
//! `plotters`, `plotters-backend` and `ab_glyph`
//! (SVG and PNG figures; text drawn from a TrueType font read at run time, so nothing links
//! against fontconfig), `libc` (mmap, mprotect, pkeys in
//! [`sys`]), `rand` (workload generators), `serde`/`serde_json` (the JSON results), `clap`
//! (the binary's options), `tempfile` (per-run database directories), `anyhow` (errors);
//! `criterion` (dev) for the micro-benchmarks. Unsafe code lives only in [`sys`].
#![deny(unsafe_code)]

pub mod engine;
pub mod figure;
pub mod floor;
pub mod lmdb;
pub mod lrvm;
pub mod machine;
pub mod measure;
pub mod plot;
#[cfg(feature = "pmdk")]
pub mod pmdk;
pub mod records;
pub mod registry;
pub mod report;
pub mod sqlite;
pub mod suite;
pub mod sys;
pub mod threads;
pub mod vista;
pub mod workload;
pub mod ycsb;
