//! Latency percentiles and table printing for benchmark reports.

use std::time::Duration;

/// Latency samples of one measurement.
#[derive(Default)]
pub struct Latencies {
    samples: Vec<Duration>,
}

impl Latencies {
    pub fn record(&mut self, sample: Duration) {
        self.samples.push(sample);
    }

    /// How many samples were recorded.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    pub fn extend(&mut self, other: Latencies) {
        self.samples.extend(other.samples);
    }

    /// The `q` quantile (0.0–1.0) in milliseconds.
    pub fn quantile_ms(&mut self, q: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        self.samples.sort_unstable();
        let index = ((self.samples.len() as f64 - 1.0) * q).round() as usize;
        self.samples[index].as_secs_f64() * 1000.0
    }
}

/// Whether a larger figure is better (throughput) or a smaller one (latency, time).
#[derive(Clone, Copy)]
pub enum Better {
    Higher,
    Lower,
}

/// One row of the comparison table.
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    pub embedded: f64,
    pub etcd: f64,
    pub better: Better,
}

pub fn print_table(title: &str, rows: &[Row]) {
    println!("\n{title}\n");
    println!(
        "| {:<44} | {:>12} | {:>12} | {:>13} |",
        "measurement", "embedded", "etcd", "embedded/etcd"
    );
    println!("|{:-<46}|{:->14}|{:->14}|{:->15}|", "", "", "", "");
    for row in rows {
        let ratio = row.embedded / row.etcd;
        let verdict = match row.better {
            Better::Higher if ratio >= 1.0 => "",
            Better::Lower if ratio <= 1.0 => "",
            _ => " (worse)",
        };
        println!(
            "| {:<44} | {:>12} | {:>12} | {:>13} |",
            format!("{} ({})", row.name, row.unit),
            format_figure(row.embedded),
            format_figure(row.etcd),
            format!("{ratio:.2}x{verdict}")
        );
    }
}

fn format_figure(value: f64) -> String {
    if value >= 100.0 {
        format!("{value:.0}")
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}
