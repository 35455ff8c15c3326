//! Columnar export read back by an independent reader (pyarrow, from
//! `$TIDEWATER_PYTHON`, installed by `tests/services/up`): rolling files in
//! both formats, atomic finishing, recovery of a crashed run's journal, and
//! metric snapshots with their labels.

#![cfg(feature = "columnar")]

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use tidewater_connectors::columnar::{
    ExportConfig, ExportFormat, Exporter, MetricSample, MetricSource,
};
use tidewater_operators::model::{Completion, Lease, Outcome, ResourceRequest, Task};

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

/// Runs `script` with pyarrow on the export folder (`sys.argv[1]`) and
/// returns its stdout.
fn pyarrow(python: &str, dir: &Path, script: &str) -> String {
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
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}

fn completion(i: usize) -> Completion {
    let mut task = Task::new(format!("t-{i:03}"), "sleep", ResourceRequest::cpu(100, 0));
    task.submitted_at_us = 1_800_000_000_000_000 + i as u64 * 1000;
    task.agent = i.is_multiple_of(2).then(|| "planner".into());
    task.depends_on = if i > 0 {
        vec![format!("t-{:03}", i - 1).into()]
    } else {
        Vec::new()
    };
    Completion {
        task,
        executor: if i.is_multiple_of(3) {
            "gpu-1"
        } else {
            "cpu-1"
        }
        .into(),
        shard: 0,
        lease: Lease(0),
        outcome: if i % 5 == 4 {
            Outcome::Failed {
                reason: format!("exit {i}"),
            }
        } else {
            Outcome::Succeeded
        },
        started_at_us: 1_800_000_000_100_000 + i as u64 * 1000,
        finished_at_us: 1_800_000_000_150_000 + i as u64 * 1000,
        exit_code: None,
        output_bytes: i as u64,
        is_final: true,
        result: None,
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const READ_BOTH: &str = r#"
import sys, glob, pyarrow.parquet as pq, pyarrow.ipc as ipc, pyarrow as pa
d = sys.argv[1]
p = pq.read_table(sorted(glob.glob(d + "/completions/*.parquet")))
a = pa.concat_tables([ipc.open_file(f).read_all() for f in sorted(glob.glob(d + "/completions/*.arrow"))])
assert p.sort_by("task_id").equals(a.sort_by("task_id")), "parquet and ipc differ"
ids = sorted(p.column("task_id").to_pylist())
failed = sorted(r["task_id"] for r in p.to_pylist() if r["outcome"] == "failed")
deps = {r["task_id"]: r["depends_on"] for r in p.to_pylist()}
e = pq.read_table(sorted(glob.glob(d + "/experience/*.parquet")))
print(p.num_rows, ids[0], ids[-1], ",".join(failed), deps["t-003"], p.schema.field("finished_at").type, e.num_rows, sum(e.column("succeeded").to_pylist()))
"#;

#[test]
fn rolls_files_in_both_formats_that_pyarrow_reads() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ExportConfig::new(dir.path());
    config.format = ExportFormat::Both;
    config.rows_per_file = 10;
    let classes = HashMap::from([("gpu-1".to_string(), "gpu".to_string())]);
    let mut exporter = Exporter::open(&config, "run1", classes).expect("open");
    let all: Vec<Completion> = (0..25).map(completion).collect();
    exporter.export(&all[..7]).expect("export");
    exporter.export(&all[7..]).expect("export");
    let completions = dir.path().join("completions");
    // Two full files are finished; the rest waits in the journal.
    assert_eq!(
        names(&completions),
        [
            ".completions-run1-000003.staging.arrows",
            "completions-run1-000001.arrow",
            "completions-run1-000001.parquet",
            "completions-run1-000002.arrow",
            "completions-run1-000002.parquet",
        ]
    );
    exporter.finish().expect("finish");
    assert_eq!(
        exporter.finished_files().len(),
        12,
        "3 files x 2 formats x 2 streams"
    );
    assert!(
        names(&completions).iter().all(|n| !n.starts_with('.')),
        "no journal or temporary file is left: {:?}",
        names(&completions)
    );
    let answer = pyarrow(&python, dir.path(), READ_BOTH);
    assert_eq!(
        answer,
        "25 t-000 t-024 t-004,t-009,t-014,t-019,t-024 ['t-002'] timestamp[us, tz=UTC] 25 20"
    );
}

#[test]
fn a_crashed_runs_journal_is_finished_on_the_next_start() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ExportConfig::new(dir.path());
    config.format = ExportFormat::Both;
    config.rows_per_file = 100;
    config.experience = false;
    let all: Vec<Completion> = (0..25).map(completion).collect();
    let mut crashed = Exporter::open(&config, "run1", HashMap::new()).expect("open");
    crashed.export(&all[..6]).expect("export");
    // The process dies: nothing is finished, and the last write was cut short.
    std::mem::forget(crashed);
    let completions = dir.path().join("completions");
    let journal = completions.join(".completions-run1-000001.staging.arrows");
    let mut bytes = std::fs::read(&journal).expect("journal");
    bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x10, 0, 0, 0, 1, 2, 3]);
    std::fs::write(&journal, bytes).expect("cut-short batch");

    let mut next = Exporter::open(&config, "run2", HashMap::new()).expect("reopen");
    assert_eq!(
        names(&completions),
        [
            "completions-run1-000001.arrow",
            "completions-run1-000001.parquet"
        ]
    );
    next.export(&all[6..]).expect("export");
    drop(next); // finishes its file, as at shutdown
    let count = pyarrow(
        &python,
        dir.path(),
        r#"
import sys, glob, pyarrow.parquet as pq
t = pq.read_table(glob.glob(sys.argv[1] + "/completions/*.parquet"))
ids = t.column("task_id").to_pylist()
print(t.num_rows, len(set(ids)))
"#,
    );
    assert_eq!(count, "25 25");
}

#[test]
fn metric_snapshots_read_back_with_their_labels() {
    let Some(python) = python() else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = ExportConfig::new(dir.path());
    config.format = ExportFormat::Both;
    config.experience = false;
    let mut exporter = Exporter::open(&config, "run1", HashMap::new()).expect("open");
    assert!(exporter.exports_metrics());
    let sample = |metric: &str, labels: &[(&str, &str)], stat: &str, value: f64| MetricSample {
        source: if metric.starts_with("tidewater_") {
            MetricSource::Builtin
        } else {
            MetricSource::Query
        },
        metric: metric.to_string(),
        as_of: (!metric.starts_with("tidewater_")).then_some(1_800_000_000_000),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        stat: stat.to_string(),
        value,
    };
    for (i, taken_at) in [1_800_000_000_000_000_u64, 1_800_000_001_000_000]
        .into_iter()
        .enumerate()
    {
        let done = 10.0 * (i + 1) as f64;
        exporter
            .export_metrics(
                taken_at,
                &[
                    sample("by_kind", &[("kind", "sleep")], "count", done),
                    sample("by_kind", &[("kind", "sleep")], "p99", 0.25),
                    sample(
                        "tidewater_tasks_total",
                        &[("state", "succeeded")],
                        "value",
                        done,
                    ),
                ],
            )
            .expect("export");
    }
    exporter.export_metrics(1, &[]).expect("an empty snapshot");
    exporter.finish().expect("finish");
    assert_eq!(exporter.finished_files().len(), 2, "one file x 2 formats");
    let answer = pyarrow(
        &python,
        dir.path(),
        r#"
import sys, glob, pyarrow as pa, pyarrow.parquet as pq, pyarrow.ipc as ipc
d = sys.argv[1]
p = pq.read_table(glob.glob(d + "/metrics/*.parquet"))
a = pa.concat_tables([ipc.open_file(f).read_all() for f in glob.glob(d + "/metrics/*.arrow")])
assert p.equals(a), "parquet and ipc differ"
rows = p.to_pylist()
last = max(r["taken_at"] for r in rows)
now = {(r["metric"], r["stat"]): (r["value"], r["labels"], r["as_of"], r["source"]) for r in rows if r["taken_at"] == last}
print(p.num_rows, len({r["taken_at"] for r in rows}), pa.types.is_map(p.schema.field("labels").type), now[("by_kind", "count")], now[("tidewater_tasks_total", "value")])
"#,
    );
    assert_eq!(
        answer,
        "6 2 True (20.0, [('kind', 'sleep')], 1800000000000, 'query') \
         (20.0, [('state', 'succeeded')], None, 'builtin')"
    );
}
