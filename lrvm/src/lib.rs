//! Lightweight Recoverable Virtual Memory.
//!
//! This crate will hold a faithful implementation of LRVM (Satyanarayanan et al., SOSP
//! 1993): mapped regions backed by external data segment files, transactions with
//! restore and no-restore modes, a redo log with flush and no-flush commits, epoch
//! truncation and crash recovery. It is the baseline Vista is measured against.
#![deny(unsafe_code)]
