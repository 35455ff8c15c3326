//! Benchmark (ignored by default; run with `--ignored --nocapture`): no-op
//! pipeline throughput with the columnar export (`[export]`, Parquet and
//! Arrow IPC) off and on, against a raw write loop of the same completions
//! through the same exporter, in exactly the batch sizes the pipeline
//! exported (read back from its IPC files, where each batch is one record
//! batch), on the same disk in the same run.
//!
//! ```text
//! TIDEWATER_BENCH_TASKS=50000 cargo test --release -p tidewater-cli --test export_bench -- --ignored --nocapture
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use tidewater::{Config, Pipeline};
use tidewater_connectors::columnar::{ExportConfig, ExportFormat, Exporter};
use tidewater_operators::model::{Completion, Lease, Outcome, ResourceRequest, Task};

fn export_config(dir: &Path) -> ExportConfig {
    let mut config = ExportConfig::new(dir);
    config.format = ExportFormat::Both;
    config
}

/// Tasks per second through the pipeline, `tasks` no-op tasks.
fn pipeline_rate(tasks: usize, export: Option<ExportConfig>, prefix: &str) -> f64 {
    let mut config = Config::default();
    config.http.enabled = false;
    config.store.kind = tidewater::config::StoreKind::Memory;
    config.metrics = false;
    config.export = export;
    let pipeline = Pipeline::builder(config).start().expect("start");
    let started = Instant::now();
    for i in 0..tasks {
        let task = Task::new(format!("{prefix}-{i}"), "noop", ResourceRequest::cpu(1, 0));
        pipeline.submit(task).expect("submit");
    }
    let summary = pipeline.shutdown().expect("shutdown");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.finished, tasks as u64, "{summary:?}");
    tasks as f64 / seconds
}

/// The size of every batch the pipeline exported, from its IPC files.
fn exported_batches(dir: &Path) -> Vec<usize> {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("completions"))
        .expect("completions folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "arrow"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|path| {
            let file = std::fs::File::open(path).expect("open");
            arrow_ipc::reader::FileReader::try_new(file, None)
                .expect("IPC file")
                .map(|batch| batch.expect("batch").num_rows())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Rows per second written by a plain loop through the exporter, in
/// `batches` sizes, finishing the files at the end as the pipeline does.
fn raw_rate(batches: &[usize], dir: &Path, prefix: &str) -> f64 {
    let tasks: usize = batches.iter().sum();
    let completions: Vec<Completion> = (0..tasks)
        .map(|i| Completion {
            task: Task::new(format!("{prefix}-{i}"), "noop", ResourceRequest::cpu(1, 0)),
            executor: "local-0".into(),
            shard: 0,
            lease: Lease(0),
            outcome: Outcome::Succeeded,
            started_at_us: 1,
            finished_at_us: 2,
            exit_code: None,
            output_bytes: 0,
            is_final: true,
            result: None,
        })
        .collect();
    let started = Instant::now();
    let mut exporter = Exporter::open(&export_config(dir), "raw", HashMap::new()).expect("open");
    let mut offset = 0;
    for size in batches {
        exporter
            .export(&completions[offset..offset + size])
            .expect("export");
        offset += size;
    }
    exporter.finish().expect("finish");
    tasks as f64 / started.elapsed().as_secs_f64()
}

#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn export_sink_against_a_raw_write_loop() {
    let tasks: usize = std::env::var("TIDEWATER_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let dir = tempfile::tempdir().expect("tempdir");
    let run = std::process::id();
    let off = pipeline_rate(tasks, None, &format!("eo{run}"));
    let on_dir = dir.path().join("on");
    let on = pipeline_rate(tasks, Some(export_config(&on_dir)), &format!("en{run}"));
    let batches = exported_batches(&on_dir);
    assert_eq!(batches.iter().sum::<usize>(), tasks);
    let raw = raw_rate(&batches, &dir.path().join("raw1"), &format!("er{run}"));
    let raw_after = raw_rate(&batches, &dir.path().join("raw2"), &format!("eq{run}"));
    let raw_mean = (raw + raw_after) / 2.0;
    println!(
        "tasks={tasks} batches={} mean_batch={:.0} sink_off={off:.0}/s raw_export={raw:.0}/s,{raw_after:.0}/s sink_on={on:.0}/s ratio_on_vs_raw={:.2} ratio_on_vs_off={:.2}",
        batches.len(),
        tasks as f64 / batches.len() as f64,
        on / raw_mean,
        on / off
    );
}
