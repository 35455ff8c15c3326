//! Control commands: what changes the cluster or a task's fate from outside
//! the task stream.
//!
//! Commands enter on any worker (HTTP, CLI, the in-process API, remote
//! agents) and are broadcast to every coordinator shard: each shard applies
//! what concerns it (the owner of an executor, the holder of a task) and
//! updates its view of the whole cluster for the rest.

use serde::{Deserialize, Serialize};

use super::{ExecutorId, ExecutorSpec, Name, ResourceRequest, TaskId};

/// A command for the coordinators.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum ControlCommand {
    /// Cancel a task wherever it is: queued, waiting to retry or running.
    Cancel {
        /// The task.
        task: TaskId,
    },
    /// An executor joins (or re-joins) the cluster.
    Join {
        /// Its identity and capacity.
        executor: ExecutorSpec,
        /// Declared lost when no heartbeat arrives for this long; `None` for
        /// executors that never need to heartbeat (local, static ones).
        heartbeat_ttl_ms: Option<u64>,
    },
    /// An executor is alive.
    Heartbeat {
        /// Which one.
        executor: ExecutorId,
    },
    /// An executor leaves gracefully: it takes no new work, finishes what it
    /// runs, and is then removed.
    Leave {
        /// Which one.
        executor: ExecutorId,
    },
    /// Reserve capacity ahead for a task or a tenant until an expiry.
    Reserve(ReservationRequest),
    /// Give a reservation's capacity back before it expires.
    Unreserve {
        /// The reservation's id.
        id: Name,
    },
}

/// Who may use a reservation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationHolder {
    /// Any task of this tenant.
    Tenant(Name),
    /// Only the task with this id.
    Task(TaskId),
}

/// A request to hold capacity on one executor for a holder.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationRequest {
    /// Unique id, used to release it.
    pub id: Name,
    /// Who may use it.
    pub holder: ReservationHolder,
    /// How much to hold, all on one executor.
    pub resources: ResourceRequest,
    /// When it lapses, milliseconds since the Unix epoch; unused capacity
    /// returns to the pool then, tasks running in it keep running.
    pub expires_at_ms: u64,
}

/// Where a reservation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Made: its capacity is held.
    Active,
    /// Not made (no executor had the capacity, or it had already expired).
    Refused,
    /// Expired, released, or its executor was lost.
    Ended,
}

/// What became of a reservation, as reported by the shard that handled it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReservationStatus {
    /// The reservation's id.
    pub id: Name,
    /// Its state.
    pub state: ReservationState,
    /// The executor holding it, when made.
    pub executor: Option<ExecutorId>,
    /// Why, in words.
    pub detail: String,
    /// When, microseconds since the Unix epoch.
    pub at_us: u64,
}
