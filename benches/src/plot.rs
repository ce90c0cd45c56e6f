//! SVG plots of a report: overhead against transaction size (log-log, like the paper's
//! figure) and throughput bars per workload. Text is laid out by plotters' built-in
//! estimator and left to the SVG viewer's fonts, so no font library is needed.

use std::path::Path;

use anyhow::Result;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;

use crate::suite::Report;

/// Writes `overhead.svg` (when there are synthetic results) and `throughput.svg` into `dir`
/// with file names prefixed by `prefix`; returns the paths written.
///
/// # Errors
/// File or drawing errors.
pub fn write_plots(report: &Report, dir: &Path, prefix: &str) -> Result<Vec<std::path::PathBuf>> {
    let mut written = Vec::new();
    let overhead = dir.join(format!("{prefix}-overhead.svg"));
    if overhead_plot(report, &overhead)? {
        written.push(overhead);
    }
    let throughput = dir.join(format!("{prefix}-throughput.svg"));
    if throughput_plot(report, &throughput)? {
        written.push(throughput);
    }
    Ok(written)
}

fn overhead_plot(report: &Report, path: &Path) -> Result<bool> {
    let series: Vec<(&str, Vec<(f64, f64)>)> = report
        .engines
        .iter()
        .map(|e| {
            let pts = report
                .rows
                .iter()
                .filter(|r| r.engine == e.name)
                .filter_map(|r| Some((r.bytes? as f64, r.sample()?.median_ns)))
                .collect();
            (e.name.as_str(), pts)
        })
        .filter(|(_, pts): &(&str, Vec<_>)| !pts.is_empty())
        .collect();
    if series.is_empty() {
        return Ok(false);
    }
    let all = series.iter().flat_map(|s| s.1.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, 0f64, f64::MAX, 0f64);
    for &(x, y) in all {
        (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
    }
    // The legend gets its own column: with twenty engines it would hide half the lines
    // inside the plot.
    let root = SVGBackend::new(path, (1180, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, legend_area) = root.split_horizontally(940);
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(
            "Transaction overhead vs transaction size (median)",
            ("sans-serif", 22),
        )
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (x0 / 1.5..x1 * 1.5).log_scale(),
            (y0 / 2.0..y1 * 2.0).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("bytes written per transaction")
        .y_desc("ns per transaction")
        .x_label_formatter(&|v| crate::workload::synthetic::human_bytes(v.round() as usize))
        .y_label_formatter(&|v| crate::suite::group(*v))
        .draw()?;
    for (i, (name, pts)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?;
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        let y = 60 + 24 * i as i32;
        legend_area.draw(&PathElement::new(
            vec![(8, y), (36, y)],
            color.stroke_width(3),
        ))?;
        legend_area.draw(&Text::new(
            (*name).to_string(),
            (44, y - 7),
            ("sans-serif", 14),
        ))?;
    }
    root.present()?;
    Ok(true)
}

fn throughput_plot(report: &Report, path: &Path) -> Result<bool> {
    // One panel per table workload, plus the smallest synthetic size.
    let mut panels: Vec<String> = report
        .workloads()
        .into_iter()
        .filter(|w| !w.starts_with("synthetic"))
        .collect();
    if let Some(small) = report
        .rows
        .iter()
        .filter(|r| r.bytes.is_some())
        .min_by_key(|r| r.bytes)
    {
        panels.insert(0, small.workload.clone());
    }
    let panels: Vec<(String, Vec<(String, f64)>)> = panels
        .into_iter()
        .map(|w| {
            let bars = report
                .rows
                .iter()
                .filter(|r| r.workload == w)
                .filter_map(|r| Some((r.engine.clone(), r.sample()?.per_second())))
                .collect();
            (w, bars)
        })
        .filter(|(_, b): &(String, Vec<_>)| !b.is_empty())
        .collect();
    if panels.is_empty() {
        return Ok(false);
    }
    let root = SVGBackend::new(path, (960, 300 * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    for (area, (workload, bars)) in root.split_evenly((panels.len(), 1)).iter().zip(&panels) {
        let lo = bars.iter().map(|b| b.1).fold(f64::MAX, f64::min) / 3.0;
        let hi = bars.iter().map(|b| b.1).fold(0.0, f64::max) * 3.0;
        let n = bars.len() as u32;
        let mut chart = ChartBuilder::on(area)
            .caption(
                format!("{workload}: transactions per second (median)"),
                ("sans-serif", 18),
            )
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(130)
            .build_cartesian_2d((lo..hi).log_scale(), (0..n).into_segmented())?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n as usize)
            .x_label_formatter(&|v| crate::suite::group(*v))
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => bars
                    .get(*i as usize)
                    .map(|b| b.0.clone())
                    .unwrap_or_default(),
                _ => String::new(),
            })
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let i = i as u32;
            let color = Palette99::pick(i as usize).to_rgba();
            Rectangle::new(
                [
                    (lo, SegmentValue::Exact(i)),
                    (*v, SegmentValue::Exact(i + 1)),
                ],
                color.filled(),
            )
        }))?;
    }
    root.present()?;
    Ok(true)
}
