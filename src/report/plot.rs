//! Line charts rendered to SVG (training curves, metric vs κ with confidence intervals).

use anyhow::{Result, anyhow};
use plotters::prelude::*;
use std::path::Path;

/// One line of a chart: points `(x, y)` with an optional half-width error bar on y.
#[derive(Debug, Clone, Default)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// `(x, y, y_err)` points in x order; `y_err = 0` draws no bar.
    pub points: Vec<(f64, f64, f64)>,
}

/// Axes and labels of a chart.
#[derive(Debug, Clone, Default)]
pub struct Chart {
    /// Caption above the plot.
    pub title: String,
    /// x-axis label.
    pub x_label: String,
    /// y-axis label.
    pub y_label: String,
    /// Draw the x axis on a log2 scale (κ sweeps).
    pub log2_x: bool,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(44, 160, 44),
    RGBColor(255, 127, 14),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Renders `series` as an SVG string (800×480).
pub fn svg(chart: &Chart, series: &[Series]) -> Result<String> {
    let tx = |x: f64| if chart.log2_x { x.log2() } else { x };
    let pts: Vec<(f64, f64, f64)> =
        series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
    if pts.is_empty() {
        return Err(anyhow!("nothing to plot for {:?}", chart.title));
    }
    let (mut x0, mut x1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(tx(p.0)), b.max(tx(p.0))));
    let (mut y0, mut y1) = pts.iter().fold((f64::MAX, f64::MIN), |(a, b), p| (a.min(p.1 - p.2), b.max(p.1 + p.2)));
    if x1 - x0 < 1e-12 {
        (x0, x1) = (x0 - 1.0, x1 + 1.0);
    }
    let pad = ((y1 - y0) * 0.08).max(1e-6);
    (y0, y1) = (y0 - pad, y1 + pad);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (800, 480)).into_drawing_area();
        let err = |e: &dyn std::fmt::Display| anyhow!("plot {:?}: {e}", chart.title);
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut c = ChartBuilder::on(&root)
            .caption(&chart.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(|e| err(&e))?;
        let log2 = chart.log2_x;
        let fmt_x = move |v: &f64| if log2 { format_pow2(*v) } else { format!("{v}") };
        // On a log2 axis, one tick per power of two.
        let x_ticks = if log2 { (x1 - x0).round() as usize + 1 } else { 10 };
        c.configure_mesh()
            .x_labels(x_ticks)
            .x_desc(&chart.x_label)
            .y_desc(&chart.y_label)
            .x_label_formatter(&fmt_x)
            .draw()
            .map_err(|e| err(&e))?;
        for (i, s) in series.iter().enumerate() {
            let colour = PALETTE[i % PALETTE.len()];
            let line: Vec<(f64, f64)> = s.points.iter().map(|p| (tx(p.0), p.1)).collect();
            c.draw_series(LineSeries::new(line.clone(), colour.stroke_width(2)))
                .map_err(|e| err(&e))?
                .label(&s.name)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], colour.stroke_width(2)));
            c.draw_series(line.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(|e| err(&e))?;
            for p in s.points.iter().filter(|p| p.2 > 0.0) {
                let x = tx(p.0);
                c.draw_series(std::iter::once(PathElement::new(vec![(x, p.1 - p.2), (x, p.1 + p.2)], colour)))
                    .map_err(|e| err(&e))?;
            }
        }
        c.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(out)
}

/// Writes [`svg`] to `path` atomically.
pub fn write_svg(path: &Path, chart: &Chart, series: &[Series]) -> Result<()> {
    crate::util::fs::write_atomic(path, svg(chart, series)?.as_bytes())
}

/// `2^v` written as a fraction or integer (`1/8`, `1`, `4`) for log2 axes.
fn format_pow2(v: f64) -> String {
    let r = v.round();
    if (v - r).abs() > 1e-6 {
        return format!("2^{v:.1}");
    }
    if r >= 0.0 { format!("{}", 2f64.powf(r)) } else { format!("1/{}", 2f64.powf(-r)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lines_labels_and_error_bars() {
        let chart =
            Chart { title: "CE vs κ".into(), x_label: "κ (bits)".into(), y_label: "nats".into(), log2_x: true };
        let s = vec![
            Series { name: "baseline".into(), points: vec![(0.25, 1.0, 0.0), (2.0, 1.0, 0.0)] },
            Series { name: "FT".into(), points: vec![(0.25, 1.1, 0.05), (0.5, 1.2, 0.02), (2.0, 1.5, 0.1)] },
        ];
        let out = svg(&chart, &s).unwrap();
        assert!(out.starts_with("<svg") && out.contains("CE vs κ") && out.contains("baseline") && out.contains("FT"));
        assert!(out.contains("\n1/4\n") && out.contains("\n2\n") && !out.contains("2^"), "log2 tick labels");
        assert!(svg(&chart, &[]).is_err());
    }

    #[test]
    fn pow2_labels() {
        assert_eq!(format_pow2(-3.0), "1/8");
        assert_eq!(format_pow2(0.0), "1");
        assert_eq!(format_pow2(2.0), "4");
    }
}
