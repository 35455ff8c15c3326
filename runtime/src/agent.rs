//! `tidewater agent`: a remote executor that joins a pipeline over RabbitMQ.
//!
//! ```text
//!  join, heartbeats, leave ──► control exchange ──► pipeline (coordinator registry)
//!  agent queue ({assignments exchange}.{id}) ──run/abort──► LocalBackend (same handlers) ──►
//!      completion ──► the pipeline's completions queue (reply_to), then ack the run
//! ```
//!
//! The agent runs assignments with the same handlers and timeout/abort
//! rules as local executors ([`LocalBackend`]). A run message is
//! acknowledged only after its completion is confirmed by the broker, so an
//! agent that dies leaves its work in its queue; the pipeline meanwhile
//! declares it lost when its heartbeats stop and retries the work
//! elsewhere. On Ctrl-C the agent announces that it leaves, finishes what it
//! runs, and exits.
//!
//! Every control message carries the agent's token (`--token`); a pipeline
//! with `rabbitmq.agent_tokens` refuses a join whose token is missing or
//! wrong and answers it on the agent's queue, and the agent then stops
//! with the reason in its summary ([`AgentSummary::refused`]).

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, ExchangeKind};

use tidewater_connectors::rabbitmq::agent_protocol::{
    agent_queue, control_queue, AgentMessage, AgentWork, RemoteCompletion,
};
pub use tidewater_connectors::rabbitmq::AmqpTlsConfig;
use tidewater_connectors::rabbitmq::{self, redact_url, RabbitMqError};
use tidewater_operators::dataflow::ExecutionBackend;
use tidewater_operators::model::{Completion, ExecutorSpec, Lease, Name};

use crate::backend::LocalBackend;
use crate::handlers::HandlerRegistry;

/// How often finished attempts are collected.
const POLL: Duration = Duration::from_millis(5);
/// Recently finished attempts remembered, to ignore redelivered runs.
const REMEMBERED: usize = 65_536;

/// Agent settings.
#[derive(Clone, Debug)]
pub struct AgentOptions {
    /// AMQP URI of the broker.
    pub url: String,
    /// Identity and capacity.
    pub spec: ExecutorSpec,
    /// Interval between heartbeats, ms.
    pub heartbeat_ms: u64,
    /// Declared lost after this long without a heartbeat, ms.
    pub ttl_ms: u64,
    /// The pipeline's control exchange.
    pub control_exchange: String,
    /// The pipeline's assignments exchange.
    pub assignments_exchange: String,
    /// Most runs delivered at once.
    pub prefetch: u16,
    /// The token the pipeline knows this agent by (`rabbitmq.agent_tokens`).
    pub credential: Option<String>,
    /// TLS for an `amqps://` URL (a private CA, a client certificate).
    pub tls: AmqpTlsConfig,
}

/// Why one connection of the agent ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    /// The broker could not be reached, or the TLS files read.
    #[error(transparent)]
    Connect(#[from] RabbitMqError),
    /// An AMQP operation failed.
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
}

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `--capacity` could not be read.
    #[error("capacity {text:?}: {detail}")]
    Capacity {
        /// The argument.
        text: String,
        /// What is wrong.
        detail: String,
    },
}

/// Reads `cpu=4000,memory=8192,gpu=1[,NAME=AMOUNT...]`: CPU in thousandths
/// of a core, memory in MiB, GPUs as a count (of `gpu_model`), anything
/// else as a custom resource.
pub fn parse_capacity(id: &str, text: &str, gpu_model: &str) -> Result<ExecutorSpec, AgentError> {
    let err = |detail: String| AgentError::Capacity {
        text: text.to_string(),
        detail,
    };
    let mut spec = ExecutorSpec::cpu(id, 0, 0);
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = part
            .split_once('=')
            .ok_or_else(|| err(format!("{part:?} is not NAME=AMOUNT")))?;
        let amount: u64 = value
            .trim()
            .parse()
            .map_err(|e| err(format!("{name}: {value:?} is not a whole number ({e})")))?;
        match name.trim() {
            "cpu" => spec.cpu_milli = amount,
            "memory" | "mem" => spec.memory_mib = amount,
            "gpu" | "gpus" => {
                let count = usize::try_from(amount)
                    .ok()
                    .filter(|&n| n <= 64)
                    .ok_or_else(|| err(format!("gpu: at most 64, not {amount}")))?;
                spec = spec.with_gpus(count, gpu_model);
            }
            other => spec = spec.with_custom(other, amount),
        }
    }
    if spec.cpu_milli == 0 {
        return Err(err("cpu must be given and above 0".into()));
    }
    Ok(spec)
}

/// What the agent did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct AgentSummary {
    /// Attempts run to completion (any outcome).
    pub completed: u64,
    /// Connections made.
    pub connections: u64,
    /// Why the pipeline refused the agent's join, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// One running attempt.
struct Running {
    reply_to: String,
    worker: u32,
    /// Delivery tag and connection generation of its run message.
    delivery: (u64, u64),
}

/// A completion waiting to be sent: the completion, the queue to reply to,
/// and the delivery it answers, if any.
type Outgoing = (RemoteCompletion, String, Option<(u64, u64)>);

struct Agent {
    options: AgentOptions,
    backend: LocalBackend,
    running: HashMap<(u32, Lease), Running>,
    finished: HashSet<(u32, Lease)>,
    finished_order: VecDeque<(u32, Lease)>,
    outbox: Vec<Outgoing>,
    summary: AgentSummary,
    leaving: bool,
    /// Names this run in joins, so that only refusals of its own joins stop it.
    session: String,
}

/// Runs the agent until `shutdown` resolves and its work is done.
pub async fn run_agent(
    options: AgentOptions,
    handlers: Arc<HandlerRegistry>,
    shutdown: impl Future<Output = ()>,
) -> AgentSummary {
    let mut agent = Agent {
        backend: LocalBackend::new(
            handlers,
            tokio::runtime::Handle::current(),
            tidewater_operators::validate::ValidationLimits::default().max_result_bytes,
        ),
        options,
        running: HashMap::new(),
        finished: HashSet::new(),
        finished_order: VecDeque::new(),
        outbox: Vec::new(),
        summary: AgentSummary::default(),
        leaving: false,
        session: format!(
            "{}-{}",
            std::process::id(),
            tidewater_operators::model::now_micros()
        ),
    };
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Duration::from_millis(100);
    let mut generation = 0u64;
    loop {
        generation += 1;
        match agent.session(generation, &mut shutdown).await {
            Ok(()) => return agent.summary,
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "agent connection failed; retrying");
            }
        }
        let deadline = tokio::time::Instant::now() + backoff;
        while tokio::time::Instant::now() < deadline {
            agent.collect();
            if !agent.leaving {
                tokio::select! {
                    () = &mut shutdown => agent.leaving = true,
                    () = tokio::time::sleep(POLL) => {}
                }
            } else {
                tokio::time::sleep(POLL).await;
            }
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

impl Agent {
    fn id(&self) -> &Name {
        &self.options.spec.id
    }

    /// Moves finished attempts to the outbox.
    fn collect(&mut self) {
        let mut done = Vec::new();
        self.backend.poll(&mut done);
        self.absorb(done);
    }

    fn absorb(&mut self, done: Vec<Completion>) {
        for c in done {
            let key = (c.shard, c.lease);
            let Some(running) = self.running.remove(&key) else {
                continue;
            };
            self.remember(key);
            let completion = RemoteCompletion::of(c, running.worker);
            self.outbox
                .push((completion, running.reply_to, Some(running.delivery)));
        }
    }

    fn remember(&mut self, key: (u32, Lease)) {
        if self.finished.insert(key) {
            self.finished_order.push_back(key);
            if self.finished_order.len() > REMEMBERED {
                if let Some(old) = self.finished_order.pop_front() {
                    self.finished.remove(&old);
                }
            }
        }
    }

    async fn publish_control(
        &self,
        channel: &Channel,
        message: &AgentMessage,
    ) -> lapin::Result<()> {
        let body = serde_json::to_vec(message).unwrap_or_default();
        channel
            .basic_publish(
                self.options.control_exchange.as_str().into(),
                self.id().as_str().into(),
                BasicPublishOptions::default(),
                &body,
                BasicProperties::default().with_content_type("application/json".into()),
            )
            .await?
            .await?;
        Ok(())
    }

    async fn declare(&self, channel: &Channel) -> lapin::Result<String> {
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                self.options.control_exchange.as_str().into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await?;
        channel
            .exchange_declare(
                self.options.assignments_exchange.as_str().into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await?;
        let control = control_queue(&self.options.control_exchange);
        channel
            .queue_declare(
                control.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                control.as_str().into(),
                self.options.control_exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let queue = agent_queue(&self.options.assignments_exchange, self.id());
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        channel
            .queue_bind(
                queue.as_str().into(),
                self.options.assignments_exchange.as_str().into(),
                self.id().as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(queue)
    }

    /// One connection: join, heartbeat, run work, report completions.
    async fn session(
        &mut self,
        generation: u64,
        shutdown: &mut std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(), SessionError> {
        let connection = rabbitmq::connect(
            &self.options.url,
            &self.options.tls,
            format!("tidewater-agent-{}", self.id()),
        )
        .await?;
        self.summary.connections += 1;
        let channel = connection.create_channel().await?;
        let queue = self.declare(&channel).await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let consuming = connection.create_channel().await?;
        consuming
            .basic_qos(self.options.prefetch, BasicQosOptions::default())
            .await?;
        let consumer_tag = format!("agent-{}-{generation}", self.id());
        let mut consumer = consuming
            .basic_consume(
                queue.as_str().into(),
                consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        if !self.leaving {
            self.publish_control(
                &channel,
                &AgentMessage::Join {
                    executor: self.options.spec.clone(),
                    heartbeat_ttl_ms: self.options.ttl_ms,
                    credential: self.options.credential.clone(),
                    session: self.session.clone(),
                },
            )
            .await?;
            tracing::info!(agent = %self.id(), url = %redact_url(&self.options.url), "agent joined");
        }
        let mut heartbeat =
            tokio::time::interval(Duration::from_millis(self.options.heartbeat_ms.max(1)));
        let mut poll = tokio::time::interval(POLL);
        loop {
            tokio::select! {
                () = &mut *shutdown, if !self.leaving => {
                    self.leaving = true;
                    consuming.basic_cancel(consumer_tag.as_str().into(), BasicCancelOptions::default()).await?;
                    self.publish_control(&channel, &AgentMessage::Leave { executor: self.id().clone(), credential: self.options.credential.clone() }).await?;
                    tracing::info!(agent = %self.id(), "leaving after the running attempts");
                }
                _ = heartbeat.tick(), if !self.leaving => {
                    self.publish_control(&channel, &AgentMessage::Heartbeat { executor: self.id().clone(), credential: self.options.credential.clone() }).await?;
                }
                _ = poll.tick() => {
                    self.collect();
                    self.flush(&channel, &consuming, generation).await?;
                    if self.leaving && self.backend.in_flight() == 0 && self.outbox.is_empty() {
                        let _ = connection.close(200, "agent leaving".into()).await;
                        return Ok(());
                    }
                    if !connection.status().connected() {
                        return Err(lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                            lapin::ConnectionState::Closed,
                        ))
                        .into());
                    }
                }
                delivery = consumer.next(), if !self.leaving => {
                    let Some(delivery) = delivery else {
                        return Err(lapin::Error::from(lapin::ErrorKind::InvalidConnectionState(
                            lapin::ConnectionState::Closed,
                        ))
                        .into());
                    };
                    let delivery = delivery?;
                    self.take_work(&delivery.data, (delivery.delivery_tag, generation), &consuming).await?;
                    if self.summary.refused.is_some() {
                        let _ = connection.close(200, "agent refused".into()).await;
                        return Ok(());
                    }
                }
            }
        }
    }

    async fn take_work(
        &mut self,
        body: &[u8],
        delivery: (u64, u64),
        consuming: &Channel,
    ) -> lapin::Result<()> {
        let ack_now = match serde_json::from_slice::<AgentWork>(body) {
            Ok(AgentWork::Run {
                assignment,
                worker,
                reply_to,
            }) => {
                let key = (assignment.shard, assignment.lease);
                if self.finished.contains(&key) {
                    // Redelivered after its completion was sent.
                    true
                } else if let Some(running) = self.running.get_mut(&key) {
                    running.delivery = delivery;
                    false
                } else {
                    tracing::info!(agent = %self.id(), task = %assignment.task.id, attempt = assignment.task.attempt, "running");
                    self.running.insert(
                        key,
                        Running {
                            reply_to,
                            worker,
                            delivery,
                        },
                    );
                    let mut done = Vec::new();
                    self.backend.start(assignment, &mut done);
                    self.absorb(done);
                    false
                }
            }
            Ok(AgentWork::Abort { lease, reason, .. }) => {
                self.backend.abort(lease, reason);
                true
            }
            Ok(AgentWork::Refused {
                session, reason, ..
            }) => {
                if session == self.session {
                    tracing::error!(agent = %self.id(), %reason, "the pipeline refused this agent");
                    self.summary.refused = Some(reason);
                }
                true
            }
            Err(e) => {
                tracing::warn!(agent = %self.id(), error = %e, "dropping invalid work");
                true
            }
        };
        if ack_now {
            consuming
                .basic_ack(delivery.0, BasicAckOptions::default())
                .await?;
        }
        Ok(())
    }

    /// Publishes finished attempts' completions (confirmed), then
    /// acknowledges their run messages.
    async fn flush(
        &mut self,
        channel: &Channel,
        consuming: &Channel,
        generation: u64,
    ) -> lapin::Result<()> {
        if self.outbox.is_empty() {
            return Ok(());
        }
        let outbox = std::mem::take(&mut self.outbox);
        let mut confirms = Vec::with_capacity(outbox.len());
        for (completion, reply_to, _) in &outbox {
            let body = serde_json::to_vec(completion).unwrap_or_default();
            let published = channel
                .basic_publish(
                    "".into(),
                    reply_to.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_content_type("application/json".into()),
                )
                .await;
            match published {
                Ok(confirm) => confirms.push(confirm),
                Err(e) => {
                    self.outbox = outbox;
                    return Err(e);
                }
            }
        }
        for confirm in confirms {
            if let Err(e) = confirm.await {
                self.outbox = outbox;
                return Err(e);
            }
        }
        for (_, _, delivery) in &outbox {
            if let Some((tag, on)) = delivery {
                if *on == generation {
                    consuming
                        .basic_ack(*tag, BasicAckOptions::default())
                        .await?;
                }
            }
        }
        self.summary.completed += outbox.len() as u64;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_read_and_bad_capacity_is_named() {
        let spec = parse_capacity("a", "cpu=4000,memory=8192,gpu=1,fpga=2", "T4").expect("valid");
        assert_eq!(spec.cpu_milli, 4000);
        assert_eq!(spec.memory_mib, 8192);
        assert_eq!(spec.gpus.len(), 1);
        assert_eq!(spec.gpus[0].model, "T4");
        assert_eq!(spec.custom.get("fpga"), Some(&2));
        for bad in ["cpu", "cpu=lots", "memory=5", "cpu=1,gpu=1000"] {
            let err = parse_capacity("a", bad, "").expect_err(bad).to_string();
            assert!(err.contains(bad), "{err}");
        }
    }
}
