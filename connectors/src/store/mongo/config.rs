//! Where the MongoDB store connects and which database it uses.

use std::time::Duration;

/// Collections the store keeps in its database.
pub const TASKS: &str = "tasks";
/// Dead letters, oldest first by `_id`.
pub const REJECTIONS: &str = "rejections";
/// The model registry.
pub const MODELS: &str = "models";
/// Persisted counts by state (a few shard documents summed on read).
pub const COUNTERS: &str = "counters";
/// API tokens' records (argon2 hashes, no secrets), by token id.
pub const TOKENS: &str = "tokens";

/// How the store reaches MongoDB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MongoStoreConfig {
    /// Connection string: `mongodb://host:port/` or `mongodb+srv://...`.
    /// Options in it (TLS, credentials, timeouts) apply as the driver reads
    /// them.
    pub url: String,
    /// Database holding the store's collections.
    pub database: String,
    /// How long one attempt waits to find a usable server before it counts
    /// as failed and is retried; used unless the URL sets
    /// `serverSelectionTimeoutMS`.
    pub server_selection_timeout: Duration,
    /// Longest pause between two attempts of a write that keeps failing.
    pub max_backoff: Duration,
}

impl MongoStoreConfig {
    /// A config for `url` and `database` with the default timeouts.
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> Self {
        MongoStoreConfig {
            url: url.into(),
            database: database.into(),
            server_selection_timeout: Duration::from_secs(5),
            max_backoff: Duration::from_secs(5),
        }
    }
}
