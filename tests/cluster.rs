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
