//! What the lineage and export end-to-end tests share: the services from
//! the environment, the config, task batches, and reading the graph and
//! the exported files back.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::Http;

/// The graph server and the Python with pyarrow, from `tests/services/up`.
pub struct Services {
    /// `host:port` of the Bolt server.
    pub neo4j_uri: String,
    /// Its user.
    pub neo4j_user: String,
    /// Its password.
    pub neo4j_password: String,
    /// A Python that imports pyarrow.
    pub python: String,
}

/// The services, or `None` (skip) outside CI when they are not set up.
pub fn services() -> Option<Services> {
    let var = |name: &str| std::env::var(name).ok();
    match (
        var("TIDEWATER_NEO4J_URI"),
        var("TIDEWATER_NEO4J_USER"),
        var("TIDEWATER_NEO4J_PASSWORD"),
        var("TIDEWATER_PYTHON"),
    ) {
        (Some(neo4j_uri), Some(neo4j_user), Some(neo4j_password), Some(python)) => Some(Services {
            neo4j_uri,
            neo4j_user,
            neo4j_password,
            python,
        }),
        _ if var("CI").as_deref() == Some("true") => panic!(
            "TIDEWATER_NEO4J_URI/USER/PASSWORD and TIDEWATER_PYTHON must be set under CI: \
             run `eval \"$(tests/services/up)\"`"
        ),
        _ => {
            eprintln!("skipping: the graph server or pyarrow is not set up (eval \"$(tests/services/up)\")");
            None
        }
    }
}

/// A name unique to this test run, so that runs sharing a server do not meet.
pub fn run_id() -> String {
    let micros = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!("{}{}", std::process::id(), micros % 1_000_000_000)
}

/// Writes a config with `[lineage]` and `[export]` (both formats) and two
/// executors `x<run>-0`, `x<run>-1`; the `command` handler may run `false`
/// and `sh`.
pub fn write_config(dir: &Path, port: u16, services: &Services, run: &str, extra: &str) -> PathBuf {
    let config = format!(
        r#"
workers = 2
[http]
listen = "127.0.0.1:{port}"
[store]
kind = "embedded"
path = "data/store.redb"
[sinks]
results_file = "data/results.jsonl"
[handlers]
command_allowlist = ["false", "sh"]
[lineage]
uri = "{uri}"
user = "{user}"
password = "{password}"
batch_size = 16
retry_min_ms = 20
retry_max_ms = 500
{extra}
[export]
dir = "data/export"
format = "both"
rows_per_file = 15
[[executors]]
id = "x{run}"
count = 2
cpu_milli = 4000
memory_mib = 1024
"#,
        uri = services.neo4j_uri,
        user = services.neo4j_user,
        password = services.neo4j_password,
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).expect("write config");
    path
}

/// Task `i` of run `run`: submitted by agent `agent-<run>`, depending on
/// task `i - 1`; every tenth fails (it runs `false`).
pub fn task_id(run: &str, i: usize) -> String {
    format!("lx{run}-{i:03}")
}

/// Whether task `i` fails.
pub fn fails(i: usize) -> bool {
    i % 10 == 9
}

/// A JSON array of tasks `range`.
pub fn tasks_json(run: &str, range: std::ops::Range<usize>) -> String {
    let tasks: Vec<String> = range
        .map(|i| {
            let (kind, payload) = if fails(i) {
                ("command", r#"{"program":"false"}"#)
            } else {
                ("sleep", r#"{"ms":5}"#)
            };
            let deps = if i == 0 {
                String::new()
            } else {
                format!(r#""{}""#, task_id(run, i - 1))
            };
            format!(
                r#"{{"id":"{id}","kind":"{kind}","payload":{payload},"agent":"agent-{run}","depends_on":[{deps}],"tenant":"t{run}"}}"#,
                id = task_id(run, i)
            )
        })
        .collect();
    format!("[{}]", tasks.join(","))
}

/// Polls the agent's activity until it lists `count` executions.
pub fn wait_for_lineage(
    http: &Http,
    base: &str,
    run: &str,
    count: u64,
    timeout: Duration,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some((200, answer)) = http.get(&format!("{base}/v1/lineage/agents/agent-{run}")) {
            if answer["ran"].as_u64() == Some(count) {
                return answer;
            }
            assert!(
                Instant::now() < deadline,
                "the graph has {answer} after {timeout:?}"
            );
        } else {
            assert!(
                Instant::now() < deadline,
                "no lineage answer within {timeout:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Reads the exported completions back with pyarrow, from the Parquet and
/// the IPC files (which must agree), and returns "rows ids-sorted failed-sorted".
pub fn read_export(python: &str, dir: &Path) -> String {
    let script = r#"
import sys, glob, pyarrow as pa, pyarrow.parquet as pq, pyarrow.ipc as ipc
d = sys.argv[1]
files = sorted(glob.glob(d + "/completions/*.parquet"))
p = pq.read_table(files)
a = pa.concat_tables([ipc.open_file(f).read_all() for f in sorted(glob.glob(d + "/completions/*.arrow"))])
assert p.sort_by("task_id").equals(a.sort_by("task_id")), "parquet and ipc differ"
ids = sorted(p.column("task_id").to_pylist())
failed = sorted(r["task_id"] for r in p.to_pylist() if r["outcome"] == "failed")
e = pq.read_table(sorted(glob.glob(d + "/experience/*.parquet")))
print(p.num_rows, len(set(ids)), len(files), e.num_rows, ",".join(failed))
print(",".join(ids))
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(dir)
        .output()
        .expect("running python");
    assert!(
        out.status.success(),
        "pyarrow failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Stops the pipeline with SIGINT and waits for it to exit cleanly.
pub fn stop(child: &mut std::process::Child) {
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            assert!(status.success(), "tidewater exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "tidewater did not stop after SIGINT"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
