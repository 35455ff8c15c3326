//! One worker's shard: its executors, its wait queue and its running leases.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::model::{Assignment, ExecutorSpec, Lease, RejectReason, ResourceRequest, Task, TaskId};

use super::{policy_by_name, ExecutorState, FeasibilityIndex, GpuPick, PlacementPolicy, TaskQueue};

/// Allocator settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllocatorConfig {
    /// Placement policy name (see [`super::POLICY_NAMES`]).
    pub policy: String,
    /// How many queued tasks that do not fit are passed over, per scheduling
    /// round, in search of one that does (backfilling).
    pub backfill_depth: usize,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            policy: "best_fit".to_string(),
            backfill_depth: 64,
        }
    }
}

/// What the allocator decided for a task.
#[derive(Debug)]
pub enum Decision {
    /// Placed on one of this shard's executors.
    Assign(Assignment),
    /// This shard can never hold it, but `shard` can.
    Forward {
        /// The task.
        task: Task,
        /// A shard with an executor that could hold it.
        shard: u32,
    },
    /// It can never run, or can no longer run.
    Reject {
        /// The task.
        task: Task,
        /// Why.
        reason: RejectReason,
    },
}

/// A running placement, kept until its lease is released.
#[derive(Clone, Debug, PartialEq)]
pub struct Placement {
    /// Index of the executor in the shard.
    pub executor: usize,
    /// The task's id.
    pub task_id: TaskId,
    /// What it holds.
    pub request: ResourceRequest,
    /// Which GPU devices it holds.
    pub gpu: GpuPick,
}

/// A broken accounting invariant, found by [`ShardAllocator::check_invariants`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("executor {executor}: {detail}")]
pub struct InvariantViolation {
    /// The executor whose books do not balance.
    pub executor: String,
    /// What does not balance.
    pub detail: String,
}

/// A shard allocator: places tasks on the executors it owns.
pub struct ShardAllocator {
    shard: u32,
    executors: Vec<ExecutorState>,
    queue: TaskQueue,
    running: HashMap<u64, Placement>,
    next_lease: u64,
    policy: Box<dyn PlacementPolicy>,
    feasibility: FeasibilityIndex,
    /// Capacity was freed or added since the queue was last examined.
    dirty: bool,
    backfill_depth: usize,
    forward_cursor: usize,
}

impl ShardAllocator {
    /// A shard `shard` owning `executors`, with `feasibility` describing the
    /// whole cluster. Fails on an unknown policy name.
    pub fn new(
        shard: u32,
        executors: Vec<ExecutorSpec>,
        feasibility: FeasibilityIndex,
        config: &AllocatorConfig,
    ) -> Result<Self, String> {
        let policy = policy_by_name(&config.policy)
            .ok_or_else(|| format!("unknown placement policy {:?}", config.policy))?;
        Ok(Self::with_policy(
            shard,
            executors,
            feasibility,
            policy,
            config.backfill_depth,
        ))
    }

    /// Like [`new`](Self::new) with a policy object.
    pub fn with_policy(
        shard: u32,
        executors: Vec<ExecutorSpec>,
        feasibility: FeasibilityIndex,
        policy: Box<dyn PlacementPolicy>,
        backfill_depth: usize,
    ) -> Self {
        ShardAllocator {
            shard,
            executors: executors.into_iter().map(ExecutorState::new).collect(),
            queue: TaskQueue::new(),
            running: HashMap::new(),
            next_lease: 0,
            policy,
            feasibility,
            dirty: false,
            backfill_depth: backfill_depth.max(1),
            forward_cursor: 0,
        }
    }

    /// This shard's index.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// This shard's executors.
    pub fn executors(&self) -> &[ExecutorState] {
        &self.executors
    }

    /// Tasks waiting for capacity.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Placements holding resources.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// The placement behind a lease, if it is still held.
    pub fn placement(&self, lease: Lease) -> Option<&Placement> {
        self.running.get(&lease.0)
    }

    /// Offers a new task. It is placed at once when the shard has room and
    /// nothing queued outranks it, queued otherwise, forwarded when only
    /// another shard could ever hold it, and rejected when none could.
    pub fn submit(&mut self, task: Task, now_us: u64, out: &mut Vec<Decision>) {
        if let Some(reason) = expired(&task, now_us) {
            out.push(Decision::Reject { task, reason });
            return;
        }
        let capable = self.feasibility.capable_shards(&task.resources);
        if capable.is_empty() {
            let reason = RejectReason::Infeasible {
                detail: self.feasibility.explain(&task.resources),
            };
            out.push(Decision::Reject { task, reason });
            return;
        }
        if !capable.contains(&self.shard) {
            let shard = capable[self.forward_cursor % capable.len()];
            self.forward_cursor = self.forward_cursor.wrapping_add(1);
            out.push(Decision::Forward { task, shard });
            return;
        }
        // Queued tasks did not fit when last examined and nothing was freed
        // since, so a newcomer that fits may go ahead of them (backfill).
        if !self.dirty {
            if let Some(task) = self.try_place(task, now_us, out) {
                self.queue.push(task);
            }
        } else {
            self.queue.push(task);
        }
    }

    /// Places what it can from the queue, if capacity was freed since the
    /// last round. Expired tasks met on the way are rejected.
    pub fn schedule(&mut self, now_us: u64, out: &mut Vec<Decision>) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let mut passed_over = Vec::new();
        while passed_over.len() < self.backfill_depth {
            let Some((task, seq)) = self.queue.pop_entry() else {
                break;
            };
            if let Some(reason) = expired(&task, now_us) {
                out.push(Decision::Reject { task, reason });
                continue;
            }
            if let Some(task) = self.try_place(task, now_us, out) {
                passed_over.push((task, seq));
            }
        }
        for (task, seq) in passed_over {
            self.queue.restore(task, seq);
        }
    }

    /// Places `task` now if an executor fits; gives it back otherwise.
    fn try_place(&mut self, task: Task, now_us: u64, out: &mut Vec<Decision>) -> Option<Task> {
        let Some(index) = self.policy.choose(&task.resources, &self.executors) else {
            return Some(task);
        };
        let executor = &mut self.executors[index];
        let Some(gpu) = executor.fit(&task.resources) else {
            return Some(task);
        };
        executor.take(&task.resources, &gpu);
        self.next_lease += 1;
        let lease = Lease(self.next_lease);
        let gpu_devices = gpu.devices();
        self.running.insert(
            lease.0,
            Placement {
                executor: index,
                task_id: task.id.clone(),
                request: task.resources.clone(),
                gpu,
            },
        );
        out.push(Decision::Assign(Assignment {
            executor: executor.spec.id.clone(),
            shard: self.shard,
            lease,
            gpu_devices,
            assigned_at_us: now_us,
            task,
        }));
        None
    }

    /// Releases a placement. Returns it, or `None` if the lease was not held
    /// (already released): releasing twice is harmless.
    pub fn release(&mut self, lease: Lease) -> Option<Placement> {
        let placement = self.running.remove(&lease.0)?;
        self.executors[placement.executor].give_back(&placement.request, &placement.gpu);
        self.dirty = true;
        Some(placement)
    }

    /// Re-queues a task (for a retry) as if newly submitted.
    pub fn requeue(&mut self, task: Task) {
        self.queue.push(task);
        self.dirty = true;
    }

    /// Removes queued tasks matching `remove` (cancellation, executor loss).
    pub fn extract_queued(&mut self, remove: impl FnMut(&Task) -> bool) -> Vec<Task> {
        self.queue.extract(remove)
    }

    /// Checks that each executor's free capacity equals its capacity minus
    /// the requests of the leases placed on it, and is never negative.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let mut expected: Vec<ExecutorState> = self
            .executors
            .iter()
            .map(|e| ExecutorState::new(e.spec.clone()))
            .collect();
        for p in self.running.values() {
            let e = &mut expected[p.executor];
            let fits = e.fit(&p.request).is_some_and(|_| true);
            let gpu_ok = match &p.gpu {
                GpuPick::None => true,
                GpuPick::Share { device, milli } => {
                    e.free_gpu_milli[usize::from(*device)] >= *milli
                }
                GpuPick::Whole(ds) => ds.iter().all(|d| e.free_gpu_milli[usize::from(*d)] == 1000),
            };
            if !fits || !gpu_ok {
                return Err(InvariantViolation {
                    executor: e.spec.id.to_string(),
                    detail: format!("running leases exceed capacity at task {}", p.task_id),
                });
            }
            e.take(&p.request, &p.gpu);
        }
        for (actual, expected) in self.executors.iter().zip(&expected) {
            let same = actual.free_cpu_milli == expected.free_cpu_milli
                && actual.free_memory_mib == expected.free_memory_mib
                && actual.free_gpu_milli == expected.free_gpu_milli
                && actual.free_custom == expected.free_custom
                && actual.running == expected.running;
            if !same {
                return Err(InvariantViolation {
                    executor: actual.spec.id.to_string(),
                    detail: format!(
                        "free cpu {} mem {} gpu {:?} running {}, expected cpu {} mem {} gpu {:?} running {}",
                        actual.free_cpu_milli,
                        actual.free_memory_mib,
                        actual.free_gpu_milli,
                        actual.running,
                        expected.free_cpu_milli,
                        expected.free_memory_mib,
                        expected.free_gpu_milli,
                        expected.running
                    ),
                });
            }
        }
        Ok(())
    }
}

fn expired(task: &Task, now_us: u64) -> Option<RejectReason> {
    let deadline_ms = task.deadline_ms?;
    (now_us / 1000 > deadline_ms).then_some(RejectReason::DeadlinePassed { deadline_ms })
}
