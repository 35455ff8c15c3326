//! One worker's shard: its executors, its wait queue, its running leases,
//! its reservations, and its view of the cluster's registry and tenants.
//!
//! ```text
//!  submit ──► checks (deadline, quota bound, feasibility) ──► route
//!               │ quota-bound tenant homed elsewhere ──► Forward to home
//!               ▼
//!  route: reservation of the holder? ─► policy over executors ─► Assign
//!               │ nothing fits now ──► queue (fair share, QoS, priority, EDF)
//!               │ only other shards could hold it ──► Forward
//!  release / lost / expiry ──► capacity back, queue marked dirty ──► schedule
//! ```
//!
//! Quotas are exact: every task of a quota-bound tenant is admitted by the
//! tenant's *home* shard (a hash of the tenant over the shards), which
//! counts the task's resources from its first placement to its final
//! outcome. A task the home shard cannot hold is admitted there and
//! forwarded with a note of its home, and the shard that runs it reports
//! back when it is done ([`Decision::QuotaRelease`]).

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use std::hash::{Hash, Hasher};

use serde::{Deserialize, Serialize};

use crate::model::{
    AbortReason, Assignment, ExecutorId, ExecutorSpec, Lease, ModelUpdate, Name, RejectReason,
    ReservationRequest, ReservationState, ReservationStatus, ResourceRequest, Task, TaskId,
};

use super::backfill::{shadow_for, BackfillMode, Shadow};
use super::{
    policy_by_name, CapacitySummary, ExecutorRegistry, ExecutorState, FeasibilityIndex, GpuPick,
    PlacementPolicy, Placer, QueueOrder, Reservation, TaskQueue, TenantBook, TenantConfig, Usage,
};
use crate::learn::model::ModelError;
use crate::learn::predict::{deadline_feasible, ModelPredictor, RunTimePredictor};

/// Allocator settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AllocatorConfig {
    /// Placement policy name (see [`super::POLICY_NAMES`]).
    pub policy: String,
    /// How many queued tasks that do not fit are passed over, per scheduling
    /// round, in search of one that does (backfilling).
    pub backfill_depth: usize,
    /// Heartbeat TTL for executors that join at run time without one, ms.
    pub heartbeat_ttl_ms: u64,
    /// Per-tenant weights and quotas; tenants not listed have weight 1 and
    /// no quota.
    pub tenants: BTreeMap<Name, TenantConfig>,
    /// How tasks of equal class, priority and deadline wait: in arrival
    /// order, or shortest predicted run time first (by the learner's
    /// newest run-time model).
    pub queue_order: QueueOrder,
    /// How a round fills capacity past a task that does not fit: `greedy`,
    /// or `easy` (a reservation for that task by run-time estimates; see
    /// [`BackfillMode`]).
    pub backfill: BackfillMode,
}

impl Default for AllocatorConfig {
    fn default() -> Self {
        AllocatorConfig {
            policy: "best_fit".to_string(),
            backfill_depth: 64,
            heartbeat_ttl_ms: 10_000,
            tenants: BTreeMap::new(),
            queue_order: QueueOrder::Arrival,
            backfill: BackfillMode::Greedy,
        }
    }
}

/// What the allocator decided.
#[derive(Debug)]
pub enum Decision {
    /// Placed on one of this shard's executors.
    Assign(Assignment),
    /// Another shard should handle it.
    Forward {
        /// The task.
        task: Task,
        /// The shard.
        shard: u32,
        /// What the receiving shard must know about it.
        note: ForwardNote,
    },
    /// It can never run, or can no longer run.
    Reject {
        /// The task.
        task: Task,
        /// Why.
        reason: RejectReason,
    },
    /// Stop a running attempt (its executor was lost).
    Abort {
        /// The attempt's lease.
        lease: Lease,
        /// Why.
        reason: AbortReason,
    },
    /// Tell a tenant's home shard that a task it admitted is done.
    QuotaRelease {
        /// The home shard.
        shard: u32,
        /// The task.
        task: TaskId,
    },
    /// Pass a reservation this shard could not hold to another shard.
    ForwardReservation {
        /// The shard.
        shard: u32,
        /// The reservation.
        request: ReservationRequest,
        /// Shards tried so far.
        hops: u32,
    },
    /// A reservation was made, ended or could not be made.
    ReservationEvent(ReservationStatus),
}

/// What travels with a task moved to another shard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardNote {
    /// Set when the task was admitted against its tenant's quota by this
    /// home shard, which must hear when it is done.
    pub quota_home: Option<u32>,
    /// Set when it moved because another shard's capacity summary said it
    /// fits there now; such a task does not move by summary again until it
    /// has run, so that stale summaries cannot bounce it between shards.
    pub by_summary: bool,
}

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
    /// The executors, the policy and its score cache.
    placer: Placer,
    by_id: HashMap<ExecutorId, usize>,
    queue: TaskQueue,
    running: HashMap<u64, Placement>,
    /// Leases released because their executor was lost; their attempts'
    /// completions are still to come.
    lost: HashSet<u64>,
    next_lease: u64,
    feasibility: FeasibilityIndex,
    registry: ExecutorRegistry,
    tenants: TenantBook,
    /// Tasks admitted against a quota homed here, with what they count.
    admitted: HashMap<TaskId, (Name, ResourceRequest)>,
    /// Tasks admitted by another home shard, running or queued here.
    foreign_admitted: HashMap<TaskId, u32>,
    reservations: Vec<Reservation>,
    /// Tasks that moved here by summary and have not run since.
    moved_by_summary: HashSet<TaskId>,
    /// The latest capacity summary of every other shard.
    peer_summaries: Vec<Option<CapacitySummary>>,
    /// Bumped whenever this shard's free capacity changes.
    capacity_version: u64,
    /// The version last summarized for the other shards.
    published_version: u64,
    /// Capacity was freed or added since the queue was last examined.
    dirty: bool,
    backfill_depth: usize,
    forward_cursor: usize,
    queue_order: QueueOrder,
    backfill: BackfillMode,
    /// The last round's head reservation under EASY backfilling.
    head_shadow: Option<Shadow>,
    /// The newest run-time model, for [`QueueOrder::ShortestPredictedFirst`]
    /// and EASY backfilling.
    run_time_model: Option<ModelPredictor>,
}

/// The shard among `shards` that is home to `key` (a tenant, an executor id).
pub fn home_shard(key: &str, shards: usize) -> u32 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    (hasher.finish() % shards.max(1) as u64) as u32
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
        let mut allocator =
            Self::with_policy(shard, executors, feasibility, policy, config.backfill_depth);
        allocator.tenants = TenantBook::new(config.tenants.clone(), allocator.capacity());
        allocator.queue_order = config.queue_order;
        allocator.backfill = config.backfill;
        Ok(allocator)
    }

    /// Like [`new`](Self::new) with a policy object and no tenant settings.
    pub fn with_policy(
        shard: u32,
        executors: Vec<ExecutorSpec>,
        feasibility: FeasibilityIndex,
        policy: Box<dyn PlacementPolicy>,
        backfill_depth: usize,
    ) -> Self {
        let mut registry = ExecutorRegistry::new();
        for (owner, spec) in feasibility.executors() {
            registry.join(&spec.id, owner, None, 0);
        }
        let executors: Vec<ExecutorState> = executors.into_iter().map(ExecutorState::new).collect();
        let by_id = executors
            .iter()
            .enumerate()
            .map(|(i, e)| (e.spec.id.clone(), i))
            .collect();
        let mut allocator = ShardAllocator {
            shard,
            placer: Placer::new(executors, policy),
            by_id,
            queue: TaskQueue::new(),
            running: HashMap::default(),
            lost: HashSet::default(),
            next_lease: 0,
            feasibility,
            registry,
            tenants: TenantBook::default(),
            admitted: HashMap::default(),
            foreign_admitted: HashMap::default(),
            reservations: Vec::new(),
            moved_by_summary: HashSet::default(),
            peer_summaries: Vec::new(),
            capacity_version: 1,
            published_version: 0,
            dirty: false,
            backfill_depth: backfill_depth.max(1),
            forward_cursor: 0,
            queue_order: QueueOrder::Arrival,
            backfill: BackfillMode::Greedy,
            head_shadow: None,
            run_time_model: None,
        };
        allocator.tenants.set_capacity(allocator.capacity());
        allocator
    }

    /// This shard's index.
    pub fn shard(&self) -> u32 {
        self.shard
    }

    /// Number of shards in the cluster.
    pub fn shard_count(&self) -> usize {
        self.feasibility.shard_count()
    }

    /// This shard's executors (including ones that left or were lost,
    /// which take no work).
    pub fn executors(&self) -> &[ExecutorState] {
        self.placer.executors()
    }

    /// The cluster's executor registry as this shard sees it.
    pub fn registry(&self) -> &ExecutorRegistry {
        &self.registry
    }

    /// Per-tenant usage and quotas.
    pub fn tenants(&self) -> &TenantBook {
        &self.tenants
    }

    /// Active reservations.
    pub fn reservations(&self) -> &[Reservation] {
        &self.reservations
    }

    /// Tasks waiting for capacity.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Placements holding resources.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Running placements by lease.
    pub fn placements(&self) -> impl Iterator<Item = (Lease, &Placement)> {
        self.running.iter().map(|(l, p)| (Lease(*l), p))
    }

    /// The placement behind a lease, if it is still held.
    pub fn placement(&self, lease: Lease) -> Option<&Placement> {
        self.running.get(&lease.0)
    }

    /// The lease of the running attempt of `task`, if it runs here.
    pub fn lease_of(&self, task: &str) -> Option<Lease> {
        self.running
            .iter()
            .find(|(_, p)| p.task_id == task)
            .map(|(l, _)| Lease(*l))
    }

    /// When the next reservation lapses, microseconds since the Unix epoch.
    pub fn next_expiry_us(&self) -> Option<u64> {
        self.reservations.iter().map(|r| r.expires_at_us).min()
    }

    fn capacity(&self) -> Usage {
        let mut usage = Usage::default();
        for e in self.placer.executors().iter().filter(|e| e.accepting) {
            usage.cpu_milli += e.spec.cpu_milli;
            usage.memory_mib += e.spec.memory_mib;
            usage.gpu_milli += e.spec.gpus.len() as u64 * 1000;
        }
        usage
    }

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
    fn enqueue(&mut self, task: Task) {
        let key = self.queue_key(&task);
        self.queue.push_keyed(task, key);
    }

    /// `task`'s key in the queue: its predicted run time in ms under
    /// shortest-predicted-first (`u64::MAX` when it cannot be predicted),
    /// 0 otherwise.
    fn queue_key(&self, task: &Task) -> u64 {
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
    fn expected_end_us(&self, task: &Task, now_us: u64) -> Option<u64> {
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
            if let Some(reason) = expired(&task, now_us) {
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
    fn waits_for_capacity_here(&self, task: &Task) -> bool {
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
    fn route(
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

    fn admit(&mut self, task: &Task) {
        self.tenants.quota_take(&task.tenant, &task.resources);
        self.admitted.insert(
            task.id.clone(),
            (task.tenant.clone(), task.resources.clone()),
        );
    }

    fn place_in_reservation(
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

    fn assign(
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

    fn give_back(&mut self, placement: &Placement) {
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
                .is_some_and(|e| e.liveness == super::Liveness::Leaving)
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

    /// An executor joins or re-joins (every shard sees every join).
    pub fn join(&mut self, spec: ExecutorSpec, ttl_us: Option<u64>, now_us: u64) {
        let owner = match self.registry.get(&spec.id) {
            Some(entry) => entry.owner,
            None => home_shard(&spec.id, self.shard_count()),
        };
        let new = self.registry.join(&spec.id, owner, ttl_us, now_us);
        if new {
            self.feasibility.add(owner, spec.clone());
        }
        if owner != self.shard {
            return;
        }
        match self.by_id.get(&spec.id) {
            Some(&index) => {
                let executor = self.placer.executor_mut(index);
                if new && executor.running == 0 {
                    // Back after being lost or leaving: fresh capacity, maybe a new shape.
                    *executor = ExecutorState::new(spec);
                } else {
                    executor.accepting = true;
                }
            }
            None => {
                let index = self.placer.push(ExecutorState::new(spec.clone()));
                self.by_id.insert(spec.id, index);
            }
        }
        self.tenants.set_capacity(self.capacity());
        self.dirty = true;
        self.capacity_version += 1;
    }

    /// An executor is alive.
    pub fn heartbeat(&mut self, id: &str, now_us: u64) -> bool {
        self.registry.heartbeat(id, now_us)
    }

    /// An executor leaves: no new work; gone when its attempts finish.
    pub fn leave(&mut self, id: &str) {
        let Some(entry) = self.registry.leave(id) else {
            return;
        };
        let owned = entry.owner == self.shard;
        self.feasibility.remove(id);
        if owned {
            if let Some(&index) = self.by_id.get(id) {
                let executor = self.placer.executor_mut(index);
                executor.accepting = false;
                if executor.running == 0 {
                    self.registry.remove(id);
                }
            }
            self.tenants.set_capacity(self.capacity());
        }
    }

    /// Declares executors whose heartbeats stopped lost: their attempts'
    /// leases are released and [`Decision::Abort`]ed, their reservations
    /// dropped. Also lets reservations lapse.
    pub fn expire(&mut self, now_us: u64, out: &mut Vec<Decision>) {
        for (id, entry) in self.registry.expire(now_us) {
            self.feasibility.remove(&id);
            if entry.owner != self.shard {
                continue;
            }
            let Some(&index) = self.by_id.get(&id) else {
                continue;
            };
            tracing::warn!(executor = %id, shard = self.shard, "executor lost: no heartbeat within its TTL");
            self.placer.executor_mut(index).accepting = false;
            let leases: Vec<u64> = self
                .running
                .iter()
                .filter(|(_, p)| p.executor == index)
                .map(|(l, _)| *l)
                .collect();
            for lease in leases {
                if let Some(placement) = self.running.remove(&lease) {
                    self.give_back(&placement);
                    self.lost.insert(lease);
                    out.push(Decision::Abort {
                        lease: Lease(lease),
                        reason: AbortReason::ExecutorLost,
                    });
                }
            }
            let dropped: Vec<Name> = self
                .reservations
                .iter()
                .filter(|r| r.executor == index)
                .map(|r| r.id.clone())
                .collect();
            for id in dropped {
                self.end_reservation(&id, "its executor was lost", now_us, out);
            }
            self.tenants.set_capacity(self.capacity());
        }
        let lapsed: Vec<Name> = self
            .reservations
            .iter()
            .filter(|r| r.expires_at_us <= now_us)
            .map(|r| r.id.clone())
            .collect();
        for id in lapsed {
            self.end_reservation(&id, "expired", now_us, out);
        }
    }

    /// Reserves capacity (on the reservation's home shard, else the next
    /// shards in turn).
    pub fn reserve(
        &mut self,
        request: ReservationRequest,
        hops: u32,
        now_us: u64,
        out: &mut Vec<Decision>,
    ) {
        let id = request.id.clone();
        if request.expires_at_ms * 1000 <= now_us {
            out.push(reservation_event(
                id,
                ReservationState::Refused,
                None,
                "it had already expired",
                now_us,
            ));
            return;
        }
        if self.reservations.iter().any(|r| r.id == id) {
            return;
        }
        match self.placer.choose(&request.resources) {
            Some((index, gpu)) => {
                let executor = self.placer.executor_mut(index);
                executor.take(&request.resources, &gpu);
                let reservation = Reservation::new(
                    id.clone(),
                    request.holder,
                    index,
                    executor,
                    request.resources,
                    gpu,
                    request.expires_at_ms * 1000,
                );
                out.push(reservation_event(
                    id,
                    ReservationState::Active,
                    Some(executor.spec.id.clone()),
                    "capacity held",
                    now_us,
                ));
                self.reservations.push(reservation);
                self.dirty = true;
                self.capacity_version += 1;
            }
            None if (hops as usize) + 1 < self.shard_count() => {
                out.push(Decision::ForwardReservation {
                    shard: (self.shard + 1) % self.shard_count() as u32,
                    request,
                    hops: hops + 1,
                });
            }
            None => out.push(reservation_event(
                id,
                ReservationState::Refused,
                None,
                "no executor has that much free capacity now",
                now_us,
            )),
        }
    }

    /// Releases a reservation early, if this shard holds it.
    pub fn unreserve(&mut self, id: &str, now_us: u64, out: &mut Vec<Decision>) {
        self.end_reservation(id, "released", now_us, out);
    }

    fn end_reservation(&mut self, id: &str, why: &str, now_us: u64, out: &mut Vec<Decision>) {
        let Some(position) = self.reservations.iter().position(|r| r.id == id) else {
            return;
        };
        let reservation = self.reservations.swap_remove(position);
        reservation.return_unused(self.placer.executor_mut(reservation.executor));
        // Attempts still inside now hold their resources from the executor.
        for placement in self.running.values_mut() {
            if placement
                .reservation
                .as_ref()
                .is_some_and(|(rid, _)| *rid == reservation.id)
            {
                placement.reservation = None;
            }
        }
        self.dirty = true;
        self.capacity_version += 1;
        let executor = self.placer.executors()[reservation.executor]
            .spec
            .id
            .clone();
        out.push(reservation_event(
            reservation.id,
            ReservationState::Ended,
            Some(executor),
            why,
            now_us,
        ));
    }

    /// Checks that each executor's free capacity equals its capacity minus
    /// the requests of the leases and reservations placed on it, never
    /// negative, and that each reservation's pool balances likewise.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        let violation = |executor: &str, detail: String| InvariantViolation {
            executor: executor.to_string(),
            detail,
        };
        let mut expected: Vec<ExecutorState> = self
            .placer
            .executors()
            .iter()
            .map(|e| ExecutorState::new(e.spec.clone()))
            .collect();
        let mut pools: Vec<ExecutorState> = self
            .reservations
            .iter()
            .map(|r| {
                let mut fresh = Reservation::new(
                    r.id.clone(),
                    r.holder.clone(),
                    r.executor,
                    &self.placer.executors()[r.executor],
                    r.request.clone(),
                    r.gpu.clone(),
                    r.expires_at_us,
                );
                fresh.pool.running = 0;
                fresh.pool
            })
            .collect();
        for r in &self.reservations {
            let e = &mut expected[r.executor];
            if !gpu_pick_fits(e, &r.request, &r.gpu) {
                return Err(violation(
                    &e.spec.id,
                    format!("reservation {} exceeds capacity", r.id),
                ));
            }
            e.take(&r.request, &r.gpu);
        }
        for p in self.running.values() {
            let e = &mut expected[p.executor];
            match &p.reservation {
                Some((id, pool_pick)) => {
                    let Some(r) = self.reservations.iter().position(|r| r.id == *id) else {
                        return Err(violation(
                            &e.spec.id,
                            format!("task {} inside unknown reservation {id}", p.task_id),
                        ));
                    };
                    if !gpu_pick_fits(&pools[r], &p.request, pool_pick) {
                        return Err(violation(
                            &e.spec.id,
                            format!("reservation {id} overfull at task {}", p.task_id),
                        ));
                    }
                    pools[r].take(&p.request, pool_pick);
                    e.running += 1;
                }
                None => {
                    if !gpu_pick_fits(e, &p.request, &p.gpu) {
                        return Err(violation(
                            &e.spec.id,
                            format!("running leases exceed capacity at task {}", p.task_id),
                        ));
                    }
                    e.take(&p.request, &p.gpu);
                }
            }
        }
        let differs = |a: &ExecutorState, b: &ExecutorState| {
            a.free_cpu_milli != b.free_cpu_milli
                || a.free_memory_mib != b.free_memory_mib
                || a.free_gpu_milli != b.free_gpu_milli
                || a.free_custom != b.free_custom
                || a.running != b.running
        };
        for (actual, expected) in self.placer.executors().iter().zip(&expected) {
            if differs(actual, expected) {
                return Err(violation(
                    &actual.spec.id,
                    format!(
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
                ));
            }
        }
        for (r, expected) in self.reservations.iter().zip(&pools) {
            let mut actual = r.pool.clone();
            actual.running = expected.running;
            if differs(&actual, expected) {
                return Err(violation(&r.id, "reservation pool does not balance".into()));
            }
        }
        Ok(())
    }
}

/// Whether `req` with the given device pick fits `e` now.
fn gpu_pick_fits(e: &ExecutorState, req: &ResourceRequest, pick: &GpuPick) -> bool {
    let base = ResourceRequest {
        gpu: crate::model::GpuRequest::None,
        ..req.clone()
    };
    let devices_ok = match pick {
        GpuPick::None => true,
        GpuPick::Share { device, milli } => e
            .free_gpu_milli
            .get(usize::from(*device))
            .is_some_and(|free| free >= milli),
        GpuPick::Whole(ds) => ds.iter().all(|d| {
            e.free_gpu_milli
                .get(usize::from(*d))
                .is_some_and(|free| *free == crate::model::GPU_MILLI_PER_DEVICE)
        }),
    };
    let mut probe = e.clone();
    probe.accepting = true;
    devices_ok && probe.fit(&base).is_some()
}

fn reservation_event(
    id: Name,
    state: ReservationState,
    executor: Option<ExecutorId>,
    detail: &str,
    at_us: u64,
) -> Decision {
    Decision::ReservationEvent(ReservationStatus {
        id,
        state,
        executor,
        detail: detail.to_string(),
        at_us,
    })
}

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
