//! `report.svg` and `seed.svg`, drawn with plotters' SVG backend.

use crate::seed::SeedRow;
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use std::error::Error;
use std::path::Path;

/// One allocator's medians for one workload case.
pub struct Bar {
    pub name: String,
    pub time_ms: f64,
    pub peak_mib: f64,
    pub after_mib: f64,
}

/// One workload case: a row of two panels (time, memory).
pub struct Panel {
    pub title: String,
    pub bars: Vec<Bar>,
}

fn color_of(name: &str, default: &str) -> RGBColor {
    match name {
        "system" => RGBColor(110, 110, 110),
        "jemalloc" => RGBColor(230, 140, 30),
        "mimalloc" => RGBColor(150, 70, 190),
        "bound" => RGBColor(0, 0, 0),
        n if n == default => RGBColor(210, 40, 40),
        n if n.contains('/') => RGBColor(90, 170, 220),
        _ => RGBColor(40, 100, 180),
    }
}

/// The value printed at the end of each of `n` bars (the first one on the top row).
fn value_labels(
    values: &[f64],
    n: u32,
) -> impl Iterator<Item = Text<'static, (f64, SegmentValue<u32>), String>> + '_ {
    values.iter().enumerate().map(move |(i, &v)| {
        let label = if v >= 100.0 {
            format!("{v:.0}")
        } else {
            format!("{v:.1}")
        };
        Text::new(
            label,
            (v, SegmentValue::CenterOf(n - 1 - i as u32)),
            ("sans-serif", 11).into_font(),
        )
    })
}

/// Horizontal bars, one per allocator and series (each value with its own colour), the series
/// stacked within a row; `labels` says whether to print the allocator names.
fn bars(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    names: &[&str],
    series: &[(Vec<f64>, Vec<RGBAColor>)],
    labels: bool,
    unit: &str,
) -> Result<(), Box<dyn Error>> {
    let n = names.len() as u32;
    let max = series
        .iter()
        .flat_map(|s| s.0.iter().copied())
        .fold(0.0, f64::max)
        .max(1e-3);
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(6)
        .x_label_area_size(30)
        .y_label_area_size(if labels { 235 } else { 8 })
        .build_cartesian_2d(0.0..max * 1.18, (0..n).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n as usize)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) if labels => {
                names.get((n - 1 - *i) as usize).unwrap_or(&"").to_string()
            }
            _ => String::new(),
        })
        .x_desc(unit)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .draw()?;
    let k = series.len() as u32;
    for (j, (values, colors)) in series.iter().enumerate() {
        chart.draw_series(values.iter().enumerate().map(|(idx, &v)| {
            // Row 0 is at the bottom: the first allocator goes on top, as in the labels.
            let i = n - 1 - idx as u32;
            let mut r = Rectangle::new(
                [
                    (0.0, SegmentValue::Exact(i)),
                    (v, SegmentValue::Exact(i + 1)),
                ],
                colors[idx].filled(),
            );
            // Stack the series' bars within one row: 16 px per row split between them.
            let (top, bottom) = (2 + 14 * j as u32 / k, 2 + 14 * (k - 1 - j as u32) / k);
            r.set_margin(top, bottom, 0, 0);
            r
        }))?;
    }
    chart.draw_series(value_labels(&series[0].0, n))?;
    Ok(())
}

/// Writes the report chart: per case, median time per allocator, and peak RSS beside RSS 1.5 s
/// after the work.
pub fn report_svg(
    path: &Path,
    caption: &str,
    panels: &[Panel],
    default: &str,
) -> Result<(), Box<dyn Error>> {
    let rows = panels.iter().map(|p| p.bars.len()).max().unwrap_or(1) as u32;
    let row_h = 70 + 17 * rows;
    let root = SVGBackend::new(path, (1300, 50 + row_h * panels.len() as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(caption, ("sans-serif", 20))?;
    for (area, panel) in root.split_evenly((panels.len(), 1)).iter().zip(panels) {
        let (left, right) = area.split_horizontally(760);
        let names: Vec<&str> = panel.bars.iter().map(|b| b.name.as_str()).collect();
        let times: Vec<f64> = panel.bars.iter().map(|b| b.time_ms).collect();
        let colors: Vec<RGBAColor> = panel
            .bars
            .iter()
            .map(|b| color_of(&b.name, default).to_rgba())
            .collect();
        let title = format!("{}: median time, ms (red = pagewise default)", panel.title);
        bars(&left, &title, &names, &[(times, colors)], true, "ms")?;
        let peak: Vec<f64> = panel.bars.iter().map(|b| b.peak_mib).collect();
        let after: Vec<f64> = panel.bars.iter().map(|b| b.after_mib).collect();
        let rows = names.len();
        bars(
            &right,
            "peak RSS (light) / RSS 1.5 s after (dark), MiB",
            &names,
            &[
                (peak, vec![RGBColor(150, 190, 230).to_rgba(); rows]),
                (after, vec![RGBColor(20, 60, 130).to_rgba(); rows]),
            ],
            false,
            "MiB",
        )?;
    }
    root.present()?;
    Ok(())
}

/// One log-log panel of the seed chart: µs per op against mapping size, a line per variant.
fn seed_panel(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    title: &str,
    rows: &[SeedRow],
    table: &str,
    variants: &[&str],
) -> Result<(), Box<dyn Error>> {
    let pts = |v: &str| -> Vec<(f64, f64)> {
        rows.iter()
            .filter(|r| r.table == table && r.variant == v && r.median_us > 0.0)
            .map(|r| (r.size_mib as f64, r.median_us))
            .collect()
    };
    let all: Vec<(f64, f64)> = variants.iter().flat_map(|v| pts(v)).collect();
    let (x0, x1) = all
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), p| (a.min(p.0), b.max(p.0)));
    let (y0, y1) = all
        .iter()
        .fold((f64::MAX, 0.0f64), |(a, b), p| (a.min(p.1), b.max(p.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 15))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(62)
        .build_cartesian_2d(
            (x0 * 0.8..x1 * 1.25).log_scale(),
            (y0 * 0.7..y1 * 1.4).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("mapping size, MiB")
        .y_desc("median µs per op")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (k, v) in variants.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let p = pts(v);
        chart
            .draw_series(LineSeries::new(p.clone(), color.stroke_width(2)))?
            .label(*v)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
            });
        chart.draw_series(p.into_iter().map(|pt| Circle::new(pt, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    Ok(())
}

/// Writes the seed chart: tables A, B, the release call and the reuse case.
pub fn seed_svg(path: &Path, rows: &[SeedRow]) -> Result<(), Box<dyn Error>> {
    let root = SVGBackend::new(path, (1300, 1000)).into_drawing_area();
    root.fill(&WHITE)?;
    let root = root.titled(
        "Raw anonymous mappings: the seed's experiment, plus reuse",
        ("sans-serif", 20),
    )?;
    let areas = root.split_evenly((2, 2));
    let rel = [
        "4k/dontneed",
        "4k/free",
        "hugepage/dontneed",
        "hugepage/free",
    ];
    seed_panel(
        &areas[0],
        "A: touch a fresh mapping",
        rows,
        "A",
        &["4k", "hugepage", "populate", "populate+hugepage"],
    )?;
    seed_panel(
        &areas[1],
        "B: touch a fresh mapping, released ones piling up",
        rows,
        "B",
        &rel,
    )?;
    seed_panel(
        &areas[2],
        "release: the madvise call",
        rows,
        "release",
        &rel,
    )?;
    seed_panel(
        &areas[3],
        "reuse: touch the same range again after release",
        rows,
        "reuse",
        &rel,
    )?;
    root.present()?;
    Ok(())
}
