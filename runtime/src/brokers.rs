//! Broker connectors started with the pipeline: each consumes tasks into the
//! ingress and hears back about recorded outcomes through the
//! acknowledgement registry, so that it acknowledges only durable outcomes.
//!
//! ```text
//!  [rabbitmq] config ─► RabbitMqHandle ─► Ingress (submit_json, source n, packed tag)
//!  [kafka] config ────► KafkaHandle ────► Ingress (submit_json, source n, offset tag)
//!  [mongodb_source] ──► MongoSourceHandle ─► store.admit, Ingress (submit_json; bad ones: source n)
//!                              ▲
//!  RecordResults / DeadLetter sinks ─► AckRegistry::finished / rejected ─► listener(source n)
//! ```
//!
//! Shutdown order matters: stop consuming, let the workers drain, then let
//! each connector publish and acknowledge the last outcomes before the tokio
//! runtime stops.

use std::sync::Arc;
use std::time::Duration;

use tidewater_connectors::ingest::{IngressClosed, RecordIngress};
use tidewater_connectors::kafka::{KafkaContext, KafkaHandle};
use tidewater_connectors::mongo_source::{MongoSourceContext, MongoSourceHandle};
use tidewater_connectors::rabbitmq::{AgentEvents, AgentLink, RabbitMqContext, RabbitMqHandle};
use tidewater_connectors::store::TaskStore;
use tidewater_operators::model::{ControlCommand, TraceParent};

use crate::acks::AckRegistry;
use crate::config::Config;
use crate::error::RuntimeError;
use crate::ingress::Ingress;
use crate::monitoring::AlertSink;
use crate::remote_backend::AgentHub;

/// Source number of the first consumed RabbitMQ queue (the others follow).
pub const RABBITMQ_FIRST_SOURCE: u16 = 0x100;
/// Source number of the first consumed Kafka topic (the others follow).
pub const KAFKA_FIRST_SOURCE: u16 = 0x200;
/// Source number of the MongoDB change-stream source.
pub const MONGODB_SOURCE: u16 = 0x300;

/// How long shutdown waits for a connector to flush its last outcomes.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

impl RecordIngress for Ingress {
    fn submit_json(
        &self,
        source_name: &str,
        bytes: Vec<u8>,
        ack_source: u16,
        tag: u64,
        trace: Option<TraceParent>,
    ) -> Result<(), IngressClosed> {
        self.submit_json_traced(source_name, bytes, ack_source, tag, trace)
            .map_err(|_| IngressClosed)
    }

    fn submit_control(&self, command: ControlCommand) -> Result<(), IngressClosed> {
        Ingress::submit_control(self, command).map_err(|_| IngressClosed)
    }

    fn is_saturated(&self) -> bool {
        Ingress::is_saturated(self)
    }
}

impl AlertSink for RabbitMqHandle {
    fn publish(&self, routing_key: &str, body: Vec<u8>) {
        self.publish_alert(routing_key, body);
    }
}

impl AlertSink for KafkaHandle {
    fn publish(&self, routing_key: &str, body: Vec<u8>) {
        self.publish_alert(routing_key, body);
    }
}

/// The connectors a pipeline runs.
#[derive(Default)]
pub struct Brokers {
    rabbitmq: Option<RabbitMqHandle>,
    kafka: Option<KafkaHandle>,
    mongodb_source: Option<MongoSourceHandle>,
}

impl Brokers {
    /// Starts the connectors `config` names, registering their listeners.
    pub fn start(
        config: &Config,
        runtime: &tokio::runtime::Handle,
        ingress: &Ingress,
        acks: &AckRegistry,
        store: &Arc<dyn TaskStore>,
        agents: Option<&Arc<AgentHub>>,
    ) -> Result<Brokers, RuntimeError> {
        let mut brokers = Brokers::default();
        if let Some(rabbitmq) = &config.rabbitmq {
            let handle = RabbitMqHandle::start(
                rabbitmq.clone(),
                RabbitMqContext {
                    ingress: Arc::new(ingress.clone()),
                    store: Arc::clone(store),
                    first_source: RABBITMQ_FIRST_SOURCE,
                },
                runtime,
            )
            .map_err(|e| RuntimeError::Broker(e.to_string()))?;
            for &source in handle.sources() {
                acks.register_listener(source, handle.listener());
            }
            brokers.rabbitmq = Some(handle);
            if let Some(hub) = agents {
                hub.set_link(AgentLink::start(
                    rabbitmq.clone(),
                    Arc::new(ingress.clone()),
                    Arc::clone(hub) as Arc<dyn AgentEvents>,
                    runtime,
                ));
            }
        }
        if let Some(kafka) = &config.kafka {
            let handle = KafkaHandle::start(
                kafka.clone(),
                KafkaContext {
                    ingress: Arc::new(ingress.clone()),
                    store: Arc::clone(store),
                    first_source: KAFKA_FIRST_SOURCE,
                },
                runtime,
            )
            .map_err(|e| RuntimeError::Broker(e.to_string()))?;
            for &source in handle.sources() {
                acks.register_listener(source, handle.listener());
            }
            brokers.kafka = Some(handle);
        }
        if let Some(source) = &config.mongodb_source {
            let handle = MongoSourceHandle::start(
                source.clone(),
                MongoSourceContext {
                    ingress: Arc::new(ingress.clone()),
                    store: Arc::clone(store),
                    source: MONGODB_SOURCE,
                    limits: config.limits.clone(),
                },
                runtime,
            )
            .map_err(|e| RuntimeError::Broker(e.to_string()))?;
            acks.register_listener(handle.source(), handle.listener());
            brokers.mongodb_source = Some(handle);
        }
        Ok(brokers)
    }

    /// The connectors that publish alert events.
    pub fn alert_sinks(&self) -> Vec<Arc<dyn AlertSink>> {
        let mut sinks: Vec<Arc<dyn AlertSink>> = Vec::new();
        if let Some(rabbitmq) = &self.rabbitmq {
            sinks.push(Arc::new(rabbitmq.clone()));
        }
        if let Some(kafka) = &self.kafka {
            sinks.push(Arc::new(kafka.clone()));
        }
        sinks
    }

    /// The RabbitMQ connector, when configured.
    pub fn rabbitmq(&self) -> Option<&RabbitMqHandle> {
        self.rabbitmq.as_ref()
    }

    /// The Kafka connector, when configured.
    pub fn kafka(&self) -> Option<&KafkaHandle> {
        self.kafka.as_ref()
    }

    /// The MongoDB change-stream source, when configured.
    pub fn mongodb_source(&self) -> Option<&MongoSourceHandle> {
        self.mongodb_source.as_ref()
    }

    /// Stops taking new deliveries.
    pub fn stop_consuming(&self, runtime: &tokio::runtime::Handle) {
        if let Some(source) = &self.mongodb_source {
            source.stop_consuming();
        }
        if let Some(kafka) = &self.kafka {
            let stopped = runtime.block_on(async {
                tokio::time::timeout(FLUSH_TIMEOUT, kafka.stop_consuming()).await
            });
            if stopped.is_err() {
                tracing::warn!("the Kafka consumer did not stop in time");
            }
        }
        if let Some(rabbitmq) = &self.rabbitmq {
            let stopped = runtime.block_on(async {
                tokio::time::timeout(FLUSH_TIMEOUT, rabbitmq.stop_consuming()).await
            });
            if stopped.is_err() {
                tracing::warn!("RabbitMQ consumers did not stop in time");
            }
        }
    }

    /// Publishes and acknowledges the outcomes received so far and closes
    /// the connections. Call after the workers have stopped.
    pub fn finish(&self, runtime: &tokio::runtime::Handle) {
        if let Some(source) = &self.mongodb_source {
            let done = runtime
                .block_on(async { tokio::time::timeout(FLUSH_TIMEOUT, source.finish()).await });
            if done.is_err() {
                tracing::warn!(
                    "the MongoDB source did not save its position in time; documents after the last saved one are read again"
                );
            }
        }
        if let Some(kafka) = &self.kafka {
            let done = runtime
                .block_on(async { tokio::time::timeout(FLUSH_TIMEOUT, kafka.finish()).await });
            if done.is_err() {
                tracing::warn!(
                    "Kafka did not flush in time; uncommitted messages will be consumed again"
                );
            }
        }
        if let Some(rabbitmq) = &self.rabbitmq {
            let done = runtime
                .block_on(async { tokio::time::timeout(FLUSH_TIMEOUT, rabbitmq.finish()).await });
            if done.is_err() {
                tracing::warn!(
                    "RabbitMQ did not flush in time; unacknowledged messages will be redelivered"
                );
            }
        }
    }
}
