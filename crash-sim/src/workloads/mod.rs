//! The built-in workloads and what they share.

mod bank;
mod kv;
mod pages;
pub mod workload;

pub use workload::{cycle_seed, mix, op_kind, plan, u64_at, Workload, WorkloadKind};
