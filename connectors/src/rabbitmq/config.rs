//! The `[rabbitmq]` config block: the connection, the topology to declare,
//! which queues to consume, and where results and dead letters go.
//!
//! ```toml
//! [rabbitmq]
//! url = "amqp://guest:guest@127.0.0.1:5672/%2f"
//! prefetch = 512
//!
//! [[rabbitmq.exchanges]]
//! name = "tidewater.tasks"
//! kind = "topic"
//!
//! [[rabbitmq.queues]]
//! name = "tidewater.tasks"
//!
//! [[rabbitmq.bindings]]
//! queue = "tidewater.tasks"
//! exchange = "tidewater.tasks"
//! routing_key = "#"
//! ```

use serde::{Deserialize, Serialize};

use super::tls::AmqpTlsConfig;

/// The RabbitMQ connector's configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitMqConfig {
    /// AMQP URI of the broker, for example
    /// `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: String,
    /// TLS for an `amqps://` URL: CAs to trust, a client certificate.
    #[serde(default, skip_serializing_if = "AmqpTlsConfig::is_empty")]
    pub tls: AmqpTlsConfig,
    /// Most unacknowledged deliveries per consumed queue (`basic.qos`): the
    /// backpressure between the broker and the pipeline.
    #[serde(default = "default_prefetch")]
    pub prefetch: u16,
    /// Exchanges to declare at every (re)connection.
    #[serde(default)]
    pub exchanges: Vec<ExchangeConfig>,
    /// Queues to declare, and whether to consume tasks from them.
    #[serde(default)]
    pub queues: Vec<QueueConfig>,
    /// Bindings of queues to exchanges.
    #[serde(default)]
    pub bindings: Vec<BindingConfig>,
    /// Topic exchange (declared) that receives each final result, with
    /// routing key `{tenant}.{kind}`; empty to publish none.
    #[serde(default = "default_results_exchange")]
    pub results_exchange: String,
    /// Topic exchange (declared) that receives each rejected message, with
    /// routing key = the rejection code and the reason in the headers
    /// `x-tidewater-reason` and `x-tidewater-code`.
    #[serde(default = "default_dead_letter_exchange")]
    pub dead_letter_exchange: String,
    /// Topic exchange (declared) that receives each alert event raised or
    /// resolved by the monitoring agent, as JSON with routing key
    /// `{alert}.{state}`; empty to publish none.
    #[serde(default = "default_alerts_exchange")]
    pub alerts_exchange: String,
    /// Whether remote executor agents (`tidewater agent`) may join through
    /// the control exchange and run assignments sent to them.
    #[serde(default)]
    pub agents: bool,
    /// Tokens of the agents allowed to join, by executor id. When set, a
    /// join, heartbeat or leave whose credential (`tidewater agent
    /// --token`) is missing or wrong is refused, logged, and (for a join)
    /// answered so that the agent stops. Empty: any agent that reaches the
    /// control exchange may join (only for a broker trusted by other means).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub agent_tokens: std::collections::BTreeMap<String, String>,
    /// Topic exchange (declared) where agents announce themselves (join,
    /// heartbeat, leave); the pipeline consumes `{control_exchange}.pipeline`.
    #[serde(default = "default_control_exchange")]
    pub control_exchange: String,
    /// Direct exchange (declared) that routes assignments to each agent's
    /// queue by executor id.
    #[serde(default = "default_assignments_exchange")]
    pub assignments_exchange: String,
    /// First wait before reconnecting after the connection is lost, in ms.
    #[serde(default = "default_reconnect_initial_ms")]
    pub reconnect_initial_ms: u64,
    /// Longest wait between reconnection attempts, in ms (the wait doubles
    /// after each failed attempt up to this).
    #[serde(default = "default_reconnect_max_ms")]
    pub reconnect_max_ms: u64,
}

/// An exchange to declare.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeConfig {
    /// Its name.
    pub name: String,
    /// `direct`, `fanout`, `topic` or `headers`.
    #[serde(default)]
    pub kind: ExchangeType,
    /// Whether it survives a broker restart.
    #[serde(default = "default_true")]
    pub durable: bool,
}

/// Exchange types.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExchangeType {
    /// Exact routing-key match.
    Direct,
    /// Every bound queue.
    Fanout,
    /// Routing-key patterns (`*`, `#`).
    #[default]
    Topic,
    /// Header matches.
    Headers,
}

/// A queue to declare (and consume).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Its name.
    pub name: String,
    /// Whether it survives a broker restart (and its persistent messages
    /// with it).
    #[serde(default = "default_true")]
    pub durable: bool,
    /// Whether to consume tasks from it.
    #[serde(default = "default_true")]
    pub consume: bool,
}

/// A binding of a queue to an exchange.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingConfig {
    /// The queue.
    pub queue: String,
    /// The exchange.
    pub exchange: String,
    /// The binding key (`#` takes everything on a topic exchange).
    #[serde(default = "default_binding_key")]
    pub routing_key: String,
}

fn default_prefetch() -> u16 {
    512
}
fn default_results_exchange() -> String {
    "tidewater.results".to_string()
}
fn default_dead_letter_exchange() -> String {
    "tidewater.dead_letters".to_string()
}
fn default_alerts_exchange() -> String {
    "tidewater.alerts".to_string()
}
fn default_control_exchange() -> String {
    "tidewater.control".to_string()
}
fn default_assignments_exchange() -> String {
    "tidewater.assignments".to_string()
}
fn default_reconnect_initial_ms() -> u64 {
    100
}
fn default_reconnect_max_ms() -> u64 {
    5_000
}
fn default_true() -> bool {
    true
}
fn default_binding_key() -> String {
    "#".to_string()
}

impl RabbitMqConfig {
    /// A config for `url` with the defaults and nothing declared.
    pub fn new(url: impl Into<String>) -> Self {
        RabbitMqConfig {
            url: url.into(),
            tls: AmqpTlsConfig::default(),
            prefetch: default_prefetch(),
            exchanges: Vec::new(),
            queues: Vec::new(),
            bindings: Vec::new(),
            results_exchange: default_results_exchange(),
            dead_letter_exchange: default_dead_letter_exchange(),
            alerts_exchange: default_alerts_exchange(),
            agents: false,
            agent_tokens: std::collections::BTreeMap::new(),
            control_exchange: default_control_exchange(),
            assignments_exchange: default_assignments_exchange(),
            reconnect_initial_ms: default_reconnect_initial_ms(),
            reconnect_max_ms: default_reconnect_max_ms(),
        }
    }

    /// Adds a durable queue to consume tasks from.
    pub fn consume(mut self, queue: impl Into<String>) -> Self {
        self.queues.push(QueueConfig {
            name: queue.into(),
            durable: true,
            consume: true,
        });
        self
    }

    /// The queues tasks are consumed from, in order.
    pub fn consumed_queues(&self) -> impl Iterator<Item = &QueueConfig> {
        self.queues.iter().filter(|q| q.consume)
    }

    /// Checks what the schema alone cannot; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let invalid = |key: &str, detail: String| Err((format!("rabbitmq.{key}"), detail));
        if !(self.url.starts_with("amqp://") || self.url.starts_with("amqps://")) {
            return invalid("url", "must start with amqp:// or amqps://".into());
        }
        if let Err((key, detail)) = self.tls.validate() {
            return Err((key.to_string(), detail));
        }
        if self.prefetch == 0 {
            return invalid(
                "prefetch",
                "must be at least 1 (0 would be unbounded)".into(),
            );
        }
        if self.reconnect_initial_ms == 0 || self.reconnect_max_ms < self.reconnect_initial_ms {
            return invalid(
                "reconnect_initial_ms",
                "must be at least 1 and at most reconnect_max_ms".into(),
            );
        }
        if self.agents && (self.control_exchange.is_empty() || self.assignments_exchange.is_empty())
        {
            return invalid(
                "control_exchange",
                "agents need a control and an assignments exchange".into(),
            );
        }
        if self.consumed_queues().count() > usize::from(u8::MAX) {
            return invalid("queues", "at most 255 consumed queues".into());
        }
        for binding in &self.bindings {
            if !self.queues.iter().any(|q| q.name == binding.queue) {
                return invalid(
                    "bindings.queue",
                    format!("{:?} is not a declared queue", binding.queue),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_and_validation_names_the_key() {
        let config: RabbitMqConfig = toml::from_str(
            "url = \"amqp://127.0.0.1:5672/%2f\"\n[[queues]]\nname = \"q\"\n[[bindings]]\nqueue = \"q\"\nexchange = \"x\"",
        )
        .expect("parses");
        assert_eq!(config.prefetch, 512);
        assert_eq!(config.bindings[0].routing_key, "#");
        assert!(config.validate().is_ok());
        let mut bad = config.clone();
        bad.prefetch = 0;
        assert_eq!(bad.validate().expect_err("prefetch").0, "rabbitmq.prefetch");
        let mut bad = config;
        bad.bindings[0].queue = "other".into();
        assert_eq!(
            bad.validate().expect_err("binding").0,
            "rabbitmq.bindings.queue"
        );
    }
}
