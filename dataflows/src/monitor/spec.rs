//! Continuous metric queries as declared in the config: a filter, group-by
//! dimensions, aggregates and a window.

use serde::{Deserialize, Serialize};

use tidewater_operators::model::{MetricEvent, MetricKind, Name, QosClass};

/// A dimension of a metric event to filter or group by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// What was measured (`submitted`, `completed`, …).
    Metric,
    /// The task's kind.
    Kind,
    /// The tenant.
    Tenant,
    /// The executor.
    Executor,
    /// Outcome status or rejection reason.
    Status,
    /// QoS class.
    Qos,
}

impl Dimension {
    /// The dimension's value in `event`.
    pub fn of(self, event: &MetricEvent) -> Name {
        match self {
            Dimension::Metric => Name::const_new(event.kind.as_str()),
            Dimension::Kind => event.task_kind.clone(),
            Dimension::Tenant => event.tenant.clone(),
            Dimension::Executor => event.executor.clone(),
            Dimension::Status => event.status.clone(),
            Dimension::Qos => Name::const_new(event.qos.as_str()),
        }
    }

    /// The dimension's name, as a label.
    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Metric => "metric",
            Dimension::Kind => "kind",
            Dimension::Tenant => "tenant",
            Dimension::Executor => "executor",
            Dimension::Status => "status",
            Dimension::Qos => "qos",
        }
    }
}

/// Which events a query sees: every field given must match.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Filter {
    /// The metric.
    pub metric: Option<MetricKind>,
    /// The task kind.
    pub kind: Option<String>,
    /// The tenant.
    pub tenant: Option<String>,
    /// The executor.
    pub executor: Option<String>,
    /// The status.
    pub status: Option<String>,
    /// The QoS class.
    pub qos: Option<QosClass>,
}

impl Filter {
    /// Whether `event` passes.
    pub fn matches(&self, event: &MetricEvent) -> bool {
        let eq = |want: &Option<String>, have: &Name| want.as_deref().is_none_or(|w| w == have);
        self.metric.is_none_or(|m| m == event.kind)
            && eq(&self.kind, &event.task_kind)
            && eq(&self.tenant, &event.tenant)
            && eq(&self.executor, &event.executor)
            && eq(&self.status, &event.status)
            && self.qos.is_none_or(|q| q == event.qos)
    }
}

/// An aggregate of the values in a group.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregate {
    /// Number of events.
    Count,
    /// Sum of values.
    Sum,
    /// Mean value.
    Avg,
    /// Smallest value.
    Min,
    /// Largest value.
    Max,
    /// The value at this quantile (0..=1), exact: the smallest value with at
    /// least that share of the group at or below it.
    Quantile(f64),
}

impl Aggregate {
    /// The aggregate's name, as a label (`p99` for the 0.99 quantile).
    pub fn label(&self) -> String {
        match self {
            Aggregate::Count => "count".into(),
            Aggregate::Sum => "sum".into(),
            Aggregate::Avg => "avg".into(),
            Aggregate::Min => "min".into(),
            Aggregate::Max => "max".into(),
            Aggregate::Quantile(q) => format!("p{}", (q * 1000.0).round() / 10.0),
        }
    }
}

/// Which events a query's results cover at an epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Window {
    /// Everything up to the epoch.
    #[default]
    None,
    /// Events of the current window of `ms` (windows start at multiples of `ms`).
    Tumbling {
        /// Window length, ms.
        ms: u64,
    },
    /// Events of the last `ms` before and including the epoch.
    Sliding {
        /// Window length, ms.
        ms: u64,
    },
}

impl Window {
    /// When an event at `epoch` leaves the window, if it does.
    pub fn expiry(&self, epoch: u64) -> Option<u64> {
        match *self {
            Window::None => None,
            Window::Tumbling { ms } => Some((epoch / ms + 1) * ms),
            Window::Sliding { ms } => Some(epoch + ms),
        }
    }
}

/// A continuous query.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuerySpec {
    /// Unique name (`GET /v1/queries/{name}`, the gauge's name).
    pub name: String,
    /// Which events it sees.
    #[serde(default)]
    pub filter: Filter,
    /// Dimensions to group by (none: one group).
    #[serde(default)]
    pub group_by: Vec<Dimension>,
    /// Aggregates of each group's values.
    pub aggregates: Vec<Aggregate>,
    /// The window.
    #[serde(default)]
    pub window: Window,
}

/// Why a query spec is invalid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuerySpecError {
    /// Empty or non-identifier name.
    #[error("query name {0:?} must be non-empty letters, digits or _")]
    Name(String),
    /// Two queries with one name.
    #[error("two queries are named {0:?}")]
    Duplicate(String),
    /// No aggregates.
    #[error("query {0:?} has no aggregates")]
    NoAggregates(String),
    /// A quantile outside 0..=1.
    #[error("query {name:?}: quantile {q} is not within 0..=1")]
    Quantile {
        /// The query.
        name: String,
        /// The quantile.
        q: f64,
    },
    /// A window of zero length.
    #[error("query {0:?}: a window must be at least 1 ms")]
    Window(String),
}

/// Checks a set of query specs.
pub fn validate_queries(specs: &[QuerySpec]) -> Result<(), QuerySpecError> {
    let mut seen = std::collections::HashSet::new();
    for spec in specs {
        let name = &spec.name;
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(QuerySpecError::Name(name.clone()));
        }
        if !seen.insert(name.clone()) {
            return Err(QuerySpecError::Duplicate(name.clone()));
        }
        if spec.aggregates.is_empty() {
            return Err(QuerySpecError::NoAggregates(name.clone()));
        }
        for aggregate in &spec.aggregates {
            if let Aggregate::Quantile(q) = aggregate {
                if !(0.0..=1.0).contains(q) {
                    return Err(QuerySpecError::Quantile {
                        name: name.clone(),
                        q: *q,
                    });
                }
            }
        }
        if matches!(
            spec.window,
            Window::Tumbling { ms: 0 } | Window::Sliding { ms: 0 }
        ) {
            return Err(QuerySpecError::Window(name.clone()));
        }
    }
    Ok(())
}
