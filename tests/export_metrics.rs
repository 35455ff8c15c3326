//! End to end through the binary: metric snapshots (`[export] metrics`) of
//! a running pipeline — a continuous query's groups and the built-in
//! metrics — land in Parquet and Arrow IPC files that pyarrow reads back,
//! the last snapshot (taken at stop) counting every task.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{free_port, spawn_run, Http};
use crate::lineage_common::stop;

const SUCCEEDING: usize = 12;
const FAILING: usize = 3;

/// The Python with pyarrow; `None` (skip) outside CI when unset.
fn python() -> Option<String> {
    match std::env::var("TIDEWATER_PYTHON") {
        Ok(python) => Some(python),
        Err(_) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("TIDEWATER_PYTHON is unset under CI: run `eval \"$(tests/services/up)\"`")
        }
        Err(_) => {
            eprintln!("skipping: TIDEWATER_PYTHON is unset (eval \"$(tests/services/up)\")");
            None
        }
    }
}

fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let config = format!(
        r#"
workers = 2
[http]
listen = "127.0.0.1:{port}"
[store]
kind = "embedded"
path = "data/store.redb"
[handlers]
command_allowlist = ["false"]
[export]
dir = "data/export"
format = "both"
experience = false
metrics_interval_ms = 200

[[queries]]
name = "completions_by_kind"
filter = {{ metric = "completed" }}
group_by = ["kind", "status"]
aggregates = ["count", "max"]
"#
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

/// Reads the snapshots back: Parquet and IPC must agree; prints the number
/// of snapshots, whether `tidewater_tasks_total` never fell between them,
/// and the last snapshot's query counts, task totals and latency count.
const READ_SNAPSHOTS: &str = r#"
import sys, glob, pyarrow as pa, pyarrow.parquet as pq, pyarrow.ipc as ipc
d = sys.argv[1] + "/metrics"
p = pq.read_table(sorted(glob.glob(d + "/*.parquet")))
a = pa.concat_tables([ipc.open_file(f).read_all() for f in sorted(glob.glob(d + "/*.arrow"))])
assert p.equals(a), "parquet and ipc differ"
assert pa.types.is_map(p.schema.field("labels").type)
rows = p.to_pylist()
times = sorted({r["taken_at"] for r in rows})
last = [r for r in rows if r["taken_at"] == times[-1]]
def value(metric, stat, **labels):
    found = [r for r in last if r["metric"] == metric and r["stat"] == stat and dict(r["labels"]) == labels]
    assert len(found) == 1, (metric, stat, labels, found)
    return found[0]
ok = value("completions_by_kind", "count", kind="sleep", status="succeeded")
bad = value("completions_by_kind", "count", kind="command", status="failed")
assert ok["source"] == "query" and ok["as_of"] is not None
total = value("tidewater_tasks_total", "value", state="succeeded")
assert total["source"] == "builtin" and total["as_of"] is None
per_snapshot = [sum(r["value"] for r in rows if r["taken_at"] == t and r["metric"] == "tidewater_tasks_total") for t in times]
print(len(times) >= 3, per_snapshot == sorted(per_snapshot),
      int(ok["value"]), int(bad["value"]),
      int(total["value"]), int(value("tidewater_tasks_total", "value", state="failed")["value"]),
      int(value("tidewater_end_to_end_latency_seconds", "count", kind="sleep")["value"]),
      value("completions_by_kind", "max", kind="sleep", status="succeeded")["value"] > 0)
"#;

#[test]
fn snapshots_of_queries_and_builtin_metrics_reach_the_files() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let config = write_config(dir.path(), port);
    let http = Http::new();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = spawn_run(dir.path(), &config, &[], "run.log");
    http.wait_ready(&format!("{base}/healthz"), Duration::from_secs(30));

    let tasks: Vec<String> = (0..SUCCEEDING)
        .map(|i| format!(r#"{{"id":"ms-ok-{i}","kind":"sleep","payload":{{"ms":5}}}}"#))
        .chain((0..FAILING).map(|i| {
            format!(r#"{{"id":"ms-bad-{i}","kind":"command","payload":{{"program":"false"}}}}"#)
        }))
        .collect();
    let (status, answer) = http.post(
        &format!("{base}/v1/tasks"),
        &format!("[{}]", tasks.join(",")),
    );
    assert_eq!(status, 200, "{answer}");

    // Wait until the query counts every task, so that snapshots (every
    // 200 ms, and one at stop) hold the final counts.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counted = http
            .get(&format!("{base}/v1/queries/completions_by_kind"))
            .and_then(|(_, result)| {
                let rows = result["rows"].as_array()?.clone();
                Some(
                    rows.iter()
                        .filter_map(|r| r["values"]["count"].as_f64())
                        .sum::<f64>(),
                )
            });
        if counted == Some((SUCCEEDING + FAILING) as f64) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the query counted {counted:?} of {} tasks",
            SUCCEEDING + FAILING
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop(&mut child);

    let out = Command::new(&python)
        .arg("-c")
        .arg(READ_SNAPSHOTS)
        .arg(dir.path().join("data/export"))
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("True True {SUCCEEDING} {FAILING} {SUCCEEDING} {FAILING} {SUCCEEDING} True"),
        "snapshots>=3, totals never fall, query counts ok/failed, totals ok/failed, \
         latency count, max run time > 0"
    );
    // No journal is left behind: the last file was finished at stop.
    let leftovers: Vec<String> = std::fs::read_dir(dir.path().join("data/export/metrics"))
        .expect("metrics folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
