//! The RabbitMQ connector against a real broker (`TIDEWATER_AMQP_URL`, set
//! by `tests/services/up`): tasks round-trip from a queue to the results
//! exchange, every class of bad input is dead-lettered with its reason in
//! the headers, a different message reusing a task's id is dead-lettered
//! as a duplicate, requests with `reply_to` get their result there, alert
//! events reach the alerts exchange, and a saturated pipeline
//! (`limits.max_queued`) pauses consumption.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::broker_common::{
    alerts, bad_input, duplicates, reply_task, service, task_json, unique, Amqp,
};
use lapin::BasicProperties;
use tidewater::config::{Config, StoreKind};
use tidewater::{Pipeline, RunningPipeline};
use tidewater_connectors::rabbitmq::RabbitMqConfig;
use tidewater_connectors::store::{MemoryStore, TaskState, TaskStore};

/// A pipeline consuming `queue`, publishing to `{prefix}.results` and
/// `{prefix}.dead`, and a client with capture queues bound to both.
struct Setup {
    amqp: Amqp,
    pipeline: RunningPipeline,
    store: Arc<MemoryStore>,
    queue: String,
    results: String,
    dead: String,
}

fn setup(url: &str, name: &str, max_payload_bytes: usize) -> Setup {
    setup_with(url, name, max_payload_bytes, |_| {})
}

fn setup_with(
    url: &str,
    name: &str,
    max_payload_bytes: usize,
    tune: impl FnOnce(&mut Config),
) -> Setup {
    let prefix = unique(name);
    let queue = format!("{prefix}.tasks");
    let results = format!("{prefix}.results");
    let dead = format!("{prefix}.dead");
    let mut amqp = Amqp::connect(url);
    amqp.topic(&results);
    amqp.topic(&dead);
    amqp.queue(&format!("{results}.capture"), &[&results]);
    amqp.queue(&format!("{dead}.capture"), &[&dead]);
    amqp.delete_later(&queue);

    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    config.limits.max_payload_bytes = max_payload_bytes;
    let mut rabbitmq = RabbitMqConfig::new(url).consume(&queue);
    rabbitmq.results_exchange = results.clone();
    rabbitmq.dead_letter_exchange = dead.clone();
    rabbitmq.prefetch = 64;
    config.rabbitmq = Some(rabbitmq);
    tune(&mut config);
    let store = Arc::new(MemoryStore::new());
    let pipeline = Pipeline::builder(config)
        .store(store.clone())
        .start()
        .expect("start");
    let connector = pipeline.brokers().rabbitmq().expect("configured");
    let runtime = pipeline.runtime().expect("runtime");
    assert!(
        runtime.block_on(connector.wait_connected(Duration::from_secs(20))),
        "the connector did not connect"
    );
    Setup {
        amqp,
        pipeline,
        store,
        queue,
        results: format!("{results}.capture"),
        dead: format!("{dead}.capture"),
    }
}

#[test]
fn tasks_round_trip_from_a_queue_to_the_results_exchange() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let s = setup(&url, "roundtrip", 1 << 20);
    const TASKS: usize = 500;
    let bodies: Vec<Vec<u8>> = (0..TASKS)
        .map(|i| {
            task_json(
                &format!("rt-{i}"),
                "noop",
                if i % 2 == 0 { "acme" } else { "globex" },
            )
        })
        .collect();
    s.amqp.publish_to_queue(
        &s.queue,
        bodies
            .iter()
            .map(|b| (b.as_slice(), BasicProperties::default())),
    );
    let results = s.amqp.drain(&s.results, TASKS, Duration::from_secs(60));
    let mut seen = BTreeMap::new();
    for m in &results {
        let record = m.json();
        let id = record["id"].as_str().expect("id").to_string();
        assert_eq!(record["state"], "succeeded", "{record}");
        let tenant = record["tenant"].as_str().expect("tenant");
        assert_eq!(m.routing_key, format!("{tenant}.noop"));
        assert_eq!(m.message_id.as_deref(), Some(id.as_str()));
        assert_eq!(
            m.headers.get("x-tidewater-state").map(String::as_str),
            Some("succeeded")
        );
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), TASKS, "every task has a result");
    assert!(seen.values().all(|&n| n == 1), "one result per task");
    for i in 0..TASKS {
        let record = s
            .store
            .get(&format!("rt-{i}"))
            .expect("get")
            .expect("recorded");
        assert_eq!(record.state, TaskState::Succeeded);
    }
    let summary = s.pipeline.shutdown().expect("shutdown");
    assert_eq!(summary.finished, TASKS as u64);
    // Everything was acknowledged: nothing comes back after the connector
    // closed its connection.
    assert_eq!(
        s.amqp.ready(&s.queue),
        0,
        "unacknowledged tasks were requeued"
    );
}

#[test]
fn every_class_of_bad_input_is_dead_lettered_with_its_reason() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let s = setup(&url, "dead", bad_input::MAX_PAYLOAD_BYTES);
    let cases = bad_input::cases();
    let mut bodies: Vec<(Vec<u8>, BasicProperties)> = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            (
                case.body.clone(),
                BasicProperties::default().with_correlation_id(bad_input::tag(i).into()),
            )
        })
        .collect();
    // A good task among the bad still runs.
    bodies.push((
        task_json("good-after-bad", "noop", "acme"),
        BasicProperties::default(),
    ));
    s.amqp.publish_to_queue(
        &s.queue,
        bodies.iter().map(|(b, p)| (b.as_slice(), p.clone())),
    );

    let dead = s.amqp.drain(&s.dead, cases.len(), Duration::from_secs(30));
    assert_eq!(
        dead.len(),
        cases.len(),
        "every bad message is dead-lettered once"
    );
    for m in &dead {
        let case = bad_input::index_of(m.correlation_id.as_deref());
        let code = m.headers.get("x-tidewater-code").map(String::as_str);
        let reason = m.headers.get("x-tidewater-reason").map(String::as_str);
        bad_input::assert_dead_letter(&cases, case, code, reason, &m.body);
        assert_eq!(m.routing_key, cases[case].code);
        assert_eq!(
            m.headers.get("x-tidewater-source").map(String::as_str),
            Some(s.queue.as_str())
        );
    }
    let results = s.amqp.drain(&s.results, 1, Duration::from_secs(30));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].json()["id"], "good-after-bad");
    assert_eq!(
        s.store.rejections(100).expect("rejections").len(),
        cases.len()
    );
    for id in bad_input::NEVER_RUNNABLE {
        let record = s.store.get(id).expect("get").expect("recorded");
        assert_eq!(record.state, TaskState::Rejected, "{id}: {record:?}");
        assert!(record.reason.is_some(), "{id}: {record:?}");
    }
    s.pipeline.shutdown().expect("shutdown");
    assert_eq!(
        s.amqp.ready(&s.queue),
        0,
        "dead-lettered messages were acknowledged"
    );
}

#[test]
fn a_different_message_reusing_a_task_id_is_dead_lettered_as_a_duplicate() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let s = setup(&url, "duplicate", 1 << 20);
    let plain = |b: &[u8]| (b.to_vec(), BasicProperties::default());
    let original = duplicates::original();
    s.amqp.publish_to_queue(
        &s.queue,
        [(original.as_slice(), BasicProperties::default())],
    );
    let first = s.amqp.drain(&s.results, 1, Duration::from_secs(30));
    assert_eq!(first.len(), 1, "the first task runs");
    assert_eq!(first[0].json()["id"], duplicates::ID);

    let second = [plain(&duplicates::duplicate()), plain(&duplicates::fresh())];
    s.amqp.publish_to_queue(
        &s.queue,
        second.iter().map(|(b, p)| (b.as_slice(), p.clone())),
    );
    let dead = s.amqp.drain(&s.dead, 1, Duration::from_secs(30));
    assert_eq!(dead.len(), 1, "the duplicate is dead-lettered");
    duplicates::assert_dead_letter(
        dead[0].headers.get("x-tidewater-code").map(String::as_str),
        dead[0]
            .headers
            .get("x-tidewater-reason")
            .map(String::as_str),
        &dead[0].body,
    );
    assert_eq!(dead[0].routing_key, "duplicate");
    let results = s.amqp.drain(&s.results, 1, Duration::from_secs(30));
    assert_eq!(results.len(), 1, "the fresh task runs");
    assert_eq!(results[0].json()["id"], duplicates::FRESH);
    duplicates::assert_store(s.store.as_ref());
    s.pipeline.shutdown().expect("shutdown");
    assert_eq!(
        s.amqp.ready(&s.results),
        0,
        "the duplicate published no second result"
    );
    assert_eq!(s.amqp.ready(&s.queue), 0, "the duplicate was acknowledged");
}

#[test]
fn requests_with_reply_to_get_their_result_there() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let s = setup(&url, "reply", 1 << 20);
    let reply_queue = s.amqp.reply_queue();
    let bodies: Vec<(Vec<u8>, BasicProperties)> = (0..20)
        .map(|i| {
            (
                reply_task(i),
                BasicProperties::default()
                    .with_reply_to(reply_queue.as_str().into())
                    .with_correlation_id(format!("req-{i}").into()),
            )
        })
        .collect();
    s.amqp.publish_to_queue(
        &s.queue,
        bodies.iter().map(|(b, p)| (b.as_slice(), p.clone())),
    );
    let replies = s.amqp.drain(&reply_queue, 20, Duration::from_secs(30));
    assert_eq!(replies.len(), 20);
    for m in &replies {
        let record = m.json();
        let id = record["id"].as_str().expect("id");
        let n = id.strip_prefix("rpc-").expect("our id");
        assert_eq!(
            m.correlation_id.as_deref(),
            Some(format!("req-{n}").as_str())
        );
        let expected = if n == "7" { "timed_out" } else { "succeeded" };
        assert_eq!(record["state"], expected, "{record}");
    }
    // Results go to the results exchange as well.
    assert_eq!(
        s.amqp.drain(&s.results, 20, Duration::from_secs(30)).len(),
        20
    );
    s.pipeline.shutdown().expect("shutdown");
}

#[test]
fn alert_events_are_published_to_the_alerts_exchange() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    let prefix = unique("alerts");
    let queue = format!("{prefix}.tasks");
    let exchange = format!("{prefix}.alerts");
    let mut amqp = Amqp::connect(&url);
    amqp.topic(&exchange);
    amqp.queue(&format!("{exchange}.capture"), &[&exchange]);
    amqp.delete_later(&queue);

    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    alerts::configure(&mut config);
    let mut rabbitmq = RabbitMqConfig::new(&url).consume(&queue);
    rabbitmq.results_exchange = String::new();
    rabbitmq.alerts_exchange = exchange.clone();
    config.rabbitmq = Some(rabbitmq);
    let pipeline = Pipeline::builder(config)
        .store(Arc::new(MemoryStore::new()))
        .start()
        .expect("start");
    let connector = pipeline.brokers().rabbitmq().expect("configured");
    assert!(
        pipeline
            .runtime()
            .expect("runtime")
            .block_on(connector.wait_connected(Duration::from_secs(20))),
        "the connector did not connect"
    );
    let bodies = alerts::tasks();
    amqp.publish_to_queue(
        &queue,
        bodies
            .iter()
            .map(|b| (b.as_slice(), BasicProperties::default())),
    );
    let events = amqp.take(&format!("{exchange}.capture"), 1, Duration::from_secs(20));
    assert_eq!(events.len(), 1, "one alert event");
    assert_eq!(events[0].routing_key, alerts::FIRING_KEY);
    alerts::assert_acme_fired(&events[0].json());
    // globex stays under the threshold: no second event.
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        amqp.take(
            &format!("{exchange}.capture"),
            1,
            Duration::from_millis(500)
        )
        .is_empty(),
        "only acme's alert fires"
    );
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn a_saturated_pipeline_pauses_consumption_and_then_runs_everything() {
    let Some(url) = service("TIDEWATER_AMQP_URL") else {
        return;
    };
    const MAX_QUEUED: usize = 20;
    const TASKS: usize = 300;
    let s = setup_with(&url, "saturated", 1 << 20, |config| {
        config.limits.max_queued = MAX_QUEUED;
        if let Some(rabbitmq) = config.rabbitmq.as_mut() {
            // Far more than the bound: only the pause keeps it.
            rabbitmq.prefetch = 512;
        }
    });
    let bodies: Vec<Vec<u8>> = (0..TASKS)
        .map(|i| {
            serde_json::json!({
                "id": format!("sat-{i}"), "kind": "sleep", "payload": {"ms": 20},
                "resources": {"cpu_milli": 1000, "memory_mib": 64}
            })
            .to_string()
            .into_bytes()
        })
        .collect();
    s.amqp.publish_to_queue(
        &s.queue,
        bodies
            .iter()
            .map(|b| (b.as_slice(), BasicProperties::default())),
    );
    let ingress = s.pipeline.ingress();
    let mut peak = 0;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while s.pipeline.stats().finished() < TASKS as u64 {
        peak = peak.max(ingress.in_flight());
        assert!(std::time::Instant::now() < deadline, "tasks did not finish");
        std::thread::sleep(Duration::from_millis(1));
    }
    // One delivery may pass between the check and the hand-over.
    assert!(
        peak <= MAX_QUEUED as u64 + 1,
        "{peak} in the pipeline, bound {MAX_QUEUED}"
    );
    assert!(
        peak >= MAX_QUEUED as u64 / 2,
        "the bound was never approached ({peak})"
    );
    let results = s.amqp.drain(&s.results, TASKS, Duration::from_secs(30));
    assert_eq!(results.len(), TASKS, "every task has a result");
    s.pipeline.shutdown().expect("shutdown");
}
