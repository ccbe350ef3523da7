//! Figures (repeated samples per side), their summary, and the table.

use std::fmt::Write as _;

use super::Side;

/// One figure measured on the framework and on a baseline, once per repetition.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The broker it was measured on (product and version).
    pub broker: String,
    /// What was measured.
    pub name: String,
    /// The unit of the samples.
    pub unit: &'static str,
    /// Whether a larger value is better (throughput) or worse (CPU, latency, memory).
    pub higher_is_better: bool,
    /// Which baseline the framework is compared with.
    pub baseline_name: &'static str,
    /// The framework's samples, one per repetition.
    pub framework: Vec<f64>,
    /// The baseline's samples, one per repetition.
    pub baseline: Vec<f64>,
}

impl Figure {
    /// A figure compared with the raw lapin consumer that hands acks off.
    pub(crate) fn new(name: String, unit: &'static str, higher_is_better: bool) -> Self {
        Figure {
            broker: String::new(),
            name,
            unit,
            higher_is_better,
            baseline_name: "lapin",
            framework: Vec::new(),
            baseline: Vec::new(),
        }
    }

    /// A figure compared with the naive lapin loop that awaits every ack.
    pub(crate) fn naive(name: String, unit: &'static str, higher_is_better: bool) -> Self {
        Figure::new(name, unit, higher_is_better).against("naive lapin")
    }

    /// The same figure compared with another baseline.
    pub(crate) fn against(self, baseline_name: &'static str) -> Self {
        Figure {
            baseline_name,
            ..self
        }
    }

    pub(crate) fn push(&mut self, side: Side, value: f64) {
        match side {
            Side::Framework => self.framework.push(value),
            Side::Lapin | Side::LapinNaive => self.baseline.push(value),
        }
    }

    /// Framework median / baseline median.
    pub fn ratio(&self) -> Option<f64> {
        let f = Summary::of(&self.framework)?;
        let b = Summary::of(&self.baseline)?;
        (b.median != 0.0).then(|| f.median / b.median)
    }
}

/// Median, minimum and maximum of some samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// The median (mean of the middle two for an even count).
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
}

impl Summary {
    /// The summary of `samples`, `None` when there are none.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        if samples.is_empty() {
            return None;
        }
        let mut v = samples.to_vec();
        v.sort_by(f64::total_cmp);
        let mid = v.len() / 2;
        let median = if v.len().is_multiple_of(2) {
            (v[mid - 1] + v[mid]) / 2.0
        } else {
            v[mid]
        };
        Some(Summary {
            median,
            min: v[0],
            max: v[v.len() - 1],
        })
    }
}

/// A verified consuming (or publishing) run.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The scenario (`drain`, `latency`, `memory`, `failure`, `publish`).
    pub scenario: String,
    /// Who consumed (or published).
    pub side: Side,
    /// Distinct messages the run had to handle (or publish).
    pub expected: u64,
    /// Messages resolved exactly once (handled, or parked in park mode).
    pub resolved: u64,
    /// Handler runs (expected ones plus redelivered attempts); 0 for publishing.
    pub handler_runs: u64,
    /// Messages found in the parking queue afterwards.
    pub parked: u64,
}

/// Formats a number for the table: thousands separators from 1,000, fewer
/// decimals for larger values.
pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".to_owned();
    }
    if v.abs() >= 1000.0 {
        let n = v.round() as i64;
        let digits = n.unsigned_abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if n < 0 {
            out.insert(0, '-');
        }
        out
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn cell(samples: &[f64]) -> String {
    match Summary::of(samples) {
        None => "-".to_owned(),
        Some(s) if samples.len() == 1 => num(s.median),
        Some(s) => format!("{} [{} .. {}]", num(s.median), num(s.min), num(s.max)),
    }
}

/// Whether column `i` of the table holds text (left-aligned), not numbers.
fn is_text(i: usize) -> bool {
    matches!(i, 0 | 1 | 2 | 4)
}

/// The figures as a Markdown table, columns padded for the terminal.
pub fn table(figures: &[Figure]) -> String {
    let header = [
        "broker",
        "figure",
        "unit",
        "framework median [min .. max]",
        "baseline",
        "baseline median [min .. max]",
        "framework / baseline",
    ];
    let rows: Vec<[String; 7]> = figures
        .iter()
        .map(|f| {
            [
                f.broker.clone(),
                f.name.clone(),
                f.unit.to_owned(),
                cell(&f.framework),
                f.baseline_name.to_owned(),
                cell(&f.baseline),
                f.ratio()
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        out.push('|');
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            let pad = w - c.chars().count();
            // Text columns left-aligned, numbers right-aligned.
            if is_text(i) {
                let _ = write!(out, " {c}{} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {}{c} |", " ".repeat(pad));
            }
        }
        out.push('\n');
    };
    line(&mut out, &header.map(str::to_owned));
    out.push('|');
    for (i, w) in widths.iter().enumerate() {
        let dashes = "-".repeat(*w);
        if is_text(i) {
            let _ = write!(out, " {dashes} |");
        } else {
            let _ = write!(out, "{dashes}-:|");
        }
    }
    out.push('\n');
    for row in &rows {
        line(&mut out, row);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_numbers() {
        let s = Summary::of(&[3.0, 1.0, 2.0, 10.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 10.0));
        assert_eq!(num(29_000.4), "29,000");
        assert_eq!(num(1_234_567.0), "1,234,567");
        assert_eq!(num(17.04), "17.0");
        assert_eq!(num(0.5), "0.50");
    }
}
