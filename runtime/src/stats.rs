//! Counters and latency histograms that the runtime keeps about a run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use hdrhistogram::Histogram;
use serde::Serialize;

use tidewater_operators::model::{Completion, Outcome};

/// Process-wide counters, updated by the workers' sinks.
pub struct PipelineStats {
    finished: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    timed_out: AtomicU64,
    cancelled: AtomicU64,
    rejected: AtomicU64,
    /// Outcomes (finals and rejections) of records that went through the
    /// dataflow, to tell when everything sent in has come out.
    outcomes: AtomicU64,
    latency_us: Mutex<Histogram<u64>>,
    /// Tasks taken in over HTTP and not yet final, by tenant.
    pub backlog: crate::backlog::TenantBacklog,
}

/// A snapshot of [`PipelineStats`].
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct StatsSnapshot {
    /// Tasks with a final outcome.
    pub finished: u64,
    /// Of which succeeded.
    pub succeeded: u64,
    /// Of which failed.
    pub failed: u64,
    /// Of which timed out.
    pub timed_out: u64,
    /// Of which were cancelled.
    pub cancelled: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Median submit-to-finish latency, microseconds.
    pub p50_us: u64,
    /// 99th percentile submit-to-finish latency, microseconds.
    pub p99_us: u64,
}

impl Default for PipelineStats {
    fn default() -> Self {
        PipelineStats {
            finished: AtomicU64::new(0),
            succeeded: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            timed_out: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            outcomes: AtomicU64::new(0),
            latency_us: Mutex::new(new_histogram()),
            backlog: Default::default(),
        }
    }
}

/// A histogram of microseconds from 1 µs to one hour, 3 significant digits.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

impl PipelineStats {
    /// Counts a batch of final completions, recording their latencies.
    pub fn record_finals(&self, finals: &[Completion]) {
        self.backlog.finish(finals);
        let (mut ok, mut failed, mut timed_out, mut cancelled) = (0, 0, 0, 0);
        for c in finals {
            match c.outcome {
                Outcome::Succeeded => ok += 1,
                Outcome::Failed { .. } => failed += 1,
                Outcome::TimedOut => timed_out += 1,
                Outcome::Cancelled => cancelled += 1,
            }
        }
        if let Ok(mut histogram) = self.latency_us.lock() {
            for c in finals {
                let _ = histogram.record(c.latency_us().max(1));
            }
        }
        self.succeeded.fetch_add(ok, Ordering::Relaxed);
        self.failed.fetch_add(failed, Ordering::Relaxed);
        self.timed_out.fetch_add(timed_out, Ordering::Relaxed);
        self.cancelled.fetch_add(cancelled, Ordering::Relaxed);
        self.finished
            .fetch_add(finals.len() as u64, Ordering::Release);
        self.outcomes
            .fetch_add(finals.len() as u64, Ordering::Release);
    }

    /// Counts rejections that came out of the dataflow.
    pub fn record_rejections(&self, count: usize) {
        self.rejected.fetch_add(count as u64, Ordering::Release);
        self.outcomes.fetch_add(count as u64, Ordering::Release);
    }

    /// Counts records refused before they entered the dataflow (HTTP
    /// answers them at once).
    pub fn record_refusals(&self, count: usize) {
        self.rejected.fetch_add(count as u64, Ordering::Release);
    }

    /// Outcomes of records that went through the dataflow so far.
    pub fn outcomes(&self) -> u64 {
        self.outcomes.load(Ordering::Acquire)
    }

    /// Tasks with a final outcome so far.
    pub fn finished(&self) -> u64 {
        self.finished.load(Ordering::Acquire)
    }

    /// Records rejected so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Acquire)
    }

    /// A snapshot of every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        let (p50_us, p99_us) = self
            .latency_us
            .lock()
            .map(|h| (h.value_at_quantile(0.5), h.value_at_quantile(0.99)))
            .unwrap_or_default();
        StatsSnapshot {
            finished: self.finished.load(Ordering::Acquire),
            succeeded: self.succeeded.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            timed_out: self.timed_out.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Acquire),
            p50_us,
            p99_us,
        }
    }
}
