//! The monitoring agent: continuous metric queries on differential
//! dataflow, their latest results, and the aggregates they compute.
//!
//! Queries are declared in the config ([`QuerySpec`]); [`continuous_queries`]
//! builds their dataflow over the pipeline's metric stream and publishes
//! results into [`QueryResults`], which the HTTP API and the Prometheus
//! exporter read. The dataflow's stages, in the order data meets them:
//! `window` (per-epoch consolidation and window
//! retractions), `group_key` (group ids), `order_statistics` or
//! differential's `count_total` (per-group aggregates), `result_table` (the
//! sink's epoch-ordered table).

mod aggregate;
mod group_key;
mod order_statistics;
mod query;
mod result_table;
mod results;
mod spec;
mod window;

pub use aggregate::{
    aggregate, aggregate_moments, aggregate_sorted, decode, encode, from_fixed, to_fixed,
    AggregatePlan, Moments,
};
pub use query::continuous_queries;
pub use results::{QueryResult, QueryResults, QueryRow};
pub use spec::{validate_queries, Aggregate, Dimension, Filter, QuerySpec, QuerySpecError, Window};
