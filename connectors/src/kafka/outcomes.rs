//! What the outcome task does with recorded outcomes: the result (results
//! topic, and the request's reply topic) or the dead letter of each message
//! goes to the idempotent producer; a spawned task awaits the broker's
//! acknowledgements of the batch while the next outcomes are handled. Once
//! a batch is acknowledged its messages are marked complete in [`Offsets`](super::Offsets)
//! and every partition's new commit point is committed. A produce that
//! fails is retried (results and dead letters; a reply is best effort);
//! until it succeeds, its partition's commit stays behind it.

use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use tidewater_operators::model::Rejection;

use super::clients::ProducerContext;
use super::connector::Connector;
use super::error::KafkaError;
use super::messages::{dead_letter_message, result_message, Origin, Outbound};
use crate::outcome::Finished;
use crate::store::StoredTask;

/// Records to produce for one consumed message; it is complete once every
/// required one is acknowledged.
pub(super) struct Job {
    pub(super) tag: u64,
    pub(super) records: Vec<(Outbound, bool)>,
}

/// A batch's acknowledgements: per message, the records that failed (with
/// whether they were required, and why).
pub(super) type Settled = Vec<(u64, Vec<(Outbound, bool, RdKafkaError)>)>;

impl Connector {
    /// Produces what the outcomes (and earlier failures) call for, marks
    /// the messages whose records were acknowledged complete, and commits.
    pub(super) async fn handle(&mut self, finished: Vec<Finished>, rejected: Vec<Rejection>) {
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
    pub(super) fn settle(&mut self, settled: Settled) {
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
    pub(super) async fn settle_all(&mut self) {
        while let Some(joined) = self.deliveries.join_next().await {
            match joined {
                Ok(settled) => self.settle(settled),
                Err(e) => tracing::warn!(error = %e, "awaiting Kafka acknowledgements"),
            }
        }
    }
}

/// Hands one record to the producer. A full local queue waits until the
/// acknowledgements being awaited make room.
pub(super) async fn send(
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

pub(super) fn delivered<Canceled>(
    outcome: Result<rdkafka::producer::future_producer::OwnedDeliveryResult, Canceled>,
) -> Result<(), RdKafkaError> {
    match outcome {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e),
        Err(_) => Err(RdKafkaError::Canceled),
    }
}
