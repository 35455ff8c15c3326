//! Timely dataflow operators over the model's streams.
//!
//! Each operator is an extension trait on [`Stream`](timely::dataflow::Stream)
//! whose method and debug name match the trait:
//!
//! - [`Decode`]: source records → tasks and rejections;
//! - [`Coordinate`]: tasks, plus the feedback loop of completions and
//!   forwarded tasks, plus model updates → assignments, final completions,
//!   rejections, forwards and metrics;
//! - [`Execute`]: assignments → completions, through an [`ExecutionBackend`].

mod coordinate;
mod coordinator_state;
mod decode;
mod execute;
mod feedback;
mod streams;

pub use coordinate::{Coordinate, CoordinatorStreams};
pub use coordinator_state::{CoordinatorOutputs, CoordinatorState, ModelListener, RetryPolicy};
pub use decode::Decode;
pub use execute::{Execute, ExecutionBackend};
pub use feedback::Feedback;
pub use streams::{metric_for_completion, metric_for_rejection, TimedStream};
