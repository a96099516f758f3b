//! The chart kinds of a report, each drawn into an SVG string with
//! `plotters`' SVG backend: lines over time, lanes per endpoint, stacked
//! shares, a heatmap and a scatter.

use plotters::coord::Shift;
use plotters::prelude::*;

/// Width of every chart: readable at 1280 px.
pub(crate) const WIDTH: u32 = 1240;

/// The replay TUI's colours (`sim/src/replay/ui.rs`): green healthy, yellow
/// some errors, red failing or ejected. The report keeps red for a failing
/// pod and a darker red for an ejection, so both stay apart on one lane.
pub(crate) const HEALTHY: RGBColor = RGBColor(0x2c, 0xa0, 0x2c);
pub(crate) const FAILING: RGBColor = RGBColor(0xd6, 0x27, 0x28);
pub(crate) const EJECTED: RGBColor = RGBColor(0x7f, 0x00, 0x00);
/// Series colours, in order.
pub(crate) const PALETTE: [RGBColor; 8] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xff, 0x7f, 0x0e),
    RGBColor(0x94, 0x67, 0xbd),
    RGBColor(0x17, 0xbe, 0xcf),
    RGBColor(0x8c, 0x56, 0x4b),
    RGBColor(0xe3, 0x77, 0xc2),
    RGBColor(0xbc, 0xbd, 0x22),
    RGBColor(0x7f, 0x7f, 0x7f),
];

/// One named line.
#[derive(Debug)]
pub(crate) struct Series {
    pub(crate) name: String,
    pub(crate) color: RGBColor,
    pub(crate) points: Vec<(f64, f64)>,
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn err<E: std::fmt::Display>(e: E) -> String {
    format!("drawing a chart: {e}")
}

fn root(svg: &mut String, height: u32) -> Result<Area<'_>, String> {
    let root = SVGBackend::with_string(svg, (WIDTH, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

/// Nice upper bound of a non-negative range (never zero).
fn top(max: f64) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        1.0
    } else {
        max * 1.08
    }
}

/// Lines over a shared x axis.
pub(crate) fn lines(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = root(&mut svg, 340)?;
        let all = series.iter().flat_map(|s| s.points.iter());
        let x_max = all.clone().map(|p| p.0).fold(0.0, f64::max);
        let (y_lo, y_hi) = y_range.unwrap_or_else(|| {
            let hi = all.clone().map(|p| p.1).fold(0.0, f64::max);
            (0.0, top(hi))
        });
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(10)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..top(x_max) / 1.08, y_lo..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 17))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        for s in series {
            let color = s.color;
            chart
                .draw_series(LineSeries::new(
                    s.points.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(err)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                });
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// One lane: intervals `[from, to)` in seconds, failing (upper half) and
/// ejected (lower half, one bar per proxy's ejection, so overlapping
/// ejections by several proxies darken), and return ticks.
#[derive(Debug, Default)]
pub(crate) struct Lane {
    pub(crate) name: String,
    pub(crate) failing: Vec<(f64, f64)>,
    pub(crate) ejected: Vec<(f64, f64)>,
    pub(crate) returned: Vec<f64>,
}

/// Lanes per endpoint over time.
pub(crate) fn lanes(title: &str, lanes: &[Lane], end_s: f64) -> Result<String, String> {
    let height = 200 + 28 * u32::try_from(lanes.len()).unwrap_or(u32::MAX / 64).max(1);
    let mut svg = String::new();
    {
        let root = root(&mut svg, height)?;
        let n = lanes.len().max(1);
        let names: Vec<String> = lanes.iter().map(|l| l.name.clone()).collect();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(10)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(140)
            .build_cartesian_2d(0.0..end_s.max(1e-9), 0.0..n as f64 + 2.5)
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 17))
            .x_desc("simulated time (s)")
            .y_labels(2 * n + 6)
            .y_label_style(("sans-serif", 15))
            .y_label_formatter(&|y| {
                let i = y.floor();
                if (y - i - 0.5).abs() < 1e-6 && i >= 0.0 && (i as usize) < n {
                    names
                        .get(n.saturating_sub(1 + i as usize))
                        .cloned()
                        .unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .disable_y_mesh()
            .draw()
            .map_err(err)?;
        chart
            .draw_series((0..lanes.len()).map(|k| {
                let y0 = (n - 1 - k) as f64;
                Rectangle::new(
                    [(0.0, y0 + 0.45), (end_s, y0 + 0.55)],
                    HEALTHY.mix(0.5).filled(),
                )
            }))
            .map_err(err)?
            .label("healthy")
            .legend(|(x, y)| Rectangle::new([(x, y - 2), (x + 20, y + 2)], HEALTHY.filled()));
        let mut legend = [false; 2];
        for (k, lane) in lanes.iter().enumerate() {
            // Lane k is drawn from the top.
            let y0 = (n - 1 - k) as f64;
            let f = chart
                .draw_series(lane.failing.iter().map(|&(a, b)| {
                    Rectangle::new([(a, y0 + 0.5), (b, y0 + 0.95)], FAILING.filled())
                }))
                .map_err(err)?;
            if !legend[0] && !lane.failing.is_empty() {
                f.label("failing (timeline fault)").legend(|(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], FAILING.filled())
                });
                legend[0] = true;
            }
            let e = chart
                .draw_series(lane.ejected.iter().map(|&(a, b)| {
                    Rectangle::new([(a, y0 + 0.05), (b, y0 + 0.5)], EJECTED.mix(0.6).filled())
                }))
                .map_err(err)?;
            if !legend[1] && !lane.ejected.is_empty() {
                e.label("ejected (per proxy; darker: more proxies)")
                    .legend(|(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 20, y + 5)], EJECTED.filled())
                    });
                legend[1] = true;
            }
            chart
                .draw_series(lane.returned.iter().map(|&t| {
                    PathElement::new(
                        vec![(t, y0 + 0.02), (t, y0 + 0.98)],
                        HEALTHY.stroke_width(2),
                    )
                }))
                .map_err(err)?;
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Stacked shares (percent) over time: `series[i].points` are the share of
/// series i at each x, all series on the same xs.
pub(crate) fn stacked(title: &str, series: &[Series]) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = root(&mut svg, 300)?;
        let x_max = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0))
            .fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(10)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_max.max(1e-9), 0.0..100.0)
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 17))
            .x_desc("simulated time (s)")
            .y_desc("share of requests (%)")
            .draw()
            .map_err(err)?;
        // Cumulative tops, drawn from the highest down so each band shows.
        let len = series.first().map_or(0, |s| s.points.len());
        let mut cum: Vec<Vec<(f64, f64)>> = Vec::new();
        let mut acc = vec![0.0; len];
        for s in series {
            let mut band = Vec::with_capacity(len);
            for (i, &(x, y)) in s.points.iter().enumerate().take(len) {
                acc[i] += y;
                band.push((x, acc[i]));
            }
            cum.push(band);
        }
        for (s, band) in series.iter().zip(&cum).rev() {
            let color = s.color;
            chart
                .draw_series(
                    AreaSeries::new(band.iter().copied(), 0.0, color.mix(0.8)).border_style(color),
                )
                .map_err(err)?
                .label(s.name.as_str())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 20, y + 5)], color.filled())
                });
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Green (best) to red (worst) for `v` in `[lo, hi]`.
fn ramp(v: f64, lo: f64, hi: f64, higher_is_better: bool) -> RGBColor {
    let mut t = if hi > lo { (v - lo) / (hi - lo) } else { 0.0 };
    if higher_is_better {
        t = 1.0 - t;
    }
    let t = t.clamp(0.0, 1.0);
    let mix = |a: u8, b: u8| (f64::from(a) + (f64::from(b) - f64::from(a)) * t).round() as u8;
    RGBColor(mix(0x4c, 0xd6), mix(0xaf, 0x27), mix(0x50, 0x28))
}

/// A heatmap: `cells[i][j]` for x value i and y value j (None: no point).
pub(crate) fn heatmap(
    title: &str,
    x: (&str, &[String]),
    y: (&str, &[String]),
    cells: &[Vec<Option<f64>>],
    higher_is_better: bool,
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = root(&mut svg, 340)?;
        let (nx, ny) = (x.1.len(), y.1.len());
        let vals = cells.iter().flatten().flatten().copied();
        let lo = vals.clone().fold(f64::INFINITY, f64::min);
        let hi = vals.fold(f64::NEG_INFINITY, f64::max);
        let xs = x.1.to_vec();
        let ys = y.1.to_vec();
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(10)
            .margin_right(40)
            .x_label_area_size(50)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..nx as f64, 0.0..ny as f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 17))
            .disable_mesh()
            .x_desc(x.0)
            .y_desc(y.0)
            .x_labels(nx * 2 + 1)
            .y_labels(ny * 2 + 1)
            .x_label_formatter(&|v| centre_label(*v, &xs))
            .y_label_formatter(&|v| centre_label(*v, &ys))
            .draw()
            .map_err(err)?;
        for (i, col) in cells.iter().enumerate() {
            for (j, c) in col.iter().enumerate() {
                let Some(v) = c else { continue };
                let (i, j) = (i as f64, j as f64);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(i, j), (i + 1.0, j + 1.0)],
                        ramp(*v, lo, hi, higher_is_better).filled(),
                    )))
                    .map_err(err)?;
                chart
                    .draw_series(std::iter::once(Text::new(
                        fmt_num(*v),
                        (i + 0.45, j + 0.5),
                        ("sans-serif", 18).into_font().color(&BLACK),
                    )))
                    .map_err(err)?;
            }
        }
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// The label of a category axis at the centre of its cell, else nothing.
fn centre_label(v: f64, names: &[String]) -> String {
    let i = v.floor();
    if (v - i - 0.5).abs() < 1e-6 {
        names.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// A figure with 4 significant digits at most.
pub(crate) fn fmt_num(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// A scatter point: x, y, label, class (0 other, 1 Pareto rank 0, 2 recommended).
pub(crate) type Dot = (f64, f64, String, u8);

/// A scatter with Pareto rank 0 highlighted and one point marked.
pub(crate) fn scatter(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    dots: &[Dot],
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = root(&mut svg, 480)?;
        // Room above and right of the highest dot for its label.
        let x_hi = top(dots.iter().map(|d| d.0).fold(0.0, f64::max)) * 1.1;
        let y_hi = top(dots.iter().map(|d| d.1).fold(0.0, f64::max)) * 1.1;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(10)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..x_hi, 0.0..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 17))
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(err)?;
        let names = ["other candidates", "Pareto rank 0", "recommended"];
        let colors = [PALETTE[7], PALETTE[0], FAILING];
        for class in 0..3u8 {
            let color = colors[usize::from(class)];
            let size = 4 + 2 * i32::from(class);
            let pts: Vec<&Dot> = dots.iter().filter(|d| d.3 == class).collect();
            if pts.is_empty() {
                continue;
            }
            chart
                .draw_series(pts.iter().map(|d| {
                    EmptyElement::at((d.0, d.1))
                        + Circle::new((0, 0), size, color.filled())
                        + Text::new(d.2.clone(), (8, -12), ("sans-serif", 15).into_font())
                }))
                .map_err(err)?
                .label(names[usize::from(class)])
                .legend(move |(x, y)| Circle::new((x + 10, y), size, color.filled()));
        }
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 16))
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}

/// Category line chart: `values[i]` at category i.
pub(crate) fn category_line(
    title: &str,
    x: (&str, &[String]),
    y_desc: &str,
    values: &[f64],
) -> Result<String, String> {
    let mut svg = String::new();
    {
        let root = root(&mut svg, 340)?;
        let n = x.1.len();
        let names = x.1.to_vec();
        let y_hi = top(values.iter().copied().fold(0.0, f64::max));
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 24))
            .margin(10)
            .margin_right(40)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(0.0..n as f64, 0.0..y_hi)
            .map_err(err)?;
        chart
            .configure_mesh()
            .label_style(("sans-serif", 16))
            .axis_desc_style(("sans-serif", 17))
            .x_desc(x.0)
            .y_desc(y_desc)
            .x_labels(n * 2 + 1)
            .x_label_formatter(&|v| centre_label(*v, &names))
            .draw()
            .map_err(err)?;
        let pts: Vec<(f64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (i as f64 + 0.5, *v))
            .collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), PALETTE[0].stroke_width(2)))
            .map_err(err)?
            .label(y_desc)
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], PALETTE[0].stroke_width(2))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, PALETTE[0].filled())))
            .map_err(err)?;
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 16))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(svg)
}
