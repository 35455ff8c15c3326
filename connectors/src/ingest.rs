//! The seam from connectors into a running pipeline.
//!
//! Connectors live below the runtime, so they do not see its ingress
//! directly: they hand raw records (with the source number and delivery tag
//! to acknowledge later) and control commands to a [`RecordIngress`], which
//! the runtime implements for its own ingress.

use tidewater_operators::model::{ControlCommand, TraceParent};

/// The pipeline takes no more input (it is shutting down).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the pipeline no longer takes input")]
pub struct IngressClosed;

/// Where connectors deliver what they consume.
pub trait RecordIngress: Send + Sync + 'static {
    /// Hands raw JSON bytes from source `source_name` to the pipeline, to be
    /// decoded and validated there. Its outcome is reported back to the
    /// listener registered for `ack_source`, with `tag`. `trace` is the W3C
    /// trace context the delivery carried (its `traceparent` header), if any.
    fn submit_json(
        &self,
        source_name: &str,
        bytes: Vec<u8>,
        ack_source: u16,
        tag: u64,
        trace: Option<TraceParent>,
    ) -> Result<(), IngressClosed>;

    /// Hands a control command (executor join, heartbeat, leave, cancel) to
    /// every coordinator.
    fn submit_control(&self, command: ControlCommand) -> Result<(), IngressClosed>;

    /// Whether the pipeline holds as many records as it may
    /// (`limits.max_queued`): consumers pause before taking the next
    /// message until this turns false, leaving the rest with the broker.
    fn is_saturated(&self) -> bool {
        false
    }
}

/// How long a consumer sleeps between looks at a saturated pipeline.
pub const SATURATED_PAUSE: std::time::Duration = std::time::Duration::from_millis(20);
