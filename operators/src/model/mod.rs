//! The records that flow through a Tidewater pipeline.
//!
//! Sources yield [`SourceRecord`]s (raw bytes or an already decoded task,
//! each with an [`AckToken`]); validation turns them into [`Task`]s or
//! [`Rejection`]s; the coordinator turns tasks into [`Assignment`]s on
//! executors described by [`ExecutorSpec`]; execution yields
//! [`Completion`]s. [`MetricEvent`]s and [`Experience`]s leave for the
//! monitoring and learning agents, and [`ModelUpdate`]s come back from the
//! learner to steer placement.
//!
//! Every type here is `serde`-serializable, because timely moves records
//! between worker processes with bincode.

mod ack;
mod assignment;
mod completion;
mod control;
mod executor;
mod experience;
mod metric;
mod model_update;
mod names;
mod rejection;
mod resources;
mod task;
mod time;
mod trace_context;
mod work;

pub use ack::{AckToken, RecordBody, SourceRecord};
pub use assignment::{Assignment, Lease};
pub use completion::{Completion, JsonText, Outcome, TaskResult};
pub use control::{
    ControlCommand, ReservationHolder, ReservationRequest, ReservationState, ReservationStatus,
};
pub use executor::{ExecutorId, ExecutorSpec, GpuDevice};
pub use experience::Experience;
pub use metric::{MetricEvent, MetricKind};
pub use model_update::{ModelTarget, ModelUpdate};
pub use names::Name;
pub use rejection::{RejectReason, Rejection};
pub use resources::{GpuRequest, QosClass, ResourceRequest, GPU_MILLI_PER_DEVICE};
pub use task::{Payload, Task, TaskId};
pub use time::{now_micros, Epoch};
pub use trace_context::{TraceParent, TRACEPARENT_HEADER};
pub use work::{AbortReason, ExecutorWork};
