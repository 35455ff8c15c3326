//! Tidewater's I/O: the embedded store that the main job uses by default,
//! and connectors to external services. Each yields or takes records (with
//! acknowledgement handles where the service has them); no dataflow logic
//! lives here.
//!
//! Connectors hand what they consume to a [`ingest::RecordIngress`] and hear
//! back about recorded outcomes through an [`outcome::OutcomeListener`], so
//! that they acknowledge a delivery only once its outcome is durable.
#![forbid(missing_docs)]

#[cfg(feature = "columnar")]
pub mod columnar;
pub mod ingest;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "neo4j")]
pub mod lineage;
#[cfg(feature = "mongodb")]
pub mod mongo_source;
pub mod outcome;
#[cfg(feature = "rabbitmq")]
pub mod rabbitmq;
pub mod store;
pub mod trace;
