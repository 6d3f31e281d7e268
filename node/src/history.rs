//! The last hour of the node's activity, for the status page's charts: one sample of a
//! few cumulative counters a minute, at most 61 of them (60 intervals). Nothing leaves
//! the node and nothing is written to disk.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// How often a sample is taken.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(60);

/// Samples kept: an hour of intervals.
pub(crate) const SAMPLES: usize = 61;

/// Cumulative counters at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// When, in seconds since the node started.
    pub at: u64,
    /// Local requests started and found.
    pub local: u64,
    pub local_succeeded: u64,
    /// Requests received from peers.
    pub received: u64,
    /// Link bytes sent and received.
    pub sent: u64,
    pub bytes_received: u64,
}

/// The samples, oldest first.
#[derive(Debug, Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
}

impl History {
    pub(crate) fn push(&self, s: Sample) {
        let mut q = self.samples.lock().expect("history lock");
        if q.len() == SAMPLES {
            q.pop_front();
        }
        q.push_back(s);
    }

    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .expect("history lock")
            .iter()
            .copied()
            .collect()
    }
}

/// Per-interval differences of `pick` over consecutive samples.
pub(crate) fn deltas(samples: &[Sample], pick: impl Fn(&Sample) -> u64) -> Vec<u64> {
    samples
        .windows(2)
        .map(|w| pick(&w[1]).saturating_sub(pick(&w[0])))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(at: u64, local: u64) -> Sample {
        Sample {
            at,
            local,
            local_succeeded: 0,
            received: 0,
            sent: 0,
            bytes_received: 0,
        }
    }

    #[test]
    fn keeps_the_last_hour_oldest_first() {
        let h = History::default();
        for i in 0..(SAMPLES as u64 + 5) {
            h.push(s(i * 60, i));
        }
        let v = h.samples();
        assert_eq!(v.len(), SAMPLES);
        assert_eq!(v[0].local, 5);
        assert_eq!(v.last().map(|x| x.local), Some(SAMPLES as u64 + 4));
    }

    #[test]
    fn deltas_are_per_interval_and_never_negative() {
        let v = [s(0, 3), s(60, 10), s(120, 10), s(180, 2)];
        assert_eq!(deltas(&v, |x| x.local), vec![7, 0, 0]);
        assert!(deltas(&v[..1], |x| x.local).is_empty());
    }
}
