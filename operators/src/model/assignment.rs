//! Assignments: a task placed on an executor.

use serde::{Deserialize, Serialize};

use super::{ExecutorId, Task};

/// A shard-local handle on one placement, used to release it exactly once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Lease(pub u64);

/// A task placed on an executor, with the devices it was given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The task to run.
    pub task: Task,
    /// The executor chosen.
    pub executor: ExecutorId,
    /// Global index of the worker whose shard owns the executor.
    pub shard: u32,
    /// The placement's lease in that shard.
    pub lease: Lease,
    /// Indices of the executor's GPU devices given to the task.
    pub gpu_devices: Vec<u8>,
    /// When it was placed, microseconds since the Unix epoch.
    pub assigned_at_us: u64,
}
