//! The scaling figure: transactions per second against threads, one panel per shape, one
//! line per engine, drawn with the suite's plotting code ([`crate::plot`]) as SVG and PNG.

use std::path::{Path, PathBuf};

use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::table::{thousands, ScaleRow};
use crate::plot::{colour, decades, grey, plot_font, render, text, Chart, FigureKind};

/// The role colour of each engine ([`crate::plot`]'s palette: vista as "Vista,
/// unprotected", PMDK, LMDB and SQLite as in the suite's figures; `pmdk-object` takes the
/// floor's dark grey, which this figure does not use, and `vista-mutex` a spare).
fn engine_colour(engine: &str) -> RGBColor {
    colour(match engine {
        "vista" => 1,
        "pmdk-global" => 4,
        "lmdb" => 5,
        "sqlite-wal" => 6,
        "vista-mutex" => 8,
        "pmdk-object" => 7,
        _ => 9,
    })
}

struct ScaleChart<'a> {
    rows: &'a [ScaleRow],
    footer: &'a str,
}

impl ScaleChart<'_> {
    fn engines(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for r in self.rows {
            if !v.contains(&r.engine.as_str()) {
                v.push(&r.engine);
            }
        }
        v
    }

    fn shapes(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for r in self.rows {
            if !v.contains(&r.shape.as_str()) {
                v.push(&r.shape);
            }
        }
        v
    }
}

impl Chart for ScaleChart<'_> {
    fn size(&self) -> (u32, u32) {
        (1300, 620)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (root, foot) = root.split_vertically(self.size().1 - 24);
        foot.draw(&Text::new(self.footer.to_string(), (12, 4), grey(12)))?;
        let (plots, legend) = root.split_horizontally(1100);
        let shapes = self.shapes();
        let panels = plots.split_evenly((1, shapes.len().max(1)));
        let ys = self.rows.iter().map(|r| r.summary.tps).filter(|v| *v > 0.0);
        let lo = ys.clone().fold(f64::MAX, f64::min) / 1.5;
        let hi = ys.fold(1.0, f64::max) * 1.5;
        let mut threads: Vec<f64> = self.rows.iter().map(|r| r.threads as f64).collect();
        threads.sort_by(f64::total_cmp);
        threads.dedup();
        let (x0, x1) = (
            threads.first().copied().unwrap_or(1.0),
            threads.last().copied().unwrap_or(2.0),
        );
        for (panel, shape) in panels.iter().zip(&shapes) {
            let mut chart = ChartBuilder::on(panel)
                .caption(
                    format!("debit-credit, {shape}: transactions per second (median)"),
                    text(17),
                )
                .margin(14)
                .x_label_area_size(46)
                .y_label_area_size(80)
                .build_cartesian_2d(
                    (x0 / 1.3..x1 * 1.3)
                        .log_scale()
                        .with_key_points(threads.clone()),
                    (lo..hi).log_scale().with_key_points(decades(lo, hi)),
                )?;
            chart
                .configure_mesh()
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(225, 225, 225))
                .x_desc("threads")
                .x_label_formatter(&|v| format!("{}", v.round()))
                .y_label_formatter(&|v| thousands(*v))
                .label_style(text(13))
                .axis_desc_style(text(14))
                .draw()?;
            for engine in self.engines() {
                let points: Vec<(f64, f64)> = self
                    .rows
                    .iter()
                    .filter(|r| r.engine == engine && r.shape == *shape && r.summary.tps > 0.0)
                    .map(|r| (r.threads as f64, r.summary.tps))
                    .collect();
                let c = engine_colour(engine);
                chart.draw_series(LineSeries::new(
                    points.iter().copied(),
                    Color::stroke_width(&c, 3),
                ))?;
                chart.draw_series(points.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
            }
        }
        for (i, engine) in self.engines().iter().enumerate() {
            let y = 80 + 30 * i as i32;
            let c = engine_colour(engine);
            legend.draw(&PathElement::new(
                vec![(10, y), (44, y)],
                Color::stroke_width(&c, 4),
            ))?;
            legend.draw(&Circle::new((27, y), 4, c.filled()))?;
            legend.draw(&Text::new(
                (*engine).to_string(),
                (54, y),
                text(14).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}

/// Draws the scaling figure of `rows` into `dir` as `threads-scale.svg` and `.png`;
/// returns their paths, or why nothing was drawn (no font).
///
/// # Errors
/// File or drawing errors.
pub fn write_scale(
    rows: &[ScaleRow],
    dir: &Path,
    footer: &str,
) -> Result<std::result::Result<(PathBuf, PathBuf), String>> {
    let font = match plot_font()? {
        Ok(font) => font,
        Err(why) => return Ok(Err(why)),
    };
    let chart = ScaleChart { rows, footer };
    let fig = render(
        &chart,
        &font,
        dir,
        "threads-scale",
        FigureKind::Workload("threads".into()),
    )?;
    Ok(Ok((fig.svg, fig.png)))
}
