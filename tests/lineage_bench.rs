//! Benchmark (ignored by default; run with `--ignored --nocapture`): no-op
//! pipeline throughput with the lineage sink off and on, against a raw
//! neo4rs `UNWIND` write loop of the same rows and batch size on the same
//! server in the same run.
//!
//! ```text
//! eval "$(tests/services/up)"
//! TIDEWATER_BENCH_TASKS=20000 cargo test --release -p tidewater --test lineage_bench -- --ignored --nocapture
//! ```

use std::time::Instant;

use neo4rs::query;
use tidewater::{Config, Pipeline};
use tidewater_connectors::lineage::rows::batch_rows;
use tidewater_connectors::lineage::{LineageConfig, LineageGraph, WRITE_EXECUTIONS};
use tidewater_operators::model::{Completion, Lease, Outcome, ResourceRequest, Task};

fn lineage_config() -> LineageConfig {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| panic!("{name} unset: run tests/services/up"))
    };
    LineageConfig::new(
        var("TIDEWATER_NEO4J_URI"),
        var("TIDEWATER_NEO4J_USER"),
        var("TIDEWATER_NEO4J_PASSWORD"),
    )
}

/// Tasks per second through the pipeline, `tasks` no-op tasks.
fn pipeline_rate(tasks: usize, lineage: Option<LineageConfig>, prefix: &str) -> f64 {
    let mut config = Config::default();
    config.http.enabled = false;
    config.store.kind = tidewater::config::StoreKind::Memory;
    config.metrics = false;
    config.lineage = lineage;
    let pipeline = Pipeline::builder(config).start().expect("start");
    let started = Instant::now();
    for i in 0..tasks {
        let mut task = Task::new(format!("{prefix}-{i}"), "noop", ResourceRequest::cpu(1, 0));
        task.agent = Some(format!("{prefix}-agent").into());
        pipeline.submit(task).expect("submit");
    }
    let summary = pipeline.shutdown().expect("shutdown");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(summary.finished, tasks as u64, "{summary:?}");
    tasks as f64 / seconds
}

/// Rows per second written by a plain loop of the same statement.
fn raw_rate(tasks: usize, batch: usize, prefix: &str) -> f64 {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let graph = LineageGraph::connect(&lineage_config())
            .await
            .expect("connect");
        let completions: Vec<Completion> = (0..tasks)
            .map(|i| {
                let mut task =
                    Task::new(format!("{prefix}-{i}"), "noop", ResourceRequest::cpu(1, 0));
                task.agent = Some(format!("{prefix}-agent").into());
                Completion {
                    task,
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
                }
            })
            .collect();
        let started = Instant::now();
        for chunk in completions.chunks(batch) {
            graph
                .driver()
                .run(query(WRITE_EXECUTIONS).param("rows", batch_rows(chunk)))
                .await
                .expect("write");
        }
        tasks as f64 / started.elapsed().as_secs_f64()
    })
}

#[test]
#[ignore = "benchmark: needs the graph server; run with --ignored --nocapture"]
fn lineage_sink_against_a_raw_write_loop() {
    let tasks: usize = std::env::var("TIDEWATER_BENCH_TASKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let run = std::process::id();
    let config = lineage_config();
    let off = pipeline_rate(tasks, None, &format!("bo{run}"));
    let raw = raw_rate(tasks, config.batch_size, &format!("br{run}"));
    let on = pipeline_rate(tasks, Some(config.clone()), &format!("bn{run}"));
    let raw_after = raw_rate(tasks, config.batch_size, &format!("bq{run}"));
    let raw_mean = (raw + raw_after) / 2.0;
    println!(
        "tasks={tasks} batch_size={} sink_off={off:.0}/s raw_unwind={raw:.0}/s,{raw_after:.0}/s sink_on={on:.0}/s ratio_on_vs_raw={:.2}",
        config.batch_size,
        on / raw_mean
    );
}
