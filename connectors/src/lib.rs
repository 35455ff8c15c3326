//! Tidewater's I/O: the embedded store that the main job uses by default,
//! and connectors to external services. Each yields or takes records (with
//! acknowledgement handles where the service has them); no dataflow logic
//! lives here.
#![forbid(missing_docs)]

pub mod store;
