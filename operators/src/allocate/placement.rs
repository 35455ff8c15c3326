//! A running placement: which executor, devices and reservation a task
//! holds from its assignment until its lease is released. The shard
//! allocator keeps one per running lease; EASY backfilling reads their
//! expected ends to find when capacity frees up.

use crate::model::{Name, ResourceRequest, TaskId};

use super::GpuPick;

/// A running placement, kept until its lease is released.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// Index of the executor in the shard.
    pub executor: usize,
    /// The task's id.
    pub task_id: TaskId,
    /// The task's tenant.
    pub tenant: Name,
    /// What it holds.
    pub request: ResourceRequest,
    /// Which of the executor's GPU devices it holds.
    pub gpu: GpuPick,
    /// The reservation it runs inside, with the devices it holds there.
    pub reservation: Option<(Name, GpuPick)>,
    /// When it is expected to end (µs since the epoch), by its run-time
    /// estimate when placed; `None` without one, and always under greedy
    /// backfilling, which does not use it.
    pub expected_end_us: Option<u64>,
}
