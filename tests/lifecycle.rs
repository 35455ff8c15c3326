//! Task lifecycle through the HTTP API: live states (`running`,
//! `retrying`), results read back, listings with filters and cursors,
//! idempotent submission, refusal at submit of what can never run, and
//! counters that survive a restart.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{free_port, Http};
use serde_json::Value;
use tidewater::config::{Config, ExecutorConfig, StoreKind};
use tidewater::{HandlerFailure, HandlerOutput, Pipeline, PipelineBuilder, RunningPipeline};

struct Server {
    pipeline: RunningPipeline,
    http: Http,
    base: String,
}

fn config(port: u16) -> Config {
    let mut config = Config {
        workers: 2,
        executors: vec![
            ExecutorConfig {
                id: "e0".into(),
                cpu_milli: 4000,
                ..ExecutorConfig::default()
            },
            ExecutorConfig {
                id: "e1".into(),
                cpu_milli: 4000,
                ..ExecutorConfig::default()
            },
        ],
        ..Config::default()
    };
    config.http.listen = format!("127.0.0.1:{port}");
    config.store.kind = StoreKind::Memory;
    config.retry.initial_backoff_ms = 600;
    config.handlers.command_allowlist = vec!["sh".into()];
    config.limits.max_result_bytes = 64;
    config
}

fn serve(builder: PipelineBuilder, port: u16) -> Server {
    let pipeline = builder.start().expect("start");
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(10));
    Server {
        pipeline,
        http,
        base,
    }
}

fn server() -> Server {
    let port = free_port();
    serve(Pipeline::builder(config(port)), port)
}

impl Server {
    fn post(&self, body: &str) -> (u16, Value) {
        self.http.post(&format!("{}/v1/tasks", self.base), body)
    }

    fn submit(&self, body: &str) {
        let (status, answer) = self.post(body);
        assert_eq!(status, 202, "{body}: {answer}");
    }

    fn get(&self, path: &str) -> (u16, Value) {
        self.http
            .get(&format!("{}{path}", self.base))
            .expect("reachable")
    }

    fn record(&self, id: &str) -> Value {
        let (status, record) = self.get(&format!("/v1/tasks/{id}"));
        assert_eq!(status, 200, "{id}: {record}");
        record
    }

    /// Polls `id` until `done` holds for its record.
    fn until(&self, id: &str, within: Duration, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let record = self.record(id);
            if done(&record) {
                return record;
            }
            assert!(Instant::now() < deadline, "{id}: {record}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn finished(&self, id: &str) -> Value {
        self.until(id, Duration::from_secs(10), |r| {
            !["queued", "running", "retrying"].contains(&r["state"].as_str().unwrap_or(""))
        })
    }

    /// Every id a listing returns, page by page.
    fn list_all(&self, query: &str) -> Vec<String> {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut path = format!("/v1/tasks?{query}");
            if let Some(cursor) = &cursor {
                path.push_str(&format!("&cursor={cursor}"));
            }
            let (status, page) = self.get(&path);
            assert_eq!(status, 200, "{path}: {page}");
            for task in page["tasks"].as_array().expect("tasks") {
                ids.push(task["id"].as_str().expect("id").to_string());
            }
            match page["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => return ids,
            }
        }
    }
}

#[test]
fn a_running_task_says_where_it_runs_and_a_cancel_says_it_was_running() {
    let s = server();
    s.submit(r#"{"id":"long","kind":"sleep","payload":{"ms":3000}}"#);
    let record = s.until("long", Duration::from_secs(2), |r| r["state"] == "running");
    assert_eq!(record["attempts"], 1, "{record}");
    assert!(
        ["e0", "e1"].contains(&record["executor"].as_str().unwrap_or("")),
        "{record}"
    );
    assert!(record["started_at_us"].as_u64().is_some(), "{record}");
    let (status, page) = s.get("/v1/tasks?state=running");
    assert_eq!(status, 200);
    assert_eq!(page["tasks"][0]["id"], "long", "{page}");
    let (status, stats) = s.get("/v1/stats");
    assert_eq!(
        (status, &stats["store"]["running"]),
        (200, &Value::from(1)),
        "{stats}"
    );

    let (status, answer) = s.http.delete(&format!("{}/v1/tasks/long", s.base));
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["state"], "running", "{answer}");
    assert_eq!(answer["executor"], record["executor"], "{answer}");
    let record = s.finished("long");
    assert_eq!(record["state"], "cancelled", "{record}");
}

#[test]
fn a_failed_attempt_shows_retrying_with_the_next_attempt_time() {
    let port = free_port();
    let s = serve(
        Pipeline::builder(config(port)).inline_handler("flaky", |task| {
            if task.attempt == 1 {
                Err(HandlerFailure::from("first attempt fails".to_string()))
            } else {
                Ok(HandlerOutput::value(
                    serde_json::json!({ "attempt": task.attempt }),
                ))
            }
        }),
        port,
    );
    s.submit(r#"{"id":"f","kind":"flaky","max_attempts":2}"#);
    let record = s.until("f", Duration::from_secs(2), |r| r["state"] == "retrying");
    assert_eq!(record["reason"], "first attempt fails", "{record}");
    let next = record["next_attempt_at_us"]
        .as_u64()
        .expect("next attempt time");
    let started = record["started_at_us"].as_u64().expect("started");
    assert!(next >= started + 600_000, "{record}");
    let record = s.finished("f");
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 2, "{record}");
    assert_eq!(
        record["result"]["value"],
        serde_json::json!({ "attempt": 2 }),
        "{record}"
    );
    assert_eq!(record["next_attempt_at_us"], Value::Null, "{record}");
}

#[test]
fn results_are_kept_bounded_and_returned() {
    let s = server();
    // A command's output tails, cut to limits.max_result_bytes (64) and marked.
    s.submit(
        r#"{"id":"cmd","kind":"command","payload":{"program":"sh","args":["-c","echo out; echo err >&2"]}}"#,
    );
    s.submit(
        r#"{"id":"chatty","kind":"command","payload":{"program":"sh","args":["-c","seq 1 1000"]}}"#,
    );
    s.submit(
        r#"{"id":"bad-exit","kind":"command","payload":{"program":"sh","args":["-c","echo why >&2; exit 3"]}}"#,
    );
    let record = s.finished("cmd");
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["result"]["stdout"], "out\n", "{record}");
    assert_eq!(record["result"]["stderr"], "err\n", "{record}");
    assert_eq!(record["result"]["truncated"], false, "{record}");
    let record = s.finished("chatty");
    let stdout = record["result"]["stdout"].as_str().expect("stdout");
    assert!(
        stdout.len() <= 64 && stdout.ends_with("999\n1000\n"),
        "{record}"
    );
    assert_eq!(record["result"]["truncated"], true, "{record}");
    assert_eq!(record["output_bytes"], 3893, "{record}");
    let record = s.finished("bad-exit");
    assert_eq!(
        (
            &record["state"],
            &record["exit_code"],
            &record["result"]["stderr"]
        ),
        (
            &Value::from("failed"),
            &Value::from(3),
            &Value::from("why\n")
        ),
        "{record}"
    );
    // `tidewater submit --wait` waits for the result and prints it.
    let out = std::process::Command::new(crate::common::binary())
        .args(["submit", "--url", &s.base, "--wait", "--json"])
        .arg(r#"{"id":"cli","kind":"command","payload":{"program":"sh","args":["-c","echo from-cli"]}}"#)
        .output()
        .expect("tidewater submit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).expect("a record");
    assert_eq!(last["state"], "succeeded", "{stdout}");
    assert_eq!(last["result"]["stdout"], "from-cli\n", "{stdout}");
    // The library API returns the same.
    let record = s
        .pipeline
        .result("cmd", Duration::from_secs(1))
        .expect("store")
        .expect("known");
    assert_eq!(
        record.result.and_then(|r| r.stdout).as_deref(),
        Some("out\n")
    );
}

#[test]
fn listings_page_through_filters_with_cursors() {
    let s = server();
    let mut batch = Vec::new();
    for n in 0..30 {
        let tenant = if n % 3 == 0 { "acme" } else { "globex" };
        let kind = if n % 2 == 0 { "noop" } else { "sleep" };
        let payload = if kind == "sleep" {
            r#","payload":{"ms":1}"#
        } else {
            ""
        };
        batch.push(format!(
            r#"{{"id":"t{n:02}","kind":"{kind}","tenant":"{tenant}"{payload}}}"#
        ));
    }
    let (status, answer) = s.post(&format!("[{}]", batch.join(",")));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["accepted"].as_array().map(Vec::len),
        Some(30),
        "{answer}"
    );
    for n in 0..30 {
        s.finished(&format!("t{n:02}"));
    }
    let all: Vec<String> = (0..30).map(|n| format!("t{n:02}")).collect();
    let listed = s.list_all("limit=7");
    assert_eq!(
        listed.iter().collect::<BTreeSet<_>>(),
        all.iter().collect::<BTreeSet<_>>()
    );
    assert_eq!(listed.len(), 30, "each task once");
    let mut newest_first = s.list_all("limit=4&order=desc");
    newest_first.reverse();
    assert_eq!(newest_first, listed);
    let acme: Vec<String> = (0..30).step_by(3).map(|n| format!("t{n:02}")).collect();
    let mut listed = s.list_all("tenant=acme&state=succeeded&limit=3");
    listed.sort();
    assert_eq!(listed, acme);
    let mut sleeps = s.list_all("kind=sleep&limit=5");
    sleeps.sort();
    assert_eq!(sleeps.len(), 15);
    assert!(s.list_all("state=failed").is_empty());
    for bad in [
        "state=sleeping",
        "limit=0",
        "limit=5000",
        "order=sideways",
        "cursor=nonsense",
        "colour=blue",
    ] {
        let (status, answer) = s.get(&format!("/v1/tasks?{bad}"));
        assert_eq!(status, 400, "{bad}: {answer}");
    }
}

#[test]
fn a_repeated_id_is_not_run_again() {
    let port = free_port();
    let runs = Arc::new(AtomicU32::new(0));
    let counted = Arc::clone(&runs);
    let s = serve(
        Pipeline::builder(config(port)).inline_handler("count", move |_task| {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok(HandlerOutput::default())
        }),
        port,
    );
    let body = r#"{"id":"once","kind":"count","priority":1}"#;
    s.submit(body);
    s.finished("once");
    // The same body again: 200 with the existing record.
    let (status, answer) = s.post(body);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["id"], &answer["state"]),
        (&Value::from("once"), &Value::from("succeeded"))
    );
    // A different body under the same id: 409, with the existing record.
    let (status, answer) = s.post(r#"{"id":"once","kind":"count","priority":2}"#);
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["code"], "duplicate", "{answer}");
    assert_eq!(answer["task"]["state"], "succeeded", "{answer}");
    // In a batch the duplicate is reported beside the new task.
    let (status, answer) = s.post(&format!(r#"[{body},{{"id":"fresh","kind":"count"}}]"#));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["accepted"], serde_json::json!(["fresh"]), "{answer}");
    assert_eq!(answer["duplicates"][0]["id"], "once", "{answer}");
    assert_eq!(answer["duplicates"][0]["same_body"], true, "{answer}");
    s.finished("fresh");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(runs.load(Ordering::SeqCst), 2, "once and fresh, each once");
}

#[test]
fn what_can_never_run_is_refused_at_submit_and_reads_back_rejected() {
    let s = server();
    let cases = [
        (r#"{"id":"r1","kind":"teleport"}"#, "invalid_value", "kind"),
        (
            r#"{"id":"r2","kind":"command","payload":{"program":"rm","args":["-rf","/"]}}"#,
            "invalid_value",
            "payload.program",
        ),
        (
            r#"{"id":"r3","kind":"sleep","payload":{"ms":"long"}}"#,
            "wrong_type",
            "payload",
        ),
        (r#"{"id":"r4","kind":"sleep"}"#, "missing_field", "payload"),
        (
            r#"{"id":"r5","kind":"noop","deadline_ms":1000}"#,
            "deadline_passed",
            "deadline",
        ),
        (
            r#"{"id":"r6","kind":"sleep","payload":{"ms":999999999999}}"#,
            "invalid_value",
            "payload.ms",
        ),
    ];
    for (body, code, mentions) in cases {
        let (status, answer) = s.post(body);
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["code"], code, "{body}: {answer}");
        assert!(
            answer["reason"]
                .as_str()
                .is_some_and(|r| r.contains(mentions)),
            "{body}: {answer}"
        );
    }
    for id in ["r1", "r2", "r3", "r4", "r5", "r6"] {
        let record = s.record(id);
        assert_eq!(record["state"], "rejected", "{record}");
        assert!(
            record["reason"].as_str().is_some_and(|r| !r.is_empty()),
            "{record}"
        );
    }
    // A corrected submission under a refused id is taken.
    s.submit(r#"{"id":"r1","kind":"noop"}"#);
    assert_eq!(s.finished("r1")["state"], "succeeded");
    let (_, stats) = s.get("/v1/stats");
    assert_eq!(stats["rejected"], 6, "{stats}");
}

#[test]
fn counters_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |tasks: &[&str]| -> Value {
        let port = free_port();
        let mut config = config(port);
        config.store.kind = StoreKind::Embedded;
        config.store.path = dir.path().join("store.redb");
        let s = serve(Pipeline::builder(config), port);
        for id in tasks {
            s.submit(&format!(r#"{{"id":"{id}","kind":"noop"}}"#));
            s.finished(id);
        }
        s.post(r#"{"id":"bad","kind":"noop","colour":"red"}"#);
        let (_, stats) = s.get("/v1/stats");
        stats
    };
    let first = run(&["a", "b", "c"]);
    assert_eq!(first["store"]["succeeded"], 3, "{first}");
    let second = run(&["d"]);
    assert_eq!(second["succeeded"], 1, "this run: {second}");
    assert_eq!(second["store"]["succeeded"], 4, "all runs: {second}");
    assert_eq!(second["store"]["rejected"], 2, "all runs: {second}");
}
