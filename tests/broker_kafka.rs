//! The Kafka connector against a real Kafka-protocol broker
//! (`TIDEWATER_KAFKA_BROKERS`, set by `tests/services/up`): tasks round-trip
//! from a topic to the results topic keyed by tenant and kind, every class of
//! bad input is dead-lettered with its reason in the headers, requests with a
//! reply-to header get their result there, offsets are committed only past
//! recorded outcomes, so a restarted consumer resumes without loss and
//! without repeating finished work, and no more than `max_in_flight`
//! messages are consumed ahead of their outcomes, nor more than the
//! pipeline's `limits.max_queued` taken in (the partitions pause).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::broker_common::kafka::{kafka_config, Kafka, Produced};
use crate::broker_common::{alerts, bad_input, duplicates, reply_task, service, task_json, unique};
use tidewater::config::{Config, StoreKind};
use tidewater::{Pipeline, RunningPipeline};
use tidewater_connectors::kafka::KafkaConfig;
use tidewater_connectors::store::{MemoryStore, TaskState, TaskStore};

/// The topics of one test.
struct Topics {
    tasks: String,
    results: String,
    dead: String,
    group: String,
}

fn topics(kafka: &Kafka, name: &str, partitions: i32) -> Topics {
    let prefix = unique(name);
    let t = Topics {
        tasks: format!("{prefix}.tasks"),
        results: format!("{prefix}.results"),
        dead: format!("{prefix}.dead"),
        group: format!("{prefix}.group"),
    };
    kafka.create_topic(&t.tasks, partitions);
    kafka.create_topic(&t.results, partitions);
    kafka.create_topic(&t.dead, 1);
    t
}

fn connector_config(kafka: &Kafka, t: &Topics) -> KafkaConfig {
    let mut config = kafka_config(&kafka.brokers, &t.group, &[&t.tasks]);
    config.results_topic = t.results.clone();
    config.dead_letter_topic = t.dead.clone();
    config.max_in_flight = 64;
    config
}

/// A pipeline with the Kafka connector and a memory store, once the
/// consumer has its partitions.
fn start(
    kafka_config: KafkaConfig,
    max_payload_bytes: usize,
) -> (RunningPipeline, Arc<MemoryStore>) {
    start_with(kafka_config, max_payload_bytes, |_| {})
}

/// [`start`], with `configure` applied to the pipeline's config first.
fn start_with(
    kafka_config: KafkaConfig,
    max_payload_bytes: usize,
    configure: impl FnOnce(&mut Config),
) -> (RunningPipeline, Arc<MemoryStore>) {
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    config.limits.max_payload_bytes = max_payload_bytes;
    config.kafka = Some(kafka_config);
    configure(&mut config);
    let store = Arc::new(MemoryStore::new());
    let pipeline = Pipeline::builder(config)
        .store(store.clone())
        .start()
        .expect("start");
    let connector = pipeline.brokers().kafka().expect("configured");
    let runtime = pipeline.runtime().expect("runtime");
    assert!(
        runtime.block_on(connector.wait_assigned(Duration::from_secs(30))),
        "the consumer got no partitions"
    );
    (pipeline, store)
}

#[test]
fn tasks_round_trip_from_a_topic_to_the_results_topic() {
    let Some(brokers) = service("TIDEWATER_KAFKA_BROKERS") else {
        return;
    };
    let kafka = Kafka::connect(&brokers);
    let t = topics(&kafka, "roundtrip", 3);
    let (pipeline, store) = start(connector_config(&kafka, &t), 1 << 20);
    const TASKS: usize = 500;
    let bodies: Vec<Vec<u8>> = (0..TASKS)
        .map(|i| {
            task_json(
                &format!("rt-{i}"),
                "noop",
                ["acme", "globex", "initech"][i % 3],
            )
        })
        .collect();
    // Spread over the partitions by key.
    let keys: Vec<String> = (0..TASKS).map(|i| format!("k{i}")).collect();
    kafka.produce(
        &t.tasks,
        bodies
            .iter()
            .zip(&keys)
            .map(|(b, k)| (Some(k.as_bytes()), b.as_slice(), Vec::new())),
    );
    let results = kafka.read(&t.results, TASKS, Duration::from_secs(60));
    let mut seen = BTreeMap::new();
    let mut partition_of_key = BTreeMap::new();
    for r in &results {
        let record = r.json();
        let id = record["id"].as_str().expect("id").to_string();
        assert_eq!(record["state"], "succeeded", "{record}");
        let tenant = record["tenant"].as_str().expect("tenant");
        assert_eq!(r.key_text(), format!("{tenant}.noop"));
        // One key, one partition: a tenant's results of a kind stay in order.
        assert_eq!(
            *partition_of_key.entry(r.key_text()).or_insert(r.partition),
            r.partition
        );
        assert_eq!(r.header("x-tidewater-task-id"), Some(id.as_str()));
        assert_eq!(r.header("x-tidewater-state"), Some("succeeded"));
        *seen.entry(id).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), TASKS, "every task has a result");
    assert!(seen.values().all(|&n| n == 1), "one result per task");
    for i in 0..TASKS {
        let record = store
            .get(&format!("rt-{i}"))
            .expect("get")
            .expect("recorded");
        assert_eq!(record.state, TaskState::Succeeded);
    }
    let summary = pipeline.shutdown().expect("shutdown");
    assert_eq!(summary.finished, TASKS as u64);
    // Every message's offset was committed: the committed offsets of the
    // partitions add up to the tasks consumed.
    let committed: i64 = kafka
        .committed(&t.group, &t.tasks, 3)
        .into_iter()
        .map(Option::unwrap_or_default)
        .sum();
    assert_eq!(committed, TASKS as i64, "every offset committed");
}

#[test]
fn every_class_of_bad_input_is_dead_lettered_with_its_reason() {
    let Some(brokers) = service("TIDEWATER_KAFKA_BROKERS") else {
        return;
    };
    let kafka = Kafka::connect(&brokers);
    let t = topics(&kafka, "dead", 1);
    let (pipeline, store) = start(connector_config(&kafka, &t), bad_input::MAX_PAYLOAD_BYTES);
    let mut cases = bad_input::cases();
    cases.push(bad_input::empty());
    let correlations: Vec<String> = (0..cases.len()).map(bad_input::tag).collect();
    let good = task_json("good-after-bad", "noop", "acme");
    let mut records: Vec<Produced<'_>> = cases
        .iter()
        .zip(&correlations)
        .map(|(case, c)| {
            (
                Some(c.as_bytes()),
                case.body.as_slice(),
                vec![("x-tidewater-correlation-id", c.as_str())],
            )
        })
        .collect();
    // A good task among the bad still runs.
    records.push((None, good.as_slice(), Vec::new()));
    kafka.produce(&t.tasks, records);

    let dead = kafka.read(&t.dead, cases.len(), Duration::from_secs(30));
    assert_eq!(
        dead.len(),
        cases.len(),
        "every bad message is dead-lettered once"
    );
    for m in &dead {
        let case = bad_input::index_of(m.header("x-tidewater-correlation-id"));
        let (code, reason) = (m.header("x-tidewater-code"), m.header("x-tidewater-reason"));
        bad_input::assert_dead_letter(&cases, case, code, reason, &m.body);
        assert_eq!(m.key_text(), bad_input::tag(case), "the key is kept");
        assert_eq!(m.header("x-tidewater-source"), Some(t.tasks.as_str()));
        assert_eq!(
            m.header("x-tidewater-source-offset"),
            Some(format!("0:{case}").as_str()),
            "case {case}: where it came from"
        );
    }
    let results = kafka.read(&t.results, 1, Duration::from_secs(30));
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].json()["id"], "good-after-bad");
    assert_eq!(
        store.rejections(100).expect("rejections").len(),
        cases.len()
    );
    for id in bad_input::NEVER_RUNNABLE {
        let record = store.get(id).expect("get").expect("recorded");
        assert_eq!(record.state, TaskState::Rejected, "{id}: {record:?}");
        assert!(record.reason.is_some(), "{id}: {record:?}");
    }
    pipeline.shutdown().expect("shutdown");
    assert_eq!(
        kafka.committed(&t.group, &t.tasks, 1),
        vec![Some(cases.len() as i64 + 1)],
        "dead-lettered messages count as recorded"
    );
}

#[test]
fn a_different_message_reusing_a_task_id_is_dead_lettered_as_a_duplicate() {
    let Some(brokers) = service("TIDEWATER_KAFKA_BROKERS") else {
        return;
    };
    let kafka = Kafka::connect(&brokers);
    let t = topics(&kafka, "duplicate", 1);
    let (pipeline, store) = start(connector_config(&kafka, &t), 1 << 20);
    let original = duplicates::original();
    kafka.produce(&t.tasks, [(None, original.as_slice(), Vec::new())]);
    let first = kafka.read(&t.results, 1, Duration::from_secs(30));
    assert_eq!(first.len(), 1, "the first task runs");
    assert_eq!(first[0].json()["id"], duplicates::ID);

    let (duplicate, fresh) = (duplicates::duplicate(), duplicates::fresh());
    kafka.produce(
        &t.tasks,
        [
            (None, duplicate.as_slice(), Vec::new()),
            (None, fresh.as_slice(), Vec::new()),
        ],
    );
    let dead = kafka.read(&t.dead, 1, Duration::from_secs(30));
    assert_eq!(dead.len(), 1, "the duplicate is dead-lettered once");
    duplicates::assert_dead_letter(
        dead[0].header("x-tidewater-code"),
        dead[0].header("x-tidewater-reason"),
        &dead[0].body,
    );
    // Read from the beginning: the first task's result and the fresh one's,
    // and no second result for the reused id.
    let results = kafka.read(&t.results, 2, Duration::from_secs(30));
    let ids: Vec<String> = results
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(ids, [duplicates::ID, duplicates::FRESH], "results: {ids:?}");
    duplicates::assert_store(store.as_ref());
    pipeline.shutdown().expect("shutdown");
    assert_eq!(
        kafka.committed(&t.group, &t.tasks, 1),
        vec![Some(3)],
        "the duplicate's offset was committed"
    );
}

#[test]
fn requests_with_a_reply_to_header_get_their_result_there() {
    let Some(brokers) = service("TIDEWATER_KAFKA_BROKERS") else {
        return;
    };
    let kafka = Kafka::connect(&brokers);
    let t = topics(&kafka, "reply", 1);
    let replies = format!("{}.replies", t.tasks);
    kafka.create_topic(&replies, 1);
    let (pipeline, _store) = start(connector_config(&kafka, &t), 1 << 20);
    let bodies: Vec<Vec<u8>> = (0..20).map(reply_task).collect();
    let correlations: Vec<String> = (0..20).map(|i| format!("req-{i}")).collect();
    kafka.produce(
        &t.tasks,
        bodies.iter().zip(&correlations).map(|(b, c)| {
            (
                None,
                b.as_slice(),
                vec![
                    ("x-tidewater-reply-to", replies.as_str()),
                    ("x-tidewater-correlation-id", c.as_str()),
                ],
            )
        }),
    );
    let got = kafka.read(&replies, 20, Duration::from_secs(30));
    assert_eq!(got.len(), 20);
    for m in &got {
        let record = m.json();
        let id = record["id"].as_str().expect("id");
        let n = id.strip_prefix("rpc-").expect("our id");
        assert_eq!(
            m.header("x-tidewater-correlation-id"),
            Some(format!("req-{n}").as_str())
        );
        let expected = if n == "7" { "timed_out" } else { "succeeded" };
        assert_eq!(record["state"], expected, "{record}");
    }
    // Results go to the results topic as well.
    assert_eq!(
        kafka.read(&t.results, 20, Duration::from_secs(30)).len(),
        20
    );
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn offsets_are_committed_only_past_recorded_outcomes_and_a_restart_resumes_there() {
    let Some(brokers) = service("TIDEWATER_KAFKA_BROKERS") else {
        return;
    };
    let kafka = Kafka::connect(&brokers);
    let t = topics(&kafka, "resume", 1);
    let (first, first_store) = start(connector_config(&kafka, &t), 1 << 20);
    // 0..100 quick, then a slow task, then 100 more quick ones.
    let mut bodies: Vec<Vec<u8>> = (0..100)
        .map(|i| task_json(&format!("a-{i}"), "noop", "acme"))
        .collect();
    bodies.push(
        br#"{"id":"slow","kind":"sleep","payload":{"ms":4000},"resources":{"cpu_milli":10}}"#
            .to_vec(),
    );
    bodies.extend((100..200).map(|i| task_json(&format!("a-{i}"), "noop", "acme")));
    kafka.produce_values(&t.tasks, &bodies);
    // The quick tasks on both sides of the slow one finish...
    let results = kafka.read(&t.results, 200, Duration::from_secs(30));
    assert_eq!(results.len(), 200, "the quick tasks finished");
    assert!(first_store.get("slow").expect("get").map(|r| r.state) != Some(TaskState::Succeeded));
    // ...but the commit stops at the slow task, which has no outcome yet.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        kafka.committed(&t.group, &t.tasks, 1),
        vec![Some(100)],
        "the commit passed a task without an outcome"
    );
    // Its outcome recorded, the commit moves past everything.
    let deadline = Instant::now() + Duration::from_secs(20);
    while kafka.committed(&t.group, &t.tasks, 1) != vec![Some(201)] {
        assert!(
            Instant::now() < deadline,
            "the commit never reached the end"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    first.shutdown().expect("shutdown");

    // More tasks while no consumer runs; a new process with an empty store
    // in the same group consumes only those.
    let more: Vec<Vec<u8>> = (0..150)
        .map(|i| task_json(&format!("b-{i}"), "noop", "globex"))
        .collect();
    kafka.produce_values(&t.tasks, &more);
    let (second, second_store) = start(connector_config(&kafka, &t), 1 << 20);
    let results = kafka.read(&t.results, 351, Duration::from_secs(30));
    let ids: std::collections::BTreeSet<String> = results
        .iter()
        .map(|r| r.json()["id"].as_str().expect("id").to_string())
        .collect();
    assert_eq!(ids.len(), 351, "nothing lost");
    assert_eq!(results.len(), 351, "nothing finished was consumed again");
    second.shutdown().expect("shutdown");
    assert_eq!(second_store.counts().expect("counts").succeeded, 150);
    assert!(second_store.get("a-0").expect("get").is_none());
    assert_eq!(kafka.committed(&t.group, &t.tasks, 1), vec![Some(351)]);
}

#[test]
fn consumption_stops_at_max_in_flight() {
    let Some(brokers) = service("TIDEWATER_KAFKA_BROKERS") else {
        return;
    };
    use std::sync::atomic::{AtomicUsize, Ordering};
    let kafka = Kafka::connect(&brokers);
    let t = topics(&kafka, "backpressure", 2);
    const BOUND: usize = 4;
    const TASKS: usize = 40;
    let mut kafka_config = connector_config(&kafka, &t);
    kafka_config.max_in_flight = BOUND;
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    config.kafka = Some(kafka_config);
    // Tasks that take a while, counting how many run at once; the executor
    // could run hundreds together (with the bound at 1000, all 40 do).
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let (r, m) = (Arc::clone(&running), Arc::clone(&most));
    let pipeline = Pipeline::builder(config)
        .handler("slow", move |_task| {
            let (r, m) = (Arc::clone(&r), Arc::clone(&m));
            async move {
                let now = r.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(100)).await;
                r.fetch_sub(1, Ordering::SeqCst);
                Ok(tidewater::HandlerOutput::default())
            }
        })
        .start()
        .expect("start");
    let runtime = pipeline.runtime().expect("runtime");
    let connector = pipeline.brokers().kafka().expect("configured");
    assert!(runtime.block_on(connector.wait_assigned(Duration::from_secs(30))));
    let bodies: Vec<Vec<u8>> = (0..TASKS)
        .map(|i| task_json(&format!("bp-{i}"), "slow", "acme"))
        .collect();
    let keys: Vec<String> = (0..TASKS).map(|i| format!("k{i}")).collect();
    kafka.produce(
        &t.tasks,
        bodies
            .iter()
            .zip(&keys)
            .map(|(b, k)| (Some(k.as_bytes()), b.as_slice(), Vec::new())),
    );
    let results = kafka.read(&t.results, TASKS, Duration::from_secs(60));
    assert_eq!(results.len(), TASKS, "every task finished");
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= BOUND,
        "{most} tasks ran at once: more than max_in_flight = {BOUND} were consumed"
    );
    assert!(most >= 2, "tasks still run concurrently under the bound");
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn alert_events_are_produced_to_the_alerts_topic() {
    let Some(brokers) = service("TIDEWATER_KAFKA_BROKERS") else {
        return;
    };
    let kafka = Kafka::connect(&brokers);
    let t = topics(&kafka, "alerts", 1);
    let alerts_topic = format!("{}.alerts", t.tasks.trim_end_matches(".tasks"));
    kafka.create_topic(&alerts_topic, 1);
    let mut kafka_config = connector_config(&kafka, &t);
    kafka_config.alerts_topic = alerts_topic.clone();
    let (pipeline, _) = start_with(kafka_config, 1 << 20, alerts::configure);
    kafka.produce_values(&t.tasks, &alerts::tasks());
    let events = kafka.read(&alerts_topic, 1, Duration::from_secs(30));
    assert_eq!(events.len(), 1, "one alert event");
    assert_eq!(events[0].key_text(), alerts::FIRING_KEY);
    alerts::assert_acme_fired(&events[0].json());
    // globex stays under the threshold: still one event.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        kafka.read(&alerts_topic, 1, Duration::from_secs(5)).len(),
        1,
        "only acme's alert fires"
    );
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn a_saturated_pipeline_pauses_the_partitions_and_then_runs_everything() {
    let Some(brokers) = service("TIDEWATER_KAFKA_BROKERS") else {
        return;
    };
    const MAX_QUEUED: usize = 20;
    const TASKS: usize = 300;
    let kafka = Kafka::connect(&brokers);
    let t = topics(&kafka, "saturated", 2);
    let mut kafka_config = connector_config(&kafka, &t);
    // Far above the pipeline's bound: only the pause keeps it.
    kafka_config.max_in_flight = 10_000;
    let (pipeline, _store) = start_with(kafka_config, 1 << 20, |config| {
        config.limits.max_queued = MAX_QUEUED;
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
    kafka.produce_values(&t.tasks, &bodies);
    let ingress = pipeline.ingress();
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(90);
    while pipeline.stats().finished() < TASKS as u64 {
        peak = peak.max(ingress.in_flight());
        assert!(Instant::now() < deadline, "tasks did not finish");
        std::thread::sleep(Duration::from_millis(1));
    }
    // One message may pass between the check and the pause.
    assert!(
        peak <= MAX_QUEUED as u64 + 1,
        "{peak} in the pipeline, bound {MAX_QUEUED}"
    );
    assert!(
        peak >= MAX_QUEUED as u64 / 2,
        "the bound was never approached ({peak})"
    );
    let results = kafka.read(&t.results, TASKS, Duration::from_secs(30));
    assert_eq!(results.len(), TASKS, "every task has a result");
    pipeline.shutdown().expect("shutdown");
}
