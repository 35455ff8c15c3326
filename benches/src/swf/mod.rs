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

/// Why a log could not be simulated.
#[derive(Debug, thiserror::Error)]
pub enum SwfError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not a valid SWF job.
    #[error("{path} line {line}: {detail}")]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        detail: String,
    },
    /// The policy name is not known.
    #[error("unknown policy {0:?}: use fcfs, user-estimate or learned")]
    UnknownPolicy(String),
    /// No runnable job.
    #[error("{0}: no job with a positive run time and processor count")]
    Empty(String),
}

/// One job of the log.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Job number.
    pub id: u64,
    /// Submit time, seconds.
    pub submit: f64,
    /// Recorded run time, seconds.
    pub run: f64,
    /// Processors.
    pub procs: u32,
    /// The user's requested time, seconds, as declared (some jobs ran
    /// longer); the run time when the log does not give one.
    pub requested: f64,
    /// User id.
    pub user: i64,
    /// Queue number.
    pub queue: i64,
}

/// A parsed log.
#[derive(Clone, Debug)]
pub struct Workload {
    /// Processors in the machine.
    pub processors: u32,
    /// Jobs in submit order.
    pub jobs: Vec<Job>,
}

/// Reads an SWF file. Header lines start with `;`; each job line has at
/// least 18 whitespace-separated fields (more are accepted and ignored).
/// Jobs without a positive run time or processor count are skipped.
pub fn read_swf(path: &Path) -> Result<Workload, SwfError> {
    let name = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SwfError::Read {
        path: name.clone(),
        source,
    })?;
    let mut max_procs: Option<u32> = None;
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(header) = line.strip_prefix(';') {
            if let Some(value) = header.trim().strip_prefix("MaxProcs:") {
                max_procs = value.trim().parse().ok();
            }
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let invalid = |detail: String| SwfError::Invalid {
            path: name.clone(),
            line: i + 1,
            detail,
        };
        if fields.len() < 18 {
            return Err(invalid(format!("{} fields, expected 18", fields.len())));
        }
        let number = |k: usize| -> Result<f64, SwfError> {
            fields[k]
                .parse::<f64>()
                .map_err(|e| invalid(format!("field {} {:?}: {e}", k + 1, fields[k])))
        };
        let (id, submit, run) = (number(0)?, number(1)?, number(3)?);
        let allocated = number(4)?;
        let requested_procs = number(7)?;
        let requested_time = number(8)?;
        let procs = if allocated > 0.0 {
            allocated
        } else {
            requested_procs
        };
        if run <= 0.0 || procs <= 0.0 {
            continue;
        }
        jobs.push(Job {
            id: id as u64,
            submit,
            run,
            procs: procs as u32,
            // As the user declared it, even where the job ran longer: the
            // estimators may not learn the run time from it.
            requested: if requested_time > 0.0 {
                requested_time
            } else {
                run
            },
            user: number(11)? as i64,
            queue: number(14)? as i64,
        });
    }
    if jobs.is_empty() {
        return Err(SwfError::Empty(name));
    }
    jobs.sort_by(|a, b| a.submit.total_cmp(&b.submit).then(a.id.cmp(&b.id)));
    let largest = jobs.iter().map(|j| j.procs).max().unwrap_or(1);
    Ok(Workload {
        processors: max_procs.unwrap_or(largest).max(largest),
        jobs,
    })
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
