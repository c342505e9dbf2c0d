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

    let mut chart = ChartBuilder::on(&top)
        .caption(
            format!(
                "{}: GPUs paid for (lines) and asked for by pods (grey)",
                report.trace
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..hours, 0.0..gpus * 1.1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc("GPUs")
        .draw()
        .map_err(|e| err(&e))?;
    if let Some(first) = report.policies.first() {
        chart
            .draw_series(LineSeries::new(
                first
                    .timeline
                    .iter()
                    .map(|s| (s.hour, s.used_gpus + s.pending_gpus)),
                RGBColor(150, 150, 150).stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label("demand (running + pending)")
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], RGBColor(150, 150, 150)));
    }
    for (i, p) in report.policies.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                p.timeline.iter().map(|s| (s.hour, s.paid_gpus)),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(p.policy.name())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let mut chart = ChartBuilder::on(&bottom)
        .caption("money spent so far", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..hours, 0.0..cost * 1.1)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("hours")
        .y_desc("USD")
        .draw()
        .map_err(|e| err(&e))?;
    for (i, p) in report.policies.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(
                p.timeline.iter().map(|s| (s.hour, s.cost)),
                colour.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(p.policy.name())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], colour));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
