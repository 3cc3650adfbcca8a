//! Samples and their summaries: arms run in alternation over rounds, so that machine noise
//! (another build, a frequency change) falls on every arm alike; figures are taken over all
//! samples of an arm.

use std::time::Duration;

use anyhow::Result;

/// The nearest-rank percentile `p` (0..=1) of `samples`.
pub(super) fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index]
}

/// Milliseconds with two decimals.
pub(super) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

/// `a − b` in milliseconds, signed (an arm may come out faster than its floor).
pub(super) fn ms_diff(a: Duration, b: Duration) -> String {
    format!("{:+.2} ms", (a.as_secs_f64() - b.as_secs_f64()) * 1000.0)
}

/// `a / b`.
pub(super) fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}

/// What one arm produced over all rounds.
#[derive(Debug, Default, Clone)]
pub(super) struct Arm {
    /// Every sample, in the order taken.
    pub(super) samples: Vec<Duration>,
    /// The median of each round's batch.
    pub(super) round_p50: Vec<Duration>,
}

impl Arm {
    pub(super) fn p50(&self) -> Duration {
        percentile(&self.samples, 0.5)
    }

    pub(super) fn p99(&self) -> Duration {
        percentile(&self.samples, 0.99)
    }

    /// The smallest and largest per-round difference of medians `self − floor`, in ms: how far
    /// apart single rounds put the overhead.
    pub(super) fn round_spread(&self, floor: &Arm) -> String {
        let diffs: Vec<f64> = self
            .round_p50
            .iter()
            .zip(&floor.round_p50)
            .map(|(a, b)| (a.as_secs_f64() - b.as_secs_f64()) * 1000.0)
            .collect();
        let min = diffs.iter().copied().fold(f64::INFINITY, f64::min);
        let max = diffs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        format!("{min:+.2} … {max:+.2} ms")
    }
}

/// Runs `batch(arm)` for each of `count` arms once per round for `rounds` rounds, the arm that
/// goes first rotating from round to round; returns the arms' samples in arm order.
pub(super) async fn alternate<F>(rounds: usize, count: usize, mut batch: F) -> Result<Vec<Arm>>
where
    F: AsyncFnMut(usize) -> Result<Vec<Duration>>,
{
    let mut arms = vec![Arm::default(); count];
    for round in 0..rounds {
        for step in 0..count {
            let index = (round + step) % count;
            let samples = batch(index).await?;
            anyhow::ensure!(!samples.is_empty(), "a batch gave no samples");
            arms[index].round_p50.push(percentile(&samples, 0.5));
            arms[index].samples.extend(samples);
        }
    }
    Ok(arms)
}
