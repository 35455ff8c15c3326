//! Executors that join over HTTP are real remote executors, end to end with
//! two processes: a `tidewater run` coordinator whose own executor cannot
//! hold the tasks, and `tidewater agent --http` processes that join, claim
//! the work placed on them, run it and report its outcome. When the only
//! capable executor is lost, a new task waits for one to join (refused
//! only once its deadline passed); a task no executor could ever hold is
//! refused at once.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{binary, free_port, spawn_run, Http};

fn config(dir: &Path, port: u16) -> std::path::PathBuf {
    let text = format!(
        r#"
workers = 2
[http]
listen = "127.0.0.1:{port}"
[store]
kind = "memory"
[retry]
initial_backoff_ms = 10
[handlers]
command_allowlist = ["sh"]
[[executors]]
id = "small"
cpu_milli = 1000
memory_mib = 1024
"#
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).expect("config");
    path
}

/// Kills the child when dropped, so a failing test leaves no process.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn agent(dir: &Path, base: &str, id: &str) -> Reaped {
    let log = std::fs::File::create(dir.join(format!("{id}.log"))).expect("log");
    Reaped(
        Command::new(binary())
            .args([
                "agent",
                "--http",
                base,
                "--id",
                id,
                "--capacity",
                "cpu=8000,memory=8192",
                "--heartbeat-ms",
                "100",
                "--ttl-ms",
                "600",
                "--allow-command",
                "sh",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn agent"),
    )
}

struct Api {
    http: Http,
    base: String,
}

impl Api {
    fn get(&self, path: &str) -> serde_json::Value {
        let (status, body) = self
            .http
            .get(&format!("{}{path}", self.base))
            .expect("reachable");
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    fn submit(&self, body: &str) {
        let (status, answer) = self.http.post(&format!("{}/v1/tasks", self.base), body);
        assert_eq!(status, 202, "{body}: {answer}");
    }

    fn executor_state(&self, id: &str) -> Option<String> {
        let listing = self.get("/v1/executors");
        let executors = listing["executors"]
            .as_array()
            .or(listing.as_array())
            .cloned()
            .unwrap_or_default();
        executors
            .iter()
            .find(|e| e["id"] == id)
            .and_then(|e| e["state"].as_str().map(str::to_string))
    }

    fn wait_executor(&self, id: &str, state: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while self.executor_state(id).as_deref() != Some(state) {
            assert!(
                Instant::now() < deadline,
                "{id} never {state}: {}",
                self.get("/v1/executors")
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn final_record(&self, id: &str, within: Duration) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            if let Some((200, record)) = self.http.get(&format!("{}/v1/tasks/{id}", self.base)) {
                let state = record["state"].as_str().unwrap_or_default();
                if ["succeeded", "failed", "cancelled", "rejected", "timed_out"].contains(&state) {
                    return record;
                }
            }
            assert!(Instant::now() < deadline, "{id} never ended");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[test]
fn tasks_placed_on_an_http_agent_run_in_its_process_and_wait_for_one_when_it_is_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = config(dir.path(), port);
    let _run = Reaped(spawn_run(dir.path(), &config, &[], "run.log"));
    let api = Api {
        http: Http::new(),
        base: format!("http://127.0.0.1:{port}"),
    };
    api.http
        .wait_ready(&format!("{}/healthz", api.base), Duration::from_secs(30));

    // An agent joins over HTTP; only it can hold 4000 milli-CPU.
    let first = agent(dir.path(), &api.base, "remote-1");
    let first_pid = first.0.id();
    api.wait_executor("remote-1", "active", Duration::from_secs(20));
    // `$PPID` of the shell is the process that spawned it.
    let whoami = r#"{"id":"where","kind":"command","payload":{"program":"sh","args":["-c","echo $PPID"]},"resources":{"cpu_milli":4000}}"#;
    api.submit(whoami);
    let record = api.final_record("where", Duration::from_secs(20));
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["executor"], "remote-1", "{record}");
    assert_eq!(
        record["result"]["stdout"],
        format!("{first_pid}\n"),
        "ran in the agent's process: {record}"
    );
    // What the coordinator's own executor can hold still runs there.
    api.submit(r#"{"id":"here","kind":"noop","resources":{"cpu_milli":500}}"#);
    let record = api.final_record("here", Duration::from_secs(10));
    assert_eq!(record["executor"], "small", "{record}");

    // The agent dies: it is declared lost.
    drop(first);
    api.wait_executor("remote-1", "lost", Duration::from_secs(10));
    // A task only a lost executor could hold waits for one to join ...
    api.submit(r#"{"id":"patient","kind":"command","payload":{"program":"sh","args":["-c","echo $PPID"]},"resources":{"cpu_milli":4000}}"#);
    // ... until its deadline, if it has one ...
    let soon = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis()
        + 700;
    api.submit(&format!(
        r#"{{"id":"hurried","kind":"noop","resources":{{"cpu_milli":4000}},"deadline_ms":{soon}}}"#
    ));
    // ... while one no executor could ever hold is refused at once.
    api.submit(r#"{"id":"huge","kind":"noop","resources":{"cpu_milli":64000}}"#);
    let record = api.final_record("huge", Duration::from_secs(10));
    assert_eq!(record["state"], "rejected", "{record}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(api.get("/v1/tasks/patient")["state"], "queued");
    let record = api.final_record("hurried", Duration::from_secs(10));
    assert_eq!(record["state"], "rejected", "{record}");
    assert!(
        record["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("deadline passed waiting for an executor"),
        "{record}"
    );
    assert_eq!(api.get("/v1/tasks/patient")["state"], "queued");

    // A new agent joins: the waiting task runs in its process.
    let second = agent(dir.path(), &api.base, "remote-2");
    let record = api.final_record("patient", Duration::from_secs(20));
    assert_eq!(record["state"], "succeeded", "{record}");
    assert_eq!(record["executor"], "remote-2", "{record}");
    assert_eq!(record["result"]["stdout"], format!("{}\n", second.0.id()));
}
