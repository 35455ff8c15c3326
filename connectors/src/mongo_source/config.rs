//! The `[mongodb_source]` config block: which collection's inserts become
//! tasks.
//!
//! ```toml
//! [mongodb_source]
//! url = "mongodb://127.0.0.1:27017/"
//! database = "tidewater"
//! collection = "task_submissions"
//! ```

use serde::{Deserialize, Serialize};

/// The change-stream source's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoSourceConfig {
    /// Connection string (`mongodb://` or `mongodb+srv://`); the server must
    /// be a replica set or sharded cluster (change streams need one).
    pub url: String,
    /// Database of the watched collection.
    pub database: String,
    /// The watched collection: every document inserted into it is a task
    /// submission.
    pub collection: String,
    /// Collection (in the same database) where the position in the change
    /// stream is kept, so that a restart resumes after the last task
    /// recorded as accepted.
    #[serde(default = "default_tokens_collection")]
    pub tokens_collection: String,
    /// Source name on records and dead letters.
    #[serde(default = "default_name")]
    pub name: String,
    /// Most inserts read and admitted as one batch.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
}

fn default_tokens_collection() -> String {
    "tidewater_resume_tokens".into()
}

fn default_name() -> String {
    "mongodb".into()
}

fn default_batch_size() -> usize {
    1000
}

impl MongoSourceConfig {
    /// A config for a collection, with the defaults for the rest.
    pub fn new(
        url: impl Into<String>,
        database: impl Into<String>,
        collection: impl Into<String>,
    ) -> Self {
        MongoSourceConfig {
            url: url.into(),
            database: database.into(),
            collection: collection.into(),
            tokens_collection: default_tokens_collection(),
            name: default_name(),
            batch_size: default_batch_size(),
        }
    }

    /// Checks the values, naming the first bad key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(self.url.starts_with("mongodb://") || self.url.starts_with("mongodb+srv://")) {
            return Err(("url", "must start with mongodb:// or mongodb+srv://".into()));
        }
        for (key, value) in [
            ("database", &self.database),
            ("collection", &self.collection),
            ("tokens_collection", &self.tokens_collection),
            ("name", &self.name),
        ] {
            if value.is_empty() {
                return Err((key, "must not be empty".into()));
            }
        }
        if self.tokens_collection == self.collection {
            return Err((
                "tokens_collection",
                "must differ from the watched collection".into(),
            ));
        }
        if self.batch_size == 0 {
            return Err(("batch_size", "must be at least 1".into()));
        }
        Ok(())
    }

    /// The key of this source's resume token: the watched namespace.
    pub fn token_key(&self) -> String {
        format!("{}.{}", self.database, self.collection)
    }
}
