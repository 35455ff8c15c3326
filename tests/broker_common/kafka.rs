//! A small blocking Kafka client for the Kafka broker tests: creates
//! topics, produces tasks (with headers) and reads topics back from the
//! beginning without a consumer group, so that reading never waits for a
//! group join. Tests count the messages they read: the broker used in tests
//! (tansu) under-reports partition high watermarks.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use tidewater_connectors::kafka::KafkaConfig;

use super::collector::{Collector, Counts};

/// A connector config for tests: the group settings the test broker needs
/// (its group joins take half the session timeout).
pub fn kafka_config(brokers: &str, group: &str, topics: &[&str]) -> KafkaConfig {
    let mut config = KafkaConfig::new(brokers);
    config.group_id = group.to_string();
    config.topics = topics.iter().map(|t| t.to_string()).collect();
    config.session_timeout_ms = 2000;
    config.heartbeat_interval_ms = 666;
    config.create_topics = false;
    config
}

/// A record to produce: key, value, headers.
pub type Produced<'a> = (Option<&'a [u8]>, &'a [u8], Vec<(&'a str, &'a str)>);

/// A record read back.
#[derive(Clone, Debug)]
pub struct Record {
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value.
    pub body: Vec<u8>,
    /// Its headers (as text).
    pub headers: BTreeMap<String, String>,
}

impl Record {
    /// The value as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }

    /// The key as text.
    pub fn key_text(&self) -> String {
        String::from_utf8_lossy(self.key.as_deref().unwrap_or_default()).into_owned()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(String::as_str)
    }
}

/// Blocking Kafka client over its own small tokio runtime.
pub struct Kafka {
    pub brokers: String,
    runtime: tokio::runtime::Runtime,
    admin: AdminClient<DefaultClientContext>,
    producer: FutureProducer,
}

impl Kafka {
    /// Connects (lazily: clients connect on first use).
    pub fn connect(brokers: &str) -> Kafka {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let admin = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .expect("admin client");
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        Kafka {
            brokers: brokers.to_string(),
            runtime,
            admin,
            producer,
        }
    }

    /// Creates `name` with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        let results = self
            .runtime
            .block_on(self.admin.create_topics(
                &[NewTopic::new(name, partitions, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
            ))
            .expect("create topics");
        for r in results {
            r.unwrap_or_else(|(name, code)| panic!("creating topic {name}: {code}"));
        }
    }

    /// Produces `(key, value, headers)` records to `topic` and waits until
    /// the broker acknowledged every one.
    pub fn produce<'a>(&self, topic: &str, records: impl IntoIterator<Item = Produced<'a>>) {
        self.runtime.block_on(async {
            let mut waiting = std::collections::VecDeque::new();
            for (key, body, headers) in records {
                let mut owned = OwnedHeaders::new();
                for (k, v) in headers {
                    owned = owned.insert(Header {
                        key: k,
                        value: Some(v.as_bytes()),
                    });
                }
                let mut record = FutureRecord::<[u8], [u8]>::to(topic)
                    .payload(body)
                    .headers(owned);
                if let Some(key) = key {
                    record = record.key(key);
                }
                loop {
                    match self.producer.send_result(record) {
                        Ok(delivery) => {
                            waiting.push_back(delivery);
                            break;
                        }
                        Err((_, back)) => {
                            record = back;
                            let delivery = waiting
                                .pop_front()
                                .expect("queue full with nothing in flight");
                            delivery.await.expect("delivered").expect("acknowledged");
                        }
                    }
                }
                // Bound the outstanding deliveries for large runs.
                while waiting.len() > 20_000 {
                    let delivery = waiting.pop_front().expect("in flight");
                    delivery.await.expect("delivered").expect("acknowledged");
                }
            }
            for delivery in waiting {
                delivery.await.expect("delivered").expect("acknowledged");
            }
        });
    }

    /// Produces task values without keys or headers.
    pub fn produce_values(&self, topic: &str, bodies: &[Vec<u8>]) {
        self.produce(
            topic,
            bodies.iter().map(|b| (None, b.as_slice(), Vec::new())),
        );
    }

    /// Reads `topic` from the beginning until `count` records arrived and
    /// then `quiet` passed without more (or `timeout` passed).
    pub fn read(&self, topic: &str, count: usize, timeout: Duration) -> Vec<Record> {
        let consumer = self.reader(topic);
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        let mut quiet_since = None;
        while Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    out.push(to_record(&m));
                    quiet_since = None;
                }
                Some(Err(e)) => eprintln!("reading {topic}: {e}"),
                None if out.len() >= count => {
                    let since = *quiet_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(500) {
                        break;
                    }
                }
                None => {}
            }
        }
        out
    }

    /// A consumer assigned every partition of `topic` from the beginning.
    fn reader(&self, topic: &str) -> BaseConsumer {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("reader-{topic}"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("reader");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(10))
            .expect("metadata");
        let partitions = metadata
            .topics()
            .first()
            .map(|t| t.partitions().len())
            .unwrap_or(1)
            .max(1);
        let mut list = TopicPartitionList::new();
        for p in 0..partitions as i32 {
            list.add_partition_offset(topic, p, Offset::Beginning)
                .expect("offset");
        }
        consumer.assign(&list).expect("assign");
        consumer
    }

    /// Reads `topic` in the background, counting records by the value of
    /// header `x-tidewater-task-id`.
    pub fn collect(&self, topic: &str) -> Collector {
        let consumer = self.reader(topic);
        let counts = Counts::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (sink, stopped) = (counts.clone(), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !stopped.load(Ordering::Relaxed) {
                if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
                    let id = to_record(&m)
                        .header("x-tidewater-task-id")
                        .unwrap_or_default()
                        .to_string();
                    sink.add(id);
                }
            }
        });
        Collector::new(counts, move || {
            stop.store(true, Ordering::Relaxed);
            let _ = thread.join();
        })
    }

    /// The offsets group `group` has committed on `topic`'s partitions
    /// `0..partitions` (`None` where it has none).
    pub fn committed(&self, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .expect("offset reader");
        let mut list = TopicPartitionList::new();
        for p in 0..partitions {
            list.add_partition(topic, p);
        }
        let committed = consumer
            .committed_offsets(list, Duration::from_secs(10))
            .expect("committed offsets");
        (0..partitions)
            .map(
                |p| match committed.find_partition(topic, p).map(|e| e.offset()) {
                    Some(Offset::Offset(o)) => Some(o),
                    _ => None,
                },
            )
            .collect()
    }
}

fn to_record(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let mut headers = BTreeMap::new();
    if let Some(hs) = m.headers() {
        for h in hs.iter() {
            headers.insert(
                h.key.to_string(),
                String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
            );
        }
    }
    Record {
        partition: m.partition(),
        offset: m.offset(),
        key: m.key().map(<[u8]>::to_vec),
        body: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
        headers,
    }
}
