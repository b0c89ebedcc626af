//! Plots of an open-loop sweep, drawn by the bench itself (plotters, SVG): achieved throughput
//! and p99 latency against offered load, one line per path.

use std::path::Path;

use plotters::prelude::*;

use crate::load::Measured;

/// One line of a plot: a label and its runs, in order of offered load.
#[derive(Debug)]
pub struct Series<'a> {
    /// The legend label.
    pub label: &'a str,
    /// The runs (open loop, so each has an offered rate).
    pub runs: Vec<&'a Measured>,
}

const COLOURS: [RGBColor; 4] =
    [RGBColor(31, 95, 191), RGBColor(200, 90, 20), RGBColor(22, 120, 60), RGBColor(120, 60, 160)];

/// Writes `<dir>/sweep-throughput.svg` and `<dir>/sweep-p99.svg`.
pub fn sweep(dir: &Path, title: &str, series: &[Series<'_>]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let offered = |m: &Measured| m.offered_per_second.unwrap_or(0.0);
    let x_max = series.iter().flat_map(|s| s.runs.iter().map(|m| offered(m))).fold(1.0, f64::max) * 1.05;
    let y_rate = series.iter().flat_map(|s| s.runs.iter().map(|m| m.ok as f64 / m.seconds)).fold(1.0, f64::max) * 1.1;
    draw(
        &dir.join("sweep-throughput.svg"),
        &format!("{title}: accepted per second vs offered"),
        "offered reservations/s",
        "accepted reservations/s",
        (x_max, y_rate),
        series,
        |m| m.ok as f64 / m.seconds,
    )?;
    let y_p99 = series.iter().flat_map(|s| s.runs.iter().map(|m| m.p99_micros as f64 / 1000.0)).fold(1.0, f64::max);
    draw(
        &dir.join("sweep-p99.svg"),
        &format!("{title}: p99 latency vs offered"),
        "offered reservations/s",
        "p99 ms (log scale)",
        (x_max, y_p99 * 1.5),
        series,
        |m| (m.p99_micros as f64 / 1000.0).max(0.01),
    )
}

fn draw(
    path: &Path,
    caption: &str,
    x_label: &str,
    y_label: &str,
    (x_max, y_max): (f64, f64),
    series: &[Series<'_>],
    value: impl Fn(&Measured) -> f64,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (760, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let log = y_label.contains("log");
    let mut chart_builder = ChartBuilder::on(&root);
    chart_builder.caption(caption, ("sans-serif", 18)).margin(12).x_label_area_size(40).y_label_area_size(70);
    if log {
        let y_min =
            series.iter().flat_map(|s| s.runs.iter().map(|m| value(m))).fold(f64::INFINITY, f64::min).clamp(0.01, 1.0)
                / 2.0;
        let mut chart = chart_builder.build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y}"))
            .draw()?;
        lines(&mut chart, series, &value)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()?;
    } else {
        let mut chart = chart_builder.build_cartesian_2d(0f64..x_max, 0f64..y_max)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        lines(&mut chart, series, &value)?;
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.9))
            .draw()?;
    }
    root.present()?;
    Ok(())
}

fn lines<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    series: &[Series<'_>],
    value: &impl Fn(&Measured) -> f64,
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'a,
    DB::ErrorType: 'static,
    CT: plotters::coord::CoordTranslate<From = (f64, f64)>,
{
    for (n, line) in series.iter().enumerate() {
        let colour = COLOURS[n % COLOURS.len()];
        let points: Vec<(f64, f64)> =
            line.runs.iter().map(|m| (m.offered_per_second.unwrap_or(0.0), value(m))).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .label(line.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
        chart
            .draw_series(points.into_iter().map(|p| Circle::new(p, 3, colour.filled())))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    }
    Ok(())
}
