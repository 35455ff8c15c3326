//! The running connector's handle: what the pipeline holds to register
//! the connector's outcome listener, wait for the group assignment, stop
//! consuming, produce alert events and finish. [`KafkaHandle::start`]
//! creates the clients and spawns the outcome task ([`super::connector`]);
//! every later call is a [`Command`] to it.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, oneshot, watch};

use tidewater_operators::model::Rejection;

use super::clients;
use super::clients::ProducerContext;
use super::config::KafkaConfig;
use super::connector::Connector;
use super::consumer::{GroupConsumer, GroupContext, Shared};
use super::error::KafkaError;
use super::messages::{alert_message, Outbound};
use super::offsets::Offsets;
use crate::ingest::RecordIngress;
use crate::outcome::{Finished, OutcomeListener};
use crate::store::TaskStore;

/// What the handles and the outcome listener ask of the outcome task.
pub(super) enum Command {
    /// Outcomes recorded for finished tasks.
    Finished(Vec<Finished>),
    /// Records rejected before they became tasks.
    Rejected(Vec<Rejection>),
    /// An alert event for the alerts topic.
    Alert(Outbound),
    /// Stop the consumer thread; answer when it has ended.
    StopConsuming(oneshot::Sender<()>),
    /// Handle what is left, commit, leave the group, and answer.
    Finish(oneshot::Sender<()>),
}

/// Passes recorded outcomes to the connector's task.
struct Listener {
    commands: mpsc::UnboundedSender<Command>,
}

impl OutcomeListener for Listener {
    fn finished(&self, batch: Vec<Finished>) {
        // After the connector stopped nothing is committed any more; the
        // group resumes from the last commit on the next start.
        let _ = self.commands.send(Command::Finished(batch));
    }

    fn rejected(&self, batch: Vec<Rejection>) {
        let _ = self.commands.send(Command::Rejected(batch));
    }
}

/// A started Kafka connector (clones share it).
#[derive(Clone)]
pub struct KafkaHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// Where alert events go (empty: nowhere).
    alerts_topic: String,
    listener: Arc<Listener>,
    sources: Vec<u16>,
    assignments: watch::Receiver<u64>,
}

/// What the connector needs from the pipeline.
pub struct KafkaContext {
    /// Where consumed records go.
    pub ingress: Arc<dyn RecordIngress>,
    /// Where outcomes are recorded (read for tasks consumed again).
    pub store: Arc<dyn TaskStore>,
    /// The source number of the first consumed topic; the others follow.
    pub first_source: u16,
}

impl KafkaHandle {
    /// Validates `config`, creates the clients and starts the connector on
    /// `runtime`. It creates missing topics, joins the group and starts
    /// consuming in the background.
    pub fn start(
        config: KafkaConfig,
        context: KafkaContext,
        runtime: &tokio::runtime::Handle,
    ) -> Result<KafkaHandle, KafkaError> {
        config
            .validate()
            .map_err(|(key, detail)| KafkaError::Config { key, detail })?;
        let sources: Vec<u16> = (0..config.topics.len())
            .map(|i| context.first_source.saturating_add(i as u16))
            .collect();
        let (assignments_tx, assignments) = watch::channel(0);
        let shared = Arc::new(Shared {
            topics: config.topics.clone(),
            offsets: Mutex::new(Offsets::default()),
            room: Condvar::new(),
            consuming: AtomicBool::new(true),
            assignments: assignments_tx,
        });
        let consumer: GroupConsumer = clients::consumer_config(&config)
            .create_with_context(GroupContext {
                shared: Arc::clone(&shared),
            })
            .map_err(|source| KafkaError::Client {
                client: "consumer",
                brokers: config.brokers.clone(),
                source,
            })?;
        let producer: FutureProducer<ProducerContext> = clients::producer_config(&config)
            .create_with_context(ProducerContext)
            .map_err(|source| KafkaError::Client {
                client: "producer",
                brokers: config.brokers.clone(),
                source,
            })?;
        let (commands, receiver) = mpsc::unbounded_channel();
        let alerts_topic = config.alerts_topic.clone();
        let connector = Connector {
            config,
            context,
            shared,
            consumer: Arc::new(consumer),
            producer,
            thread: None,
            retry: Vec::new(),
            deliveries: tokio::task::JoinSet::new(),
        };
        runtime.spawn(connector.run(receiver));
        Ok(KafkaHandle {
            listener: Arc::new(Listener {
                commands: commands.clone(),
            }),
            commands,
            alerts_topic,
            sources,
            assignments,
        })
    }

    /// Produces an alert event to the alerts topic, keyed `routing_key`
    /// (`{alert}.{state}`). Best effort, like the other alert sinks: the
    /// producer retries within its delivery timeout, and a failure is
    /// logged; nothing is produced when `alerts_topic` is empty.
    pub fn publish_alert(&self, routing_key: &str, body: Vec<u8>) {
        if self.alerts_topic.is_empty() {
            return;
        }
        let _ = self.commands.send(Command::Alert(alert_message(
            &self.alerts_topic,
            routing_key,
            body,
        )));
    }

    /// The source numbers of the consumed topics, in config order: register
    /// [`listener`](Self::listener) for each.
    pub fn sources(&self) -> &[u16] {
        &self.sources
    }

    /// Receives recorded outcomes of this connector's messages.
    pub fn listener(&self) -> Arc<dyn OutcomeListener> {
        self.listener.clone()
    }

    /// Waits until the consumer has joined the group and received its
    /// first assignment; false after `timeout`.
    pub async fn wait_assigned(&self, timeout: Duration) -> bool {
        let mut assignments = self.assignments.clone();
        tokio::time::timeout(timeout, assignments.wait_for(|n| *n > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops consuming (messages not yet handed to the pipeline stay after
    /// the committed offset) and waits until the consumer thread ended.
    pub async fn stop_consuming(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::StopConsuming(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Produces every outcome received so far, commits the offsets they
    /// complete, and leaves the group. Call after the pipeline's workers
    /// have stopped.
    pub async fn finish(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Finish(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
