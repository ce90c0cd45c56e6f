//! The engines under test, behind one trait, and their adapters.

pub mod engine;
pub(crate) mod lrvm;
pub(crate) mod vista;

pub use engine::{
    engine, remove_if_exists, CrashModel, Engine, EngineConfig, EngineKind, OpKind, Start, State,
    Store, Txn,
};
