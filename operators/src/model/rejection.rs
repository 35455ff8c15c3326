//! Rejections: records that could not become tasks, and why.

use serde::{Deserialize, Serialize};

use super::{AckToken, Name, TraceParent};

/// Why a record was rejected. Each variant names the offending field where
/// there is one, so that the submitter can fix the input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Not valid JSON at all.
    #[error("malformed JSON: {detail}")]
    Malformed {
        /// The parser's account, with line and column.
        detail: String,
    },
    /// A field the schema does not know.
    #[error("unknown field `{field}` at `{path}`")]
    UnknownField {
        /// The unknown field's name.
        field: String,
        /// Where it was found.
        path: String,
    },
    /// A required field is absent.
    #[error("missing field `{field}` at `{path}`")]
    MissingField {
        /// The missing field's name.
        field: String,
        /// The object it is missing from.
        path: String,
    },
    /// A field has the wrong JSON type.
    #[error("wrong type at `{path}`: {detail}")]
    WrongType {
        /// The field.
        path: String,
        /// What was found and what was expected.
        detail: String,
    },
    /// A field's value is out of range or otherwise invalid.
    #[error("invalid value at `{path}`: {detail}")]
    InvalidValue {
        /// The field.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The payload is larger than the configured limit.
    #[error("payload is {size} bytes, over the limit of {limit} bytes")]
    Oversize {
        /// The payload's size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The task could never run: no executor has the capacity it asks for.
    #[error("infeasible: {detail}")]
    Infeasible {
        /// Which resource no executor can provide.
        detail: String,
    },
    /// The task's deadline passed before it could start.
    #[error("deadline passed at {deadline_ms} ms before the task could start")]
    DeadlinePassed {
        /// The deadline, milliseconds since the Unix epoch.
        deadline_ms: u64,
    },
    /// A different task with this id was already submitted (its record is
    /// `state`); this one is not run.
    #[error("a different task with id {id:?} was already submitted (it is {state}); this one is not run")]
    Duplicate {
        /// The id both carry.
        id: String,
        /// The state of the task already recorded under it.
        state: String,
    },
}

impl RejectReason {
    /// A short machine-readable code for metrics and dead-letter headers.
    pub fn code(&self) -> &'static str {
        match self {
            RejectReason::Malformed { .. } => "malformed",
            RejectReason::UnknownField { .. } => "unknown_field",
            RejectReason::MissingField { .. } => "missing_field",
            RejectReason::WrongType { .. } => "wrong_type",
            RejectReason::InvalidValue { .. } => "invalid_value",
            RejectReason::Oversize { .. } => "oversize",
            RejectReason::Infeasible { .. } => "infeasible",
            RejectReason::DeadlinePassed { .. } => "deadline_passed",
            RejectReason::Duplicate { .. } => "duplicate",
        }
    }
}

/// A record that did not become a task, with the reason.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// The task id, when the record got far enough to have one.
    pub task_id: Option<Name>,
    /// The task's tenant, when known: its rejected record belongs to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<Name>,
    /// The source it came from.
    pub source_name: Name,
    /// Up to the first 256 bytes of the record, for the dead-letter sink.
    pub excerpt: String,
    /// Where to acknowledge the source record once dead-lettered.
    pub ack: AckToken,
    /// When it was rejected, microseconds since the Unix epoch.
    pub at_us: u64,
    /// The W3C trace context its record was delivered with, if any.
    #[serde(default)]
    pub trace: Option<TraceParent>,
}
