//! The report's figures, each as SVG and PNG: per workload a bar chart of the charted
//! engines ([`Report::picks`]), the paper's central comparison ([`Report::paper`]), and time
//! against transaction size. Which engines appear is decided in [`crate::report`], never
//! here; colours follow the role, so an engine keeps its colour in every figure.
//!
//! Text is laid out and drawn by ab_glyph from a TrueType font found on the system
//! ([`FONT_PATHS`], or the file named by `$BENCH_PLOT_FONT`). Without one, no figure is
//! drawn and the report says why; the tables and JSON do not depend on it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ab_glyph::{point, Font, FontRef, ScaleFont};
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters_backend::{
    BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind, FontTransform,
};

pub use crate::figure::{Figure, FigureKind, Figures};
use crate::report::{factor, human_ns, Headline, PaperCase, Pick, DEFAULT_ROLE};
use crate::suite::Report;
use crate::workload::synthetic::human_bytes;

/// Where a TrueType sans-serif font is looked for (Debian and Ubuntu's fonts-dejavu-core,
/// Fedora, Arch, Liberation), after `$BENCH_PLOT_FONT`.
pub const FONT_PATHS: [&str; 5] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Colours of the roles, in [`crate::report::roles`] order: distinct hues that read on
/// white (after Okabe and Ito's palette for colour-blind readers, darkened where it was too
/// light).
const COLOURS: [RGBColor; 10] = [
    RGBColor(0, 90, 181),    // Vista, default guard: blue
    RGBColor(86, 180, 233),  // Vista, unprotected: sky blue
    RGBColor(117, 112, 179), // Vista, mprotect guard: purple
    RGBColor(230, 159, 0),   // RVM on Rio: orange
    RGBColor(213, 94, 0),    // RVM on disk: vermillion
    RGBColor(0, 158, 115),   // PMDK: green
    RGBColor(204, 121, 167), // LMDB: pink
    RGBColor(140, 86, 75),   // SQLite: brown
    RGBColor(80, 80, 80),    // floor: dark grey
    RGBColor(27, 158, 119),  // spare: teal
];

pub(crate) fn colour(role: usize) -> RGBColor {
    COLOURS[role % COLOURS.len()]
}

fn font() -> &'static std::result::Result<&'static [u8], String> {
    static FONT: OnceLock<std::result::Result<&'static [u8], String>> = OnceLock::new();
    FONT.get_or_init(|| {
        let env = std::env::var_os("BENCH_PLOT_FONT").map(PathBuf::from);
        let path = env
            .iter()
            .cloned()
            .chain(FONT_PATHS.iter().map(PathBuf::from))
            .find(|p| p.is_file())
            .ok_or_else(|| {
                format!(
                    "no TrueType font found (looked at $BENCH_PLOT_FONT and {}; Debian: apt-get install fonts-dejavu-core)",
                    FONT_PATHS.join(", ")
                )
            })?;
        let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // The font registry wants 'static bytes; one font, loaded once per process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font("sans-serif", style, bytes)
                .map_err(|_| format!("{}: not a usable TrueType font", path.display()))?;
        }
        Ok(bytes)
    })
}

/// Draws every figure of `report` into `dir` as `<prefix>-<what>.svg` and `.png`.
///
/// # Errors
/// File or drawing errors. A missing font is not an error: it is returned in
/// [`Figures::not_drawn`].
pub fn write_plots(report: &Report, dir: &Path, prefix: &str) -> Result<Figures> {
    let font = match plot_font()? {
        Ok(font) => font,
        Err(why) => {
            return Ok(Figures {
                figures: Vec::new(),
                not_drawn: Some(why),
            })
        }
    };
    let footer = format!(
        "{} run; {}, {} cores; load average {:.2} at start, {:.2} at end{}",
        report.plan.mode,
        report.machine.cpu,
        report.machine.cores,
        report.machine.load_start,
        report.machine.load_end,
        if report.machine.load_warning.is_some() {
            " (busy machine: see the report's warning)"
        } else {
            ""
        }
    );
    let mut figures = Vec::new();
    let cases = report.paper();
    if let Some(headline) = report.headline() {
        let chart = PaperChart {
            cases: &cases,
            headline: &headline,
            roles: &report.roles(),
            footer: &footer,
        };
        figures.push(render(
            &chart,
            &font,
            dir,
            &format!("{prefix}-paper"),
            FigureKind::Paper,
        )?);
    }
    for w in report.workloads() {
        let picks = report.picks(&w);
        if picks.is_empty() {
            continue;
        }
        let chart = BarChart {
            workload: &w,
            picks: &picks,
            footer: &footer,
        };
        let stem = format!("{prefix}-{}", slug(&w));
        figures.push(render(
            &chart,
            &font,
            dir,
            &stem,
            FigureKind::Workload(w.clone()),
        )?);
    }
    let sizes = SizeChart::new(report, &footer);
    if sizes.lines.iter().any(|l| l.points.len() > 1) {
        figures.push(render(
            &sizes,
            &font,
            dir,
            &format!("{prefix}-sizes"),
            FigureKind::Sizes,
        )?);
    }
    Ok(Figures {
        figures,
        not_drawn: None,
    })
}

/// The figures' font, registered with plotters, or why there is none (`Ok(Err(why))`).
///
/// # Errors
/// A font that was found and registered but does not parse.
pub(crate) fn plot_font() -> Result<std::result::Result<FontRef<'static>, String>> {
    match font() {
        Ok(bytes) => Ok(Ok(FontRef::try_from_slice(bytes).map_err(|e| {
            anyhow!("the plot font was registered but does not parse: {e}")
        })?)),
        Err(why) => Ok(Err(why.clone())),
    }
}

/// `synthetic 8B` -> `synthetic-8B`: a file-name-safe workload name.
fn slug(w: &str) -> String {
    w.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect()
}

/// A figure that can be drawn on any backend.
pub(crate) trait Chart {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static;
}

pub(crate) fn render<C: Chart>(
    chart: &C,
    font: &FontRef<'static>,
    dir: &Path,
    stem: &str,
    kind: FigureKind,
) -> Result<Figure> {
    let svg = dir.join(format!("{stem}.svg"));
    let png = dir.join(format!("{stem}.png"));
    {
        let root = SVGBackend::new(&svg, chart.size()).into_drawing_area();
        chart.draw(&root)?;
        root.present()?;
    }
    {
        let root = Glyphs {
            inner: BitMapBackend::new(&png, chart.size()),
            font: font.clone(),
        }
        .into_drawing_area();
        chart.draw(&root)?;
        root.present()
            .map_err(|e| anyhow!("{}: {e}", png.display()))?;
    }
    Ok(Figure { kind, svg, png })
}

/// The width in pixels of `s` drawn at `size` in the figures' font (an estimate of
/// 0.6 em per character where there is no font: then no figure is drawn anyway).
fn text_width(s: &str, size: u32) -> u32 {
    let Ok(Ok(font)) = plot_font() else {
        return (s.chars().count() as u32 * size * 3).div_ceil(5);
    };
    #[allow(clippy::cast_precision_loss)] // a font size in pixels
    let font = font.as_scaled(size as f32);
    let mut width = 0f32;
    let mut prev = None;
    for c in s.chars() {
        let id = font.glyph_id(c);
        if let Some(p) = prev {
            width += font.kern(p, id);
        }
        width += font.h_advance(id);
        prev = Some(id);
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // a few hundred pixels
    let px = width.ceil() as u32;
    px
}

/// Horizontal bar charts: the plot area's width besides the labels.
const BAR_PLOT_WIDTH: u32 = 560;

pub(crate) fn text(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

pub(crate) fn grey(size: u32) -> TextStyle<'static> {
    ("sans-serif", size)
        .into_font()
        .color(&RGBColor(90, 90, 90))
}

/// Powers of ten (and 3x them when the range is short) inside `lo..hi`: the log axis ticks.
pub(crate) fn decades(lo: f64, hi: f64) -> Vec<f64> {
    let mut v = Vec::new();
    let mut d = 10f64.powf(lo.log10().floor());
    while d <= hi {
        for (m, always) in [(1.0, true), (3.0, false)] {
            let x = d * m;
            if x >= lo && x <= hi && (always || hi / lo < 1e4) {
                v.push(x);
            }
        }
        d *= 10.0;
    }
    v
}

/// Per workload: one horizontal bar per charted engine, fastest on top, log scale, the
/// time printed at the end of each bar.
struct BarChart<'a> {
    workload: &'a str,
    picks: &'a [Pick<'a>],
    footer: &'a str,
}

impl BarChart<'_> {
    /// An engine's label on the y axis.
    fn label(pick: &Pick<'_>) -> String {
        format!("{} ({})", pick.label, pick.engine)
    }

    /// Room for the longest label (at least the 330 pixels the figures always had).
    fn label_area(&self) -> u32 {
        let widest = self
            .picks
            .iter()
            .map(|p| text_width(&Self::label(p), 14))
            .max()
            .unwrap_or(0);
        (widest + 24).max(330)
    }
}

impl Chart for BarChart<'_> {
    fn size(&self) -> (u32, u32) {
        (
            self.label_area() + BAR_PLOT_WIDTH,
            110 + 44 * self.picks.len() as u32,
        )
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (root, foot) = root.split_vertically(self.size().1 - 24);
        foot.draw(&Text::new(self.footer.to_string(), (12, 4), grey(12)))?;
        let mut bars: Vec<&Pick<'_>> = self.picks.iter().collect();
        bars.sort_by(|a, b| a.sample.median_ns.total_cmp(&b.sample.median_ns));
        let lo = bars.first().map_or(1.0, |b| b.sample.median_ns) / 4.0;
        let hi = bars.last().map_or(10.0, |b| b.sample.median_ns) * 6.0;
        let n = bars.len() as u32;
        let labels: Vec<String> = bars.iter().map(|b| Self::label(b)).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(
                format!(
                    "{}: time per transaction (median; shorter is faster)",
                    self.workload
                ),
                text(19),
            )
            .margin(12)
            .margin_right(24)
            .x_label_area_size(30)
            .y_label_area_size(self.label_area())
            .build_cartesian_2d(
                (lo..hi).log_scale().with_key_points(decades(lo, hi)),
                // Integer ranges are inclusive here: 0..n-1 is n slots.
                (0..n.saturating_sub(1)).into_segmented(),
            )?;
        chart
            .configure_mesh()
            .disable_y_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .y_labels(n as usize)
            .x_label_formatter(&|v| human_ns(*v))
            // Fastest at the top: slot 0 is drawn at the bottom.
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) if *i < n => labels[(n - 1 - i) as usize].clone(),
                _ => String::new(),
            })
            .label_style(text(14))
            .draw()?;
        for (i, b) in bars.iter().enumerate() {
            let slot = n - 1 - i as u32;
            let v = b.sample.median_ns;
            let mut bar = Rectangle::new(
                [
                    (lo, SegmentValue::Exact(slot)),
                    (v, SegmentValue::Exact(slot + 1)),
                ],
                colour(b.role).filled(),
            );
            bar.set_margin(5, 5, 0, 0);
            chart.draw_series(std::iter::once(bar))?;
            chart.draw_series(std::iter::once(Text::new(
                human_ns(v),
                (v * 1.12, SegmentValue::CenterOf(slot)),
                text(14).pos(Pos::new(HPos::Left, VPos::Center)),
            )))?;
        }
        Ok(())
    }
}

/// The paper's central figure: per case, RVM on disk, RVM on Rio and Vista (the default
/// engine) as bars on a shared log scale, with the measured factors and the paper's written
/// beside them, and the headline below.
struct PaperChart<'a> {
    cases: &'a [PaperCase],
    headline: &'a Headline,
    roles: &'a [crate::report::Role],
    footer: &'a str,
}

impl Chart for PaperChart<'_> {
    fn size(&self) -> (u32, u32) {
        (380 * self.cases.len() as u32 + 60, 600)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (w, h) = self.size();
        let root = root.titled(
            "RVM on disk → RVM on the Rio cache → Vista: time per transaction (median)",
            text(20),
        )?;
        let (body, foot) = root.split_vertically(h - 84);
        foot.draw(&Text::new(
            format!(
                "Factors: how many times faster, measured here; the paper's (Lowell and Chen, SOSP 1997) where it gives one. Vista = {} (the default guard here).",
                self.headline.vista
            ),
            (12, 6),
            grey(12),
        ))?;
        foot.draw(&Text::new(
            format!("Headline: {}.", self.headline.short()),
            (12, 26),
            grey(12),
        ))?;
        foot.draw(&Text::new(self.footer.to_string(), (12, 46), grey(12)))?;
        let (_, body) = body.split_horizontally(20);
        let (body, _) = body.split_horizontally(w - 40);
        let all = self.cases.iter().flat_map(|c| [c.disk, c.rio, c.vista]);
        let lo = all.clone().fold(f64::MAX, f64::min) / 3.0;
        let hi = all.fold(0.0, f64::max) * 4.0;
        let role = |label: &str| {
            self.roles
                .iter()
                .position(|r| r.label == label)
                .unwrap_or(0)
        };
        let bars = [
            ("RVM on disk", role("RVM on disk")),
            ("RVM on Rio", role("RVM on Rio")),
            ("Vista", role(DEFAULT_ROLE)),
        ];
        for (area, c) in body
            .split_evenly((1, self.cases.len()))
            .iter()
            .zip(self.cases)
        {
            let title = if c.workload.starts_with("synthetic") {
                format!("small transactions ({})", c.workload)
            } else {
                c.workload.clone()
            };
            // Title and factors above the plot, so no bar can run into them.
            let (head, plot) = area.split_vertically(100);
            let (head_w, _) = head.dim_in_pixel();
            #[allow(clippy::cast_possible_wrap)] // a few hundred pixels
            let mid = head_w as i32 / 2 + 30;
            head.draw(&Text::new(
                title,
                (mid, 6),
                text(17).pos(Pos::new(HPos::Center, VPos::Top)),
            ))?;
            let mut chart = ChartBuilder::on(&plot)
                .margin(10)
                .x_label_area_size(30)
                .y_label_area_size(62)
                .build_cartesian_2d(
                    (0u32..2).into_segmented(),
                    (lo..hi).log_scale().with_key_points(decades(lo, hi)),
                )?;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .light_line_style(WHITE)
                .bold_line_style(RGBColor(225, 225, 225))
                .x_labels(3)
                .x_label_formatter(&|v| match v {
                    SegmentValue::CenterOf(i) => bars
                        .get(*i as usize)
                        .map_or(String::new(), |b| b.0.to_string()),
                    _ => String::new(),
                })
                .y_label_formatter(&|v| human_ns(*v))
                .label_style(text(13))
                .draw()?;
            let values = [c.disk, c.rio, c.vista];
            for (i, (v, (_, role))) in values.iter().zip(bars).enumerate() {
                let i = i as u32;
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(i), lo),
                        (SegmentValue::Exact(i + 1), *v),
                    ],
                    colour(role).filled(),
                );
                bar.set_margin(0, 0, 10, 10);
                chart.draw_series(std::iter::once(bar))?;
                chart.draw_series(std::iter::once(Text::new(
                    human_ns(*v),
                    (SegmentValue::CenterOf(i), v * 1.25),
                    text(14).pos(Pos::new(HPos::Center, VPos::Bottom)),
                )))?;
            }
            let paper =
                |x: Option<f64>| x.map_or_else(String::new, |x| format!(" (paper {})", factor(x)));
            let lines = [
                format!(
                    "disk → Rio: {}{}",
                    factor(c.rio_factor()),
                    paper(c.paper.rio)
                ),
                format!(
                    "Rio → Vista: {}{}",
                    factor(c.vista_factor()),
                    paper(c.paper.vista)
                ),
                format!(
                    "disk → Vista: {} (paper {})",
                    factor(c.total_factor()),
                    c.paper.total
                ),
            ];
            for (k, line) in (0i32..).zip(&lines) {
                head.draw(&Text::new(
                    line.clone(),
                    (mid, 34 + 20 * k),
                    text(14).pos(Pos::new(HPos::Center, VPos::Top)),
                ))?;
            }
        }
        Ok(())
    }
}

/// One line of the size chart.
struct Line {
    role: usize,
    label: String,
    points: Vec<(f64, f64)>,
}

/// Time per transaction against bytes written, log-log, one line per charted role, ticks at
/// the measured sizes, the legend in a column of its own.
struct SizeChart<'a> {
    sizes: Vec<f64>,
    lines: Vec<Line>,
    footer: &'a str,
}

impl<'a> SizeChart<'a> {
    fn new(report: &Report, footer: &'a str) -> SizeChart<'a> {
        let sizes = report.sizes();
        let mut lines: Vec<Line> = Vec::new();
        for (bytes, w) in &sizes {
            for p in report.picks(w) {
                let label = format!("{} ({})", p.label, p.engine);
                let point = (*bytes as f64, p.sample.median_ns);
                match lines.iter_mut().find(|l| l.label == label) {
                    Some(l) => l.points.push(point),
                    None => lines.push(Line {
                        role: p.role,
                        label,
                        points: vec![point],
                    }),
                }
            }
        }
        lines.sort_by_key(|l| l.role);
        SizeChart {
            sizes: sizes.iter().map(|s| s.0 as f64).collect(),
            lines,
            footer,
        }
    }
}

impl SizeChart<'_> {
    /// Room for the legend's longest label (at least the 380 pixels it always had).
    fn legend_width(&self) -> u32 {
        let widest = self
            .lines
            .iter()
            .map(|l| text_width(&l.label, 14))
            .max()
            .unwrap_or(0);
        (54 + widest + 16).max(380)
    }
}

impl Chart for SizeChart<'_> {
    fn size(&self) -> (u32, u32) {
        (820 + self.legend_width(), 620)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let (root, foot) = root.split_vertically(self.size().1 - 24);
        foot.draw(&Text::new(self.footer.to_string(), (12, 4), grey(12)))?;
        let (plot, legend) = root.split_horizontally(820);
        let ys = self.lines.iter().flat_map(|l| l.points.iter().map(|p| p.1));
        let lo = ys.clone().fold(f64::MAX, f64::min) / 2.0;
        let hi = ys.fold(0.0, f64::max) * 2.0;
        let (x0, x1) = (
            self.sizes.first().copied().unwrap_or(1.0),
            self.sizes.last().copied().unwrap_or(2.0),
        );
        let mut chart = ChartBuilder::on(&plot)
            .caption(
                "Time per transaction against bytes written (synthetic, median)",
                text(19),
            )
            .margin(14)
            .x_label_area_size(50)
            .y_label_area_size(72)
            .build_cartesian_2d(
                (x0 / 1.4..x1 * 1.4)
                    .log_scale()
                    .with_key_points(self.sizes.clone()),
                (lo..hi).log_scale().with_key_points(decades(lo, hi)),
            )?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .x_desc("bytes written per transaction (one write at a random offset)")
            .x_label_formatter(&|v| human_bytes(v.round() as usize))
            .y_label_formatter(&|v| human_ns(*v))
            .label_style(text(13))
            .axis_desc_style(text(14))
            .draw()?;
        for l in &self.lines {
            let c = colour(l.role);
            chart.draw_series(LineSeries::new(
                l.points.iter().copied(),
                Color::stroke_width(&c, 3),
            ))?;
            chart.draw_series(l.points.iter().map(|&p| Circle::new(p, 4, c.filled())))?;
        }
        // Legend, ordered by the lines' height at the smallest size, so it reads top to
        // bottom like the lines do at the left edge.
        let mut order: Vec<&Line> = self.lines.iter().collect();
        order.sort_by(|a, b| {
            let first = |l: &Line| l.points.first().map_or(0.0, |p| p.1);
            first(b).total_cmp(&first(a))
        });
        legend.draw(&Text::new(
            format!("slowest at {} on top", human_bytes(x0 as usize)),
            (10, 44),
            grey(13),
        ))?;
        for (i, l) in order.iter().enumerate() {
            let y = 80 + 30 * i as i32;
            let c = colour(l.role);
            legend.draw(&PathElement::new(
                vec![(10, y), (44, y)],
                Color::stroke_width(&c, 4),
            ))?;
            legend.draw(&Circle::new((27, y), 4, c.filled()))?;
            legend.draw(&Text::new(
                l.label.clone(),
                (54, y),
                text(14).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
        }
        Ok(())
    }
}

/// A bitmap backend whose text is drawn glyph by glyph at each glyph's own bounds. Plotters'
/// ab_glyph drawing places every glyph's bitmap at the pen position, dropping its left
/// bearing, so narrow glyphs ("1") sit too far left and "10.0" reads "1 0.0". Everything
/// else is passed to the inner backend; rotated text (none in these figures) too.
struct Glyphs<B> {
    inner: B,
    font: FontRef<'static>,
}

impl<B: DrawingBackend> DrawingBackend for Glyphs<B> {
    type ErrorType = B::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }

    fn ensure_prepared(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.ensure_prepared()
    }

    fn present(&mut self) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.present()
    }

    fn draw_pixel(
        &mut self,
        point: BackendCoord,
        color: BackendColor,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_pixel(point, color)
    }

    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_line(from, to, style)
    }

    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }

    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_path(path, style)
    }

    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.draw_circle(center, radius, style, fill)
    }

    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.fill_polygon(vert, style)
    }

    fn blit_bitmap(
        &mut self,
        pos: BackendCoord,
        size: (u32, u32),
        src: &[u8],
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn draw_text<S: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &S,
        pos: BackendCoord,
    ) -> Result<(), DrawingErrorKind<Self::ErrorType>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        if !matches!(style.transform(), FontTransform::None) {
            return self.inner.draw_text(text, style, pos);
        }
        #[allow(clippy::cast_possible_truncation)] // a font size in pixels
        let font = self.font.as_scaled(style.size() as f32);
        // The box plotters reserved for the text (its ab_glyph layout): the advances wide,
        // size / 1.24 high. The capital height is centred in it.
        let mut width = 0f32;
        let mut prev = None;
        for c in text.chars() {
            let id = font.glyph_id(c);
            if let Some(p) = prev {
                width += font.kern(p, id);
            }
            width += font.h_advance(id);
            prev = Some(id);
        }
        let height = style.size() as f32 / 1.24;
        let cap = font
            .outline_glyph(font.scaled_glyph('H'))
            .map_or(height * 0.7, |o| o.px_bounds().height());
        let x0 = pos.0 as f32
            - match style.anchor().h_pos {
                HPos::Left => 0.0,
                HPos::Center => width / 2.0,
                HPos::Right => width,
            };
        let top = pos.1 as f32
            - match style.anchor().v_pos {
                VPos::Top => 0.0,
                VPos::Center => height / 2.0,
                VPos::Bottom => height,
            };
        let baseline = top + f32::midpoint(height, cap);
        let (size_x, size_y) = self.inner.get_size();
        let mut pen = x0;
        let mut prev = None;
        let mut failed = None;
        for c in text.chars() {
            let mut glyph = font.scaled_glyph(c);
            if let Some(p) = prev {
                pen += font.kern(p, glyph.id);
            }
            prev = Some(glyph.id);
            let advance = font.h_advance(glyph.id);
            glyph.position = point(pen, baseline);
            pen += advance;
            let Some(outline) = font.outline_glyph(glyph) else {
                continue;
            };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                #[allow(clippy::cast_possible_truncation)] // pixel coordinates
                let (px, py) = (
                    bounds.min.x as i32 + gx as i32,
                    bounds.min.y as i32 + gy as i32,
                );
                if failed.is_none()
                    && coverage > 0.0
                    && (0..size_x as i32).contains(&px)
                    && (0..size_y as i32).contains(&py)
                {
                    let c = BackendColor {
                        alpha: color.alpha * f64::from(coverage.min(1.0)),
                        rgb: color.rgb,
                    };
                    if let Err(e) = self.inner.draw_pixel((px, py), c) {
                        failed = Some(e);
                    }
                }
            });
        }
        failed.map_or(Ok(()), Err)
    }
}
