//! The running connector: a consumer thread that hands messages to the
//! pipeline ([`super::consumer`]), and a tokio task that produces outcomes
//! and commits offsets: this module is that task's loop, and
//! [`super::outcomes`] what it does with each batch of outcomes.
//!
//! The consumer thread polls the group consumer, records each message in
//! [`Offsets`](super::Offsets) and submits it to the pipeline with the tag `Offsets` gave
//! it. When `max_in_flight` messages await their outcome it pauses its
//! partitions (it keeps polling, so that the group and its rebalances are
//! served) and resumes them at half. Rebalance callbacks run on this thread:
//! a revoked partition's completed prefix is committed synchronously before
//! it goes, and its other messages are forgotten; an assigned partition
//! starts a fresh epoch.
//!
//! Recorded outcomes come back as commands through the
//! [`OutcomeListener`](crate::outcome::OutcomeListener). The outcome task hands the result (results topic,
//! and the request's reply topic), or the dead letter, to the idempotent
//! producer; a spawned task awaits the broker's acknowledgements of the
//! batch while the next outcomes are handled (so that the produce round
//! trip does not cap the rate). Once a batch is acknowledged its messages
//! are marked complete and every partition's new commit point committed. A produce that
//! fails is retried (results and dead letters; a reply is best effort, the
//! result being durable in the store and on the results topic); until it
//! succeeds, its partition's commit stays behind it.
//!
//! After a crash the group resumes from the committed offsets: everything
//! after them is consumed again. A task whose outcome the store already
//! holds is not run again; its stored result is produced again (the earlier
//! one may not have been acknowledged), so results on the broker are at
//! least once, each with the task id in a header; the store records each
//! exactly once.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureProducer;
use tokio::sync::{mpsc, oneshot};

use super::clients;
use super::clients::ProducerContext;
use super::config::KafkaConfig;
use super::consumer::{consume, GroupConsumer, Shared};
use super::error::KafkaError;
use super::handle::{Command, KafkaContext};
use super::messages::Outbound;
use super::outcomes::{delivered, send, Job, Settled};

/// Most outcomes handled (produced, acknowledged, committed) as one batch.
const OUTCOME_BATCH: usize = 8192;
/// Wait before producing again what the broker did not acknowledge.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// How long finishing may spend on produces still failing.
const FINISH_RETRIES: usize = 6;
/// How long finishing waits for the producer's queue to drain.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// The outcome task's state.
pub(super) struct Connector {
    pub(super) config: KafkaConfig,
    pub(super) context: KafkaContext,
    pub(super) shared: Arc<Shared>,
    pub(super) consumer: Arc<GroupConsumer>,
    pub(super) producer: FutureProducer<ProducerContext>,
    pub(super) thread: Option<JoinHandle<()>>,
    /// Jobs whose required records the broker has not acknowledged yet.
    pub(super) retry: Vec<Job>,
    /// Batches handed to the producer, awaiting the broker's
    /// acknowledgements.
    pub(super) deliveries: tokio::task::JoinSet<Settled>,
}

impl Connector {
    pub(super) async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        if self.config.create_topics {
            if let Err(e) = clients::create_topics(&self.config).await {
                tracing::warn!(error = %e, "creating Kafka topics; going on with those that exist");
            }
        }
        if let Err(e) = self.start_consumer() {
            tracing::error!(error = %e, "the Kafka consumer did not start; nothing is consumed");
        }
        let reply = self.serve(&mut commands).await;
        self.finish().await;
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    }

    pub(super) fn start_consumer(&mut self) -> Result<(), KafkaError> {
        let topics: Vec<&str> = self.config.topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .map_err(KafkaError::kafka(format!("subscribing to {topics:?}")))?;
        let consumer = Arc::clone(&self.consumer);
        let shared = Arc::clone(&self.shared);
        let ingress = Arc::clone(&self.context.ingress);
        let first_source = self.context.first_source;
        let max_in_flight = self.config.max_in_flight;
        let thread = std::thread::Builder::new()
            .name("tidewater-kafka-consumer".into())
            .spawn(move || consume(&consumer, &shared, &*ingress, first_source, max_in_flight))
            .map_err(|source| KafkaError::Thread {
                what: "consumer",
                source,
            })?;
        self.thread = Some(thread);
        tracing::info!(
            brokers = %self.config.brokers,
            group = %self.config.group_id,
            topics = ?self.config.topics,
            "Kafka consumer started"
        );
        Ok(())
    }

    /// Serves commands until asked to finish (the reply to send once
    /// finished) or every handle is gone.
    pub(super) async fn serve(
        &mut self,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<oneshot::Sender<()>> {
        loop {
            let command = tokio::select! {
                command = commands.recv() => command,
                Some(joined) = self.deliveries.join_next(), if !self.deliveries.is_empty() => {
                    match joined {
                        Ok(settled) => self.settle(settled),
                        Err(e) => tracing::warn!(error = %e, "awaiting Kafka acknowledgements"),
                    }
                    continue;
                }
                _ = tokio::time::sleep(RETRY_DELAY), if !self.retry.is_empty() => {
                    self.handle(Vec::new(), Vec::new()).await;
                    continue;
                }
            };
            let command = command?;
            let mut finished = Vec::new();
            let mut rejected = Vec::new();
            let mut next = Some(command);
            let mut control = None;
            while let Some(command) = next.take() {
                match command {
                    Command::Finished(batch) => finished.extend(batch),
                    Command::Rejected(batch) => rejected.extend(batch),
                    Command::Alert(outbound) => self.produce_alert(outbound).await,
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
                self.handle(finished, rejected).await;
            }
            match control {
                Some(Command::StopConsuming(reply)) => {
                    self.stop_consumer().await;
                    let _ = reply.send(());
                }
                Some(Command::Finish(reply)) => return Some(reply),
                _ => {}
            }
        }
    }

    /// Hands an alert event to the producer; a spawned task logs a failed
    /// delivery.
    pub(super) async fn produce_alert(&self, outbound: Outbound) {
        match send(&self.producer, &outbound).await {
            Ok(delivery) => {
                tokio::spawn(async move {
                    if let Err(e) = delivered(delivery.await) {
                        tracing::warn!(error = %e, topic = %outbound.topic, "an alert event was not delivered");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, topic = %outbound.topic, "producing an alert event");
            }
        }
    }

    pub(super) async fn stop_consumer(&mut self) {
        self.shared.consuming.store(false, Ordering::Release);
        self.shared.room.notify_all();
        if let Some(thread) = self.thread.take() {
            if tokio::task::spawn_blocking(move || thread.join())
                .await
                .is_err()
            {
                tracing::warn!("the Kafka consumer thread panicked");
            }
        }
    }

    /// Stops the consumer, retries failed produces a few times, commits
    /// synchronously and leaves the group.
    pub(super) async fn finish(mut self) {
        self.stop_consumer().await;
        self.settle_all().await;
        for _ in 0..FINISH_RETRIES {
            if self.retry.is_empty() {
                break;
            }
            tokio::time::sleep(RETRY_DELAY).await;
            self.handle(Vec::new(), Vec::new()).await;
            self.settle_all().await;
        }
        if !self.retry.is_empty() {
            tracing::warn!(
                messages = self.retry.len(),
                "outcomes not produced; their offsets stay uncommitted and a restart repeats them"
            );
        }
        let Connector {
            producer,
            consumer,
            shared,
            deliveries,
            ..
        } = self;
        drop(deliveries);
        let left = shared.offsets.lock().map(|o| o.in_flight()).unwrap_or(0);
        if left > 0 {
            tracing::info!(
                messages = left,
                "left uncommitted; the group consumes them again"
            );
        }
        let closed = tokio::task::spawn_blocking(move || {
            if let Err(e) = rdkafka::producer::Producer::flush(&producer, FLUSH_TIMEOUT) {
                tracing::warn!(error = %e, "flushing the Kafka producer");
            }
            // Commit what completed synchronously (the last asynchronous
            // commits may still be in flight), then leave the group.
            let commits = shared
                .offsets
                .lock()
                .map(|mut o| o.commits())
                .unwrap_or_default();
            if !commits.is_empty() {
                let list = shared.commit_list(&commits);
                if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
                    tracing::warn!(error = %e, "the last Kafka commit failed; a restart repeats those messages");
                }
            }
            drop(consumer);
        })
        .await;
        if closed.is_err() {
            tracing::warn!("closing the Kafka clients panicked");
        }
    }
}
