//! The connector's connection loop: consume, hand records to the pipeline,
//! publish outcomes with confirms, acknowledge, and reconnect with backoff.
//!
//! One tokio task owns the connection. Per consumed queue, a consumer task
//! records each delivery as pending and submits it to the pipeline with a
//! packed (generation, delivery tag). Recorded outcomes come back as
//! commands through the [`OutcomeListener`]; the owner publishes results,
//! replies and dead letters on a confirm-mode channel, waits for the
//! broker's confirms, and only then acknowledges the deliveries.
//!
//! When the connection or a channel fails, everything of that generation is
//! dropped unacknowledged: the broker redelivers it on the next connection,
//! and outcomes still arriving for the old generation are ignored. A
//! redelivered task whose outcome the store already holds is acknowledged,
//! and its stored result is published again (the earlier publication may
//! not have been confirmed), so results on the broker are at least once,
//! each with the task id as message id; the store records each exactly once.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, PublisherConfirm};
use tokio::sync::{mpsc, oneshot, watch};

use tidewater_operators::model::Rejection;

use super::config::RabbitMqConfig;
use super::error::{redact_url, RabbitMqError};
use super::messages::{
    dead_letter_message, event_message, reply_message, result_message, Outbound,
};
use super::pending::{InFlight, Pending};
use super::tag::DeliveryRef;
use super::topology;
use crate::ingest::RecordIngress;
use crate::outcome::{Finished, OutcomeListener};
use crate::store::{StoredTask, TaskStore};

/// Most outcomes handled (published, confirmed, acknowledged) as one batch.
const OUTCOME_BATCH: usize = 8192;
/// How often the connection's state is checked while idle.
const HEALTH_CHECK: Duration = Duration::from_millis(500);
/// How long a graceful close may take before the connection is dropped.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// Most events held for publication while the broker is unreachable; the
/// oldest are dropped beyond this (with a warning).
const MAX_HELD_EVENTS: usize = 10_000;

enum Command {
    Finished(Vec<Finished>),
    Rejected(Vec<Rejection>),
    /// A message to publish with a confirm, held across reconnections.
    Publish(Box<Outbound>),
    StopConsuming(oneshot::Sender<()>),
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

/// Why a connection's session ended.
enum Ended {
    /// Asked to finish; answer when closed.
    Finish(oneshot::Sender<()>),
    /// Every handle is gone.
    Dropped,
    /// The connection or a channel failed.
    Failed(RabbitMqError),
}

async fn run(
    config: RabbitMqConfig,
    context: RabbitMqContext,
    mut commands: mpsc::UnboundedReceiver<Command>,
    connected: watch::Sender<u32>,
) {
    let initial = Duration::from_millis(config.reconnect_initial_ms);
    let max = Duration::from_millis(config.reconnect_max_ms);
    let mut backoff = initial;
    let mut generation = 0u32;
    let mut consuming = true;
    // Events (alerts) not yet confirmed by the broker.
    let mut held: Vec<Outbound> = Vec::new();
    loop {
        generation = generation.wrapping_add(1).max(1);
        let ended = match Session::open(&config, &context, generation, consuming).await {
            Ok(mut session) => {
                backoff = initial;
                let _ = connected.send(generation);
                let ended = session
                    .serve(&mut commands, &mut consuming, &mut held)
                    .await;
                let _ = connected.send(0);
                session.close().await;
                ended
            }
            Err(e) => Ended::Failed(e),
        };
        match ended {
            Ended::Finish(reply) => {
                let _ = reply.send(());
                return;
            }
            Ended::Dropped => return,
            Ended::Failed(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "RabbitMQ connection failed or lost; retrying");
            }
        }
        // Outcomes of the lost connection cannot be acknowledged: the broker
        // redelivers those messages. Keep serving control commands meanwhile.
        let deadline = tokio::time::Instant::now() + backoff;
        loop {
            match tokio::time::timeout_at(deadline, commands.recv()).await {
                Err(_elapsed) => break,
                Ok(None) => return,
                Ok(Some(Command::Finish(reply))) => {
                    let _ = reply.send(());
                    return;
                }
                Ok(Some(Command::StopConsuming(reply))) => {
                    consuming = false;
                    let _ = reply.send(());
                }
                Ok(Some(Command::Publish(message))) => hold(&mut held, *message),
                Ok(Some(Command::Finished(_) | Command::Rejected(_))) => {}
            }
        }
        backoff = (backoff * 2).min(max);
    }
}

/// Holds `message` for publication, dropping the oldest held message
/// beyond [`MAX_HELD_EVENTS`].
fn hold(held: &mut Vec<Outbound>, message: Outbound) {
    if held.len() >= MAX_HELD_EVENTS {
        let dropped = held.remove(0);
        tracing::warn!(exchange = %dropped.exchange, routing_key = %dropped.routing_key, "the broker has been unreachable too long; dropping the oldest held event");
    }
    held.push(message);
}

/// One consumed queue on one connection.
struct QueueSession {
    name: String,
    channel: Channel,
    consumer_tag: String,
    pending: Arc<Mutex<Pending>>,
    consumer: Option<tokio::task::JoinHandle<()>>,
}

/// One connection: its channels, consumers and pending deliveries.
struct Session<'a> {
    config: &'a RabbitMqConfig,
    context: &'a RabbitMqContext,
    generation: u32,
    connection: Connection,
    publisher: Channel,
    queues: Vec<QueueSession>,
    failures: mpsc::UnboundedReceiver<RabbitMqError>,
    failure_tx: mpsc::UnboundedSender<RabbitMqError>,
    watcher: tokio::task::JoinHandle<()>,
}

impl<'a> Session<'a> {
    async fn open(
        config: &'a RabbitMqConfig,
        context: &'a RabbitMqContext,
        generation: u32,
        consuming: bool,
    ) -> Result<Session<'a>, RabbitMqError> {
        let connection = Connection::connect(
            &config.url,
            ConnectionProperties::default().with_connection_name("tidewater".into()),
        )
        .await
        .map_err(|source| RabbitMqError::Connect {
            url: redact_url(&config.url),
            source,
        })?;
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

    async fn start_consumer(
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
            while let Some(delivery) = consumer.next().await {
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
                if ingress
                    .submit_json(&name, delivery.data, source, packed)
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

    async fn serve(
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

    async fn stop_consumers(&mut self) {
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

    /// Publishes what the outcomes call for, waits for the confirms, then
    /// acknowledges their deliveries.
    async fn handle_outcomes(
        &mut self,
        finished: Vec<Finished>,
        rejected: Vec<Rejection>,
    ) -> Result<(), RabbitMqError> {
        let mut outbound = Vec::new();
        let mut completed: Vec<(usize, u64)> = Vec::new();
        for f in &finished {
            let Some((queue, tag, entry)) =
                self.lookup(f.completion.task.ack.source, f.completion.task.ack.tag)
            else {
                continue;
            };
            let record = if f.fresh {
                StoredTask::from_completion(&f.completion).record
            } else {
                // Publish what the store holds: the first outcome won.
                match self.context.store.get(f.completion.task.id.as_str()) {
                    Ok(Some(record)) => record,
                    Ok(None) => StoredTask::from_completion(&f.completion).record,
                    Err(e) => {
                        tracing::error!(error = %e, task = %f.completion.task.id, "reading a recorded result; the broker will redeliver");
                        continue;
                    }
                }
            };
            let body = serde_json::to_vec(&record).map_err(|e| RabbitMqError::Config {
                key: "results".into(),
                detail: format!("encoding a result: {e}"),
            })?;
            let correlation = entry.correlation_id.as_deref();
            if f.fresh || entry.redelivered {
                outbound.extend(result_message(
                    &self.config.results_exchange,
                    &record,
                    &body,
                    correlation,
                ));
            }
            if let Some(reply_to) = entry.reply_to.as_deref() {
                outbound.push(reply_message(reply_to, &record, &body, correlation));
            }
            completed.push((queue, tag));
        }
        for r in rejected {
            let Some((queue, tag, entry)) = self.lookup(r.ack.source, r.ack.tag) else {
                continue;
            };
            if !self.config.dead_letter_exchange.is_empty() {
                outbound.push(dead_letter_message(
                    &self.config.dead_letter_exchange,
                    &r,
                    entry.body,
                    &self.queues[queue].name,
                    entry.correlation_id.as_deref(),
                ));
            }
            completed.push((queue, tag));
        }
        self.publish_confirmed(outbound).await?;
        for (queue, tag) in completed {
            if let Ok(mut pending) = self.queues[queue].pending.lock() {
                pending.complete(tag);
            }
        }
        self.acknowledge().await
    }

    /// The queue index, delivery tag and pending entry of an outcome from
    /// this connection; `None` for other generations (redelivered anyway).
    fn lookup(&self, source: u16, tag: u64) -> Option<(usize, u64, InFlight)> {
        let queue = usize::from(source.checked_sub(self.context.first_source)?);
        let delivery = DeliveryRef::unpack(tag);
        if delivery.generation != DeliveryRef::packed_generation(self.generation) {
            tracing::debug!(
                source,
                tag,
                "outcome of an earlier connection; the broker redelivers it"
            );
            return None;
        }
        let pending = self.queues.get(queue)?.pending.lock().ok()?;
        let entry = pending.get(delivery.delivery_tag)?.clone();
        Some((queue, delivery.delivery_tag, entry))
    }

    async fn publish_confirmed(&self, messages: Vec<Outbound>) -> Result<(), RabbitMqError> {
        let mut confirms: Vec<(PublisherConfirm, String)> = Vec::with_capacity(messages.len());
        for m in messages {
            let confirm = self
                .publisher
                .basic_publish(
                    m.exchange.as_str().into(),
                    m.routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &m.body,
                    m.properties,
                )
                .await
                .map_err(RabbitMqError::amqp(format!(
                    "publishing to {:?}",
                    m.exchange
                )))?;
            confirms.push((confirm, m.exchange));
        }
        for (confirm, exchange) in confirms {
            let confirmation = confirm.await.map_err(RabbitMqError::amqp(format!(
                "awaiting the confirm from {exchange:?}"
            )))?;
            if confirmation.is_nack() {
                return Err(RabbitMqError::Nacked { exchange });
            }
        }
        Ok(())
    }

    async fn acknowledge(&self) -> Result<(), RabbitMqError> {
        for queue in &self.queues {
            let plan = match queue.pending.lock() {
                Ok(mut pending) => pending.plan(),
                Err(_) => continue,
            };
            if plan.is_empty() {
                continue;
            }
            if let Some(up_to) = plan.up_to {
                queue
                    .channel
                    .basic_ack(up_to, BasicAckOptions { multiple: true })
                    .await
                    .map_err(RabbitMqError::amqp(format!(
                        "acknowledging on {:?}",
                        queue.name
                    )))?;
            }
            for tag in plan.singles {
                queue
                    .channel
                    .basic_ack(tag, BasicAckOptions { multiple: false })
                    .await
                    .map_err(RabbitMqError::amqp(format!(
                        "acknowledging on {:?}",
                        queue.name
                    )))?;
            }
        }
        Ok(())
    }

    async fn close(self) {
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
