//! The librdkafka clients the connector uses, configured for its delivery
//! guarantees, and the topics it creates.
//!
//! - The consumer joins the group with automatic commits and automatic
//!   offset stores off: offsets are committed by hand, only up to messages
//!   whose outcome is recorded.
//! - The producer is idempotent with `acks=all`: a retried produce is never
//!   written twice, and a produced record counts only once every in-sync
//!   replica has it.
//!
//! User `properties` are applied after the connector's tunable defaults and
//! before its reserved settings, which always win.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::{ClientConfig, ClientContext};

use super::config::KafkaConfig;
use super::error::KafkaError;

/// How long creating topics may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(15);

/// Settings shared by every client, then the user's properties.
fn base(config: &KafkaConfig, client: &str) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.brokers)
        .set("client.id", format!("tidewater-{client}"))
        .set_log_level(RDKafkaLogLevel::Warning);
    for (key, value) in &config.properties {
        c.set(key, value);
    }
    c.set("bootstrap.servers", &config.brokers);
    c
}

/// The consumer's settings: manual commits of explicitly chosen offsets.
pub fn consumer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("auto.offset.reset", &config.auto_offset_reset)
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            config.heartbeat_interval_ms.to_string(),
        )
        .set("enable.partition.eof", "false")
        // Bound librdkafka's own prefetch queue by the in-flight bound, and
        // fetch again soon once the pipeline drained it (librdkafka's
        // default backoff, 1 s, stalls a consumer that keeps it full).
        .set("queued.min.messages", config.max_in_flight.to_string())
        .set("fetch.queue.backoff.ms", "10");
    for (key, value) in base(config, "consumer").config_map() {
        c.set(key, value);
    }
    c.set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set_log_level(RDKafkaLogLevel::Warning);
    c
}

/// The producer's settings: idempotent, every in-sync replica acknowledges.
pub fn producer_config(config: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("linger.ms", "1");
    for (key, value) in base(config, "producer").config_map() {
        c.set(key, value);
    }
    c.set("enable.idempotence", "true")
        .set("acks", "all")
        .set_log_level(RDKafkaLogLevel::Warning);
    c
}

/// Creates the topics the connector uses when they are missing.
pub async fn create_topics(config: &KafkaConfig) -> Result<(), KafkaError> {
    let admin: AdminClient<DefaultClientContext> =
        base(config, "admin")
            .create()
            .map_err(|source| KafkaError::Client {
                client: "admin client",
                brokers: config.brokers.clone(),
                source,
            })?;
    let mut names: Vec<&str> = config.topics.iter().map(String::as_str).collect();
    names.push(&config.dead_letter_topic);
    for optional in [&config.results_topic, &config.alerts_topic] {
        if !optional.is_empty() {
            names.push(optional);
        }
    }
    names.sort_unstable();
    names.dedup();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| {
            NewTopic::new(
                name,
                config.partitions,
                TopicReplication::Fixed(config.replication),
            )
        })
        .collect();
    let results = admin
        .create_topics(
            &topics,
            &AdminOptions::new().operation_timeout(Some(CREATE_TIMEOUT)),
        )
        .await
        .map_err(KafkaError::kafka("creating topics"))?;
    for result in results {
        match result {
            Ok(name) => tracing::info!(topic = %name, "Kafka topic created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(KafkaError::Kafka {
                    operation: format!("creating topic {name:?}"),
                    source: rdkafka::error::KafkaError::AdminOp(code),
                })
            }
        }
    }
    Ok(())
}

pub(super) fn log_to_tracing(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
    }
}

/// The producer's context: logs to tracing.
pub(super) struct ProducerContext;

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka producer error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_settings_win() {
        let mut config = KafkaConfig::new("127.0.0.1:9092").consume("t");
        config
            .properties
            .insert("session.timeout.ms".into(), "2000".into());
        let consumer = consumer_config(&config);
        assert_eq!(consumer.get("enable.auto.commit"), Some("false"));
        assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(consumer.get("session.timeout.ms"), Some("2000"));
        let producer = producer_config(&config);
        assert_eq!(producer.get("enable.idempotence"), Some("true"));
        assert_eq!(producer.get("acks"), Some("all"));
    }
}
