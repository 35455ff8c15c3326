//! RabbitMQ over TLS (`amqps://`) against a real TLS-only broker node
//! (`TIDEWATER_AMQPS_URL` and its CA `TIDEWATER_AMQPS_CA`, set by
//! `tests/services/up`, which makes the CA and the node's certificate):
//! with `rabbitmq.tls.ca_file` the pipeline consumes tasks and publishes
//! every result over TLS; without it the broker's certificate is refused
//! (it is signed by no system root), and the node has no plain listener.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use crate::broker_common::{service, task_json, unique, Amqp};
use lapin::BasicProperties;
use tidewater::config::{Config, StoreKind};
use tidewater::Pipeline;
use tidewater_connectors::rabbitmq::{self, AmqpTlsConfig, RabbitMqConfig};
use tidewater_connectors::store::{MemoryStore, TaskState, TaskStore};

/// The TLS broker's URL and a TLS config trusting its CA.
fn tls_broker() -> Option<(String, AmqpTlsConfig)> {
    let url = service("TIDEWATER_AMQPS_URL")?;
    let ca = service("TIDEWATER_AMQPS_CA")?;
    Some((
        url,
        AmqpTlsConfig {
            ca_file: Some(ca.into()),
            ..AmqpTlsConfig::default()
        },
    ))
}

/// A memory-store pipeline consuming `queue` from the TLS broker.
fn pipeline_config(url: &str, tls: AmqpTlsConfig, queue: &str, results: &str) -> Config {
    let mut config = Config {
        workers: 2,
        ..Config::default()
    };
    config.http.enabled = false;
    config.store.kind = StoreKind::Memory;
    let mut connector = RabbitMqConfig::new(url).consume(queue);
    connector.tls = tls;
    connector.results_exchange = results.to_string();
    connector.dead_letter_exchange = format!("{results}.dead");
    config.rabbitmq = Some(connector);
    config
}

#[test]
fn tasks_round_trip_over_amqps_trusting_a_private_ca() {
    let Some((url, tls)) = tls_broker() else {
        return;
    };
    assert!(url.starts_with("amqps://"), "{url}");
    let prefix = unique("tls");
    let (queue, results) = (format!("{prefix}.tasks"), format!("{prefix}.results"));
    let mut amqp = Amqp::connect_with(&url, &tls);
    amqp.topic(&results);
    amqp.queue(&format!("{results}.capture"), &[&results]);
    amqp.delete_later(&queue);

    let store = Arc::new(MemoryStore::new());
    let pipeline = Pipeline::builder(pipeline_config(&url, tls, &queue, &results))
        .store(store.clone())
        .start()
        .expect("start");
    let connector = pipeline.brokers().rabbitmq().expect("configured");
    assert!(
        pipeline
            .runtime()
            .expect("runtime")
            .block_on(connector.wait_connected(Duration::from_secs(20))),
        "the connector did not connect over TLS"
    );
    const TASKS: usize = 200;
    let bodies: Vec<Vec<u8>> = (0..TASKS)
        .map(|i| task_json(&format!("tls-{i}"), "noop", "acme"))
        .collect();
    amqp.publish_to_queue(
        &queue,
        bodies
            .iter()
            .map(|b| (b.as_slice(), BasicProperties::default())),
    );
    let messages = amqp.drain(
        &format!("{results}.capture"),
        TASKS,
        Duration::from_secs(60),
    );
    let ids: BTreeSet<String> = messages
        .iter()
        .map(|m| {
            let record = m.json();
            assert_eq!(record["state"], "succeeded", "{record}");
            record["id"].as_str().expect("id").to_string()
        })
        .collect();
    assert_eq!(ids.len(), TASKS, "every task's result came back over TLS");
    for i in 0..TASKS {
        let record = store.get(&format!("tls-{i}")).expect("get").expect("kept");
        assert_eq!(record.state, TaskState::Succeeded);
    }
    assert_eq!(
        pipeline.shutdown().expect("shutdown").finished,
        TASKS as u64
    );
    assert_eq!(amqp.ready(&queue), 0, "everything was acknowledged");
}

#[test]
fn without_the_ca_the_certificate_is_refused_and_plain_amqp_reaches_nothing() {
    let Some((url, _)) = tls_broker() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The system's roots alone do not vouch for the test CA's certificate.
    let refused = runtime
        .block_on(rabbitmq::connect(
            &url,
            &AmqpTlsConfig::default(),
            "tidewater-test".into(),
        ))
        .expect_err("an untrusted certificate must not connect");
    let detail = format!("{refused}: {refused:?}").to_lowercase();
    assert!(
        detail.contains("certificate") || detail.contains("unknownissuer"),
        "{detail}"
    );
    // The node speaks only TLS: plain AMQP on its port does not get a
    // connection.
    let plain = url.replacen("amqps://", "amqp://", 1);
    let plain = runtime.block_on(async {
        tokio::time::timeout(
            Duration::from_secs(10),
            rabbitmq::connect(&plain, &AmqpTlsConfig::default(), "tidewater-test".into()),
        )
        .await
    });
    assert!(
        !matches!(plain, Ok(Ok(_))),
        "plain AMQP connected to the TLS port"
    );
    // A pipeline configured without the CA keeps retrying and never
    // consumes; it still shuts down cleanly.
    let prefix = unique("tls-untrusted");
    let pipeline = Pipeline::builder(pipeline_config(
        &url,
        AmqpTlsConfig::default(),
        &format!("{prefix}.tasks"),
        &format!("{prefix}.results"),
    ))
    .store(Arc::new(MemoryStore::new()))
    .start()
    .expect("start");
    let connector = pipeline.brokers().rabbitmq().expect("configured");
    assert!(
        !pipeline
            .runtime()
            .expect("runtime")
            .block_on(connector.wait_connected(Duration::from_secs(3))),
        "connected without trusting the broker's CA"
    );
    pipeline.shutdown().expect("shutdown");
}
