//! The monitoring agent: continuous metric queries on differential
//! dataflow, their latest results, and the aggregates they compute.
//!
//! Queries are declared in the config ([`QuerySpec`]); [`continuous_queries`]
//! builds their dataflow over the pipeline's metric stream and publishes
//! results into [`QueryResults`], which the HTTP API and the Prometheus
//! exporter read.

mod aggregate;
mod query;
mod results;
mod spec;

pub use aggregate::{aggregate, decode, encode};
pub use query::continuous_queries;
pub use results::{QueryResult, QueryResults, QueryRow};
pub use spec::{validate_queries, Aggregate, Dimension, Filter, QuerySpec, QuerySpecError, Window};
