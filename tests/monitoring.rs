//! The monitoring agent end to end: continuous queries over a running
//! pipeline's metric stream served at `/v1/queries/{name}` and by
//! `tidewater query`, the Prometheus exposition at `/metrics`, and an alert
//! delivered to a webhook.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::common::{binary, free_port, Http};
use tidewater::config::{Config, StoreKind};
use tidewater::monitoring::{AlertRule, Comparison};
use tidewater::Pipeline;
use tidewater_connectors::store::MemoryStore;
use tidewater_dataflows::monitor::{Aggregate, Dimension, Filter, QuerySpec, Window};
use tidewater_operators::model::MetricKind;

/// A one-shot HTTP server that hands each request body to `bodies`.
fn webhook() -> (String, mpsc::Receiver<serde_json::Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/alerts", listener.local_addr().expect("addr"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            if reader.read_exact(&mut body).is_ok() {
                if let Ok(json) = serde_json::from_slice(&body) {
                    let _ = tx.send(json);
                }
            }
            let _ = reader
                .get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        }
    });
    (url, rx)
}

fn monitored_config(port: u16, webhook: Option<String>) -> Config {
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.listen = format!("127.0.0.1:{port}");
    config.store.kind = StoreKind::Memory;
    config.queries = vec![
        QuerySpec {
            name: "completed".into(),
            filter: Filter {
                metric: Some(MetricKind::Completed),
                ..Filter::default()
            },
            group_by: vec![Dimension::Kind, Dimension::Status],
            aggregates: vec![Aggregate::Count, Aggregate::Max],
            window: Window::None,
        },
        QuerySpec {
            name: "placement_last_minute".into(),
            filter: Filter {
                metric: Some(MetricKind::Assigned),
                ..Filter::default()
            },
            group_by: vec![],
            aggregates: vec![Aggregate::Count, Aggregate::Quantile(0.99)],
            window: Window::Sliding { ms: 60_000 },
        },
    ];
    config.alerts = vec![AlertRule {
        name: "failures".into(),
        query: "completed".into(),
        aggregate: "count".into(),
        op: Comparison::Above,
        threshold: 3.0,
        for_ms: 0,
        webhook,
    }];
    config
}

fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn queries_metrics_and_alerts_over_a_running_pipeline() {
    let port = free_port();
    let (hook, alerts) = webhook();
    let pipeline = Pipeline::builder(monitored_config(port, Some(hook)))
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
    let tasks: Vec<String> = (0..10)
        .map(|i| format!(r#"{{"id":"ok-{i}","kind":"noop"}}"#))
        .chain((0..5).map(|i| format!(r#"{{"id":"bad-{i}","kind":"always-fails"}}"#)))
        .collect();
    let (status, _) = http.post(
        &format!("{base}/v1/tasks"),
        &format!("[{}]", tasks.join(",")),
    );
    assert_eq!(status, 200);

    // The query counts every completion, exactly, as of a complete epoch.
    let result = wait_for("query rows", || {
        let (status, result) = http.get(&format!("{base}/v1/queries/completed"))?;
        assert_eq!(status, 200);
        let rows = result["rows"].as_array()?;
        let count = |kind: &str, status: &str| {
            rows.iter()
                .find(|r| r["key"]["kind"] == kind && r["key"]["status"] == status)
                .and_then(|r| r["values"]["count"].as_f64())
        };
        (count("noop", "succeeded") == Some(10.0) && count("always-fails", "failed") == Some(5.0))
            .then_some(result)
    });
    assert!(result["as_of"].as_u64().is_some(), "{result}");
    assert_eq!(result["rows"].as_array().map(Vec::len), Some(2), "{result}");
    let placement = wait_for("placement count", || {
        let result = pipeline.query("placement_last_minute")?;
        let count = result.rows.first()?.values.get("count").copied()?;
        (count == 15.0).then_some(result)
    });
    assert!(placement.rows[0].values["p99"] >= 0.0, "{placement:?}");

    // The CLI reads the same.
    let cli = std::process::Command::new(binary())
        .args(["query", "completed", "--url", &base])
        .output()
        .expect("tidewater query");
    assert!(cli.status.success());
    let printed: serde_json::Value =
        serde_json::from_slice(&cli.stdout).expect("the CLI prints the JSON result");
    assert_eq!(printed["name"], "completed");
    let (status, _) = http
        .get(&format!("{base}/v1/queries/nope"))
        .expect("reachable");
    assert_eq!(status, 404);

    // Prometheus exposition: built-in metrics and the query's gauges.
    let text = wait_for("metrics", || {
        let text = pipeline.metrics_text().expect("render");
        text.contains(r#"tidewater_tasks_total{state="succeeded"} 10"#)
            .then_some(text)
    });
    for expected in [
        r#"tidewater_tasks_total{state="failed"} 5"#,
        r#"tidewater_query_completed{aggregate="count",kind="noop",status="succeeded"} 10"#,
        "tidewater_placement_latency_seconds_count",
        "tidewater_end_to_end_latency_seconds_bucket",
        r#"tidewater_tasks_submitted_total{kind="noop",tenant="default"} 10"#,
    ] {
        assert!(text.contains(expected), "missing {expected} in\n{text}");
    }

    // Both groups' counts exceed 3: the alert fires for each, by webhook.
    let mut fired = Vec::new();
    while fired.len() < 2 {
        let event = alerts
            .recv_timeout(Duration::from_secs(10))
            .expect("alert webhook called");
        assert_eq!(event["alert"], "failures");
        assert_eq!(event["state"], "firing");
        fired.push(
            event["group"]["kind"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        );
    }
    fired.sort();
    assert_eq!(fired, ["always-fails", "noop"]);
    let text = wait_for("alert gauge", || {
        let text = pipeline.metrics_text().expect("render");
        text.contains(r#"tidewater_alert_firing{alert="failures"} 1"#)
            .then_some(text)
    });
    assert!(text.contains("tidewater_alert_firing"));
    pipeline.shutdown().expect("shutdown");
}
