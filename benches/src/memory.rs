//! The process's resident memory, read from `/proc/self/status` (Linux;
//! elsewhere every figure reads 0): the benchmarks report peak RSS and the
//! memory a queued task costs.

/// Resident memory now, bytes (Linux; 0 elsewhere).
pub fn current_rss_bytes() -> u64 {
    status_kib("VmRSS:") * 1024
}

/// Peak resident memory, bytes (Linux; 0 elsewhere).
pub fn peak_rss_bytes() -> u64 {
    status_kib("VmHWM:") * 1024
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}
