//! Simulation of a batch cluster from a Standard Workload Format (SWF) log.
//!
//! Jobs arrive at their submit time and need their processor count for
//! their recorded run time; the cluster has the log's `MaxProcs` (or the
//! largest request). Policies:
//!
//! - `fcfs`: strict first come, first served, no backfilling;
//! - `user-estimate`: EASY backfilling (the queue head gets a reservation;
//!   later jobs may start early if they do not delay it) with the user's
//!   requested time as each job's run-time estimate, backfill candidates in
//!   arrival order;
//! - `learned`: the same EASY backfilling with estimates from an online
//!   model of log run time, trained only on jobs that have finished before
//!   each decision (no peeking), capped by the requested time (jobs are
//!   killed there on real clusters);
//! - `user-estimate-sjbf` and `learned-sjbf`: the same two estimators, with
//!   backfill candidates tried shortest-estimate-first instead of in arrival
//!   order (the head and its reservation are unchanged). Comparing the two
//!   `-sjbf` variants isolates what the learned estimates add.
//!
//! Data flow of the learned estimator: a job's features are computed at
//! each decision from what it declared at submission (user, queue, hour,
//! processors, requested time) and from the history of jobs that had
//! finished by then (the user's last two run times, the last run time of
//! the same user with the same request); when a job finishes, the features
//! it was started with and its log run time become a training sample.
//!
//! A running job that outlives its estimate gets a new one (twice its
//! elapsed time, at least a minute more, at most its requested time) when
//! the head's reservation is computed; actual run times are never read
//! before a job has finished.

mod predictor;
mod simulate;

use std::path::Path;

use serde::Serialize;

pub use simulate::simulate;

pub use tidewater_connectors::trace::swf::{parse_swf, read_swf, Job, Workload};
use tidewater_connectors::trace::TraceError;

/// Why a log could not be simulated.
#[derive(Debug, thiserror::Error)]
pub enum SwfError {
    /// The log could not be read or parsed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// The policy name is not known.
    #[error("unknown policy {0:?}: use fcfs, user-estimate or learned")]
    UnknownPolicy(String),
}

/// The outcome of a simulation.
#[derive(Clone, Debug, Serialize)]
pub struct SwfReport {
    /// Policy name.
    pub policy: String,
    /// How backfill candidates are ordered: `none` (FCFS), `arrival` or
    /// `shortest_estimate_first`.
    pub backfill_order: String,
    /// Jobs simulated.
    pub jobs: usize,
    /// Processors.
    pub processors: u32,
    /// Mean wait, seconds.
    pub mean_wait_s: f64,
    /// Mean bounded slowdown, τ = 10 s.
    pub mean_bounded_slowdown: f64,
    /// Busy processor-seconds over available processor-seconds from the
    /// first submit to the last finish.
    pub utilization: f64,
    /// Last finish minus first submit, seconds.
    pub makespan_s: f64,
    /// Median |ln(estimate) − ln(actual)| of the estimates used when jobs
    /// started (for every EASY policy, so user estimates can be compared).
    pub median_abs_log_error: Option<f64>,
    /// For learned policies: samples the model trained on.
    pub trained_samples: Option<u64>,
}

/// Every policy [`simulate`] accepts, baseline first.
pub const POLICIES: [&str; 5] = [
    "fcfs",
    "user-estimate",
    "user-estimate-sjbf",
    "learned",
    "learned-sjbf",
];

/// Reads and simulates an SWF file (the `tidewater replay --swf` command).
pub fn replay_swf(path: &Path, policy: &str) -> Result<SwfReport, SwfError> {
    simulate(&read_swf(path)?, policy)
}
