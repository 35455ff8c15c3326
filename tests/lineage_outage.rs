//! The lineage graph server stops mid-run: completions wait (the store does
//! not record them final, so nothing is acknowledged and the HTTP side sees
//! them unfinished) while writes retry with backoff; once the server is
//! back everything lands, in the graph and in the exported files.
//!
//! Stops and restarts the ArcadeDB that `tests/services/up` started, by the
//! PID file and start script it names (`TIDEWATER_ARCADEDB_PID_FILE`,
//! `TIDEWATER_ARCADEDB_START`); its own test binary, so that no other test
//! runs against the server meanwhile.

mod common;
mod lineage_common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, read_json_lines, spawn_run, Http};
use lineage_common::{
    read_export, run_id, services, stop, task_id, tasks_json, wait_for_lineage, write_config,
};

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(
        std::env::var(name).unwrap_or_else(|_| panic!("{name} is unset: run tests/services/up")),
    )
}

fn pid_alive(pid: &str) -> bool {
    Command::new("kill")
        .args(["-0", pid])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Stops the server (SIGTERM) and waits until it has exited.
fn stop_server(pid_file: &PathBuf) {
    let pid = std::fs::read_to_string(pid_file)
        .expect("pid file")
        .trim()
        .to_string();
    assert!(Command::new("kill")
        .arg(&pid)
        .status()
        .expect("kill")
        .success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while pid_alive(&pid) {
        assert!(Instant::now() < deadline, "ArcadeDB ({pid}) did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Starts the server again with the same script, records its PID where
/// `tests/services/down` looks, and waits for its "started" line.
fn start_server(pid_file: &PathBuf, script: &PathBuf) {
    let log_path = pid_file.with_file_name("arcadedb.log");
    // Detached, as `tests/services/up` starts it: the server outlives the test.
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"nohup "$0" >"$1" 2>&1 </dev/null & echo $!"#)
        .arg(script)
        .arg(&log_path)
        .output()
        .expect("start ArcadeDB");
    assert!(out.status.success(), "starting ArcadeDB: {out:?}");
    let pid = String::from_utf8(out.stdout)
        .expect("pid")
        .trim()
        .to_string();
    std::fs::write(pid_file, &pid).expect("pid file");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        if text.contains("ArcadeDB Server started") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "ArcadeDB did not start again: {text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn completions_wait_for_the_graph_and_all_land_after_an_outage() {
    let Some(services) = services() else { return };
    let (pid_file, script) = (
        env_path("TIDEWATER_ARCADEDB_PID_FILE"),
        env_path("TIDEWATER_ARCADEDB_START"),
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let run = run_id();
    let config = write_config(dir.path(), port, &services, &run, "");
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_run(dir.path(), &config, &[], "run.log");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));

    let (status, answer) = http.post(&format!("{base}/v1/tasks"), &tasks_json(&run, 0..10));
    assert_eq!(status, 200, "{answer}");
    wait_for_lineage(&http, &base, &run, 10, Duration::from_secs(60));

    stop_server(&pid_file);
    let (status, answer) = http.post(&format!("{base}/v1/tasks"), &tasks_json(&run, 10..30));
    assert_eq!(status, 200, "{answer}");
    // The tasks run, but their completions cannot reach the graph: none is
    // recorded final (so none would be acknowledged), and the API says so.
    std::thread::sleep(Duration::from_secs(3));
    for i in 10..30 {
        let (status, record) = http
            .get(&format!("{base}/v1/tasks/{}", task_id(&run, i)))
            .expect("the API stays up during the outage");
        assert_eq!(status, 200, "{record}");
        // Not final: queued, or running/retrying while its attempt is live.
        assert!(
            ["queued", "running", "retrying"].contains(&record["state"].as_str().unwrap_or("")),
            "task {i} was recorded before its graph write: {record}"
        );
    }
    assert_eq!(
        read_json_lines(&dir.path().join("data/results.jsonl")).len(),
        10
    );
    let (status, _) = http
        .get(&format!("{base}/v1/lineage/agents/agent-{run}"))
        .expect("answer");
    assert_eq!(status, 503, "queries report the outage");

    start_server(&pid_file, &script);
    wait_for_lineage(&http, &base, &run, 30, Duration::from_secs(90));
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_json_lines(&dir.path().join("data/results.jsonl")).len() < 30 {
        assert!(
            Instant::now() < deadline,
            "results did not all land after the outage"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for i in 0..30 {
        let (_, record) = http
            .get(&format!("{base}/v1/tasks/{}", task_id(&run, i)))
            .expect("answer");
        assert_ne!(record["state"], "queued", "task {i}: {record}");
    }
    stop(&mut child);
    let answer = read_export(&services.python, &dir.path().join("data/export"));
    let first = answer.lines().next().expect("summary");
    assert!(
        first.starts_with("30 30 2 30 "),
        "rows, distinct ids, files, experience: {first}"
    );
}
