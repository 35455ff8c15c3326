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

use serde::{Deserialize, Serialize};

use tidewater_operators::model::{
    AbortReason, Assignment, ControlCommand, ExecutorId, ExecutorSpec, Lease, Outcome, TaskResult,
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
    },
    /// The agent is alive.
    Heartbeat {
        /// Which agent.
        executor: ExecutorId,
    },
    /// The agent leaves after finishing what it runs.
    Leave {
        /// Which agent.
        executor: ExecutorId,
    },
}

impl AgentMessage {
    /// The coordinator command this message stands for.
    pub fn command(&self) -> ControlCommand {
        match self {
            AgentMessage::Join {
                executor,
                heartbeat_ttl_ms,
            } => ControlCommand::Join {
                executor: executor.clone(),
                heartbeat_ttl_ms: Some(*heartbeat_ttl_ms),
            },
            AgentMessage::Heartbeat { executor } => ControlCommand::Heartbeat {
                executor: executor.clone(),
            },
            AgentMessage::Leave { executor } => ControlCommand::Leave {
                executor: executor.clone(),
            },
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
}

impl AgentWork {
    /// The agent the work is for.
    pub fn executor(&self) -> &ExecutorId {
        match self {
            AgentWork::Run { assignment, .. } => &assignment.executor,
            AgentWork::Abort { executor, .. } => executor,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_as_tagged_json() {
        let join = AgentMessage::Join {
            executor: ExecutorSpec::cpu("a-1", 4000, 8192).with_gpus(1, "T4"),
            heartbeat_ttl_ms: 3000,
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
    }
}
