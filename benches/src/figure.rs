//! What the report's figures are: their kinds and the files they were written to.
//!
//! [`crate::plot`] draws them and [`crate::report`] places them in the report; both
//! name them through this module, so neither depends on the other for it.

use std::path::PathBuf;

/// What a figure shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FigureKind {
    /// RVM on disk -> RVM on Rio -> Vista, with the paper's factors.
    Paper,
    /// Time per transaction against its size (synthetic workload).
    Sizes,
    /// The charted engines on one workload case.
    Workload(String),
}

/// One figure written to disk.
#[derive(Debug, Clone)]
pub struct Figure {
    /// What it shows.
    pub kind: FigureKind,
    /// The SVG file.
    pub svg: PathBuf,
    /// The PNG file.
    pub png: PathBuf,
}

/// The figures of one run, or why none were drawn.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Written figures.
    pub figures: Vec<Figure>,
    /// Why no figure was drawn (no font), if so.
    pub not_drawn: Option<String>,
}
