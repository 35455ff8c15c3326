//! Experience: what the learner trains on.

use serde::{Deserialize, Serialize};

use super::Name;

/// Features known when a task was submitted, with the outcome observed when
/// it finished. One per final completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Experience {
    /// Task kind.
    pub task_kind: Name,
    /// Tenant or user.
    pub tenant: Name,
    /// Requested CPU in thousandths of a core.
    pub cpu_milli: u32,
    /// Requested memory in MiB.
    pub memory_mib: u32,
    /// Requested GPU in thousandths.
    pub gpu_milli: u32,
    /// The user's own run-time estimate in seconds, when given.
    pub requested_runtime_s: Option<u32>,
    /// Queue or source the task came from.
    pub queue: Name,
    /// Hour of day (0..24, UTC) at submission.
    pub hour_of_day: u8,
    /// Payload size in bytes.
    pub payload_bytes: u32,
    /// Class of the executor that ran it.
    pub executor_class: Name,
    /// Observed run time in seconds.
    pub run_time_s: f64,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// When it finished, milliseconds since the Unix epoch.
    pub finished_at_ms: u64,
}
