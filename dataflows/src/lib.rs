//! Tidewater's dataflows, as functions that take a scope's input streams and
//! return output streams. [`pipeline`] wires the task pipeline, [`learner`]
//! wraps it in the learning loop; the runtime attaches sources and sinks.
#![forbid(missing_docs)]

pub mod learner;
pub mod monitor;
pub mod pipeline;
pub mod screen;
pub mod sinks;
