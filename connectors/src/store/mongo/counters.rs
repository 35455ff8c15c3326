//! Persisted counts by state, kept in step with the records.
//!
//! Every transaction that changes task states or dead-letters rejections
//! adds its [`CountDelta`] to one counter document in the same
//! transaction, so the counts survive restarts and agree with the records.
//! One shared document would make concurrent transactions conflict on it,
//! so the counts are spread over [`SHARDS`] documents (`_id` `states/N`):
//! each transaction of this process takes a shard no other one holds (see
//! [`ShardPool`]), and [`StateCounts`] are the sum of the few documents.

use std::sync::{Arc, Mutex};

use mongodb::bson::{doc, Document};

use crate::store::{StateCounts, TaskState};

/// Counter documents.
pub const SHARDS: usize = 16;
/// The `_id` prefix of the counter documents.
const PREFIX: &str = "states/";

/// Signed changes to the counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CountDelta {
    queued: i64,
    succeeded: i64,
    failed: i64,
    timed_out: i64,
    cancelled: i64,
    rejected: i64,
}

impl CountDelta {
    /// A record moved from `from` (`None`: it did not exist) to `to`.
    pub fn moved(&mut self, from: Option<TaskState>, to: TaskState) {
        if let Some(slot) = from.and_then(|from| self.slot(from)) {
            *slot -= 1;
        }
        if let Some(slot) = self.slot(to) {
            *slot += 1;
        }
    }

    /// `count` rejections were dead-lettered.
    pub fn dead_lettered(&mut self, count: usize) {
        self.rejected += count as i64;
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        *self == CountDelta::default()
    }

    /// The `$inc` update adding this delta.
    pub fn update(&self) -> Document {
        doc! { "$inc": {
            "queued": self.queued,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "timed_out": self.timed_out,
            "cancelled": self.cancelled,
            "rejected": self.rejected,
        } }
    }

    /// The counter a record in `state` counts towards, as
    /// [`StateCounts::add`] counts: rejected records are counted by their
    /// dead letters instead.
    fn slot(&mut self, state: TaskState) -> Option<&mut i64> {
        match state {
            TaskState::Queued | TaskState::Running | TaskState::Retrying => Some(&mut self.queued),
            TaskState::Succeeded => Some(&mut self.succeeded),
            TaskState::Failed => Some(&mut self.failed),
            TaskState::TimedOut => Some(&mut self.timed_out),
            TaskState::Cancelled => Some(&mut self.cancelled),
            TaskState::Rejected => None,
        }
    }
}

/// The `_id` of counter shard `shard`.
pub fn shard_id(shard: usize) -> String {
    format!("{PREFIX}{shard}")
}

/// The filter matching every counter shard.
pub fn all_shards() -> Document {
    let ids: Vec<String> = (0..SHARDS).map(shard_id).collect();
    doc! { "_id": { "$in": ids } }
}

/// Adds up the counter shards.
pub fn sum(shards: &[Document]) -> StateCounts {
    let field = |name: &str| -> u64 {
        let total: i64 = shards
            .iter()
            .map(|d| {
                d.get_i64(name)
                    .or_else(|_| d.get_i32(name).map(i64::from))
                    .unwrap_or(0)
            })
            .sum();
        u64::try_from(total).unwrap_or(0)
    };
    StateCounts {
        queued: field("queued"),
        succeeded: field("succeeded"),
        failed: field("failed"),
        timed_out: field("timed_out"),
        cancelled: field("cancelled"),
        rejected: field("rejected"),
    }
}

/// The shards this process's transactions are not using now.
#[derive(Clone)]
pub struct ShardPool {
    free: Arc<Mutex<Vec<usize>>>,
}

/// A shard held by one transaction; returned to the pool when dropped.
pub struct Shard {
    index: usize,
    pool: Option<ShardPool>,
}

impl Shard {
    /// The shard's document id.
    pub fn id(&self) -> String {
        shard_id(self.index)
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.take() {
            if let Ok(mut free) = pool.free.lock() {
                // To the back of the line: the next transaction (a retry
                // of this one, say) takes another shard, so a shard held by
                // someone else (a transaction of a process killed
                // mid-commit, which the server keeps until it reaps it)
                // costs one conflict, not one per attempt until then.
                free.insert(0, self.index);
            }
        }
    }
}

impl Default for ShardPool {
    fn default() -> Self {
        ShardPool {
            free: Arc::new(Mutex::new((0..SHARDS).rev().collect())),
        }
    }
}

impl ShardPool {
    /// A free shard; when all are taken (more concurrent transactions than
    /// shards), shard 0, whose concurrent users then conflict and retry.
    pub fn take(&self) -> Shard {
        let index = self.free.lock().ok().and_then(|mut free| free.pop());
        match index {
            Some(index) => Shard {
                index,
                pool: Some(self.clone()),
            },
            None => Shard {
                index: 0,
                pool: None,
            },
        }
    }
}
