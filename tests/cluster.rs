//! Timely cluster mode: two processes on loopback, sharing one input file,
//! produce the same completions and rejections as one process.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::{free_port, read_json_lines, spawn_run_with_env};

fn input() -> String {
    let mut lines = Vec::new();
    for i in 0..300 {
        lines.push(match i % 6 {
            0 | 1 => format!(r#"{{"id":"c{i}","kind":"noop","resources":{{"cpu_milli":{}}}}}"#, 100 + i),
            2 => format!(r#"{{"id":"c{i}","kind":"sleep","payload":{{"ms":{}}}}}"#, i % 7),
            3 => format!(r#"{{"id":"c{i}","kind":"command","payload":{{"program":"false"}},"max_attempts":2}}"#),
            // Only one executor has GPUs: these cross shards (and processes).
            4 => format!(r#"{{"id":"c{i}","kind":"noop","resources":{{"gpu_milli":500,"gpu_models":["A100"]}}}}"#),
            _ => format!(r#"{{"id":"c{i}","kind":"noop","resources":{{"cpu_milli":-{i}}}}}"#),
        });
    }
    lines.join("\n")
}

fn config(dir: &Path, cluster: Option<(u16, u16)>) -> std::path::PathBuf {
    let cluster = match cluster {
        Some((a, b)) => {
            format!("[cluster]\nprocess = 0\naddresses = [\"127.0.0.1:{a}\", \"127.0.0.1:{b}\"]\n")
        }
        None => String::new(),
    };
    let text = format!(
        r#"
workers = 1
{cluster}
[http]
enabled = false
[store]
kind = "memory"
[retry]
initial_backoff_ms = 1
[handlers]
command_allowlist = ["false"]
[[executors]]
id = "cpu"
count = 3
cpu_milli = 4000
memory_mib = 4096
[[executors]]
id = "gpu"
cpu_milli = 4000
memory_mib = 4096
gpus = 1
gpu_model = "A100"
"#
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// (id, status, attempt) of every result.
type Results = BTreeSet<(String, String, u64)>;
/// (code, excerpt) of every dead letter.
type DeadLetters = BTreeSet<(String, String)>;

/// Every result and dead letter in the named runs' files.
fn outcomes(dir: &Path, files: &[&str]) -> (Results, DeadLetters) {
    let mut results = BTreeSet::new();
    let mut dead = BTreeSet::new();
    for file in files {
        for r in read_json_lines(&dir.join(format!("{file}.results.jsonl"))) {
            results.insert((
                r["task"]["id"].as_str().unwrap_or_default().to_string(),
                variant(&r["outcome"]),
                r["task"]["attempt"].as_u64().unwrap_or_default(),
            ));
        }
        for d in read_json_lines(&dir.join(format!("{file}.dead.jsonl"))) {
            dead.insert((
                variant(&d["reason"]),
                d["excerpt"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    (results, dead)
}

/// The variant name of an externally tagged enum value.
fn variant(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(name) => name.clone(),
        serde_json::Value::Object(map) => map.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    }
}

fn run(dir: &Path, config: &Path, extra: &[&str], name: &str) -> std::process::Child {
    let mut args = vec!["--input", "tasks.jsonl", "--exit-when-done"];
    args.extend_from_slice(extra);
    let env = [
        (
            "TIDEWATER__SINKS__RESULTS_FILE".to_string(),
            format!("{name}.results.jsonl"),
        ),
        (
            "TIDEWATER__SINKS__DEAD_LETTER_FILE".to_string(),
            format!("{name}.dead.jsonl"),
        ),
    ];
    spawn_run_with_env(dir, config, &args, &format!("{name}.log"), &env)
}

fn wait(dir: &Path, mut child: std::process::Child, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            let log = std::fs::read_to_string(dir.join(format!("{what}.log"))).unwrap_or_default();
            assert!(status.success(), "{what} exited with {status}; log:\n{log}");
            return;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{what} did not finish in time");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_processes_give_the_same_completions_as_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("tasks.jsonl"), input()).expect("input");

    let single = config(dir.path(), None);
    wait(
        dir.path(),
        run(dir.path(), &single, &[], "single"),
        "single",
    );
    let (expected_results, expected_dead) = outcomes(dir.path(), &["single"]);
    assert_eq!(expected_results.len(), 250);
    assert_eq!(expected_dead.len(), 50);
    assert!(expected_results
        .iter()
        .any(|(_, status, attempt)| status == "failed" && *attempt == 2));

    let clustered = config(dir.path(), Some((free_port(), free_port())));
    let p0 = run(dir.path(), &clustered, &["--process", "0"], "p0");
    let p1 = run(dir.path(), &clustered, &["--process", "1"], "p1");
    wait(dir.path(), p0, "p0");
    wait(dir.path(), p1, "p1");
    let (results, dead) = outcomes(dir.path(), &["p0", "p1"]);
    assert_eq!(results, expected_results);
    assert_eq!(dead, expected_dead);
    // Both processes ingested part of the input.
    assert!(!read_json_lines(&dir.path().join("p0.results.jsonl")).is_empty());
    assert!(!read_json_lines(&dir.path().join("p1.results.jsonl")).is_empty());
}

/// A cluster of two processes serving HTTP on `port` and `port + 1`.
fn api_config(dir: &Path, timely: (u16, u16), port: u16) -> std::path::PathBuf {
    let text = format!(
        r#"
workers = 1
[cluster]
process = 0
addresses = ["127.0.0.1:{a}", "127.0.0.1:{b}"]
[http]
listen = "127.0.0.1:{port}"
[store]
kind = "memory"
[[executors]]
id = "only"
cpu_milli = 4000
memory_mib = 4096
"#,
        a = timely.0,
        b = timely.1,
    );
    let path = dir.join("api.toml");
    std::fs::write(&path, text).expect("config");
    path
}

#[test]
fn any_process_answers_for_a_task_taken_in_by_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Two consecutive free ports for the two processes' APIs.
    let port = loop {
        let port = free_port();
        if std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            break port;
        }
    };
    let config = api_config(dir.path(), (free_port(), free_port()), port);
    let spawn = |process: &str| {
        let log = format!("api-p{process}.log");
        crate::common::spawn_run(dir.path(), &config, &["--process", process], &log)
    };
    let mut children = [spawn("0"), spawn("1")];
    let http = crate::common::Http::new();
    let p0 = format!("http://127.0.0.1:{port}");
    let p1 = format!("http://127.0.0.1:{}", port + 1);
    http.wait_ready(&format!("{p0}/healthz"), Duration::from_secs(20));
    http.wait_ready(&format!("{p1}/healthz"), Duration::from_secs(20));

    // Taken in by process 1; its executor lives on process 0's worker.
    for (id, ms) in [("short", 10), ("long", 20_000)] {
        let body = format!(r#"{{"id":"{id}","kind":"sleep","payload":{{"ms":{ms}}}}}"#);
        let (status, answer) = http.post(&format!("{p1}/v1/tasks"), &body);
        assert_eq!(status, 202, "{answer}");
    }
    let state = |base: &str, id: &str| -> String {
        let (status, record) = http
            .get(&format!("{base}/v1/tasks/{id}"))
            .expect("reachable");
        assert_eq!(status, 200, "{base} {id}: {record}");
        record["state"].as_str().unwrap_or_default().to_string()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while state(&p0, "short") != "succeeded" || state(&p0, "long") != "running" {
        assert!(
            Instant::now() < deadline,
            "short {} long {}",
            state(&p0, "short"),
            state(&p0, "long")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Listings on either process cover both tasks.
    for base in [&p0, &p1] {
        let (status, page) = http
            .get(&format!("{base}/v1/tasks?limit=1"))
            .expect("reachable");
        assert_eq!(status, 200, "{page}");
        assert_eq!(page["tasks"][0]["id"], "short", "{page}");
        let cursor = page["next_cursor"]
            .as_str()
            .expect("a second page")
            .to_string();
        let (_, page) = http
            .get(&format!("{base}/v1/tasks?limit=1&cursor={cursor}"))
            .expect("reachable");
        assert_eq!(page["tasks"][0]["id"], "long", "{page}");
        assert_eq!(page["next_cursor"], serde_json::Value::Null, "{page}");
        // Its record lives in process 1's store, its attempt runs on
        // process 0: both list it running, with its executor.
        assert_eq!(page["tasks"][0]["state"], "running", "{base}: {page}");
        assert!(page["tasks"][0]["executor"].is_string(), "{page}");
        let (_, running) = http
            .get(&format!("{base}/v1/tasks?state=running"))
            .expect("reachable");
        let ids: Vec<&str> = running["tasks"]
            .as_array()
            .expect("tasks")
            .iter()
            .filter_map(|t| t["id"].as_str())
            .collect();
        assert_eq!(ids, ["long"], "{base}: {running}");
        let (_, queued) = http
            .get(&format!("{base}/v1/tasks?state=queued"))
            .expect("reachable");
        assert_eq!(queued["tasks"], serde_json::json!([]), "{base}: {queued}");
    }
    // A cancel on process 0 reaches the task that process 1 took in.
    let (status, answer) = http.delete(&format!("{p0}/v1/tasks/long"));
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["state"], "running", "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while state(&p0, "long") != "cancelled" {
        assert!(Instant::now() < deadline, "long: {}", state(&p0, "long"));
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, _) = http
        .get(&format!("{p0}/v1/tasks/nowhere"))
        .expect("reachable");
    assert_eq!(status, 404);
    for child in &mut children {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
    }
    for child in &mut children {
        let _ = child.wait();
    }
}
