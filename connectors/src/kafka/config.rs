//! The `[kafka]` config block: the bootstrap servers, the consumer group and
//! the topics tasks are consumed from, where results and dead letters go,
//! and the bound on messages in flight.
//!
//! ```toml
//! [kafka]
//! brokers = "127.0.0.1:9092"
//! group_id = "tidewater"
//! topics = ["tidewater.tasks"]
//! results_topic = "tidewater.results"
//! dead_letter_topic = "tidewater.dead_letters"
//! max_in_flight = 10000
//!
//! # Any librdkafka property, passed to both the consumer and the producer
//! # (the delivery guarantees' own settings cannot be overridden).
//! [kafka.properties]
//! "socket.keepalive.enable" = "true"
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// librdkafka properties the connector sets itself, because its delivery
/// guarantees depend on them; `properties` may not override them.
pub const RESERVED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "acks",
];

/// The Kafka connector's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap servers, `host:port[,host:port...]`.
    pub brokers: String,
    /// The consumer group: processes sharing it share the topics'
    /// partitions, and its committed offsets say where a restart resumes.
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// Topics to consume tasks from.
    #[serde(default)]
    pub topics: Vec<String>,
    /// Topic that receives each final result, keyed `{tenant}.{kind}`;
    /// empty to publish none.
    #[serde(default = "default_results_topic")]
    pub results_topic: String,
    /// Topic that receives each rejected message, with the reason in the
    /// headers `x-tidewater-reason` and `x-tidewater-code`. Required: bad
    /// input is never dropped.
    #[serde(default = "default_dead_letter_topic")]
    pub dead_letter_topic: String,
    /// Topic that receives the monitoring agent's alert events (raised and
    /// resolved, JSON), keyed `{alert}.{state}`; empty to publish none.
    #[serde(default = "default_alerts_topic")]
    pub alerts_topic: String,
    /// Most consumed messages awaiting their outcome: the backpressure
    /// between the broker and the pipeline. At this many the consumer stops
    /// polling until there is room (librdkafka's prefetch queue, bounded by
    /// `queued.min.messages` = this bound unless set in `properties`, fills
    /// and fetching stops); a stall longer than a second pauses the
    /// partitions until half the bound is free.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Where a group without a committed offset starts: `earliest` or
    /// `latest`.
    #[serde(default = "default_auto_offset_reset")]
    pub auto_offset_reset: String,
    /// The group session timeout, in ms (a member silent this long is
    /// dropped and its partitions reassigned).
    #[serde(default = "default_session_timeout_ms")]
    pub session_timeout_ms: u64,
    /// Interval between group heartbeats, in ms (below a third of the
    /// session timeout).
    #[serde(default = "default_heartbeat_interval_ms")]
    pub heartbeat_interval_ms: u64,
    /// Whether to create the consumed, results, dead-letter and alerts
    /// topics when they are missing (with `partitions` partitions).
    #[serde(default = "default_true")]
    pub create_topics: bool,
    /// Partitions of topics the connector creates.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// Replication factor of topics the connector creates.
    #[serde(default = "default_replication")]
    pub replication: i32,
    /// Further librdkafka properties for the consumer and the producer.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_group_id() -> String {
    "tidewater".to_string()
}
fn default_results_topic() -> String {
    "tidewater.results".to_string()
}
fn default_dead_letter_topic() -> String {
    "tidewater.dead_letters".to_string()
}
fn default_alerts_topic() -> String {
    "tidewater.alerts".to_string()
}
fn default_max_in_flight() -> usize {
    10_000
}
fn default_auto_offset_reset() -> String {
    "earliest".to_string()
}
fn default_session_timeout_ms() -> u64 {
    10_000
}
fn default_heartbeat_interval_ms() -> u64 {
    3_000
}
fn default_true() -> bool {
    true
}
fn default_partitions() -> i32 {
    1
}
fn default_replication() -> i32 {
    1
}

impl KafkaConfig {
    /// A config for `brokers` with the defaults and no topics.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaConfig {
            brokers: brokers.into(),
            group_id: default_group_id(),
            topics: Vec::new(),
            results_topic: default_results_topic(),
            dead_letter_topic: default_dead_letter_topic(),
            alerts_topic: default_alerts_topic(),
            max_in_flight: default_max_in_flight(),
            auto_offset_reset: default_auto_offset_reset(),
            session_timeout_ms: default_session_timeout_ms(),
            heartbeat_interval_ms: default_heartbeat_interval_ms(),
            create_topics: true,
            partitions: default_partitions(),
            replication: default_replication(),
            properties: BTreeMap::new(),
        }
    }

    /// Adds a topic to consume tasks from.
    pub fn consume(mut self, topic: impl Into<String>) -> Self {
        self.topics.push(topic.into());
        self
    }

    /// Checks what the schema alone cannot; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, detail: String| Err((format!("kafka.{key}"), detail));
        if self.brokers.trim().is_empty() {
            return invalid("brokers", "must name at least one host:port".into());
        }
        if self.group_id.is_empty() {
            return invalid("group_id", "must not be empty".into());
        }
        if self.topics.is_empty() {
            return invalid("topics", "must name at least one topic to consume".into());
        }
        if self.topics.len() > usize::from(u8::MAX) {
            return invalid("topics", "at most 255 consumed topics".into());
        }
        if let Some(t) = self.topics.iter().find(|t| t.is_empty()) {
            return invalid("topics", format!("{t:?} is not a topic name"));
        }
        if self.dead_letter_topic.is_empty() {
            return invalid(
                "dead_letter_topic",
                "must be set: rejected messages are never dropped".into(),
            );
        }
        for (key, topic) in [
            ("results_topic", &self.results_topic),
            ("dead_letter_topic", &self.dead_letter_topic),
        ] {
            if self.topics.contains(topic) {
                return invalid(key, format!("{topic:?} is also a consumed topic"));
            }
        }
        if self.max_in_flight == 0 {
            return invalid(
                "max_in_flight",
                "must be at least 1 (0 would never consume)".into(),
            );
        }
        if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            return invalid(
                "auto_offset_reset",
                format!("{:?}: must be earliest or latest", self.auto_offset_reset),
            );
        }
        if self.heartbeat_interval_ms == 0 || self.heartbeat_interval_ms >= self.session_timeout_ms
        {
            return invalid(
                "heartbeat_interval_ms",
                "must be at least 1 and below session_timeout_ms".into(),
            );
        }
        if self.partitions < 1 || self.replication < 1 {
            return invalid(
                "partitions",
                "partitions and replication must be at least 1".into(),
            );
        }
        if let Some(key) = self
            .properties
            .keys()
            .find(|k| RESERVED_PROPERTIES.contains(&k.as_str()))
        {
            return invalid(
                &format!("properties.{key}"),
                "is set by the connector (its delivery guarantees depend on it)".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_validation_names_the_key() {
        let config: KafkaConfig =
            toml::from_str("brokers = \"127.0.0.1:9092\"\ntopics = [\"tasks\"]").expect("parses");
        assert_eq!(config.max_in_flight, 10_000);
        assert_eq!(config.group_id, "tidewater");
        assert!(config.validate().is_ok());
        let mut bad = config.clone();
        bad.max_in_flight = 0;
        assert_eq!(
            bad.validate().expect_err("in flight").0,
            "kafka.max_in_flight"
        );
        let mut bad = config.clone();
        bad.properties
            .insert("enable.auto.commit".into(), "true".into());
        assert_eq!(
            bad.validate().expect_err("reserved").0,
            "kafka.properties.enable.auto.commit"
        );
        let mut bad = config.clone();
        bad.dead_letter_topic = String::new();
        assert_eq!(
            bad.validate().expect_err("dead letters").0,
            "kafka.dead_letter_topic"
        );
        let mut bad = config;
        bad.results_topic = "tasks".into();
        assert_eq!(bad.validate().expect_err("loop").0, "kafka.results_topic");
    }
}
