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

/// One of several commands timed in turn by [`time_interleaved`].
pub struct Contender<'a> {
    /// How many timed calls it gets.
    pub runs: usize,
    /// One call; its own measurement in ms when it times itself.
    pub call: Box<dyn FnMut() -> Result<Option<f64>> + 'a>,
}

impl<'a> Contender<'a> {
    /// `call`, timed `runs` times.
    pub fn new(runs: usize, mut call: impl FnMut() -> Result<()> + 'a) -> Self {
        Contender { runs, call: Box::new(move || call().map(|()| None)) }
    }

    /// `call`, which returns its own measurement in ms (a part of what it
    /// does, such as the time to a first byte), `runs` times.
    pub fn self_timed(runs: usize, mut call: impl FnMut() -> Result<f64> + 'a) -> Self {
        Contender { runs, call: Box::new(move || call().map(Some)) }
    }
}

/// How [`time_interleaved`] takes turns.
#[derive(Clone, Copy)]
pub struct Turns {
    /// Timed calls of one contender in a row.
    pub block: usize,
    /// Whether each turn starts with one untimed call, which absorbs what the
    /// previous contender left running (an sshd closing its session, an
    /// agent closing its connection) instead of charging it to this one.
    pub settle: bool,
}

/// Times several commands in turn, `turns.block` calls at a time, after one
/// untimed warm-up call of each; milliseconds, one list per contender. A VM's
/// speed drifts (by ±50% within an hour on the benchmarks' machine): timed
/// in turn, a figure and its anchors see the same machine, so their ratio
/// holds even when the absolute figures move.
pub fn time_interleaved(contenders: &mut [Contender], turns: Turns) -> Result<Vec<Vec<f64>>> {
    for contender in contenders.iter_mut() {
        (contender.call)()?;
    }
    let mut samples: Vec<Vec<f64>> = contenders.iter().map(|c| Vec::with_capacity(c.runs)).collect();
    while contenders.iter().zip(&samples).any(|(c, s)| s.len() < c.runs) {
        for (contender, samples) in contenders.iter_mut().zip(&mut samples) {
            let take = turns.block.min(contender.runs - samples.len());
            if take == 0 {
                continue;
            }
            if turns.settle {
                (contender.call)()?;
            }
            for _ in 0..take {
                let begin = Instant::now();
                let own = (contender.call)()?;
                samples.push(own.unwrap_or_else(|| begin.elapsed().as_secs_f64() * 1000.0));
            }
        }
    }
    Ok(samples)
}

/// Turns durations in milliseconds for moving `bytes` into GB/s (10^9 bytes/s).
pub fn throughput_gbps(bytes: u64, millis: &[f64]) -> Vec<f64> {
    millis.iter().map(|ms| bytes as f64 / (ms / 1000.0) / 1e9).collect()
}
