//! Tidewater's end-to-end tests: one test crate, the `e2e` target of the
//! `tidewater-cli` package (`cli/Cargo.toml`), so that every test can run
//! the real `tidewater` binary (`env!("CARGO_BIN_EXE_tidewater")`, through
//! [`common::binary`]) as well as the library API. `cargo test --workspace`
//! runs it; one area alone is `cargo test -p tidewater-cli --test e2e NAME::`
//! (for example `restart::`).
//!
//! # The scheme
//!
//! - Each area is a file `tests/NAME.rs` beside this one, declared below as
//!   `mod NAME;`; its tests are named `NAME::test_name`. A new area needs a
//!   `mod` line here, not a `[[test]]` entry.
//! - Shared helpers are modules of this crate, declared once here:
//!   [`common`] (the binary, free ports, blocking HTTP, spawning `tidewater
//!   run`) and [`broker_common`] (service addresses from `tests/services/up`,
//!   blocking AMQP and Kafka clients, and the scenarios that the RabbitMQ and
//!   Kafka tests share: alerts, crash safety, remote agents). An area imports
//!   them as `use crate::common::...` and `use crate::broker_common::...`,
//!   never with its own `mod common;`.
//! - The tests of all areas run in one process, in parallel: a test must not
//!   depend on a fixed port, a fixed broker queue or topic, the working
//!   directory or process-wide state (use [`common::free_port`],
//!   [`broker_common::unique`] and a temporary directory).
//! - A test that disturbs what other tests use cannot share the process: the
//!   RabbitMQ outage test stops the broker for everyone, so it is its own
//!   target (`e2e_broker_outage`, `tests/broker_rabbitmq_outage.rs`), which
//!   cargo runs after this one, never beside it.

mod broker_common;
mod common;
mod lineage_common;
mod mongodb_common;

mod bad_input;
mod broker_agents;
mod broker_kafka;
mod broker_kafka_crash;
mod broker_rabbitmq;
mod broker_rabbitmq_crash;
mod broker_rabbitmq_tls;
mod cli;
mod cluster;
mod cluster_equivalence;
mod configs;
mod container;
mod control;
mod dashboard;
mod deploy;
mod export_metrics;
mod handlers;
mod http_agents;
mod inventory;
mod learner;
mod lifecycle;
mod lineage_export;
mod mongodb_source;
mod monitoring;
mod overload;
mod pipeline_reference;
mod prometheus;
mod restart;
mod security;
mod shutdown;
mod store_mongodb;
mod telemetry;
