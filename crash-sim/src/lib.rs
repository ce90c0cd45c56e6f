//! crash-sim: a crash-injection harness.
//!
//! This crate will hold the harness that forks workers running transactions against
//! vista and lrvm, kills them with `SIGKILL` at random moments and at named crash points
//! (during recovery too), simulates power loss and wild writes, and checks that nothing
//! committed is lost and nothing partial survives.
#![deny(unsafe_code)]
