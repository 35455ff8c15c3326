//! The web dashboard in a real browser: the binary runs with a few
//! executors, a query, an alert and the learner; tasks are submitted over
//! HTTP; then `tests/ui/dashboard.mjs` drives headless Debian Chromium
//! (playwright-core) against `/ui/`, checks that the counts, rows, executors,
//! alert, query, models and a task's detail appear, and saves screenshots.
//!
//! Needs `/usr/bin/chromium` (Debian `chromium`), `node`, and
//! `npm ci --prefix tests/ui`. Without them the test is skipped, except
//! under `CI=true`, where it fails.
//!
//! Screenshots go to `$CARGO_TARGET_TMPDIR/dashboard/`; with
//! `TIDEWATER_DASHBOARD_PNG=path` the page's screenshot is also copied there
//! (that is how `docs/dashboard.png` is made).

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{free_port, spawn_run, Http};

struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the runtime package sits in the repository")
        .to_path_buf()
}

/// What is missing to run the browser, if anything.
fn missing_tools(root: &Path) -> Vec<String> {
    let mut missing = Vec::new();
    let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        missing.push(format!("{chromium} (apt-get install -y chromium)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".into());
    }
    if !root.join("tests/ui/node_modules/playwright-core").exists() {
        missing.push("tests/ui/node_modules (npm ci --prefix tests/ui)".into());
    }
    missing
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

[handlers]
command_allowlist = ["false"]

[[executors]]
id = "cpu"
count = 3
cpu_milli = 4000
memory_mib = 8192
labels = {{ class = "cpu" }}

[[executors]]
id = "gpu"
cpu_milli = 8000
memory_mib = 32768
gpus = 2
gpu_model = "A100"
labels = {{ class = "gpu" }}

[[queries]]
name = "completions_by_kind"
filter = {{ metric = "completed" }}
group_by = ["kind", "status"]
aggregates = ["count", "avg", {{ quantile = 0.99 }}]

[[queries]]
name = "failures_by_kind"
filter = {{ metric = "completed", status = "failed" }}
group_by = ["kind"]
aggregates = ["count"]

[[alerts]]
name = "tasks_failing"
query = "failures_by_kind"
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

#[test]
fn the_dashboard_shows_counts_rows_executors_and_a_task_detail_in_chromium() {
    let root = repo_root();
    let missing = missing_tools(&root);
    if !missing.is_empty() {
        let message = format!("the dashboard test needs {}", missing.join(", "));
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("skipping: {message}");
        return;
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config_path = dir.path().join("dashboard.toml");
    std::fs::write(&config_path, config(port)).expect("write config");
    let _server = Server {
        child: spawn_run(dir.path(), &config_path, &[], "dashboard.log"),
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = Http::new();
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));

    // 40 quick tasks in two tenants, 2 that fail, 2 in a third tenant that
    // keep running (on the GPU executor).
    let mut batch: Vec<serde_json::Value> = (0..40)
        .map(|i| {
            serde_json::json!({
                "id": format!("job-{i:02}"),
                "kind": "noop",
                "tenant": if i % 2 == 0 { "research" } else { "serving" },
                "resources": {"cpu_milli": 500, "memory_mib": 256},
            })
        })
        .collect();
    for i in 0..2 {
        batch.push(serde_json::json!({
            "id": format!("broken-{i}"),
            "kind": "command",
            "payload": {"program": "false"},
            "max_attempts": 1,
            "resources": {"cpu_milli": 250},
        }));
        batch.push(serde_json::json!({
            "id": format!("train-{i}"),
            "kind": "sleep",
            "tenant": "training",
            "payload": {"ms": 60_000},
            "resources": {"cpu_milli": 2000, "memory_mib": 4096, "gpus": 1},
        }));
    }
    let (status, answer) = http.post(
        &format!("{base}/v1/tasks"),
        &serde_json::Value::from(batch).to_string(),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        answer["accepted"].as_array().map(Vec::len),
        Some(44),
        "{answer}"
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stats) = http.get(&format!("{base}/v1/stats")).expect("stats");
        if stats["succeeded"].as_u64() >= Some(40) && stats["failed"].as_u64() >= Some(2) {
            break;
        }
        assert!(Instant::now() < deadline, "tasks did not finish: {stats}");
        std::thread::sleep(Duration::from_millis(50));
    }

    // While the browser watches, work keeps arriving: the counts grow and
    // the chart and the executors' bars move.
    let stop = Arc::new(AtomicBool::new(false));
    let trickle = {
        let (stop, url) = (Arc::clone(&stop), format!("{base}/v1/tasks"));
        std::thread::spawn(move || trickle(&url, &stop))
    };
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&out).expect("screenshot dir");
    let screenshot = out.join("dashboard.png");
    let expectations = serde_json::json!({
        "counts": {"succeeded": 40, "failed": 2},
        "tenant_rows": {"tenant": "training", "ids": ["train-0", "train-1"]},
        "rows_at_least": 25,
        "executors": 4,
        "gpu_devices": 2,
        "alert": "tasks_failing",
        "query": "completions_by_kind",
        "models": true,
        "failed": ["broken-0", "broken-1"],
        "detail": "broken-1",
        "detail_text": ["failed", "command", "exit code"],
        "settle_ms": 6000,
    });
    let run = Command::new("node")
        .arg(root.join("tests/ui/dashboard.mjs"))
        .arg(&base)
        .arg(&screenshot)
        .arg(expectations.to_string())
        .current_dir(root.join("tests/ui"))
        .output()
        .expect("run node");
    stop.store(true, Ordering::Release);
    let trickled = trickle.join().expect("the trickle thread");
    assert!(trickled > 0, "no task was trickled in");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the browser check failed (screenshots in {}):\n{stdout}\n{stderr}",
        out.display()
    );
    assert!(stdout.contains("\"ok\":true"), "{stdout}");
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "not a real screenshot"
    );
    assert!(out.join("dashboard-detail.png").exists());
    if let Ok(copy) = std::env::var("TIDEWATER_DASHBOARD_PNG") {
        std::fs::copy(&screenshot, &copy).expect("copy the screenshot");
    }
}

/// Submits a small mixed batch every 150 ms until `stop`: quick tasks, short
/// sleeps that hold CPU for a while, and now and then one that fails.
/// Returns how many batches went in.
fn trickle(url: &str, stop: &AtomicBool) -> u64 {
    let http = Http::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Acquire) {
        let mut batch: Vec<serde_json::Value> = (0..4)
            .map(|i| {
                serde_json::json!({
                    "id": format!("live-{round}-{i}"),
                    "kind": "noop",
                    "tenant": if (round + i).is_multiple_of(3) { "serving" } else { "research" },
                })
            })
            .collect();
        batch.push(serde_json::json!({
            "id": format!("step-{round}"),
            "kind": "sleep",
            "tenant": "research",
            "payload": {"ms": 300 + (round * 137) % 1200},
            "resources": {"cpu_milli": 1000 + (round % 3) * 1000, "memory_mib": 1024 * (1 + round % 4)},
        }));
        if round % 20 == 7 {
            batch.push(serde_json::json!({
                "id": format!("flaky-{round}"),
                "kind": "command",
                "payload": {"program": "false"},
                "max_attempts": 1,
            }));
        }
        let (status, answer) = http.post(url, &serde_json::Value::from(batch).to_string());
        assert_eq!(status, 200, "{answer}");
        round += 1;
        std::thread::sleep(Duration::from_millis(150));
    }
    round
}

#[test]
fn where_auth_is_on_the_dashboard_asks_for_a_token_and_signs_in_with_it() {
    let root = repo_root();
    let missing = missing_tools(&root);
    if !missing.is_empty() {
        let message = format!("the dashboard test needs {}", missing.join(", "));
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{message}");
        eprintln!("skipping: {message}");
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let config_path = dir.path().join("auth.toml");
    std::fs::write(
        &config_path,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[auth]\nmode = \"token\"\n[store]\nkind = \"embedded\"\npath = \"{}\"\n",
            dir.path().join("store.redb").display()
        ),
    )
    .expect("write config");
    let minted = Command::new(crate::common::binary())
        .args([
            "token", "create", "--tenant", "ops", "--role", "operator", "--config",
        ])
        .arg(&config_path)
        .output()
        .expect("token create");
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    let token: serde_json::Value = serde_json::from_slice(&minted.stdout).expect("json");
    let token = token["token"].as_str().expect("token").to_string();
    let _server = Server {
        child: spawn_run(dir.path(), &config_path, &[], "auth.log"),
    };
    let base = format!("http://127.0.0.1:{port}");
    let http = Http::new();
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));
    // Three tasks, submitted with the token.
    let submitted = Command::new(crate::common::binary())
        .args([
            "submit", "--url", &base, "--token", &token, "--wait", "--json",
        ])
        .arg(r#"[{"id":"a1","kind":"noop"},{"id":"a2","kind":"noop"},{"id":"a3","kind":"noop"}]"#)
        .output()
        .expect("submit");
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );

    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-auth");
    std::fs::create_dir_all(&out).expect("screenshot dir");
    let screenshot = out.join("dashboard.png");
    let expectations = serde_json::json!({
        "token": token,
        "counts": {"succeeded": 3},
        "rows": ["a1", "a2", "a3"],
        "settle_ms": 500,
    });
    let run = Command::new("node")
        .arg(root.join("tests/ui/dashboard.mjs"))
        .arg(&base)
        .arg(&screenshot)
        .arg(expectations.to_string())
        .current_dir(root.join("tests/ui"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("\"ok\":true"),
        "the browser check failed (screenshots in {}):\n{stdout}\n{}",
        out.display(),
        String::from_utf8_lossy(&run.stderr)
    );
}
