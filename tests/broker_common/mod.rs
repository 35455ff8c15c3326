//! Helpers for the broker tests: the service addresses from the
//! environment (set by `tests/services/up`), and small blocking AMQP and
//! Kafka ([`kafka`]) clients for publishing tasks and reading results and
//! dead letters.
#![allow(dead_code)]

pub mod alerts;
pub mod bad_input;
pub mod collector;
pub mod crash;
pub mod duplicates;
pub mod kafka;

pub use collector::Collector;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use tidewater_connectors::rabbitmq::{self, AmqpTlsConfig};

use collector::Counts;

/// The value of a service's address variable. Missing: under CI (`CI` set)
/// the test fails; elsewhere it prints a skip notice and returns `None`.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var_os("CI").is_some() => {
            panic!("{var} is not set: run `eval \"$(tests/services/up)\"` first")
        }
        _ => {
            eprintln!("skipping: {var} is not set (run `eval \"$(tests/services/up)\"`)");
            None
        }
    }
}

/// A name unique to this test run, so that tests sharing the broker do not
/// see each other's messages.
pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("tw-test.{prefix}.{}.{nanos}", std::process::id())
}

/// A message read back from a queue.
#[derive(Clone, Debug)]
pub struct Message {
    /// Its routing key.
    pub routing_key: String,
    /// Its body.
    pub body: Vec<u8>,
    /// Its text headers.
    pub headers: BTreeMap<String, String>,
    /// Its correlation id.
    pub correlation_id: Option<String>,
    /// Its message id.
    pub message_id: Option<String>,
}

impl Message {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
}

/// A blocking AMQP client over its own small tokio runtime.
pub struct Amqp {
    pub runtime: tokio::runtime::Runtime,
    connection: Connection,
    channel: Channel,
    queues: Vec<String>,
    exchanges: Vec<String>,
}

impl Amqp {
    /// Connects with publisher confirms on.
    pub fn connect(url: &str) -> Amqp {
        Amqp::connect_with(url, &AmqpTlsConfig::default())
    }

    /// Connects with publisher confirms on, with `tls` for an `amqps://`
    /// URL (through the connector's own connect function).
    pub fn connect_with(url: &str, tls: &AmqpTlsConfig) -> Amqp {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let (connection, channel) = runtime.block_on(async {
            let connection = rabbitmq::connect(url, tls, "tidewater-test".into())
                .await
                .expect("connect to RabbitMQ");
            let channel = connection.create_channel().await.expect("channel");
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .expect("confirms");
            (connection, channel)
        });
        Amqp {
            runtime,
            connection,
            channel,
            queues: Vec::new(),
            exchanges: Vec::new(),
        }
    }

    /// The channel, for what the helpers do not cover.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Declares a durable topic exchange (deleted on drop).
    pub fn topic(&mut self, name: &str) {
        self.runtime
            .block_on(self.channel.exchange_declare(
                name.into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ))
            .expect("declare exchange");
        self.exchanges.push(name.to_string());
    }

    /// Declares a durable queue (deleted on drop), bound to each of
    /// `exchanges` with `#`.
    pub fn queue(&mut self, name: &str, exchanges: &[&str]) {
        self.runtime.block_on(async {
            self.channel
                .queue_declare(
                    name.into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .expect("declare queue");
            for exchange in exchanges {
                self.channel
                    .queue_bind(
                        name.into(),
                        (*exchange).into(),
                        "#".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .expect("bind");
            }
        });
        self.queues.push(name.to_string());
    }

    /// A server-named exclusive queue, for replies.
    pub fn reply_queue(&self) -> String {
        self.runtime
            .block_on(self.channel.queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ))
            .expect("declare reply queue")
            .name()
            .to_string()
    }

    /// Publishes persistent messages to `queue` through the default
    /// exchange and waits for every confirm.
    pub fn publish_to_queue<'a>(
        &self,
        queue: &str,
        bodies: impl IntoIterator<Item = (&'a [u8], BasicProperties)>,
    ) {
        self.runtime.block_on(async {
            let mut confirms = Vec::new();
            for (body, properties) in bodies {
                let confirm = self
                    .channel
                    .basic_publish(
                        "".into(),
                        queue.into(),
                        BasicPublishOptions::default(),
                        body,
                        properties.with_delivery_mode(2),
                    )
                    .await
                    .expect("publish");
                confirms.push(confirm);
                // Keep the confirm window bounded for large runs.
                if confirms.len() >= 2048 {
                    for c in confirms.drain(..) {
                        assert!(c.await.expect("confirm").is_ack());
                    }
                }
            }
            for c in confirms {
                assert!(c.await.expect("confirm").is_ack());
            }
        });
    }

    /// Reads messages from `queue` (acknowledging them) until `count` have
    /// arrived or `timeout` passes.
    pub fn take(&self, queue: &str, count: usize, timeout: Duration) -> Vec<Message> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        self.runtime.block_on(async {
            while out.len() < count && Instant::now() < deadline {
                match self
                    .channel
                    .basic_get(queue.into(), BasicGetOptions::default())
                    .await
                    .expect("basic.get")
                {
                    Some(message) => {
                        let delivery = message.delivery;
                        delivery.ack(BasicAckOptions::default()).await.expect("ack");
                        out.push(to_message(&delivery));
                    }
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        });
        out
    }

    /// Consumes everything in `queue` until it has been quiet for `quiet`
    /// after `count` messages (or `timeout`), acknowledging each.
    pub fn drain(&self, queue: &str, count: usize, timeout: Duration) -> Vec<Message> {
        self.runtime.block_on(async {
            let mut consumer = self
                .channel
                .basic_consume(
                    queue.into(),
                    "".into(),
                    Default::default(),
                    FieldTable::default(),
                )
                .await
                .expect("consume");
            let deadline = tokio::time::Instant::now() + timeout;
            let mut out = Vec::new();
            loop {
                let wait = if out.len() >= count {
                    tokio::time::Instant::now() + Duration::from_millis(300)
                } else {
                    deadline
                };
                match tokio::time::timeout_at(wait.min(deadline), consumer.next()).await {
                    Ok(Some(Ok(delivery))) => {
                        delivery.ack(BasicAckOptions::default()).await.expect("ack");
                        out.push(to_message(&delivery));
                    }
                    _ => break,
                }
            }
            out
        })
    }

    /// Messages ready in `queue` (not counting unacknowledged ones).
    pub fn ready(&self, queue: &str) -> u32 {
        self.runtime
            .block_on(self.channel.queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ))
            .expect("passive declare")
            .message_count()
    }

    /// Empties `queue`.
    pub fn purge(&self, queue: &str) {
        self.runtime
            .block_on(
                self.channel
                    .queue_purge(queue.into(), QueuePurgeOptions::default()),
            )
            .expect("purge");
    }

    /// Keeps every queue and exchange declared so far when the client drops.
    pub fn keep_all(&mut self) {
        self.queues.clear();
        self.exchanges.clear();
    }

    /// Deletes `queue` when the client drops.
    pub fn delete_later(&mut self, queue: &str) {
        self.queues.push(queue.to_string());
    }
}

impl Amqp {
    /// Consumes `queue` in the background (without acknowledgements),
    /// counting messages by message id.
    pub fn collect(&self, queue: &str) -> Collector {
        let counts = Counts::default();
        let channel = self
            .runtime
            .block_on(self.connection.create_channel())
            .expect("channel");
        let mut consumer = self
            .runtime
            .block_on(channel.basic_consume(
                queue.into(),
                "".into(),
                lapin::options::BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            ))
            .expect("consume");
        let sink = counts.clone();
        let task = self.runtime.spawn(async move {
            let _channel = channel;
            while let Some(Ok(delivery)) = consumer.next().await {
                let id = delivery
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|s| s.to_string())
                    .unwrap_or_default();
                sink.add(id);
            }
        });
        Collector::new(counts, move || task.abort())
    }
}

impl Drop for Amqp {
    fn drop(&mut self) {
        let queues = std::mem::take(&mut self.queues);
        let exchanges = std::mem::take(&mut self.exchanges);
        self.runtime.block_on(async {
            for q in queues {
                let _ = self
                    .channel
                    .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
            for x in exchanges {
                let _ = self
                    .channel
                    .exchange_delete(x.as_str().into(), Default::default())
                    .await;
            }
            let _ = self.connection.close(200, "bye".into()).await;
        });
    }
}

fn to_message(delivery: &lapin::message::Delivery) -> Message {
    let mut headers = BTreeMap::new();
    if let Some(table) = delivery.properties.headers() {
        for (k, v) in table.inner() {
            if let AMQPValue::LongString(s) = v {
                headers.insert(
                    k.as_str().to_string(),
                    String::from_utf8_lossy(s.as_bytes()).into_owned(),
                );
            }
        }
    }
    Message {
        routing_key: delivery.routing_key.as_str().to_string(),
        body: delivery.data.clone(),
        headers,
        correlation_id: delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.to_string()),
        message_id: delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string()),
    }
}

/// A task as JSON with the given id (a no-op unless `kind` says otherwise).
/// Task `rpc-{i}` of the reply-to scenarios: a no-op, except task 7, which
/// ends `timed_out` at run time (a sleep past its timeout), so that a task
/// that ran and did not succeed gets its reply too.
pub fn reply_task(i: usize) -> Vec<u8> {
    if i == 7 {
        br#"{"id":"rpc-7","kind":"sleep","tenant":"acme","payload":{"ms":5000},"timeout_ms":50}"#
            .to_vec()
    } else {
        task_json(&format!("rpc-{i}"), "noop", "acme")
    }
}

pub fn task_json(id: &str, kind: &str, tenant: &str) -> Vec<u8> {
    format!(r#"{{"id":"{id}","kind":"{kind}","tenant":"{tenant}","resources":{{"cpu_milli":10}}}}"#)
        .into_bytes()
}
