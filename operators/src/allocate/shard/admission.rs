//! Admission and routing: a task offered to the shard is checked (deadline,
//! quota bound, feasibility), then placed in a reservation of its holder or
//! on an executor by the policy, queued, or forwarded to another shard;
//! [`ShardAllocator::schedule`] takes what it can from the queue after
//! capacity was freed, under greedy or EASY backfilling. Capacity
//! summaries from other shards steer forwarding.

use crate::allocate::backfill::shadow_for;
use crate::allocate::{BackfillMode, CapacitySummary, QueueOrder, Shadow};
use crate::learn::model::ModelError;
use crate::learn::predict::{deadline_feasible, ModelPredictor, RunTimePredictor};
use crate::model::{ModelUpdate, RejectReason, Task};

use super::{home_shard, Decision, ForwardNote, ShardAllocator};

impl ShardAllocator {
    /// Offers a new task. It is placed at once when the shard has room and
    /// nothing queued outranks it, queued otherwise, forwarded when only
    /// another shard could ever hold it, and rejected when none could.
    pub fn submit(&mut self, task: Task, now_us: u64, out: &mut Vec<Decision>) {
        self.placer.observe(&task.resources);
        self.submit_forwarded(task, ForwardNote::default(), now_us, out)
    }

    /// Like [`submit`](Self::submit) for a task forwarded by another shard,
    /// with what that shard noted about it.
    pub fn submit_forwarded(
        &mut self,
        task: Task,
        note: ForwardNote,
        now_us: u64,
        out: &mut Vec<Decision>,
    ) {
        let quota_home = note.quota_home;
        if note.by_summary {
            self.moved_by_summary.insert(task.id.clone());
        }
        if let Some(home) = quota_home {
            self.foreign_admitted.insert(task.id.clone(), home);
        }
        if let Some(reason) = expired(&task, now_us) {
            self.finished(&task, out);
            out.push(Decision::Reject { task, reason });
            return;
        }
        let quota = match quota_home {
            None => self.tenants.quota(&task.tenant),
            Some(_) => None,
        };
        if let Some(quota) = quota {
            if let Some(detail) = quota.exceeded_by(&task.resources) {
                let reason = RejectReason::Infeasible {
                    detail: format!("tenant {:?}: {detail}", task.tenant.as_str()),
                };
                out.push(Decision::Reject { task, reason });
                return;
            }
            let home = home_shard(&task.tenant, self.shard_count());
            if home != self.shard {
                out.push(Decision::Forward {
                    task,
                    shard: home,
                    note: ForwardNote::default(),
                });
                return;
            }
        }
        if self.feasibility.capable_shards(&task.resources).is_empty()
            && !self.reservations.iter().any(|r| r.serves(&task))
        {
            if self.feasibility.lost_could_hold(&task.resources) {
                // Only lost executors could hold it: wait for one to join
                // (again) until its deadline.
                self.waiting_for_executor
                    .insert(task.id.clone(), task.deadline_ms);
                self.enqueue(task);
                return;
            }
            let reason = RejectReason::Infeasible {
                detail: self.feasibility.explain(&task.resources),
            };
            self.finished(&task, out);
            out.push(Decision::Reject { task, reason });
            return;
        }
        // Queued tasks did not fit when last examined and nothing was freed
        // since, so a newcomer that fits may go ahead of them (backfill).
        // Under EASY backfilling it must keep the last round's head
        // reservation, which stands until capacity is freed.
        if !self.dirty {
            if let Some(task) = self.route(task, now_us, self.head_shadow, out) {
                // A task that must wait while no head is reserved may be
                // the head: the next round finds the head and its shadow.
                if self.backfill == BackfillMode::Easy
                    && self.head_shadow.is_none()
                    && self.waits_for_capacity_here(&task)
                {
                    self.dirty = true;
                }
                self.enqueue(task);
            }
        } else {
            self.enqueue(task);
        }
    }

    /// Queues `task` under the queue order's key.
    pub(super) fn enqueue(&mut self, task: Task) {
        let key = self.queue_key(&task);
        self.queue.push_keyed(task, key);
    }

    /// `task`'s key in the queue: its predicted run time in ms under
    /// shortest-predicted-first (`u64::MAX` when it cannot be predicted),
    /// 0 otherwise.
    pub(super) fn queue_key(&self, task: &Task) -> u64 {
        queue_key(self.queue_order, self.run_time_model.as_ref(), task)
    }

    /// Adopts a new run-time model: with shortest-predicted-first, the
    /// queue is re-ranked by its predictions. A model that cannot be read
    /// is refused and the previous one kept.
    pub fn set_run_time_model(&mut self, update: &ModelUpdate) -> Result<(), ModelError> {
        let model = ModelPredictor::from_update(update)?;
        self.run_time_model = Some(model);
        if self.queue_order == QueueOrder::ShortestPredictedFirst {
            let (order, model) = (self.queue_order, self.run_time_model.as_ref());
            self.queue.rekey(|task| queue_key(order, model, task));
            self.dirty = true;
        }
        Ok(())
    }

    /// The run time the current model predicts for `task`, in seconds
    /// (`None` without a model or a prediction).
    pub fn predicted_runtime_s(&self, task: &Task) -> Option<f64> {
        self.run_time_model
            .as_ref()?
            .predict_runtime_s(task, DEFAULT_EXECUTOR_CLASS)
    }

    /// The run time expected of `task`, in seconds: the run-time model's
    /// prediction, else the user's requested run time, else its timeout.
    pub fn runtime_estimate_s(&self, task: &Task) -> Option<f64> {
        self.predicted_runtime_s(task)
            .or_else(|| task.requested_runtime_s.map(f64::from))
            .or_else(|| (task.timeout_ms > 0).then(|| task.timeout_ms as f64 / 1000.0))
    }

    /// When `task` would end if it started at `now_us`, by its estimate.
    pub(super) fn expected_end_us(&self, task: &Task, now_us: u64) -> Option<u64> {
        let seconds = self.runtime_estimate_s(task)?;
        Some(now_us.saturating_add((seconds.max(0.0) * 1e6).min(u64::MAX as f64 / 2.0) as u64))
    }

    /// Places what it can from the queue, if capacity was freed since the
    /// last round. Expired tasks met on the way are rejected. Under EASY
    /// backfilling the first task passed over for lack of capacity whose
    /// predicted start meets its deadline gets a [`Shadow`] that later
    /// tasks must respect.
    pub fn schedule(&mut self, now_us: u64, out: &mut Vec<Decision>) {
        if !self.dirty {
            return;
        }
        self.dirty = false;
        let mut passed_over = Vec::new();
        let mut shadow: Option<Shadow> = None;
        let mut head_seen = self.backfill == BackfillMode::Greedy;
        while passed_over.len() < self.backfill_depth {
            let tenants = &self.tenants;
            let Some((task, seq)) = self.queue.pop_entry(|t| tenants.weighted_share(t)) else {
                break;
            };
            if let Some(mut reason) = expired(&task, now_us) {
                if self.waiting_for_executor.remove(&task.id).is_some() {
                    reason = RejectReason::Infeasible {
                        detail: WAITED_FOR_EXECUTOR.to_string(),
                    };
                }
                self.finished(&task, out);
                out.push(Decision::Reject { task, reason });
                continue;
            }
            if let Some(task) = self.route(task, now_us, shadow, out) {
                if !head_seen && self.waits_for_capacity_here(&task) {
                    let start = shadow_for(
                        self.placer.executors(),
                        self.running.values(),
                        &task.resources,
                        now_us,
                    );
                    // A task predicted to start after its deadline (its
                    // latest start) would expire waiting: reserve nothing
                    // for it and let the next blocked task be the head.
                    let hopeless = start
                        .is_some_and(|s| !deadline_feasible(s.start_us / 1000, task.deadline_ms));
                    if !hopeless {
                        head_seen = true;
                        shadow = start;
                    }
                }
                passed_over.push((task, seq));
            }
        }
        self.head_shadow = shadow;
        for (task, seq) in passed_over {
            self.queue.restore(task, seq);
        }
    }

    /// Whether `task` waits for capacity on this shard's executors (not for
    /// its tenant's quota): an accepting executor could hold it once others
    /// end.
    pub(super) fn waits_for_capacity_here(&self, task: &Task) -> bool {
        let quota_waits = self.tenants.quota(&task.tenant).is_some()
            && !self.tenants.quota_admits(&task.tenant, &task.resources);
        !quota_waits
            && self
                .placer
                .executors()
                .iter()
                .any(|e| e.accepting && e.could_ever_fit(&task.resources))
    }

    /// Places `task` in a reservation of its holder or on an executor (one
    /// that keeps `shadow`, the round's head reservation, if any), or
    /// forwards it when only other shards could hold it; hands it back when
    /// it must wait.
    pub(super) fn route(
        &mut self,
        task: Task,
        now_us: u64,
        shadow: Option<Shadow>,
        out: &mut Vec<Decision>,
    ) -> Option<Task> {
        let quota_bound = self.tenants.quota(&task.tenant).is_some()
            && !self.foreign_admitted.contains_key(&task.id)
            && !self.admitted.contains_key(&task.id);
        if quota_bound && !self.tenants.quota_admits(&task.tenant, &task.resources) {
            return Some(task);
        }
        if let Some(r) = self
            .reservations
            .iter()
            .position(|r| r.serves(&task) && self.placer.executors()[r.executor].accepting)
        {
            if let Some(pool_pick) = self.reservations[r].pool.fit(&task.resources) {
                if quota_bound {
                    self.admit(&task);
                }
                self.place_in_reservation(task, r, pool_pick, now_us, out);
                return None;
            }
        }
        if let Some((index, gpu)) = self.placer.choose(&task.resources) {
            if shadow.is_some_and(|s| !s.admits(index, self.expected_end_us(&task, now_us))) {
                return Some(task);
            }
            if quota_bound {
                self.admit(&task);
            }
            self.placer.take(index, &task.resources, &gpu);
            self.assign(task, index, gpu, None, now_us, out);
            return None;
        }
        // Nothing here fits now. Wait, unless only other shards could ever
        // hold it; if no executor could (all that could left or were lost
        // since it was accepted), wait for one to (re)join.
        let capable = self.feasibility.capable_shards(&task.resources);
        let mut by_summary = false;
        let shard = if capable.contains(&self.shard) {
            // It fits here in principle: move it only to a shard whose
            // latest summary says it fits now, and only once.
            if !self.moved_by_summary.is_empty() && self.moved_by_summary.contains(&task.id) {
                return Some(task);
            }
            by_summary = true;
            let shard = self
                .peer_summaries
                .iter_mut()
                .enumerate()
                .find_map(|(s, summary)| {
                    let moved = summary.as_mut()?.take(&task.resources);
                    moved.then_some(s as u32)
                });
            match shard {
                Some(shard) => shard,
                None => return Some(task),
            }
        } else if capable.is_empty() {
            self.waiting_for_executor
                .insert(task.id.clone(), task.deadline_ms);
            return Some(task);
        } else {
            let shard = capable[self.forward_cursor % capable.len()];
            self.forward_cursor = self.forward_cursor.wrapping_add(1);
            shard
        };
        let quota_home = if quota_bound {
            self.admit(&task);
            Some(self.shard)
        } else if !self.admitted.is_empty() && self.admitted.contains_key(&task.id) {
            // Admitted here before (a retry): still counted here.
            Some(self.shard)
        } else {
            self.foreign_admitted.remove(&task.id)
        };
        if !self.waiting_for_executor.is_empty() {
            self.waiting_for_executor.remove(&task.id);
        }
        out.push(Decision::Forward {
            task,
            shard,
            note: ForwardNote {
                quota_home,
                by_summary,
            },
        });
        None
    }

    /// This shard's capacity summary, if its free capacity changed since
    /// the last one was taken.
    pub fn summary_if_changed(&mut self) -> Option<CapacitySummary> {
        if self.published_version == self.capacity_version {
            return None;
        }
        self.published_version = self.capacity_version;
        Some(CapacitySummary::of(self.placer.executors()))
    }

    /// Records another shard's latest capacity summary.
    pub fn peer_summary(&mut self, shard: u32, summary: CapacitySummary) {
        let shard = shard as usize;
        if shard == self.shard as usize {
            return;
        }
        if self.peer_summaries.len() <= shard {
            self.peer_summaries.resize(shard + 1, None);
        }
        self.peer_summaries[shard] = Some(summary);
        // A task waiting here may now move (this shard's own capacity did
        // not change, so no new summary of it is due).
        self.dirty = true;
    }

    pub(super) fn admit(&mut self, task: &Task) {
        self.tenants.quota_take(&task.tenant, &task.resources);
        self.admitted.insert(
            task.id.clone(),
            (task.tenant.clone(), task.resources.clone()),
        );
    }
}

/// Why a task that waited for an executor to join was refused.
pub const WAITED_FOR_EXECUTOR: &str = "deadline passed waiting for an executor";

/// The executor class predictions are made for while a task waits (its
/// executor is not known yet).
const DEFAULT_EXECUTOR_CLASS: &str = "default";

/// A task's queue key under `order` with `model` (see
/// [`ShardAllocator::set_run_time_model`]).
fn queue_key(order: QueueOrder, model: Option<&ModelPredictor>, task: &Task) -> u64 {
    match order {
        QueueOrder::Arrival => 0,
        QueueOrder::ShortestPredictedFirst => model
            .and_then(|m| m.predict_runtime_s(task, DEFAULT_EXECUTOR_CLASS))
            .map_or(u64::MAX, |s| {
                (s.max(0.0) * 1000.0).min(u64::MAX as f64 / 2.0) as u64
            }),
    }
}

fn expired(task: &Task, now_us: u64) -> Option<RejectReason> {
    let deadline_ms = task.deadline_ms?;
    (now_us / 1000 > deadline_ms).then_some(RejectReason::DeadlinePassed { deadline_ms })
}
