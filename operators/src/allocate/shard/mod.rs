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
//!
//! This module holds the allocator's state and settings and what it
//! decides; the operations are split by concern: [`admission`] (submit,
//! route, schedule, capacity summaries), [`leases`] (assign and release),
//! [`membership`] (join, heartbeat, leave, expiry), [`reservations`] and
//! [`invariants`].

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use serde::{Deserialize, Serialize};

use super::backfill::{BackfillMode, Shadow};
use super::placement::Placement;
use super::{
    policy_by_name, CapacitySummary, ExecutorRegistry, ExecutorState, FeasibilityIndex,
    PlacementPolicy, Placer, QueueOrder, Reservation, TaskQueue, TenantBook, TenantConfig, Usage,
};
use crate::learn::predict::ModelPredictor;
use crate::model::{
    AbortReason, Assignment, ExecutorId, ExecutorSpec, Lease, Name, RejectReason,
    ReservationRequest, ReservationStatus, ResourceRequest, Task, TaskId,
};

mod admission;
mod invariants;
mod leases;
mod membership;
mod reservations;

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
    /// Tasks queued because only executors that were lost could hold them:
    /// they wait for one to join until their deadline (ms, kept here).
    waiting_for_executor: HashMap<TaskId, Option<u64>>,
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
            waiting_for_executor: HashMap::default(),
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

    /// When the next reservation lapses or the deadline of a task waiting
    /// for an executor to join passes, microseconds since the Unix epoch.
    pub fn next_expiry_us(&self) -> Option<u64> {
        let reservations = self.reservations.iter().map(|r| r.expires_at_us);
        let waiting = self
            .waiting_for_executor
            .values()
            .flatten()
            .map(|deadline_ms| deadline_ms.saturating_add(1).saturating_mul(1000));
        reservations.chain(waiting).min()
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
}
