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
    /// Most tasks a process holds taken in and not yet final, over every
    /// source: HTTP submissions past it are answered `503` with
    /// `Retry-After`, and broker consumers pause until it drains. 0: no
    /// bound. (Enforced by the runtime, not the validator.)
    pub max_queued: usize,
    /// Most tasks one tenant may have taken in over HTTP and not yet final
    /// in a process; more are answered `429`. 0: no bound.
    pub max_queued_per_tenant: usize,
    /// Tasks per second each tenant may submit over HTTP (a token bucket
    /// refilled at this rate); more are answered `429` with `Retry-After`.
    /// 0: no limit.
    pub submit_rate_per_s: u32,
    /// The bucket's size: how many tasks a tenant may submit at once
    /// beyond the rate. 0: the rate itself.
    pub submit_burst: u32,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        ValidationLimits {
            max_payload_bytes: 1 << 20,
            max_timeout_ms: 7 * 24 * 3_600_000,
            max_attempts: 100,
            max_name_bytes: 128,
            max_result_bytes: 64 * 1024,
            max_queued: 1_000_000,
            max_queued_per_tenant: 0,
            submit_rate_per_s: 0,
            submit_burst: 0,
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
