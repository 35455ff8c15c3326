//! What flows around the coordinator's feedback loop: completions back to
//! the shard that holds their lease, tasks and reservations forwarded to
//! another shard, quota releases to a tenant's home shard, and capacity
//! summaries between shards. Each record is addressed to one shard
//! ([`Feedback::shard`]), and the loop exchanges it there.

use serde::{Deserialize, Serialize};

use crate::allocate::{CapacitySummary, ForwardNote};
use crate::model::{Completion, ReservationRequest, Task, TaskId};

/// What flows around the coordinator's feedback loop, each addressed to a shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Feedback {
    /// An attempt finished; release its lease in `completion.shard`.
    Completed(Completion),
    /// A task for `shard` to place.
    Forwarded {
        /// The shard to place it.
        shard: u32,
        /// The task.
        task: Task,
        /// What the sending shard noted about it.
        note: ForwardNote,
    },
    /// A task that home shard `shard` admitted against a quota is done.
    QuotaReleased {
        /// The home shard.
        shard: u32,
        /// The task.
        task: TaskId,
    },
    /// Shard `from`'s free capacity, for `shard`.
    Summary {
        /// The receiving shard.
        shard: u32,
        /// The summarized shard.
        from: u32,
        /// Its free capacity.
        summary: CapacitySummary,
    },
    /// A reservation for `shard` to try.
    Reserve {
        /// The shard.
        shard: u32,
        /// The reservation.
        request: ReservationRequest,
        /// Shards tried before.
        hops: u32,
    },
}

impl Feedback {
    /// The shard this feedback is addressed to.
    pub fn shard(&self) -> u32 {
        match self {
            Feedback::Completed(c) => c.shard,
            Feedback::Forwarded { shard, .. }
            | Feedback::QuotaReleased { shard, .. }
            | Feedback::Summary { shard, .. }
            | Feedback::Reserve { shard, .. } => *shard,
        }
    }
}
