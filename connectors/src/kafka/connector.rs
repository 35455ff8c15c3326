//! The running connector: a consumer thread that hands messages to the
//! pipeline, and a tokio task that produces outcomes and commits offsets.
//!
//! The consumer thread polls the group consumer, records each message in
//! [`Offsets`] and submits it to the pipeline with the tag `Offsets` gave
//! it. When `max_in_flight` messages await their outcome it pauses its
//! partitions (it keeps polling, so that the group and its rebalances are
//! served) and resumes them at half. Rebalance callbacks run on this thread:
//! a revoked partition's completed prefix is committed synchronously before
//! it goes, and its other messages are forgotten; an assigned partition
//! starts a fresh epoch.
//!
//! Recorded outcomes come back as commands through the
//! [`OutcomeListener`]. The outcome task hands the result (results topic,
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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError as RdKafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::{mpsc, oneshot, watch};

use tidewater_operators::model::Rejection;

use super::clients;
use super::config::KafkaConfig;
use super::error::KafkaError;
use super::messages::{
    alert_message, dead_letter_message, result_message, Origin, Outbound, CORRELATION_HEADER,
    REPLY_TO_HEADER,
};
use super::offsets::{Commit, InFlight, Offsets};
use crate::ingest::RecordIngress;
use crate::outcome::{Finished, OutcomeListener};
use crate::store::{StoredTask, TaskStore};

/// Most outcomes handled (produced, acknowledged, committed) as one batch.
const OUTCOME_BATCH: usize = 8192;
/// How long one poll of the consumer may block.
const POLL: Duration = Duration::from_millis(100);
/// How long the consumer thread waits for room (without polling, so that
/// librdkafka's bounded prefetch queue fills and fetching stops) before it
/// pauses its partitions and polls again to serve the group.
const PAUSE_AFTER: Duration = Duration::from_secs(1);
/// Wait before producing again what the broker did not acknowledge.
const RETRY_DELAY: Duration = Duration::from_millis(500);
/// How long finishing may spend on produces still failing.
const FINISH_RETRIES: usize = 6;
/// How long finishing waits for the producer's queue to drain.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

enum Command {
    Finished(Vec<Finished>),
    Rejected(Vec<Rejection>),
    /// An alert event for the alerts topic.
    Alert(Outbound),
    StopConsuming(oneshot::Sender<()>),
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

/// What the consumer thread, its rebalance callbacks and the outcome task
/// share.
struct Shared {
    topics: Vec<String>,
    offsets: Mutex<Offsets>,
    /// Signalled when messages complete (room in the in-flight bound).
    room: Condvar,
    consuming: AtomicBool,
    /// Counts assignments received (0: not yet part of the group).
    assignments: watch::Sender<u64>,
}

impl Shared {
    fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topics.iter().position(|t| t == topic)
    }

    fn commit_list(&self, commits: &[Commit]) -> TopicPartitionList {
        let mut list = TopicPartitionList::with_capacity(commits.len());
        for c in commits {
            if let Some(topic) = self.topics.get(c.topic) {
                // Only fails for a negative offset, which a commit never is.
                let _ = list.add_partition_offset(topic, c.partition, Offset::Offset(c.offset));
            }
        }
        list
    }
}

/// The consumer's context: rebalance and commit callbacks, logs to tracing.
struct GroupContext {
    shared: Arc<Shared>,
}

fn log_to_tracing(level: RDKafkaLogLevel, facility: &str, message: &str) {
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

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka consumer error");
    }
}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let commits: Vec<Commit> = match self.shared.offsets.lock() {
                    Ok(mut offsets) => list
                        .elements()
                        .iter()
                        .filter_map(|e| {
                            let topic = self.shared.topic_index(e.topic())?;
                            offsets.revoke(topic, e.partition())
                        })
                        .collect(),
                    Err(_) => Vec::new(),
                };
                tracing::info!(
                    partitions = list.count(),
                    "Kafka partitions revoked; their unfinished messages go to the next owner"
                );
                if !commits.is_empty() {
                    let list = self.shared.commit_list(&commits);
                    if let Err(e) = consumer.commit(&list, CommitMode::Sync) {
                        tracing::warn!(error = %e, "committing revoked partitions; the next owner repeats some messages");
                    }
                }
            }
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "Kafka rebalance failed"),
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            if let Ok(mut offsets) = self.shared.offsets.lock() {
                for e in list.elements() {
                    if let Some(topic) = self.shared.topic_index(e.topic()) {
                        offsets.assign(topic, e.partition());
                    }
                }
            }
            tracing::info!(partitions = list.count(), "Kafka partitions assigned");
            self.shared.assignments.send_modify(|n| *n += 1);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        if let Err(e) = result {
            tracing::warn!(error = %e, partitions = offsets.count(), "committing Kafka offsets failed; a restart repeats those messages");
        }
    }
}

/// The producer's context: logs to tracing.
struct ProducerContext;

impl ClientContext for ProducerContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        log_to_tracing(level, facility, message);
    }

    fn error(&self, error: RdKafkaError, reason: &str) {
        tracing::warn!(%error, reason, "Kafka producer error");
    }
}

type GroupConsumer = BaseConsumer<GroupContext>;

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

/// Records to produce for one consumed message; it is complete once every
/// required one is acknowledged.
struct Job {
    tag: u64,
    records: Vec<(Outbound, bool)>,
}

/// A batch's acknowledgements: per message, the records that failed (with
/// whether they were required, and why).
type Settled = Vec<(u64, Vec<(Outbound, bool, RdKafkaError)>)>;

/// The outcome task's state.
struct Connector {
    config: KafkaConfig,
    context: KafkaContext,
    shared: Arc<Shared>,
    consumer: Arc<GroupConsumer>,
    producer: FutureProducer<ProducerContext>,
    thread: Option<JoinHandle<()>>,
    /// Jobs whose required records the broker has not acknowledged yet.
    retry: Vec<Job>,
    /// Batches handed to the producer, awaiting the broker's
    /// acknowledgements.
    deliveries: tokio::task::JoinSet<Settled>,
}

impl Connector {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
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

    fn start_consumer(&mut self) -> Result<(), KafkaError> {
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
    async fn serve(
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
    async fn produce_alert(&self, outbound: Outbound) {
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

    async fn stop_consumer(&mut self) {
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

    /// Produces what the outcomes (and earlier failures) call for, marks
    /// the messages whose records were acknowledged complete, and commits.
    async fn handle(&mut self, finished: Vec<Finished>, rejected: Vec<Rejection>) {
        let mut jobs = std::mem::take(&mut self.retry);
        let lookup = |tag: u64| match self.shared.offsets.lock() {
            Ok(offsets) => offsets.get(tag),
            Err(_) => None,
        };
        for f in &finished {
            let Some(consumed) = lookup(f.completion.task.ack.tag) else {
                tracing::debug!(
                    task = %f.completion.task.id,
                    "outcome of a message of a revoked partition; its next owner repeats it"
                );
                continue;
            };
            let record = if f.fresh {
                StoredTask::from_completion(&f.completion).record
            } else {
                // Produce what the store holds: the first outcome won.
                match self.context.store.get(f.completion.task.id.as_str()) {
                    Ok(Some(record)) => record,
                    Ok(None) => StoredTask::from_completion(&f.completion).record,
                    Err(e) => {
                        tracing::error!(error = %e, task = %f.completion.task.id, "reading a recorded result; its offset stays uncommitted");
                        continue;
                    }
                }
            };
            let body = match serde_json::to_vec(&record) {
                Ok(body) => body,
                Err(source) => {
                    let e = KafkaError::Encode {
                        task: record.id.clone(),
                        source,
                    };
                    tracing::error!(error = %e, "its offset stays uncommitted");
                    continue;
                }
            };
            let correlation = consumed.entry.correlation_id.as_deref();
            let mut records = Vec::new();
            if !self.config.results_topic.is_empty() {
                records.push((
                    result_message(&self.config.results_topic, &record, &body, correlation),
                    true,
                ));
            }
            if let Some(reply_to) = consumed.entry.reply_to.as_deref() {
                records.push((result_message(reply_to, &record, &body, correlation), false));
            }
            jobs.push(Job {
                tag: f.completion.task.ack.tag,
                records,
            });
        }
        for r in rejected {
            let Some(consumed) = lookup(r.ack.tag) else {
                continue;
            };
            let origin = Origin {
                topic: self
                    .shared
                    .topics
                    .get(consumed.topic)
                    .map_or("", String::as_str),
                partition: consumed.partition,
                offset: consumed.offset,
            };
            let record = dead_letter_message(
                &self.config.dead_letter_topic,
                &r,
                consumed.entry.key,
                consumed.entry.body,
                origin,
                consumed.entry.correlation_id.as_deref(),
            );
            jobs.push(Job {
                tag: r.ack.tag,
                records: vec![(record, true)],
            });
        }
        if jobs.is_empty() {
            return;
        }
        // Hand every record to the producer now; a task awaits the broker's
        // acknowledgements while the next outcomes are handled.
        let mut sent = Vec::with_capacity(jobs.len());
        for job in jobs {
            let mut records = Vec::with_capacity(job.records.len());
            for (record, required) in job.records {
                let delivery = send(&self.producer, &record).await;
                records.push((record, required, delivery));
            }
            sent.push((job.tag, records));
        }
        self.deliveries.spawn(async move {
            let mut settled = Vec::with_capacity(sent.len());
            for (tag, records) in sent {
                let mut failed = Vec::new();
                for (record, required, delivery) in records {
                    let outcome = match delivery {
                        Ok(delivery) => delivered(delivery.await),
                        Err(e) => Err(e),
                    };
                    if let Err(source) = outcome {
                        failed.push((record, required, source));
                    }
                }
                settled.push((tag, failed));
            }
            settled
        });
    }

    /// Takes the acknowledgements of one handed-over batch: marks the
    /// messages whose required records were all acknowledged complete,
    /// keeps the others for a retry, and commits the new commit points.
    fn settle(&mut self, settled: Settled) {
        let mut completed = Vec::with_capacity(settled.len());
        for (tag, failed) in settled {
            let mut retry = Vec::new();
            for (record, required, source) in failed {
                let e = KafkaError::Produce {
                    topic: record.topic.clone(),
                    source,
                };
                if required {
                    tracing::warn!(error = %e, "retrying; its offset stays uncommitted until then");
                    retry.push((record, true));
                } else {
                    tracing::warn!(error = %e, "a reply was not delivered (the result is on the results topic and in the store)");
                }
            }
            if retry.is_empty() {
                completed.push(tag);
            } else {
                self.retry.push(Job {
                    tag,
                    records: retry,
                });
            }
        }
        let commits = match self.shared.offsets.lock() {
            Ok(mut offsets) => {
                for tag in completed {
                    offsets.complete(tag);
                }
                offsets.commits()
            }
            Err(_) => Vec::new(),
        };
        self.shared.room.notify_all();
        if !commits.is_empty() {
            let list = self.shared.commit_list(&commits);
            if let Err(e) = self.consumer.commit(&list, CommitMode::Async) {
                tracing::warn!(error = %e, "committing Kafka offsets; a restart repeats those messages");
            }
        }
    }

    /// Settles every batch still awaiting acknowledgements.
    async fn settle_all(&mut self) {
        while let Some(joined) = self.deliveries.join_next().await {
            match joined {
                Ok(settled) => self.settle(settled),
                Err(e) => tracing::warn!(error = %e, "awaiting Kafka acknowledgements"),
            }
        }
    }

    /// Stops the consumer, retries failed produces a few times, commits
    /// synchronously and leaves the group.
    async fn finish(mut self) {
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

/// The consumer thread: polls, records, submits. At `max_in_flight`
/// messages awaiting their outcome it stops polling (librdkafka's prefetch
/// queue is bounded, so fetching stops too) until there is room; when that
/// takes longer than [`PAUSE_AFTER`] it pauses the partitions and goes back
/// to polling, so that the group and its rebalances are served, and resumes
/// them at half the bound.
fn consume(
    consumer: &GroupConsumer,
    shared: &Shared,
    ingress: &dyn RecordIngress,
    first_source: u16,
    max_in_flight: usize,
) {
    let mut paused: Option<u64> = None;
    while shared.consuming.load(Ordering::Acquire) {
        let in_flight = match shared.offsets.lock() {
            Ok(offsets) if offsets.in_flight() >= max_in_flight && paused.is_none() => {
                // Wait for room without polling.
                match shared.room.wait_timeout_while(offsets, PAUSE_AFTER, |o| {
                    o.in_flight() >= max_in_flight && shared.consuming.load(Ordering::Acquire)
                }) {
                    Ok((offsets, _)) => offsets.in_flight(),
                    Err(_) => return,
                }
            }
            Ok(offsets) => offsets.in_flight(),
            Err(_) => return,
        };
        let assignments = *shared.assignments.borrow();
        if in_flight >= max_in_flight && paused != Some(assignments) {
            // Still full after waiting: pause (again after a rebalance: new
            // partitions start unpaused) and keep serving the group.
            match consumer.assignment().and_then(|a| consumer.pause(&a)) {
                Ok(()) => {
                    tracing::debug!(in_flight, "Kafka partitions paused");
                    paused = Some(assignments);
                }
                Err(e) => tracing::warn!(error = %e, "pausing Kafka partitions"),
            }
        } else if paused.is_some() && in_flight <= max_in_flight / 2 {
            match consumer.assignment().and_then(|a| consumer.resume(&a)) {
                Ok(()) => paused = None,
                Err(e) => tracing::warn!(error = %e, "resuming Kafka partitions"),
            }
        }
        let message = match consumer.poll(POLL) {
            None => continue,
            Some(Ok(message)) => message,
            Some(Err(e)) => {
                tracing::warn!(error = %e, "polling Kafka");
                continue;
            }
        };
        let Some(topic) = shared.topic_index(message.topic()) else {
            continue;
        };
        let body = message.payload().map(<[u8]>::to_vec).unwrap_or_default();
        let mut entry = InFlight {
            body: body.clone(),
            key: message.key().map(<[u8]>::to_vec),
            reply_to: None,
            correlation_id: None,
        };
        if let Some(headers) = message.headers() {
            for h in headers.iter() {
                let value = || h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                match h.key {
                    REPLY_TO_HEADER => entry.reply_to = value().filter(|t| !t.is_empty()),
                    CORRELATION_HEADER => entry.correlation_id = value(),
                    _ => {}
                }
            }
        }
        let tag = match shared.offsets.lock() {
            Ok(mut offsets) => offsets.consume(topic, message.partition(), message.offset(), entry),
            Err(_) => return,
        };
        let source = first_source.saturating_add(topic as u16);
        if ingress
            .submit_json(&shared.topics[topic], body, source, tag)
            .is_err()
        {
            // Shutting down: the message stays uncommitted.
            return;
        }
    }
}

/// Hands one record to the producer. A full local queue waits until the
/// acknowledgements being awaited make room.
async fn send(
    producer: &FutureProducer<ProducerContext>,
    outbound: &Outbound,
) -> Result<DeliveryFuture, RdKafkaError> {
    loop {
        let mut headers = OwnedHeaders::new_with_capacity(outbound.headers.len());
        for (key, value) in &outbound.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value.as_bytes()),
            });
        }
        let mut record = FutureRecord::<[u8], [u8]>::to(&outbound.topic)
            .payload(&outbound.body)
            .headers(headers);
        if let Some(key) = &outbound.key {
            record = record.key(key.as_slice());
        }
        match producer.send_result(record) {
            Ok(delivery) => return Ok(delivery),
            Err((RdKafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

fn delivered<Canceled>(
    outcome: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, Canceled>,
) -> Result<(), RdKafkaError> {
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(RdKafkaError::Canceled),
    }
}
