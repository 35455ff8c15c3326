//! Tasks: the unit of work submitted to Tidewater.

use serde::{Deserialize, Serialize};

use super::{AckToken, Name, QosClass, ResourceRequest, TraceParent};

/// A task's identifier, unique per submission. Sources that may redeliver
/// (brokers) keep it stable across deliveries so that recording is idempotent.
pub type TaskId = Name;

/// A task's payload: the JSON text it was submitted with, or nothing.
pub type Payload = Option<Box<str>>;

/// A validated task as it flows through the dataflow.
///
/// The submission form, with its validation rules and error messages, is
/// [`crate::validate::TaskSubmission`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Unique identifier.
    pub id: TaskId,
    /// Which handler runs it (`noop`, `sleep`, `command`, or a registered name).
    pub kind: Name,
    /// Handler input as JSON text.
    pub payload: Payload,
    /// What it needs from an executor.
    pub resources: ResourceRequest,
    /// Quality-of-service class.
    pub qos: QosClass,
    /// Priority within the class; higher runs first.
    pub priority: i32,
    /// Latest acceptable start, milliseconds since the Unix epoch.
    pub deadline_ms: Option<u64>,
    /// Owner, for quotas, fair share and metrics.
    pub tenant: Name,
    /// Total attempts allowed (at least 1).
    pub max_attempts: u16,
    /// Which attempt this is, starting at 1.
    pub attempt: u16,
    /// Wall-clock limit for one attempt, in milliseconds.
    pub timeout_ms: u64,
    /// The submitter's estimate of the run time, in seconds, when given.
    pub requested_runtime_s: Option<u32>,
    /// When the task was accepted, microseconds since the Unix epoch.
    pub submitted_at_us: u64,
    /// Where to acknowledge the source record once the outcome is recorded.
    pub ack: AckToken,
    /// The agent that submitted it, when the submission names one; the
    /// lineage graph's `SUBMITTED_BY`.
    #[serde(default)]
    pub agent: Option<Name>,
    /// Tasks whose results this one consumes, as the submitter declares
    /// them; the lineage graph's `DEPENDS_ON`. Recorded for lineage only:
    /// placement does not wait for them.
    #[serde(default)]
    pub depends_on: Vec<TaskId>,
    /// The W3C trace context its source delivered it with, if any: its
    /// span (ingestion to outcome) is exported as a child of that span.
    #[serde(default)]
    pub trace: Option<TraceParent>,
}

impl Task {
    /// A minimal task with default settings, for the in-process API and tests.
    pub fn new(id: impl Into<TaskId>, kind: impl Into<Name>, resources: ResourceRequest) -> Self {
        Task {
            id: id.into(),
            kind: kind.into(),
            payload: None,
            resources,
            qos: QosClass::default(),
            priority: 0,
            deadline_ms: None,
            tenant: Name::const_new("default"),
            max_attempts: 1,
            attempt: 1,
            timeout_ms: crate::validate::DEFAULT_TIMEOUT_MS,
            requested_runtime_s: None,
            submitted_at_us: 0,
            ack: AckToken::NONE,
            agent: None,
            depends_on: Vec::new(),
            trace: None,
        }
    }

    /// Size of the payload text in bytes.
    pub fn payload_bytes(&self) -> usize {
        self.payload.as_deref().map_or(0, str::len)
    }
}
