//! crash-sim: a crash-injection harness for vista and lrvm.
//!
//! It forks worker processes that run transactions against an engine, kills them with a
//! real `SIGKILL` (at random moments, or at every named crash point and hit, also during
//! recovery), simulates power loss and wild stores, reopens, recovers and checks the
//! result against each workload's oracle. Violations come with a command line that
//! replays them. `docs/crash-testing.md` describes the fault model and the oracles.
//!
//! ```no_run
//! use crash_sim::{campaign, EngineKind, Mode, WorkloadKind};
//!
//! # fn main() -> anyhow::Result<()> {
//! let mut cfg = campaign::Config::new(EngineKind::Vista, WorkloadKind::Bank, Mode::Kill);
//! cfg.seconds = 2.0;
//! cfg.seed = 7;
//! let report = campaign::run(cfg)?;
//! assert!(report.violations.is_empty(), "{}", report.table());
//! println!("{} effective kills", report.effective_kills);
//! # Ok(())
//! # }
//! ```
//!
//! The example is `no_run` because it forks: doctests run in a multi-threaded harness,
//! and the campaign wants to fork from a process whose other threads hold no engine
//! files (see [`harness::worker`]). The tests in `tests/` run the `crash-sim` binary instead.
//!
//! # Modes
//! - **kill**: fork, recover, run, `SIGKILL` after a random delay ([`modes::kill`]).
//! - **points**: every crash point, every hit, SQLite-style ([`modes::points`]).
//! - **recovery**: kill recovery at every point, nested to depth 2, sampled at depth 3
//!   ([`modes::recovery`]).
//! - **power**: kill, then cut the power: vista's unsynced disk writes are kept, lost or
//!   torn at random by rio-cache's model ([`modes::kill`] with [`CrashModel::Power`]).
//! - **wild**: stray stores into the engine's memory, with and without protection
//!   ([`modes::wild`]).
//! - **compound** (vista): sequences of kills and power cuts, each with an exact oracle
//!   ([`modes::compound`]).
//! - **io** (vista): one injected I/O failure per worker, through the threaded worker.
//!
//! With `--threads N` (vista, bank and kv, kill, power and io modes) each worker runs N
//! threads of transactions on one segment, and the oracle accepts exactly the states a
//! serial order of the committed transactions explains ([`modes::threads`]).
//!
//! [`app`] runs the kill, power, points and recovery modes against a user's own vista
//! application (its workload, its acknowledgements, its oracle), with the same report.
//! [`exec`] crash-tests any program (`crash-sim exec`): kill, check with a shell
//! command, repeat.
//!
//! [`selftest`] runs campaigns against deliberately broken engines (feature `mutants`)
//! and fails if one survives.
//!
//! # Layout
//! Each folder is one layer; a module imports only from the layers below it, never from
//! a sibling that imports it back.
//!
//! ```text
//! campaign.rs      run(): picks the mode              (top: the `crash-sim run` entry)
//! app/             a user's vista application: the App contract, its acknowledgement
//!                  channel, the history its oracle sees, its forked child, its modes;
//!                  heap.rs, the persistent-heap workload written as an App
//! exec.rs          crash-sim exec: any program, killed with its process group
//! selftest.rs      the mutants and the campaigns that must catch them
//! cli.rs           the options every campaign shares
//! modes/           kill (and power), points, recovery, wild, compound;
//!                  threads/: the threaded workloads, worker, oracle and cycles (io too)
//! harness/         what every mode stands on: config (Config, Mode), ctx (Ctx, a running
//!                  campaign), snapshot, worker (fork, pipe protocol, the child's loop),
//!                  thread_acks, oracle (the durability rules), maps (/proc/self/maps)
//! engines/         the Engine / Store contract; the vista and lrvm adapters
//! workloads/       the Workload contract; bank, kv, pages, xseg
//! txn.rs seed.rs   OpKind and Txn, which workloads make and engines run; SplitMix64
//! report.rs        the report every layer fills in
//! sys.rs           the one unsafe room
//! ```
//!
//! The flat layout's paths stay valid: `crash_sim::engine` and `crash_sim::workload`
//! name [`engines`] and [`workloads`]; `crash_sim::{kill, points, recovery, wild,
//! compound, threads}` the modes; `crash_sim::{worker, oracle, maps}` the harness's
//! modules; `crash_sim::heap` is [`app::heap`]; `crash_sim::campaign` still exports
//! `Config`, `Mode`, `Ctx` and `Snapshot`.
//!
//! # Unsafe code
//! Only in `sys`: `fork` and `_exit` (process control otherwise goes through nix's safe
//! wrappers) and the deliberate wild store of the wild mode; the crate root denies
//! `unsafe_code`.
//!
//! # Dependencies
//! - `vista`, `rio-cache`, `lrvm`: the engines under test, built with their
//!   `crash-points` features because the points and recovery modes arm named points.
//! - `crash-point`: arms a point in a freshly forked worker (`crash_point::arm`).
//! - `nix`: fork, kill, killpg, waitpid, pipe2, poll in `sys` (safe wrappers, except
//!   `fork`).
//! - `libc`: `_exit` (nix has none) and the signal numbers of exit statuses.
//! - `rand`: seeded, reproducible delays, points and faults (`SmallRng`).
//! - `clap`: the command line.
//! - `indicatif`: the progress bar of long campaigns (drawn from the campaign thread, no
//!   ticker thread, so forking stays safe).
//! - `serde`, `serde_json`: the `--json` report.
//! - `anyhow`: harness errors (engines keep their typed errors; crash-sim only reports).
//! - `tempfile`: the work directory on `/dev/shm`.
#![deny(unsafe_code)]

pub mod app;
pub mod campaign;
pub mod cli;
pub mod engines;
pub mod exec;
pub mod harness;
pub mod modes;
pub mod report;
pub mod seed;
pub mod selftest;
mod sys;
pub mod txn;
pub mod workloads;

// The paths of the flat layout, kept for callers (examples, tests, other crates).
pub use app::heap;
pub use engines as engine;
pub use harness::{maps, oracle, worker};
pub use modes::{compound, kill, points, recovery, threads, wild};
pub use workloads as workload;

pub use campaign::{Config, Mode};
pub use engines::{CrashModel, EngineKind};
pub use report::Report;
pub use sys::{Exit, WildStore};
pub use workloads::WorkloadKind;
