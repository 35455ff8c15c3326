//! Completions: what happened when an assignment ran.

use serde::{Deserialize, Serialize};

use super::{ExecutorId, Lease, Task};

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The handler finished successfully.
    Succeeded,
    /// The handler failed, or the task could not be run.
    Failed {
        /// Why, in words a user can act on.
        reason: String,
    },
    /// The attempt ran past the task's timeout and was stopped.
    TimedOut,
    /// The task was cancelled.
    Cancelled,
}

impl Outcome {
    /// The status word used in records and metrics.
    pub fn status(&self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Failed { .. } => "failed",
            Outcome::TimedOut => "timed_out",
            Outcome::Cancelled => "cancelled",
        }
    }

    /// Whether another attempt may be made after this outcome.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Failed { .. } | Outcome::TimedOut)
    }
}

/// The result of one attempt of a task on an executor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// The task, as it was assigned (with its attempt number and ack token).
    pub task: Task,
    /// Where it ran.
    pub executor: ExecutorId,
    /// Global index of the worker whose shard owns the executor.
    pub shard: u32,
    /// The placement's lease, released when this completion reaches the shard.
    pub lease: Lease,
    /// How it ended.
    pub outcome: Outcome,
    /// When the attempt started, microseconds since the Unix epoch.
    pub started_at_us: u64,
    /// When the attempt finished, microseconds since the Unix epoch.
    pub finished_at_us: u64,
    /// Exit code, for command handlers.
    pub exit_code: Option<i32>,
    /// Size of the handler's output in bytes.
    pub output_bytes: u64,
    /// Whether this is the task's last word (no retry follows).
    pub is_final: bool,
}

impl Completion {
    /// Run time of the attempt in microseconds.
    pub fn run_time_us(&self) -> u64 {
        self.finished_at_us.saturating_sub(self.started_at_us)
    }

    /// Submit-to-finish latency in microseconds.
    pub fn latency_us(&self) -> u64 {
        self.finished_at_us
            .saturating_sub(self.task.submitted_at_us)
    }
}
