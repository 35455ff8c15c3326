//! Configurable bounds on what a submission may ask for.

use serde::{Deserialize, Serialize};

/// Timeout given to tasks that do not set one: one hour.
pub const DEFAULT_TIMEOUT_MS: u64 = 3_600_000;

/// Bounds applied to every submission.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationLimits {
    /// Largest accepted payload, in bytes of JSON text.
    pub max_payload_bytes: usize,
    /// Largest accepted per-attempt timeout, in milliseconds.
    pub max_timeout_ms: u64,
    /// Largest accepted number of attempts.
    pub max_attempts: u16,
    /// Longest accepted task id, kind or tenant, in bytes.
    pub max_name_bytes: usize,
    /// Most bytes of a handler's output kept as the task's result (a
    /// command's stdout and stderr tails together, or an in-process
    /// handler's JSON value); longer output is cut and marked truncated.
    pub max_result_bytes: usize,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        ValidationLimits {
            max_payload_bytes: 1 << 20,
            max_timeout_ms: 7 * 24 * 3_600_000,
            max_attempts: 100,
            max_name_bytes: 128,
            max_result_bytes: 64 * 1024,
        }
    }
}

impl ValidationLimits {
    /// Largest accepted record: the payload limit plus room for the other
    /// fields. Larger records are rejected before they are parsed.
    pub fn max_record_bytes(&self) -> usize {
        self.max_payload_bytes.saturating_add(64 * 1024)
    }
}
