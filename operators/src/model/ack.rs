//! Raw source records and the acknowledgement tokens they carry.

use serde::{Deserialize, Serialize};

use super::{Task, TraceParent};

/// Identifies one delivery from one source so that it can be acknowledged
/// after the task's outcome is durably recorded (or its rejection is
/// dead-lettered).
///
/// The token is plain data so that it can travel between worker processes
/// with the task; only the worker named by `origin_worker` holds the source
/// that can act on it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AckToken {
    /// Global index of the timely worker that ingested the record.
    pub origin_worker: u32,
    /// Which source on that worker; `0` means "nothing to acknowledge".
    pub source: u16,
    /// Source-specific delivery tag (a broker delivery tag, an offset, a line).
    pub tag: u64,
}

impl AckToken {
    /// A token for records that need no acknowledgement (in-process submits).
    pub const NONE: AckToken = AckToken {
        origin_worker: 0,
        source: 0,
        tag: 0,
    };

    /// Whether the token names a source that expects an acknowledgement.
    pub fn is_some(&self) -> bool {
        self.source != 0
    }
}

/// What a source delivered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RecordBody {
    /// Raw JSON bytes that still need decoding and validation.
    Json(Vec<u8>),
    /// A task already decoded by the source (for example the HTTP API, which
    /// answers its client synchronously). It is validated again downstream
    /// only for resource feasibility.
    Task(Box<Task>),
}

/// One record from a source, with its acknowledgement token.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    /// The delivered content.
    pub body: RecordBody,
    /// Where to acknowledge it.
    pub ack: AckToken,
    /// Name of the source, for rejection reports and metrics.
    pub source_name: super::Name,
    /// Wall clock at receipt, microseconds since the Unix epoch.
    pub received_at_us: u64,
    /// The W3C trace context the delivery carried, if any: the task's span
    /// becomes a child of it.
    pub trace: Option<TraceParent>,
}
