//! What the criterion benchmarks share: a configuration short enough that
//! `cargo bench -p tidewater-bench` runs in about a minute.

use std::time::Duration;

use criterion::Criterion;

/// Half a second of warm-up and `seconds` of measurement over `samples`
/// samples.
pub fn quick(seconds: u64, samples: usize) -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(seconds))
        .sample_size(samples)
}
