//! The connection to the lineage graph and its batched, retried writes.
//!
//! Writes `MERGE` nodes on their keys, which is idempotent only when two
//! writes of the same key cannot interleave. So every write first waits
//! for the uniqueness constraints ([`SCHEMA`]) to exist, which makes the
//! server refuse a second node with the same key (the refused batch is
//! retried and then merges into the first), and one handle's writes run
//! one at a time. Without both, two workers writing a task and a task that
//! depends on it at once could each create the shared `Task` node, and a
//! later write would link to both.

use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use neo4rs::{query, ConfigBuilder, Graph};
use tidewater_operators::model::Completion;
use tokio::sync::{Mutex, OnceCell};

use super::config::LineageConfig;
use super::error::LineageError;
use super::rows::batch_rows;
use super::schema::{SCHEMA, WRITE_EXECUTIONS};

/// A handle on the lineage graph: cheap to clone, shared by writers and
/// readers. Connections are opened on first use, so a handle can be made
/// while the server is down. Clones share the schema state and the write
/// lock.
#[derive(Clone)]
pub struct LineageGraph {
    graph: Graph,
    config: LineageConfig,
    /// Set once [`SCHEMA`] has been applied through this handle.
    schema: Arc<OnceCell<()>>,
    /// Held while a write runs, so this process's writes never interleave.
    writing: Arc<Mutex<()>>,
}

impl LineageGraph {
    /// A handle for the server `config` names. Nothing is sent yet.
    pub async fn connect(config: &LineageConfig) -> Result<Self, LineageError> {
        let connect_error = |source| LineageError::Connect {
            uri: config.uri.clone(),
            source,
        };
        let driver_config = ConfigBuilder::default()
            .uri(config.uri.as_str())
            .user(config.user.as_str())
            .password(config.password.as_str())
            .db(config.database.as_str())
            .max_connections(config.max_connections)
            .build()
            .map_err(connect_error)?;
        let graph = Graph::connect(driver_config).await.map_err(connect_error)?;
        Ok(LineageGraph {
            graph,
            config: config.clone(),
            schema: Arc::new(OnceCell::new()),
            writing: Arc::new(Mutex::new(())),
        })
    }

    /// The driver's handle, for callers that need a statement of their own.
    pub fn driver(&self) -> &Graph {
        &self.graph
    }

    /// The configuration this handle was made from.
    pub fn config(&self) -> &LineageConfig {
        &self.config
    }

    /// Creates the constraints and indexes the writes and queries rely on
    /// (each `IF NOT EXISTS`), retrying while the server is unreachable.
    /// Done once per handle (and its clones); later calls return at once,
    /// and a call that failed is tried again by the next.
    pub async fn ensure_schema(&self) -> Result<(), LineageError> {
        self.schema
            .get_or_try_init(|| self.apply_schema())
            .await
            .map(|_| ())
    }

    async fn apply_schema(&self) -> Result<(), LineageError> {
        for statement in SCHEMA {
            self.retrying("creating a constraint or index", || async {
                self.graph.run(query(statement)).await
            })
            .await?;
        }
        Ok(())
    }

    /// Writes `completions` (final ones, and attempts that will be
    /// retried) to the graph, `batch_size` per `UNWIND` statement, once the
    /// schema exists and no other write of this handle runs. Each batch is
    /// retried with exponential backoff while the server is unreachable or
    /// refuses it; the call returns once every batch has landed, or with
    /// the last error once `retry_max_times` retries of one batch are
    /// spent. Batches that landed stay written, and writing them again is
    /// harmless.
    pub async fn write(&self, completions: &[Completion]) -> Result<(), LineageError> {
        self.ensure_schema().await?;
        let _one_at_a_time = self.writing.lock().await;
        for batch in completions.chunks(self.config.batch_size) {
            let rows = batch_rows(batch);
            self.retrying("writing completions", || async {
                self.graph
                    .run(query(WRITE_EXECUTIONS).param("rows", rows.clone()))
                    .await
            })
            .await?;
        }
        Ok(())
    }

    /// Runs `attempt` until it succeeds, sleeping with exponential backoff
    /// (and jitter) between tries and logging each failure.
    async fn retrying<F, Fut>(&self, context: &'static str, attempt: F) -> Result<(), LineageError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), neo4rs::Error>>,
    {
        let backoff = ExponentialBuilder::new()
            .with_min_delay(Duration::from_millis(self.config.retry_min_ms))
            .with_max_delay(Duration::from_millis(self.config.retry_max_ms))
            .with_jitter();
        let backoff = match self.config.retry_max_times {
            0 => backoff.without_max_times(),
            n => backoff.with_max_times(n),
        };
        attempt
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .notify(|error, delay| {
                tracing::warn!(%error, ?delay, uri = %self.config.uri, "lineage graph: {context} failed; retrying");
            })
            .await
            .map_err(|source| LineageError::Query { context, source })
    }
}
