//! The fault modes.

pub mod compound;
pub mod kill;
pub mod points;
pub mod recovery;
pub mod threads;
pub mod wild;
