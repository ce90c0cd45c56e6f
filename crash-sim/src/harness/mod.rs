//! What every fault mode stands on.

pub mod config;
pub mod ctx;
pub mod maps;
pub mod oracle;
pub mod snapshot;
pub mod thread_acks;
pub mod worker;
