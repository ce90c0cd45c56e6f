//! Vista: undo-only transactions on persistent memory.
//!
//! This crate will hold Lowell and Chen's Vista on top of `rio-cache`: `begin`,
//! `set_range`, `commit` and `abort` over a memory-mapped segment whose memory survives
//! process crashes, with a persistent undo log (no redo log, no truncation), recovery on
//! open, a transactional persistent heap and typed handles.
#![deny(unsafe_code)]
