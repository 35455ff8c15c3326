//! `tidewater bench --broker amqp`: tasks per second end to end through
//! RabbitMQ, against a raw lapin loop doing the same broker work, measured
//! in the same run.
//!
//! Both sides start from the same queue pre-filled with `tasks` persistent
//! task messages (filling it is not timed) and stop the clock when the last
//! result has been routed to a capture queue bound to the results exchange:
//!
//! ```text
//!  raw:      consume (prefetch) ─► publish a result (confirm) ─► ack
//!  pipeline: consume (prefetch) ─► decode/validate ─► coordinate ─► execute (noop)
//!            ─► record in the store ─► publish the result (confirm) ─► ack
//! ```
//!
//! The ratio pipeline / raw says how much of the broker's own rate the
//! pipeline keeps. Rounds alternate raw and pipeline runs so that a noisy
//! machine affects both alike; the medians are reported.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::{future, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions, QueuePurgeOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::Serialize;

use tidewater_connectors::rabbitmq::RabbitMqConfig;
use tidewater_connectors::store::{StoredTask, TaskStore};
use tidewater_operators::model::{Completion, Lease, Name, Outcome, ResourceRequest, Task};

use tidewater::config::{Config, StoreKind};
use tidewater::Pipeline;

/// Broker benchmark settings.
#[derive(Clone, Debug)]
pub struct BrokerBenchOptions {
    /// AMQP URI of the broker (`amqp`), or its bootstrap servers (`kafka`).
    pub url: String,
    /// Tasks per run.
    pub tasks: u64,
    /// Timely workers of the pipeline.
    pub workers: usize,
    /// Prefetch, the same for both sides (Kafka: the pipeline's
    /// `max_in_flight` and the raw loop's largest batch).
    pub prefetch: u16,
    /// Raw/pipeline pairs of runs.
    pub rounds: usize,
    /// The pipeline's store (`embedded`: a redb file in a temporary
    /// folder, durable commits; `memory`).
    pub store: StoreKind,
}

/// Broker benchmark results.
#[derive(Clone, Debug, Serialize)]
pub struct BrokerBenchReport {
    /// The broker: `amqp` or `kafka`.
    pub broker: String,
    /// Tasks per run.
    pub tasks: u64,
    /// Pipeline workers.
    pub workers: usize,
    /// Prefetch.
    pub prefetch: u16,
    /// The pipeline's store.
    pub store: String,
    /// Raw client loop (lapin, rdkafka), tasks per second, per round.
    pub raw_tasks_per_sec: Vec<f64>,
    /// Pipeline, tasks per second, per round.
    pub pipeline_tasks_per_sec: Vec<f64>,
    /// Median of the raw rounds.
    pub raw_median: f64,
    /// Median of the pipeline rounds.
    pub pipeline_median: f64,
    /// `pipeline_median / raw_median`.
    pub ratio: f64,
}

/// Why the broker benchmark stopped.
#[derive(Debug, thiserror::Error)]
pub enum BrokerBenchError {
    /// A broker operation failed.
    #[error("RabbitMQ {operation}: {source}")]
    Amqp {
        /// What was being done.
        operation: &'static str,
        /// The client's account.
        source: lapin::Error,
    },
    /// A Kafka operation failed.
    #[error("Kafka {operation}: {source}")]
    Kafka {
        /// What was being done.
        operation: &'static str,
        /// The client's account.
        source: rdkafka::error::KafkaError,
    },
    /// The pipeline failed.
    #[error("pipeline: {0}")]
    Pipeline(#[from] tidewater::RuntimeError),
    /// A run did not finish in time.
    #[error("{side} run stalled at {done} of {tasks} results")]
    Stalled {
        /// Which side.
        side: &'static str,
        /// Results routed.
        done: u64,
        /// Tasks in the run.
        tasks: u64,
    },
    /// Setting up the run failed.
    #[error("{0}")]
    Setup(String),
}

fn amqp(operation: &'static str) -> impl FnOnce(lapin::Error) -> BrokerBenchError {
    move |source| BrokerBenchError::Amqp { operation, source }
}

/// The queues and exchange one benchmark uses; deleted at the end.
struct Names {
    tasks: String,
    results: String,
    capture: String,
    dead: String,
}

impl Names {
    fn new() -> Names {
        let prefix = format!("tidewater.bench.{}", std::process::id());
        Names {
            tasks: format!("{prefix}.tasks"),
            results: format!("{prefix}.results"),
            capture: format!("{prefix}.results.capture"),
            dead: format!("{prefix}.dead"),
        }
    }
}

/// Runs the benchmark.
pub fn run_broker_bench(
    options: &BrokerBenchOptions,
) -> Result<BrokerBenchReport, BrokerBenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| BrokerBenchError::Setup(format!("starting tokio: {e}")))?;
    let names = Names::new();
    let connection = runtime
        .block_on(Connection::connect(
            &options.url,
            ConnectionProperties::default(),
        ))
        .map_err(amqp("connecting"))?;
    let channel = runtime
        .block_on(setup(&connection, &names))
        .map_err(amqp("declaring the benchmark's queues"))?;
    let bodies = task_bodies(options.tasks);
    let mut raw = Vec::new();
    let mut piped = Vec::new();
    let result = (|| {
        for round in 0..options.rounds {
            runtime.block_on(fill(&channel, &names, &bodies))?;
            let rate = runtime.block_on(raw_loop(&connection, &channel, &names, options))?;
            tracing::info!(round, rate, "raw lapin loop");
            raw.push(rate);
            runtime.block_on(fill(&channel, &names, &bodies))?;
            let rate = pipeline_run(&runtime, &channel, &names, options)?;
            tracing::info!(round, rate, "pipeline");
            piped.push(rate);
        }
        Ok::<(), BrokerBenchError>(())
    })();
    runtime.block_on(async {
        for queue in [&names.tasks, &names.capture] {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
        for exchange in [&names.results, &names.dead] {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), Default::default())
                .await;
        }
        let _ = connection.close(200, "bench done".into()).await;
    });
    result?;
    let raw_median = median(&raw);
    let pipeline_median = median(&piped);
    Ok(BrokerBenchReport {
        broker: "amqp".into(),
        tasks: options.tasks,
        workers: options.workers,
        prefetch: options.prefetch,
        store: format!("{:?}", options.store).to_lowercase(),
        raw_tasks_per_sec: raw,
        pipeline_tasks_per_sec: piped,
        raw_median,
        pipeline_median,
        ratio: if raw_median > 0.0 {
            pipeline_median / raw_median
        } else {
            0.0
        },
    })
}

/// The task messages both benchmarks use: `tasks` no-op tasks over four
/// tenants.
pub(crate) fn task_bodies(tasks: u64) -> Vec<Vec<u8>> {
    (0..tasks)
        .map(|i| {
            format!(
                r#"{{"id":"bench-{i}","kind":"noop","tenant":"t{}","resources":{{"cpu_milli":10}}}}"#,
                i % 4
            )
            .into_bytes()
        })
        .collect()
}

/// The median of `values` (0 for none).
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

async fn setup(connection: &Connection, names: &Names) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    for exchange in [&names.results, &names.dead] {
        channel
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
    }
    for queue in [&names.tasks, &names.capture] {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_purge(queue.as_str().into(), QueuePurgeOptions::default())
            .await?;
    }
    channel
        .queue_bind(
            names.capture.as_str().into(),
            names.results.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(channel)
}

/// Fills the task queue with persistent messages and empties the capture
/// queue.
async fn fill(
    channel: &Channel,
    names: &Names,
    bodies: &[Vec<u8>],
) -> Result<(), BrokerBenchError> {
    channel
        .queue_purge(names.capture.as_str().into(), QueuePurgeOptions::default())
        .await
        .map_err(amqp("purging the capture queue"))?;
    for chunk in bodies.chunks(4096) {
        let mut confirms = Vec::with_capacity(chunk.len());
        for body in chunk {
            confirms.push(
                channel
                    .basic_publish(
                        "".into(),
                        names.tasks.as_str().into(),
                        BasicPublishOptions::default(),
                        body,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .map_err(amqp("filling the task queue"))?,
            );
        }
        for confirm in confirms {
            confirm.await.map_err(amqp("filling the task queue"))?;
        }
    }
    Ok(())
}

/// Messages ready in `queue`.
async fn ready(channel: &Channel, queue: &str) -> Result<u64, BrokerBenchError> {
    let q = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(amqp("counting results"))?;
    Ok(u64::from(q.message_count()))
}

/// Waits until the capture queue holds `tasks` results.
async fn wait_for_results(
    channel: &Channel,
    names: &Names,
    tasks: u64,
    side: &'static str,
) -> Result<(), BrokerBenchError> {
    let mut last = (0, Instant::now());
    loop {
        let done = ready(channel, &names.capture).await?;
        if done >= tasks {
            return Ok(());
        }
        if done != last.0 {
            last = (done, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(30) {
            return Err(BrokerBenchError::Stalled { side, done, tasks });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A result document like the pipeline's, for the raw loop to publish.
fn raw_result(body: &[u8]) -> Vec<u8> {
    let id = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["id"].as_str().map(String::from))
        .unwrap_or_default();
    let completion = Completion {
        task: Task::new(id.as_str(), "noop", ResourceRequest::cpu(10, 0)),
        executor: Name::from("local"),
        shard: 0,
        lease: Lease(0),
        outcome: Outcome::Succeeded,
        started_at_us: 1,
        finished_at_us: 2,
        exit_code: None,
        output_bytes: 0,
        is_final: true,
        result: None,
    };
    serde_json::to_vec(&StoredTask::from_completion(&completion).record).unwrap_or_default()
}

/// Consumes every task, publishing one result per task with confirms and
/// acknowledging after the confirms, in batches of what has arrived.
async fn raw_loop(
    connection: &Connection,
    control: &Channel,
    names: &Names,
    options: &BrokerBenchOptions,
) -> Result<f64, BrokerBenchError> {
    let started = Instant::now();
    let consuming = connection
        .create_channel()
        .await
        .map_err(amqp("opening a channel"))?;
    consuming
        .basic_qos(options.prefetch, BasicQosOptions::default())
        .await
        .map_err(amqp("setting the prefetch"))?;
    let publishing = connection
        .create_channel()
        .await
        .map_err(amqp("opening a channel"))?;
    publishing
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(amqp("enabling confirms"))?;
    let mut consumer = consuming
        .basic_consume(
            names.tasks.as_str().into(),
            "raw-bench".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(amqp("consuming"))?;
    let mut consumed = 0;
    while consumed < options.tasks {
        let Some(first) = consumer.next().await else {
            break;
        };
        let mut batch = vec![first.map_err(amqp("consuming"))?];
        while batch.len() < usize::from(options.prefetch) {
            match future::poll_once(consumer.next()).await {
                Some(Some(delivery)) => batch.push(delivery.map_err(amqp("consuming"))?),
                _ => break,
            }
        }
        let mut confirms = Vec::with_capacity(batch.len());
        for delivery in &batch {
            let result = raw_result(&delivery.data);
            confirms.push(
                publishing
                    .basic_publish(
                        names.results.as_str().into(),
                        "t0.noop".into(),
                        BasicPublishOptions::default(),
                        &result,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await
                    .map_err(amqp("publishing a result"))?,
            );
        }
        for confirm in confirms {
            confirm.await.map_err(amqp("awaiting a confirm"))?;
        }
        let last = batch.last().map_or(0, |d| d.delivery_tag);
        consuming
            .basic_ack(last, BasicAckOptions { multiple: true })
            .await
            .map_err(amqp("acknowledging"))?;
        consumed += batch.len() as u64;
    }
    wait_for_results(control, names, options.tasks, "raw").await?;
    let rate = options.tasks as f64 / started.elapsed().as_secs_f64();
    let _ = consuming.close(200, "done".into()).await;
    let _ = publishing.close(200, "done".into()).await;
    Ok(rate)
}

fn pipeline_run(
    runtime: &tokio::runtime::Runtime,
    control: &Channel,
    names: &Names,
    options: &BrokerBenchOptions,
) -> Result<f64, BrokerBenchError> {
    let data_dir: PathBuf =
        std::env::temp_dir().join(format!("tidewater-broker-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut config = Config {
        workers: options.workers,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = options.store;
    config.store.path = data_dir.join("store.redb");
    let mut rabbitmq = RabbitMqConfig::new(options.url.clone());
    rabbitmq
        .queues
        .push(tidewater_connectors::rabbitmq::QueueConfig {
            name: names.tasks.clone(),
            durable: true,
            consume: true,
        });
    rabbitmq.results_exchange = names.results.clone();
    rabbitmq.dead_letter_exchange = names.dead.clone();
    rabbitmq.prefetch = options.prefetch;
    config.rabbitmq = Some(rabbitmq);
    let started = Instant::now();
    let pipeline = Pipeline::builder(config).start()?;
    let waited = runtime.block_on(wait_for_results(control, names, options.tasks, "pipeline"));
    let elapsed = started.elapsed();
    let store: Arc<dyn TaskStore> = pipeline.store();
    let summary = pipeline.shutdown()?;
    drop(store);
    let _ = std::fs::remove_dir_all(&data_dir);
    waited?;
    if summary.succeeded < options.tasks {
        return Err(BrokerBenchError::Setup(format!(
            "the pipeline recorded {} successes of {}",
            summary.succeeded, options.tasks
        )));
    }
    Ok(options.tasks as f64 / elapsed.as_secs_f64())
}
