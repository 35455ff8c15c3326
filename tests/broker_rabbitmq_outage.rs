//! A RabbitMQ outage during a run: the broker's app is stopped
//! (`rabbitmqctl stop_app`) and started again while tasks flow. The
//! connector reconnects with backoff, unacknowledged deliveries come back,
//! and every task still ends with exactly one recorded outcome and a result
//! on the results exchange. In its own test binary: it takes the broker
//! down for everyone.

mod broker_common;
mod common;

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker_common::{service, task_json, unique, Amqp};
use lapin::BasicProperties;
use tidewater::config::{Config, StoreKind};
use tidewater::Pipeline;
use tidewater_connectors::rabbitmq::RabbitMqConfig;
use tidewater_connectors::store::{MemoryStore, TaskStore};

const TASKS: usize = 20_000;

fn rabbitmqctl(args: &[&str]) {
    let program = std::env::var("TIDEWATER_RABBITMQCTL").unwrap_or_else(|_| "rabbitmqctl".into());
    let status = Command::new(&program)
        .args(args)
        .status()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(status.success(), "{program} {args:?}: {status}");
}

/// Starts the broker's app again even if the test fails half-way.
struct RestartGuard;

impl Drop for RestartGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            rabbitmqctl(&["start_app"]);
        }
    }
}

#[test]
fn every_task_is_recorded_once_across_a_broker_restart() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        ))
        .with_test_writer()
        .try_init();
    let prefix = unique("outage");
    let queue = format!("{prefix}.tasks");
    let results = format!("{prefix}.results");
    let capture = format!("{results}.capture");
    {
        let mut amqp = Amqp::connect(&url);
        amqp.topic(&results);
        amqp.queue(&queue, &[]);
        amqp.queue(&capture, &[&results]);
        let bodies: Vec<Vec<u8>> = (0..TASKS)
            .map(|i| task_json(&format!("o-{i}"), "noop", "acme"))
            .collect();
        amqp.publish_to_queue(
            &queue,
            bodies
                .iter()
                .map(|b| (b.as_slice(), BasicProperties::default())),
        );
        // Keep the queues for after the outage.
        amqp.keep_all();
    }

    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    let mut rabbitmq = RabbitMqConfig::new(&url).consume(&queue);
    rabbitmq.results_exchange = results.clone();
    rabbitmq.dead_letter_exchange = format!("{prefix}.dead");
    rabbitmq.prefetch = 500;
    rabbitmq.reconnect_initial_ms = 200;
    rabbitmq.reconnect_max_ms = 1000;
    config.rabbitmq = Some(rabbitmq);
    let store = Arc::new(MemoryStore::new());
    let pipeline = Pipeline::builder(config)
        .store(store.clone())
        .start()
        .expect("start");
    let stats = pipeline.stats();

    // Take the broker down a quarter of the way through.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.finished() < (TASKS / 4) as u64 {
        assert!(Instant::now() < deadline, "no progress before the outage");
        std::thread::sleep(Duration::from_millis(5));
    }
    let guard = RestartGuard;
    rabbitmqctl(&["stop_app"]);
    let during = stats.finished();
    eprintln!("broker stopped at {during} outcomes");
    std::thread::sleep(Duration::from_secs(2));
    rabbitmqctl(&["start_app"]);
    drop(guard);

    // Every task gets its recorded outcome (redeliveries included).
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let counts = store.counts().expect("counts");
        if counts.succeeded == TASKS as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "only {counts:?} of {TASKS}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let amqp = Amqp::connect(&url);
    let results = amqp.drain(&capture, TASKS, Duration::from_secs(60));
    let summary = pipeline.shutdown().expect("shutdown");
    eprintln!("{summary:?}");
    let mut by_id = std::collections::HashMap::new();
    for m in &results {
        *by_id
            .entry(m.message_id.clone().unwrap_or_default())
            .or_insert(0usize) += 1;
    }
    assert_eq!(
        by_id.len(),
        TASKS,
        "every task's result reached the results exchange"
    );
    let repeated: usize = by_id.values().map(|n| n - 1).sum();
    eprintln!("{repeated} results repeated after the outage");
    assert!(
        repeated <= 500,
        "{repeated} repeats: more than one prefetch window"
    );
    for i in (0..TASKS).step_by(37) {
        assert!(store.get(&format!("o-{i}")).expect("get").is_some());
    }
    assert_eq!(amqp.ready(&queue), 0, "every task was acknowledged");
    let mut cleanup = amqp;
    cleanup.delete_later(&queue);
    cleanup.delete_later(&capture);
    let _ = results;
}
