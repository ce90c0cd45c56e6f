//! What every fault mode stands on.

pub mod maps;
pub mod oracle;
pub mod worker;
