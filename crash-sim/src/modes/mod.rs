//! The fault modes, one module each: they use the harness, the engines and the
//! workloads; `crate::campaign::run` picks one. Power is the kill mode with
//! `CrashModel::Power`; the io mode runs in `threads`.

pub mod compound;
pub mod kill;
pub mod points;
pub mod recovery;
pub mod threads;
pub mod wild;
