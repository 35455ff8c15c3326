//! End to end through the binary: tasks submitted over HTTP with agents and
//! dependencies land in the lineage graph (ArcadeDB over Bolt), read back
//! through the lineage HTTP endpoints, and in Parquet and Arrow IPC files
//! that pyarrow reads back.

use std::time::Duration;

use crate::common::{free_port, spawn_run, Http};
use crate::lineage_common::{
    fails, read_export, run_id, services, stop, task_id, tasks_json, wait_for_lineage, write_config,
};

const TASKS: usize = 40;

#[test]
fn completions_reach_the_graph_and_the_files() {
    let Some(services) = services() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let run = run_id();
    let config = write_config(dir.path(), port, &services, &run, "");
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_run(dir.path(), &config, &[], "run.log");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));

    let (status, answer) = http.post(&format!("{base}/v1/tasks"), &tasks_json(&run, 0..TASKS));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"].as_array().map(Vec::len), Some(TASKS));

    // What the agent ran, and which failed.
    let activity = wait_for_lineage(&http, &base, &run, TASKS as u64, Duration::from_secs(60));
    let expected_failed = (0..TASKS).filter(|i| fails(*i)).count() as u64;
    assert_eq!(
        activity["failed"].as_u64(),
        Some(expected_failed),
        "{activity}"
    );
    let failed: Vec<&str> = activity["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .filter(|e| e["outcome"] == "failed")
        .map(|e| e["task"].as_str().expect("task"))
        .collect();
    let mut expected: Vec<String> = (0..TASKS)
        .filter(|i| fails(*i))
        .map(|i| task_id(&run, i))
        .collect();
    expected.sort();
    let mut failed_sorted: Vec<String> = failed.iter().map(|s| s.to_string()).collect();
    failed_sorted.sort();
    assert_eq!(failed_sorted, expected);

    // An empty time range, and a bad one.
    let (status, empty) = http
        .get(&format!(
            "{base}/v1/lineage/agents/agent-{run}?since=0&until=1"
        ))
        .expect("answer");
    assert_eq!((status, empty["ran"].as_u64()), (200, Some(0)));
    let (status, _) = http
        .get(&format!(
            "{base}/v1/lineage/agents/agent-{run}?since=5&until=1"
        ))
        .expect("answer");
    assert_eq!(status, 400);

    // What each executor ran adds up.
    let mut on_executors = 0;
    let mut answers = Vec::new();
    for executor in [format!("x{run}-0"), format!("x{run}-1")] {
        let (status, answer) = http
            .get(&format!("{base}/v1/lineage/executors/{executor}"))
            .expect("answer");
        assert_eq!(status, 200, "{answer}");
        on_executors += answer["ran"].as_u64().expect("ran");
        answers.push(answer);
    }
    assert_eq!(on_executors, TASKS as u64, "{answers:#?}");

    // One task's lineage.
    let id = task_id(&run, 5);
    let (status, lineage) = http
        .get(&format!("{base}/v1/lineage/tasks/{id}"))
        .expect("answer");
    assert_eq!(status, 200, "{lineage}");
    assert_eq!(lineage["submitted_by"], format!("agent-{run}").as_str());
    assert_eq!(lineage["depends_on"], serde_json::json!([task_id(&run, 4)]));
    assert_eq!(lineage["dependents"], serde_json::json!([task_id(&run, 6)]));
    assert_eq!(lineage["tenant"], format!("t{run}").as_str());
    assert_eq!(lineage["state"], "succeeded");
    let executions = lineage["executions"].as_array().expect("executions");
    assert_eq!(executions.len(), 1, "{lineage}");
    assert!(executions[0]["executor"]
        .as_str()
        .expect("executor")
        .starts_with(&format!("x{run}-")));
    let (status, missing) = http
        .get(&format!("{base}/v1/lineage/tasks/lx{run}-nope"))
        .expect("answer");
    assert_eq!((status, missing["code"].as_str()), (404, Some("not_found")));

    // The same through the CLI.
    let out = std::process::Command::new(crate::common::binary())
        .args(["lineage", "--url", &base, "task", &id])
        .output()
        .expect("tidewater lineage");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(printed["depends_on"], lineage["depends_on"]);
    let out = std::process::Command::new(crate::common::binary())
        .args([
            "lineage",
            "--url",
            &base,
            "agent",
            &format!("agent-{run}"),
            "--limit",
            "3",
        ])
        .output()
        .expect("tidewater lineage");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        (printed["ran"].as_u64(), printed["truncated"].as_bool()),
        (Some(3), Some(true))
    );

    // The files, after a clean stop finishes the last one.
    stop(&mut child);
    let answer = read_export(&services.python, &dir.path().join("data/export"));
    let mut lines = answer.lines();
    let expected_failed_ids = expected.join(",");
    assert_eq!(
        lines.next(),
        Some(format!("{TASKS} {TASKS} 3 {TASKS} {expected_failed_ids}").as_str()),
        "rows, distinct ids, parquet files (15 rows each), experience rows, failed"
    );
    let ids: Vec<String> = (0..TASKS).map(|i| task_id(&run, i)).collect();
    assert_eq!(lines.next(), Some(ids.join(",").as_str()));
}

#[test]
fn every_attempt_of_a_retried_task_is_an_edge_of_its_own() {
    let Some(services) = services() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let run = run_id();
    let config = write_config(dir.path(), port, &services, &run, "");
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_run(dir.path(), &config, &[], "run.log");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));

    // Fails twice (the counter file says which attempt this is), then succeeds.
    let id = format!("lx{run}-retried");
    let script = "n=$(cat attempts.count 2>/dev/null || echo 0); echo $((n+1)) > attempts.count; [ \"$n\" -ge 2 ]";
    let task = serde_json::json!([{
        "id": id,
        "kind": "command",
        "payload": {"program": "sh", "args": ["-c", script]},
        "max_attempts": 3,
        "agent": format!("retrier-{run}"),
        "tenant": format!("t{run}"),
    }]);
    let (status, answer) = http.post(&format!("{base}/v1/tasks"), &task.to_string());
    assert_eq!(status, 200, "{answer}");

    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let lineage = loop {
        if let Some((200, lineage)) = http.get(&format!("{base}/v1/lineage/tasks/{id}")) {
            if lineage["state"] == "succeeded"
                && lineage["executions"].as_array().map(Vec::len) == Some(3)
            {
                break lineage;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the graph has {lineage} after 60 s"
            );
        }
        assert!(std::time::Instant::now() < deadline, "no lineage for {id}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let attempts: Vec<(u64, &str)> = lineage["executions"]
        .as_array()
        .expect("executions")
        .iter()
        .map(|e| {
            (
                e["attempt"].as_u64().expect("attempt"),
                e["outcome"].as_str().expect("outcome"),
            )
        })
        .collect();
    assert_eq!(
        attempts,
        [(1, "failed"), (2, "failed"), (3, "succeeded")],
        "{lineage}"
    );
    for e in lineage["executions"].as_array().expect("executions") {
        assert!(
            e["executor"]
                .as_str()
                .is_some_and(|x| x.starts_with(&format!("x{run}-"))),
            "{e}"
        );
        assert!(
            e["finished_at_ms"].as_i64() >= e["started_at_ms"].as_i64(),
            "{e}"
        );
    }
    let failed = &lineage["executions"][0];
    assert!(
        failed["reason"]
            .as_str()
            .is_some_and(|r| r.contains("exited with code 1")),
        "{failed}"
    );
    // The agent's activity lists the three attempts, two of them failed.
    let (status, activity) = http
        .get(&format!("{base}/v1/lineage/agents/retrier-{run}"))
        .expect("answer");
    assert_eq!(status, 200, "{activity}");
    assert_eq!(
        (activity["ran"].as_u64(), activity["failed"].as_u64()),
        (Some(3), Some(2)),
        "{activity}"
    );
    stop(&mut child);
}
