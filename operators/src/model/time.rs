//! Timestamps: dataflow epochs and wall-clock microseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// A timely epoch: milliseconds since the Unix epoch at which records were
/// ingested. Every worker in every process advances its inputs by the wall
/// clock, so an epoch means the same instant everywhere.
pub type Epoch = u64;

/// Microseconds since the Unix epoch, by the system clock.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
