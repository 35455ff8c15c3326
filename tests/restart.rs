//! Crash and restart: tasks accepted over HTTP survive `kill -9`; after a
//! restart every task completes exactly once in the embedded store, and the
//! results file reports each at most once. Ctrl-C shuts down cleanly.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{free_port, read_json_lines, spawn_run, Http};

const TASKS: usize = 40;

fn write_config(dir: &std::path::Path, port: u16) -> std::path::PathBuf {
    let config = format!(
        r#"
workers = 2
[http]
listen = "127.0.0.1:{port}"
[store]
kind = "embedded"
path = "data/store.redb"
[sinks]
results_file = "data/results.jsonl"
[[executors]]
id = "slow"
count = 2
cpu_milli = 1000
memory_mib = 1024
"#
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

fn results(dir: &std::path::Path) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    for line in read_json_lines(&dir.join("data/results.jsonl")) {
        let id = line["task"]["id"].as_str().expect("id").to_string();
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

fn wait_for_results(dir: &std::path::Path, at_least: usize, timeout: Duration) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let count = results(dir).len();
        if count >= at_least || Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_task_completes_exactly_once_across_kill_9_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(dir.path(), port);
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");

    let mut child = spawn_run(dir.path(), &config, &[], "run-1.log");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(20));
    // Each task holds a whole executor for 60 ms: two run at a time.
    let batch: Vec<String> = (0..TASKS)
        .map(|i| format!(r#"{{"id":"job-{i}","kind":"sleep","payload":{{"ms":60}},"resources":{{"cpu_milli":1000}}}}"#))
        .collect();
    let (status, answer) = http.post(
        &format!("{base}/v1/tasks"),
        &format!("[{}]", batch.join(",")),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"].as_array().map(Vec::len), Some(TASKS));

    // Crash twice at different points, restarting in between.
    for (round, crash_after) in [(1, 6), (2, 20)] {
        let done = wait_for_results(dir.path(), crash_after, Duration::from_secs(30));
        assert!(
            done >= crash_after,
            "round {round}: only {done} results before the crash"
        );
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        assert!(
            results(dir.path()).len() < TASKS,
            "round {round}: crash came after everything finished"
        );
        child = spawn_run(dir.path(), &config, &[], &format!("run-{}.log", round + 1));
        http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(20));
    }

    let done = wait_for_results(dir.path(), TASKS, Duration::from_secs(60));
    assert_eq!(done, TASKS, "every task finished after the restarts");
    for (id, count) in results(dir.path()) {
        assert_eq!(count, 1, "{id} reported {count} times");
    }
    for i in 0..TASKS {
        let (status, record) = http
            .get(&format!("{base}/v1/tasks/job-{i}"))
            .expect("reachable");
        assert_eq!(status, 200);
        assert_eq!(record["state"], "succeeded", "job-{i}: {record}");
    }

    // Ctrl-C: drain and exit cleanly.
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "clean shutdown on Ctrl-C: {exit:?}");
}
