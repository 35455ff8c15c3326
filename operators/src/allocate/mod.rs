//! Resource accounting and placement for one shard of executors.
//!
//! Each timely worker owns a [`ShardAllocator`] over a disjoint set of
//! executors and allocates from it without locks. Tasks wait in a
//! [`TaskQueue`] ordered by QoS class, priority and deadline; a
//! [`PlacementPolicy`] picks among the executors that fit; every placement is
//! a [`Lease`](crate::model::Lease) released exactly once. The invariant
//! "allocated = sum of running requests, never above capacity" is checked by
//! [`ShardAllocator::check_invariants`].

mod backfill;
mod capacity_summary;
mod dot_product;
mod executor_state;
mod feasibility;
mod fgd;
mod fragmentation_model;
mod placement;
mod placer;
mod policy;
mod queue;
mod random_fit;
mod registry;
mod reservation;
mod score_cache;
mod shard;
mod spread;
mod task_mix;
mod tenants;

pub use backfill::{shadow_for, BackfillMode, Shadow};
pub use capacity_summary::{CapacitySummary, FreeSlot, SUMMARY_SLOTS};
pub use dot_product::DotProduct;
pub use executor_state::{ExecutorState, GpuPick};
pub use feasibility::FeasibilityIndex;
pub use fgd::{node_fragmentation, Fgd};
pub use fragmentation_model::FragmentationModel;
pub use placement::Placement;
pub use placer::Placer;
pub use policy::{policy_by_name, BestFit, FirstFit, PlacementPolicy, Score, POLICY_NAMES};
pub use queue::{QueueOrder, QueueSlot, TaskQueue};
pub use random_fit::RandomFit;
pub use registry::{ExecutorRegistry, Liveness, RegistryEntry};
pub use reservation::Reservation;
pub use score_cache::ScoreCache;
pub use shard::{
    home_shard, AllocatorConfig, Decision, ForwardNote, InvariantViolation, ShardAllocator,
};
pub use spread::Spread;
pub use task_mix::{TaskClass, TaskMix};
pub use tenants::{ResourceQuota, TenantBook, TenantConfig, Usage};
