//! Safe shutdown of the real binary: SIGTERM and SIGINT drain (the API
//! stays up for status while in-flight tasks finish, new tasks are
//! refused), the drain timeout stops what still runs and leaves it queued
//! for the next start, and a second signal forces that at once.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::{free_port, spawn_run, Http};
use serde_json::Value;

fn write_config(dir: &Path, port: u16, drain_timeout_ms: u64) -> std::path::PathBuf {
    let path = dir.join("tidewater.toml");
    std::fs::write(
        &path,
        format!(
            r#"
workers = 1

[http]
listen = "127.0.0.1:{port}"

[store]
path = "{store}"

[shutdown]
drain_timeout_ms = {drain_timeout_ms}

[[executors]]
id = "local"
cpu_milli = 8000
memory_mib = 8192
"#,
            store = dir.join("store.redb").display()
        ),
    )
    .expect("config");
    path
}

struct Run {
    child: Child,
    http: Http,
    base: String,
}

fn start(dir: &Path, config: &Path, port: u16, log: &str) -> Run {
    let child = spawn_run(dir, config, &[], log);
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(20));
    Run { child, http, base }
}

impl Run {
    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success());
    }

    fn submit(&self, body: &str) -> (u16, Value) {
        self.http.post(&format!("{}/v1/tasks", self.base), body)
    }

    fn state(&self, id: &str) -> Option<String> {
        let (_, record) = self.http.get(&format!("{}/v1/tasks/{id}", self.base))?;
        record["state"].as_str().map(str::to_string)
    }

    /// Waits for the process to exit; returns how long that took.
    fn wait_exit(&mut self, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                assert!(status.success(), "exit status {status}");
                return started.elapsed();
            }
            assert!(started.elapsed() < within, "still running after {within:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn wait_state(run: &Run, id: &str, state: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while run.state(id).as_deref() != Some(state) {
        assert!(Instant::now() < deadline, "{id} never became {state}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_drains_with_the_api_up_and_finishes_what_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(dir.path(), port, 30_000);
    let mut run = start(dir.path(), &config, port, "run.log");
    let (status, _) = run.submit(r#"{"id":"long","kind":"sleep","payload":{"ms":1500}}"#);
    assert_eq!(status, 202);
    wait_state(&run, "long", "running");
    run.signal("TERM");
    std::thread::sleep(Duration::from_millis(200));
    // Draining: status still answers, new work is refused.
    assert_eq!(run.state("long").as_deref(), Some("running"));
    let (status, answer) = run.submit(r#"{"id":"late","kind":"noop"}"#);
    assert_eq!(
        (status, answer["code"].as_str()),
        (503, Some("draining")),
        "{answer}"
    );
    let took = run.wait_exit(Duration::from_secs(15));
    assert!(
        took > Duration::from_millis(800),
        "exited before the task ended: {took:?}"
    );

    // The task finished during the drain: a restart has nothing to resume.
    let mut run = start(dir.path(), &config, port, "run2.log");
    assert_eq!(run.state("long").as_deref(), Some("succeeded"));
    run.signal("INT");
    run.wait_exit(Duration::from_secs(10));
}

#[test]
fn the_drain_timeout_leaves_what_runs_queued_for_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(dir.path(), port, 300);
    let mut run = start(dir.path(), &config, port, "run.log");
    let (status, _) = run.submit(r#"{"id":"slow","kind":"sleep","payload":{"ms":4000}}"#);
    assert_eq!(status, 202);
    wait_state(&run, "slow", "running");
    run.signal("INT");
    let took = run.wait_exit(Duration::from_secs(10));
    assert!(
        took < Duration::from_millis(3000),
        "waited for the task: {took:?}"
    );

    // Restarted, the task runs again and finishes.
    let config = write_config(dir.path(), port, 30_000);
    let mut run = start(dir.path(), &config, port, "run2.log");
    wait_state(&run, "slow", "running");
    wait_state(&run, "slow", "succeeded");
    run.signal("TERM");
    run.wait_exit(Duration::from_secs(10));
}

#[test]
fn a_second_signal_stops_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(dir.path(), port, 60_000);
    let mut run = start(dir.path(), &config, port, "run.log");
    let (status, _) = run.submit(r#"{"id":"stuck","kind":"sleep","payload":{"ms":30000}}"#);
    assert_eq!(status, 202);
    wait_state(&run, "stuck", "running");
    run.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        run.child.try_wait().expect("wait").is_none(),
        "still draining"
    );
    run.signal("TERM");
    let took = run.wait_exit(Duration::from_secs(10));
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Left queued, not lost.
    let mut run = start(dir.path(), &config, port, "run2.log");
    assert!(
        matches!(run.state("stuck").as_deref(), Some("queued" | "running")),
        "{:?}",
        run.state("stuck")
    );
    // Two signals, apart: sent back to back they can arrive as one, and
    // the resumed 30 s task would then drain for up to a minute.
    run.signal("TERM");
    std::thread::sleep(Duration::from_millis(300));
    run.signal("TERM");
    run.wait_exit(Duration::from_secs(10));
}
