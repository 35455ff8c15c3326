//! The control API end to end, through HTTP and the CLI: cancelling tasks
//! wherever they are, and executors that join, go silent (declared lost,
//! their task re-run elsewhere... or when they come back) and leave.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{binary, free_port, Http};
use tidewater::config::{Config, ExecutorConfig, StoreKind};
use tidewater::{Pipeline, RunningPipeline};
use tidewater_connectors::store::MemoryStore;

struct Server {
    _pipeline: RunningPipeline,
    http: Http,
    base: String,
}

fn server(executors: Vec<ExecutorConfig>) -> Server {
    let port = free_port();
    let mut config = Config {
        workers: 2,
        executors,
        ..Config::default()
    };
    config.http.listen = format!("127.0.0.1:{port}");
    config.store.kind = StoreKind::Memory;
    config.retry.initial_backoff_ms = 10;
    let pipeline = Pipeline::builder(config)
        .store(Arc::new(MemoryStore::new()))
        .start()
        .expect("start");
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(10));
    Server {
        _pipeline: pipeline,
        http,
        base,
    }
}

impl Server {
    fn submit(&self, body: &str) {
        let (status, answer) = self.http.post(&format!("{}/v1/tasks", self.base), body);
        assert_eq!(status, 202, "{body}: {answer}");
    }

    fn record(&self, id: &str) -> serde_json::Value {
        let (status, record) = self
            .http
            .get(&format!("{}/v1/tasks/{id}", self.base))
            .expect("reachable");
        assert_eq!(status, 200, "{id}: {record}");
        record
    }

    /// Waits for `id` to reach a final state and returns its record.
    fn final_record(&self, id: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let record = self.record(id);
            let live = ["queued", "running", "retrying"];
            if !live.iter().any(|s| record["state"] == *s) {
                return record;
            }
            assert!(Instant::now() < deadline, "{id} not finished: {record}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn executor(id: &str, cpu_milli: u64) -> ExecutorConfig {
    ExecutorConfig {
        id: id.into(),
        cpu_milli,
        ..ExecutorConfig::default()
    }
}

#[test]
fn cancel_stops_running_and_queued_tasks_over_http_and_the_cli() {
    let s = server(vec![executor("local", 1000)]);
    // One fills the executor, the next waits in the queue.
    s.submit(
        r#"{"id":"running","kind":"sleep","payload":{"ms":60000},"resources":{"cpu_milli":1000}}"#,
    );
    s.submit(
        r#"{"id":"waiting","kind":"sleep","payload":{"ms":60000},"resources":{"cpu_milli":1000}}"#,
    );
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let (status, answer) = s.http.delete(&format!("{}/v1/tasks/waiting", s.base));
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        s.final_record("waiting", Duration::from_secs(5))["state"],
        "cancelled"
    );
    // The CLI cancels the running one; its sleep is stopped, not awaited.
    let cli = std::process::Command::new(binary())
        .args(["cancel", "--url", &s.base, "running"])
        .output()
        .expect("tidewater cancel");
    assert!(
        cli.status.success(),
        "{}",
        String::from_utf8_lossy(&cli.stderr)
    );
    let record = s.final_record("running", Duration::from_secs(5));
    assert_eq!(record["state"], "cancelled", "{record}");
    assert_eq!(record["executor"], "local");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Cancelling again, or something unknown, says why not.
    let (status, answer) = s.http.delete(&format!("{}/v1/tasks/running", s.base));
    assert_eq!(status, 409, "{answer}");
    assert_eq!(answer["code"], "final");
    let (status, _) = s.http.delete(&format!("{}/v1/tasks/nobody", s.base));
    assert_eq!(status, 404);
    // The capacity came back: a new task runs at once.
    s.submit(r#"{"id":"after","kind":"noop","resources":{"cpu_milli":1000}}"#);
    assert_eq!(
        s.final_record("after", Duration::from_secs(5))["state"],
        "succeeded"
    );
}

#[test]
fn a_silent_executor_is_declared_lost_and_its_task_runs_again_when_one_joins() {
    let s = server(vec![executor("small", 1000)]);
    let join = r#"{"id":"agent-1","cpu_milli":8000,"memory_mib":8192,"heartbeat_ttl_ms":400}"#;
    let (status, answer) = s.http.post(&format!("{}/v1/executors", s.base), join);
    assert_eq!(status, 202, "{answer}");
    std::thread::sleep(Duration::from_millis(100));
    // Only agent-1 can hold it. It runs there, then agent-1 goes silent.
    s.submit(r#"{"id":"big","kind":"sleep","payload":{"ms":1500},"resources":{"cpu_milli":4000},"max_attempts":3}"#);
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(
        s.record("big")["state"],
        "queued",
        "lost after 400 ms, re-queued, nowhere to run"
    );
    // A second agent joins over HTTP, keeps heartbeating and claims its
    // work (a real `tidewater agent --http`): the task runs there.
    let mut agent = std::process::Command::new(binary())
        .args([
            "agent",
            "--http",
            &s.base,
            "--id",
            "agent-2",
            "--capacity",
            "cpu=8000,memory=8192",
            "--heartbeat-ms",
            "100",
            "--ttl-ms",
            "400",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn agent");
    let record = s.final_record("big", Duration::from_secs(20));
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["attempts"], 2, "{record}");
    assert_eq!(record["executor"], "agent-2", "{record}");
    // agent-2 leaves; a task only agent-1 (lost, it may join again) or
    // agent-2 could hold now waits for an executor instead of running.
    let _ = agent.kill();
    let _ = agent.wait();
    let (status, _) = s.http.delete(&format!("{}/v1/executors/agent-2", s.base));
    assert_eq!(status, 202);
    std::thread::sleep(Duration::from_millis(100));
    s.submit(r#"{"id":"after-leave","kind":"noop","resources":{"cpu_milli":4000}}"#);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        s.record("after-leave")["state"],
        "queued",
        "waits for an executor to join"
    );
    // What no executor, lost or not, could ever hold is refused.
    s.submit(r#"{"id":"never","kind":"noop","resources":{"cpu_milli":64000}}"#);
    assert_eq!(
        s.final_record("never", Duration::from_secs(5))["state"],
        "rejected"
    );
}

#[test]
fn reservations_over_http_hold_capacity_for_their_tenant() {
    let s = server(vec![executor("local", 2000)]);
    let reserve =
        r#"{"id":"r1","tenant":"gold","resources":{"cpu_milli":1500},"expires_in_ms":60000}"#;
    let (status, answer) = s.http.post(&format!("{}/v1/reservations", s.base), reserve);
    assert_eq!(status, 202, "{answer}");
    let url = format!("{}/v1/reservations/r1", s.base);
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        match s.http.get(&url) {
            Some((200, status)) => break status,
            _ => {
                assert!(Instant::now() < deadline, "r1 never reported");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    };
    assert_eq!(status["state"], "active", "{status}");
    assert_eq!(status["executor"], "local", "{status}");
    // Another tenant cannot use the held 1500; the holder can.
    s.submit(r#"{"id":"bronze","tenant":"bronze","kind":"noop","resources":{"cpu_milli":1000}}"#);
    s.submit(r#"{"id":"gold","tenant":"gold","kind":"noop","resources":{"cpu_milli":1000}}"#);
    assert_eq!(
        s.final_record("gold", Duration::from_secs(5))["state"],
        "succeeded"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(s.record("bronze")["state"], "queued");
    // Released: the capacity returns and the waiting task runs.
    let (status, _) = s.http.delete(&url);
    assert_eq!(status, 202);
    assert_eq!(
        s.final_record("bronze", Duration::from_secs(5))["state"],
        "succeeded"
    );
    let (_, status) = s.http.get(&url).expect("reachable");
    assert_eq!(status["state"], "ended", "{status}");
    // One that cannot be made says so.
    let too_big = r#"{"id":"r2","task":"x","resources":{"cpu_milli":9000},"expires_in_ms":60000}"#;
    let (status, _) = s.http.post(&format!("{}/v1/reservations", s.base), too_big);
    assert_eq!(status, 202);
    std::thread::sleep(Duration::from_millis(300));
    let (_, status) = s
        .http
        .get(&format!("{}/v1/reservations/r2", s.base))
        .expect("reachable");
    assert_eq!(status["state"], "refused", "{status}");
}
