//! Samples and their summary: median, min and max over a number of runs.

use std::time::Instant;

use serde_json::{Value, json};

use crate::workspace::Result;

/// Median, min and max of a set of samples, in one unit.
#[derive(Clone, Debug)]
pub struct Stats {
    /// The middle sample (upper middle for an even count).
    pub median: f64,
    /// The smallest sample.
    pub min: f64,
    /// The largest sample.
    pub max: f64,
    /// How many samples were taken.
    pub runs: usize,
}

impl Stats {
    /// Summarises `samples`; `None` when there are none.
    pub fn of(mut samples: Vec<f64>) -> Option<Stats> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        Some(Stats { median: samples[samples.len() / 2], min: samples[0], max: samples[samples.len() - 1], runs: samples.len() })
    }

    /// The same figures, as JSON fields.
    pub fn json(&self) -> Value {
        json!({ "median": self.median, "min": self.min, "max": self.max, "runs": self.runs })
    }
}

/// Times `runs` calls of `f` after one untimed warm-up call; milliseconds.
pub fn time_runs(runs: usize, mut f: impl FnMut() -> Result<()>) -> Result<Vec<f64>> {
    f()?;
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let begin = Instant::now();
        f()?;
        samples.push(begin.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(samples)
}

/// Turns durations in milliseconds for moving `bytes` into GB/s (10^9 bytes/s).
pub fn throughput_gbps(bytes: u64, millis: &[f64]) -> Vec<f64> {
    millis.iter().map(|ms| bytes as f64 / (ms / 1000.0) / 1e9).collect()
}
