//! Where task records, results, dead letters and model versions are kept.
//!
//! The runtime records a task as accepted before it enters the dataflow
//! (so a restart can resume it), records its final outcome when the result
//! sink receives it (only then is the source acknowledged), and dead-letters
//! rejections. It also keeps the API tokens' records (hashes only,
//! [`TokenRecord`]). [`TaskStore`] is the interface; [`EmbeddedStore`] (a redb file)
//! is the default, [`MemoryStore`] serves benchmarks and tests. All stores
//! apply the same transitions from [`record`], so they behave identically:
//! admission is idempotent by task id (a second submission finds the first,
//! see [`Admission`]), the first final outcome wins, counts by state are
//! kept as counters, and listings page through indexes ([`TaskQuery`]).
//! With `store.encryption` set, the embedded and MongoDB stores seal task
//! payloads, results and dead letters with AES-256-GCM ([`ValueCodec`]);
//! the index fields stay plain.

mod embedded;
mod encryption;
mod error;
mod memory;
#[cfg(feature = "mongodb")]
mod mongo;
mod query;
mod record;
mod token;

pub use embedded::EmbeddedStore;
pub use encryption::{EncryptionConfig, KeyError, KeyRing, KeySource, Sealed, ValueCodec};
pub use error::StoreError;
pub use memory::MemoryStore;
#[cfg(feature = "mongodb")]
pub use mongo::{MongoStore, MongoStoreConfig};
pub use query::{Admission, TaskCursor, TaskPage, TaskQuery};
pub use record::{fingerprint, ModelRecord, StateCounts, StoredTask, TaskRecord, TaskState};
pub use token::TokenRecord;

use tidewater_operators::model::{Completion, ModelTarget, Rejection, Task};

/// A store of task records, results, dead letters, model versions and API
/// tokens.
pub trait TaskStore: Send + Sync {
    /// Admits tasks (state `queued`), in one durable transaction. Returns,
    /// per task, whether it was new; an id already known is left untouched
    /// and its record returned, unless all it held was a rejection, which a
    /// new submission replaces.
    fn admit(&self, tasks: &[Task]) -> Result<Vec<Admission>, StoreError>;

    /// Records final outcomes, in one durable transaction. Returns, per
    /// completion, whether it was newly recorded: the first final outcome for
    /// an id wins and later ones are ignored.
    fn record_finished(&self, completions: &[Completion]) -> Result<Vec<bool>, StoreError>;

    /// The record of one task.
    fn get(&self, id: &str) -> Result<Option<TaskRecord>, StoreError>;

    /// A page of task records matching `query`.
    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError>;

    /// Tasks accepted but without a final outcome, to resume after a restart.
    fn unfinished(&self) -> Result<Vec<Task>, StoreError>;

    /// Tasks by state, and rejections: kept as counters, so this is cheap
    /// and survives restarts.
    fn counts(&self) -> Result<StateCounts, StoreError>;

    /// Dead-letters rejections; a rejection naming a task id also marks
    /// that task `rejected` (recording it if it was never accepted).
    fn record_rejections(&self, rejections: &[Rejection]) -> Result<(), StoreError>;

    /// The most recent `limit` rejections, oldest first.
    fn rejections(&self, limit: usize) -> Result<Vec<Rejection>, StoreError>;

    /// Stores a model version.
    fn put_model(&self, record: &ModelRecord) -> Result<(), StoreError>;

    /// Every stored version of the model for `target`, by version.
    fn models(&self, target: ModelTarget) -> Result<Vec<ModelRecord>, StoreError>;

    /// The newest version of the model for `target`.
    fn latest_model(&self, target: ModelTarget) -> Result<Option<ModelRecord>, StoreError> {
        Ok(self.models(target)?.pop())
    }

    /// Stores an API token's record (a new one, or one revoked).
    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError>;

    /// The record of the token with public id `id`.
    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError>;

    /// Every token's record, revoked ones included, by id.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
}

#[cfg(test)]
mod encrypted_tests;
#[cfg(test)]
mod tests;
