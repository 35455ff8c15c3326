//! Overload: ten times what the executors can run is offered over HTTP for
//! a bounded time. `limits.max_queued` answers the excess `503` with
//! `Retry-After`, the process's memory stays under a stated bound, and
//! every task that was accepted completes.

use std::time::{Duration, Instant};

use crate::common::{free_port, spawn_run, Http};

/// The bound this test states for the process's resident memory.
const RSS_BOUND_MIB: u64 = 256;
/// Tasks the process may hold not yet final.
const MAX_QUEUED: usize = 300;

fn rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024)
}

#[test]
fn ten_times_capacity_is_bounded_and_every_accepted_task_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            r#"
workers = 2
[http]
listen = "127.0.0.1:{port}"
[store]
kind = "embedded"
path = "{store}"
[limits]
max_queued = {MAX_QUEUED}
[[executors]]
id = "e1"
cpu_milli = 2000
memory_mib = 4096
"#,
            store = dir.path().join("store.redb").display()
        ),
    )
    .expect("config");
    let mut run = spawn_run(dir.path(), &config, &[], "run.log");
    let pid = run.id();
    let base = format!("http://127.0.0.1:{port}");
    let http = Http::new();
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));

    // Capacity: 4 tasks of 500 mCPU at once, 20 ms each: about 200 per
    // second. Offered: batches of 100 as fast as answers come, which is
    // well over ten times that.
    let mut accepted = 0usize;
    let mut overloaded = 0usize;
    let mut offered = 0usize;
    let mut peak_rss = 0;
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < Duration::from_secs(5) {
        let batch: Vec<serde_json::Value> = (0..100)
            .map(|_| {
                n += 1;
                serde_json::json!({
                    "id": format!("o{n}"), "kind": "sleep", "payload": {"ms": 20},
                    "resources": {"cpu_milli": 500, "memory_mib": 16}
                })
            })
            .collect();
        offered += batch.len();
        let (status, answer) = http.post(
            &format!("{base}/v1/tasks"),
            &serde_json::to_string(&batch).expect("json"),
        );
        match status {
            200 => accepted += answer["accepted"].as_array().map_or(0, Vec::len),
            503 => {
                assert_eq!(answer["code"], "overloaded", "{answer}");
                overloaded += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            other => panic!("unexpected {other}: {answer}"),
        }
        peak_rss = peak_rss.max(rss_mib(pid));
    }
    let offered_rate = offered as f64 / started.elapsed().as_secs_f64();
    assert!(
        offered_rate > 2_000.0,
        "offered only {offered_rate:.0}/s, not 10x capacity"
    );
    assert!(overloaded > 0, "the bound never answered 503");
    assert!(accepted >= MAX_QUEUED, "accepted {accepted}");

    // Everything accepted completes.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, stats) = http.get(&format!("{base}/v1/stats")).expect("stats");
        let succeeded = stats["store"]["succeeded"].as_u64().unwrap_or(0) as usize;
        peak_rss = peak_rss.max(rss_mib(pid));
        if succeeded == accepted {
            break;
        }
        assert!(
            succeeded < accepted,
            "more succeeded than accepted: {stats}"
        );
        assert!(
            Instant::now() < deadline,
            "{succeeded} of {accepted} completed: {stats}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        peak_rss > 0 && peak_rss < RSS_BOUND_MIB,
        "peak RSS {peak_rss} MiB, bound {RSS_BOUND_MIB} MiB"
    );
    eprintln!(
        "overload: offered {offered} ({offered_rate:.0}/s), accepted {accepted}, {overloaded} answers 503, peak RSS {peak_rss} MiB"
    );
    let _ = run.kill();
    let _ = run.wait();
}
