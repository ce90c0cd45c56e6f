//! The engines under test: the contract a campaign drives (`Engine`, an engine's files
//! and promises; `Store`, an open engine) and its adapters, vista and lrvm in its two
//! commit modes. [`engine`] builds one from its [`EngineKind`]: the one place that knows
//! every adapter.

mod engine;
pub(crate) mod lrvm;
pub(crate) mod vista;
pub(crate) mod vista_group;

pub use engine::{
    remove_if_exists, CrashModel, Engine, EngineConfig, EngineKind, Start, State, Store,
};
// The flat layout's `crash_sim::engine::{OpKind, Txn}`.
pub use crate::txn::{OpKind, Txn};

/// Builds the engine `kind` with `cfg`.
pub fn engine(kind: EngineKind, cfg: EngineConfig) -> Box<dyn Engine> {
    match kind {
        EngineKind::Vista => Box::new(vista::VistaEngine::new(cfg)),
        EngineKind::LrvmFlush | EngineKind::LrvmNoFlush => {
            Box::new(lrvm::LrvmEngine::new(kind, cfg))
        }
    }
}
