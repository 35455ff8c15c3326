//! The consumer side: a thread that polls the group consumer, records each
//! message in [`Offsets`] and submits it to the pipeline with the tag
//! `Offsets` gave it. When `max_in_flight` messages await their outcome it
//! pauses its partitions (it keeps polling, so that the group and its
//! rebalances are served) and resumes them at half. Rebalance callbacks run
//! on this thread ([`GroupContext`]): a revoked partition's completed prefix
//! is committed synchronously before it goes, and its other messages are
//! forgotten; an assigned partition starts a fresh epoch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError as RdKafkaError, KafkaResult};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::watch;

use super::clients::log_to_tracing;
use super::messages::{CORRELATION_HEADER, REPLY_TO_HEADER};
use super::offsets::{Commit, InFlight, Offsets};
use crate::ingest::RecordIngress;
use tidewater_operators::model::{TraceParent, TRACEPARENT_HEADER};

/// How long one poll of the consumer may block.
const POLL: Duration = Duration::from_millis(100);
/// How long the consumer thread waits for room (without polling, so that
/// librdkafka's bounded prefetch queue fills and fetching stops) before it
/// pauses its partitions and polls again to serve the group.
const PAUSE_AFTER: Duration = Duration::from_secs(1);

/// What the consumer thread, its rebalance callbacks and the outcome task
/// share.
pub(super) struct Shared {
    pub(super) topics: Vec<String>,
    pub(super) offsets: Mutex<Offsets>,
    /// Signalled when messages complete (room in the in-flight bound).
    pub(super) room: Condvar,
    pub(super) consuming: AtomicBool,
    /// Counts assignments received (0: not yet part of the group).
    pub(super) assignments: watch::Sender<u64>,
}

impl Shared {
    pub(super) fn topic_index(&self, topic: &str) -> Option<usize> {
        self.topics.iter().position(|t| t == topic)
    }

    pub(super) fn commit_list(&self, commits: &[Commit]) -> TopicPartitionList {
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
pub(super) struct GroupContext {
    pub(super) shared: Arc<Shared>,
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

pub(super) type GroupConsumer = BaseConsumer<GroupContext>;

/// The consumer thread: polls, records, submits. At `max_in_flight`
/// messages awaiting their outcome it stops polling (librdkafka's prefetch
/// queue is bounded, so fetching stops too) until there is room; when that
/// takes longer than [`PAUSE_AFTER`] it pauses the partitions and goes back
/// to polling, so that the group and its rebalances are served, and resumes
/// them at half the bound.
pub(super) fn consume(
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
        // The pipeline's own bound (limits.max_queued) pauses too.
        let saturated = ingress.is_saturated();
        if (in_flight >= max_in_flight || saturated) && paused != Some(assignments) {
            // Still full after waiting: pause (again after a rebalance: new
            // partitions start unpaused) and keep serving the group.
            match consumer.assignment().and_then(|a| consumer.pause(&a)) {
                Ok(()) => {
                    tracing::debug!(in_flight, "Kafka partitions paused");
                    paused = Some(assignments);
                }
                Err(e) => tracing::warn!(error = %e, "pausing Kafka partitions"),
            }
        } else if paused.is_some() && !saturated && in_flight <= max_in_flight / 2 {
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
        let mut trace = None;
        if let Some(headers) = message.headers() {
            for h in headers.iter() {
                let value = || h.value.map(|v| String::from_utf8_lossy(v).into_owned());
                match h.key {
                    REPLY_TO_HEADER => entry.reply_to = value().filter(|t| !t.is_empty()),
                    CORRELATION_HEADER => entry.correlation_id = value(),
                    TRACEPARENT_HEADER => trace = h.value.and_then(TraceParent::parse_bytes),
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
            .submit_json(&shared.topics[topic], body, source, tag, trace)
            .is_err()
        {
            // Shutting down: the message stays uncommitted.
            return;
        }
    }
}
