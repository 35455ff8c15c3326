//! `tidewater bench --broker kafka`: tasks per second end to end through
//! Kafka, against a raw rdkafka loop doing the same broker work, measured in
//! the same run.
//!
//! Each run gets fresh topics (tasks and results, `PARTITIONS` partitions
//! each) and a fresh consumer group; the tasks topic is pre-filled with
//! `tasks` task messages (not timed). The clock starts when the consumer
//! group assigns the partitions (a group join's length depends on the
//! broker, not on the consumer: the test broker takes half the session
//! timeout) and stops when a reader of the results topic has counted the
//! last result:
//!
//! ```text
//!  raw:      poll a batch ─► produce one result each (idempotent, acks=all)
//!            ─► await the acks ─► commit the batch's offsets
//!  pipeline: poll ─► decode/validate ─► coordinate ─► execute (noop)
//!            ─► record in the store ─► produce the result (idempotent, acks=all)
//!            ─► await the acks ─► commit past the recorded outcomes
//! ```
//!
//! The ratio pipeline / raw says how much of the broker's own rate the
//! pipeline keeps. Rounds alternate raw and pipeline runs so that a noisy
//! machine affects both alike; the medians are reported.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, ClientContext, Offset, TopicPartitionList};

use tidewater_connectors::kafka::KafkaConfig;
use tidewater_connectors::store::{StoredTask, TaskStore};
use tidewater_operators::model::{Completion, Lease, Name, Outcome, ResourceRequest, Task};

use crate::broker_bench::{
    median, task_bodies, BrokerBenchError, BrokerBenchOptions, BrokerBenchReport,
};
use tidewater::config::Config;
use tidewater::Pipeline;

/// Partitions of the benchmark's topics.
const PARTITIONS: i32 = 3;
/// Group session settings for both sides (the test broker's joins take
/// half the session timeout; both sides start the clock after the join).
const SESSION_TIMEOUT_MS: u64 = 2000;
const HEARTBEAT_INTERVAL_MS: u64 = 666;
/// A run that makes no progress this long has stalled.
const STALL: Duration = Duration::from_secs(30);

fn kafka(operation: &'static str) -> impl FnOnce(rdkafka::error::KafkaError) -> BrokerBenchError {
    move |source| BrokerBenchError::Kafka { operation, source }
}

/// The topics and group of one run.
struct Run {
    tasks: String,
    results: String,
    dead: String,
    group: String,
}

impl Run {
    fn new(side: &str, round: usize) -> Run {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let prefix = format!(
            "tidewater.bench.{}.{nanos}.{side}{round}",
            std::process::id()
        );
        Run {
            tasks: format!("{prefix}.tasks"),
            results: format!("{prefix}.results"),
            dead: format!("{prefix}.dead"),
            group: format!("{prefix}.group"),
        }
    }
}

/// Runs the Kafka benchmark; `options.url` holds the bootstrap servers.
pub fn run_kafka_bench(
    options: &BrokerBenchOptions,
) -> Result<BrokerBenchReport, BrokerBenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| BrokerBenchError::Setup(format!("starting tokio: {e}")))?;
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &options.url)
        .create()
        .map_err(kafka("creating the admin client"))?;
    let producer = producer(&options.url)?;
    let bodies = task_bodies(options.tasks);
    let mut raw = Vec::new();
    let mut piped = Vec::new();
    let mut created = Vec::new();
    let result = (|| {
        for round in 0..options.rounds {
            let run = Run::new("raw", round);
            created.extend([run.tasks.clone(), run.results.clone(), run.dead.clone()]);
            runtime.block_on(setup(&admin, &producer, &run, &bodies))?;
            let rate = raw_loop(&runtime, &producer, &run, options)?;
            tracing::info!(round, rate, "raw rdkafka loop");
            raw.push(rate);
            let run = Run::new("pipeline", round);
            created.extend([run.tasks.clone(), run.results.clone(), run.dead.clone()]);
            runtime.block_on(setup(&admin, &producer, &run, &bodies))?;
            let rate = pipeline_run(&run, options)?;
            tracing::info!(round, rate, "pipeline");
            piped.push(rate);
        }
        Ok::<(), BrokerBenchError>(())
    })();
    runtime.block_on(async {
        let names: Vec<&str> = created.iter().map(String::as_str).collect();
        let _ = admin.delete_topics(&names, &AdminOptions::new()).await;
    });
    result?;
    let raw_median = median(&raw);
    let pipeline_median = median(&piped);
    Ok(BrokerBenchReport {
        broker: "kafka".into(),
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

/// The producer both the filling and the raw loop use: idempotent, acks=all,
/// as the connector's.
fn producer(brokers: &str) -> Result<FutureProducer, BrokerBenchError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .create()
        .map_err(kafka("creating the producer"))
}

/// Creates the run's topics and fills the tasks topic.
async fn setup(
    admin: &AdminClient<DefaultClientContext>,
    producer: &FutureProducer,
    run: &Run,
    bodies: &[Vec<u8>],
) -> Result<(), BrokerBenchError> {
    let topics: Vec<NewTopic<'_>> = [&run.tasks, &run.results, &run.dead]
        .iter()
        .map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1)))
        .collect();
    for r in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .map_err(kafka("creating topics"))?
    {
        r.map_err(|(name, code)| {
            BrokerBenchError::Setup(format!("creating topic {name}: {code}"))
        })?;
    }
    let keys: Vec<String> = (0..bodies.len()).map(|i| format!("k{i}")).collect();
    let records = bodies
        .iter()
        .zip(&keys)
        .map(|(b, k)| (run.tasks.as_str(), k.as_bytes(), b.as_slice(), None));
    produce(producer, records).await
}

/// Produces records `(topic, key, value, task id header)` and awaits every
/// acknowledgement.
async fn produce<'a>(
    producer: &FutureProducer,
    records: impl Iterator<Item = (&'a str, &'a [u8], &'a [u8], Option<&'a str>)>,
) -> Result<(), BrokerBenchError> {
    let mut waiting = VecDeque::new();
    for (topic, key, body, id) in records {
        let mut record = FutureRecord::<[u8], [u8]>::to(topic).key(key).payload(body);
        if let Some(id) = id {
            record = record.headers(OwnedHeaders::new().insert(Header {
                key: "x-tidewater-task-id",
                value: Some(id),
            }));
        }
        loop {
            match producer.send_result(record) {
                Ok(delivery) => {
                    waiting.push_back(delivery);
                    break;
                }
                Err((_, back)) => {
                    record = back;
                    match waiting.pop_front() {
                        Some(d) => acked(d.await)?,
                        None => tokio::time::sleep(Duration::from_millis(5)).await,
                    }
                }
            }
        }
    }
    for d in waiting {
        acked(d.await)?;
    }
    Ok(())
}

fn acked<C>(
    delivery: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, C>,
) -> Result<(), BrokerBenchError> {
    match delivery {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((source, _))) => Err(BrokerBenchError::Kafka {
            operation: "producing",
            source,
        }),
        Err(_) => Err(BrokerBenchError::Setup("a delivery was cancelled".into())),
    }
}

/// Counts the records of a topic in a background thread.
struct Counter {
    count: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Counter {
    fn start(brokers: &str, topic: &str) -> Result<Counter, BrokerBenchError> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("{topic}.counter"))
            .set("enable.auto.commit", "false")
            .create()
            .map_err(kafka("creating the results reader"))?;
        let mut list = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .map_err(kafka("assigning the results topic"))?;
        }
        consumer
            .assign(&list)
            .map_err(kafka("assigning the results topic"))?;
        let count = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (Arc::clone(&count), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(Ok(_)) = consumer.poll(Duration::from_millis(50)) {
                    sink.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        Ok(Counter {
            count,
            stop,
            thread: Some(thread),
        })
    }

    /// Waits until `tasks` results were counted.
    fn wait(&self, tasks: u64, side: &'static str) -> Result<(), BrokerBenchError> {
        let mut last = (0, Instant::now());
        loop {
            let done = self.count.load(Ordering::Relaxed);
            if done >= tasks {
                return Ok(());
            }
            if done != last.0 {
                last = (done, Instant::now());
            } else if last.1.elapsed() > STALL {
                return Err(BrokerBenchError::Stalled { side, done, tasks });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Notes when the group assigned the partitions.
struct Assigned(Mutex<Option<Instant>>);

impl ClientContext for Assigned {}

impl ConsumerContext for Assigned {
    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Rebalance::Assign(_), Ok(mut at)) = (rebalance, self.0.lock()) {
            at.get_or_insert_with(Instant::now);
        }
    }
}

/// A result document like the pipeline's, with its key and task id.
fn raw_result(body: &[u8]) -> (String, Vec<u8>, String) {
    let value = serde_json::from_slice::<serde_json::Value>(body).unwrap_or_default();
    let id = value["id"].as_str().unwrap_or_default().to_string();
    let mut task = Task::new(id.as_str(), "noop", ResourceRequest::cpu(10, 0));
    task.tenant = Name::from(value["tenant"].as_str().unwrap_or_default());
    let completion = Completion {
        task,
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
    let record = StoredTask::from_completion(&completion).record;
    let key = format!("{}.{}", record.tenant, record.kind);
    (key, serde_json::to_vec(&record).unwrap_or_default(), id)
}

/// Consumes every task in a consumer group, producing one result per task
/// and committing each batch's offsets once its results are acknowledged.
fn raw_loop(
    runtime: &tokio::runtime::Runtime,
    producer: &FutureProducer,
    run: &Run,
    options: &BrokerBenchOptions,
) -> Result<f64, BrokerBenchError> {
    let counter = Counter::start(&options.url, &run.results)?;
    let consumer: BaseConsumer<Assigned> = ClientConfig::new()
        .set("bootstrap.servers", &options.url)
        .set("group.id", &run.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", HEARTBEAT_INTERVAL_MS.to_string())
        .create_with_context(Assigned(Mutex::new(None)))
        .map_err(kafka("creating the consumer"))?;
    consumer
        .subscribe(&[&run.tasks])
        .map_err(kafka("subscribing"))?;
    let batch_size = usize::from(options.prefetch).max(1);
    let mut consumed = 0u64;
    let mut last_progress = Instant::now();
    while consumed < options.tasks {
        let mut batch = Vec::with_capacity(batch_size);
        let mut offsets = TopicPartitionList::new();
        let wait = Duration::from_millis(100);
        while batch.len() < batch_size {
            let timeout = if batch.is_empty() {
                wait
            } else {
                Duration::ZERO
            };
            match consumer.poll(timeout) {
                Some(Ok(m)) => {
                    let (key, body, id) = raw_result(m.payload().unwrap_or_default());
                    offsets
                        .add_partition_offset(
                            m.topic(),
                            m.partition(),
                            Offset::Offset(m.offset() + 1),
                        )
                        .map_err(kafka("noting an offset"))?;
                    batch.push((key, body, id));
                }
                Some(Err(e)) => {
                    return Err(BrokerBenchError::Kafka {
                        operation: "consuming",
                        source: e,
                    })
                }
                None => break,
            }
        }
        if batch.is_empty() {
            if last_progress.elapsed() > STALL {
                return Err(BrokerBenchError::Stalled {
                    side: "raw",
                    done: consumed,
                    tasks: options.tasks,
                });
            }
            continue;
        }
        last_progress = Instant::now();
        runtime.block_on(produce(
            producer,
            batch.iter().map(|(key, body, id)| {
                (
                    run.results.as_str(),
                    key.as_bytes(),
                    body.as_slice(),
                    Some(id.as_str()),
                )
            }),
        ))?;
        consumer
            .commit(&offsets, CommitMode::Async)
            .map_err(kafka("committing"))?;
        consumed += batch.len() as u64;
    }
    counter.wait(options.tasks, "raw")?;
    let started = consumer
        .context()
        .0
        .lock()
        .ok()
        .and_then(|at| *at)
        .ok_or_else(|| BrokerBenchError::Setup("the raw consumer was never assigned".into()))?;
    Ok(options.tasks as f64 / started.elapsed().as_secs_f64())
}

fn pipeline_run(run: &Run, options: &BrokerBenchOptions) -> Result<f64, BrokerBenchError> {
    let counter = Counter::start(&options.url, &run.results)?;
    let data_dir: PathBuf =
        std::env::temp_dir().join(format!("tidewater-kafka-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data_dir);
    let mut config = Config {
        workers: options.workers,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = options.store;
    config.store.path = data_dir.join("store.redb");
    let mut kafka = KafkaConfig::new(options.url.clone()).consume(run.tasks.clone());
    kafka.group_id = run.group.clone();
    kafka.results_topic = run.results.clone();
    kafka.dead_letter_topic = run.dead.clone();
    kafka.max_in_flight = usize::from(options.prefetch).max(1);
    kafka.session_timeout_ms = SESSION_TIMEOUT_MS;
    kafka.heartbeat_interval_ms = HEARTBEAT_INTERVAL_MS;
    kafka.create_topics = false;
    config.kafka = Some(kafka);
    let pipeline = Pipeline::builder(config).start()?;
    let assigned = match (pipeline.brokers().kafka(), pipeline.runtime()) {
        (Some(connector), Some(runtime)) => runtime.block_on(connector.wait_assigned(STALL)),
        _ => false,
    };
    let started = Instant::now();
    let waited = if assigned {
        counter.wait(options.tasks, "pipeline")
    } else {
        Err(BrokerBenchError::Setup(
            "the pipeline's consumer was never assigned".into(),
        ))
    };
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
