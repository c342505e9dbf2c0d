//! The runs as a picture (SVG, with plotters): per policy, the GPUs paid
//! for over time with the GPUs pods used and waited for overlaid, and the
//! money spent so far.

use super::report::Report;
use plotters::prelude::*;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
#[error("plot {path}: {reason}")]
pub struct PlotError {
    path: String,
    reason: String,
}

const COLOURS: [RGBColor; 3] = [
    RGBColor(214, 39, 40),
    RGBColor(31, 119, 180),
    RGBColor(44, 160, 44),
];

/// Writes the SVG: GPUs over time on top, cost below.
pub fn svg(report: &Report, path: &Path) -> Result<(), PlotError> {
    let err = |e: &dyn std::fmt::Display| PlotError {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(440);
    let hours = report
        .policies
        .iter()
        .flat_map(|p| p.timeline.last().map(|s| s.hour))
        .fold(1.0_f64, f64::max);
    let gpus = report
        .policies
        .iter()
        .flat_map(|p| {
            p.timeline
                .iter()
                .map(|s| s.paid_gpus.max(s.used_gpus + s.pending_gpus))
        })
        .fold(1.0_f64, f64::max);
    let cost = report
        .policies
        .iter()
        .flat_map(|p| p.timeline.last().map(|s| s.cost))
        .fold(1.0_f64, f64::max);

    let demand = RGBColor(150, 150, 150);
    let mut top_lines: Vec<Line> = report
        .policies
        .first()
        .map(|p| Line {
            label: "demand (running + pending)".into(),
            colour: demand,
            points: p
                .timeline
                .iter()
                .map(|s| (s.hour, s.used_gpus + s.pending_gpus))
                .collect(),
        })
        .into_iter()
        .collect();
    top_lines.extend(per_policy(report, |s| s.paid_gpus));
    chart(
        &top,
        &format!(
            "{}: GPUs paid for (lines) and asked for by pods (grey)",
            report.trace
        ),
        "GPUs",
        (hours, gpus),
        &top_lines,
    )
    .map_err(|e| err(&e))?;
    chart(
        &bottom,
        "money spent so far",
        "USD",
        (hours, cost),
        &per_policy(report, |s| s.cost),
    )
    .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

/// One labelled line.
struct Line {
    label: String,
    colour: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Each policy's timeline through `value`, in the policy's colour.
fn per_policy(report: &Report, value: fn(&super::run::Sample) -> f64) -> Vec<Line> {
    report
        .policies
        .iter()
        .enumerate()
        .map(|(i, p)| Line {
            label: p.policy.name().to_owned(),
            colour: COLOURS[i % COLOURS.len()],
            points: p.timeline.iter().map(|s| (s.hour, value(s))).collect(),
        })
        .collect()
}

/// A chart of `lines` over `hours`, its y axis up to a tenth past `top`,
/// with a legend.
fn chart<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    y_desc: &str,
    (hours, top): (f64, f64),
    lines: &[Line],
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..hours, 0.0..top * 1.1)?;
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc(y_desc)
        .draw()?;
    for line in lines {
        let colour = line.colour;
        chart
            .draw_series(LineSeries::new(
                line.points.iter().copied(),
                colour.stroke_width(2),
            ))?
            .label(line.label.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
}
