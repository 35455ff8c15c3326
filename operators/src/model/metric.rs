//! Metric events: the monitoring agent's input stream.

use serde::{Deserialize, Serialize};

use super::{Name, QosClass};

/// What a metric event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    /// A task was accepted; value 1.
    Submitted,
    /// A record was rejected; `status` holds the reason code; value 1.
    Rejected,
    /// A task was placed; value is the queueing delay in seconds.
    Assigned,
    /// An attempt finished; `status` holds the outcome; value is run time in seconds.
    Completed,
    /// A failed attempt will be retried; value 1.
    Retried,
    /// An executor's utilization sample (the largest of its CPU, memory and
    /// GPU shares in use); value in 0..=1; sent every second.
    Utilization,
    /// A shard's wait-queue length; `executor` names the shard
    /// (`shard-N`); sent every second.
    QueueDepth,
    /// The learner's training loss; value is the loss.
    LearnerLoss,
}

impl MetricKind {
    /// The kind's name as used in query configs.
    pub fn as_str(&self) -> &'static str {
        match self {
            MetricKind::Submitted => "submitted",
            MetricKind::Rejected => "rejected",
            MetricKind::Assigned => "assigned",
            MetricKind::Completed => "completed",
            MetricKind::Retried => "retried",
            MetricKind::Utilization => "utilization",
            MetricKind::QueueDepth => "queue_depth",
            MetricKind::LearnerLoss => "learner_loss",
        }
    }
}

/// One metric observation with fixed dimensions, so that producing one costs
/// no heap allocation. Dimensions that do not apply are empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricEvent {
    /// What is measured.
    pub kind: MetricKind,
    /// Task kind.
    pub task_kind: Name,
    /// Tenant.
    pub tenant: Name,
    /// Executor.
    pub executor: Name,
    /// Outcome status or rejection reason code.
    pub status: Name,
    /// QoS class.
    pub qos: QosClass,
    /// The observed value.
    pub value: f64,
    /// When it was observed, milliseconds since the Unix epoch.
    pub at_ms: u64,
}
