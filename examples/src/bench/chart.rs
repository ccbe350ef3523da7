//! The chart of a run: every figure on every broker as framework / lapin,
//! with the min..max spread of both sides, drawn as SVG with `plotters`
//! (text stays SVG `<text>`, so no font library is needed).

use std::path::Path;

use plotters::prelude::*;

use super::report::{Figure, Summary};
use super::BenchError;

/// Pixels left of the plot for the row labels.
const LABEL_WIDTH: u32 = 760;
/// Pixels per row.
const ROW_HEIGHT: u32 = 26;

/// One row: a figure normalised by the baseline's median.
struct Row {
    label: String,
    framework: Summary,
    baseline: Summary,
}

impl Row {
    fn of(figure: &Figure) -> Option<Row> {
        let f = Summary::of(&figure.framework)?;
        let b = Summary::of(&figure.baseline)?;
        if b.median <= 0.0 {
            return None;
        }
        let scale = |s: Summary| Summary {
            median: s.median / b.median,
            min: s.min / b.median,
            max: s.max / b.median,
        };
        let broker = figure.broker.trim_start_matches("RabbitMQ ");
        let better = if figure.higher_is_better {
            "higher"
        } else {
            "lower"
        };
        Some(Row {
            label: format!(
                "{broker} | {} ({}, {better} is better)",
                figure.name, figure.unit
            ),
            framework: scale(f),
            baseline: scale(b),
        })
    }
}

/// Draws `figures` to `path` as SVG: one row per figure, the framework's
/// median over the baseline's (a dot) with its min..max (a bar), and the
/// baseline at 1 with its own spread.
pub fn draw(figures: &[Figure], path: &Path) -> Result<(), BenchError> {
    let rows: Vec<Row> = figures.iter().filter_map(Row::of).collect();
    if rows.is_empty() {
        return Err("no figure has samples on both sides to chart".into());
    }
    let n = rows.len();
    let x_max = rows
        .iter()
        .flat_map(|r| [r.framework.max, r.baseline.max])
        .fold(1.5_f64, f64::max)
        * 1.05;
    let height = 120 + ROW_HEIGHT * n as u32;
    let root = SVGBackend::new(path, (LABEL_WIDTH + 560, height)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (labels, plot) = root.split_horizontally(LABEL_WIDTH);
    let mut chart = ChartBuilder::on(&plot)
        .caption(
            "framework / raw lapin (median; bars: min .. max)",
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(36)
        .build_cartesian_2d(0.0..x_max, -0.5..(n as f64 - 0.5))
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(1)
        .y_label_formatter(&|_| String::new())
        .x_desc("ratio to the lapin median")
        .draw()
        .map_err(|e| e.to_string())?;
    // Row 0 at the top.
    let y = |i: usize| (n - 1 - i) as f64;
    chart
        .draw_series(LineSeries::new(
            [(1.0, -0.5), (1.0, n as f64 - 0.5)],
            BLACK.stroke_width(1),
        ))
        .map_err(|e| e.to_string())?;
    for (name, color, offset, pick) in [
        (
            "framework",
            BLUE,
            0.15,
            (|r: &Row| r.framework) as fn(&Row) -> Summary,
        ),
        ("raw lapin", RED, -0.15, |r: &Row| r.baseline),
    ] {
        chart
            .draw_series(rows.iter().enumerate().map(|(i, r)| {
                let s = pick(r);
                ErrorBar::new_horizontal(y(i) + offset, s.min, s.median, s.max, color.filled(), 8)
            }))
            .map_err(|e| e.to_string())?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 10, y), 4, color.filled()));
        chart
            .draw_series(
                rows.iter()
                    .enumerate()
                    .map(|(i, r)| Circle::new((pick(r).median, y(i) + offset), 4, color.filled())),
            )
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, row) in rows.iter().enumerate() {
        let (_, py) = chart.backend_coord(&(0.0, y(i)));
        labels
            .draw(&Text::new(
                row.label.clone(),
                (8, py - 7),
                ("sans-serif", 12).into_font(),
            ))
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_row_per_figure_and_both_series() {
        let mut figure = Figure::new("drain 10 msgs: throughput".to_owned(), "msg/s", true);
        figure.broker = "RabbitMQ 3.10.8".to_owned();
        figure.framework = vec![110.0, 120.0, 130.0];
        figure.baseline = vec![90.0, 100.0, 105.0];
        let mut empty = Figure::new("nothing".to_owned(), "us", false);
        empty.broker = "RabbitMQ 4.0.5".to_owned();
        let path = std::env::temp_dir().join(format!("bench-chart-{}.svg", std::process::id()));
        draw(&[figure, empty], &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.contains("3.10.8 | drain 10 msgs: throughput (msg/s, higher is better)"));
        assert!(
            !svg.contains("nothing"),
            "a figure without samples has no row"
        );
        assert!(["framework", "raw lapin"]
            .iter()
            .all(|series| svg.lines().any(|l| l.trim() == *series)));
    }

    #[test]
    fn nothing_to_draw_is_an_error() {
        let path = std::env::temp_dir().join("bench-chart-empty.svg");
        assert!(draw(&[], &path).is_err());
    }
}
