//! One connection's session: the connection, its publisher channel in
//! confirm mode, one consumer task per consumed queue (each delivery is
//! recorded as pending and submitted to the pipeline with a packed
//! generation and delivery tag), and the loop that serves commands and
//! outcomes until the session ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use tidewater_operators::model::{TraceParent, TRACEPARENT_HEADER};
use tokio::sync::mpsc;

use super::config::RabbitMqConfig;
use super::connection::{hold, Ended};
use super::error::{redact_url, RabbitMqError};
use super::handle::{Command, RabbitMqContext};
use super::messages::{header_text, Outbound};
use super::pending::{InFlight, Pending};
use super::tag::DeliveryRef;
use super::topology;

/// Most outcomes handled (published, confirmed, acknowledged) as one batch.
const OUTCOME_BATCH: usize = 8192;
/// How often the connection's state is checked while idle.
const HEALTH_CHECK: Duration = Duration::from_millis(500);
/// How long a graceful close may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// One consumed queue on one connection.
pub(super) struct QueueSession {
    pub(super) name: String,
    pub(super) channel: Channel,
    pub(super) consumer_tag: String,
    pub(super) pending: Arc<Mutex<Pending>>,
    pub(super) consumer: Option<tokio::task::JoinHandle<()>>,
}

/// One connection: its channels, consumers and pending deliveries.
pub(super) struct Session<'a> {
    pub(super) config: &'a RabbitMqConfig,
    pub(super) context: &'a RabbitMqContext,
    pub(super) generation: u32,
    pub(super) connection: Connection,
    pub(super) publisher: Channel,
    pub(super) queues: Vec<QueueSession>,
    pub(super) failures: mpsc::UnboundedReceiver<RabbitMqError>,
    pub(super) failure_tx: mpsc::UnboundedSender<RabbitMqError>,
    pub(super) watcher: tokio::task::JoinHandle<()>,
}

impl<'a> Session<'a> {
    pub(super) async fn open(
        config: &'a RabbitMqConfig,
        context: &'a RabbitMqContext,
        generation: u32,
        consuming: bool,
    ) -> Result<Session<'a>, RabbitMqError> {
        let connection = super::tls::connect(&config.url, &config.tls, "tidewater".into()).await?;
        let (failure_tx, failures) = mpsc::unbounded_channel();
        // Connection-level errors (the broker closing it, a dead socket)
        // end the session even when no consumer or publisher notices.
        let mut events = connection.events_listener();
        let events_failures = failure_tx.clone();
        let watcher = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                if let lapin::Event::Error(source) = event {
                    let _ = events_failures.send(RabbitMqError::Amqp {
                        operation: "the connection".into(),
                        source,
                    });
                }
            }
        });
        let publisher = connection
            .create_channel()
            .await
            .map_err(RabbitMqError::amqp("opening the publishing channel"))?;
        topology::declare(&publisher, config).await?;
        publisher
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(RabbitMqError::amqp("enabling publisher confirms"))?;
        let mut session = Session {
            config,
            context,
            generation,
            connection,
            publisher,
            queues: Vec::new(),
            failures,
            failure_tx,
            watcher,
        };
        for (index, queue) in config.consumed_queues().enumerate() {
            let channel = session
                .connection
                .create_channel()
                .await
                .map_err(RabbitMqError::amqp("opening a consuming channel"))?;
            channel
                .basic_qos(config.prefetch, BasicQosOptions::default())
                .await
                .map_err(RabbitMqError::amqp("setting the prefetch"))?;
            let consumer_tag = format!("tidewater-{}-{generation}-{index}", std::process::id());
            let mut queue_session = QueueSession {
                name: queue.name.clone(),
                channel,
                consumer_tag,
                pending: Arc::new(Mutex::new(Pending::default())),
                consumer: None,
            };
            if consuming {
                let source = context.first_source.saturating_add(index as u16);
                session.start_consumer(&mut queue_session, source).await?;
            }
            session.queues.push(queue_session);
        }
        tracing::info!(
            url = %redact_url(&config.url),
            generation,
            queues = session.queues.len(),
            "RabbitMQ connected"
        );
        Ok(session)
    }

    pub(super) async fn start_consumer(
        &self,
        queue: &mut QueueSession,
        source: u16,
    ) -> Result<(), RabbitMqError> {
        let mut consumer = queue
            .channel
            .basic_consume(
                queue.name.as_str().into(),
                queue.consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(RabbitMqError::amqp(format!(
                "consuming queue {:?}",
                queue.name
            )))?;
        let ingress = Arc::clone(&self.context.ingress);
        let pending = Arc::clone(&queue.pending);
        let failures = self.failure_tx.clone();
        let name = queue.name.clone();
        let generation = self.generation;
        queue.consumer = Some(tokio::spawn(async move {
            loop {
                // The pipeline's bound (limits.max_queued): take no more
                // until it drains; unacknowledged deliveries past the
                // prefetch stay with the broker.
                while ingress.is_saturated() {
                    tokio::time::sleep(crate::ingest::SATURATED_PAUSE).await;
                }
                let Some(delivery) = consumer.next().await else {
                    break;
                };
                let delivery = match delivery {
                    Ok(delivery) => delivery,
                    Err(source) => {
                        let _ = failures.send(RabbitMqError::Amqp {
                            operation: format!("consuming queue {name:?}"),
                            source,
                        });
                        return;
                    }
                };
                let tag = delivery.delivery_tag;
                let properties = &delivery.properties;
                let entry = InFlight {
                    body: delivery.data.clone(),
                    reply_to: properties.reply_to().as_ref().map(|s| s.to_string()),
                    correlation_id: properties.correlation_id().as_ref().map(|s| s.to_string()),
                    redelivered: delivery.redelivered,
                };
                if let Ok(mut pending) = pending.lock() {
                    pending.deliver(tag, entry);
                }
                let packed = DeliveryRef {
                    generation,
                    delivery_tag: tag,
                }
                .pack();
                let trace = header_text(properties, TRACEPARENT_HEADER)
                    .and_then(|value| TraceParent::parse(&value));
                if ingress
                    .submit_json(&name, delivery.data, source, packed, trace)
                    .is_err()
                {
                    // Shutting down: leave the rest to the broker.
                    return;
                }
            }
            let _ = failures.send(RabbitMqError::Amqp {
                operation: format!("consuming queue {name:?}"),
                source: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                    lapin::ConnectionState::Closed,
                )),
            });
        }));
        Ok(())
    }

    pub(super) async fn serve(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
        consuming: &mut bool,
        held: &mut Vec<Outbound>,
    ) -> Ended {
        let mut health = tokio::time::interval(HEALTH_CHECK);
        loop {
            if !held.is_empty() {
                // Events held while disconnected, or just received.
                if let Err(e) = self.publish_confirmed(held.clone()).await {
                    return Ended::Failed(e);
                }
                held.clear();
            }
            let command = tokio::select! {
                command = commands.recv() => command,
                Some(failure) = self.failures.recv() => {
                    if *consuming || !self.connection.status().connected() {
                        return Ended::Failed(failure);
                    }
                    // A consumer ending because we cancelled it.
                    continue;
                }
                _ = health.tick() => {
                    if self.connection.status().connected() {
                        continue;
                    }
                    return Ended::Failed(RabbitMqError::Amqp {
                        operation: "checking the connection".into(),
                        source: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                            lapin::ConnectionState::Closed,
                        )),
                    });
                }
            };
            let Some(command) = command else {
                return Ended::Dropped;
            };
            let mut finished = Vec::new();
            let mut rejected = Vec::new();
            let mut next = Some(command);
            let mut control = None;
            while let Some(command) = next.take() {
                match command {
                    Command::Finished(batch) => finished.extend(batch),
                    Command::Rejected(batch) => rejected.extend(batch),
                    Command::Publish(message) => hold(held, *message),
                    other => {
                        control = Some(other);
                        break;
                    }
                }
                if finished.len() + rejected.len() < OUTCOME_BATCH {
                    next = commands.try_recv().ok();
                }
            }
            if !(finished.is_empty() && rejected.is_empty()) {
                if let Err(e) = self.handle_outcomes(finished, rejected).await {
                    return Ended::Failed(e);
                }
            }
            match control {
                Some(Command::StopConsuming(reply)) => {
                    *consuming = false;
                    self.stop_consumers().await;
                    let _ = reply.send(());
                }
                Some(Command::Finish(reply)) => return Ended::Finish(reply),
                _ => {}
            }
        }
    }

    pub(super) async fn stop_consumers(&mut self) {
        for queue in &mut self.queues {
            if let Some(consumer) = queue.consumer.take() {
                if let Err(e) = queue
                    .channel
                    .basic_cancel(
                        queue.consumer_tag.as_str().into(),
                        BasicCancelOptions::default(),
                    )
                    .await
                {
                    tracing::warn!(queue = %queue.name, error = %e, "cancelling the consumer");
                }
                consumer.abort();
            }
        }
    }

    pub(super) async fn close(self) {
        self.watcher.abort();
        for queue in &self.queues {
            if let Some(consumer) = &queue.consumer {
                consumer.abort();
            }
            let left = queue.pending.lock().map(|p| p.len()).unwrap_or_default();
            if left > 0 {
                tracing::info!(queue = %queue.name, deliveries = left, "left unacknowledged; the broker redelivers them");
            }
        }
        let close = self.connection.close(200, "tidewater stopping".into());
        match tokio::time::timeout(CLOSE_TIMEOUT, close).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing the RabbitMQ connection"),
            Err(_) => tracing::debug!("closing the RabbitMQ connection timed out"),
        }
    }
}
