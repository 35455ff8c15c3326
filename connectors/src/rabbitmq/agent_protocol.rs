//! The messages between the pipeline and remote executor agents
//! (`tidewater agent`), as JSON over RabbitMQ.
//!
//! ```text
//!  agent ──AgentMessage (join, heartbeat, leave)──► control exchange ──► pipeline
//!  pipeline ──AgentWork (run, abort)──► assignments exchange (key: executor id) ──► agent queue
//!  agent ──RemoteCompletion──► the pipeline's completions queue (the `reply_to` of the run)
//! ```
//!
//! A completion names the lease and the worker that issued the assignment;
//! the pipeline keeps the assignment itself and takes only the outcome and
//! timings from the agent.
//!
//! Control messages carry the agent's credential; when the pipeline has
//! `rabbitmq.agent_tokens`, a join, heartbeat or leave whose credential is
//! missing or wrong is refused ([`authorize`]), and a refused join is
//! answered with [`AgentWork::Refused`] naming the join's session, so the
//! agent stops instead of waiting for work.

use serde::{Deserialize, Serialize};

use tidewater_operators::model::{
    AbortReason, Assignment, Completion, ControlCommand, ExecutorId, ExecutorSpec, Lease, Outcome,
    TaskResult,
};

/// The queue an agent consumes its work from: named after the
/// assignments exchange, so that pipelines on separate exchanges never
/// share an agent queue.
pub fn agent_queue(assignments_exchange: &str, executor: &str) -> String {
    format!("{assignments_exchange}.{executor}")
}

/// The queue the pipeline consumes agents' control messages from. Agents
/// declare it too, so that a join sent before the pipeline started is kept.
pub fn control_queue(control_exchange: &str) -> String {
    format!("{control_exchange}.pipeline")
}

/// What an agent tells the pipeline about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentMessage {
    /// The agent joins (or re-joins) with its capacity.
    Join {
        /// Identity and capacity.
        executor: ExecutorSpec,
        /// Declared lost when silent for this long.
        heartbeat_ttl_ms: u64,
        /// The agent's token (`tidewater agent --token`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
        /// Names this run of the agent, so that a refusal reaches only the
        /// agent it answers.
        #[serde(default)]
        session: String,
    },
    /// The agent is alive.
    Heartbeat {
        /// Which agent.
        executor: ExecutorId,
        /// The agent's token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
    },
    /// The agent leaves after finishing what it runs.
    Leave {
        /// Which agent.
        executor: ExecutorId,
        /// The agent's token.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        credential: Option<String>,
    },
}

/// Why a control message was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The agent sent no credential.
    #[error("agent {0:?} sent no credential; start it with --token")]
    Missing(String),
    /// No token is configured for this agent id.
    #[error("agent {0:?} is not listed in rabbitmq.agent_tokens")]
    Unknown(String),
    /// The credential does not match the agent's token.
    #[error("agent {0:?} sent a wrong credential")]
    Wrong(String),
}

/// Checks a control message's credential against `tokens` (agent id →
/// token). With no tokens configured every agent is let in (a broker
/// trusted by other means); otherwise the agent's id must be listed and
/// its credential match, compared in constant time.
pub fn authorize(
    tokens: &std::collections::BTreeMap<String, String>,
    message: &AgentMessage,
) -> Result<(), Refusal> {
    if tokens.is_empty() {
        return Ok(());
    }
    let id = message.executor().to_string();
    let Some(expected) = tokens.get(&id) else {
        return Err(Refusal::Unknown(id));
    };
    let Some(given) = message.credential() else {
        return Err(Refusal::Missing(id));
    };
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::Wrong(id))
    }
}

/// Whether `a == b`, taking the same time wherever they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

impl AgentMessage {
    /// The coordinator command this message stands for.
    pub fn command(&self) -> ControlCommand {
        match self {
            AgentMessage::Join {
                executor,
                heartbeat_ttl_ms,
                ..
            } => ControlCommand::Join {
                executor: executor.clone(),
                heartbeat_ttl_ms: Some(*heartbeat_ttl_ms),
            },
            AgentMessage::Heartbeat { executor, .. } => ControlCommand::Heartbeat {
                executor: executor.clone(),
            },
            AgentMessage::Leave { executor, .. } => ControlCommand::Leave {
                executor: executor.clone(),
            },
        }
    }

    /// The agent the message is from.
    pub fn executor(&self) -> &ExecutorId {
        match self {
            AgentMessage::Join { executor, .. } => &executor.id,
            AgentMessage::Heartbeat { executor, .. } | AgentMessage::Leave { executor, .. } => {
                executor
            }
        }
    }

    /// The credential it carries.
    pub fn credential(&self) -> Option<&str> {
        match self {
            AgentMessage::Join { credential, .. }
            | AgentMessage::Heartbeat { credential, .. }
            | AgentMessage::Leave { credential, .. } => credential.as_deref(),
        }
    }
}

/// What the pipeline asks of an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
// Messages are decoded one at a time from the broker; the size difference
// between the variants costs nothing there.
#[allow(clippy::large_enum_variant)]
pub enum AgentWork {
    /// Run an attempt and send its completion to `reply_to`.
    Run {
        /// The attempt.
        assignment: Assignment,
        /// Global index of the worker that issued it.
        worker: u32,
        /// The queue for the completion.
        reply_to: String,
    },
    /// Stop an attempt; its completion (cancelled) still follows.
    Abort {
        /// The agent.
        executor: ExecutorId,
        /// The attempt's lease.
        lease: Lease,
        /// Global index of the worker that issued it.
        worker: u32,
        /// Why.
        reason: AbortReason,
    },
    /// The agent's join was refused (wrong or missing credential); it
    /// gets no work and should stop.
    Refused {
        /// The agent.
        executor: ExecutorId,
        /// The session of the refused join.
        session: String,
        /// Why, in words.
        reason: String,
    },
}

impl AgentWork {
    /// The agent the work is for.
    pub fn executor(&self) -> &ExecutorId {
        match self {
            AgentWork::Run { assignment, .. } => &assignment.executor,
            AgentWork::Abort { executor, .. } | AgentWork::Refused { executor, .. } => executor,
        }
    }
}

/// How an attempt ended on an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteCompletion {
    /// The agent.
    pub executor: ExecutorId,
    /// Global index of the worker that issued the assignment.
    pub worker: u32,
    /// The attempt's lease.
    pub lease: Lease,
    /// How it ended.
    pub outcome: Outcome,
    /// When it started, microseconds since the Unix epoch.
    pub started_at_us: u64,
    /// When it finished.
    pub finished_at_us: u64,
    /// Exit code, for command handlers.
    pub exit_code: Option<i32>,
    /// Output size in bytes.
    pub output_bytes: u64,
    /// What the handler returned, bounded by the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<TaskResult>,
}

impl RemoteCompletion {
    /// How the agent reports `completion`, an attempt it ran for `worker`.
    pub fn of(completion: Completion, worker: u32) -> RemoteCompletion {
        RemoteCompletion {
            executor: completion.executor,
            worker,
            lease: completion.lease,
            outcome: completion.outcome,
            started_at_us: completion.started_at_us,
            finished_at_us: completion.finished_at_us,
            exit_code: completion.exit_code,
            output_bytes: completion.output_bytes,
            result: completion.result,
        }
    }

    /// A failed attempt that produced nothing (never delivered, or its
    /// executor was lost), ending now.
    pub fn failed(
        executor: ExecutorId,
        worker: u32,
        lease: Lease,
        started_at_us: u64,
        reason: String,
    ) -> RemoteCompletion {
        RemoteCompletion {
            executor,
            worker,
            lease,
            outcome: Outcome::Failed { reason },
            started_at_us,
            finished_at_us: tidewater_operators::model::now_micros(),
            exit_code: None,
            output_bytes: 0,
            result: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let join = AgentMessage::Join {
            executor: ExecutorSpec::cpu("a-1", 4000, 8192).with_gpus(1, "T4"),
            heartbeat_ttl_ms: 3000,
            credential: None,
            session: "s1".into(),
        };
        let text = serde_json::to_string(&join).expect("encode");
        assert!(text.starts_with(r#"{"type":"join""#), "{text}");
        let back: AgentMessage = serde_json::from_str(&text).expect("decode");
        assert_eq!(back, join);
        assert!(matches!(
            back.command(),
            ControlCommand::Join {
                heartbeat_ttl_ms: Some(3000),
                ..
            }
        ));
        assert!(serde_json::from_str::<AgentMessage>(r#"{"type":"explode"}"#).is_err());
        // Agents from before credentials still decode.
        let old: AgentMessage =
            serde_json::from_str(r#"{"type":"heartbeat","executor":"a-1"}"#).expect("decode");
        assert_eq!(old.credential(), None);
    }

    #[test]
    fn credentials_are_checked_per_agent() {
        let tokens: std::collections::BTreeMap<String, String> =
            [("a-1".to_string(), "s3cret".to_string())].into();
        let join = |id: &str, credential: Option<&str>| AgentMessage::Join {
            executor: ExecutorSpec::cpu(id, 1000, 64),
            heartbeat_ttl_ms: 1000,
            credential: credential.map(str::to_string),
            session: String::new(),
        };
        assert_eq!(authorize(&tokens, &join("a-1", Some("s3cret"))), Ok(()));
        assert_eq!(
            authorize(&tokens, &join("a-1", Some("s3cres"))),
            Err(Refusal::Wrong("a-1".into()))
        );
        assert_eq!(
            authorize(&tokens, &join("a-1", Some("s3cret-longer"))),
            Err(Refusal::Wrong("a-1".into()))
        );
        assert_eq!(
            authorize(&tokens, &join("a-1", None)),
            Err(Refusal::Missing("a-1".into()))
        );
        assert_eq!(
            authorize(&tokens, &join("b-2", Some("s3cret"))),
            Err(Refusal::Unknown("b-2".into()))
        );
        let leave = AgentMessage::Leave {
            executor: ExecutorId::from("a-1"),
            credential: None,
        };
        assert_eq!(
            authorize(&tokens, &leave),
            Err(Refusal::Missing("a-1".into()))
        );
        // Without tokens the broker is trusted.
        assert_eq!(authorize(&Default::default(), &join("x", None)), Ok(()));
    }
}
