//! The LRVM-vs-Vista benchmark suite.
//!
//! This crate will hold the workloads of Lowell and Chen's evaluation (transaction
//! overhead against size, debit-credit, order-entry) with an adapter per engine (vista,
//! lrvm, and the peers a user would pick instead), and the binary that prints and plots
//! the results.
#![deny(unsafe_code)]
