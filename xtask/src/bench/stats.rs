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

/// One of several commands timed in turn by [`time_interleaved`].
pub struct Contender<'a> {
    /// How many rounds it takes part in (the first `runs` ones).
    pub runs: usize,
    /// One timed call.
    pub call: Box<dyn FnMut() -> Result<()> + 'a>,
}

impl<'a> Contender<'a> {
    /// `call`, timed in `runs` rounds.
    pub fn new(runs: usize, call: impl FnMut() -> Result<()> + 'a) -> Self {
        Contender { runs, call: Box::new(call) }
    }
}

/// Times several commands in turn, round after round, after one untimed
/// warm-up call of each; milliseconds, one list per contender. A VM's speed
/// drifts (by ±30% within an hour on the benchmarks' machine): timed in
/// turn, a figure and its anchors see the same machine, so their ratio
/// holds even when the absolute figures move.
pub fn time_interleaved(contenders: &mut [Contender]) -> Result<Vec<Vec<f64>>> {
    for contender in contenders.iter_mut() {
        (contender.call)()?;
    }
    let mut samples: Vec<Vec<f64>> = contenders.iter().map(|c| Vec::with_capacity(c.runs)).collect();
    let rounds = contenders.iter().map(|c| c.runs).max().unwrap_or(0);
    for round in 0..rounds {
        for (contender, samples) in contenders.iter_mut().zip(&mut samples) {
            if round < contender.runs {
                let begin = Instant::now();
                (contender.call)()?;
                samples.push(begin.elapsed().as_secs_f64() * 1000.0);
            }
        }
    }
    Ok(samples)
}

/// Turns durations in milliseconds for moving `bytes` into GB/s (10^9 bytes/s).
pub fn throughput_gbps(bytes: u64, millis: &[f64]) -> Vec<f64> {
    millis.iter().map(|ms| bytes as f64 / (ms / 1000.0) / 1e9).collect()
}
