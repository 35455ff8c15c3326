//! Tidewater: an embeddable streaming dataflow engine for multi-agent task
//! systems.
//!
//! The roles of a multi-agent task system — task executor, coordinator,
//! resource manager, monitoring and learning agents — are timely dataflow
//! operators; tasks, metrics and experience flow through them as streams.
//! This crate is the process around them: configuration ([`Config`]), the
//! library API ([`Pipeline`]), worker launch, the tokio bridge, handlers and
//! the HTTP API. The `tidewater` binary is the `tidewater-cli` package
//! (`cli/`); the benchmarks are the `tidewater-bench` package (`benches/`).
#![forbid(missing_docs)]

pub mod acks;
pub mod agent;
pub mod agent_http;
pub mod api;
pub mod auth;
pub mod backend;
pub mod backlog;
pub mod brokers;
pub mod config;
pub mod error;
pub mod executor_book;
pub mod handlers;
pub mod http_agents;
pub mod ingress;
pub mod launch;
pub mod live;
pub mod metric_snapshots;
pub mod monitoring;
pub mod pipeline;
pub mod pod_ordinal;
pub mod remote_backend;
pub mod reservations;
pub mod screen;
pub mod shutdown;
pub mod sources;
pub mod stats;
pub mod store_sinks;
pub mod telemetry;

pub use config::Config;
pub use error::{ConfigError, RuntimeError};
pub use handlers::{HandlerFailure, HandlerOutput, HandlerRegistry, HandlerResult};
pub use pipeline::{Pipeline, PipelineBuilder, RunningPipeline, SubmitError};
