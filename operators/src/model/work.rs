//! What a coordinator asks of its executors: run an assignment, or stop one.

use serde::{Deserialize, Serialize};

use super::{Assignment, Lease};

/// Why a running attempt is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbortReason {
    /// The task was cancelled; its completion is final.
    Cancelled,
    /// The executor was declared lost; the coordinator already released the
    /// lease and the attempt counts as failed.
    ExecutorLost,
}

/// One instruction for the `Execute` operator.
// `Run` is the hot path (one per attempt); boxing it to shrink the rare
// `Abort` would cost an allocation per task.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ExecutorWork {
    /// Start this attempt.
    Run(Assignment),
    /// Stop the attempt holding `lease`, if it still runs, and report its
    /// completion with an outcome saying why.
    Abort {
        /// The attempt's lease.
        lease: Lease,
        /// Why.
        reason: AbortReason,
    },
}
