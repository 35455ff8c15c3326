//! What a session does with recorded outcomes: results (and replies) for
//! finished tasks, dead letters for rejected records, each published with a
//! broker confirm; then the deliveries are acknowledged, in order, up to
//! the last one whose outcome is handled. A redelivered task whose outcome
//! the store already holds is acknowledged and its result published again.

use lapin::options::{BasicAckOptions, BasicPublishOptions};
use lapin::PublisherConfirm;

use tidewater_operators::model::Rejection;

use super::error::RabbitMqError;
use super::messages::{dead_letter_message, reply_message, result_message, Outbound};
use super::pending::InFlight;
use super::session::Session;
use super::tag::DeliveryRef;
use crate::outcome::Finished;
use crate::store::StoredTask;

impl Session<'_> {
    /// Publishes what the outcomes call for, waits for the confirms, then
    /// acknowledges their deliveries.
    pub(super) async fn handle_outcomes(
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
    pub(super) fn lookup(&self, source: u16, tag: u64) -> Option<(usize, u64, InFlight)> {
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

    pub(super) async fn publish_confirmed(
        &self,
        messages: Vec<Outbound>,
    ) -> Result<(), RabbitMqError> {
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

    pub(super) async fn acknowledge(&self) -> Result<(), RabbitMqError> {
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
}
