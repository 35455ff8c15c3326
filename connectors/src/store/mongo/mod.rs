//! A [`TaskStore`] in MongoDB (feature `mongodb`).
//!
//! ```text
//!  caller thread ──► MongoStore method ──► Exec (own tokio runtime, backon retries)
//!                                              │
//!                        ops: one transaction per batch ──► tasks / rejections / counters
//!                             (WorkingSet: find by ids → record.rs transitions → update command)
//! ```
//!
//! Collections, in the configured database: `tasks` (one document per task
//! id, see [`documents`]), `rejections` (dead letters), `models` (the model
//! registry), `counters` (counts by state, see [`counters`]) and `tokens`
//! (API tokens' hashed records, unique by `id`). Every
//! change to task records is one transaction per batch that reads the
//! tasks it names, applies the same transitions as the other stores
//! (idempotent admission by id, the first final outcome wins), writes the
//! changed documents filtered on the state they were read in, and updates
//! the counters, so records and counts never disagree. Transactions and
//! change streams need a replica set: production targets MongoDB 6 or
//! newer; the test suite runs against SecantusDB, which speaks the MongoDB
//! wire protocol and presents itself as a one-node replica set.
//!
//! When the server is unreachable, writes retry with backoff until they
//! land: the caller (a result sink) blocks, so backpressure flows upstream
//! and sources stay unacknowledged; nothing is lost.

mod config;
mod counters;
mod documents;
mod error;
mod exec;
mod fresh_hint;
mod indexes;
mod ops;
mod working_set;

use std::sync::Arc;

use mongodb::options::ClientOptions;
use mongodb::Client;

use tidewater_operators::model::{Completion, ModelTarget, Rejection, Task};

pub use config::MongoStoreConfig;

use super::{
    Admission, KeyRing, ModelRecord, StateCounts, StoreError, TaskPage, TaskQuery, TaskRecord,
    TaskStore, TokenRecord, ValueCodec,
};
use error::Failure;
use exec::{Exec, Persistence};
use ops::Collections;

/// A store in a MongoDB database.
pub struct MongoStore {
    collections: Collections,
    // Dropped last: the client's background tasks run on it.
    exec: Exec,
}

impl MongoStore {
    /// Connects to the server `config` names, checks that it answers, and
    /// creates the indexes the store needs.
    pub fn open(config: &MongoStoreConfig) -> Result<Self, StoreError> {
        Self::open_with(config, ValueCodec::default())
    }

    /// Like [`MongoStore::open`], sealing task bodies and dead letters with
    /// `keys` (documents written before stay readable).
    pub fn open_encrypted(
        config: &MongoStoreConfig,
        keys: Arc<KeyRing>,
    ) -> Result<Self, StoreError> {
        Self::open_with(config, ValueCodec::new(Some(keys)))
    }

    fn open_with(config: &MongoStoreConfig, codec: ValueCodec) -> Result<Self, StoreError> {
        let exec = Exec::new(config.max_backoff)?;
        let open_error = |detail: String| StoreError::Open {
            path: format!("{} (database {})", redact(&config.url), config.database),
            detail,
        };
        let url = config.url.clone();
        let selection = config.server_selection_timeout;
        // The client's monitors are spawned where it is made: on `exec`.
        let client = exec
            .block_on("connecting", async move {
                let mut options = ClientOptions::parse(&url).await?;
                if options.server_selection_timeout.is_none() {
                    options.server_selection_timeout = Some(selection);
                }
                options.app_name.get_or_insert_with(|| "tidewater".into());
                Client::with_options(options)
            })?
            .map_err(|e| open_error(e.to_string()))?;
        let collections = Collections::new(client, &config.database, codec);
        let db = collections.db.clone();
        exec.run("creating indexes", Persistence::Bounded, move || {
            let db = db.clone();
            async move { indexes::ensure(&db).await }
        })
        .map_err(|e| open_error(e.to_string()))?;
        Ok(MongoStore { collections, exec })
    }

    fn write<T, F, Fut>(&self, operation: &'static str, attempt: F) -> Result<T, StoreError>
    where
        F: Fn(Collections) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, Failure>> + Send + 'static,
        T: Send + 'static,
    {
        let c = self.collections.clone();
        self.exec.run(operation, Persistence::UntilDone, move || {
            attempt(c.clone())
        })
    }

    fn read<T, F, Fut>(&self, operation: &'static str, attempt: F) -> Result<T, StoreError>
    where
        F: Fn(Collections) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, Failure>> + Send + 'static,
        T: Send + 'static,
    {
        let c = self.collections.clone();
        self.exec
            .run(operation, Persistence::Bounded, move || attempt(c.clone()))
    }
}

/// `url` without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

impl TaskStore for MongoStore {
    fn admit(&self, tasks: &[Task]) -> Result<Vec<Admission>, StoreError> {
        if tasks.is_empty() {
            return Ok(Vec::new());
        }
        let tasks = Arc::new(tasks.to_vec());
        self.write("admitting tasks", move |c| {
            ops::admit(c, Arc::clone(&tasks))
        })
    }

    fn record_finished(&self, completions: &[Completion]) -> Result<Vec<bool>, StoreError> {
        if completions.is_empty() {
            return Ok(Vec::new());
        }
        let completions = Arc::new(completions.to_vec());
        self.write("recording results", move |c| {
            ops::finish(c, Arc::clone(&completions))
        })
    }

    fn get(&self, id: &str) -> Result<Option<TaskRecord>, StoreError> {
        let id = id.to_string();
        self.read("reading a task", move |c| ops::get(c, id.clone()))
    }

    fn list(&self, query: &TaskQuery) -> Result<TaskPage, StoreError> {
        let query = query.clone();
        self.read("listing tasks", move |c| ops::list(c, query.clone()))
    }

    fn unfinished(&self) -> Result<Vec<Task>, StoreError> {
        self.read("listing unfinished tasks", ops::unfinished)
    }

    fn counts(&self) -> Result<StateCounts, StoreError> {
        self.read("counting tasks", ops::counts)
    }

    fn record_rejections(&self, rejections: &[Rejection]) -> Result<(), StoreError> {
        if rejections.is_empty() {
            return Ok(());
        }
        let rejections = Arc::new(rejections.to_vec());
        self.write("dead-lettering rejections", move |c| {
            ops::reject(c, Arc::clone(&rejections))
        })
    }

    fn rejections(&self, limit: usize) -> Result<Vec<Rejection>, StoreError> {
        self.read("reading rejections", move |c| ops::rejections(c, limit))
    }

    fn put_model(&self, record: &ModelRecord) -> Result<(), StoreError> {
        let record = Arc::new(record.clone());
        self.write("storing a model", move |c| {
            ops::put_model(c, Arc::clone(&record))
        })
    }

    fn models(&self, target: ModelTarget) -> Result<Vec<ModelRecord>, StoreError> {
        self.read("reading models", move |c| ops::models(c, target, false))
    }

    fn latest_model(&self, target: ModelTarget) -> Result<Option<ModelRecord>, StoreError> {
        let newest = self.read("reading the latest model", move |c| {
            ops::models(c, target, true)
        })?;
        Ok(newest.into_iter().next())
    }

    fn put_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let token = Arc::new(token.clone());
        self.write("storing a token", move |c| {
            ops::put_token(c, Arc::clone(&token))
        })
    }

    fn token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let id = id.to_string();
        self.read("reading a token", move |c| ops::token(c, id.clone()))
    }

    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        self.read("reading tokens", ops::tokens)
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod redaction_tests {
    use super::redact;

    #[test]
    fn passwords_are_left_out_of_messages() {
        assert_eq!(
            redact("mongodb://app:secret@db.example:27017/?tls=true"),
            "mongodb://app:***@db.example:27017/?tls=true"
        );
        assert_eq!(
            redact("mongodb://127.0.0.1:27018/"),
            "mongodb://127.0.0.1:27018/"
        );
    }
}
