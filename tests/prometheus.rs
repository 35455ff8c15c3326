//! A real Prometheus server scrapes a running pipeline; PromQL over the
//! exported series, through Prometheus's HTTP query API, gives the expected
//! values.
//!
//! The server is Debian's `prometheus` package: `TIDEWATER_PROMETHEUS_BIN`
//! names the binary (CI's `.ci/run` installs it and sets the variable), else
//! it is looked up on `PATH`. Without it the test fails under CI (`CI` set)
//! and is skipped with a notice elsewhere.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{free_port, Http};
use tidewater::config::{Config, StoreKind};
use tidewater::Pipeline;
use tidewater_connectors::store::MemoryStore;
use tidewater_dataflows::monitor::{Aggregate, Dimension, Filter, QuerySpec, Window};
use tidewater_operators::model::MetricKind;

fn prometheus_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("TIDEWATER_PROMETHEUS_BIN") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("prometheus"))
            .find(|candidate| candidate.is_file())
    })
}

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs an instant PromQL query; the first sample's value, if any.
fn promql(http: &Http, prometheus: &str, query: &str) -> Option<f64> {
    let url = format!(
        "{prometheus}/api/v1/query?query={}",
        query
            .bytes()
            .map(|b| match b {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'.' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect::<String>()
    );
    let (status, answer) = http.get(&url)?;
    if status != 200 || answer["status"] != "success" {
        return None;
    }
    answer["data"]["result"][0]["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
}

#[test]
fn prometheus_scrapes_the_pipeline_and_promql_gives_the_expected_values() {
    let Some(binary) = prometheus_binary() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must provide Prometheus (TIDEWATER_PROMETHEUS_BIN or `prometheus` on PATH)"
        );
        eprintln!("skipped: no prometheus binary (apt-get install prometheus)");
        return;
    };
    let port = free_port();
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.listen = format!("127.0.0.1:{port}");
    config.store.kind = StoreKind::Memory;
    config.queries = vec![QuerySpec {
        name: "completed".into(),
        filter: Filter {
            metric: Some(MetricKind::Completed),
            ..Filter::default()
        },
        group_by: vec![Dimension::Kind, Dimension::Status],
        aggregates: vec![Aggregate::Count],
        window: Window::None,
    }];
    let _pipeline = Pipeline::builder(config)
        .store(Arc::new(MemoryStore::new()))
        // Fails at run time, so its completions count as failed.
        .inline_handler("always-fails", |_task| {
            Err(tidewater::HandlerFailure::from(
                "fails by design".to_string(),
            ))
        })
        .start()
        .expect("start");
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(10));

    let dir = tempfile::tempdir().expect("temp dir");
    let config_file = dir.path().join("prometheus.yml");
    std::fs::write(
        &config_file,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: tidewater\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .expect("write config");
    let prometheus_port = free_port();
    let _server = Server(
        Command::new(&binary)
            .arg(format!("--config.file={}", config_file.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prometheus_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    let prometheus = format!("http://127.0.0.1:{prometheus_port}");
    http.wait_ready(&format!("{prometheus}/-/ready"), Duration::from_secs(30));

    let tasks: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"id":"ok-{i}","kind":"noop","tenant":"acme"}}"#))
        .chain((0..4).map(|i| format!(r#"{{"id":"bad-{i}","kind":"always-fails"}}"#)))
        .collect();
    let (status, _) = http.post(
        &format!("{base}/v1/tasks"),
        &format!("[{}]", tasks.join(",")),
    );
    assert_eq!(status, 200);

    let expectations = [
        (
            r#"sum(tidewater_tasks_total{job="tidewater",state="succeeded"})"#,
            12.0,
        ),
        (r#"sum(tidewater_tasks_total{state="failed"})"#, 4.0),
        (
            r#"sum by (tenant) (tidewater_tasks_submitted_total{tenant="acme"})"#,
            12.0,
        ),
        (
            r#"tidewater_query_completed{kind="noop",status="succeeded",aggregate="count"}"#,
            12.0,
        ),
        (r#"sum(tidewater_placement_latency_seconds_count)"#, 16.0),
        (r#"count(tidewater_query_completed)"#, 2.0),
    ];
    let deadline = Instant::now() + Duration::from_secs(60);
    for (query, expected) in expectations {
        loop {
            let value = promql(&http, &prometheus, query);
            if value == Some(expected) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{query}: Prometheus answers {value:?}, expected {expected}"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

#[test]
fn shipped_scrape_config_rules_and_dashboard_are_valid() {
    let configs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../configs");
    // The dashboard imports into Grafana: JSON with panels whose queries use
    // only series the exporter serves (with the local config's queries).
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(configs.join("grafana-dashboard.json")).expect("dashboard"),
    )
    .expect("dashboard JSON");
    let mut config = Config::load(&configs.join("local.toml")).expect("local.toml");
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    let pipeline = Pipeline::builder(config)
        .store(Arc::new(MemoryStore::new()))
        .start()
        .expect("start");
    let families = pipeline.metric_families();
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8);
    for panel in panels {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            let used: Vec<&str> = expr
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| w.starts_with("tidewater_"))
                .collect();
            assert!(!used.is_empty(), "{expr}");
            for metric in used {
                let family = metric.strip_suffix("_bucket").unwrap_or(metric);
                assert!(
                    families.iter().any(|f| f == family),
                    "{expr}: {family} is not exported"
                );
            }
        }
    }
    pipeline.shutdown().expect("shutdown");
    // promtool (shipped with Prometheus) accepts the scrape config and rules.
    let Some(promtool) = prometheus_binary().map(|p| p.with_file_name("promtool")) else {
        assert!(std::env::var_os("CI").is_none(), "CI must provide promtool");
        eprintln!("skipped the promtool checks: no prometheus installation");
        return;
    };
    for (what, file) in [
        ("config", "prometheus.yml"),
        ("rules", "prometheus-alerts.yml"),
    ] {
        let out = Command::new(&promtool)
            .args(["check", what])
            .arg(configs.join(file))
            .output()
            .expect("promtool");
        assert!(
            out.status.success(),
            "promtool check {what} {file}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}
