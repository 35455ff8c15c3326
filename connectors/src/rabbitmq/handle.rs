//! The running connector's handle: what the pipeline holds to register
//! the connector's outcome listener, wait for the connection, stop
//! consuming, publish alert events and finish. Every call is a [`Command`]
//! to the connection task ([`super::connection`]), which owns the
//! broker connection.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch};

use tidewater_operators::model::Rejection;

use super::config::RabbitMqConfig;
use super::connection::run;
use super::error::RabbitMqError;
use super::messages::{event_message, Outbound};
use crate::ingest::RecordIngress;
use crate::outcome::{Finished, OutcomeListener};
use crate::store::TaskStore;

/// What the handles and the outcome listener ask of the connection task.
pub(super) enum Command {
    /// Outcomes recorded for finished tasks.
    Finished(Vec<Finished>),
    /// Records rejected before they became tasks.
    Rejected(Vec<Rejection>),
    /// A message to publish with a confirm, held across reconnections.
    Publish(Box<Outbound>),
    /// Cancel the consumers; answer when they are.
    StopConsuming(oneshot::Sender<()>),
    /// Handle what is left, close, and answer.
    Finish(oneshot::Sender<()>),
}

/// Passes recorded outcomes to the connector's task.
struct Listener {
    commands: mpsc::UnboundedSender<Command>,
}

impl OutcomeListener for Listener {
    fn finished(&self, batch: Vec<Finished>) {
        // After the connector stopped, nothing is acknowledged any more; the
        // broker redelivers on the next start.
        let _ = self.commands.send(Command::Finished(batch));
    }

    fn rejected(&self, batch: Vec<Rejection>) {
        let _ = self.commands.send(Command::Rejected(batch));
    }
}

/// A started RabbitMQ connector (clones share it).
#[derive(Clone)]
pub struct RabbitMqHandle {
    commands: mpsc::UnboundedSender<Command>,
    alerts_exchange: String,
    listener: Arc<Listener>,
    sources: Vec<u16>,
    connected: watch::Receiver<u32>,
}

/// What the connector needs from the pipeline.
pub struct RabbitMqContext {
    /// Where consumed records go.
    pub ingress: Arc<dyn RecordIngress>,
    /// Where outcomes are recorded (read for redelivered tasks).
    pub store: Arc<dyn TaskStore>,
    /// The source number of the first consumed queue; the others follow.
    pub first_source: u16,
}

impl RabbitMqHandle {
    /// Validates `config` and starts the connector on `runtime`. It connects
    /// in the background (retrying with backoff) and starts consuming once
    /// the topology is declared.
    pub fn start(
        config: RabbitMqConfig,
        context: RabbitMqContext,
        runtime: &tokio::runtime::Handle,
    ) -> Result<RabbitMqHandle, RabbitMqError> {
        config
            .validate()
            .map_err(|(key, detail)| RabbitMqError::Config { key, detail })?;
        let sources = (0..config.consumed_queues().count())
            .map(|i| context.first_source.saturating_add(i as u16))
            .collect();
        let (commands, receiver) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(0);
        let alerts_exchange = config.alerts_exchange.clone();
        runtime.spawn(run(config, context, receiver, connected_tx));
        Ok(RabbitMqHandle {
            alerts_exchange,
            listener: Arc::new(Listener {
                commands: commands.clone(),
            }),
            commands,
            sources,
            connected,
        })
    }

    /// The source numbers of the consumed queues, in config order: register
    /// [`listener`](Self::listener) for each.
    pub fn sources(&self) -> &[u16] {
        &self.sources
    }

    /// Receives recorded outcomes of this connector's deliveries.
    pub fn listener(&self) -> Arc<dyn OutcomeListener> {
        self.listener.clone()
    }

    /// Waits until the connector is connected with its topology declared
    /// and its consumers started; false after `timeout`.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut connected = self.connected.clone();
        tokio::time::timeout(timeout, connected.wait_for(|g| *g > 0))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Stops consuming (deliveries not yet handed to the pipeline are left
    /// to the broker) and waits until the consumers are cancelled.
    pub async fn stop_consuming(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::StopConsuming(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Publishes an alert event (`body`, JSON) to the alerts exchange with
    /// routing key `routing_key`, with a publisher confirm. While the broker
    /// is unreachable events are held (the newest 10,000) and published
    /// after reconnecting. Does nothing when no alerts exchange is set.
    pub fn publish_alert(&self, routing_key: &str, body: Vec<u8>) {
        if self.alerts_exchange.is_empty() {
            return;
        }
        let _ = self.commands.send(Command::Publish(Box::new(event_message(
            &self.alerts_exchange,
            routing_key,
            body,
        ))));
    }

    /// Publishes and acknowledges every outcome received so far, then closes
    /// the connection. Call after the pipeline's workers have stopped.
    pub async fn finish(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Finish(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}
