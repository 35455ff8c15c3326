//! The read endpoints through the binary: `GET /v1/executors` (config and
//! joined executors, what running tasks hold, heartbeat age, lost and
//! left), `GET /v1/reservations`,
//! `GET /v1/models` (the learner's versions with metrics), `GET /v1/alerts`
//! (a firing alert) and the dashboard's files at `/ui/`.

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use crate::common::{free_port, spawn_run, Http};

/// Kills the server when the test ends, however it ends.
struct Server {
    child: Child,
    base: String,
    http: Http,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn get(&self, path: &str) -> serde_json::Value {
        let (status, body) = self
            .http
            .get(&format!("{}{path}", self.base))
            .expect("reachable");
        assert_eq!(status, 200, "GET {path}: {body}");
        body
    }

    fn post(&self, path: &str, body: &str) -> serde_json::Value {
        let (status, answer) = self.http.post(&format!("{}{path}", self.base), body);
        assert!(
            (200..300).contains(&status),
            "POST {path} {body}: {status} {answer}"
        );
        answer
    }

    /// Polls `path` until `ready` holds for its answer.
    fn wait_for(
        &self,
        path: &str,
        within: Duration,
        ready: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + within;
        loop {
            let body = self.get(path);
            if ready(&body) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} never got there: {body}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
}

fn config(port: u16) -> String {
    format!(
        r#"
workers = 2
metrics = true

[http]
listen = "127.0.0.1:{port}"

[store]
kind = "memory"

[[executors]]
id = "cpu"
count = 2
cpu_milli = 4000
memory_mib = 8192
labels = {{ class = "cpu" }}

[[executors]]
id = "gpu"
cpu_milli = 8000
memory_mib = 32768
gpus = 2
gpu_model = "A100"

[[queries]]
name = "completions_by_kind"
filter = {{ metric = "completed" }}
group_by = ["kind"]
aggregates = ["count"]

[[alerts]]
name = "anything_completed"
query = "completions_by_kind"
aggregate = "count"
op = ">"
threshold = 0.0

[learner]
enabled = true
device = "cpu"
batch_size = 8
"#
    )
}

fn start(dir: &Path) -> Server {
    let port = free_port();
    let path = dir.join("inventory.toml");
    std::fs::write(&path, config(port)).expect("write config");
    let child = spawn_run(dir, &path, &[], "inventory.log");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        http: Http::new(),
    };
    server
        .http
        .wait_ready(&format!("{}/healthz", server.base), Duration::from_secs(30));
    server
}

fn executor<'a>(listing: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    listing["executors"]
        .as_array()
        .expect("an executors array")
        .iter()
        .find(|e| e["id"] == id)
        .unwrap_or_else(|| panic!("no executor {id} in {listing}"))
}

#[test]
fn executors_from_the_config_and_joined_ones_with_heartbeats_loss_and_leaving() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = start(dir.path());

    let listing = s.get("/v1/executors");
    let ids: Vec<&str> = listing["executors"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["id"].as_str())
        .collect();
    assert_eq!(ids, ["cpu-0", "cpu-1", "gpu"], "{listing}");
    let gpu = executor(&listing, "gpu");
    assert_eq!(gpu["state"], "active");
    assert_eq!(gpu["origin"], "config");
    assert_eq!(gpu["capacity"]["cpu_milli"], 8000);
    assert_eq!(gpu["capacity"]["memory_mib"], 32768);
    assert_eq!(gpu["capacity"]["gpus"], 2);
    assert_eq!(gpu["capacity"]["gpu_model"], "A100");
    assert_eq!(gpu["capacity"]["devices"][1]["model"], "A100");
    assert_eq!(gpu["heartbeat_age_ms"], serde_json::Value::Null);
    assert_eq!(executor(&listing, "cpu-1")["labels"]["class"], "cpu");
    assert_eq!(gpu["running"], serde_json::json!([]));

    // A task that needs a GPU runs on the GPU executor and holds a share of it.
    s.post(
        "/v1/tasks",
        r#"{"id":"train","kind":"sleep","payload":{"ms":60000},"resources":{"cpu_milli":2000,"memory_mib":8192,"gpus":1}}"#,
    );
    let listing = s.wait_for("/v1/executors", Duration::from_secs(10), |l| {
        executor(l, "gpu")["running"] == serde_json::json!(["train"])
    });
    let gpu = executor(&listing, "gpu");
    assert_eq!(gpu["allocated"]["cpu_milli"], 2000, "{gpu}");
    assert_eq!(gpu["allocated"]["memory_mib"], 8192);
    assert_eq!(gpu["allocated"]["gpu_milli"], 1000);
    assert_eq!(gpu["share"]["cpu"], 0.25);
    assert_eq!(gpu["share"]["gpu"], 0.5);
    assert_eq!(gpu["share"]["max"], 0.5);
    assert_eq!(
        executor(&listing, "cpu-0")["running"],
        serde_json::json!([])
    );
    let (status, _) = s.http.delete(&format!("{}/v1/tasks/train", s.base));
    assert_eq!(status, 202);
    s.wait_for("/v1/executors", Duration::from_secs(10), |l| {
        executor(l, "gpu")["running"] == serde_json::json!([])
    });

    // One joins with a short TTL and then goes silent: lost.
    s.post(
        "/v1/executors",
        r#"{"id":"agent-1","cpu_milli":2000,"memory_mib":1024,"gpus":1,"gpu_model":"L4","heartbeat_ttl_ms":400}"#,
    );
    let listing = s.get("/v1/executors");
    let agent = executor(&listing, "agent-1");
    assert_eq!(agent["state"], "active", "{agent}");
    assert_eq!(agent["origin"], "joined");
    assert_eq!(agent["heartbeat_ttl_ms"], 400);
    assert!(agent["heartbeat_age_ms"].as_u64().expect("an age") < 400);
    assert_eq!(agent["capacity"]["devices"][0]["model"], "L4");
    let listing = s.wait_for("/v1/executors", Duration::from_secs(5), |l| {
        executor(l, "agent-1")["state"] == "lost"
    });
    // Lost once its silence reached the TTL (ages are whole milliseconds).
    assert!(executor(&listing, "agent-1")["heartbeat_age_ms"].as_u64() >= Some(400));
    assert!(executor(&listing, "agent-1")["ended_at_ms"].is_u64());

    // Another keeps heartbeating past its TTL, then leaves.
    s.post(
        "/v1/executors",
        r#"{"id":"agent-2","cpu_milli":2000,"memory_mib":1024,"heartbeat_ttl_ms":300}"#,
    );
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(100));
        s.post("/v1/executors/agent-2/heartbeat", "");
    }
    let listing = s.get("/v1/executors");
    assert_eq!(
        executor(&listing, "agent-2")["state"],
        "active",
        "{listing}"
    );
    assert!(executor(&listing, "agent-2")["heartbeat_age_ms"].as_u64() < Some(300));
    let (status, _) = s.http.delete(&format!("{}/v1/executors/agent-2", s.base));
    assert_eq!(status, 202);
    let listing = s.get("/v1/executors");
    assert_eq!(executor(&listing, "agent-2")["state"], "left", "{listing}");
    // A lost executor that joins again is active again.
    s.post(
        "/v1/executors",
        r#"{"id":"agent-1","cpu_milli":2000,"memory_mib":1024,"heartbeat_ttl_ms":60000}"#,
    );
    assert_eq!(
        executor(&s.get("/v1/executors"), "agent-1")["state"],
        "active"
    );
}

#[test]
fn reservations_models_alerts_and_the_dashboard_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = start(dir.path());

    // Reservations: none, then the one made (and the one refused).
    assert_eq!(
        s.get("/v1/reservations")["reservations"],
        serde_json::json!([])
    );
    s.post(
        "/v1/reservations",
        r#"{"id":"r-gold","tenant":"gold","resources":{"cpu_milli":1000},"expires_in_ms":60000}"#,
    );
    s.post(
        "/v1/reservations",
        r#"{"id":"r-huge","tenant":"gold","resources":{"cpu_milli":64000},"expires_in_ms":60000}"#,
    );
    let listing = s.wait_for("/v1/reservations", Duration::from_secs(5), |l| {
        l["reservations"].as_array().is_some_and(|r| r.len() == 2)
    });
    let reservations = listing["reservations"].as_array().expect("array");
    assert_eq!(reservations[0]["id"], "r-gold", "{listing}");
    assert_eq!(reservations[0]["state"], "active", "{listing}");
    assert!(reservations[0]["executor"].is_string(), "{listing}");
    assert_eq!(reservations[1]["id"], "r-huge");
    assert_eq!(reservations[1]["state"], "refused", "{listing}");

    // Models: nothing until the learner has trained on a batch.
    let models = s.get("/v1/models");
    assert!(
        models["models"]
            .as_array()
            .expect("array")
            .iter()
            .all(|m| m["versions"] == serde_json::json!([])),
        "{models}"
    );
    let batch: Vec<serde_json::Value> = (0..24)
        .map(|i| serde_json::json!({"id": format!("m{i}"), "kind": "noop", "resources": {"cpu_milli": 100}}))
        .collect();
    s.post("/v1/tasks", &serde_json::Value::from(batch).to_string());
    let models = s.wait_for("/v1/models", Duration::from_secs(20), |m| {
        m["models"]
            .as_array()
            .is_some_and(|all| all.iter().all(|t| t["latest"].as_u64() >= Some(3)))
    });
    let run_time = models["models"]
        .as_array()
        .expect("array")
        .iter()
        .find(|m| m["target"] == "run_time")
        .expect("the run-time model");
    let latest = run_time["versions"]
        .as_array()
        .expect("versions")
        .last()
        .expect("one");
    assert_eq!(latest["version"], run_time["latest"]);
    assert!(latest["parameters"].as_u64() > Some(0), "{latest}");
    assert!(latest["params"].is_null(), "parameters are not listed");
    assert!(
        latest["metrics"]["median_abs_log_error"].is_number(),
        "{latest}"
    );
    let one = s.get("/v1/models?target=failure&limit=2");
    assert_eq!(one["models"].as_array().map(Vec::len), Some(1), "{one}");
    assert_eq!(
        one["models"][0]["versions"].as_array().map(Vec::len),
        Some(2)
    );
    let (status, _) = s
        .http
        .get(&format!("{}/v1/models?limit=0", s.base))
        .expect("reachable");
    assert_eq!(status, 400);

    // Alerts: the completions query has rows, so the alert fires.
    let alerts = s.wait_for("/v1/alerts", Duration::from_secs(10), |a| {
        a["firing"].as_array().is_some_and(|f| !f.is_empty())
    });
    assert_eq!(
        alerts["firing"][0]["alert"], "anything_completed",
        "{alerts}"
    );
    assert_eq!(alerts["firing"][0]["group"]["kind"], "noop");
    assert_eq!(alerts["recent"][0]["state"], "firing");

    // The dashboard's files are served from the binary.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        for (path, content_type, needle) in [
            ("/ui/", "text/html", "<title>Tidewater</title>"),
            ("/ui/app.js", "text/javascript", "import"),
            ("/ui/style.css", "text/css", "--succeeded"),
        ] {
            let response = reqwest::get(format!("{}{path}", s.base))
                .await
                .expect("request");
            assert_eq!(response.status(), 200, "{path}");
            let header = response.headers()["content-type"]
                .to_str()
                .expect("ascii")
                .to_string();
            assert!(header.starts_with(content_type), "{path}: {header}");
            let text = response.text().await.expect("body");
            assert!(text.contains(needle), "{path}");
        }
        let missing = reqwest::get(format!("{}/ui/nope.js", s.base))
            .await
            .expect("request");
        assert_eq!(missing.status(), 404);
    });
}
