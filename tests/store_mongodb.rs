//! The MongoDB store end to end: the `tidewater` binary with
//! `[store] backend = "mongodb"` takes tasks over HTTP, keeps them (and a
//! command's output) in MongoDB, survives `kill -9` restarts with every
//! task finished exactly once, and answers `GET /v1/tasks/{id}` and
//! listings from MongoDB. Needs `TIDEWATER_MONGODB_URL` (from
//! `tests/services/up`).

use std::process::Command;
use std::time::{Duration, Instant};

use mongodb::bson::doc;

use crate::common::{free_port, spawn_run, Http};
use crate::mongodb_common::{mongodb_url, unique_database, Mongo};

const TASKS: usize = 40;

fn write_config(dir: &std::path::Path, port: u16, url: &str, database: &str) -> std::path::PathBuf {
    let echo = which("echo");
    let config = format!(
        r#"
workers = 2
[http]
listen = "127.0.0.1:{port}"
[store]
backend = "mongodb"
mongodb_url = "{url}"
database = "{database}"
[handlers]
command_allowlist = ["{echo}"]
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

/// The absolute path of a program on `PATH`.
fn which(program: &str) -> String {
    let out = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .expect("sh");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn finished(mongo: &Mongo) -> u64 {
    mongo.count("tasks", doc! { "state": "succeeded" })
}

fn wait_finished(mongo: &Mongo, at_least: u64, timeout: Duration) -> u64 {
    let deadline = Instant::now() + timeout;
    loop {
        let done = finished(mongo);
        if done >= at_least || Instant::now() > deadline {
            return done;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long the restarted process may take to finish every task. A
/// transaction left open by a process killed with SIGKILL keeps its
/// documents write-locked until the server reaps it, 58 s later on
/// SecantusDB (measured with pymongo, 2026-12-07; MongoDB's
/// `transactionLifetimeLimitSeconds`, 60 s by default, behaves the same).
/// When the kill lands while a task's outcome is being committed, the
/// restarted process's write of that task conflicts and retries until then
/// (in about one run in three). Nothing is lost; the wait is the server's,
/// so the bound is that lifetime with a margin.
const AFTER_RESTART: Duration = Duration::from_secs(120);

#[test]
fn the_binary_keeps_tasks_in_mongodb_across_kill_9_restarts() {
    let Some(url) = mongodb_url() else {
        return;
    };
    let database = unique_database("e2e");
    let mongo = Mongo::connect(&url, &database);
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(dir.path(), port, &url, &database);
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");

    let mut child = spawn_run(dir.path(), &config, &[], "run-1.log");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));
    // Each task holds a whole executor for 60 ms: two run at a time.
    let batch: Vec<String> = (0..TASKS)
        .map(|i| {
            format!(
                r#"{{"id":"job-{i}","kind":"sleep","tenant":"t{}","payload":{{"ms":60}},"resources":{{"cpu_milli":1000}}}}"#,
                i % 2
            )
        })
        .collect();
    let (status, answer) = http.post(
        &format!("{base}/v1/tasks"),
        &format!("[{}]", batch.join(",")),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"].as_array().map(Vec::len), Some(TASKS));
    // Admission is durable in MongoDB before the answer.
    assert_eq!(mongo.count("tasks", doc! {}), TASKS as u64);

    let done = wait_finished(&mongo, 6, Duration::from_secs(30));
    assert!(done >= 6, "only {done} results before the crash");
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert!(
        finished(&mongo) < TASKS as u64,
        "the crash came after everything finished"
    );
    child = spawn_run(dir.path(), &config, &[], "run-2.log");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));

    let done = wait_finished(&mongo, TASKS as u64, AFTER_RESTART);
    assert_eq!(done, TASKS as u64, "every task finished after the restart");
    assert_eq!(
        mongo.count("tasks", doc! {}),
        TASKS as u64,
        "one document per task"
    );
    for i in 0..TASKS {
        let (status, record) = http
            .get(&format!("{base}/v1/tasks/job-{i}"))
            .expect("reachable");
        assert_eq!(status, 200);
        assert_eq!(record["state"], "succeeded", "job-{i}: {record}");
        assert_eq!(record["tenant"], format!("t{}", i % 2));
    }

    // A command's output is kept with its record.
    let echo = which("echo");
    let (status, answer) = http.post(
        &format!("{base}/v1/tasks"),
        &format!(
            r#"{{"id":"say","kind":"command","payload":{{"program":"{echo}","args":["hello","mongo"]}},"resources":{{"cpu_milli":100}}}}"#
        ),
    );
    assert_eq!(status, 202, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let record = loop {
        let (_, record) = http
            .get(&format!("{base}/v1/tasks/say"))
            .expect("reachable");
        if record["state"] == "succeeded" || Instant::now() > deadline {
            break record;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["result"]["stdout"], "hello mongo\n", "{record}");
    let stored = mongo.get("tasks", "say").expect("stored");
    assert_eq!(stored.get_str("state").ok(), Some("succeeded"));
    assert!(
        stored.get("task_json").is_none(),
        "finished tasks keep no resumable copy"
    );

    // Listings page through MongoDB by (submitted_at_us, id), with filters.
    let (status, page) = http
        .get(&format!("{base}/v1/tasks?tenant=t1&limit=7"))
        .expect("reachable");
    assert_eq!(status, 200, "{page}");
    let mut seen = Vec::new();
    let mut page = page;
    loop {
        for task in page["tasks"].as_array().expect("tasks") {
            assert_eq!(task["tenant"], "t1");
            seen.push(task["id"].as_str().expect("id").to_string());
        }
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        let (status, next) = http
            .get(&format!(
                "{base}/v1/tasks?tenant=t1&limit=7&cursor={cursor}"
            ))
            .expect("reachable");
        assert_eq!(status, 200, "{next}");
        page = next;
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), TASKS / 2, "{seen:?}");

    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let exit = child.wait().expect("wait");
    assert!(exit.success(), "clean shutdown on Ctrl-C: {exit:?}");
}
