//! The built-in workloads, deterministic transaction generators each with its own
//! oracle: bank, kv, pages and xseg. `workload` holds what they share; [`WorkloadKind::build`]
//! (here) is the one place that knows every workload.

mod bank;
mod kv;
mod pages;
mod workload;
pub mod xseg;

pub use workload::{op_kind, plan, u64_at, Workload, WorkloadKind};
// The flat layout's `crash_sim::workload::{cycle_seed, mix}`.
pub use crate::seed::{cycle_seed, mix};

impl WorkloadKind {
    /// The workload.
    pub fn build(self) -> Box<dyn Workload> {
        match self {
            WorkloadKind::Bank => Box::new(bank::Bank),
            WorkloadKind::Kv => Box::new(kv::Kv),
            WorkloadKind::Pages => Box::new(pages::Pages),
            WorkloadKind::Xseg => Box::new(xseg::Xseg),
        }
    }
}
