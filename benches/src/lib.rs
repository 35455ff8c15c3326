//! Benchmarks and the trace replay harness, over the `tidewater` library.
//!
//! End-to-end harnesses (run by `tidewater bench` and `tidewater
//! bench-queries`): [`pipeline_bench`] drives no-op tasks through the real
//! task pipeline in process; [`broker_bench`] and [`kafka_bench`] measure
//! tasks per second through RabbitMQ and Kafka against a raw client loop in
//! the same run; [`http_bench`] measures submissions through the HTTP API
//! against a plain axum echo endpoint, and listing pages at two store
//! sizes; [`query_bench`] measures continuous-query throughput and
//! freshness. Trace replays (`tidewater replay`): [`openb`] replays the
//! Alibaba GPU cluster trace through the placement policies to saturation
//! ([`sharded`]: over parallel shards); [`swf`] simulates a batch cluster
//! from a Standard Workload Format log under FCFS, user-estimate and learned
//! ordering. [`learner_bench`] measures the learner's training throughput.
//! The criterion benchmarks of the hot paths are this package's `benches/`
//! targets (`cargo bench -p tidewater-bench`).
#![forbid(missing_docs)]

pub mod broker_bench;
pub mod http_bench;
pub mod kafka_bench;
pub mod learner_bench;
pub mod memory;
pub mod openb;
pub mod pipeline_bench;
pub mod query_bench;
pub mod sharded;
pub mod swf;
