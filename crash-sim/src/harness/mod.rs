//! What every fault mode stands on, and nothing that knows a mode: the campaign's
//! configuration (`config`) and shared state (`ctx`), snapshots of the engine's files
//! (`snapshot`), the forked worker and its pipe protocol (`worker`, with the threaded
//! worker's acknowledgements in `thread_acks`), the durability rules (`oracle`) and the
//! worker's address space (`maps`).

pub mod config;
pub mod ctx;
pub mod maps;
pub mod oracle;
pub mod snapshot;
pub mod thread_acks;
pub mod worker;
