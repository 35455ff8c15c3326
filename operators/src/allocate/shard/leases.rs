//! Leases: a placement taken on an executor (or inside a reservation) as an
//! [`Assignment`], and its capacity given back exactly once, when the lease
//! is released or its executor lost; tasks taken back into the queue; the
//! quota bookkeeping when a task is finished.

use crate::allocate::{BackfillMode, GpuPick, Placement};
use crate::model::{Assignment, Lease, Name, Task};

use super::{Decision, ShardAllocator};

impl ShardAllocator {
    pub(super) fn place_in_reservation(
        &mut self,
        task: Task,
        r: usize,
        pool_pick: GpuPick,
        now_us: u64,
        out: &mut Vec<Decision>,
    ) {
        let reservation = &mut self.reservations[r];
        reservation.pool.take(&task.resources, &pool_pick);
        let gpu = reservation.to_executor_pick(&pool_pick);
        let inside = Some((reservation.id.clone(), pool_pick));
        let index = reservation.executor;
        self.placer.executor_mut(index).running += 1;
        self.assign(task, index, gpu, inside, now_us, out);
    }

    pub(super) fn assign(
        &mut self,
        task: Task,
        index: usize,
        gpu: GpuPick,
        reservation: Option<(Name, GpuPick)>,
        now_us: u64,
        out: &mut Vec<Decision>,
    ) {
        self.tenants.placed(&task.tenant, &task.resources);
        if !self.moved_by_summary.is_empty() {
            self.moved_by_summary.remove(&task.id);
        }
        if !self.waiting_for_executor.is_empty() {
            self.waiting_for_executor.remove(&task.id);
        }
        self.capacity_version += 1;
        self.next_lease += 1;
        let lease = Lease(self.next_lease);
        let gpu_devices = gpu.devices();
        // Only EASY backfilling reads expected ends; a prediction per
        // placement is not paid for otherwise.
        let expected_end_us = match self.backfill {
            BackfillMode::Easy => self.expected_end_us(&task, now_us),
            BackfillMode::Greedy => None,
        };
        self.running.insert(
            lease.0,
            Placement {
                executor: index,
                task_id: task.id.clone(),
                tenant: task.tenant.clone(),
                request: task.resources.clone(),
                gpu,
                reservation,
                expected_end_us,
            },
        );
        out.push(Decision::Assign(Assignment {
            executor: self.placer.executors()[index].spec.id.clone(),
            shard: self.shard,
            lease,
            gpu_devices,
            assigned_at_us: now_us,
            task,
        }));
    }

    /// Releases a placement. Returns it, or `None` if the lease was not held
    /// (already released): releasing twice is harmless.
    pub fn release(&mut self, lease: Lease) -> Option<Placement> {
        let placement = self.running.remove(&lease.0)?;
        self.give_back(&placement);
        Some(placement)
    }

    pub(super) fn give_back(&mut self, placement: &Placement) {
        self.tenants.released(&placement.tenant, &placement.request);
        let executor = self.placer.executor_mut(placement.executor);
        let active = placement.reservation.as_ref().and_then(|(id, pool_pick)| {
            self.reservations
                .iter_mut()
                .find(|r| r.id == *id)
                .map(|r| (r, pool_pick))
        });
        match active {
            Some((reservation, pool_pick)) => {
                reservation.pool.give_back(&placement.request, pool_pick);
                executor.running -= 1;
            }
            None => executor.give_back(&placement.request, &placement.gpu),
        }
        if executor.running == 0 && !executor.accepting {
            // A leaving executor is gone once its last attempt finished.
            if self
                .registry
                .get(&executor.spec.id)
                .is_some_and(|e| e.liveness == crate::allocate::Liveness::Leaving)
            {
                self.registry.remove(&executor.spec.id);
            }
        }
        self.dirty = true;
        self.capacity_version += 1;
    }

    /// Whether `lease` was released because its executor was lost (the
    /// attempt's completion then counts as a failure); forgets it.
    pub fn take_lost(&mut self, lease: Lease) -> bool {
        self.lost.remove(&lease.0)
    }

    /// Re-queues a task (for a retry) as if newly submitted.
    pub fn requeue(&mut self, task: Task) {
        self.enqueue(task);
        self.dirty = true;
        self.capacity_version += 1;
    }

    /// Removes queued tasks matching `remove` (cancellation).
    pub fn extract_queued(&mut self, remove: impl FnMut(&Task) -> bool) -> Vec<Task> {
        self.queue.extract(remove)
    }

    /// Settles quota bookkeeping for a task that reached its final outcome
    /// (or was rejected or cancelled) on this shard.
    pub fn finished(&mut self, task: &Task, out: &mut Vec<Decision>) {
        if !self.moved_by_summary.is_empty() {
            self.moved_by_summary.remove(&task.id);
        }
        if !self.waiting_for_executor.is_empty() {
            self.waiting_for_executor.remove(&task.id);
        }
        if self.admitted.is_empty() && self.foreign_admitted.is_empty() {
            return;
        }
        if let Some((tenant, request)) = self.admitted.remove(&task.id) {
            self.tenants.quota_give_back(&tenant, &request);
            self.dirty = true;
            self.capacity_version += 1;
        } else if let Some(home) = self.foreign_admitted.remove(&task.id) {
            out.push(Decision::QuotaRelease {
                shard: home,
                task: task.id.clone(),
            });
        }
    }

    /// A task this home shard admitted finished on another shard.
    pub fn quota_released(&mut self, task: &str) {
        if let Some((tenant, request)) = self.admitted.remove(task) {
            self.tenants.quota_give_back(&tenant, &request);
            self.dirty = true;
            self.capacity_version += 1;
        }
    }
}
