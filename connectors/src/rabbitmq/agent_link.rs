//! The pipeline's side of remote agents: agents' control messages into the
//! ingress, assignments out to each agent's queue, completions back.
//!
//! ```text
//!  control queue ──AgentMessage──► RecordIngress::submit_control (+ AgentEvents::joined)
//!  AgentLink::send(AgentWork) ──► assignments exchange, key = executor id (mandatory)
//!  completions queue ──RemoteCompletion──► AgentEvents::completed
//! ```
//!
//! Work that cannot be delivered (no queue for that agent, the broker
//! refused it, the connection failed) is answered at once with a failed
//! completion, so the coordinator retries the task instead of waiting for
//! it forever. The connection is re-established with backoff.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use tokio::sync::mpsc;

use tidewater_operators::model::{now_micros, ExecutorId};

use super::agent_protocol::{authorize, control_queue, AgentMessage, AgentWork, RemoteCompletion};
use super::config::RabbitMqConfig;
use super::error::{redact_url, RabbitMqError};
use super::topology::declare_topic;
use crate::ingest::RecordIngress;

/// How long an unused completions queue outlives its pipeline.
const COMPLETIONS_QUEUE_EXPIRES_MS: i64 = 60_000;

/// What the link reports to the pipeline's backends.
pub trait AgentEvents: Send + Sync + 'static {
    /// An agent joined through the broker: its work goes to the broker.
    fn joined(&self, executor: &ExecutorId);
    /// An attempt ended on an agent (or could not be delivered to it).
    fn completed(&self, completion: RemoteCompletion);
}

/// A running link to the agents.
#[derive(Clone)]
pub struct AgentLink {
    outbound: mpsc::UnboundedSender<AgentWork>,
    reply_to: Arc<str>,
}

impl AgentLink {
    /// Starts the link on `runtime`.
    pub fn start(
        config: RabbitMqConfig,
        ingress: Arc<dyn RecordIngress>,
        events: Arc<dyn AgentEvents>,
        runtime: &tokio::runtime::Handle,
    ) -> AgentLink {
        let reply_to: Arc<str> = format!(
            "{}.completions.{}.{}",
            config.control_exchange,
            std::process::id(),
            now_micros()
        )
        .into();
        let (outbound, receiver) = mpsc::unbounded_channel();
        runtime.spawn(run(
            config,
            ingress,
            events,
            receiver,
            Arc::clone(&reply_to),
        ));
        AgentLink { outbound, reply_to }
    }

    /// The queue agents send completions to.
    pub fn reply_to(&self) -> &str {
        &self.reply_to
    }

    /// Sends work to an agent; false when the link has stopped.
    pub fn send(&self, work: AgentWork) -> bool {
        self.outbound.send(work).is_ok()
    }
}

/// A failed completion for work that never reached its agent.
pub fn undeliverable(work: &AgentWork, why: &str) -> Option<RemoteCompletion> {
    let AgentWork::Run {
        assignment, worker, ..
    } = work
    else {
        return None;
    };
    Some(RemoteCompletion::failed(
        assignment.executor.clone(),
        *worker,
        assignment.lease,
        now_micros(),
        format!(
            "could not deliver the task to agent {}: {why}",
            assignment.executor
        ),
    ))
}

async fn run(
    config: RabbitMqConfig,
    ingress: Arc<dyn RecordIngress>,
    events: Arc<dyn AgentEvents>,
    mut outbound: mpsc::UnboundedReceiver<AgentWork>,
    reply_to: Arc<str>,
) {
    let initial = Duration::from_millis(config.reconnect_initial_ms);
    let max = Duration::from_millis(config.reconnect_max_ms);
    let mut backoff = initial;
    loop {
        match serve(
            &config,
            &ingress,
            &events,
            &mut outbound,
            &reply_to,
            &mut backoff,
            initial,
        )
        .await
        {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "agent link failed; retrying")
            }
        }
        // Work for agents cannot be delivered meanwhile: fail it so that the
        // coordinator retries it.
        let deadline = tokio::time::Instant::now() + backoff;
        loop {
            match tokio::time::timeout_at(deadline, outbound.recv()).await {
                Err(_) => break,
                Ok(None) => return,
                Ok(Some(work)) => {
                    if let Some(c) = undeliverable(&work, "the broker is unreachable") {
                        events.completed(c);
                    }
                }
            }
        }
        backoff = (backoff * 2).min(max);
    }
}

async fn declare(
    channel: &Channel,
    config: &RabbitMqConfig,
    reply_to: &str,
) -> Result<(), RabbitMqError> {
    declare_topic(channel, &config.control_exchange).await?;
    channel
        .exchange_declare(
            config.assignments_exchange.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(RabbitMqError::amqp("declaring the assignments exchange"))?;
    let control_queue = control_queue(&config.control_exchange);
    channel
        .queue_declare(
            control_queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(RabbitMqError::amqp("declaring the control queue"))?;
    channel
        .queue_bind(
            control_queue.as_str().into(),
            config.control_exchange.as_str().into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(RabbitMqError::amqp("binding the control queue"))?;
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-expires".into(),
        AMQPValue::LongLongInt(COMPLETIONS_QUEUE_EXPIRES_MS),
    );
    channel
        .queue_declare(reply_to.into(), QueueDeclareOptions::default(), arguments)
        .await
        .map_err(RabbitMqError::amqp("declaring the completions queue"))?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    config: &RabbitMqConfig,
    ingress: &Arc<dyn RecordIngress>,
    events: &Arc<dyn AgentEvents>,
    outbound: &mut mpsc::UnboundedReceiver<AgentWork>,
    reply_to: &str,
    backoff: &mut Duration,
    initial: Duration,
) -> Result<(), RabbitMqError> {
    let connection =
        super::tls::connect(&config.url, &config.tls, "tidewater-agents".into()).await?;
    let channel = connection
        .create_channel()
        .await
        .map_err(RabbitMqError::amqp("opening the agents channel"))?;
    declare(&channel, config, reply_to).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(RabbitMqError::amqp("enabling publisher confirms"))?;
    let consume = |queue: String| {
        let channel = channel.clone();
        async move {
            channel
                .basic_consume(
                    queue.as_str().into(),
                    "".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(RabbitMqError::amqp(format!("consuming {queue:?}")))
        }
    };
    let mut control = consume(control_queue(&config.control_exchange)).await?;
    let mut completions = consume(reply_to.to_string()).await?;
    *backoff = initial;
    tracing::info!(url = %redact_url(&config.url), reply_to, "agent link connected");
    let mut health = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            delivery = control.next() => {
                let delivery = delivery
                    .ok_or_else(|| closed("control queue"))?
                    .map_err(RabbitMqError::amqp("consuming the control queue"))?;
                match serde_json::from_slice::<AgentMessage>(&delivery.data) {
                    Ok(message) => match authorize(&config.agent_tokens, &message) {
                        Ok(()) => {
                            if let AgentMessage::Join { executor, .. } = &message {
                                events.joined(&executor.id);
                            }
                            if ingress.submit_control(message.command()).is_err() {
                                return Ok(());
                            }
                        }
                        Err(refusal) => {
                            tracing::warn!(agent = %message.executor(), reason = %refusal, "refused an agent control message");
                            if let AgentMessage::Join { executor, session, .. } = &message {
                                refuse(&channel, config, &executor.id, session, &refusal.to_string()).await;
                            }
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "dropping an invalid agent control message"),
                }
                delivery.ack(BasicAckOptions::default()).await
                    .map_err(RabbitMqError::amqp("acknowledging a control message"))?;
            }
            delivery = completions.next() => {
                let delivery = delivery
                    .ok_or_else(|| closed("completions queue"))?
                    .map_err(RabbitMqError::amqp("consuming completions"))?;
                match serde_json::from_slice::<RemoteCompletion>(&delivery.data) {
                    Ok(completion) => events.completed(completion),
                    Err(e) => tracing::warn!(error = %e, "dropping an invalid agent completion"),
                }
                delivery.ack(BasicAckOptions::default()).await
                    .map_err(RabbitMqError::amqp("acknowledging a completion"))?;
            }
            work = outbound.recv() => {
                let Some(work) = work else {
                    let _ = connection.close(200, "tidewater stopping".into()).await;
                    return Ok(());
                };
                publish(&channel, config, work, events).await?;
            }
            _ = health.tick() => {
                if !connection.status().connected() {
                    return Err(closed("connection"));
                }
            }
        }
    }
}

/// Tells a refused agent why, on its work queue (best effort: an agent
/// without a queue yet simply gets no work).
async fn refuse(
    channel: &Channel,
    config: &RabbitMqConfig,
    executor: &ExecutorId,
    session: &str,
    reason: &str,
) {
    let work = AgentWork::Refused {
        executor: executor.clone(),
        session: session.to_string(),
        reason: reason.to_string(),
    };
    let Ok(body) = serde_json::to_vec(&work) else {
        return;
    };
    let published = channel
        .basic_publish(
            config.assignments_exchange.as_str().into(),
            executor.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            BasicProperties::default().with_content_type("application/json".into()),
        )
        .await;
    if let Err(e) = published {
        tracing::warn!(agent = %executor, error = %e, "could not tell a refused agent");
    }
}

fn closed(what: &str) -> RabbitMqError {
    RabbitMqError::Amqp {
        operation: format!("the {what}"),
        source: lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
            lapin::ConnectionState::Closed,
        )),
    }
}

/// Publishes work to its agent's queue; its confirm is awaited in the
/// background, and a run that is returned or refused fails at once.
async fn publish(
    channel: &Channel,
    config: &RabbitMqConfig,
    work: AgentWork,
    events: &Arc<dyn AgentEvents>,
) -> Result<(), RabbitMqError> {
    let body = serde_json::to_vec(&work).map_err(|e| RabbitMqError::Config {
        key: "agents".into(),
        detail: format!("encoding work for an agent: {e}"),
    })?;
    let published = channel
        .basic_publish(
            config.assignments_exchange.as_str().into(),
            work.executor().as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            &body,
            BasicProperties::default().with_content_type("application/json".into()),
        )
        .await;
    let confirm = match published {
        Ok(confirm) => confirm,
        Err(e) => {
            if let Some(c) = undeliverable(&work, &e.to_string()) {
                events.completed(c);
            }
            return Err(RabbitMqError::Amqp {
                operation: "publishing work for an agent".into(),
                source: e,
            });
        }
    };
    let events = Arc::clone(events);
    tokio::spawn(async move {
        let why = match confirm.await {
            Ok(confirmation) if confirmation.is_nack() => Some("the broker refused it".to_string()),
            Ok(confirmation) => confirmation
                .take_message()
                .map(|_| "the agent has no queue (it is gone)".to_string()),
            Err(e) => Some(e.to_string()),
        };
        if let Some(c) = why.and_then(|why| undeliverable(&work, &why)) {
            events.completed(c);
        }
    });
    Ok(())
}
