//! The lineage graph in Neo4j (Bolt protocol, via neo4rs): who submitted
//! which task, what it depends on, which tenant owns it, and where each of
//! its attempts ran and how it ended.
//!
//! ```text
//!   (:Agent {name}) <-[:SUBMITTED_BY]- (:Task {id}) -[:OWNED_BY]-> (:Tenant {name})
//!                                        │     ▲
//!                           [:DEPENDS_ON]│     │[:EXECUTED {attempt, duration_ms, outcome, ...}]
//!                                        ▼     │
//!                                 (:Task {id}) (:Executor {id})
//! ```
//!
//! Data flow: the runtime hands each batch of final completions, and each
//! batch of attempts the coordinator retries (one `EXECUTED` relationship
//! per attempt), to [`LineageGraph::write`], which turns them into parameter rows
//! ([`rows`]) and writes up to `batch_size` of them per `UNWIND` statement,
//! one round trip per batch. Every node and relationship is `MERGE`d on its
//! key, so a redelivered completion writes nothing twice. When the server
//! cannot be reached a batch is retried with exponential backoff (backon)
//! and the call returns only once it has landed (or the configured attempt
//! limit is spent), so the caller can hold acknowledgements until then.
//!
//! [`LineageGraph::activity`] and [`LineageGraph::task_lineage`] answer the
//! questions users ask of the graph: what an agent or executor ran in a time
//! range and which of those failed, and one task's dependencies, submitter
//! and executions.

mod config;
mod error;
mod graph;
mod query;
pub mod rows;
mod schema;

pub use config::LineageConfig;
pub use error::LineageError;
pub use graph::LineageGraph;
pub use query::{Activity, Execution, Subject, TaskLineage};
pub use schema::WRITE_EXECUTIONS;
